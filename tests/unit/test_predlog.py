"""cd4ml.predlog: batched, size-bounded log files written in the background; nothing lost on a
clean shutdown; a store that fails drops rows, counted, and never raises."""

from __future__ import annotations

import datetime as dt
import hmac
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cd4ml import bundle, predlog
from cd4ml.io import UserError
from kkbox import PROBLEM

FIELDS = bundle.input_fields(PROBLEM.Row)
SCHEMA = predlog.log_schema(FIELDS, PROBLEM.flags)


def _batch(n: int, start: int = 0) -> tuple[pa.Table, bundle.Scored, list[int | None]]:
    rows = bundle.rows_table(
        [
            {
                "msno": f"m{i}",
                "song_id": f"s{i}",
                "source_system_tab": "radio",
                "source_screen_name": None,
                "source_type": "radio",
            }
            for i in range(start, start + n)
        ],
        FIELDS,
    )
    p = np.linspace(0, 1, n, dtype=np.float32)
    flags = {"unknown_member": np.arange(n) % 2 == 0, "unknown_song": np.zeros(n, dtype=bool)}
    return rows, bundle.Scored(p, flags), list(range(start, start + n))


def test_the_log_schema_has_the_time_version_input_fields_ids_probability_and_flags():
    assert SCHEMA.names == [
        "ts",
        "model_version",
        *(f.name for f in FIELDS),
        "id",
        "request_id",
        "probability",
        "unknown_member",
        "unknown_song",
    ]
    assert SCHEMA.field("ts").type == predlog.TIME
    assert SCHEMA.field("msno").type == pa.string()
    assert SCHEMA.field("unknown_song").type == pa.bool_()
    other = predlog.log_schema([bundle.Field("tenure", pa.int64(), False)], ("unknown_plan",))
    assert other.names == [
        *("ts", "model_version", "tenure", "id", "request_id", "probability", "unknown_plan")
    ]


def _files(folder):
    return sorted(folder.glob("predictions-*.parquet"))


def test_rows_are_written_in_files_of_bounded_size_and_all_on_close(tmp_path):
    log = predlog.PredictionLog(str(tmp_path), SCHEMA, rows_per_file=250, flush_seconds=60).start()
    for k in range(7):
        log.add(*_batch(100, start=100 * k)[:2], "v0.0.1", _batch(100, start=100 * k)[2])
    log.close()
    files = _files(tmp_path)
    sizes = [pq.read_metadata(f).num_rows for f in files]
    assert sum(sizes) == 700 and max(sizes) <= 250 and len(files) == 3
    table = pa.concat_tables(pq.read_table(f) for f in files)
    assert table.schema == SCHEMA
    assert sorted(table["id"].to_pylist()) == list(range(700))
    assert set(table["model_version"].to_pylist()) == {"v0.0.1"}
    assert table["unknown_member"].to_pylist().count(True) == 350
    assert table["unknown_song"].to_pylist().count(True) == 0
    assert log.stats() == {"written_rows": 700, "dropped_rows": 0, "files": 3, "queued_rows": 0}
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written file


def test_a_request_id_is_logged_on_each_of_its_rows(tmp_path):
    log = predlog.PredictionLog(str(tmp_path), SCHEMA).start()
    rows, scored, ids = _batch(3)
    log.add(rows, scored, "v1", ids, request_id="abc")
    rows, scored, ids = _batch(2)
    log.add(rows, scored, "v1", ids)
    log.close()
    table = pq.read_table(_files(tmp_path)[0])
    assert table["request_id"].to_pylist() == ["abc", "abc", "abc", None, None]


def test_a_quiet_service_still_flushes_on_time(tmp_path):
    log = predlog.PredictionLog(
        str(tmp_path), SCHEMA, rows_per_file=10_000, flush_seconds=0.2
    ).start()
    rows, scored, ids = _batch(5)
    log.add(rows, scored, "v1", ids)
    deadline = time.monotonic() + 5
    while not _files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_files(tmp_path)) == 1
    log.close()


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    log = predlog.PredictionLog(str(tmp_path), SCHEMA, max_queued_rows=150)  # writer not started
    rows, scored, ids = _batch(100)
    log.add(rows, scored, "v1", ids)
    log.add(rows, scored, "v1", ids)  # 200 > 150: dropped
    assert log.dropped_rows == 100
    log.start().close()
    assert log.written_rows == 100


def test_a_store_that_fails_drops_rows_counted_and_logged_never_raises(tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    log = predlog.PredictionLog(str(blocked / "log"), SCHEMA, rows_per_file=50).start()
    rows, scored, ids = _batch(120)
    log.add(rows, scored, "v1", ids)
    log.close()
    assert log.dropped_rows == 120 and log.written_rows == 0
    assert "prediction log: 50 rows dropped" in caplog.text


def test_rows_after_close_are_dropped(tmp_path):
    log = predlog.PredictionLog(str(tmp_path), SCHEMA).start()
    log.close()
    log.add(*_batch(3)[:2], "v1", [None, None, None])
    assert log.dropped_rows == 3


@pytest.mark.s3
def test_an_s3_prefix_receives_the_files(s3_server, s3_bucket, monkeypatch):
    for key, value in s3_server.aws_env().items():
        monkeypatch.setenv(key, value)
    where = f"s3://{s3_bucket}/predictions"
    log = predlog.PredictionLog(where, SCHEMA, rows_per_file=40).start()
    rows, scored, ids = _batch(100)
    log.add(rows, scored, "v1", ids)
    log.close()
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert len(keys) == 3 and all(k.startswith("predictions/predictions-") for k in keys)
    assert log.written_rows == 100


def test_a_store_that_is_down_is_a_counted_drop(monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    log = predlog.PredictionLog("s3://no-bucket/p", SCHEMA, rows_per_file=1000).start()
    rows, scored, ids = _batch(10)
    log.add(rows, scored, "v1", ids)
    log.close(timeout=60)
    assert log.dropped_rows == 10 and log.written_rows == 0


KEY = b"predlog-test-key"


def test_ids_hash_the_same_under_one_key_and_differently_under_another():
    ids = pa.array(["m1", "m2", None, "m1"])
    hashed = predlog.hash_ids(ids, KEY).to_pylist()
    assert hashed[0] == hashed[3] != hashed[1] and hashed[2] is None
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in (hashed[0], hashed[1]))
    assert predlog.hash_ids(ids, KEY).to_pylist() == hashed  # deterministic
    assert predlog.hash_ids(ids, b"another key").to_pylist()[0] != hashed[0]  # keyed
    assert (
        predlog.hash_ids(pa.array([7]), KEY).to_pylist()
        == predlog.hash_ids(pa.array(["7"]), KEY).to_pylist()
    )  # a number hashes as its text
    assert predlog.fingerprint(KEY) != predlog.fingerprint(b"another key")
    assert len(predlog.fingerprint(KEY)) == 12 and KEY.hex() not in predlog.fingerprint(KEY)


def test_each_distinct_id_is_hashed_once_and_every_row_gets_its_hash(monkeypatch):
    ids = pa.chunked_array([["m1", "m2", None], ["m1", "m1", None, "m3"]])
    digests = []
    real = hmac.digest

    def counted(key: bytes, message: bytes, name: str) -> bytes:
        digests.append(message)
        return real(key, message, name)

    monkeypatch.setattr(hmac, "digest", counted)
    hashed = predlog.hash_ids(ids, KEY).to_pylist()
    assert sorted(digests) == [b"m1", b"m2", b"m3"]
    expected = {v: real(KEY, v.encode(), "sha256").hex() for v in ("m1", "m2", "m3")}
    assert hashed == [expected.get(v) for v in ids.to_pylist()]
    assert predlog.hash_ids(pa.array([], pa.string()), KEY).to_pylist() == []
    assert predlog.hash_ids(pa.array([None, None], pa.string()), KEY).to_pylist() == [None] * 2


def test_a_hashed_log_never_writes_a_raw_id(tmp_path):
    schema = predlog.log_schema(FIELDS, PROBLEM.flags, PROBLEM.private, KEY)
    assert schema.field("msno").type == pa.string()
    assert predlog.hashed_columns(schema) == ("msno",)
    assert predlog.hashed_with(schema) == predlog.fingerprint(KEY)
    log = predlog.PredictionLog(str(tmp_path), schema, rows_per_file=150, key=KEY).start()
    rows, scored, ids = _batch(300)
    log.add(rows, scored, "v0.0.1", ids)
    log.close()
    files = _files(tmp_path)
    table = pa.concat_tables(pq.read_table(f) for f in files)
    raw = {f"m{i}" for i in range(300)}
    assert not raw & set(table["msno"].to_pylist())
    assert table["msno"].to_pylist() == predlog.hash_ids(rows["msno"], KEY).to_pylist()
    assert table["song_id"].to_pylist() == rows["song_id"].to_pylist()  # not private
    for f in files:
        assert predlog.hashed_with(pq.read_schema(f)) == predlog.fingerprint(KEY)
        assert b"m123" not in f.read_bytes()
    with pytest.raises(ValueError, match="needs the key"):
        predlog.PredictionLog(str(tmp_path), schema).start()
    with pytest.raises(ValueError, match=r"\['member_id'\] are not fields of the Row"):
        predlog.log_schema(FIELDS, PROBLEM.flags, ("member_id",), KEY)


def test_the_key_comes_from_the_environment_or_raw_ids_are_asked_for(monkeypatch):
    monkeypatch.setenv(predlog.KEY_ENV, "s3cret")
    assert predlog.log_key(("msno",), keep_raw=False) == b"s3cret"
    assert predlog.log_key(("msno",), keep_raw=True) == b""
    assert predlog.log_key((), keep_raw=False) == b""  # nothing private: nothing to hash
    monkeypatch.setenv(predlog.KEY_ENV, "")
    with pytest.raises(UserError) as refused:
        predlog.log_key(("msno",), keep_raw=False)
    assert "CD4ML_LOG_KEY" in str(refused.value) and "--keep-raw-ids" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_retention_deletes_only_log_files_written_before_it_and_names_them(tmp_path):
    old = [
        tmp_path / "predictions-20240101T000000000000-12-0123abcd.parquet",
        tmp_path / "predictions-20240130T235959999999-12-89abcdef.parquet",
    ]
    young = tmp_path / "predictions-20240131T000000000001-12-0123abcd.parquet"
    others = [
        tmp_path / "predictions-20240101T000000000000.parquet",  # not a name the log writes
        tmp_path / "predictions-20240101T000000000000-12-0123abcd.parquet.bak",
        tmp_path / ".predictions-20240101T000000000000-12-0123abcd.parquet.tmp",
        tmp_path / "notes.txt",
    ]
    for path in [*old, young, *others]:
        path.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    nested = tmp_path / "sub" / old[0].name
    nested.write_bytes(b"x")
    now = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    deleted = predlog.expire(str(tmp_path), 1.0, now=now)
    assert deleted == [str(p) for p in old]
    assert not any(p.exists() for p in old)
    assert young.exists() and nested.exists() and all(p.exists() for p in others)
    assert predlog.expire(str(tmp_path / "none"), 1.0) == []  # no folder: nothing to delete
    assert predlog.written_at(young.name) == dt.datetime(2024, 1, 31, 0, 0, 0, 1, dt.UTC)
    assert predlog.written_at("notes.txt") is None
    record = "monitor-20240131T000000000001-12-0123abcd.json"  # the monitor's history
    assert predlog.written_at(record) is None
    assert predlog.written_at(record, "monitor-", ".json") == predlog.written_at(young.name)
