"""Data evolution: chunks ingested one by one into versioned data/, exactly once, atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.project import copy_project, run

pytestmark = pytest.mark.slow


def _tree_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _commits(project: Path) -> int:
    return int(run(["git", "rev-list", "--count", "HEAD"], project).stdout)


@pytest.fixture
def chunked(tmp_path) -> Path:
    """A project copy whose data/ history starts with chunk 1 of 3 (local incoming folder)."""
    project = copy_project(tmp_path / "repo")
    run(["python", "-m", "cd4ml.generate", "--scale", "tiny", "--out", "data"], project)
    run(
        ["python", "-m", "cd4ml.chunks", "--chunks", "3", "--out", "incoming", "--commit"], project
    )
    return project


def test_chunks_keep_the_header_and_time_order(chunked):
    chunks = sorted((chunked / "incoming").glob("chunk-00?.csv"))
    assert [c.name for c in chunks] == ["chunk-001.csv", "chunk-002.csv", "chunk-003.csv"]
    header = (chunked / "data/train.csv").read_text().splitlines()[0]
    assert all(c.read_text().splitlines()[0] == header for c in chunks)
    assert (chunked / "data/train.csv").read_bytes() == chunks[0].read_bytes()
    manifest = json.loads((chunked / "data/ingested.json").read_text())
    assert [c["name"] for c in manifest["chunks"]] == ["chunk-001.csv"]


def test_three_chunks_give_three_versions_and_reingest_is_a_noop(chunked):
    start = _commits(chunked)
    for expected_rows in (20_000, 30_000):
        result = run(["python", "-m", "cd4ml.ingest", "--commit"], chunked)
        assert f"train.csv now {expected_rows} rows" in result.stderr
        assert len((chunked / "data/train.csv").read_text().splitlines()) == expected_rows + 1
        truth = (chunked / "data/train_truth.csv").read_text().splitlines()
        assert len(truth) == expected_rows + 1
    assert _commits(chunked) == start + 2
    before = _tree_digest(chunked / "data")
    again = run(["python", "-m", "cd4ml.ingest", "--commit"], chunked)
    assert "nothing new" in again.stderr
    same = run(["python", "-m", "cd4ml.ingest", "--commit", "--chunk", "chunk-002.csv"], chunked)
    assert "already in data/" in same.stderr
    assert _tree_digest(chunked / "data") == before and _commits(chunked) == start + 2
    log = run(["git", "log", "--format=%s"], chunked).stdout
    assert "data: ingest chunk-003.csv (+10000 rows, train.csv now 30000 rows)" in log
    # Only the stages whose inputs changed rerun; a second repro does nothing.
    run(["dvc", "repro"], chunked)
    assert "Running stage" not in run(["dvc", "repro"], chunked).stdout


def test_a_malformed_chunk_is_rejected_and_data_is_unchanged(chunked):
    bad = chunked / "incoming/chunk-002.csv"
    lines = bad.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",2"  # target 2
    bad.write_text("\n".join(lines) + "\n")
    before = _tree_digest(chunked / "data")
    result = run(["python", "-m", "cd4ml.ingest", "--commit"], chunked, check=False)
    assert result.returncode == 1
    first = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert first.startswith("error: chunk chunk-002.csv rejected, data/ unchanged")
    assert "target" in first
    assert _tree_digest(chunked / "data") == before


@pytest.mark.parametrize("point", ["merge", "swap"])
def test_a_crash_during_the_merge_leaves_the_previous_version(chunked, point):
    before = _tree_digest(chunked / "data")
    crashed = run(
        ["python", "-m", "cd4ml.ingest", "--commit"],
        chunked,
        check=False,
        CD4ML_INGEST_CRASH_AT=point,
    )
    assert crashed.returncode == -9  # a real SIGKILL, mid-way
    assert _tree_digest(chunked / "data") == before
    run(["python", "-m", "cd4ml.ingest", "--commit"], chunked)
    assert len((chunked / "data/train.csv").read_text().splitlines()) == 20_001
    assert not list(chunked.glob(".data.*"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_versions_from_s3_chunks_are_restorable_with_checkout_and_pull(
    tmp_path, s3_server, s3_bucket
):
    env = {**s3_server.aws_env(), "S3_BUCKET": s3_bucket}
    incoming = f"s3://{s3_bucket}/incoming"
    project = copy_project(tmp_path / "repo")
    run(["python", "-m", "cd4ml.generate", "--scale", "tiny", "--out", "data"], project)
    run(
        ["python", "-m", "cd4ml.chunks", "--chunks", "3", "--out", incoming, "--commit", "--push"],
        project,
        **env,
    )
    versions = [
        (
            run(["git", "rev-parse", "HEAD"], project).stdout.strip(),
            _sha(project / "data/train.csv"),
        )
    ]
    for _ in range(2):
        run(
            ["python", "-m", "cd4ml.ingest", "--incoming", incoming, "--commit", "--push"],
            project,
            **env,
        )
        versions.append(
            (
                run(["git", "rev-parse", "HEAD"], project).stdout.strip(),
                _sha(project / "data/train.csv"),
            )
        )
    assert len({digest for _, digest in versions}) == 3
    noop = run(
        ["python", "-m", "cd4ml.ingest", "--incoming", incoming, "--commit", "--push"],
        project,
        **env,
    )
    assert "nothing new" in noop.stderr

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    for commit, digest in versions:
        run(["git", "checkout", "-q", commit], clone)
        run(["python", "-m", "cd4ml.remote", "pull", "data.dvc"], clone, **env)
        assert _sha(clone / "data/train.csv") == digest
