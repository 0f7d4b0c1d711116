"""cd4ml.io: atomic writes, the background Parquet folder, the Kaggle-style CSV writer, errors."""

from __future__ import annotations

import csv
import hashlib
import io as stdio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cd4ml import io


def test_atomic_path_leaves_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with io.atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_atomic_dir_swaps_in_whole_or_not_at_all(tmp_path):
    out = tmp_path / "d"
    with io.atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), io.atomic_dir(out) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temp folder left


def test_parquet_folder_writes_in_the_background_and_all_or_nothing(tmp_path):
    table = pa.table({"x": [1, 2, 3]})
    with io.parquet_folder(tmp_path / "p") as folder:
        folder.write(table, "a.parquet")
        folder.write(table, "b.parquet", "lz4")
        (folder.path / "c.json").write_text("{}")
    assert io.read_parquet(tmp_path / "p" / "b.parquet").equals(table)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "a.parquet",
        "b.parquet",
        "c.json",
    ]
    with pytest.raises(RuntimeError), io.parquet_folder(tmp_path / "p") as folder:
        folder.write(table, "new.parquet")
        raise RuntimeError("boom")
    assert not (tmp_path / "p" / "new.parquet").exists()


def test_parquet_folder_takes_paths_under_it_from_a_relative_output_folder(tmp_path, monkeypatch):
    # What featurizer.save_* hand it: their folder's paths, as preprocess runs from the project.
    monkeypatch.chdir(tmp_path)
    table = pa.table({"x": [1, 2, 3]})
    with io.parquet_folder(Path("out")) as folder:
        (folder.path / "sub").mkdir()
        folder.write(table, folder.path / "sub" / "t.parquet")
        folder.write(table, "sub/u.parquet")
    assert io.read_parquet(tmp_path / "out" / "sub" / "t.parquet").equals(table)
    assert io.read_parquet(tmp_path / "out" / "sub" / "u.parquet").equals(table)


def test_a_failed_background_write_fails_the_folder(tmp_path):
    with pytest.raises(Exception), io.parquet_folder(tmp_path / "p") as folder:  # noqa: B017
        folder.write(pa.table({"x": [1]}), "a.parquet", compression="no-such-codec")
    assert not (tmp_path / "p").exists()


def test_read_parquet_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(io.UserError, match=r"x.parquet: file not found; run the stage"):
        io.read_parquet(tmp_path / "x.parquet")
    (tmp_path / "x.parquet").write_bytes(b"garbage")
    with pytest.raises(io.UserError, match=r"not a readable Parquet file .*rerun `dvc repro`"):
        io.read_parquet(tmp_path / "x.parquet")


def test_write_json_is_sorted_and_stable(tmp_path):
    io.write_json({"b": 1, "a": [1, 2]}, tmp_path / "j.json")
    first = (tmp_path / "j.json").read_bytes()
    io.write_json({"a": [1, 2], "b": 1}, tmp_path / "j.json")
    assert (tmp_path / "j.json").read_bytes() == first and first.startswith(b'{\n  "a"')


def test_write_csv_quotes_only_where_csv_needs_it_and_formats_like_numpy(tmp_path):
    path = tmp_path / "t.csv"
    columns = {
        "id": np.array([0, 1, 2, 3]),
        "name": pa.array(["plain", "a,b", 'say "hi"', None]),
        "x": np.array([52.0, 1e-05, np.nan, 0.25], dtype=np.float32),
        "cat": pa.DictionaryArray.from_arrays([0, 1, 0, 1], pa.array(["u", "v,w"])),
    }
    assert io.write_csv(columns, path, chunk_rows=3) == 4
    text = path.read_text(encoding="utf-8")
    assert text.splitlines() == [
        "id,name,x,cat",
        "0,plain,52.0,u",
        '1,"a,b",1e-05,"v,w"',
        '2,"say ""hi""",,u',
        '3,,0.25,"v,w"',
    ]
    rows = list(csv.reader(stdio.StringIO(text)))
    assert rows[2] == ["1", "a,b", "1e-05", "v,w"] and rows[3][1] == 'say "hi"'


def test_run_main_turns_a_user_error_into_one_line_and_exit_1():
    code = (
        "from cd4ml.io import UserError, run_main\n"
        "def main(argv):\n    raise UserError('data/x.csv: broken\\nmore detail')\n"
        "run_main(main)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: data/x.csv: broken", "more detail"]


@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 3])  # empty, one block, more than one
def test_sha256_is_the_digest_of_the_whole_file(tmp_path, size):
    path = tmp_path / "chunk.csv"
    content = bytes(i % 251 for i in range(size))
    path.write_bytes(content)
    assert io.sha256(path) == hashlib.sha256(content).hexdigest()
