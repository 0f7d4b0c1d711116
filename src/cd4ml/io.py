"""I/O helpers of the loop: logging, atomic writes, Parquet and CSV, one-line errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

# Parquet options for tables of many rows that repeat long ids (KKBox's plays: each repeats a
# member's and a song's 44-character id). Parquet's 1 MB dictionary page holds neither the 34k
# member ids (1.5 MB) nor a row group's songs, so both fell back to plain strings. With room for
# them the file is a quarter of the size and faster to write and read back (measured at full
# scale: train 396 -> 106 MB, write 2.5 -> 2.1 s, read 2.3 -> 1.5 s). Tables with one row per
# id keep the default: a dictionary of unique values only costs.
REPEATED_IDS_PARQUET: dict[str, Any] = {
    "use_dictionary": True,
    "dictionary_pagesize_limit": 64 << 20,
}


class UserError(Exception):
    """A problem the user can fix (bad input, bad params): shown as one line, no traceback."""


def setup_logging(verbose: bool = False) -> None:
    """Configure stage logging: time, level, message on stderr."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's main(); turn a UserError into one readable line and exit code 1."""
    setup_logging(os.environ.get("CD4ML_VERBOSE") == "1")
    try:
        main(argv)
    except UserError as err:
        first, _, detail = str(err).partition("\n")
        print(f"error: {first}", file=sys.stderr)
        if detail:
            print(detail, file=sys.stderr)
        sys.exit(1)


def lean_memory_pool() -> None:
    """Give Arrow an allocator that returns freed memory to the system promptly (jemalloc, or
    the system's): its default, mimalloc, keeps freed pages and adds GBs to a big stage's peak."""
    for pool in ("jemalloc", "system"):
        try:
            pa.set_memory_pool(getattr(pa, f"{pool}_memory_pool")())
            return
        except NotImplementedError:  # a pyarrow built without jemalloc
            continue


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temp directory; swap it in for `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ParquetFolder:
    """The temp folder of `parquet_folder`, and its background writer."""

    def __init__(self, path: Path, pool: ThreadPoolExecutor) -> None:
        self.path = path.absolute()  # a path under it then names a file in it from any cwd
        self._pool = pool
        self._jobs: list[Future] = []

    def write(
        self, table: pa.Table, name: str | Path, compression: str = "zstd", **options: Any
    ) -> None:
        """Start writing `table` as `name` (a path in the folder: relative to it, or under
        it) on a background thread (see write_parquet)."""
        job = self._pool.submit(write_parquet, table, self.path / name, compression, **options)
        self._jobs.append(job)

    def wait(self) -> None:
        """Wait for every write; the first failure is raised."""
        for job in self._jobs:
            job.result()


@contextlib.contextmanager
def parquet_folder(path: str | Path, workers: int = 2) -> Iterator[ParquetFolder]:
    """An output folder swapped in whole (atomic_dir) whose Parquet files are written on
    background threads while the caller computes: Parquet encoding releases the GIL, and one
    file's encoding uses one core. If the block fails, nothing is swapped in."""
    with atomic_dir(path) as tmp:
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            folder = ParquetFolder(tmp, pool)
            yield folder
            folder.wait()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def md5(path: Path) -> str:
    """Hex MD5 of a file's content: the name DVC's cache gives it."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def write_json(data: Any, path: str | Path) -> None:
    """Write JSON atomically, keys sorted so the same content gives the same bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_parquet(
    table: pa.Table, path: str | Path, compression: str = "zstd", **options: Any
) -> None:
    """Write a Parquet file atomically (lz4 writes and reads faster, zstd is smaller); options
    go to pyarrow.parquet.write_table."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression, **options)


def read_parquet(
    path: str | Path, columns: list[str] | None = None, read_dictionary: list[str] | None = None
) -> pa.Table:
    """Read a Parquet file, with a clear error when it is missing or corrupt.

    Columns in `read_dictionary` come back dictionary-encoded (pandas: Categorical)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found; run the stage that makes it (dvc repro)")
    try:
        return pq.read_table(path, columns=columns, read_dictionary=read_dictionary)
    except (pa.ArrowInvalid, OSError) as err:
        raise UserError(
            f"{path}: not a readable Parquet file ({err}); delete it and rerun `dvc repro`"
        ) from None


_NEEDS_QUOTES = r'[,"\n\r]'


def _float_text(values: Any) -> pa.Array:
    """Floats as numpy writes them ("52.0", "1e-05"); NaN -> missing. Arrow formats the common
    range (the same shortest round-trip digits); numpy only the rare values it writes otherwise."""
    import numpy as np

    wide = values.astype(np.float64)
    text = pc.cast(pa.array(values), pa.string())
    finite = np.isfinite(wide)
    magnitude = np.abs(wide)
    odd = finite & (magnitude != 0) & ((magnitude < 1e-4) | (magnitude >= 1e6))
    whole = finite & ~odd & (wide == np.floor(wide))
    text = pc.if_else(pa.array(whole), pc.binary_join_element_wise(text, ".0", ""), text)
    if odd.any():
        exact = pa.array(values[odd].astype(str).tolist(), pa.string())
        text = pc.replace_with_mask(text, pa.array(odd), exact)
    return pc.if_else(pa.array(np.isnan(wide)), pa.scalar(None, pa.string()), text)


def _csv_field(values: Any) -> pa.Array:
    """One column as CSV fields (null = empty), quoted only where CSV needs it (as Kaggle)."""
    import numpy as np

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.DictionaryArray):
        return _csv_field(values.dictionary).take(values.indices)
    if not isinstance(values, pa.Array):
        values = np.asarray(values)
        if values.dtype.kind == "f":
            return _float_text(values)
        values = pa.array(values, pa.string() if values.dtype.kind in "OUS" else None)
    if not pa.types.is_string(values.type):
        return pc.cast(values, pa.string())
    needs = pc.match_substring_regex(values, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, values)


def _csv_chunk(columns: list[Any]) -> pa.Buffer:
    """The CSV text of equal-length column slices, one line per row."""
    import numpy as np

    fields = [_csv_field(c) for c in columns]
    lines = pc.binary_join_element_wise(*fields, ",", null_handling="replace")
    lines = pc.binary_join_element_wise(lines, "", "\n")
    # The lines' data buffer, from the first line's start to the last one's end, is the text.
    _, offsets, data = lines.buffers()
    ends = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    return data.slice(int(ends[0]), int(ends[1] - ends[0]))


def write_csv(columns: dict[str, Any], path: str | Path, chunk_rows: int = 1_000_000) -> int:
    """Write equal-length columns (numpy or Arrow arrays) as a Kaggle-style CSV, atomically:
    missing -> empty field, floats as numpy prints them; return the number of rows."""
    names = list(columns)
    n = len(columns[names[0]])
    # Arrow's kernels release the GIL: two chunks are formatted at once, at most two in memory.
    with atomic_path(path) as tmp, tmp.open("wb") as fh, ThreadPoolExecutor(2) as pool:
        fh.write((",".join(names) + "\n").encode("utf-8"))
        pending: deque = deque()
        for lo in range(0, n, chunk_rows):
            chunk = [columns[c][lo : lo + chunk_rows] for c in names]
            pending.append(pool.submit(_csv_chunk, chunk))
            if len(pending) == 2:
                fh.write(pending.popleft().result())
        while pending:
            fh.write(pending.popleft().result())
    return n
