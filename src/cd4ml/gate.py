"""Release gate: the challenger (models/bundle) must beat the champion before it is promoted.

    python -m cd4ml.gate check     # compare, write metrics/gate.json, fail unless it passes
    python -m cd4ml.gate promote   # check, then write the challenger's roc_auc into baseline.txt
    python -m cd4ml.gate compare   # write metrics/gate.json only (never fails on the verdict)
    python -m cd4ml.gate diff      # show what moved: `dvc metrics diff` against the last commit

The champion is the released prod bundle in models/champion (`make champion` fetches it from
the registry): both bundles score the same eval rows, from raw rows, and a paired bootstrap gives
the interval of the difference. Without a released bundle the champion is baseline.txt's number
(the released model's roc_auc) against eval/metrics.json's. Either way the model must also beat
the simple baseline evaluate scored on the same rows (eval/metrics.json's baseline/roc_auc) by
gate.min_gain_over_baseline.

Not a DVC stage on purpose: promoting rewrites baseline.txt, which would invalidate the pipeline.
It runs after `dvc repro`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from cd4ml import bundle, metrics, params, signing
from cd4ml import problem as problems
from cd4ml.io import UserError, atomic_path, read_parquet, run_main, write_json, write_parquet
from cd4ml.params import OpenFraction, Section, Seed
from cd4ml.registry import fetched_version
from cd4ml.shell import dvc, git

log = logging.getLogger("gate")

METRIC = "roc_auc"


class Gate(Section):
    """params.yaml's gate: the challenger against the champion on the same rows."""

    # release only if the challenger's roc_auc beats the champion's by more
    min_improvement: Annotated[float, Field(ge=0, lt=1)]
    decide_on: Literal["difference", "lower_bound"]  # lower_bound: the interval's low end too
    bootstrap_rounds: Annotated[int, Field(ge=10, le=100_000)]
    confidence: OpenFraction
    seed: Seed
    # the model's roc_auc must beat evaluate's simple baseline (same eval rows) by more
    min_gain_over_baseline: Annotated[float, Field(ge=0, lt=1)]
    # Per slice (the problem's slices and each value of its slice_columns), the same bootstrap:
    # a slice whose roc_auc drops by more, with its whole interval below zero, fails the gate.
    max_slice_drop: Annotated[float, Field(ge=0, lt=1)]
    min_slice_rows: Annotated[int, Field(ge=1, le=10_000_000)]  # smaller: reported, not gated
    # Serving cost, challenger / champion on this machine: median scoring time (1 and 1,000
    # rows) and peak memory of load + score; growth beyond these ratios fails the gate, unless
    # it is within the slack (noise on a tiny bundle).
    max_latency_growth: Annotated[float, Field(ge=1, le=100)]
    max_memory_growth: Annotated[float, Field(ge=1, le=100)]
    latency_slack_ms: Annotated[float, Field(ge=0, le=10_000)]
    memory_slack_mb: Annotated[float, Field(ge=0, le=100_000)]
    timing_repeats: Annotated[int, Field(ge=1, le=1000)]  # timed runs of each bundle and size


@dataclass
class OverBaseline:
    """The model against evaluate's simple baseline, both scored on the same eval rows."""

    model: float
    baseline: float
    min_gain: float
    source: str = metrics.EVAL_METRICS

    @property
    def gain(self) -> float:
        return round(self.model - self.baseline, 12)

    @property
    def passed(self) -> bool:
        return self.gain > self.min_gain

    def text(self) -> str:
        """The comparison in words, for the verdict's line."""
        verb = "beats" if self.passed else "does not beat"
        return (
            f"{METRIC} {self.model:.4f} {verb} the simple baseline's {self.baseline:.4f} "
            f"({self.source}) by more than gate.min_gain_over_baseline {self.min_gain:.4f} "
            f"(gain {_signed(self.gain)})"
        )

    def report(self) -> dict:
        return {
            "model_roc_auc": self.model,
            "baseline_roc_auc": self.baseline,
            "gain": self.gain,
            "min_gain_over_baseline": self.min_gain,
            "passed": self.passed,
        }


def over_baseline(path: Path, min_gain: float) -> OverBaseline:
    """The model's roc_auc and the simple baseline's, from evaluate's metrics file."""
    model_auc = read_new_score(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    found = data.get(metrics.BASELINE)
    score = _score(found.get(METRIC)) if isinstance(found, dict) else None
    if score is None:
        raise UserError(
            f"{path}: '{metrics.BASELINE}/{METRIC}' (the simple baseline's) must be a number in "
            f"[0, 1], got {found!r}; rerun `dvc repro -f evaluate`"
        )
    return OverBaseline(model_auc, score, min_gain, str(path))


@dataclass
class Verdict:
    """The outcome of comparing the challenger's score with the champion's."""

    new: float
    baseline: float
    min_improvement: float
    champion: str = "baseline.txt"
    interval: tuple[float, float] | None = None  # of the difference, paired bootstrap
    confidence: float = 0.95
    n_rows: int | None = None
    decide_on: str = "difference"
    over_baseline: OverBaseline | None = None  # the model against evaluate's simple baseline
    slices: dict | None = None  # per slice: both roc_aucs, the interval, gated or not (_slices)
    cost: dict | None = None  # serving cost of both bundles, each measure (serving_cost)

    @property
    def diff(self) -> float:
        # Rounded so that float noise (0.8 - 0.79 = 0.010000000000000009) cannot decide.
        return round(self.new - self.baseline, 12)

    @property
    def by_interval(self) -> bool:
        """True when the interval's low end decides too (gate.decide_on: lower_bound)."""
        return self.decide_on == "lower_bound" and self.interval is not None

    @property
    def beats_champion(self) -> bool:
        if self.by_interval and not round(self.interval[0], 12) > self.min_improvement:
            return False
        return self.diff > self.min_improvement

    @property
    def beats_baseline(self) -> bool:
        return self.over_baseline is None or self.over_baseline.passed

    @property
    def passed(self) -> bool:
        return self.beats_champion and self.beats_baseline and not self.failures()

    def failures(self) -> list[str]:
        """One phrase per slice that drops and per serving cost that grows beyond its limit."""
        found = []
        if self.slices is not None:
            found += [_slice_failure(row, self.slices) for row in self.slices["table"]]
        if self.cost is not None:
            found += [_cost_failure(row, self.cost) for row in self.cost["measures"]]
        return [text for text in found if text]

    def _baseline_text(self) -> str:
        return "" if self.over_baseline is None else f"; {self.over_baseline.text()}"

    def _interval_text(self) -> str:
        if self.interval is None:
            return ""
        low, high = self.interval
        return (
            f", {self.confidence:.0%} interval {_signed(low)} .. {_signed(high)} on "
            f"{self.n_rows} eval rows"
        )

    def message(self) -> str:
        """One line: pass, or fail with the values, the difference and what to do."""
        against = f"{self.champion} {self.baseline:.4f}"
        failures = self.failures()
        if self.beats_champion and not self.beats_baseline:
            return (
                f"gate failed: {self.over_baseline.text()}; improve the model or data, or lower "
                f"gate.min_gain_over_baseline in params.yaml{'; also ' if failures else ''}"
                + "; ".join(failures)
            )
        if not self.beats_baseline:  # named after the champion's failure below
            failures = [self.over_baseline.text(), *failures]
        if self.beats_champion and self.beats_baseline and failures:
            return (
                f"gate failed: {'; '.join(failures)} (overall {METRIC} {self.new:.4f} vs "
                f"{against}, diff {_signed(self.diff)})"
            )
        if self.passed:
            bound = "it and its interval's low end beat" if self.by_interval else "more than"
            return (
                f"gate passed: {METRIC} {self.new:.4f} beats {against} by "
                f"{_signed(self.diff)} ({bound} gate.min_improvement "
                f"{self.min_improvement:.4f}{self._interval_text()}){self._baseline_text()}"
            )
        if self.diff == 0:
            hint = (
                "it scores the same as the released model (already promoted?); improve the "
                "model or data"
            )
        elif self.diff > self.min_improvement:
            hint = (
                "the interval's low end does not: the gain may be noise (gate.decide_on: "
                "lower_bound); improve the model or data, or decide on the difference"
            )
        elif self.diff > 0:
            hint = "improve the model or data, or lower gate.min_improvement in params.yaml"
        else:
            hint = "improve the model or data; the champion is the released model"
        return (
            f"gate failed: {METRIC} {self.new:.4f} does not beat {against} by more than "
            f"{self.min_improvement:.4f} (diff {_signed(self.diff)}{self._interval_text()}); "
            f"{hint}{'; also ' + '; '.join(failures) if failures else ''}"
        )

    def report(self) -> dict:
        """metrics/gate.json: both scores, the difference, its interval, the verdict."""
        return {
            "metric": METRIC,
            "challenger_roc_auc": self.new,
            "champion_roc_auc": self.baseline,
            "champion": self.champion,
            "difference": self.diff,
            "interval": None
            if self.interval is None
            else {
                "low": self.interval[0],
                "high": self.interval[1],
                "confidence": self.confidence,
            },
            "n_rows": self.n_rows,
            "min_improvement": self.min_improvement,
            "decide_on": self.decide_on,
            "simple_baseline": None if self.over_baseline is None else self.over_baseline.report(),
            **({} if self.slices is None else {"slices": self.slices}),
            **({} if self.cost is None else {"serving_cost": self.cost}),
            "passed": self.passed,
            "message": self.message(),
        }


def _signed(x: float) -> str:
    text = f"{x:+.4f}"
    # A real but tiny difference must not print as +0.0000.
    return f"{x:+.2e}" if x != 0 and float(text) == 0 else text


def _score(value: object) -> float | None:
    """A finite number in [0, 1], else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def read_new_score(path: Path) -> float:
    """The roc_auc of the evaluated model, from the evaluate stage's metrics file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run the pipeline first (make repro)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err}); rerun `dvc repro -f evaluate`") from None
    score = _score(data.get(METRIC)) if isinstance(data, dict) else None
    if score is None:
        found = data.get(METRIC) if isinstance(data, dict) else data
        raise UserError(
            f"{path}: '{METRIC}' must be a number in [0, 1], got {found!r}; "
            f"rerun `dvc repro -f evaluate`"
        )
    return score


def read_baseline(path: Path) -> float:
    """The roc_auc of the released model: one number in baseline.txt."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UserError(
            f"{path}: not found; create it with the released model's {METRIC} "
            f"(`echo 0.5 > {path}` when nothing is released yet)"
        ) from None
    try:
        score = _score(float(text))
    except ValueError:
        score = None
    if score is None:
        raise UserError(
            f"{path}: expected one number in [0, 1] (the released model's {METRIC}), "
            f"got {text[:40]!r}; fix it, e.g. `echo 0.5 > {path}`"
        )
    return score


def _champion_name(champion: Path, name: str) -> str:
    """How the champion is named in messages: its registry version when the fetch recorded it."""
    version = fetched_version(champion)
    return f"{name}@{version}" if version else f"champion {champion}"


def compare_bundles(
    problem: problems.Problem, challenger: Path, champion: Path, rows_path: Path, settings: Gate
) -> Verdict:
    """Both bundles score the same raw eval rows; the paired bootstrap gives the interval. A
    champion fetched from the registry must carry the release key's signature (cd4ml.signing)."""
    if fetched_version(champion) is not None:  # a release; else a local folder of one's own
        signing.verify(champion)
    scorers = bundle.load(challenger, problem), bundle.load(champion, problem)
    rows = read_parquet(rows_path)
    target = problem.contract.target
    if target not in rows.column_names:
        raise UserError(
            f"{rows_path}: no column {target!r}: not the eval rows of {problem.name} "
            "(the split stage's eval.parquet)"
        )
    y = rows[target].to_numpy()
    # The challenger's features name its slices (a cold start: new to the model that ships).
    table = scorers[0].rows(rows)
    p_new, p_old = (scorer.score_table(table).probabilities for scorer in scorers)
    masks = slice_masks(problem, scorers[0].featurizer.transform(table).x, rows)
    # Timing first, alone; the memory probes (other processes) then run during the bootstraps.
    started = time.perf_counter()
    timed = time_scoring(scorers, table, settings.timing_repeats)
    if not all(row["passed"] for row in serving_cost(timed, [1.0, 1.0], settings)["measures"]):
        # Timed again before failing, each bundle keeping its lower median: a busy moment of
        # the machine does not fail the gate, a slower model does.
        again = time_scoring(scorers, table, settings.timing_repeats)
        timed = {size: list(np.minimum(timed[size], again[size])) for size in timed}
    with tempfile.TemporaryDirectory() as tmp:
        probes = _start_memory_probes(problem, scorers, _batch(table, 1000), Path(tmp))
        result = metrics.paired_auc_difference(
            y, p_new, p_old, settings.bootstrap_rounds, settings.confidence, settings.seed
        )
        sliced = compare_slices(y, p_new, p_old, masks, settings)
        memory = [_finish_memory_probe(*probe) for probe in probes]
    log.info("slices and serving cost: %.2f s", time.perf_counter() - started)
    return Verdict(
        result["challenger_roc_auc"],
        result["champion_roc_auc"],
        settings.min_improvement,
        _champion_name(champion, problem.name),
        (result["interval_low"], result["interval_high"]),
        settings.confidence,
        result["n_rows"],
        settings.decide_on,
        slices=sliced,
        cost=serving_cost(timed, memory, settings),
    )


# --- slices ------------------------------------------------------------------------------------


def slice_masks(problem: problems.Problem, x: object, rows: pa.Table) -> dict[str, np.ndarray]:
    """The problem's slices of the eval rows (from their features `x`), then one slice per value
    of each of its slice_columns (raw columns, e.g. where a row comes from), nulls as one."""
    columns = tuple(getattr(problem, "slice_columns", ()))
    for column in columns:
        if column not in rows.column_names:
            raise UserError(
                f"{problem.name}: slice column {column!r} is not a column of the eval rows; "
                "fix the problem's slice_columns"
            )
    masks = {name: np.asarray(mask, dtype=bool) for name, mask in problem.slices(x).items()}
    for column in columns:
        values = rows[column]
        for value in sorted(v for v in pc.unique(values).to_pylist() if v is not None):
            masks[f"{column}={value}"] = pc.fill_null(pc.equal(values, value), False).to_numpy()
        if values.null_count:
            masks[f"{column}=(missing)"] = pc.is_null(values).to_numpy(zero_copy_only=False)
    return masks


def compare_slices(
    y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, masks: dict, settings: Gate
) -> dict:
    """Each slice's roc_auc of both models with the paired bootstrap interval of the
    difference; a slice below gate.min_slice_rows, or with one class, is reported only."""
    table = []
    for name, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        n = int(mask.sum())
        row: dict = {"slice": name, "rows": n, "challenger_roc_auc": None}
        row.update(champion_roc_auc=None, difference=None, interval=None)
        if len(np.unique(y[mask])) == 2:
            found = metrics.paired_auc_difference(
                y[mask],
                p_new[mask],
                p_old[mask],
                settings.bootstrap_rounds,
                settings.confidence,
                settings.seed,
            )
            row.update(
                challenger_roc_auc=found["challenger_roc_auc"],
                champion_roc_auc=found["champion_roc_auc"],
                difference=round(found["difference"], 12),
                interval={"low": found["interval_low"], "high": found["interval_high"]},
            )
            if n < settings.min_slice_rows:
                row["status"] = "reported (below gate.min_slice_rows)"
            elif row["difference"] < -settings.max_slice_drop and found["interval_high"] < 0:
                row["status"] = "failed"
            else:
                row["status"] = "passed"
        else:
            row["status"] = "reported (one class: no roc_auc)"
        table.append(row)
    return {
        "max_slice_drop": settings.max_slice_drop,
        "min_slice_rows": settings.min_slice_rows,
        "confidence": settings.confidence,
        "table": table,
    }


def _slice_failure(row: dict, slices: dict) -> str | None:
    if row["status"] != "failed":
        return None
    low, high = row["interval"]["low"], row["interval"]["high"]
    return (
        f"slice {row['slice']} ({row['rows']} eval rows): {METRIC} "
        f"{row['challenger_roc_auc']:.4f} vs the champion's {row['champion_roc_auc']:.4f}, "
        f"diff {_signed(row['difference'])} ({slices['confidence']:.0%} interval "
        f"{_signed(low)} .. {_signed(high)}) drops by more than gate.max_slice_drop "
        f"{slices['max_slice_drop']:.4f}"
    )


# --- serving cost ------------------------------------------------------------------------------

MEMORY_METHOD = (
    "peak RSS (VmHWM) of a fresh process that loads and scores 1,000 rows, above its RSS "
    "after the imports; one process per bundle, so neither reuses the other's memory"
)


def _batch(table: pa.Table, n: int) -> pa.Table:
    """`n` rows: the eval rows' first, repeated when there are fewer."""
    if table.num_rows == 0:
        raise UserError("no eval rows: the gate cannot time scoring")
    copies = -(-n // table.num_rows)
    return pa.concat_tables([table] * copies).slice(0, n).combine_chunks()


def time_scoring(scorers: tuple, table: pa.Table, repeats: int) -> dict[str, list[float]]:
    """Median milliseconds each scorer takes to score 1 and 1,000 raw rows in this process,
    after a warm-up; the two alternate run by run (who goes first too), so that a busy machine
    slows both alike."""
    batches = {"1 row": _batch(table, 1), "1,000 rows": _batch(table, 1000)}
    for scorer in scorers:
        for rows in batches.values():
            scorer.score(rows)
    medians = {}
    for size, rows in batches.items():
        runs: list[list[float]] = [[] for _ in scorers]
        for i in range(repeats):
            order = range(len(scorers)) if i % 2 == 0 else reversed(range(len(scorers)))
            for which in order:
                start = time.perf_counter()
                scorers[which].score(rows)
                runs[which].append((time.perf_counter() - start) * 1000)
        medians[size] = [statistics.median(times) for times in runs]
    return medians


def _start_memory_probes(
    problem: problems.Problem, scorers: tuple, rows: pa.Table, tmp: Path
) -> list[tuple]:
    """One process per bundle measuring its peak memory (MEMORY_METHOD), started now."""
    path = tmp / "rows.parquet"
    write_parquet(rows, path)
    # The modules the scorers brought (the problem's, its featurizer's and model kind's, the
    # model's library) are imported before the baseline: the measure is the bundle's.
    roots = {problems.module_of(problem), "pyarrow", "pandas"}
    for scorer in scorers:
        kind = scorer.model.kind
        roots |= {type(scorer.featurizer).__module__, type(kind).__module__, kind.library}
    preload = sorted(
        m
        for m in list(sys.modules)
        if any(m == root or m.startswith(f"{root}.") for root in roots) and "._" not in m
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
    code = "import sys; from cd4ml.gate import _memory_probe; _memory_probe(sys.argv[1:])"
    module = problems.module_of(problem)
    return [
        (
            scorer.path,
            subprocess.Popen(
                [sys.executable, "-c", code, module, str(scorer.path), str(path), *preload],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            ),
        )
        for scorer in scorers
    ]


def _finish_memory_probe(path: Path, probe: subprocess.Popen) -> float:
    out, err = probe.communicate()
    if probe.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{path}: measuring its peak memory failed: {last}")
    return float(json.loads(out)["peak_mb"])


def _proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise UserError(f"/proc/self/status has no {field}: cannot measure peak memory here")


def _memory_probe(argv: list[str]) -> None:
    """In a fresh process: import, then load the bundle and score the rows; print the peak RSS
    above the RSS before the load, in MB (Linux: /proc; the peak is reset after the imports)."""
    import contextlib
    import gc
    import importlib

    module, path, rows_path, *preload = argv
    problem = problems.load(module, "the gate's memory probe")
    for name in preload:
        # A module that does not import on its own here costs both bundles alike.
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    rows = read_parquet(Path(rows_path))
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")  # resets VmHWM to VmRSS
    before = _proc_status_kb("VmRSS")
    bundle.load(Path(path), problem).score(rows)
    peak = _proc_status_kb("VmHWM")
    print(json.dumps({"peak_mb": (peak - before) / 1024}), flush=True)


def serving_cost(timed: dict[str, list[float]], memory: list[float], settings: Gate) -> dict:
    """Each measure of the challenger against the champion's, and whether it grew too much:
    by more than its ratio and by more than its slack both."""
    latency, slack = settings.max_latency_growth, settings.latency_slack_ms
    measures = [
        (f"scoring time, {size} (ms)", *both, latency, slack) for size, both in timed.items()
    ]
    memory_limits = settings.max_memory_growth, settings.memory_slack_mb
    measures.append(("peak memory of load + score (MB)", *memory, *memory_limits))
    table = []
    for name, new, old, limit, slack in measures:
        growth = new / old if old > 0 else None
        grew = new > old * limit and new - old > slack
        table.append(
            {
                "measure": name,
                "challenger": round(new, 4),
                "champion": round(old, 4),
                "growth": None if growth is None else round(growth, 4),
                "max_growth": limit,
                "slack": slack,
                "passed": not grew,
            }
        )
    return {
        "timing": f"median of {settings.timing_repeats} interleaved runs after a warm-up",
        "memory": MEMORY_METHOD,
        "measures": table,
    }


def _cost_failure(row: dict, cost: dict) -> str | None:
    if row["passed"]:
        return None
    key = "max_memory_growth" if row["measure"].startswith("peak memory") else "max_latency_growth"
    growth = "" if row["growth"] is None else f" (x{row['growth']:.2f})"
    return (
        f"{row['measure']}: challenger {row['challenger']:.2f} vs the champion's "
        f"{row['champion']:.2f}{growth} grows beyond gate.{key} {row['max_growth']} "
        f"(slack {row['slack']})"
    )


def compare(args: argparse.Namespace) -> Verdict:
    """The verdict against the champion bundle when there is one, else against baseline.txt;
    written to the report file either way."""
    settings = params.section(args.params, "gate", Gate)
    if (args.champion / bundle.MANIFEST).exists():
        problem = params.problem(args.params)
        verdict = compare_bundles(problem, args.challenger, args.champion, args.rows, settings)
    else:
        verdict = Verdict(
            read_new_score(args.metrics),
            read_baseline(args.baseline),
            settings.min_improvement,
            decide_on=settings.decide_on,
        )
    verdict.over_baseline = over_baseline(args.metrics, settings.min_gain_over_baseline)
    write_json(verdict.report(), args.report)
    return verdict


def evaluate_gate(args: argparse.Namespace) -> Verdict:
    """Compare; raise a UserError with one line when the gate fails."""
    verdict = compare(args)
    if not verdict.passed:
        raise UserError(verdict.message())
    print(verdict.message(), flush=True)
    return verdict


def promote(args: argparse.Namespace) -> None:
    """Pass the gate, then make the new score the baseline (atomically): baseline.txt keeps
    recording the released model's roc_auc on its own eval rows."""
    verdict = evaluate_gate(args)
    before = read_baseline(args.baseline)
    with atomic_path(args.baseline) as tmp:
        tmp.write_text(f"{verdict.new!r}\n", encoding="utf-8")
    print(
        f"promoted: {args.baseline} {before:.4f} -> {verdict.new:.4f}; "
        f"commit {args.baseline} to release this model",
        flush=True,
    )


def _is_commit(rev: str) -> bool:
    return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode == 0


def _in_git_repo() -> bool:
    return git("rev-parse", "--is-inside-work-tree").returncode == 0


def choose_rev(rev: str | None = None) -> tuple[str | None, str]:
    """`rev`, else HEAD, or HEAD~1 when the metrics equal HEAD's; None and a note when the
    chosen commit cannot be used."""
    if not _in_git_repo():
        return None, "not a git repository"
    if rev is not None:
        return (rev, "as asked") if _is_commit(rev) else (None, f"{rev!r} is not a commit")
    if not _is_commit("HEAD"):
        return None, "no commit yet"
    against_head = dvc("metrics", "diff", "HEAD", "--json")
    if against_head.returncode == 0 and json.loads(against_head.stdout or "{}") == {}:
        if _is_commit("HEAD~1"):
            return "HEAD~1", "the metrics equal HEAD's, so against the commit before"
        return None, "the metrics equal HEAD's and there is no earlier commit"
    return "HEAD", "against the last commit"


def show_diff(rev: str | None = None) -> None:
    """Print `dvc metrics diff` against the last commit; never fails (it is information)."""
    rev, why = choose_rev(rev)
    if rev is None:
        print(f"metrics diff skipped: {why}", flush=True)
        return
    shown = dvc("metrics", "diff", rev)
    if shown.returncode != 0:
        first = (shown.stderr.strip().splitlines() or ["no output"])[0]
        print(f"metrics diff skipped: dvc metrics diff {rev} failed: {first}", flush=True)
        return
    print(f"metrics diff vs {rev} ({why}):", flush=True)
    print(shown.stdout.rstrip() or "(no metric changed)", flush=True)


def _baseline_rows(found: dict | None) -> list[tuple[str, str]]:
    """The simple baseline's rows of the gate's table (none in a report made before it)."""
    if found is None:
        return []
    gain = f"{_signed(found['gain'])} (needs more than {found['min_gain_over_baseline']:.4f})"
    return [
        ("simple baseline (evaluate, same eval rows)", f"{found['baseline_roc_auc']:.4f}"),
        ("gain over the simple baseline", gain),
    ]


def gate_markdown(report: dict) -> str:
    """The gate's comparison (metrics/gate.json) as a Markdown section."""
    interval = report.get("interval")
    spread = (
        f"{_signed(interval['low'])} .. {_signed(interval['high'])} "
        f"({interval['confidence']:.0%}, paired bootstrap)"
        if interval
        else "none (no released bundle: baseline.txt's number)"
    )
    rows = [
        ("challenger (this pipeline)", f"{report['challenger_roc_auc']:.4f}"),
        (report["champion"], f"{report['champion_roc_auc']:.4f}"),
        ("difference", _signed(report["difference"])),
        ("interval of the difference", spread),
        *_baseline_rows(report.get("simple_baseline")),
        ("eval rows", str(report["n_rows"] or "-")),
        ("verdict", "passed" if report["passed"] else "failed"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    text = f"### Gate: challenger vs champion ({METRIC})\n\n| | |\n|---|---|\n{table}\n"
    return (
        text + _slices_markdown(report.get("slices")) + _cost_markdown(report.get("serving_cost"))
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def slice_rows(slices: dict) -> list[tuple[str, ...]]:
    """The per-slice table's rows (the Markdown's and the HTML report's)."""
    out = []
    for row in slices["table"]:
        interval = row["interval"]
        spread = (
            "-"
            if interval is None
            else f"{_signed(interval['low'])} .. {_signed(interval['high'])}"
        )
        diff = "-" if row["difference"] is None else _signed(row["difference"])
        out.append(
            (
                row["slice"],
                str(row["rows"]),
                _number(row["challenger_roc_auc"]),
                _number(row["champion_roc_auc"]),
                diff,
                spread,
                row["status"],
            )
        )
    return out


SLICE_HEADER = ("slice", "eval rows", "challenger", "champion", "difference", "interval", "gate")
COST_HEADER = ("measure", "challenger", "champion", "growth", "max growth / slack", "gate")


def cost_rows(cost: dict) -> list[tuple[str, ...]]:
    """The serving cost's table rows (the Markdown's and the HTML report's)."""
    return [
        (
            row["measure"],
            f"{row['challenger']:.2f}",
            f"{row['champion']:.2f}",
            "-" if row["growth"] is None else f"x{row['growth']:.2f}",
            f"x{row['max_growth']} / {row['slack']}",
            "passed" if row["passed"] else "failed",
        )
        for row in cost["measures"]
    ]


def _markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [header, tuple("---" for _ in header), *rows]
    return "\n".join(f"| {' | '.join(line)} |" for line in lines) + "\n"


def _slices_markdown(slices: dict | None) -> str:
    if slices is None:
        return ""
    return (
        f"\n#### Slices ({slices['confidence']:.0%} paired bootstrap intervals; fails: a drop "
        f"beyond {slices['max_slice_drop']} with the whole interval below zero, on at least "
        f"{slices['min_slice_rows']} rows)\n\n" + _markdown_table(SLICE_HEADER, slice_rows(slices))
    )


def _cost_markdown(cost: dict | None) -> str:
    if cost is None:
        return ""
    return (
        f"\n#### Serving cost (time: {cost['timing']}; memory: {cost['memory']})\n\n"
        + _markdown_table(COST_HEADER, cost_rows(cost))
    )


def write_markdown_diff(rev: str, out: Path, gate_report: Path | None = None) -> None:
    """Write `dvc metrics diff --md <rev>` to `out` (atomically), with a heading, and the gate's
    comparison when `gate_report` (metrics/gate.json) exists."""
    if not _in_git_repo():
        body = "Not a git repository: no earlier metrics to compare with.\n"
    elif not _is_commit(rev):
        raise UserError(
            f"BASE_REV={rev!r} is not a commit of this repository; use e.g. "
            f"BASE_REV=HEAD~1, or fetch it first (git fetch origin main)"
        )
    else:
        shown = dvc("metrics", "diff", "--md", rev)
        if shown.returncode != 0:
            first = (shown.stderr.strip().splitlines() or ["no output"])[0]
            raise UserError(f"dvc metrics diff --md {rev} failed: {first}")
        table = [line for line in shown.stdout.splitlines() if line.startswith("|")]
        body = shown.stdout.strip() + "\n" if len(table) > 2 else "No metric changed.\n"
    text = f"### Metrics vs `{rev}`\n\n{body}"
    if gate_report is not None and gate_report.exists():
        try:
            text += "\n" + gate_markdown(json.loads(gate_report.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(
                f"{gate_report}: not a gate report ({type(err).__name__}); rerun "
                "`python -m cd4ml.gate compare`"
            ) from None
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("wrote %s", out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("check", "compare the challenger with the champion; fail unless it is better"),
        ("promote", "check, then write the challenger's roc_auc into baseline.txt"),
        ("compare", "write the comparison to metrics/gate.json (never fails on the verdict)"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--challenger", type=Path, default=Path("models/bundle"))
        cmd.add_argument(
            "--champion",
            type=Path,
            default=Path("models/champion"),
            help="the released bundle (make champion); absent: baseline.txt decides",
        )
        cmd.add_argument(
            "--rows", type=Path, default=Path("clean_data/split/eval.parquet"), help="eval rows"
        )
        cmd.add_argument("--metrics", type=Path, default=Path(metrics.EVAL_METRICS))
        cmd.add_argument("--baseline", type=Path, default=Path("baseline.txt"))
        cmd.add_argument("--report", type=Path, default=Path("metrics/gate.json"))
        cmd.add_argument("--params", default="params.yaml")
    diff = sub.add_parser("diff", help="show `dvc metrics diff` against the last commit")
    diff.add_argument(
        "--rev",
        help="compare with this commit (default: HEAD, or HEAD~1 when the metrics equal HEAD's)",
    )
    diff.add_argument("--md", type=Path, help="write a Markdown table here instead of printing")
    diff.add_argument(
        "--gate",
        type=Path,
        default=Path("metrics/gate.json"),
        help="add this gate report to the Markdown (when it exists)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "check":
        evaluate_gate(args)
    elif args.command == "promote":
        promote(args)
    elif args.command == "compare":
        print(compare(args).message(), flush=True)
    elif args.md is not None:
        write_markdown_diff(args.rev or "HEAD", args.md, args.gate)
    else:
        show_diff(args.rev)


if __name__ == "__main__":
    run_main(main)
