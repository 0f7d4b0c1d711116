"""cd4ml.bench: the benchmark's bookkeeping (no timing here: `make bench` measures)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cd4ml import bench
from cd4ml.workspace import ROOT

PIPELINE = """
stages:
  use:
    cmd: python use.py
    deps:
      - use.py
      - tables/a.parquet
      - raw
    params:
      - use
    outs:
      - out
  make:
    cmd: python make.py
    deps:
      - make.py
    outs:
      - tables
"""


@pytest.fixture
def small_project(tmp_path: Path) -> Path:
    """A DVC project (no git) whose stage `use` reads some, not all, of the data files there."""
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("")
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    (tmp_path / "params.yaml").write_text("use: {}\n")
    for rel, rows in {
        "tables/a.parquet": 3,
        "tables/b.parquet": 50,  # made by `make`, not read by `use`
        "raw/sub/y.parquet": 2,
        "other/z.parquet": 70,  # no stage's dep
        "out/result.parquet": 1,
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"x": list(range(rows))}), tmp_path / rel)
    (tmp_path / "raw" / "x.csv").write_text("h\n1\n2\n3\n4\n")
    return tmp_path


def test_stages_come_in_an_order_that_runs_dependencies_first():
    stages = bench.load_stages(ROOT)
    order = list(stages)
    assert order[0] == "validate" and {"split", "preprocess", "train", "predict"} <= set(order)
    for i, name in enumerate(order):
        for dep in stages[name]["deps"]:
            for later in order[i + 1 :]:
                assert not any(
                    dep == out or dep.startswith(out + "/") for out in stages[later]["outs"]
                ), (name, dep, later)


def test_dvc_graph_puts_a_stage_after_the_one_it_depends_on(small_project):
    stages = bench.load_stages(small_project)
    assert list(stages) == ["make", "use"]
    assert stages["use"] == {
        "cmd": "python use.py",
        "deps": ["use.py", "tables/a.parquet", "raw"],  # params.yaml is no file dep
        "outs": ["out"],
    }


def test_floor_reads_the_data_files_of_the_stage_deps_in_dvc_yaml(small_project, monkeypatch):
    floored: list[list[Path]] = []
    run = {"wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mib": 10.0}
    monkeypatch.setattr(bench, "measure", lambda cmd, cwd, log_path: dict(run))
    monkeypatch.setattr(bench, "read_floor", lambda files, repeat: floored.append(files) or 0.5)
    stage = bench.load_stages(small_project)["use"]
    result = bench.time_stage("use", stage, small_project, small_project / "logs", 1, 60.0)
    expected = {"tables/a.parquet": 3, "raw/sub/y.parquet": 2, "raw/x.csv": 4}
    assert result["inputs"] == expected and result["rows_in"] == 9
    assert [sorted(str(p.relative_to(small_project)) for p in f) for f in floored] == [
        sorted(expected)
    ]
    assert result["outputs"] == {"out/result.parquet": 1}
    assert result["data_stage"] and result["floor_s"] == 0.5 and result["x_floor"] == 2.0
