"""cd4ml.chunks: cutting train.csv into time-ordered chunks, each with the header row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cd4ml import chunks
from cd4ml.io import UserError
from tests.project import GIT_IDENTITY, ROOT, run

PARAMS = str(ROOT / "params.yaml")
HEADER = "msno,song_id,source_system_tab,source_screen_name,source_type,target\n"


def _train(path: Path, n: int, newline_at_end: bool = True) -> Path:
    """A valid train.csv of n rows; row i plays song s<i>."""
    rows = "".join(f"m{i % 3},s{i},radio,Radio,radio,{i % 2}\n" for i in range(1, n + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + (rows if newline_at_end else rows.rstrip("\n")), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("n_rows", "n_chunks", "points"),
    [
        (10, 3, [0, 3, 7, 10]),
        (7, 3, [0, 2, 5, 7]),
        (5, 5, [0, 1, 2, 3, 4, 5]),
        (5, 1, [0, 5]),
    ],
)
def test_cut_points_are_near_equal_and_cover_every_row(n_rows, n_chunks, points):
    assert chunks.cut_points(n_rows, n_chunks) == points


@pytest.mark.parametrize("n_chunks", [0, -1, 6])
def test_a_chunk_count_outside_1_to_the_rows_is_a_clear_error(n_chunks):
    with pytest.raises(UserError, match=rf"^CHUNKS={n_chunks}: must be between 1 and the 5 train"):
        chunks.cut_points(5, n_chunks)


def test_write_chunks_keeps_the_header_and_the_order_of_the_rows(tmp_path):
    src = _train(tmp_path / "train.csv", 7)
    out = tmp_path / "out"
    out.mkdir()
    paths = chunks.write_chunks(src, out, 3)
    assert [p.name for p in paths] == ["chunk-001.csv", "chunk-002.csv", "chunk-003.csv"]
    texts = [p.read_text(encoding="utf-8") for p in paths]
    assert all(text.startswith(HEADER) for text in texts)
    assert [len(text.splitlines()) - 1 for text in texts] == [2, 3, 2]
    body = "".join(text.removeprefix(HEADER) for text in texts)
    assert HEADER + body == src.read_text(encoding="utf-8")


def test_write_chunks_cuts_where_it_is_told(tmp_path):
    src = _train(tmp_path / "train.csv", 10)
    paths = chunks.write_chunks(src, tmp_path, lambda n: [0, n - 1, n])
    assert [len(p.read_text(encoding="utf-8").splitlines()) - 1 for p in paths] == [9, 1]


def test_write_chunks_of_a_truth_file_names_them_after_their_chunks(tmp_path):
    src = tmp_path / "train_truth.csv"
    src.write_text("target_probability\n0.1\n0.2\n0.3\n0.4", encoding="utf-8")  # no newline
    paths = chunks.write_chunks(src, tmp_path, 2, ".truth.csv")
    assert [p.name for p in paths] == ["chunk-001.truth.csv", "chunk-002.truth.csv"]
    assert paths[1].read_text(encoding="utf-8") == "target_probability\n0.3\n0.4"


def test_main_fills_the_incoming_folder_and_restarts_data_with_chunk_one(tmp_path):
    data = tmp_path / "data"
    _train(data / "train.csv", 9)
    (data / "train_truth.csv").write_text(
        "target_probability\n" + "".join(f"0.{i}\n" for i in range(1, 10)), encoding="utf-8"
    )
    (data / "members.csv").write_text("msno\nm0\n", encoding="utf-8")
    incoming = tmp_path / "incoming"
    chunks.main(["--data", str(data), "--chunks", "3", "--out", str(incoming), "--params", PARAMS])
    assert sorted(p.name for p in incoming.iterdir()) == [
        "chunk-001.csv",
        "chunk-001.truth.csv",
        "chunk-002.csv",
        "chunk-002.truth.csv",
        "chunk-003.csv",
        "chunk-003.truth.csv",
    ]
    assert (data / "train.csv").read_bytes() == (incoming / "chunk-001.csv").read_bytes()
    assert (data / "train_truth.csv").read_text() == "target_probability\n0.1\n0.2\n0.3\n"
    assert (data / "members.csv").read_text() == "msno\nm0\n"  # the other tables stay
    (entry,) = json.loads((data / "ingested.json").read_text())["chunks"]
    assert (entry["name"], entry["rows"], entry["train_rows_after"]) == ("chunk-001.csv", 3, 3)


def test_main_without_train_csv_names_the_file(tmp_path):
    with pytest.raises(UserError, match=r"train.csv: file not found"):
        chunks.main(
            ["--data", str(tmp_path), "--out", str(tmp_path / "incoming"), "--params", PARAMS]
        )
    assert not (tmp_path / "incoming").exists()


def test_commit_records_the_restarted_history_with_dvc_and_git(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)
    repo = tmp_path / "project"
    _train(repo / "data" / "train.csv", 6)
    (repo / ".gitignore").write_text("/incoming\n", encoding="utf-8")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        run(cmd, repo)
    run(["git", "commit", "-qm", "init"], repo)
    monkeypatch.chdir(repo)
    chunks.main(["--chunks", "2", "--out", "incoming", "--params", PARAMS, "--commit"])
    log = run(["git", "log", "--format=%s"], repo).stdout.splitlines()
    assert log == ["data: restart the history with chunk-001.csv", "init"]
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    assert "data.dvc" in run(["git", "ls-files"], repo).stdout.split()
    assert len((repo / "data" / "train.csv").read_text().splitlines()) == 4  # 3 rows of 6
