"""tools.bench: the benchmark's bookkeeping (no timing here: `make bench` measures)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cd4ml.io import write_csv
from kkbox import synth, tables
from tests.project import ROOT, project_env
from tools import bench

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
        "cached": ["out"],
    }


def test_a_data_version_is_measured_by_what_the_dvc_cache_holds(small_project):
    (small_project / "data").mkdir()
    (small_project / "data" / "train.csv").write_bytes(b"x" * 1000)
    (small_project / "clean_data" / "part").mkdir(parents=True)
    (small_project / "clean_data" / "part" / "a.parquet").write_bytes(b"y" * 300)
    stages = {
        "make": {"cached": ["clean_data/part"]},
        "use": {"cached": ["out", "models/missing"]},
    }
    sizes = bench.version_bytes(small_project, stages)
    out = (small_project / "out" / "result.parquet").stat().st_size
    assert sizes["data"] == 1000 and sizes["intermediates"] == 300
    assert sizes["stages"] == {"make": 300, "use": out}
    assert sizes["outs"] == {"clean_data/part": 300, "out": out, "models/missing": 0}


FLOOR = {"floor_s": 0.5, "floor_read_s": 0.3, "floor_write_s": 0.2}


def test_floor_reads_the_data_files_of_the_stage_deps_in_dvc_yaml(small_project, monkeypatch):
    floored: list[list[Path]] = []
    run = {"wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mib": 10.0}
    monkeypatch.setattr(bench, "measure", lambda cmd, cwd, log_path: dict(run))
    monkeypatch.setattr(
        bench,
        "io_floor",
        lambda inputs, outputs, repeat, cwd: floored.append(inputs) or dict(FLOOR),
    )
    stage = bench.load_stages(small_project)["use"]
    result = bench.time_stage("use", stage, small_project, small_project / "logs", 1, 60.0)
    expected = {"tables/a.parquet": 3, "raw/sub/y.parquet": 2, "raw/x.csv": 4}
    assert result["inputs"] == expected and result["rows_in"] == 9
    assert [sorted(str(p.relative_to(small_project)) for p in f) for f in floored] == [
        sorted(expected)
    ]
    assert result["outputs"] == {"out/result.parquet": 1}
    assert result["data_stage"] and result["floor_s"] == 0.5 and result["x_floor"] == 2.0


def test_the_floor_reads_the_inputs_and_writes_the_output_tables_again(small_project):
    inputs = [small_project / "tables" / "a.parquet", small_project / "raw" / "x.csv"]
    outputs = [small_project / "out" / "result.parquet", small_project / "raw" / "x.csv"]
    before = sorted(small_project.rglob("*"))
    floor = bench.io_floor(inputs, outputs, 3, small_project)
    assert floor["floor_read_s"] > 0 and floor["floor_write_s"] > 0
    total = floor["floor_read_s"] + floor["floor_write_s"]
    assert floor["floor_s"] == pytest.approx(total, abs=2e-3)
    assert sorted(small_project.rglob("*")) == before  # the copies are gone


@pytest.mark.parametrize(
    ("deps", "outs", "data_stage"),
    [
        (["raw/x.csv"], ["report.json"], True),  # validate: checks raw CSVs, writes a report
        (["tables/a.parquet"], ["report.json"], False),  # evaluate: scores tables
        (["tables/a.parquet"], ["out"], True),  # split, preprocess: tables in, tables out
    ],
)
def test_a_data_stage_reads_tables_and_writes_tables_or_checks_raw_csvs(
    small_project, monkeypatch, deps, outs, data_stage
):
    monkeypatch.setattr(
        bench,
        "measure",
        lambda cmd, cwd, log_path: {"wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mib": 1.0},
    )
    monkeypatch.setattr(bench, "io_floor", lambda inputs, outputs, repeat, cwd: dict(FLOOR))
    stage = {"cmd": "true", "deps": deps, "outs": outs}
    result = bench.time_stage("s", stage, small_project, small_project / "logs", 1, 60.0)
    assert result["data_stage"] is data_stage and ("floor_s" in result) is data_stage


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_version_goes_to_a_loopback_s3_and_comes_back_as_in_a_fresh_clone(tmp_path):
    """`make bench`'s push / pull timing, on a tiny project: a real Ceph radosgw and real DVC."""
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "train.csv").write_text("a,b\n1,2\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n  copy:\n    cmd: mkdir -p clean_data && cp data/train.csv clean_data/\n"
        "    deps: [data]\n    outs: [clean_data]\n"
    )
    env = {**project_env(), "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "add", "-q", "data"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # the project's remote
    subprocess.run(["dvc", "repro", "-q"], cwd=repo, env=env, check=True)
    stages = bench.load_stages(repo)
    with bench.loopback_s3(1 << 20) as s3:
        result = bench.time_transfer(repo, stages, tmp_path / "logs", s3)
        server = Path(os.environ.get("TMPDIR", "/tmp"))
    assert result["push"]["wall_s"] > 0 and result["pull"]["wall_s"] > 0
    assert (repo / "clean_data" / "train.csv").read_text() == "a,b\n1,2\n"
    assert (repo / ".dvc" / "cache").is_dir()  # pulled anew: the push's cache was deleted
    assert not list(server.glob("cd4ml-s3-*"))  # the server is stopped and deleted


def test_a_train_sweep_changes_one_setting_at_a_time():
    assert bench.parse_sweep("learning_rate=0.1,0.3; max_depth=6") == [
        {"learning_rate": 0.1},
        {"learning_rate": 0.3},
        {"max_depth": 6},
    ]
    with pytest.raises(bench.UserError, match="'max_depth' is not KEY=VALUE"):
        bench.parse_sweep("max_depth")


def test_the_sweep_changes_the_copy_params_and_puts_them_back(tmp_path):
    original = (ROOT / "params.yaml").read_text(encoding="utf-8")
    (tmp_path / "params.yaml").write_text(original, encoding="utf-8")
    with bench.xgb_params(tmp_path, {"max_depth": 3, "device": "cuda"}):
        changed = yaml.safe_load((tmp_path / "params.yaml").read_text(encoding="utf-8"))
        assert changed["train"]["xgb"]["max_depth"] == 3
        assert changed["train"]["xgb"]["device"] == "cuda"
        assert (
            changed["train"]["xgb"]["learning_rate"]
            == yaml.safe_load(original)["train"]["xgb"]["learning_rate"]
        )
    assert (tmp_path / "params.yaml").read_text(encoding="utf-8") == original


def test_the_pandas_baseline_joins_and_codes_the_train_rows(tmp_path):
    project = tmp_path / "project"
    made = synth.generate(synth.SCALES["tiny"], seed=3)
    for name in (tables.TRAIN, tables.MEMBERS, tables.SONGS):
        write_csv(made[name], project / "data" / name)
    result = bench.time_pandas_baseline(project, tmp_path / "logs")
    assert result["rows_out"] == len(made[tables.TRAIN]["msno"]) and result["wall_s"] > 0
    assert not (project / "pandas-baseline.csv").exists()


# A stage command on the dask engine's plumbing: it stages a file to DASK_SCRATCH and has the
# cluster's workers send each other data; they import the project's src/ (copy_marker there).
CLUSTER_STAGE = """
import os, pathlib, distributed
from cd4ml import cluster, engine
assert engine.name() == "dask"  # the environment chooses the engine
pathlib.Path("input.bin").write_bytes(os.urandom(300_000))
with cluster.connect(("cd4ml",)) as (client, space):
    space.stage(pathlib.Path("input.bin"))
    a, b = client.scheduler_info()["workers"]
    data = client.submit(os.urandom, 200_000, workers=[a], pure=False)
    assert client.submit(len, data, workers=[b]).result() == 200_000
    marks = client.run(lambda: __import__("copy_marker").WHERE)
    assert set(marks.values()) == {"the project's copy"}, marks
"""


def _cluster_project(project: Path) -> dict[str, str]:
    """CLUSTER_STAGE as a stage of `project`, whose src/ holds copy_marker."""
    (project / "stage.py").write_text(CLUSTER_STAGE)
    (project / "src").mkdir()
    (project / "src" / "copy_marker.py").write_text('WHERE = "the project\'s copy"\n')
    return {"cmd": f"python {project / 'stage.py'}"}


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_on_a_cluster_measures_workers_staging_and_transfers(tmp_path):
    """time_on_cluster on a real loopback cluster and S3: each measure comes from them."""
    stage = _cluster_project(tmp_path)
    with bench.loopback_s3(16 << 20) as s3:
        run = bench.time_on_cluster(stage, tmp_path, tmp_path, "t", 2, "1GiB", s3)
        assert run["staged_bytes"] == 300_000
        assert bench._drain(bench._s3_client(s3), s3["S3_BUCKET"], "") == 0  # drained
    assert run["dask_transfer_bytes"] >= 200_000
    assert len(run["worker_peak_rss_mib"]) == 2 and min(run["worker_peak_rss_mib"]) > 50
    assert run["wall_s"] > 0 and run["workers"] == 2


def test_params_edits_reach_any_key_and_are_put_back(tmp_path):
    original = (ROOT / "params.yaml").read_text(encoding="utf-8")
    (tmp_path / "params.yaml").write_text(original, encoding="utf-8")
    with bench.edited_params(tmp_path, {"problem": "toy", "train.seed": 5}):
        changed = yaml.safe_load((tmp_path / "params.yaml").read_text(encoding="utf-8"))
        assert changed["problem"] == "toy" and changed["train"]["seed"] == 5
    assert (tmp_path / "params.yaml").read_text(encoding="utf-8") == original


def test_replicating_the_split_repeats_its_rows_row_group_by_row_group(tmp_path):
    table = pa.table({"msno": ["a", "b", "c"], "target": [1, 0, 1]})
    parts = ("train.parquet", "valid.parquet", "eval.parquet", "eval_truth.parquet")
    assert parts == bench.SPLIT  # every file the split stage writes
    for name in parts:
        pq.write_table(table, tmp_path / name, row_group_size=2)
    bench.replicate_split(tmp_path, 3)
    for name in parts:
        again = pq.ParquetFile(tmp_path / name)
        assert again.read().equals(pa.concat_tables([table] * 3))
        assert again.num_row_groups == 6


@pytest.mark.timeout(120)
def test_a_run_on_a_cluster_can_stage_to_a_folder(tmp_path):
    stage = _cluster_project(tmp_path)
    run = bench.time_on_cluster(stage, tmp_path, tmp_path, "t", 2, "1GiB", None)
    assert run["staged_bytes"] == 300_000 and run["dask_transfer_bytes"] >= 200_000
    assert not (tmp_path / "dask" / "scratch-t").exists()  # the scratch folder is removed


@pytest.mark.parametrize(
    ("n_rows", "share", "cuts"),
    [(10_000, 0.01, [0, 9_900, 10_000]), (10, 0.01, [0, 9, 10]), (2, 0.9, [0, 1, 2])],
)
def test_the_ingested_chunk_is_the_last_share_of_the_rows_and_never_empty(n_rows, share, cuts):
    assert bench.last_share(share)(n_rows) == cuts


COUNT_PIPELINE = """
stages:
  count:
    cmd: python -c "print(sum(1 for _ in open('data/train.csv')))" > rows.txt
    deps:
      - data/train.csv
    outs:
      - rows.txt
  other:
    cmd: echo unrelated > other.txt
    outs:
      - other.txt
"""


def test_an_ingested_chunk_is_timed_with_the_stages_it_reruns(tmp_path):
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    (project / "dvc.yaml").write_text(COUNT_PIPELINE)
    header = "msno,song_id,source_system_tab,source_screen_name,source_type,target\n"
    rows = "".join(f"m{i % 3},s{i},radio,Radio,radio,{i % 2}\n" for i in range(20))
    (project / "data").mkdir()
    (project / "data" / "train.csv").write_text(header + rows)
    truth = "target_probability\n" + "0.5\n" * 20
    (project / "data" / "train_truth.csv").write_text(truth)
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")  # the problem and its contract
    # as the bench leaves it: every stage run on all the rows, which the run cache remembers
    subprocess.run(["dvc", "repro", "--quiet"], cwd=project, env=project_env(), check=True)
    result = bench.time_ingest(project, bench.load_stages(project), tmp_path / "logs", 0.25)
    assert (result["rows_before"], result["rows_new"]) == (15, 5)
    assert result["rerun_stages"] == ["count"]  # run, not restored from the run cache
    assert result["stages"] == 2
    assert (project / "rows.txt").read_text().strip() == "21"
    assert (project / "data" / "train.csv").read_text() == header + rows
    assert (project / "data" / "train_truth.csv").read_text() == truth
    assert result["repro_before"]["wall_s"] > 0 and result["ingest"]["wall_s"] > 0


def test_changed_rows_counts_rows_with_any_feature_changed_over_the_rows_both_have(tmp_path):
    nan = float("nan")
    before = pa.table({"a": [1.0, nan, 3.0, 4.0], "b": [1, 2, 3, 4], "target": [0, 1, 0, 1]})
    after = pa.table({"a": [1.0, nan, 3.5, 4.0, 9.0], "b": [1, 2, 3, 5, 9], "target": [1] * 5})
    pq.write_table(before, tmp_path / "before.parquet")
    pq.write_table(after, tmp_path / "after.parquet")
    got = bench.changed_rows(tmp_path / "before.parquet", tmp_path / "after.parquet")
    # NaN stays NaN (unchanged); the target is no feature; the fifth row is only in one file
    assert got == {"rows": 4, "changed": 0.5, "by_feature": {"a": 0.25, "b": 0.25}}


# The engine stages as scripts: preprocess writes the features, train records the engine that
# cd4ml.engine picks from the environment (as src/train.py does), evaluate writes a score.
ENGINE_SCRIPTS = {
    "preprocess.py": """
import pathlib
features = pathlib.Path("clean_data/features")
features.mkdir(parents=True, exist_ok=True)
for part in ("train", "valid", "eval"):
    (features / f"{part}.parquet").write_bytes(part.encode())
""",
    "train.py": """
import json, pathlib, sys
from cd4ml import engine
folder = pathlib.Path("models/model")
folder.mkdir(parents=True, exist_ok=True)
ran = sys.argv[1] if len(sys.argv) > 1 else engine.name()
(folder / "model.json").write_text(json.dumps({"engine": ran, "fit": {}}))
""",
    "evaluate.py": """
import json, pathlib
pathlib.Path("eval").mkdir(exist_ok=True)
pathlib.Path("eval/metrics.json").write_text(json.dumps({"roc_auc": 0.7}))
""",
}


def _engine_project(tmp_path: Path, train_args: str = "") -> dict[str, dict]:
    for name, text in ENGINE_SCRIPTS.items():
        (tmp_path / name).write_text(text)
    return {
        "preprocess": {"cmd": "python preprocess.py"},
        "train": {"cmd": f"python train.py {train_args}".strip()},
        "evaluate": {"cmd": "python evaluate.py"},
    }


ENGINE_ARGS = argparse.Namespace(scale="tiny", repeat=1, once_over=60.0, memory_limit="auto")


def test_the_local_engine_is_chosen_by_the_environment_even_beside_a_cluster(
    tmp_path, monkeypatch
):
    # An address in the environment would make the stages run on Dask (cd4ml.engine).
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")
    stages = _engine_project(tmp_path)
    result = bench._time_engine(ENGINE_ARGS, stages, tmp_path, tmp_path / "work", 0, None)
    assert json.loads((tmp_path / "models/model/model.json").read_text())["engine"] == "local"
    assert result["roc_auc"] == 0.7 and set(result["features_md5"]) == set(bench.FEATURES)
    assert result["preprocess"]["wall_s"] > 0 and len(result["train"]["runs"]) == 1


def test_a_run_on_another_engine_than_asked_for_is_refused(tmp_path):
    stages = _engine_project(tmp_path, train_args="dask")
    with pytest.raises(bench.UserError, match="local: train ran on the dask engine"):
        bench._time_engine(ENGINE_ARGS, stages, tmp_path, tmp_path / "work", 0, None)


def test_the_data_is_made_again_when_the_generate_settings_change():
    settings = bench.generate_settings()
    assert settings == bench.generate_settings(ROOT / "params.yaml")
    same = bench._fingerprint("tiny", settings)
    assert same == bench._fingerprint("tiny", settings.model_copy())
    assert same != bench._fingerprint("small", settings)
    other = settings.model_copy(update={"positive_rate": 0.25})
    assert same != bench._fingerprint("tiny", other)
