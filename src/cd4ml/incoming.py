"""The incoming area where new train.csv chunks wait: a local folder or an S3 prefix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

from cd4ml.io import UserError

TRUTH_SUFFIX = ".truth.csv"


def chunk_name(index: int) -> str:
    """File name of chunk number `index` (1-based): names sort in time order."""
    return f"chunk-{index:03d}.csv"


def truth_name(chunk: str) -> str:
    """The truth-file companion of a chunk (synthetic data only)."""
    return chunk.removesuffix(".csv") + TRUTH_SUFFIX


class Incoming(Protocol):
    """Where chunks are listed, fetched and stored."""

    def names(self) -> list[str]: ...
    def fetch(self, name: str, dest: Path) -> bool: ...
    def put(self, src: Path, name: str) -> None: ...


class LocalIncoming:
    """Chunks in a local folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            raise UserError(f"incoming folder {self.folder} does not exist; run `make split-data`")
        return sorted(
            p.name for p in self.folder.glob("chunk-*.csv") if not p.name.endswith(TRUTH_SUFFIX)
        )

    def fetch(self, name: str, dest: Path) -> bool:
        src = self.folder / name
        if not src.exists():
            return False
        shutil.copyfile(src, dest)
        return True

    def put(self, src: Path, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, self.folder / name)


class S3Incoming:
    """Chunks under an s3://bucket/prefix (endpoint from S3_ENDPOINT, keys from AWS_*)."""

    def __init__(self, url: str) -> None:
        import s3fs

        self.url = url.rstrip("/")
        self.path = self.url.removeprefix("s3://")
        endpoint = os.environ.get("S3_ENDPOINT") or None
        self.fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint} if endpoint else {})

    def _call(self, what: str, func, *args):
        try:
            return func(*args)
        except FileNotFoundError:
            raise
        except Exception as err:  # botocore/aiohttp raise many kinds; the message says which
            raise UserError(
                f"incoming area {self.url}: {what} failed ({type(err).__name__}: {err}); check "
                "S3_ENDPOINT, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that the bucket exists"
            ) from None

    def names(self) -> list[str]:
        try:
            listed = self._call("listing", self.fs.ls, self.path)
        except FileNotFoundError:
            return []
        names = (Path(p).name for p in listed)
        return sorted(
            n
            for n in names
            if n.startswith("chunk-") and n.endswith(".csv") and not n.endswith(TRUTH_SUFFIX)
        )

    def fetch(self, name: str, dest: Path) -> bool:
        try:
            self._call(f"download of {name}", self.fs.get, f"{self.path}/{name}", str(dest))
        except FileNotFoundError:
            return False
        return True

    def put(self, src: Path, name: str) -> None:
        self._call(f"upload of {name}", self.fs.put, str(src), f"{self.path}/{name}")


def open_incoming(location: str) -> Incoming:
    """A local folder, or an S3 prefix when the location starts with s3://."""
    if location.startswith("s3://"):
        return S3Incoming(location)
    return LocalIncoming(Path(location))
