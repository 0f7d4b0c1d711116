"""cd4ml.report: the offline evaluation page from small real bundles and reports. The page as a
person sees it (headless Chromium, networking off): tests/e2e/test_report.py."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from cd4ml import gate, report
from cd4ml import bundle
from cd4ml.io import write_json, write_parquet
from tests.bundles import ABOUT, fit_featurizer, train
from tests.project import ROOT


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Challenger, a weaker champion with other params, eval rows, metrics, a gate report."""
    folder = tmp_path_factory.mktemp("report")
    fitted = fit_featurizer(folder)
    paths = {}
    for name, shuffled, params in (
        ("challenger", False, {"train": {"model": "xgb", "seed": 1}}),
        ("champion", True, {"train": {"model": "xgb", "seed": 2}}),
    ):
        paths[name] = folder / name
        paths[name].mkdir()
        estimator = train(fitted, "xgb", shuffle_targets=shuffled)
        bundle.write(paths[name], estimator, "xgb", fitted.folder, {**ABOUT, "params": params})
    (folder / "champion.json").write_text(json.dumps({"version": "v0.0.4"}))
    paths["rows"] = folder / "eval.parquet"
    write_parquet(fitted.eval_raw, paths["rows"])
    paths["metrics"] = folder / "eval.json"
    write_json(
        {
            "roc_auc": 0.8,
            "pr_auc": 0.7,
            "log_loss": 0.5,
            "accuracy": 0.7,
            "n_eval": 3,
            "cold_start": {"known": {"rows": 2, "roc_auc": 0.8}},
        },
        paths["metrics"],
    )
    paths["plots"] = folder / "plots"
    paths["plots"].mkdir()
    write_json(
        [{"feature": "te_song", "importance": 0.6}, {"feature": "bd", "importance": 0.4}],
        paths["plots"] / "feature_importance.json",
    )
    paths["validation"] = folder / "data_validation.json"
    shutil.copy(ROOT / "metrics" / "data_validation.json", paths["validation"])
    paths["gate"] = folder / "gate.json"
    settings = gate.params.load(ROOT / "params.yaml").gate
    verdict = gate.compare_bundles(paths["challenger"], paths["champion"], paths["rows"], settings)
    write_json(verdict.report(), paths["gate"])
    return paths


def _argv(inputs, out, **change) -> list[str]:
    paths = {**inputs, **change}
    keys = ("challenger", "champion", "rows", "metrics", "gate", "validation", "plots")
    return [
        "--out",
        str(out),
        *[f"--{k}={paths[k]}" for k in keys],
        f"--monitor={paths.get('monitor', out.parent / 'none.json')}",
    ]


def test_the_page_holds_every_section_and_the_verdict(inputs, tmp_path):
    out = tmp_path / "index.html"
    report.main(_argv(inputs, out))
    page = out.read_text()
    for key, title in report.SECTIONS.items():
        assert f'<section id="{key}"><h2>{title}</h2>' in page
    verdict = json.loads(inputs["gate"].read_text())
    assert verdict["passed"] and '<span class="pass" id="verdict-line">gate passed: ' in page
    assert "kkbox-recommender@v0.0.4" in page and "paired bootstrap" in page
    # Params that differ from the champion's, and both models on the curves.
    assert "<td>train.seed</td><td>1</td><td>2</td>" in page


def test_the_page_needs_no_network(inputs, tmp_path):
    out = tmp_path / "index.html"
    report.main(_argv(inputs, out))
    page = out.read_text()
    assert "<script" not in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) >= 2  # the curves and the importance


def test_the_same_inputs_give_the_same_page(inputs, tmp_path):
    report.main(_argv(inputs, tmp_path / "a.html"))
    report.main(_argv(inputs, tmp_path / "b.html"))
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


def test_without_a_champion_or_reports_the_page_says_so(inputs, tmp_path):
    out = tmp_path / "index.html"
    missing = tmp_path / "nothing"
    report.main(
        _argv(
            inputs, out, champion=missing, gate=missing / "g.json", validation=missing / "v.json"
        )
    )
    page = out.read_text()
    assert "no gate report yet" in page and "no champion bundle to compare" in page
    assert "no data validation report" in page and "no monitoring report" in page


def test_a_production_section_comes_from_the_monitor_report(inputs, tmp_path):
    monitor = tmp_path / "monitor.json"
    write_json(
        {
            "overall": {
                "rows": 1200,
                "unknown_member_share": 0.01,
                "unknown_song_share": 0.02,
                "mean_probability": 0.44,
                "category_tvd": {"source_type": 0.03},
            },
            "model_versions": ["v0.0.4"],
            "anomalies": [],
            "live": {"roc_auc": 0.71},
            "eval_roc_auc": 0.72,
        },
        monitor,
    )
    out = tmp_path / "index.html"
    report.main(_argv(inputs, out, monitor=monitor))
    page = out.read_text()
    assert "<td>logged rows in the window</td><td>1,200</td>" in page
    assert "<td>live ROC AUC</td><td>0.7100</td>" in page and "within every threshold" in page


def test_params_diff_lists_changed_added_and_removed_keys():
    new = {"train": {"seed": 1, "xgb": {"depth": 8}}, "split": {"f": 0.2}}
    old = {"train": {"seed": 1, "xgb": {"depth": 6}}, "gone": 3}
    assert report.params_diff(new, old) == [
        ("gone", None, 3),
        ("split.f", 0.2, None),
        ("train.xgb.depth", 8, 6),
    ]


def test_a_damaged_report_file_is_one_line(inputs, tmp_path):
    bad = tmp_path / "gate.json"
    bad.write_text("{not json")
    with pytest.raises(report.UserError, match=r"gate.json: not valid JSON"):
        report.main(_argv(inputs, tmp_path / "index.html", gate=bad))
