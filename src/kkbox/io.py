"""I/O helpers shared by every stage: logging, params, atomic writes, one-line errors."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

log = logging.getLogger(__name__)


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


def load_params(path: str | Path, section: str | None = None) -> dict[str, Any]:
    """Read params.yaml (or one section of it) with a clear error when it is missing or bad."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            params = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise UserError(f"{path}: params file not found") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    if section is None:
        return params
    if section not in params or not isinstance(params[section], dict):
        raise UserError(f"{path}: section '{section}' is missing or not a mapping")
    return params[section]


def require(params: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Return params[key] checked against a type, or raise a UserError naming the key."""
    if key not in params:
        raise UserError(f"params.yaml: {where}.{key} is missing")
    value = params[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass: `true` must not pass as a number.
    ok = False if isinstance(value, bool) and bool not in kinds else isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise UserError(
            f"params.yaml: {where}.{key} must be {names}, got {value!r} ({type(value).__name__})"
        )
    return value


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


def write_json(data: Any, path: str | Path) -> None:
    """Write JSON atomically, keys sorted so the same content gives the same bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write a Parquet file atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file, with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found; run the stage that makes it (dvc repro)")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as err:
        raise UserError(
            f"{path}: not a readable Parquet file ({err}); delete it and rerun `dvc repro`"
        ) from None


def _csv_text(values: Any) -> list[str]:
    """One column as CSV fields: missing -> empty, quoted only where CSV needs it (as Kaggle)."""
    import numpy as np

    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(str).tolist()
    if arr.dtype.kind == "f":
        text = arr.astype(str)
        text[np.isnan(arr)] = ""
        return text.tolist()
    out = []
    for v in arr.tolist():
        if v is None:
            out.append("")
        elif any(c in v for c in ',"\n\r'):
            out.append('"' + v.replace('"', '""') + '"')
        else:
            out.append(v)
    return out


def write_csv(columns: dict[str, Any], path: str | Path, chunk_rows: int = 500_000) -> int:
    """Write equal-length column arrays as a Kaggle-style CSV (atomically); return the rows."""
    names = list(columns)
    n = len(columns[names[0]])
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(names) + "\n")
        for lo in range(0, n, chunk_rows):
            fields = [_csv_text(columns[c][lo : lo + chunk_rows]) for c in names]
            fh.write("\n".join(map(",".join, zip(*fields, strict=True))))
            fh.write("\n")
    return n
