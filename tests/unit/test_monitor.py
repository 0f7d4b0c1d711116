"""cd4ml.monitor on log files written by the real PredictionLog: clean traffic passes, drifted
traffic is flagged with the right measure (a category mix, a flag's share, the mean
prediction), the label join gives the AUC of the same rows, and bad logs give one line."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from cd4ml import bundle, metrics, monitor, params, predlog, validation
from cd4ml.io import UserError, run_main, write_parquet
from kkbox import PROBLEM
from tests.bundles import fit_featurizer, train, write_bundle
from tests.project import ROOT

FIELDS = bundle.input_fields(PROBLEM.Row)
NAMES = [f.name for f in FIELDS]
SCHEMA = predlog.log_schema(FIELDS, PROBLEM.flags)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[bundle.Scorer, pa.Table, Path]:
    """A small bundle with its training profile, its raw eval rows (with targets), a params
    file whose monitor needs only a few rows."""
    folder = tmp_path_factory.mktemp("monitor")
    fitted = fit_featurizer(folder)
    path = write_bundle(folder / "bundle", fitted, train(fitted, "xgb"))
    scorer = bundle.load(path, PROBLEM)
    settings = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    settings["monitor"]["min_rows"] = 50
    settings["monitor"]["buckets"] = 3
    params_path = folder / "params.yaml"
    params_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return scorer, fitted.eval_raw, params_path


def _log(folder: Path, scorer: bundle.Scorer, rows: pa.Table) -> str:
    log = predlog.PredictionLog(str(folder), SCHEMA, rows_per_file=100).start()
    table = scorer.rows(rows)
    log.add(table, scorer.score(table), "v0.0.1", [None] * table.num_rows)
    log.close()
    return str(folder)


def _run(served, log: str, tmp_path: Path, *extra: str) -> list[str]:
    scorer, _, params_path = served
    return [
        *("--log", log, "--bundle", str(scorer.path), "--params", str(params_path)),
        *("--out", str(tmp_path / "monitor.json"), "--plots", str(tmp_path / "plots")),
        *extra,
    ]


def _settings(served) -> tuple[monitor.Monitor, validation.Validate]:
    _, _, params_path = served
    return (
        params.section(params_path, "monitor", monitor.Monitor),
        params.section(params_path, "validate", validation.Validate),
    )


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_bundle_holds_its_training_profile(served):
    scorer, _, _ = served
    profile = json.loads((scorer.path / "profile.json").read_text())
    assert set(profile["tables"][bundle.ROWS]["categories"]) == {
        "source_system_tab",
        "source_screen_name",
        "source_type",
    }
    assert 0 < profile["positive_rate"] < 1
    assert sorted(profile["eval"]["flags"]) == sorted(PROBLEM.flags)
    assert 0 < profile["eval"]["flags"]["unknown_member"] < 0.1


def test_traffic_like_the_training_data_passes(served, tmp_path, capsys):
    scorer, rows, _ = served
    log = _log(tmp_path / "log", scorer, rows)
    run_main(monitor.main, _run(served, log, tmp_path))
    assert capsys.readouterr().out.startswith("monitor passed: ")
    report = json.loads((tmp_path / "monitor.json").read_text())
    assert report["passed"] and report["overall"]["rows"] == rows.num_rows
    assert report["model_versions"] == ["v0.0.1"] and len(report["buckets"]) >= 1
    assert sorted(report["overall"]["flag_shares"]) == sorted(PROBLEM.flags)
    flags = scorer.score(rows).flags
    for name in PROBLEM.flags:
        assert report["overall"]["flag_shares"][name] == pytest.approx(np.mean(flags[name]))
    picture = tmp_path / "plots" / "monitor.png"
    assert picture.stat().st_size > 10_000
    # One panel a flag, the mean probability, one a categorical input (2 inches each, 90 dpi)
    panels = len(PROBLEM.flags) + 1 + len(bundle.categorical_inputs(PROBLEM))
    assert _png_size(picture) == (8 * 90, 2 * 90 * panels)


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
    assert line.startswith(f"error: monitor: drift: {bundle.ROWS}: column 'source_system_tab' ")
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
    kinds = {a["kind"] for a in report["anomalies"]}
    assert "unknown_member" in kinds and "unknown_song" not in kinds
    assert report["overall"]["flag_shares"]["unknown_member"] == 1.0
    assert err.startswith("error: monitor: drift: ")


def _logged(scorer: bundle.Scorer, rows: pa.Table, version: str = "v1") -> pa.Table:
    """Rows as the log holds them, without writing a file."""
    table = scorer.rows(rows)
    scored = scorer.score(table)
    n = table.num_rows
    return pa.table(
        {
            "ts": pa.array(np.zeros(n, dtype="datetime64[ms]"), predlog.TIME),
            "model_version": [version] * n,
            **{c: table[c] for c in NAMES},
            "id": pa.nulls(n, pa.int64()),
            "request_id": pa.nulls(n, pa.string()),
            "probability": pa.array(scored.probabilities.astype(np.float32)),
            **{k: pa.array(v) for k, v in scored.flags.items()},
        },
        schema=SCHEMA,
    )


def test_measures_compare_flag_shares_and_the_mean_prediction_with_the_reference(served):
    scorer, rows, _ = served
    reference = json.loads((scorer.path / bundle.PROFILE).read_text())
    settings, drift = _settings(served)
    logged = _logged(scorer, rows)
    values, anomalies = monitor.measures(logged, reference, PROBLEM, settings, drift)
    assert anomalies == [] and values["rows"] == rows.num_rows
    assert values["flag_shares"] == {
        name: pytest.approx(share) for name, share in reference["eval"]["flags"].items()
    }
    assert values["mean_probability"] == pytest.approx(reference["eval"]["mean_probability"])
    assert sorted(values["category_tvd"]) == sorted(bundle.categorical_inputs(PROBLEM))
    # Every prediction at 1: only the mean probability moved
    certain = logged.set_column(
        logged.schema.get_field_index("probability"),
        pa.field("probability", pa.float32()),
        pa.array(np.ones(logged.num_rows, dtype=np.float32)),
    )
    _, anomalies = monitor.measures(certain, reference, PROBLEM, settings, drift)
    assert [a["kind"] for a in anomalies] == ["mean_probability"]
    change = 1.0 - reference["positive_rate"]
    assert anomalies[0]["value"] == pytest.approx(change, abs=1e-6)
    assert anomalies[0]["message"].startswith("mean predicted probability (against the train")
    # Every song unknown: that flag's share, named in one line
    unknown = logged.set_column(
        logged.schema.get_field_index("unknown_song"),
        pa.field("unknown_song", pa.bool_()),
        pa.array(np.ones(logged.num_rows, dtype=bool)),
    )
    _, anomalies = monitor.measures(unknown, reference, PROBLEM, settings, drift)
    assert [a["kind"] for a in anomalies] == ["unknown_song"]
    assert anomalies[0]["message"].startswith("rows with unknown song: 1.000, the reference ")


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


def test_labels_are_read_from_a_csv_of_the_examples_table_or_parquet(served, tmp_path):
    _, rows, _ = served
    csv = tmp_path / "train.csv"
    pacsv.write_csv(rows, csv)
    parquet = tmp_path / "labels.parquet"
    write_parquet(rows, parquet)
    from_csv = monitor.read_labels(csv, PROBLEM)
    from_parquet = monitor.read_labels(parquet, PROBLEM)
    for table in (from_csv, from_parquet):
        assert table.num_rows == rows.num_rows
        assert table["target"].to_pylist() == rows["target"].to_pylist()
        assert table["msno"].to_pylist() == rows["msno"].to_pylist()


def test_repeated_rows_join_their_labels_in_order():
    rows = {c: ["a", "a", "b"] for c in NAMES}
    logged = pa.table({**rows, "probability": [0.9, 0.1, 0.5]})
    labels = pa.table({**rows, "target": [1, 0, 1]})
    assert monitor.live_auc(logged, labels, NAMES, "target") == {
        "labelled_rows": 3,
        "logged_rows": 3,
        "roc_auc": 1.0,
    }
    one_class = pa.table({**rows, "target": [1, 1, 1]})
    assert monitor.live_auc(logged, one_class, NAMES, "target")["roc_auc"] is None


def test_read_log_reads_the_schemas_columns_of_every_file(served, tmp_path):
    scorer, rows, _ = served
    where = _log(tmp_path / "log", scorer, rows)
    table = monitor.read_log(where, SCHEMA)
    assert table.schema == SCHEMA and table.num_rows == rows.num_rows
    assert len(list((tmp_path / "log").glob("predictions-*.parquet"))) > 1  # 100 rows a file
    other = predlog.log_schema(FIELDS, ("unknown_member", "unknown_artist"))
    with pytest.raises(UserError, match=r"no column\(s\) \['unknown_artist'\]"):
        monitor.read_log(where, other)


def test_a_log_written_before_request_ids_reads_them_as_null(served, tmp_path):
    scorer, rows, _ = served
    where = Path(_log(tmp_path / "log", scorer, rows))
    for path in where.glob("predictions-*.parquet"):
        old = pq.read_table(path)
        pq.write_table(old.drop_columns(["request_id"]), path)
    table = monitor.read_log(str(where), SCHEMA)
    assert table.schema == SCHEMA and table["request_id"].null_count == rows.num_rows


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
