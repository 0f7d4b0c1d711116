"""The service's prediction log: every scored row, written in the background as size-bounded
Parquet files in a folder or under an s3:// prefix.

A request only appends its rows to a bounded in-memory queue (microseconds); a writer thread
turns them into files of at most `rows_per_file` rows, at least every `flush_seconds`, and on a
clean shutdown writes what is left. A full queue, a full disk or a store that does not answer
never fails a request: the rows are dropped, counted and logged.

Files: <where>/predictions-<UTC time>-<pid>-<n>.parquet with `log_schema`'s columns: the time,
the model version, the raw input fields, the row's id, the request's id (the X-Request-ID header:
nginx's, so that a mirrored request's rows join across versions), the probability and the
problem's flags.

Private fields (the problem's `private`, e.g. a member id) are written as keyed hashes: hex
HMAC-SHA256 under the secret of CD4ML_LOG_KEY, the same for the same id, so that labels hashed
with the same key still join. Each such file's schema metadata names the hashed columns and the
key's fingerprint. Only with --keep-raw-ids (cd4ml.serve) are they written as they came.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cd4ml.io import UserError

if TYPE_CHECKING:
    from cd4ml.bundle import Field, Scored


log = logging.getLogger("predlog")

TIME = pa.timestamp("ms", tz="UTC")
REQUEST = "request_id"  # a column that logs written before it lack (read as null)
KEY_ENV = "CD4ML_LOG_KEY"  # the secret the private fields are hashed with
HASHED = b"cd4ml.hashed"  # schema metadata: the hashed columns (a JSON list)
KEY = b"cd4ml.key"  # schema metadata: the fingerprint of the key they are hashed with
PREFIX, SUFFIX = "predictions-", ".parquet"  # predictions-<UTC time>-<pid>-<random>.parquet


def log_schema(
    fields: list[Field], flags: tuple[str, ...], private: tuple[str, ...] = (), key: bytes = b""
) -> pa.Schema:
    """The columns of a prediction log file; with a key, the `private` fields are keyed hashes
    (text) and the metadata names them and the key's fingerprint."""
    unknown = sorted(set(private) - {f.name for f in fields})
    if unknown:  # a misspelt name would log the id it meant as it came
        raise ValueError(f"private fields {unknown} are not fields of the Row")
    hashed = tuple(f.name for f in fields if f.name in private) if key else ()
    schema = pa.schema(
        [
            ("ts", TIME),
            ("model_version", pa.string()),
            *[(f.name, pa.string() if f.name in hashed else f.type) for f in fields],
            ("id", pa.int64()),
            (REQUEST, pa.string()),
            ("probability", pa.float32()),
            *[(name, pa.bool_()) for name in flags],
        ]
    )
    if not hashed:
        return schema
    return schema.with_metadata({HASHED: json.dumps(hashed), KEY: fingerprint(key)})


def hash_ids(values: pa.Array | pa.ChunkedArray, key: bytes) -> pa.Array:
    """Each value's keyed hash: the hex HMAC-SHA256 of its text under `key`; null stays null.
    Each distinct value is hashed once (a request's rows often share their user)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    digest = hmac.digest
    hashed = pa.array(
        [digest(key, v.encode(), "sha256").hex() for v in encoded.dictionary.to_pylist()],
        pa.string(),
    )
    return hashed.take(encoded.indices)


def fingerprint(key: bytes) -> str:
    """A short public name of a key: which key hashed a file, without revealing it."""
    return hmac.digest(key, b"cd4ml-fingerprint", "sha256").hex()[:12]


def hashed_columns(schema: pa.Schema) -> tuple[str, ...]:
    """The columns of a log file (its schema) that hold keyed hashes."""
    return tuple(json.loads((schema.metadata or {}).get(HASHED, b"[]")))


def hashed_with(schema: pa.Schema) -> str | None:
    """The fingerprint of the key a log file's private fields are hashed with; None: raw."""
    found = (schema.metadata or {}).get(KEY)
    return found.decode() if found else None


def hash_columns(table: pa.Table, names: tuple[str, ...], key: bytes) -> pa.Table:
    """The table with the columns `names` (those it has) replaced by their keyed hashes."""
    for name in names:
        if name in table.column_names:
            i = table.column_names.index(name)
            column = pa.field(name, pa.string(), table.schema.field(name).nullable)
            table = table.set_column(i, column, hash_ids(table[name], key))
    return table


def env_key() -> bytes:
    """The secret of CD4ML_LOG_KEY (b"" when it is unset or empty)."""
    return os.environ.get(KEY_ENV, "").encode()


def log_key(private: tuple[str, ...], keep_raw: bool) -> bytes:
    """The key a prediction log hashes `private` with: b"" when there is nothing to hash or raw
    ids are kept; a UserError when it is needed and CD4ML_LOG_KEY is not set."""
    if not private or keep_raw:
        return b""
    key = env_key()
    if not key:
        raise UserError(
            f"the prediction log writes {', '.join(private)} as keyed hashes and {KEY_ENV} is "
            f"not set: set it to a secret (e.g. `openssl rand -hex 32`), or pass --keep-raw-ids "
            f'to log raw ids, or --prediction-log "" for no log'
        )
    return key


def written_at(name: str, prefix: str = PREFIX, suffix: str = SUFFIX) -> dt.datetime | None:
    """When a file was written, from its name, <prefix><UTC time>-<pid>-<random><suffix> (a log
    file's, or with the history's prefix and suffix, a monitor record's); None for another name."""
    pattern = rf"{re.escape(prefix)}(\d{{8}}T\d{{12}})-\d+-[0-9a-f]{{8}}{re.escape(suffix)}"
    found = re.fullmatch(pattern, name)
    if found is None:
        return None
    return dt.datetime.strptime(found[1], "%Y%m%dT%H%M%S%f").replace(tzinfo=dt.UTC)


def expire(
    where: str,
    days: float,
    now: dt.datetime | None = None,
    prefix: str = PREFIX,
    suffix: str = SUFFIX,
) -> list[str]:
    """Delete the log files (or the files named as `written_at` reads them) written more than
    `days` ago, by the time in their names (a copy or a sync keeps it, unlike a modification
    time); any other file is left alone. Returns the paths deleted."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    old = []
    for path in listing(where, f"{prefix}*{suffix}"):
        written = written_at(path.rsplit("/", 1)[-1], prefix, suffix)
        if written is not None and written < cutoff:
            old.append(path)
    if old and where.startswith("s3://"):
        _s3_filesystem().rm(old)
    else:
        for path in old:
            Path(path).unlink(missing_ok=True)
    return old


def listing(where: str, pattern: str) -> list[str]:
    """The paths of the files matching `pattern` in a folder or under an s3:// prefix, sorted
    (their names start with the time they were written); none when the folder is missing."""
    if where.startswith("s3://"):
        found = _s3_filesystem().glob(f"{where.rstrip('/')}/{pattern}")
        return sorted(f"s3://{p}" for p in found)
    folder = Path(where)
    return sorted(str(p) for p in folder.glob(pattern)) if folder.is_dir() else []


def opener(where: str) -> Any:
    """open() for the paths `listing` gives."""
    return _s3_filesystem().open if where.startswith("s3://") else open


def _s3_filesystem() -> Any:
    """fsspec's S3 filesystem (s3fs, which dvc-s3 brings), with S3_ENDPOINT when set."""
    import s3fs

    endpoint = os.environ.get("S3_ENDPOINT")
    return s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": endpoint} if endpoint else None,
        config_kwargs={"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 2}},
    )


def file_name(prefix: str, suffix: str, now: dt.datetime | None = None) -> str:
    """A new file's name, <prefix><UTC time>-<pid>-<random><suffix>: names sort in time order
    and `written_at` reads the time back (a log file: PREFIX, SUFFIX)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{prefix}{now:%Y%m%dT%H%M%S%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def store(where: str, name: str, write: Callable[[BinaryIO], object]) -> str:
    """Write one file, `write`(its handle), under a folder (temp file, then rename) or an s3://
    prefix (one PUT); return its path."""
    if where.startswith("s3://"):
        path = f"{where.rstrip('/')}/{name}"
        with _s3_filesystem().open(path, "wb") as fh:
            write(fh)
        return path
    folder = Path(where)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    try:
        with tmp.open("wb") as fh:
            write(fh)
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    return str(folder / name)


def write_file(table: pa.Table, where: str, name: str) -> str:
    """Write one log file (`store`); return its path."""
    return store(where, name, lambda fh: pq.write_table(table, fh, compression="zstd"))


@dataclass
class PredictionLog:
    """A background writer of scored rows; `add` never blocks and never raises."""

    where: str
    schema: pa.Schema
    rows_per_file: int = 100_000
    flush_seconds: float = 30.0
    max_queued_rows: int = 1_000_000
    key: bytes = field(default=b"", repr=False)  # hashes the schema's hashed columns
    written_rows: int = 0
    dropped_rows: int = 0
    files: int = 0
    _queue: queue.Queue = field(default_factory=queue.Queue, repr=False)
    _queued: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _closed: bool = False
    _hashed: tuple[str, ...] = ()

    def start(self) -> PredictionLog:
        self._hashed = hashed_columns(self.schema)
        if self._hashed and hashed_with(self.schema) != fingerprint(self.key):
            raise ValueError("a log of hashed ids needs the key its schema names")
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        log.info(
            "prediction log: %s (%d rows a file, every %.0f s at least)%s",
            self.where,
            self.rows_per_file,
            self.flush_seconds,
            f"; {', '.join(self._hashed)} as keyed hashes (key {fingerprint(self.key)})"
            if self._hashed
            else "",
        )
        return self

    def add(
        self,
        rows: pa.Table,
        scored: Scored,
        version: str | None,
        ids: list[int | None],
        request_id: str | None = None,
    ) -> None:
        """Queue the rows of one request (the raw fields, probabilities, version, time)."""
        n = rows.num_rows
        with self._lock:
            if self._closed or self._queued + n > self.max_queued_rows:
                self.dropped_rows += n
                return
            self._queued += n
        now = pa.array(np.full(n, int(time.time() * 1000), dtype="datetime64[ms]"), TIME)
        if self._hashed:  # before the queue: a raw private id is never held for writing
            rows = hash_columns(rows, self._hashed, self.key)
        batch = pa.table(
            {
                "ts": now,
                "model_version": pa.array([version] * n, pa.string()),
                **{c: rows[c] for c in rows.column_names},
                "id": pa.array(ids, pa.int64()),
                REQUEST: pa.array([request_id] * n, pa.string()),
                "probability": pa.array(np.asarray(scored.probabilities, dtype=np.float32)),
                **{k: pa.array(np.asarray(v, dtype=bool)) for k, v in scored.flags.items()},
            },
            schema=self.schema,
        )
        self._queue.put(batch)

    def _run(self) -> None:
        pending: list[pa.Table] = []
        rows = 0
        last = time.monotonic()
        while True:
            timeout = max(0.05, self.flush_seconds - (time.monotonic() - last))
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is not None and item is not _STOP:
                pending.append(item)
                rows += item.num_rows
            due = time.monotonic() - last >= self.flush_seconds
            while rows >= self.rows_per_file or ((due or item is _STOP) and rows):
                table = pa.concat_tables(pending)
                head = table.slice(0, self.rows_per_file)
                self._write(head)
                rest = table.slice(head.num_rows)
                pending, rows = ([rest] if rest.num_rows else []), rest.num_rows
            if due or item is _STOP:
                last = time.monotonic()
            if item is _STOP:
                return

    def _write(self, table: pa.Table) -> None:
        name = file_name(PREFIX, SUFFIX)
        try:
            write_file(table, self.where, name)
        except Exception as err:  # a full disk, a store that is down: never the request's fault
            self.dropped_rows += table.num_rows
            log.warning(
                "prediction log: %d rows dropped, %s not written (%s: %s); %d dropped so far",
                table.num_rows,
                name,
                type(err).__name__,
                str(err)[:200],
                self.dropped_rows,
            )
        else:
            self.written_rows += table.num_rows
            self.files += 1
        finally:
            with self._lock:
                self._queued -= table.num_rows

    def close(self, timeout: float = 30.0) -> None:
        """Write every queued row, then stop the writer (a clean shutdown loses nothing)."""
        with self._lock:
            self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        log.info(
            "prediction log: %d rows in %d files, %d dropped",
            self.written_rows,
            self.files,
            self.dropped_rows,
        )

    def stats(self) -> dict[str, int]:
        return {
            "written_rows": self.written_rows,
            "dropped_rows": self.dropped_rows,
            "files": self.files,
            "queued_rows": self._queued,
        }


_STOP = object()
