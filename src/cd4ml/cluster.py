"""The dask engine's plumbing: a client of the cluster, and the scratch storage between the
workspace and the workers.

The workers never read the client's disk. A stage's input files are staged to a scratch prefix
that every worker can read (S3, or a folder on a shared filesystem), under their MD5 as DVC's
cache names them, so a rerun on the same data uploads nothing. Workers write their outputs under
a fresh run prefix; the client streams them back into the workspace, where DVC expects them.

The cluster comes from the environment, never from a tracked file: DASK_SCHEDULER_ADDRESS (none:
a local cluster of DASK_WORKERS processes on 127.0.0.1), DASK_SCRATCH (default:
s3://$S3_BUCKET/dask-scratch, or a local folder for a local cluster), S3_ENDPOINT and the AWS keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from cd4ml.io import UserError, atomic_path, md5

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SCHEDULER = "DASK_SCHEDULER_ADDRESS"
CONNECT_SECONDS = 8  # a scheduler that does not answer fails the stage within 10 s
# pyarrow's default row group: outputs gathered from partitions are laid out as one write
# of the whole table would be, so both engines write the same bytes.
ROW_GROUP = 1 << 20


@dataclass(frozen=True)
class Scratch:
    """A prefix every worker can read and write: an s3:// URL or an absolute folder."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)  # fsspec's (S3 endpoint, keys)

    def fs(self) -> Any:
        import fsspec

        return fsspec.core.url_to_fs(self.url, **self.options)[0]

    def stage(self, *paths: Path) -> list[str]:
        """The URLs of the files' contents in the scratch space, each uploaded unless already
        there; all at once (hashing and uploads release the GIL)."""
        with ThreadPoolExecutor(max(1, min(8, len(paths)))) as pool:
            return list(pool.map(self._stage, paths))

    def _stage(self, path: Path) -> str:
        digest = md5(path)
        url = f"{self.url}/md5/{digest[:2]}/{digest[2:]}"
        fs = self.fs()
        with self._errors("upload to"):
            if fs.exists(url):
                return url
            if url.startswith("s3://"):  # an S3 object appears whole, or not at all
                fs.put_file(str(path), url)
            else:
                partial = f"{url}.{uuid.uuid4().hex}.tmp"
                fs.put_file(str(path), partial)
                fs.mv(partial, url)
            log.info("staged %s (%d bytes) to %s", path, path.stat().st_size, url)
        return url

    def run_prefix(self) -> str:
        """A fresh prefix for one run's outputs."""
        return f"{self.url}/runs/{uuid.uuid4().hex}"

    def remove(self, url: str) -> None:
        """Delete a run prefix (best effort: scratch space is disposable)."""
        with contextlib.suppress(Exception):
            self.fs().rm(url, recursive=True)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (OSError, PermissionError, ValueError) as err:
            endpoint = self.options.get("client_kwargs", {}).get("endpoint_url")
            where = f"{self.url}" + (f" (endpoint {endpoint})" if endpoint else "")
            raise UserError(
                f"cannot {doing} the dask scratch space {where}: {err}; set DASK_SCRATCH to a "
                "prefix every worker can read and write (s3://BUCKET/PREFIX with S3_ENDPOINT "
                "and the AWS keys, or a shared folder)"
            ) from None


def scratch(local_cluster: bool) -> Scratch:
    """The scratch space the environment names (see the module's docstring)."""
    env = os.environ
    options: dict[str, Any] = {}
    if env.get("AWS_ACCESS_KEY_ID"):
        options.update(key=env["AWS_ACCESS_KEY_ID"], secret=env.get("AWS_SECRET_ACCESS_KEY"))
    if env.get("S3_ENDPOINT"):
        options["client_kwargs"] = {"endpoint_url": env["S3_ENDPOINT"]}
    url = env.get("DASK_SCRATCH") or (
        f"s3://{env['S3_BUCKET']}/dask-scratch" if env.get("S3_BUCKET") else ""
    )
    if not url:
        if not local_cluster:
            raise UserError(
                f"{SCHEDULER} is set but no scratch space is: the workers cannot read this "
                "machine's disk; set DASK_SCRATCH=s3://BUCKET/PREFIX (or S3_BUCKET), with "
                "S3_ENDPOINT and the AWS keys"
            )
        url = str(Path(".dask-scratch").resolve())
    if not url.startswith("s3://"):
        return Scratch(str(Path(url).resolve()), {"auto_mkdir": True})
    # A server that stops answering (or a full one, which holds every write) fails the stage
    # instead of hanging it.
    options["config_kwargs"] = {
        "connect_timeout": 5,
        "read_timeout": 60,
        "retries": {"max_attempts": 3},
    }
    return Scratch(url.rstrip("/"), options)


@contextlib.contextmanager
def connect(
    packages: tuple[str, ...], workers: int | None = None
) -> Iterator[tuple[Any, Scratch]]:
    """A client of the cluster the environment names, and the scratch space, for one stage;
    the workers must run this checkout's `packages` (check_workers)."""
    import distributed

    address = os.environ.get(SCHEDULER)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    # xgboost.dask finds the classes with drop_duplicates: a small shuffle, logged as a warning
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        if address:
            try:
                client = distributed.Client(address, timeout=CONNECT_SECONDS)
            except (OSError, TimeoutError) as err:
                raise UserError(
                    f"cannot reach the Dask scheduler at {address} ({SCHEDULER}) within "
                    f"{CONNECT_SECONDS} s: is it up? ({str(err).splitlines()[0]}); unset "
                    f"{SCHEDULER} to run on a local cluster"
                ) from None
        else:
            count = workers or int(os.environ.get("DASK_WORKERS", "2"))
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=count,
                    threads_per_worker=1,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # loopback, a free port
                    silence_logs=logging.WARNING,
                )
            )
            client = distributed.Client(cluster)
        stack.enter_context(client)
        try:
            client.wait_for_workers(1, timeout=CONNECT_SECONDS)
        except TimeoutError:
            raise UserError(
                f"the Dask scheduler at {address or 'the local cluster'} has no workers "
                f"after {CONNECT_SECONDS} s; start some (`dask worker {address}`)"
            ) from None
        check_workers(client, address or "the local cluster", packages)
        log.info(
            "dask cluster %s: %d workers",
            address or "local (127.0.0.1)",
            len(client.scheduler_info()["workers"]),
        )
        yield client, scratch(local_cluster=not address)


def code_digest(packages: tuple[str, ...]) -> str:
    """SHA-256 (12 hex digits) of the sources of these packages (each module's folder), where
    it runs."""
    import importlib

    digest = hashlib.sha256()
    for package in packages:
        folder = Path(importlib.import_module(package).__file__).parent
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).as_posix()
            digest.update(f"{package}/{rel}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def check_workers(client: Any, where: str, packages: tuple[str, ...]) -> None:
    """The workers must run this checkout's code of the loop and the problem (they import their
    own installation, not the client's files): other code there would quietly compute other
    features."""
    mine = code_digest(packages)
    names = " and ".join(packages)
    try:
        theirs = client.run(code_digest, packages)
    except Exception as err:  # a worker without the project: ModuleNotFoundError, mostly
        raise UserError(
            f"the Dask workers of {where} cannot run {names} ({type(err).__name__}: {err}); "
            "install this project's environment (Pipfile.lock) on them"
        ) from None
    other = {worker: digest for worker, digest in theirs.items() if digest != mine}
    if other:
        worker, digest = next(iter(other.items()))
        raise UserError(
            f"{len(other)} of the {len(theirs)} Dask workers of {where} run other {names} code "
            f"than this checkout ({worker}: {digest}, here: {mine}); give the workers this "
            f"commit's src/ folder"
        )


@dataclass(frozen=True)
class Piece:
    """Rows start .. stop - 1 of a Parquet file in the scratch space: one partition."""

    url: str
    start: int
    stop: int


def pieces(space: Scratch, url: str, partitions: int) -> list[Piece]:
    """A Parquet file's rows cut into about `partitions` pieces (at most a row group each)."""
    with space._errors("read from"), space.fs().open(url, "rb") as fh:
        rows = pq.ParquetFile(fh).metadata.num_rows
    size = max(1, min(ROW_GROUP, -(-rows // max(1, partitions))))
    return [Piece(url, lo, min(rows, lo + size)) for lo in range(0, rows, size)] or [
        Piece(url, 0, 0)
    ]


def frame(
    space: Scratch, url: str, partitions: int, read: Callable[[Piece], pd.DataFrame]
) -> tuple[Any, list[Piece]]:
    """A dask DataFrame of a staged Parquet file, about `partitions` pieces that `read` turns
    into pandas on the workers (its meta: `read` of no rows, here); and the pieces."""
    import dask.dataframe as dd

    cuts = pieces(space, url, partitions)
    return dd.from_map(read, cuts, meta=read(Piece(url, 0, 0))), cuts


def read_piece(
    piece: Piece, options: dict[str, Any], columns: list[str], dictionary: list[str] = ()
) -> pa.Table:
    """On a worker: a piece's rows (`dictionary` columns dictionary-encoded), read from the
    row groups that hold them only."""
    import fsspec

    fs = fsspec.core.url_to_fs(piece.url, **options)[0]
    with fs.open(piece.url, "rb") as fh:
        parquet = pq.ParquetFile(fh, read_dictionary=list(dictionary))
        groups, first, row = [], None, 0
        for group in range(parquet.metadata.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            if row < piece.stop and row + size > piece.start:
                groups.append(group)
                first = row if first is None else first
            row += size
        table = parquet.read_row_groups(groups, columns=columns)
    return table.slice(piece.start - (first or 0), piece.stop - piece.start)


def write_piece(table: pa.Table, url: str, options: dict[str, Any]) -> str:
    """On a worker: one partition's output table to the scratch space; its URL."""
    import fsspec

    fs = fsspec.core.url_to_fs(url, **options)[0]
    with fs.open(url, "wb") as fh:
        pq.write_table(table, fh, compression="lz4")
    return url


def gather_parquet(scratch_space: Scratch, urls: list[str], path: Path, compression: str) -> int:
    """Stream the partition files at `urls` (in order) into one Parquet file at `path`,
    atomically, with the row groups one write of the whole table gives; return its rows."""
    if not urls:
        raise ValueError("no partition files to gather")
    fs = scratch_space.fs()
    pending: list[pa.Table] = []
    rows = 0
    with atomic_path(path) as tmp, scratch_space._errors("read back from"):
        writer = None
        for url in urls:
            with fs.open(url, "rb") as fh:
                pending.append(pq.read_table(fh))
            if sum(len(t) for t in pending) < ROW_GROUP and url != urls[-1]:
                continue
            table = pa.concat_tables(pending)
            full = len(table) if url == urls[-1] else len(table) // ROW_GROUP * ROW_GROUP
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression=compression)
            writer.write_table(table.slice(0, full), row_group_size=ROW_GROUP)
            rows += full
            pending = [table.slice(full)]
        if writer is not None:
            writer.close()
    return rows
