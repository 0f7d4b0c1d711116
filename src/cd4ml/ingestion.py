"""New data versions: append a validated chunk to the examples table (KKBox: data/train.csv),
atomically, exactly once."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
from pathlib import Path

from cd4ml import remote, validation
from cd4ml.contract import Contract
from cd4ml.io import UserError, atomic_dir, sha256
from cd4ml.reading import read_table
from cd4ml.shell import checked, dvc, git

log = logging.getLogger(__name__)

MANIFEST = "ingested.json"
# Test hook: a real `kill -9` of this process at a named point of the merge.
CRASH_ENV = "CD4ML_INGEST_CRASH_AT"


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def read_manifest(data: Path) -> dict:
    """The chunks already in data/ (empty when data/ was not built from chunks)."""
    path = data / MANIFEST
    if not path.exists():
        return {"chunks": []}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path}: not valid JSON ({err}); restore it with `dvc checkout data`"
        ) from None


def validate_chunk(path: Path, contract: Contract) -> int:
    """Check a chunk against the examples table's contract (the validate stage's rules)."""
    spec = contract.tables[contract.examples]
    table = read_table(path, spec)
    findings, _, _ = validation.check_table(contract.examples, table, spec)
    if findings:
        more = f" (+{len(findings) - 1} more problem(s))" if len(findings) > 1 else ""
        first = dataclasses.replace(findings[0], table=path.name)  # the chunk, not the table
        raise UserError(first.describe(path.parent) + more)
    return table.num_rows


def recover(data: Path) -> None:
    """Undo what a crash between the two renames of a swap left behind."""
    old = data.with_name(f".{data.name}.old")
    if not data.exists() and old.exists():
        log.warning("restoring %s from an interrupted ingest", data)
        os.replace(old, data)
    for stale in data.parent.glob(f".{data.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _body(path: Path) -> bytes:
    """A CSV's bytes without its header row, ending in a newline."""
    with path.open("rb") as fh:
        fh.readline()
        body = fh.read()
    return body if not body or body.endswith(b"\n") else body + b"\n"


def _concat(base: Path | None, chunk: Path, out: Path) -> None:
    with out.open("wb") as fh:
        if base is not None:
            with base.open("rb") as src:
                shutil.copyfileobj(src, fh, 16 << 20)
            fh.seek(0, os.SEEK_END)
        else:
            with chunk.open("rb") as src:
                fh.write(src.readline())
        fh.write(_body(chunk))


def _count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(16 << 20), b"")) - 1


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def new_version(
    data: Path, chunk: Path, truth: Path | None, name: str, restart: bool, contract: Contract
) -> dict:
    """Swap in a data/ whose examples table has the chunk appended (or is the chunk, if
    `restart`); `truth`, the chunk's truth file (synthetic data), goes to the truth table.

    Everything is built in a temp folder next to data/ and swapped in with renames: a crash
    at any point leaves the previous data/ (or, between the renames, `recover` restores it).
    """
    recover(data)
    manifest = {"chunks": []} if restart else read_manifest(data)
    rows = validate_chunk(chunk, contract)
    digest = sha256(chunk)
    examples, truth_table = contract.examples, contract.truth or ""
    train = data / examples
    has_truth = (
        truth is not None and bool(truth_table) and (restart or (data / truth_table).exists())
    )
    if truth is not None and not has_truth:
        log.warning("data/ has no %s: the chunk's truth file is not kept", truth_table)
    elif truth is None and truth_table and (data / truth_table).exists():
        log.warning("chunk %s has no truth file: dropping %s (no oracle AUC)", name, truth_table)
    with atomic_dir(data) as staging:
        for path in data.iterdir():
            if path.name not in (examples, truth_table, MANIFEST) and path.is_file():
                _link_or_copy(path, staging / path.name)
        _concat(None if restart else train, chunk, staging / examples)
        _crash_point("merge")
        if has_truth:
            _concat(None if restart else data / truth_table, truth, staging / truth_table)
        total = _count_rows(staging / examples)
        manifest["chunks"].append(
            {"name": name, "sha256": digest, "rows": rows, "train_rows_after": total}
        )
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _crash_point("swap")
    log.info("data/: %s appended (+%d rows, %s now %d rows)", name, rows, examples, total)
    return manifest["chunks"][-1]


def record(repo: Path, message: str, push: bool, git_push: bool) -> None:
    """`dvc add data`, optionally `dvc push`, then commit data.dvc (and push the commit)."""
    checked(dvc("add", "data", "--quiet", cwd=repo), "dvc add data")
    if push:
        try:
            remote.sync("push", ["data.dvc"], repo=repo)
        except UserError as err:
            raise UserError(f"push of the new data failed: {err}") from None
    checked(git("add", "data.dvc", ".gitignore", cwd=repo), "git add")
    checked(
        git("commit", "-q", "-m", message, "--", "data.dvc", ".gitignore", cwd=repo), "git commit"
    )
    if git_push:
        if checked(git("remote", cwd=repo), "git remote").strip():
            checked(git("push", "-q", cwd=repo), "git push")
        else:
            log.info("no git remote configured: commit kept local")
