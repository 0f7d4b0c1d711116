"""cd4ml.monitor on log files written by the real PredictionLog: clean traffic passes, drifted
traffic is flagged with the right measure, the label join gives the AUC of the same rows, and
bad logs give one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from cd4ml import monitor, predlog
from cd4ml import bundle, metrics
from cd4ml.io import UserError, run_main, write_parquet
from tests.bundles import fit_featurizer, train, write_bundle
from tests.project import ROOT


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[bundle.Scorer, pa.Table, Path]:
    """A small bundle with its training profile, its raw eval rows (with targets), a params
    file whose monitor needs only a few rows."""
    folder = tmp_path_factory.mktemp("monitor")
    fitted = fit_featurizer(folder)
    path = write_bundle(folder / "bundle", fitted, train(fitted, "xgb"), "xgb")
    scorer = bundle.load(path)
    settings = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    settings["monitor"]["min_rows"] = 50
    settings["monitor"]["buckets"] = 3
    params_path = folder / "params.yaml"
    params_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return scorer, fitted.eval_raw, params_path


def _log(folder: Path, scorer: bundle.Scorer, rows: pa.Table) -> str:
    log = predlog.PredictionLog(str(folder), rows_per_file=100).start()
    plays = bundle.plays(rows)
    scored = scorer.score(plays)
    log.add(plays, scored, "v0.0.1", [None] * plays.num_rows)
    log.close()
    return str(folder)


def _run(served, log: str, tmp_path: Path, *extra: str) -> list[str]:
    scorer, _, params_path = served
    argv = [
        "--log",
        log,
        "--bundle",
        str(scorer.path),
        "--params",
        str(params_path),
        "--out",
        str(tmp_path / "monitor.json"),
        "--plots",
        str(tmp_path / "plots"),
        *extra,
    ]
    return argv


def test_the_bundle_holds_its_training_profile(served):
    scorer, _, _ = served
    profile = json.loads((scorer.path / "profile.json").read_text())
    assert set(profile["tables"]["plays"]["categories"]) == {
        "source_system_tab",
        "source_screen_name",
        "source_type",
    }
    assert 0 < profile["positive_rate"] < 1
    assert 0 < profile["eval"]["unknown_member_share"] < 0.1


def test_traffic_like_the_training_data_passes(served, tmp_path, capsys):
    scorer, rows, _ = served
    log = _log(tmp_path / "log", scorer, rows)
    run_main(monitor.main, _run(served, log, tmp_path))
    assert capsys.readouterr().out.startswith("monitor passed: ")
    report = json.loads((tmp_path / "monitor.json").read_text())
    assert report["passed"] and report["overall"]["rows"] == rows.num_rows
    assert report["model_versions"] == ["v0.0.1"] and len(report["buckets"]) >= 1
    assert (tmp_path / "plots" / "monitor.png").stat().st_size > 10_000


def test_a_changed_source_mix_is_flagged_by_its_measure(served, tmp_path, capsys):
    scorer, rows, _ = served
    drifted = rows.set_column(
        rows.schema.get_field_index("source_system_tab"),
        "source_system_tab",
        pa.array(["radio"] * rows.num_rows),
    )
    log = _log(tmp_path / "log", scorer, drifted)
    with pytest.raises(SystemExit):
        run_main(monitor.main, _run(served, log, tmp_path))
    line = capsys.readouterr().err.strip().splitlines()[0]
    assert line.startswith("error: monitor: drift: plays: column 'source_system_tab' ")
    report = json.loads((tmp_path / "monitor.json").read_text())
    kinds = {(a["kind"], a["column"]) for a in report["anomalies"]}
    assert ("category_mix", "source_system_tab") in kinds and not report["passed"]


def test_many_unknown_members_are_flagged(served, tmp_path, capsys):
    scorer, rows, _ = served
    strangers = rows.set_column(0, "msno", pa.array([f"new-{i}" for i in range(rows.num_rows)]))
    log = _log(tmp_path / "log", scorer, strangers)
    with pytest.raises(SystemExit):
        run_main(monitor.main, _run(served, log, tmp_path))
    err = capsys.readouterr().err
    report = json.loads((tmp_path / "monitor.json").read_text())
    assert "unknown_member_share" in {a["kind"] for a in report["anomalies"]}
    assert report["overall"]["unknown_member_share"] == 1.0 and err.startswith("error: monitor")


def test_labels_give_the_auc_of_the_same_rows(served, tmp_path, capsys):
    scorer, rows, _ = served
    log = _log(tmp_path / "log", scorer, rows)
    labels = tmp_path / "labels.parquet"
    write_parquet(rows, labels)
    run_main(monitor.main, _run(served, log, tmp_path, "--labels", str(labels)))
    report = json.loads((tmp_path / "monitor.json").read_text())
    direct = metrics.roc_auc(rows["target"].to_numpy(), scorer.predict_proba(rows))
    assert report["live"]["labelled_rows"] == rows.num_rows
    assert report["live"]["roc_auc"] == pytest.approx(direct, abs=1e-9)
    assert "live ROC AUC" in capsys.readouterr().out


def test_repeated_plays_join_their_labels_in_order():
    rows = {c: ["a", "a", "b"] for c in bundle.INPUT}
    logged = pa.table({**rows, "probability": [0.9, 0.1, 0.5]})
    labels = pa.table({**rows, "target": [1, 0, 1]})
    assert monitor.live_auc(logged, labels) == {
        "labelled_rows": 3,
        "logged_rows": 3,
        "roc_auc": 1.0,
    }


def test_bad_logs_give_one_line(served, tmp_path, capsys):
    scorer, rows, _ = served
    cases = {}
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["no files"] = (str(empty), "the prediction log holds no files yet")
    cases["no folder"] = (str(tmp_path / "none"), "no prediction log here")
    truncated = tmp_path / "truncated"
    _log(truncated, scorer, rows)
    victim = sorted(truncated.glob("predictions-*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    cases["truncated"] = (str(truncated), "not a readable prediction log file")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    write_parquet(pa.table({"a": [1]}), wrong / "predictions-x.parquet")
    cases["wrong schema"] = (str(wrong), "not a prediction log file: no column(s)")
    few = tmp_path / "few"
    _log(few, scorer, rows.slice(0, 10))
    cases["empty window"] = (str(few), "10 rows in the last")
    for name, (log, says) in cases.items():
        with pytest.raises(SystemExit):
            run_main(monitor.main, _run(served, log, tmp_path))
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], name


def test_a_window_keeps_only_the_last_hours():
    ts = pa.array(
        np.array([0, 3_600_000, 7_200_000, 10_800_000], dtype="datetime64[ms]"),
        pa.timestamp("ms", tz="UTC"),
    )
    table = pa.table({"ts": ts, "x": [1, 2, 3, 4]})
    assert monitor.window(table, 2.0)["x"].to_pylist() == [2, 3, 4]


def test_no_bundle_is_one_line(served, tmp_path):
    scorer, rows, _ = served
    log = _log(tmp_path / "log", scorer, rows)
    args = monitor.parse_args(_run(served, log, tmp_path))
    args.bundle = tmp_path / "no-bundle"
    with pytest.raises(UserError, match="no bundle folder"):
        monitor.monitor(args)
