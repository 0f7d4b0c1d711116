"""End to end: the release bundle of a real pipeline run, registered with GTO, pushed to the
loopback S3 server and fetched back with `dvc artifacts get` on a fresh clone."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from cd4ml import bundle, model
from cd4ml.io import read_parquet
from cd4ml.reading import read_table
from kkbox import PROBLEM
from kkbox.tables import CONTRACT, TEST
from tests.project import copy_project, link_venv, run

if TYPE_CHECKING:
    from tests.conftest import S3Server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """A project copy after `make run` at tiny scale, its outputs committed and released as
    kkbox-recommender@v0.0.1 in stage prod."""
    project = copy_project(tmp_path_factory.mktemp("release") / "project")
    run(["make", "run", "SCALE=tiny"], project)
    run(["python", "-m", "cd4ml.gate", "promote"], project)
    run(["make", "sign"], project)  # with the test session's key, as the release job does
    assert run(["dvc", "status", "--quiet"], project, check=False).returncode == 0
    run("git add -A && git add --force metrics eval && git commit -qm release", project)
    tags = run(["python", "-m", "cd4ml.registry", "release", "-m", "test"], project)
    assert tags.stdout.split() == ["kkbox-recommender@v0.0.1", "kkbox-recommender#prod#1"]
    return project


def test_make_run_leaves_a_verified_bundle_that_scores_eval_rows_as_the_pipeline(released):
    scorer = bundle.load(released / "models" / "bundle", PROBLEM)
    manifest = scorer.manifest
    assert manifest["model"] == "xgb" and manifest["name"] == "kkbox-recommender"
    featurizer = ["encoder.json", "members.parquet", "songs.parquet", "stats.parquet"]
    assert sorted(manifest["files"]) == sorted(
        ["model.ubj", "schema.json", "profile.json", *(f"featurizer/{f}" for f in featurizer)]
    )
    assert manifest["data_version"] in (released / "data.dvc").read_text()
    assert manifest["problem"] == "kkbox" and "git" not in manifest
    raw = read_parquet(released / "clean_data" / "split" / "eval.parquet")
    fitted = model.load(released / "models" / "model", PROBLEM.kinds)
    x, _ = model.read_features(released / "clean_data" / "features" / "eval.parquet")
    assert np.max(np.abs(scorer.predict_proba(raw) - fitted.predict(x))) <= 1e-6
    # The submission is the bundle's scoring of the raw test rows (to 6 decimals, of float32s).
    submission = pd.read_csv(released / "predictions" / "submission.csv")
    test_rows = read_table(released / "data" / TEST, CONTRACT.tables[TEST])
    assert np.max(np.abs(scorer.predict_proba(test_rows) - submission["target"])) <= 1e-6
    assert manifest["metrics"]["roc_auc"] == pytest.approx(
        float((released / "baseline.txt").read_text())
    )


def test_registry_lists_the_release_with_its_auc(released):
    shown = run(["make", "--no-print-directory", "registry"], released).stdout
    auc = float((released / "baseline.txt").read_text())
    assert f"| v0.0.1 | prod | {auc:.4f} |" in shown


@pytest.mark.s3
def test_dvc_artifacts_get_restores_the_release_on_a_fresh_clone(
    released, s3_server: S3Server, s3_bucket, tmp_path
):
    env = {**s3_server.aws_env(), "S3_BUCKET": s3_bucket}
    run(["python", "-m", "cd4ml.remote", "push"], released, **env)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(released), str(origin)], check=True)
    endpoint = f"endpointurl={s3_server.endpoint}"
    remote_url = f"url=s3://{s3_bucket}/dvcstore"
    fetched = {}
    for name, which in (("by-version", ["--rev", "v0.0.1"]), ("by-stage", ["--stage", "prod"])):
        out = tmp_path / name
        get = ["dvc", "artifacts", "get", str(origin), "kkbox-recommender", *which]
        run([*get, "-o", str(out), "--remote-config", endpoint, remote_url], tmp_path, **env)
        fetched[name] = bundle.verify(out)
    original = bundle.verify(released / "models" / "bundle")
    assert fetched["by-version"]["files"] == fetched["by-stage"]["files"] == original["files"]

    # The project's own way, in a fresh clone: the champion for the gate.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(origin), str(clone)], check=True)
    link_venv(clone)
    run(["python", "-m", "cd4ml.remote", "check"], clone, **env)  # writes the endpoint locally
    shown = run(["make", "--no-print-directory", "champion"], clone, **env).stdout
    assert "fetched kkbox-recommender@v0.0.1 (prod) into models/champion, verified" in shown
    scorer = bundle.load(clone / "models" / "champion", PROBLEM)
    rows = read_parquet(released / "clean_data" / "split" / "eval.parquet")
    expected = bundle.load(released / "models" / "bundle", PROBLEM).predict_proba(rows)
    assert np.array_equal(scorer.predict_proba(rows), expected)
