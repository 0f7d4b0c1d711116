"""cd4ml.incoming: chunk names, digests and the local incoming folder.

The S3 backend runs against a real loopback S3 server in tests/e2e/test_ingest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cd4ml.incoming import LocalIncoming, chunk_name, open_incoming, truth_name
from cd4ml.io import UserError

# --- names and digests -----------------------------------------------------------------------


def test_chunk_names_are_numbered_from_one_and_sort_in_time_order():
    assert chunk_name(1) == "chunk-001.csv"
    assert chunk_name(42) == "chunk-042.csv"
    names = [chunk_name(i) for i in (10, 2, 9, 1)]
    assert sorted(names) == [chunk_name(i) for i in (1, 2, 9, 10)]


def test_a_truth_file_is_named_after_its_chunk():
    assert truth_name("chunk-002.csv") == "chunk-002.truth.csv"
    assert truth_name(chunk_name(7)) == "chunk-007.truth.csv"


# --- the local folder ------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    """An incoming folder: two chunks out of order, a truth file and files that are no chunks."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in ("chunk-002.csv", "chunk-001.csv", "chunk-001.truth.csv", "notes.txt"):
        (folder / name).write_text(f"{name}\n")
    (folder / ".chunk-003.csv.tmp").write_text("half written\n")
    (folder / "chunk-004.parquet").write_text("not a csv\n")
    return folder


def test_listing_gives_the_chunks_in_order_without_truth_or_other_files(folder):
    assert LocalIncoming(folder).names() == ["chunk-001.csv", "chunk-002.csv"]


def test_listing_an_empty_folder_gives_nothing(tmp_path):
    assert LocalIncoming(tmp_path).names() == []


def test_listing_a_missing_folder_names_it_and_the_fix(tmp_path):
    with pytest.raises(UserError, match=r"incoming folder .*nowhere does not exist.*split-data"):
        LocalIncoming(tmp_path / "nowhere").names()


def test_fetch_copies_a_chunk_and_says_whether_it_was_there(folder, tmp_path):
    incoming = LocalIncoming(folder)
    dest = tmp_path / "fetched.csv"
    assert incoming.fetch("chunk-002.csv", dest) is True
    assert dest.read_text() == "chunk-002.csv\n"
    assert incoming.fetch("chunk-002.truth.csv", tmp_path / "truth.csv") is False
    assert not (tmp_path / "truth.csv").exists()


def test_put_creates_the_folder_and_replaces_a_chunk_whole(tmp_path):
    incoming = LocalIncoming(tmp_path / "new" / "incoming")
    src = tmp_path / "src.csv"
    src.write_text("a,b\n1,2\n")
    incoming.put(src, "chunk-001.csv")
    src.write_text("a,b\n3,4\n")
    incoming.put(src, "chunk-001.csv")
    assert incoming.names() == ["chunk-001.csv"]
    assert (incoming.folder / "chunk-001.csv").read_text() == "a,b\n3,4\n"
    assert sorted(p.name for p in incoming.folder.iterdir()) == ["chunk-001.csv"]  # no temp file


def test_a_location_without_s3_scheme_is_a_local_folder(folder):
    incoming = open_incoming(str(folder))
    assert isinstance(incoming, LocalIncoming)
    assert incoming.folder == folder
