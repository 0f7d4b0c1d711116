"""cd4ml.ingest: which chunk comes next, and one ingest from a local incoming folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cd4ml import ingest, ingestion
from cd4ml.io import UserError
from kkbox.tables import CONTRACT
from tests.project import GIT_IDENTITY, ROOT, run

PARAMS = str(ROOT / "params.yaml")
HEADER = "msno,song_id,source_system_tab,source_screen_name,source_type,target\n"


def _chunk(path: Path, *rows: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


def test_pick_chunk_takes_the_first_chunk_not_ingested_yet():
    available = ["chunk-001.csv", "chunk-002.csv", "chunk-003.csv"]
    assert ingest.pick_chunk(available, {}, None) == "chunk-001.csv"
    done = {"chunk-001.csv": "aa", "chunk-003.csv": "cc"}
    assert ingest.pick_chunk(available, done, None) == "chunk-002.csv"
    assert ingest.pick_chunk(available, dict.fromkeys(available, "x"), None) is None
    assert ingest.pick_chunk([], {}, None) is None


def test_pick_chunk_takes_the_one_asked_for_even_if_ingested():
    available = ["chunk-001.csv", "chunk-002.csv"]
    assert ingest.pick_chunk(available, {"chunk-001.csv": "a"}, "chunk-001.csv") == "chunk-001.csv"
    with pytest.raises(UserError, match=r"^chunk chunk-009.csv is not in the incoming area \(2 "):
        ingest.pick_chunk(available, {}, "chunk-009.csv")


@pytest.fixture
def area(tmp_path) -> tuple[Path, Path]:
    """data/ from chunk 1, and an incoming folder with chunks 1 and 2 (no truth files)."""
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    first = _chunk(incoming / "chunk-001.csv", "m1,s1,radio,Radio,radio,1")
    _chunk(incoming / "chunk-002.csv", "m2,s2,radio,Radio,radio,0", "m1,s2,radio,Radio,radio,1")
    data.mkdir()
    ingestion.new_version(data, first, None, "chunk-001.csv", restart=True, contract=CONTRACT)
    return incoming, data


def _ingest(area: tuple[Path, Path], *args: str) -> None:
    incoming, data = area
    ingest.main(["--incoming", str(incoming), "--data", str(data), "--params", PARAMS, *args])


def test_main_appends_the_next_chunk_then_finds_nothing_new(area, caplog):
    data = area[1]
    _ingest(area)
    assert len((data / "train.csv").read_text().splitlines()) == 4
    manifest = ingestion.read_manifest(data)
    assert [c["name"] for c in manifest["chunks"]] == ["chunk-001.csv", "chunk-002.csv"]
    before = (data / "train.csv").read_bytes()
    with caplog.at_level(logging.INFO, logger="ingest"):
        _ingest(area)
        _ingest(area, "--chunk", "chunk-002.csv")
    assert "nothing new in" in caplog.text and "already in data/" in caplog.text
    assert (data / "train.csv").read_bytes() == before


def test_a_chunk_changed_after_its_ingest_is_refused(area):
    incoming, data = area
    _chunk(incoming / "chunk-001.csv", "m1,s1,radio,Radio,radio,0")
    before = (data / "train.csv").read_bytes()
    with pytest.raises(UserError, match=r"^chunk-001\.csv was ingested before with different"):
        _ingest(area, "--chunk", "chunk-001.csv")
    assert (data / "train.csv").read_bytes() == before


def test_a_bad_chunk_is_rejected_and_data_is_unchanged(area):
    incoming, data = area
    _chunk(incoming / "chunk-002.csv", "m2,s2,radio,Radio,radio,2")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    with pytest.raises(UserError, match=r"^chunk chunk-002.csv rejected, data/ unchanged: "):
        _ingest(area)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC project whose data/ is chunk 1, tracked and committed: the working
    directory; its incoming folder holds chunks 1 and 2."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)
    root = tmp_path / "project"
    incoming, data = root / "incoming", root / "data"
    first = _chunk(incoming / "chunk-001.csv", "m1,s1,radio,Radio,radio,1")
    _chunk(incoming / "chunk-002.csv", "m2,s2,radio,Radio,radio,0", "m1,s2,radio,Radio,radio,1")
    data.mkdir()
    ingestion.new_version(data, first, None, "chunk-001.csv", restart=True, contract=CONTRACT)
    (root / ".gitignore").write_text("/incoming\n", encoding="utf-8")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "add", "data", "-q"]):
        run(cmd, root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "data: chunk-001.csv"], root)
    monkeypatch.chdir(root)
    return root


def test_commit_records_the_new_version_with_dvc_and_git(repo, caplog):
    before = (repo / "data.dvc").read_text(encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="cd4ml.ingestion"):
        _ingest((repo / "incoming", repo / "data"), "--commit", "--git-push")
    assert "no git remote configured: commit kept local" in caplog.text
    log = run(["git", "log", "--format=%s"], repo).stdout.splitlines()
    assert log == [
        "data: ingest chunk-002.csv (+2 rows, train.csv now 3 rows)",
        "data: chunk-001.csv",
    ]
    assert run(["git", "status", "--porcelain"], repo).stdout == ""  # data.dvc committed
    assert (repo / "data.dvc").read_text(encoding="utf-8") != before
    assert run(["dvc", "status", "data.dvc"], repo).stdout.strip() == (
        "Data and pipelines are up to date."
    )
    run(["dvc", "checkout", "data.dvc", "--force"], repo)  # what the commit records: data/ now
    assert len((repo / "data" / "train.csv").read_text().splitlines()) == 4
