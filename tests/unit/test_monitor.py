"""cd4ml.monitor on log files written by the real PredictionLog: clean traffic passes, drifted
traffic is flagged with the right measure (a category mix, a flag's share, the mean
prediction), the label join gives the AUC of the same rows, and bad logs give one line."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from cd4ml import bundle, metrics, monitor, params, predlog, validation
from cd4ml.io import UserError, run_main, write_parquet
from kkbox import PROBLEM
from tests.bundles import fit_featurizer, train, write_bundle
from tests.project import GIT_IDENTITY, ROOT

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


KEY = b"monitor-test-key"


def _hashed_log(folder: Path, scorer: bundle.Scorer, rows: pa.Table, key: bytes = KEY) -> str:
    schema = predlog.log_schema(FIELDS, PROBLEM.flags, PROBLEM.private, key)
    log = predlog.PredictionLog(str(folder), schema, rows_per_file=100, key=key).start()
    table = scorer.rows(rows)
    log.add(table, scorer.score(table), "v0.0.1", [None] * table.num_rows)
    log.close()
    return str(folder)


def test_labels_hashed_with_the_logs_key_give_the_same_live_auc_as_raw_ids(
    served, tmp_path, monkeypatch
):
    scorer, rows, _ = served
    labels = tmp_path / "labels.parquet"
    write_parquet(rows, labels)
    monkeypatch.delenv(predlog.KEY_ENV, raising=False)
    run_main(
        monitor.main,
        _run(served, _log(tmp_path / "raw", scorer, rows), tmp_path, "--labels", str(labels)),
    )
    raw = json.loads((tmp_path / "monitor.json").read_text())
    monkeypatch.setenv(predlog.KEY_ENV, KEY.decode())
    hashed_log = _hashed_log(tmp_path / "hashed", scorer, rows)
    run_main(monitor.main, _run(served, hashed_log, tmp_path, "--labels", str(labels)))
    hashed = json.loads((tmp_path / "monitor.json").read_text())
    assert hashed["live"] == raw["live"] and hashed["live"]["labelled_rows"] == rows.num_rows
    assert hashed["overall"] == raw["overall"]  # the drift measures see no difference
    assert hashed["ids_hashed_with"] == predlog.fingerprint(KEY) and raw["ids_hashed_with"] is None


def test_a_hashed_log_needs_the_same_key_to_join_labels_one_line(
    served, tmp_path, monkeypatch, capsys
):
    scorer, rows, _ = served
    where = _hashed_log(tmp_path / "log", scorer, rows)
    labels = tmp_path / "labels.parquet"
    write_parquet(rows, labels)
    args = _run(served, where, tmp_path, "--labels", str(labels))
    monkeypatch.setenv(predlog.KEY_ENV, "another key")
    with pytest.raises(SystemExit) as stop:
        run_main(monitor.main, args)
    assert stop.value.code == 1
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1
    assert (
        f"ids hashed with key {predlog.fingerprint(KEY)}, CD4ML_LOG_KEY has "
        f"{predlog.fingerprint(b'another key')}" in line
    )
    monkeypatch.delenv(predlog.KEY_ENV)
    with pytest.raises(SystemExit):
        run_main(monitor.main, args)
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1
    assert f"ids hashed with key {predlog.fingerprint(KEY)}: set CD4ML_LOG_KEY" in line
    run_main(monitor.main, _run(served, where, tmp_path))  # without labels: no key needed
    assert "monitor passed" in capsys.readouterr().out


def test_raw_files_in_a_hashed_log_are_hashed_with_the_key_or_refused(served, tmp_path):
    scorer, rows, _ = served
    where = _hashed_log(tmp_path / "log", scorer, rows.slice(0, 150))
    _log(tmp_path / "log", scorer, rows.slice(150))  # written before the service hashed ids
    table = monitor.read_log(where, SCHEMA, KEY)
    expected = predlog.hash_ids(scorer.rows(rows)["msno"], KEY).to_pylist()
    assert sorted(table["msno"].to_pylist()) == sorted(expected)
    assert predlog.hashed_with(table.schema) == predlog.fingerprint(KEY)
    with pytest.raises(UserError, match="raw ids in a log of ids hashed with key"):
        monitor.read_log(where, SCHEMA)
    _hashed_log(tmp_path / "log", scorer, rows.slice(0, 10), key=b"rotated")
    with pytest.raises(UserError, match=f"CD4ML_LOG_KEY has {predlog.fingerprint(KEY)}"):
        monitor.read_log(where, SCHEMA, KEY)


def test_monitor_deletes_log_files_older_than_the_retention_and_counts_them(
    served, tmp_path, capsys
):
    scorer, rows, _ = served
    where = Path(_log(tmp_path / "log", scorer, rows))
    old = where / "predictions-20200101T000000000000-7-0123abcd.parquet"
    earlier = Path(_log(tmp_path / "earlier", scorer, rows.slice(0, 5)))
    next(earlier.glob("predictions-*.parquet")).rename(old)
    keep = [where / "notes.txt", where / "predictions-20200101T000000000000.csv"]
    for path in keep:
        path.write_text("not a log file")
    records = [where / f"monitor-2020010{d}T000000000000-7-0123abcd.json" for d in (1, 2)]
    young = where / f"monitor-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-7-0123abcd.json"
    for path in [*records, young]:  # the history kept with the log expires with it
        path.write_text(
            json.dumps(
                {
                    "checks": {},
                    "window_start": "2020-01-01T00:00:00+00:00",
                    "window_end": "2020-01-01T01:00:00+00:00",
                }
            )
        )
    run_main(monitor.main, _run(served, str(where), tmp_path))
    assert not old.exists() and all(p.exists() for p in keep)
    assert not any(p.exists() for p in records) and young.exists()
    report = json.loads((tmp_path / "monitor.json").read_text())
    assert report["retention"] == {"days": 30, "deleted_files": 1, "deleted_history_records": 2}
    assert (
        "1 log files and 2 history records older than serve.log_retention_days 30 deleted"
        in capsys.readouterr().out
    )


def _shifted(table: pa.Table, hours: float) -> pa.Table:
    """The table with its times moved `hours` earlier."""
    ms = pc.subtract(table["ts"].cast(pa.int64()), int(hours * 3600 * 1000))
    return table.set_column(0, table.schema.field("ts"), ms.cast(predlog.TIME))


def test_read_log_skips_the_files_older_than_the_window_by_their_footers(served, tmp_path):
    scorer, rows, _ = served
    where = Path(_log(tmp_path / "log", scorer, rows.slice(0, 100)))  # one file, scored now
    recent = pq.read_table(next(where.glob("predictions-*.parquet")))
    old = _shifted(recent, 48)
    predlog.write_file(old, str(where), "predictions-20200101T000000000000-7-0123abcd.parquet")
    # A file whose footer records no times is read whatever its age.
    pq.write_table(
        old, where / "predictions-20200101T000000000001-7-0123abcd.parquet", write_statistics=False
    )
    files = sorted(where.glob("predictions-2020*"))
    assert monitor.newest_row(str(files[0]), open) == pc.max(old["ts"]).as_py()
    assert monitor.newest_row(str(files[1]), open) is None
    assert monitor.read_log(str(where), SCHEMA).num_rows == 300
    assert monitor.read_log(str(where), SCHEMA, last_hours=24).num_rows == 200
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert monitor.read_log(str(where), SCHEMA, since=an_hour_ago).num_rows == 200
    # The window is judged from the newest row on, not from now: an old log is read whole.
    aged = tmp_path / "aged"
    predlog.write_file(old, str(aged), "predictions-20200101T000000000000-7-0123abcd.parquet")
    assert monitor.read_log(str(aged), SCHEMA, last_hours=1).num_rows == 100
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    empty = monitor.read_log(str(aged), SCHEMA, since=later)
    assert empty.num_rows == 0 and empty.schema == SCHEMA


def test_the_pictures_title_names_what_failed():
    report = {"overall": {"rows": 1234}, "passed": True, "anomalies": []}
    assert monitor.headline(report) == "Production: 1,234 logged rows, passed"
    kinds = [{"kind": "model_age"}, {"kind": "missing_rate"}, {"kind": "live_auc"}]
    failed = {**report, "passed": False, "anomalies": kinds}
    assert monitor.headline(failed).endswith("FAILED: drift, live ROC AUC, stale model")


NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("data_end", "days", "stale"),
    [("2026-10-01", 63.5, True), ("2026-11-20", 13.5, False), ("2026-12-04", 0.0, False)],
)
def test_the_age_flag_trips_for_an_old_data_end_and_not_for_a_fresh_one(data_end, days, stale):
    manifest = {"data_end": {"date": data_end, "source": "build date"}}
    value, anomaly = monitor.model_age(manifest, NOW, 30)
    assert value == {"data_end": data_end, "source": "build date", "days": days}
    assert (anomaly is not None) is stale
    if stale:
        assert anomaly["kind"] == "model_age" and anomaly["threshold"] == 30
        assert anomaly["message"].startswith(
            f"the served model's data ends {data_end} (build date), 63.5 days ago, more than "
            "monitor.max_model_age_days 30"
        )


def test_a_manifest_without_a_data_end_is_not_judged_and_a_bad_one_is_one_line():
    assert monitor.model_age({}, NOW, 30) == (
        {"data_end": None, "source": None, "days": None},
        None,
    )
    with pytest.raises(UserError, match="data_end '1 Oct' is not a YYYY-MM-DD date"):
        monitor.model_age({"data_end": {"date": "1 Oct"}}, NOW, 30)


def test_a_served_version_with_old_data_fails_the_monitor_with_a_clear_line(
    served, tmp_path, capsys
):
    scorer, rows, _ = served
    old = tmp_path / "bundle"
    shutil.copytree(scorer.path, old)
    manifest = json.loads((old / bundle.MANIFEST).read_text())
    manifest["data_end"] = {"date": "2020-01-31", "source": "latest when of the training rows"}
    (old / bundle.MANIFEST).write_text(json.dumps(manifest))
    log = _log(tmp_path / "log", scorer, rows)
    with pytest.raises(SystemExit):
        run_main(monitor.main, [*_run(served, log, tmp_path), "--bundle", str(old)])
    line = capsys.readouterr().err.strip().splitlines()
    assert len(line) == 1
    assert line[0].startswith(
        "error: monitor: stale model: the served model's data ends 2020-01-31"
    )
    report = json.loads((tmp_path / "monitor.json").read_text())
    assert report["model_age"]["days"] > 365 and not report["passed"]
    assert [a["kind"] for a in report["anomalies"]] == ["model_age"]
    # Fresh data: the same log passes.
    manifest["data_end"]["date"] = dt.datetime.now(dt.UTC).date().isoformat()
    (old / bundle.MANIFEST).write_text(json.dumps(manifest))
    run_main(monitor.main, [*_run(served, log, tmp_path), "--bundle", str(old)])
    assert capsys.readouterr().out.startswith("monitor passed: ")


def test_a_live_auc_far_below_the_eval_auc_is_flagged():
    live = {"roc_auc": 0.62, "labelled_rows": 500, "logged_rows": 500}
    anomaly = monitor.live_auc_drop(live, 0.75, 0.05)
    assert anomaly["kind"] == "live_auc" and anomaly["value"] == pytest.approx(0.13)
    assert monitor.live_auc_drop(live, 0.66, 0.05) is None
    assert monitor.live_auc_drop({**live, "roc_auc": None}, 0.75, 0.05) is None


def _day_file(folder: Path, table: pa.Table, day: int) -> None:
    """The rows as one log file whose rows were all logged on the `day`-th of November (days
    further apart than monitor.window_hours: each run judges only the newest file)."""
    start = np.datetime64("2026-11-01T00:00:00", "ms") + np.timedelta64(day - 1, "D")
    ts = pa.array(np.full(table.num_rows, start), predlog.TIME)
    name = f"predictions-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-1-{day:08x}.parquet"
    predlog.write_file(table.set_column(0, "ts", ts), str(folder), name)


def test_a_lasting_drift_writes_a_retrain_request_and_a_spike_does_not(served, tmp_path, capsys):
    scorer, rows, params_path = served
    settings = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    settings["monitor"].update(trigger_windows=3, trigger_min_crossings=2)
    trigger_params = tmp_path / "params.yaml"
    trigger_params.write_text(yaml.safe_dump(settings), encoding="utf-8")
    column = rows.schema.get_field_index("source_system_tab")
    drifted = _logged(
        scorer, rows.set_column(column, "source_system_tab", pa.array(["radio"] * rows.num_rows))
    )
    clean = _logged(scorer, rows)
    log = tmp_path / "log"
    request = tmp_path / "retrain.json"
    args = [*_run(served, str(log), tmp_path), "--params", str(trigger_params)]
    lines = []
    for day, table in enumerate([drifted, clean, drifted, drifted, clean]):
        _day_file(log, table, 1 + 2 * day)
        with contextlib.suppress(SystemExit):
            run_main(monitor.main, args)
        captured = capsys.readouterr()
        lines.append((captured.out + captured.err).strip().splitlines()[-1])
        if day == 0:  # a spike: 1 of 3
            assert not request.exists()
        if day == 1:  # clean again
            assert "retrain trigger: not fired" in lines[-1] and not request.exists()
        if day == 3:
            written = json.loads(request.read_text())
    # Day 2: 2 of the last 3 (days 0 and 2) and the latest: fires.
    assert "; retrain trigger: FIRED (" in lines[2]
    assert "category_mix:source_system_tab in 2 of 3" in lines[2]
    assert lines[2].endswith(f": request {request}")
    assert "category_mix:source_system_tab in 2 of 3" in lines[3]  # days 2 and 3
    assert "category_mix:source_system_tab" in written["checks"]
    assert "unknown_member" not in written["checks"]
    assert [w[:10] for w in written["checks"]["category_mix:source_system_tab"]["windows"]] == [
        "2026-11-05",
        "2026-11-07",
    ]
    assert written["log"] == str(log) and written["model_versions"] == ["v1"]
    # Day 4 is clean: the degradation has ended, the request is withdrawn.
    assert "retrain trigger: not fired" in lines[4] and not request.exists()
    history = sorted(log.glob("monitor-*.json"))
    assert len(history) == 5
    report = json.loads((tmp_path / "monitor.json").read_text())
    assert report["trigger"]["judged_windows"] == 3 and report["trigger"]["fired"] == {}


def test_more_crossings_than_windows_is_one_line_naming_both_keys(served):
    _, _, params_path = served
    section = yaml.safe_load(params_path.read_text(encoding="utf-8"))["monitor"]
    section.update(trigger_windows=2, trigger_min_crossings=3)
    with pytest.raises(UserError, match=r"monitor\.trigger_min_crossings=3 is more than monitor"):
        params.parse(monitor.Monitor, section, "monitor", params_path)


def test_without_a_time_column_a_fetched_versions_age_counts_from_its_release(
    tmp_path, monkeypatch
):
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    dated = {
        "GIT_COMMITTER_DATE": "2020-01-31T12:00:00Z",
        "GIT_AUTHOR_DATE": "2020-01-31T12:00:00Z",
    }
    for key, value in {**GIT_IDENTITY, **dated}.items():
        monkeypatch.setenv(key, value)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "release"], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    served = repo / "served" / "bundle"
    served.mkdir(parents=True)
    assert monitor.released(served) is None  # a local build: not judged
    sidecar = {"name": "x", "version": "v0.0.3", "stage": "prod", "commit": commit.stdout.strip()}
    (repo / "served" / "bundle.json").write_text(json.dumps(sidecar))
    ended = monitor.released(served)
    assert ended == {"date": "2020-01-31", "source": "release of v0.0.3"}
    _, stale = monitor.model_age({"data_end": ended}, NOW, 30)
    assert "data ends 2020-01-31 (release of v0.0.3)" in stale["message"]
    sidecar["commit"] = "0" * 40  # a history without it: one line that says what to fetch
    (repo / "served" / "bundle.json").write_text(json.dumps(sidecar))
    with pytest.raises(UserError, match=r"release commit 0+ of v0\.0\.3 is not in this"):
        monitor.released(served)
