"""A Dask cluster on this machine's loopback: a `dask scheduler` and `dask worker` processes,
each worker in its own working directory (no worker reads another's files, or the client's).

The tests, `make ci-local` (the train-dask job) and `make bench ENGINE=dask` run the dask engine
against it, as against a real cluster, by address. Run by hand:

    python -m tools.daskcluster --workers 2 --memory-limit 4GiB
    DASK_SCHEDULER_ADDRESS=tcp://127.0.0.1:PORT make repro       # in another shell

It prints DASK_SCHEDULER_ADDRESS=... once every worker has joined, and stops them on Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cd4ml.io import UserError, run_main
from cd4ml.shell import free_ports

log = logging.getLogger("daskcluster")

DASK = Path(sys.executable).with_name("dask")


@dataclass
class Cluster:
    """A running scheduler and its workers (processes), logs in `where`."""

    address: str
    where: Path
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]

    def stop(self) -> None:
        """Stop the workers, then the scheduler (SIGTERM, then SIGKILL after 20 s)."""
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def peak_rss_mib(self) -> list[float]:
        """Each live worker's peak resident memory so far (Linux: VmHWM), MiB."""
        peaks = []
        for proc in self.workers:
            with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peaks.append(round(int(line.split()[1]) / 1024, 1))
        return peaks

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
            for p in sorted(self.where.glob("*.log"))
        )


def start(
    where: Path,
    workers: int = 2,
    memory_limit: str = "auto",
    threads: int = 1,
    preload_first: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Cluster:
    """A scheduler and `workers` workers (`threads` each, no nanny: a killed worker stays dead)
    on 127.0.0.1; the first worker loads `preload_first` when given."""
    (port,) = free_ports(1)
    address = f"tcp://127.0.0.1:{port}"
    where.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, **(env or {})}

    def spawn(name: str, *args: str) -> subprocess.Popen:
        home = where / name
        home.mkdir(exist_ok=True)
        with (where / f"{name}.log").open("w") as out:
            return subprocess.Popen(
                [str(DASK), *args], cwd=home, env=environ, stdout=out, stderr=subprocess.STDOUT
            )

    scheduler = spawn(
        "scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"
    )
    procs = []
    for i in range(workers):
        preload = ["--preload", str(preload_first)] if preload_first and i == 0 else []
        procs.append(
            spawn(
                f"worker-{i}",
                *(
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    str(threads),
                    "--no-nanny",
                ),
                *("--no-dashboard", "--name", f"w{i}", "--memory-limit", memory_limit),
                *preload,
            )
        )
    cluster = Cluster(address, where, scheduler, procs)
    try:
        _wait_for_workers(address, workers, timeout)
    except (OSError, TimeoutError) as err:
        cluster.stop()
        raise UserError(
            f"the loopback Dask cluster did not start ({err}); its logs:\n{cluster.logs()}"
        ) from None
    return cluster


def _wait_for_workers(address: str, count: int, timeout: float) -> None:
    import distributed

    deadline = time.monotonic() + timeout
    while True:
        try:
            with distributed.Client(address, timeout=5) as client:
                client.wait_for_workers(count, timeout=max(1.0, deadline - time.monotonic()))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="per worker")
    parser.add_argument("--memory-limit", default="auto", help="per worker, e.g. 4GiB")
    parser.add_argument("--dir", type=Path, help="logs and working directories (default: temp)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: give at least 1")
    where = args.dir or Path(tempfile.mkdtemp(prefix="cd4ml-dask-"))
    cluster = start(where, args.workers, args.memory_limit, args.threads)
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    print(f"DASK_SCHEDULER_ADDRESS={cluster.address}", flush=True)
    log.info("%d workers, logs in %s; Ctrl-C stops them", args.workers, where)
    try:
        while not stopping and cluster.scheduler.poll() is None:
            time.sleep(0.2)
    finally:
        cluster.stop()


if __name__ == "__main__":
    run_main(main)
