"""Shared fixtures. S3: a real loopback S3 server (Ceph radosgw) for the DVC remote tests.
Dask: a real scheduler and worker processes on 127.0.0.1 for the dask engine's tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cd4ml.shell import free_ports
from tools import daskcluster

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# S3 server (tools/s3-server.sh): one per test session, on free ports, in its own temp dir.
# Tests that use `s3_server` (directly or through `s3_bucket`) are marked `s3` automatically.

S3_SERVER_SCRIPT = ROOT / "tools" / "s3-server.sh"
S3_TEST_ACCESS_KEY = "cd4ml-test"
S3_TEST_SECRET_KEY = "cd4ml-test-secret-for-the-loopback-server"


@dataclass(frozen=True)
class S3Server:
    """Connection details of the loopback S3 server, and control of it through its script."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    script_env: dict[str, str]

    def aws_env(self) -> dict[str, str]:
        """Variables a client needs: the endpoint, the bucket and the keys."""
        return {
            "S3_ENDPOINT": self.endpoint,
            "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run `tools/s3-server.sh COMMAND` for this server; fail the test when it fails."""
        result = subprocess.run(
            [str(S3_SERVER_SCRIPT), command],
            env=self.script_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"s3-server.sh {command} failed:\n{result.stderr}", pytrace=False)
        return result

    def stop_gateway(self) -> None:
        """Stop radosgw only: the endpoint refuses connections until `start()`."""
        self.run("stop-gateway")

    def start(self) -> None:
        """Start the server, or only its gateway when the rest runs."""
        self.run("start")


@pytest.fixture(scope="session")
def s3_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> S3Server:
    """A Ceph radosgw on 127.0.0.1 for the whole session; stopped and deleted at the end."""
    if shutil.which("radosgw") is None:
        message = "Ceph radosgw is not installed: run `make system-deps`"
        if os.environ.get("CI"):  # in CI a missing server is a broken set-up, not a skip
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    s3_port, mon_port = free_ports(2)
    bucket = "cd4ml-kkbox-test"
    script_env = {
        **os.environ,
        "S3_SERVER_DIR": str(tmp_path_factory.mktemp("s3") / "server"),
        "S3_PORT": str(s3_port),
        "S3_MON_PORT": str(mon_port),
        "S3_BUCKET": bucket,
        "AWS_ACCESS_KEY_ID": S3_TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_TEST_SECRET_KEY,
        "S3_PYTHON": sys.executable,
        "S3_STORE_MB": "1024",
    }
    server = S3Server(
        f"http://127.0.0.1:{s3_port}", bucket, S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY, script_env
    )
    request.addfinalizer(lambda: server.run("stop"))
    server.start()
    return server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh, empty bucket for one test (a unique name); emptied and deleted afterwards."""
    name = f"cd4ml-t-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    yield name
    # Best effort: a test may leave the server down, and the server's data goes with the session.
    with contextlib.suppress(Exception):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)


# ---------------------------------------------------------------------------------------------
# Dask cluster (tools/daskcluster.py): `dask scheduler` and `dask worker` processes on free
# loopback ports, each worker in its own temp working directory.


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[daskcluster.Cluster]:
    """A scheduler and two workers on 127.0.0.1 for the whole session."""
    found = daskcluster.start(tmp_path_factory.mktemp("dask"))
    yield found
    found.stop()


# Fixtures that need a tool of `make system-deps` (the unit tests of CI's test job run without).
BROWSER_FIXTURES = {"needs_chromium", "needs_vega"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the S3 server with `s3`, and every one that needs headless
    Chromium or the vega libraries with `browser`, so `-m "not s3 and not browser"` leaves
    them out."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "s3_server" in fixtures:
            item.add_marker(pytest.mark.s3)
        if fixtures & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
