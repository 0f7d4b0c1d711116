"""What each feature group earns: the model retrained without each group of features, its eval
ROC AUC against the model with every feature on the same rows (paired bootstrap interval), its
training time and its model's bytes.

The examples are split as the split stage splits them (params.yaml's split), featurised once by
the problem's fit (preprocess) and every model is of train.model's kind with its settings and
seed, stopped early on the valid features, as the train stage fits it; the interval is the
gate's paired bootstrap (gate.bootstrap_rounds, confidence, seed). A group is dropped from the
model's features only: the problem's featurizer still computes it, so the featurizing time (and
the featurizer's bytes in a bundle) is measured once, for every group together.

Groups: the problem's `feature_groups` (group -> feature names) where it has one, else a YAML
file given with --groups (group -> names or fnmatch patterns), else the features' name prefixes
(the part before the first "_").

    python -m tools.ablation --data data --out reports/ablation [--groups groups.yaml]
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cd4ml import metrics, params
from cd4ml.gate import Gate
from cd4ml.io import UserError, atomic_path, run_main, write_json
from cd4ml.model import read_features
from cd4ml.split import Split, split
from tools import retrain

log = logging.getLogger("ablation")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="the raw tables")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("reports/ablation"))
    parser.add_argument("--groups", type=Path, help="YAML: group -> feature names or patterns")
    parser.add_argument("--work", type=Path, help="work folder (default: a temp folder)")
    return parser.parse_args(argv)


def prefix_groups(names: list[str]) -> dict[str, list[str]]:
    """Features grouped by their name's prefix (the part before the first "_")."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split("_", 1)[0], []).append(name)
    return groups


def read_groups(path: Path) -> dict[str, list[str]]:
    """A groups file: a YAML mapping of group names to lists of feature names or patterns."""
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: groups file not found") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    ok = isinstance(spec, dict) and all(
        isinstance(v, list) and v and all(isinstance(p, str) for p in v) for v in spec.values()
    )
    if not ok:
        raise UserError(f"{path}: must map each group to a list of feature names or patterns")
    return {str(group): list(patterns) for group, patterns in spec.items()}


def resolve(spec: Mapping[str, list[str]], names: list[str], where: str) -> dict[str, list[str]]:
    """Each group's features, in the features' order; refused: a pattern that matches no
    feature, a feature in two groups, a group of every feature."""
    groups: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for group, patterns in spec.items():
        found = []
        for pattern in patterns:
            matched = fnmatch.filter(names, pattern)
            if not matched:
                raise UserError(
                    f"{where}: group {group!r}: {pattern!r} matches none of the features "
                    f"({', '.join(names)})"
                )
            found += matched
        for name in found:
            if owner.setdefault(name, group) != group:
                raise UserError(
                    f"{where}: feature {name!r} is in groups {owner[name]!r} and {group!r}"
                )
        groups[group] = [n for n in names if n in found]
        if len(groups[group]) == len(names):
            raise UserError(f"{where}: group {group!r} holds every feature: nothing to train on")
    return groups


def feature_groups(problem: Any, names: list[str], path: Path | None) -> tuple[dict, str]:
    """The groups to drop one at a time and where they come from."""
    if path is not None:
        return resolve(read_groups(path), names, str(path)), str(path)
    own = getattr(problem, "feature_groups", None)
    if own is not None:
        where = f"{problem.name}'s feature_groups"
        return resolve(dict(own() if callable(own) else own), names, where), where
    return resolve(prefix_groups(names), names, "name prefixes"), "name prefixes"


def verdict(low: float, high: float) -> str:
    """What the interval of (without the group - with it) says the group does."""
    if high < 0:
        return "earns its place"
    if low > 0:
        return "hurts"
    return "no clear effect"


def _rounded(value: float) -> float:
    return round(value, 4) + 0.0  # + 0.0: no "-0.0000"


def markdown(report: dict[str, Any]) -> str:
    """The table, the groups that earn most first."""
    full = report["all_features"]
    lines = [
        f"{report['problem']}, {report['model']} kind: eval ROC AUC with every feature "
        f"{full['roc_auc']:.4f} ({full['features']} features, {report['eval_rows']:,} eval rows; "
        f"trained in {full['train_seconds']:.1f} s, model {full['model_bytes']:,} bytes). "
        f"Featurizing: {report['featurize_seconds']:.1f} s and {report['featurizer_bytes']:,} "
        "featurizer bytes for every group together (the featurizer computes each group; "
        f"dropping one from the model saves none of it). Groups from {report['groups_from']}; "
        f"intervals: paired bootstrap, {report['rounds']} rounds, {report['confidence']:.0%}.",
        "",
        "| group | features | ROC AUC without | change | interval | verdict | train s "
        "| model bytes |",
        "|---|---|---:|---:|---|---|---:|---:|",
    ]
    for r in sorted(report["groups"], key=lambda r: r["difference"]):
        lines.append(
            f"| {r['group']} | {', '.join(r['features'])} | {r['roc_auc']:.4f} | "
            f"{r['difference']:+.4f} | [{r['interval_low']:+.4f}, {r['interval_high']:+.4f}] | "
            f"{r['verdict']} | {r['train_seconds']:.1f} | {r['model_bytes']:,} |"
        )
    return "\n".join(lines) + "\n"


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Featurise once, train with every feature, then without each group: the report."""
    problem = params.problem(args.params)
    settings = retrain.train_settings(problem, args.params)
    gate = params.section(args.params, "gate", Gate)
    log.info("step 1: reading the examples of %s", args.data)
    examples, truth = retrain.read_examples(args.data, problem)
    parts = split(examples, truth, params.section(args.params, "split", Split))
    log.info("step 2: featurising (%s rows)", f"{examples.num_rows:,}")
    featurize_s = retrain.featurize(problem, args.data, parts, args.params, work)
    features = work / "features"
    frames = {p: read_features(features / f"{p}.parquet") for p in ("train", "valid", "eval")}
    names = list(frames["train"][0].columns)
    groups, where = feature_groups(problem, names, args.groups)
    log.info("%d groups from %s: %s", len(groups), where, ", ".join(groups))
    log.info("step 3: training with all %d features", len(names))
    fitted, info, train_s = retrain.fit_frames(problem, settings, frames["train"], frames["valid"])
    y = frames["eval"][1]
    p_all = fitted.predict(frames["eval"][0])
    full = {
        "features": len(names),
        "roc_auc": round(metrics.roc_auc(y, p_all), 4),
        "train_seconds": round(train_s, 1),
        "model_bytes": retrain.model_bytes(fitted, work),
        "fit": info,
    }
    log.info("all features: ROC AUC %.4f, %.1f s", full["roc_auc"], train_s)
    rows = []
    for i, (group, dropped) in enumerate(groups.items(), start=1):
        log.info("step 4.%d/%d: without %s (%s)", i, len(groups), group, ", ".join(dropped))
        x = {part: frame[0].drop(columns=dropped) for part, frame in frames.items()}
        built, info, seconds = retrain.fit_frames(
            problem, settings, (x["train"], frames["train"][1]), (x["valid"], frames["valid"][1])
        )
        p = built.predict(x["eval"])
        paired = metrics.paired_auc_difference(
            y, p, p_all, gate.bootstrap_rounds, gate.confidence, gate.seed
        )
        low, high = paired["interval_low"], paired["interval_high"]
        rows.append(
            {
                "group": group,
                "features": dropped,
                "roc_auc": round(paired["challenger_roc_auc"], 4),
                "difference": _rounded(paired["difference"]),
                "interval_low": _rounded(low),
                "interval_high": _rounded(high),
                "verdict": verdict(low, high),
                "train_seconds": round(seconds, 1),
                "model_bytes": retrain.model_bytes(built, work),
                "fit": info,
            }
        )
        log.info(
            "without %s: ROC AUC %+.4f [%+.4f, %+.4f]", group, rows[-1]["difference"], low, high
        )
    return {
        "problem": problem.name,
        "model": settings.model,
        "seed": settings.seed,
        "examples": examples.num_rows,
        "eval_rows": len(y),
        "featurize_seconds": round(featurize_s, 1),
        "featurizer_bytes": retrain.folder_bytes(features / "featurizer"),
        "groups_from": where,
        "rounds": gate.bootstrap_rounds,
        "confidence": gate.confidence,
        "bootstrap_seed": gate.seed,
        "all_features": full,
        "groups": rows,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.groups is not None and not args.groups.is_file():
        raise UserError(f"{args.groups}: groups file not found")
    with tempfile.TemporaryDirectory(prefix="ablation-") as tmp:
        report = measure(args, args.work or Path(tmp))
    write_json(report, args.out / "ablation.json")
    with atomic_path(args.out / "ablation.md") as tmp_md:
        tmp_md.write_text(markdown(report), encoding="utf-8")
    log.info("wrote %s/ablation.{json,md}", args.out)
    print(markdown(report), end="")


if __name__ == "__main__":
    run_main(main)
