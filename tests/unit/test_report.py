"""cd4ml.report: the offline evaluation page (Jinja2, autoescaped) from small real bundles and
reports. The page as a person sees it (headless Chromium, networking off):
tests/e2e/test_report.py."""

from __future__ import annotations

import html
import json
import re
import shutil

import pytest

from cd4ml import gate, params, plots, report, signing
from cd4ml.io import UserError, write_json, write_parquet
from kkbox import PROBLEM
from tests.bundles import ABOUT, fit_featurizer, train, write_bundle
from tests.project import ROOT, release_keys, sign

# Every section of templates/report.html, by id, with its heading.
SECTIONS = {
    "verdict": "Gate: challenger against champion",
    "metrics": "Eval metrics",
    "curves": "ROC, precision-recall and calibration",
    "importance": "Feature importance",
    "data": "Data validation",
    "history": "ROC AUC per data version",
    "slices": "Slices",
    "provenance": "Provenance",
    "production": "Production",
}
SLICES = {
    "known": {"rows": 380, "roc_auc": 0.81},
    "new_member": {"rows": 12, "roc_auc": 0.7},
    "both_new": {"rows": 3, "roc_auc": None},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Challenger, a weaker champion with other params, eval rows, DVCLive's eval folder
    (metrics, feature importance, the slices' picture), a validation and a gate report."""
    folder = tmp_path_factory.mktemp("report")
    fitted = fit_featurizer(folder)
    paths = {}
    for name, shuffled, seed in (("challenger", False, 1), ("champion", True, 2)):
        about = {**ABOUT, "build": {**ABOUT["build"], "params": {"train": {"seed": seed}}}}
        trained = train(fitted, "xgb", shuffle_targets=shuffled)
        paths[name] = write_bundle(folder / name, fitted, trained, about)
    sign(paths["champion"])  # fetched from the registry: a signed release
    (folder / "champion.json").write_text(json.dumps({"version": "v0.0.4"}))
    paths["rows"] = folder / "eval.parquet"
    write_parquet(fitted.eval_raw, paths["rows"])
    paths["eval"] = folder / "eval"
    paths["metrics"] = paths["eval"] / "metrics.json"
    paths["metrics"].parent.mkdir()
    write_json(
        {
            "roc_auc": 0.8,
            "pr_auc": 0.7,
            "log_loss": 0.5,
            "accuracy": 0.7,
            "n_eval": 3,
            "slices": SLICES,
        },
        paths["metrics"],
    )
    custom = paths["eval"] / "plots" / "custom"
    custom.mkdir(parents=True)
    write_json(
        [{"feature": "te_song", "importance": 0.6}, {"feature": "bd", "importance": 0.4}],
        custom / "feature_importance.json",
    )
    plots.save(plots.slices(SLICES, 395), paths["eval"] / "plots" / "images" / "slices.png")
    paths["validation"] = folder / "data_validation.json"
    shutil.copy(ROOT / "metrics" / "data_validation.json", paths["validation"])
    paths["gate"] = folder / "gate.json"
    settings = params.section(ROOT / "params.yaml", "gate", gate.Gate)
    with pytest.MonkeyPatch.context() as patch:  # the release key's public half
        patch.setenv(signing.PUBLIC_KEY_ENV, str(release_keys()[1]))
        verdict = gate.compare_bundles(
            PROBLEM, paths["challenger"], paths["champion"], paths["rows"], settings
        )
    write_json(verdict.report(), paths["gate"])
    paths["params"] = ROOT / "params.yaml"
    return paths


def _argv(inputs, out, **change) -> list[str]:
    paths = {**inputs, **change}
    keys = ("challenger", "champion", "rows", "metrics", "eval", "gate", "validation", "params")
    return [
        "--out",
        str(out),
        *[f"--{k}={paths[k]}" for k in keys],
        f"--monitor={paths.get('monitor', out.parent / 'none.json')}",
    ]


def _page(inputs, tmp_path, **change) -> str:
    out = tmp_path / "index.html"
    report.main(_argv(inputs, out, **change))
    return out.read_text(encoding="utf-8")


def test_the_page_holds_every_section_and_the_verdict(inputs, tmp_path):
    page = _page(inputs, tmp_path)
    assert re.findall(r'<section id="([^"]+)">', page) == list(SECTIONS)
    for key, title in SECTIONS.items():
        assert f'<section id="{key}"><h2>{title}</h2>' in page
    assert page.startswith("<!DOCTYPE html>") and f"<h1>{PROBLEM.name}: evaluation report" in page
    verdict = json.loads(inputs["gate"].read_text())
    assert verdict["passed"]
    assert f'<span class="pass" id="verdict-line">{html.escape(verdict["message"])}</span>' in page
    assert "kkbox-recommender@v0.0.4" in page and "paired bootstrap" in page
    # Params that differ from the champion's (from each bundle's build), and the provenance
    assert "<td>train.seed</td><td>1</td><td>2</td>" in page
    assert f"<td>{ABOUT['build']['sha256']}</td>" in page
    assert "<td>model</td><td>xgb</td>" in page and "<td>data version</td><td>x</td>" in page


def test_the_eval_metrics_and_the_slices_come_from_dvclives_folder(inputs, tmp_path):
    page = _page(inputs, tmp_path)
    assert "<td>roc_auc</td><td>0.8000</td>" in page and "<td>n_eval</td><td>3</td>" in page
    assert "<td>known</td><td>380</td><td>0.8100</td>" in page
    assert "<td>both_new</td><td>3</td><td>-</td>" in page  # one class: no AUC
    slices = (inputs["eval"] / "plots" / "images" / "slices.png").read_bytes()
    assert f'alt="ROC AUC by slice" src="data:image/png;base64,{_b64(slices)}"' in page


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def test_the_page_needs_no_network(inputs, tmp_path):
    page = _page(inputs, tmp_path)
    assert "<script" not in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == 3  # the curves, the importance and the slices


def test_the_same_inputs_give_the_same_page(inputs, tmp_path):
    report.main(_argv(inputs, tmp_path / "a.html"))
    report.main(_argv(inputs, tmp_path / "b.html"))
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


def test_text_from_the_reports_is_escaped(inputs, tmp_path):
    verdict = json.loads(inputs["gate"].read_text())
    hostile = "<script>alert(1)</script>"
    verdict.update(champion=f"champion {hostile}", message=f"gate passed: {hostile} & more")
    gate_file = tmp_path / "gate.json"
    write_json(verdict, gate_file)
    monitor = tmp_path / "monitor.json"
    write_json(
        {
            "overall": {
                "rows": 10,
                "flag_shares": {"unknown_member": 0.5},
                "mean_probability": 0.4,
                "category_tvd": {},
            },
            "anomalies": [{"kind": "unknown_member", "message": '<img src="x">'}],
        },
        monitor,
    )
    page = _page(inputs, tmp_path, gate=gate_file, monitor=monitor)
    assert hostile not in page and "<script" not in page and '<img src="x">' not in page
    assert "gate passed: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "champion: champion &lt;script&gt;" in page
    assert "&lt;img src=&#34;x&#34;&gt;" in page


def test_without_a_champion_or_reports_the_page_says_so(inputs, tmp_path):
    missing = tmp_path / "nothing"
    page = _page(
        inputs,
        tmp_path,
        champion=missing,
        gate=missing / "g.json",
        validation=missing / "v.json",
        eval=missing,
    )
    for key, title in SECTIONS.items():  # every section still there
        assert f'<section id="{key}"><h2>{title}</h2>' in page
    assert "no gate report yet" in page and "no champion bundle to compare" in page
    assert "no data validation report" in page and "no monitoring report" in page
    assert '<section id="importance"><h2>Feature importance</h2><p>none</p>' in page
    assert '<p class="note">no picture</p>' in page  # no slices picture
    assert len(re.findall(r'src="data:image/png', page)) == 1  # the challenger's curves


def test_a_production_section_comes_from_the_monitor_report(inputs, tmp_path):
    monitor = tmp_path / "monitor.json"
    write_json(
        {
            "overall": {
                "rows": 1200,
                "flag_shares": {"unknown_member": 0.01, "unknown_song": 0.02},
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
    page = _page(inputs, tmp_path, monitor=monitor)
    assert "<td>logged rows in the window</td><td>1,200</td>" in page
    assert "<td>share of rows: unknown song</td><td>0.0200</td>" in page
    assert "<td>source_type mix TVD</td><td>0.0300</td>" in page
    assert "<td>live ROC AUC</td><td>0.7100</td>" in page and "within every threshold" in page


def test_params_diff_lists_changed_added_and_removed_keys():
    new = {"train": {"seed": 1, "xgb": {"depth": 8}}, "split": {"f": 0.2}}
    old = {"train": {"seed": 1, "xgb": {"depth": 6}}, "gone": 3}
    assert report.params_diff(new, old) == [
        ("gone", None, 3),
        ("split.f", 0.2, None),
        ("train.xgb.depth", 8, 6),
    ]


def test_cells_are_formatted_for_reading():
    assert [report.cell(v) for v in (0.123456, 12345, None, True, "x")] == [
        "0.1235",
        "12,345",
        "-",
        "True",
        "x",
    ]


def test_a_damaged_report_file_is_one_line(inputs, tmp_path):
    bad = tmp_path / "gate.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match=r"gate\.json: not valid JSON") as err:
        report.main(_argv(inputs, tmp_path / "index.html", gate=bad))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "index.html").exists()


def test_the_gates_slice_and_serving_cost_tables_are_on_the_page(inputs, tmp_path):
    page = _page(inputs, tmp_path)
    verdict = json.loads(inputs["gate"].read_text())
    assert '<h3 id="gate-slices">The gate per slice: challenger against champion</h3>' in page
    for row in verdict["slices"]["table"]:
        assert f"<tr><td>{html.escape(row['slice'])}</td><td>{row['rows']}</td>" in page
    assert "<th>slice</th><th>eval rows</th><th>challenger</th><th>champion</th>" in page
    assert "<h3>Serving cost: challenger against champion</h3>" in page
    for row in verdict["serving_cost"]["measures"]:
        cells = f"<tr><td>{html.escape(row['measure'])}</td><td>{row['challenger']:.2f}</td>"
        assert cells in page
