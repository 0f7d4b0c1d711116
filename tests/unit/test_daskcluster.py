"""The loopback Dask cluster: real scheduler and worker processes, each in its own folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import daskcluster

pytestmark = pytest.mark.timeout(120)


def test_a_started_cluster_runs_tasks_in_each_workers_own_folder_and_stops(tmp_path: Path):
    import distributed

    cluster = daskcluster.start(tmp_path, workers=2)
    try:
        assert cluster.address.startswith("tcp://127.0.0.1:")
        with distributed.Client(cluster.address, timeout=10) as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
            folders = sorted(client.run(os.getcwd).values())
        assert folders == [str(tmp_path / "worker-0"), str(tmp_path / "worker-1")]
    finally:
        cluster.stop()
    assert all(p.poll() is not None for p in [cluster.scheduler, *cluster.workers])


def test_the_command_prints_the_address_and_stops_on_sigterm(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.daskcluster", "--workers", "1", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("DASK_SCHEDULER_ADDRESS=tcp://127.0.0.1:"), proc.stderr.read()
    finally:
        proc.terminate()
    assert proc.wait(timeout=60) == 0
    assert (tmp_path / "scheduler.log").exists() and (tmp_path / "worker-0.log").exists()
