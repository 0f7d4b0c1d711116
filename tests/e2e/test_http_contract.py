"""End to end: schemathesis fuzzes the real server from its own /openapi.json, every check, a
fixed seed and example count, and finds nothing: each answer matches the documented status and
schema, and what the schema refuses is refused. With SERVE_TOKEN set too, sending the token."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.bundles import fit_featurizer, train, write_bundle
from tests.e2e.test_serve import server
from tests.project import ROOT, VENV_BIN, project_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("contract")
    fitted = fit_featurizer(folder)
    return write_bundle(folder / "bundle", fitted, train(fitted, "xgb"))


@pytest.mark.parametrize("token", [None, "s3cret"], ids=["open", "with-a-token"])
def test_schemathesis_finds_nothing(small_bundle, token, tmp_path):
    env = {"SERVE_TOKEN": token} if token else {}
    served = ("--bundle", str(small_bundle), "--allow-unsigned", "--prediction-log", "")
    with server(ROOT, *served, **env) as (url, _):
        command = [
            str(VENV_BIN / "schemathesis"),
            *("run", f"{url}/openapi.json", "--checks", "all"),
            *("--max-examples", "100", "--seed", "1"),
        ]
        if token:
            command += ["--header", f"Authorization: Bearer {token}"]
        done = subprocess.run(
            command,
            cwd=tmp_path,  # its replay folder, .schemathesis/, goes there
            capture_output=True,
            text=True,
            env=project_env(),
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-8000:]
    assert " passed" in done.stdout and "failures" not in done.stdout.splitlines()[-1]
