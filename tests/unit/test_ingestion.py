"""cd4ml.ingestion: the manifest, chunk validation, and new data versions swapped in whole."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cd4ml import ingestion
from cd4ml.io import UserError
from kkbox.tables import CONTRACT

HEADER = "msno,song_id,source_system_tab,source_screen_name,source_type,target\n"


def _csv(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


def _truth(path: Path, *probabilities: float) -> Path:
    return _csv(path, *map(str, probabilities), header="target_probability\n")


@pytest.fixture
def data(tmp_path) -> Path:
    """data/ made from one chunk of two rows, with a truth file and another table."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "members.csv").write_text("msno\nm1\n", encoding="utf-8")
    chunk = _csv(tmp_path / "c1.csv", "m1,s1,radio,Radio,radio,1", "m2,s2,radio,Radio,radio,0")
    ingestion.new_version(
        data, chunk, _truth(tmp_path / "t1.csv", 0.9, 0.2), "c1", restart=True, contract=CONTRACT
    )
    return data


def test_a_data_folder_not_built_from_chunks_has_an_empty_manifest(tmp_path):
    assert ingestion.read_manifest(tmp_path) == {"chunks": []}


def test_a_broken_manifest_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "ingested.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match=r"ingested.json: not valid JSON .*`dvc checkout data`"):
        ingestion.read_manifest(tmp_path)


def test_validate_chunk_counts_the_rows_of_a_valid_chunk(tmp_path):
    chunk = _csv(tmp_path / "chunk-004.csv", "m1,s1,radio,Radio,radio,1", "m1,s2,,,,0")
    assert ingestion.validate_chunk(chunk, CONTRACT) == 2


def test_an_invalid_chunk_is_named_not_train_csv(tmp_path):
    chunk = _csv(
        tmp_path / "chunk-004.csv", "m1,s1,radio,Radio,radio,2", ",s2,radio,Radio,radio,1"
    )
    with pytest.raises(UserError) as err:
        ingestion.validate_chunk(chunk, CONTRACT)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'chunk-004.csv'}: column '")
    assert "train.csv" not in message
    assert message.endswith(" (+1 more problem(s))")


def test_restart_makes_data_the_chunk_and_keeps_the_other_tables(data, tmp_path):
    assert (data / "train.csv").read_bytes() == (tmp_path / "c1.csv").read_bytes()
    assert (data / "train_truth.csv").read_text() == "target_probability\n0.9\n0.2\n"
    assert (data / "members.csv").read_text() == "msno\nm1\n"
    digest = hashlib.sha256((tmp_path / "c1.csv").read_bytes()).hexdigest()
    assert ingestion.read_manifest(data) == {
        "chunks": [{"name": "c1", "sha256": digest, "rows": 2, "train_rows_after": 2}]
    }


def test_a_new_version_appends_the_chunk_and_its_truth(data, tmp_path):
    chunk = _csv(tmp_path / "c2.csv", "m3,s3,search,Search,song,1")
    entry = ingestion.new_version(
        data, chunk, _truth(tmp_path / "t2.csv", 0.7), "c2", restart=False, contract=CONTRACT
    )
    assert (entry["name"], entry["rows"], entry["train_rows_after"]) == ("c2", 1, 3)
    assert (data / "train.csv").read_text().splitlines() == [
        HEADER.strip(),
        "m1,s1,radio,Radio,radio,1",
        "m2,s2,radio,Radio,radio,0",
        "m3,s3,search,Search,song,1",
    ]
    assert (data / "train_truth.csv").read_text() == "target_probability\n0.9\n0.2\n0.7\n"
    assert [c["name"] for c in ingestion.read_manifest(data)["chunks"]] == ["c1", "c2"]
    assert not list(data.parent.glob(".data.*"))  # no staging folder left


def test_a_chunk_without_its_last_newline_is_appended_whole(data, tmp_path):
    chunk = tmp_path / "c2.csv"
    chunk.write_text(HEADER + "m3,s3,radio,Radio,radio,0", encoding="utf-8")
    ingestion.new_version(data, chunk, None, "c2", restart=False, contract=CONTRACT)
    assert (
        (data / "train.csv")
        .read_text()
        .endswith("m2,s2,radio,Radio,radio,0\nm3,s3,radio,Radio,radio,0\n")
    )


def test_a_chunk_without_truth_drops_the_truth_file(data, tmp_path):
    chunk = _csv(tmp_path / "c2.csv", "m3,s3,radio,Radio,radio,0")
    ingestion.new_version(data, chunk, None, "c2", restart=False, contract=CONTRACT)
    assert not (data / "train_truth.csv").exists()
    assert len((data / "train.csv").read_text().splitlines()) == 4


def test_a_rejected_chunk_leaves_data_as_it_was(data, tmp_path):
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    chunk = _csv(tmp_path / "c2.csv", "m3,s3,radio,Radio,radio,7")
    with pytest.raises(UserError, match="must be 0 or 1"):
        ingestion.new_version(data, chunk, None, "c2", restart=False, contract=CONTRACT)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_recover_restores_data_from_an_interrupted_swap(tmp_path):
    data = tmp_path / "data"
    old = tmp_path / ".data.old"
    old.mkdir()
    (old / "train.csv").write_text("kept\n")
    stale = tmp_path / ".data.abc123.tmp"
    stale.mkdir()
    (stale / "train.csv").write_text("half written\n")
    ingestion.recover(data)
    assert (data / "train.csv").read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_recover_leaves_a_complete_data_folder_alone(data):
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    ingestion.recover(data)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert json.loads((data / "ingested.json").read_text())["chunks"][0]["name"] == "c1"
