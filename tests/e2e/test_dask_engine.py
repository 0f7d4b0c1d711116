"""End to end: the pipeline on a real Dask cluster (a scheduler and two worker processes on
127.0.0.1, each in its own directory), the inputs reaching the workers through the loopback S3
server, compared with the local engine on the same tiny data."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml

from tests.conftest import S3Server
from tests.project import ROOT, run, tiny_project
from tools.daskcluster import Cluster, start

pytestmark = pytest.mark.slow

FEATURE_FILES = ["train.parquet", "valid.parquet", "eval.parquet"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Tiny data and the whole pipeline run with the local engine (the default)."""
    project = tiny_project(tmp_path_factory.mktemp("dask") / "repo")
    run(["make", "repro"], project)
    return project


def _lock(project: Path) -> dict:
    return yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))["stages"]


def _outs(lock: dict, stage: str) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in lock[stage]["outs"]}


def _cluster_env(cluster: Cluster, s3: S3Server, bucket: str) -> dict[str, str]:
    return {
        "DASK_SCHEDULER_ADDRESS": cluster.address,
        "DASK_SCRATCH": f"s3://{bucket}/scratch",
        "S3_ENDPOINT": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
    }


def _keys(s3: S3Server, bucket: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return [item["Key"] for item in listed]


@pytest.mark.timeout(600)
def test_the_dask_engine_reproduces_the_local_features_and_model(
    project: Path, dask_cluster: Cluster, s3_server: S3Server, s3_bucket: str
):
    local = _lock(project)
    local_auc = json.loads((project / "eval/metrics.json").read_text())["roc_auc"]
    env = _cluster_env(dask_cluster, s3_server, s3_bucket)
    # The engine is where the stages run, not a parameter: ENGINE=dask runs them there (forced)
    # and edits no tracked file.
    out = run(["make", "repro", "ENGINE=dask"], project, **env)
    for stage in ("preprocess", "train"):
        assert f"Running stage '{stage}'" in out.stdout
    assert run(["git", "diff", "--stat", "--", "params.yaml"], project).stdout == ""
    remote = _lock(project)
    # Same seed, same data: the features and the featurizer are the local engine's, bit for bit.
    assert _outs(remote, "preprocess") == _outs(local, "preprocess")
    scores = json.loads((project / "eval/metrics.json").read_text())
    assert abs(scores["roc_auc"] - local_auc) <= 0.005, (scores["roc_auc"], local_auc)
    info = json.loads((project / "models/model/model.json").read_text())
    assert info["engine"] == "dask" and info["kind"] == "xgb"
    assert info["n_train_rows"] == 21_600 and info["fit"]["best_iteration"] >= 1
    # The workers read the inputs from S3, under their MD5, and no run's outputs are left.
    keys = _keys(s3_server, s3_bucket)
    assert keys and all(key.startswith("scratch/md5/") for key in keys), keys
    assert len(keys) == 8  # 3 CSVs, the 3 split parts, the train and valid features
    status = run(["dvc", "status"], project, **env)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    # The scheduler's address alone picks the dask engine for the stages that run.
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    alone = run(["dvc", "repro", "--force", "--single-item", "preprocess"], project, **env)
    assert "dask cluster tcp://" in alone.stderr
    # Back to the local engine: one variable.
    run(["make", "repro", "ENGINE=local"], project)
    assert yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8")) == params
    assert json.loads((project / "models/model/model.json").read_text())["engine"] == "local"
    assert _outs(_lock(project), "preprocess") == _outs(local, "preprocess")


@pytest.mark.timeout(600)
def test_a_worker_killed_mid_stage_is_recovered_by_dask(
    project: Path, tmp_path: Path, s3_server: S3Server, s3_bucket: str
):
    """The first worker kills itself (SIGKILL) after its first partition's statistics: Dask
    recomputes what it held on the other worker, and the features are still the local ones."""
    victim = ROOT / "tests" / "dask_victim.py"
    # Plan.partial: a pass's statistics of one partition.
    cluster = start(
        tmp_path / "cluster", preload_first=victim, env={"CD4ML_KILL_AFTER": "partial"}
    )
    try:
        out = tmp_path / "features"
        cmd = [
            "python", "src/preprocess.py", "--data", "data", "--split", "clean_data/split",
            "--out", str(out),
        ]  # fmt: skip
        run(cmd, project, **_cluster_env(cluster, s3_server, s3_bucket))
        victim = cluster.workers[0]
        assert victim.wait(timeout=30) == -signal.SIGKILL, "the worker was not killed"
        assert cluster.workers[1].poll() is None
    finally:
        cluster.stop()
    for name in FEATURE_FILES:
        assert (out / name).read_bytes() == (project / "clean_data/features" / name).read_bytes()


def test_an_unreachable_scheduler_fails_the_stage_in_one_line(project: Path):
    from cd4ml.shell import free_ports

    (port,) = free_ports(1)
    address = f"tcp://127.0.0.1:{port}"
    # ENGINE=dask forces preprocess to run there (DVC would find it up to date).
    result = run(
        ["make", "repro", "ENGINE=dask"], project, check=False, DASK_SCHEDULER_ADDRESS=address
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and errors[0].startswith(f"error: cannot reach the Dask scheduler at {address}")
    assert "Traceback" not in result.stderr
    # The last good outputs are back (scripts/repro.sh), and the local engine runs on.
    assert all((project / "clean_data/features" / name).exists() for name in FEATURE_FILES)
    run(["make", "repro", "ENGINE=local"], project)


def test_scratch_space_with_a_wrong_secret_fails_in_one_line_naming_it(
    project: Path, tmp_path: Path, dask_cluster: Cluster, s3_server: S3Server, s3_bucket: str
):
    env = {**_cluster_env(dask_cluster, s3_server, s3_bucket), "AWS_SECRET_ACCESS_KEY": "wrong"}
    cmd = [
        "python", "src/preprocess.py", "--data", "data", "--split", "clean_data/split",
        "--out", str(tmp_path / "features"),
    ]  # fmt: skip
    result = run(cmd, project, check=False, **env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    first = errors[0]
    assert first.startswith(f"error: cannot upload to the dask scratch space s3://{s3_bucket}/")
    assert f"(endpoint {s3_server.endpoint})" in first and "Traceback" not in result.stderr
    assert not (tmp_path / "features").exists()
