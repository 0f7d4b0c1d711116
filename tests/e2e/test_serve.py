"""End to end: the real uvicorn server on a free loopback port serves the bundle of a real
pipeline run, and online scoring agrees with the predict stage's submission (batch scoring)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd4ml import bundle
from cd4ml.reading import read_table
from cd4ml.shell import free_ports
from kkbox import PROBLEM
from kkbox.tables import CONTRACT, TEST
from tests.project import copy_project, project_env, run, sign

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def call(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def server(project: Path, *args: str, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python -m cd4ml.serve` in the project (`env` added to its environment), until /readyz
    answers; stopped afterwards."""
    (port,) = free_ports()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "cd4ml.serve", "--port", str(port), *args],
        cwd=project,
        env=project_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited: {process.stdout.read()}")
            with contextlib.suppress(OSError):
                if call(f"{url}/readyz")["status"] == "ready":
                    break
            if time.monotonic() > deadline:
                raise AssertionError("the server did not become ready in 60 s")
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("serve") / "project")
    run(["make", "run", "SCALE=tiny"], project)
    return project


def test_online_scoring_equals_the_submission(project):
    names = [f.name for f in bundle.input_fields(PROBLEM.Row)]
    rows = read_table(project / "data" / TEST, CONTRACT.tables[TEST], ["id", *names])
    rows = rows.to_pylist()
    submission = pd.read_csv(project / "predictions" / "submission.csv").set_index("id")
    with server(project, "--allow-unsigned") as (url, process):  # make run's bundle: unsigned
        got: dict[int, float] = {}
        for start in range(0, len(rows), 500):
            answer = call(f"{url}/predict", {"rows": rows[start : start + 500]})
            got.update(zip(answer["ids"], answer["probabilities"], strict=True))
        process.terminate()
        log = process.communicate(timeout=20)[0]
    served = pd.Series(got).sort_index()
    assert len(served) == len(submission)
    difference = np.abs(served.to_numpy() - submission.loc[served.index, "target"].to_numpy())
    assert difference.max() <= 1e-6
    # One access-log line per request, with its rows, status and latency.
    lines = [line for line in log.splitlines() if "POST /predict" in line]
    assert len(lines) == -(-len(rows) // 500)
    assert " 200 rows=500 " in lines[0] and lines[0].endswith("ms")
    assert "models/bundle (UNSIGNED, --allow-unsigned): loaded, verified" in log


def test_an_unsigned_bundle_is_not_served_unless_allowed(project):
    (port,) = free_ports()
    command = [sys.executable, "-m", "cd4ml.serve", "--port", str(port)]
    refused = run(command, project, check=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[0] == (
        "error: models/bundle: unsigned (no model.sig): a release is signed (make sign, in the "
        "release job); serve a bundle built here with --allow-unsigned"
    )


def smoke(project: Path, url: str, version: str) -> subprocess.CompletedProcess[str]:
    """`python -m cd4ml.serve smoke` against a running service, expecting `version`."""
    command = [sys.executable, "-m", "cd4ml.serve", "smoke", "--url", url, "--version", version]
    return subprocess.run(
        command, cwd=project, env=project_env(), capture_output=True, text=True, check=False
    )


def test_metadata_names_the_fetched_version_and_two_workers_serve(project):
    (project / "models" / "bundle.json").write_text(json.dumps({"version": "v0.0.9"}))
    sign(project / "models" / "bundle")  # a release: signed, so served without a flag
    try:
        with server(project, "--workers", "2") as (url, process):
            assert call(f"{url}/metadata")["version"] == "v0.0.9"
            shown = smoke(project, url, "v0.0.9")
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout.startswith(
                f"smoke test passed: {url} serves kkbox-recommender v0.0.9"
            )
            wrong = smoke(project, url, "v1.0.0")
            assert wrong.returncode == 1
            assert "serves version 'v0.0.9', expected 'v1.0.0'" in wrong.stderr
            process.terminate()
            assert "models/bundle (signed): loaded, verified" in process.communicate(timeout=20)[0]
    finally:
        os.remove(project / "models" / "bundle.json")
