"""Release gate: the new model must beat the released one (baseline.txt) before it is promoted.

    python -m cd4ml.gate check     # compare metrics/eval.json's roc_auc with baseline.txt
    python -m cd4ml.gate promote   # check, then write the new roc_auc into baseline.txt
    python -m cd4ml.gate diff      # show what moved: `dvc metrics diff` against the last commit

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

from cd4ml.shell import dvc, git
from kkbox import params
from kkbox.io import UserError, atomic_path, run_main

log = logging.getLogger("gate")

METRIC = "roc_auc"


@dataclass
class Verdict:
    """The outcome of comparing a new score with the baseline."""

    new: float
    baseline: float
    min_improvement: float

    @property
    def diff(self) -> float:
        # Rounded so that float noise (0.8 - 0.79 = 0.010000000000000009) cannot decide.
        return round(self.new - self.baseline, 12)

    @property
    def passed(self) -> bool:
        return self.diff > self.min_improvement

    def message(self) -> str:
        """One line: pass, or fail with the values, the difference and what to do."""
        if self.passed:
            return (
                f"gate passed: {METRIC} {self.new:.4f} beats baseline {self.baseline:.4f} "
                f"by {_signed(self.diff)} (more than gate.min_improvement "
                f"{self.min_improvement:.4f})"
            )
        if self.diff == 0:
            hint = (
                "it scores the same as the released model (already promoted?); improve the "
                "model or data"
            )
        elif self.diff > 0:
            hint = "improve the model or data, or lower gate.min_improvement in params.yaml"
        else:
            hint = "improve the model or data; baseline.txt holds the released model's score"
        return (
            f"gate failed: {METRIC} {self.new:.4f} does not beat baseline "
            f"{self.baseline:.4f} by more than {self.min_improvement:.4f} "
            f"(diff {_signed(self.diff)}); {hint}"
        )


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


def read_min_improvement(params_path: str) -> float:
    """gate.min_improvement from params.yaml: how much better a new model must be."""
    return params.load(params_path).gate.min_improvement


def evaluate_gate(args: argparse.Namespace) -> Verdict:
    """Read the three inputs and compare; raise a UserError with one line when it fails."""
    verdict = Verdict(
        read_new_score(args.metrics),
        read_baseline(args.baseline),
        read_min_improvement(args.params),
    )
    if not verdict.passed:
        raise UserError(verdict.message())
    print(verdict.message(), flush=True)
    return verdict


def promote(args: argparse.Namespace) -> None:
    """Pass the gate, then make the new score the baseline (atomically)."""
    verdict = evaluate_gate(args)
    with atomic_path(args.baseline) as tmp:
        tmp.write_text(f"{verdict.new!r}\n", encoding="utf-8")
    print(
        f"promoted: {args.baseline} {verdict.baseline:.4f} -> {verdict.new:.4f}; "
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


def write_markdown_diff(rev: str, out: Path) -> None:
    """Write `dvc metrics diff --md <rev>` to `out` (atomically), with a heading."""
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
        body = shown.stdout.strip() + "\n" if shown.stdout.strip() else "No metric changed.\n"
    with atomic_path(out) as tmp:
        tmp.write_text(f"### Metrics vs `{rev}`\n\n{body}", encoding="utf-8")
    log.info("wrote %s", out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("check", "compare the new roc_auc with baseline.txt"),
        ("promote", "check, then write the new roc_auc into baseline.txt"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
        cmd.add_argument("--baseline", type=Path, default=Path("baseline.txt"))
        cmd.add_argument("--params", default="params.yaml")
    diff = sub.add_parser("diff", help="show `dvc metrics diff` against the last commit")
    diff.add_argument(
        "--rev",
        help="compare with this commit (default: HEAD, or HEAD~1 when the metrics equal HEAD's)",
    )
    diff.add_argument("--md", type=Path, help="write a Markdown table here instead of printing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "check":
        evaluate_gate(args)
    elif args.command == "promote":
        promote(args)
    elif args.md is not None:
        write_markdown_diff(args.rev or "HEAD", args.md)
    else:
        show_diff(args.rev)


if __name__ == "__main__":
    run_main(main)
