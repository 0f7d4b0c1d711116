"""tools.ablation: feature groups (the problem's, a file's, the name prefixes), the verdict and
the table (pure), one clear line for bad input, and the tool on tiny synthetic data (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from cd4ml import params
from cd4ml.io import UserError
from kkbox import PROBLEM, features, synth
from tests.project import ROOT, project_env
from tools import ablation

NAMES = ["src_tab", "src_type", "age", "te_user", "te_item", "te_user_item"]


def test_features_are_grouped_by_their_name_prefix():
    assert ablation.prefix_groups(NAMES) == {
        "src": ["src_tab", "src_type"],
        "age": ["age"],
        "te": ["te_user", "te_item", "te_user_item"],
    }


def test_patterns_resolve_to_features_in_their_order():
    spec = {"source": ["src_*"], "user": ["te_user_item", "te_user", "age"]}
    assert ablation.resolve(spec, NAMES, "groups.yaml") == {
        "source": ["src_tab", "src_type"],
        "user": ["age", "te_user", "te_user_item"],
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"a": ["nope_*"]}, r"groups\.yaml: group 'a': 'nope_\*' matches none of the features"),
        ({"a": ["te_*"], "b": ["te_user"]}, r"feature 'te_user' is in groups 'a' and 'b'"),
        ({"all": ["*"]}, r"group 'all' holds every feature: nothing to train on"),
    ],
)
def test_a_bad_group_is_refused(spec, message):
    with pytest.raises(UserError, match=message):
        ablation.resolve(spec, NAMES, "groups.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [b\n", "not valid YAML"),
        ("- a\n- b\n", "must map each group to a list"),
        ("a: []\n", "must map each group to a list"),
        ("a: src_tab\n", "must map each group to a list"),
    ],
)
def test_a_bad_groups_file_is_one_line(tmp_path: Path, text: str, message: str):
    path = tmp_path / "groups.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        ablation.read_groups(path)


def test_a_file_comes_first_then_the_problem_then_the_prefixes(tmp_path: Path):
    path = tmp_path / "groups.yaml"
    path.write_text("source: [src_*]\n")
    own = SimpleNamespace(name="toy", feature_groups={"items": ["te_item"]})
    assert ablation.feature_groups(own, NAMES, path) == (
        {"source": ["src_tab", "src_type"]},
        str(path),
    )
    assert ablation.feature_groups(own, NAMES, None) == (
        {"items": ["te_item"]},
        "toy's feature_groups",
    )
    plain = SimpleNamespace(name="plain")
    assert ablation.feature_groups(plain, NAMES, None)[1] == "name prefixes"


def test_the_kkbox_groups_put_every_feature_in_one_group():
    groups, where = ablation.feature_groups(PROBLEM, features.FEATURES, None)
    assert where == "kkbox-recommender's feature_groups"
    assert sorted(n for names in groups.values() for n in names) == sorted(features.FEATURES)
    assert {"source", "member", "song", "artist", *features.TARGET_KEYS} <= set(groups)


def test_the_verdict_reads_the_interval():
    assert ablation.verdict(-0.02, -0.01) == "earns its place"
    assert ablation.verdict(-0.01, 0.01) == "no clear effect"
    assert ablation.verdict(0.001, 0.01) == "hurts"


def test_the_table_shows_the_groups_that_earn_most_first():
    group = {
        "features": ["x"],
        "roc_auc": 0.7,
        "interval_low": -0.02,
        "interval_high": 0.01,
        "verdict": "no clear effect",
        "train_seconds": 1.0,
        "model_bytes": 1234,
    }
    report = {
        "problem": "toy",
        "model": "xgb",
        "eval_rows": 1000,
        "featurize_seconds": 2.0,
        "featurizer_bytes": 5000,
        "groups_from": "name prefixes",
        "rounds": 100,
        "confidence": 0.95,
        "all_features": {"roc_auc": 0.71, "features": 3, "train_seconds": 1.5, "model_bytes": 9},
        "groups": [
            {**group, "group": "small", "difference": -0.001},
            {**group, "group": "big", "difference": -0.03},
        ],
    }
    text = ablation.markdown(report)
    assert text.index("| big |") < text.index("| small |")
    assert (
        "| big | x | 0.7000 | -0.0300 | [-0.0200, +0.0100] | no clear effect | 1.0 | 1,234 |"
        in text
    )
    assert "every feature 0.7100 (3 features, 1,000 eval rows" in text


def test_a_missing_groups_file_is_one_line(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "tools.ablation", "--groups", str(tmp_path / "no.yaml")],
        cwd=ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"error: {tmp_path / 'no.yaml'}: groups file not found"
    )


@pytest.mark.slow
def test_on_tiny_data_each_group_is_measured(tmp_path: Path):
    settings = params.section(ROOT / "params.yaml", "generate", synth.Generate)
    synth.write(
        tmp_path / "data", "tiny", settings.seed, settings.positive_rate, **settings.time_effects()
    )
    fewer = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    fewer["gate"]["bootstrap_rounds"] = 200  # the interval's method, at a fifth of the cost
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(fewer), encoding="utf-8")
    out = tmp_path / "ablation"
    args = ["--data", tmp_path / "data", "--out", out]
    args += ["--params", tmp_path / "params.yaml"]
    ablation.main([*map(str, args)])
    report = json.loads((out / "ablation.json").read_text())
    assert report["eval_rows"] == 6000 and report["all_features"]["features"] == 29
    assert report["rounds"] == 200
    assert report["featurizer_bytes"] > 0 and report["featurize_seconds"] >= 0
    groups = {r["group"]: r for r in report["groups"]}
    assert list(groups) == list(PROBLEM.feature_groups)
    for r in groups.values():
        assert r["interval_low"] <= r["difference"] <= r["interval_high"]
        assert r["model_bytes"] > 0 and r["train_seconds"] >= 0
        assert r["roc_auc"] == pytest.approx(
            report["all_features"]["roc_auc"] + r["difference"], abs=2e-4
        )
    # Where a play comes from (own library, radio, ...) moves the synthetic replay odds most.
    assert groups["source"]["verdict"] == "earns its place"
    text = (out / "ablation.md").read_text()
    assert text.count("\n| ") == 1 + len(groups)  # the header and one row a group


@pytest.mark.slow
def test_the_tool_is_the_loops_it_ablates_the_toy_problem_by_name_prefix(tmp_path: Path):
    settings = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    settings.update(
        problem="tests.toy",
        generate={"seed": 7, "churn_drift": 0.3},
        preprocess={"min_category_count": 5},
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    toy = params.problem(tmp_path / "params.yaml")
    toy.synthesize(
        tmp_path / "data",
        "tiny",
        params.problem_section(toy, "generate", tmp_path / "params.yaml"),
    )
    out = tmp_path / "ablation"
    args = ["--data", tmp_path / "data", "--params", tmp_path / "params.yaml", "--out", out]
    ablation.main([*map(str, args)])
    report = json.loads((out / "ablation.json").read_text())
    assert report["problem"] == toy.name and report["groups_from"] == "name prefixes"
    dropped = sorted(n for r in report["groups"] for n in r["features"])
    assert len(dropped) == report["all_features"]["features"]
