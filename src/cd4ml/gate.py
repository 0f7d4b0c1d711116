"""Release gate: the challenger (models/bundle) must beat the champion before it is promoted.

    python -m cd4ml.gate check     # compare, write metrics/gate.json, fail unless it passes
    python -m cd4ml.gate promote   # check, then write the challenger's roc_auc into baseline.txt
    python -m cd4ml.gate compare   # write metrics/gate.json only (never fails on the verdict)
    python -m cd4ml.gate diff      # show what moved: `dvc metrics diff` against the last commit

The champion is the released prod bundle in models/champion (`make champion` fetches it from
the registry): both bundles score the same eval rows, from raw rows, and a paired bootstrap gives
the interval of the difference. Without a released bundle the champion is baseline.txt's number
(the released model's roc_auc) against eval/metrics.json's.

Not a DVC stage on purpose: promoting rewrites baseline.txt, which would invalidate the pipeline.
It runs after `dvc repro`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from cd4ml import bundle, metrics, params
from cd4ml import problem as problems
from cd4ml.io import UserError, atomic_path, read_parquet, run_main, write_json
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

    @property
    def diff(self) -> float:
        # Rounded so that float noise (0.8 - 0.79 = 0.010000000000000009) cannot decide.
        return round(self.new - self.baseline, 12)

    @property
    def by_interval(self) -> bool:
        """True when the interval's low end decides too (gate.decide_on: lower_bound)."""
        return self.decide_on == "lower_bound" and self.interval is not None

    @property
    def passed(self) -> bool:
        if self.by_interval and not round(self.interval[0], 12) > self.min_improvement:
            return False
        return self.diff > self.min_improvement

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
        if self.passed:
            bound = "it and its interval's low end beat" if self.by_interval else "more than"
            return (
                f"gate passed: {METRIC} {self.new:.4f} beats {against} by "
                f"{_signed(self.diff)} ({bound} gate.min_improvement "
                f"{self.min_improvement:.4f}{self._interval_text()})"
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
            f"{hint}"
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
    """Both bundles score the same raw eval rows; the paired bootstrap gives the interval."""
    scorers = bundle.load(challenger, problem), bundle.load(champion, problem)
    rows = read_parquet(rows_path)
    target = problem.contract.target
    if target not in rows.column_names:
        raise UserError(
            f"{rows_path}: no column {target!r}: not the eval rows of {problem.name} "
            "(the split stage's eval.parquet)"
        )
    y = rows[target].to_numpy()
    p_new, p_old = (scorer.predict_proba(rows) for scorer in scorers)
    result = metrics.paired_auc_difference(
        y, p_new, p_old, settings.bootstrap_rounds, settings.confidence, settings.seed
    )
    return Verdict(
        result["challenger_roc_auc"],
        result["champion_roc_auc"],
        settings.min_improvement,
        _champion_name(champion, problem.name),
        (result["interval_low"], result["interval_high"]),
        settings.confidence,
        result["n_rows"],
        settings.decide_on,
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
        ("eval rows", str(report["n_rows"] or "-")),
        ("verdict", "passed" if report["passed"] else "failed"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"### Gate: challenger vs champion ({METRIC})\n\n| | |\n|---|---|\n{table}\n"


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
