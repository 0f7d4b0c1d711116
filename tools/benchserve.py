"""Benchmark the HTTP service on a bundle of one data scale (make bench-serve).

Starts `python -m cd4ml.serve` on a free loopback port, measures its start-up (spawn to a ready
/readyz: imports, hash verification, load, warm-up), then drives it from a bounded asyncio load
generator (httpx2) for a fixed time per case, with request bodies made beforehand from the
scale's raw rows to score (the contract's batch table: KKBox's test.csv), the problem's Row
fields of each. The floor of each case is the bundle's own scoring of the same batches in
this process, no HTTP. Writes <out>/serve.json and serve.md.

With --nginx (the default), the same bundle also runs behind nginx as `make rollout` serves it
(cd4ml.rollout: two versions of the bundle, each with its prediction log): the 1-row and
1,000-row cases direct and through nginx, in turns within one run; 1-row requests with every
one mirrored to the second version (a shadow step) and without; and the failed client requests
while traffic switches as a promote, an abort and a canary whose new version is SIGKILLed do.

The bundle is the one `make bench` left in <work>/project-<scale>; without one it is built there
first (the scale's data, then `dvc repro bundle`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cd4ml import bundle, params, predlog, rollout, signing
from cd4ml.io import UserError, read_parquet, run_main
from cd4ml.problem import Problem
from cd4ml.reading import read_table
from cd4ml.shell import checked, dvc, free_ports
from tools import bench

log = logging.getLogger("benchserve")

# (name, rows per request, concurrent clients)
CASES = (("1 row", 1, 1), ("1,000 rows", 1000, 1), ("1,000 rows, 4 clients", 1000, 4))
# Run again with the prediction log on: what logging costs a request.
LOGGED = ("1 row", "1,000 rows")
TARGETS = {"p99_1_row_ms": 10.0, "p99_1000_rows_ms": 100.0, "rows_per_s": 50_000, "startup_s": 5.0}
# Behind nginx (--nginx): these cases direct and through nginx, --duration seconds each in turns
# of about TURN_S, so that the drift of a busy machine hits both alike.
NGINX_CASES = ("1 row", "1,000 rows")
TURN_S = 1.0
# Traffic switches as a rollout makes them, under load, each held --duration / (steps + 1) s:
# "canary-N" (N % to the new version, prod its backup), "<role> alone", "stop <role>" (SIGTERM,
# the service drains) and "kill new" (SIGKILL: nginx must fail over to the backup).
SWITCHES = {
    "promote": ("canary-10", "canary-50", "canary-100", "new alone", "stop prod"),
    "abort": ("canary-50", "prod alone", "stop new"),
    "kill": ("canary-50", "kill new", "prod alone", "stop new"),
}
SWITCH_CLIENTS = 2
# The shadow measured mirroring every request, and a sample (rollout.shadow_share).
SHADOW_SAMPLE = 25
NGINX_TARGETS = {
    "nginx_added_p50_1_row_ms": 0.5,
    "shadow_p99_increase_pct": 10.0,
    "sampled_shadow_p99_increase_pct": 10.0,
    **{f"failed_requests_{name}": 0 for name in SWITCHES},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.benchserve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scale", default="full", help="the data scale of the bundle")
    parser.add_argument("--work", type=Path, default=Path("bench/runs"), help="make bench's work")
    parser.add_argument("--bundle", type=Path, help="serve this bundle instead")
    parser.add_argument(
        "--rows",
        type=Path,
        help="raw rows to send: Parquet, or a CSV of the contract's batch table (default: "
        "the scale's, KKBox's test.csv)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per case")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument(
        "--nginx",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure nginx in front (as make rollout serves): its added latency, a "
        "shadow's cost and the failed requests of a promote, an abort and a killed canary",
    )
    parser.add_argument("--out", type=Path, default=Path("bench"))
    return parser.parse_args(argv)


def summary(latencies_s: list[float], rows_per_request: int, wall_s: float) -> dict[str, float]:
    """Latency percentiles (ms) and throughput of one case."""
    ms = np.asarray(latencies_s) * 1000.0
    if not len(ms):
        raise UserError("no request completed: the service did not answer")
    return {
        "requests": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "requests_per_s": len(ms) / wall_s,
        "rows_per_s": len(ms) * rows_per_request / wall_s,
    }


def check_targets(results: dict) -> dict[str, dict]:
    """Each target of the serving issue: the measured value and whether it holds."""
    cases = results["cases"]
    measured = {
        "p99_1_row_ms": cases["1 row"]["p99_ms"],
        "p99_1000_rows_ms": cases["1,000 rows"]["p99_ms"],
        "rows_per_s": max(cases[name]["rows_per_s"] for name in cases if "1,000" in name),
        "startup_s": results["startup_s"],
    }
    targets = dict(TARGETS)
    nginx = results.get("nginx")
    if nginx:
        targets.update(NGINX_TARGETS)
        measured["nginx_added_p50_1_row_ms"] = nginx["cases"]["1 row"]["p50_added_ms"]
        measured["shadow_p99_increase_pct"] = nginx["shadow"]["p99_increase_pct"]
        measured["sampled_shadow_p99_increase_pct"] = nginx["shadow"].get(
            "sampled_p99_increase_pct", float("nan")
        )
        for name, switch in nginx["switches"].items():
            measured[f"failed_requests_{name}"] = switch["failed"]
    return {
        key: {
            "target": target,
            "measured": measured[key],
            "met": measured[key] >= target if key == "rows_per_s" else measured[key] <= target,
        }
        for key, target in targets.items()
    }


def compare(base: dict, other: dict) -> dict[str, Any]:
    """What `other` adds to `base` (two summaries of one case): ms at p50 and p99, and % at p99;
    with their turns' p50s, also the p50 added in each pair of turns (adjacent in time: the
    spread shows the machine's noise)."""
    added: dict[str, Any] = {
        "p50_added_ms": other["p50_ms"] - base["p50_ms"],
        "p99_added_ms": other["p99_ms"] - base["p99_ms"],
        "p99_increase_pct": 100.0 * (other["p99_ms"] / base["p99_ms"] - 1.0),
    }
    if base.get("turn_p50_ms") and other.get("turn_p50_ms"):
        pairs = [b - a for a, b in zip(base["turn_p50_ms"], other["turn_p50_ms"], strict=True)]
        added["turn_p50_added_ms"] = {
            "median": statistics.median(pairs),
            "min": min(pairs),
            "max": max(pairs),
        }
    return added


def turns(duration: float) -> int:
    """How many turns each phase of `duration` seconds gets: about TURN_S each, 2 at least."""
    return max(2, round(duration / TURN_S))


def round_order(phases: tuple[str, ...], rounds: int) -> list[str]:
    """The phases in turns, the order reversed every other round (a b b a a b ...): neither
    always goes first, and a phase that needs a switch (a reload) gets one per two rounds."""
    order: list[str] = []
    for r in range(rounds):
        order += phases if r % 2 == 0 else phases[::-1]
    return order


def switch_summary(outcomes: list[tuple[float, str]], wall_s: float) -> dict[str, Any]:
    """The clients' requests during traffic switches: (seconds, "" or what failed) each; a
    failure is an answer other than 200 or a connection error."""
    if not outcomes:
        raise UserError("no request completed: nginx did not answer")
    failed = Counter(what for _, what in outcomes if what)
    ms = np.asarray([s for s, what in outcomes if not what]) * 1000.0
    return {
        "requests": len(outcomes),
        "failed": sum(failed.values()),
        "errors": dict(failed),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "max_ms": float(ms.max()) if len(ms) else None,
        "requests_per_s": len(outcomes) / wall_s,
    }


def upstream_ms(access: pd.DataFrame, step: str, port: int) -> dict[str, float | None]:
    """p50 / p99 of the service on `port`'s own answers to the clients' requests of a step, as
    nginx's access log times them (what rollout's analysis judges); mirrored copies left out."""
    mine = access[(access["step"] == step) & (access["uri"] != "/_shadow")]
    tries = rollout.attempts(mine, {port: "prod"})
    ms = tries.loc[tries["role"] == "prod", "ms"].dropna().to_numpy()
    if not len(ms):
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def traffic_for(action: str, prod: int, new: int) -> rollout.Traffic | None:
    """The nginx routing of a switch action (SWITCHES); None for one on a process."""
    if action.startswith("canary-"):
        return rollout.Traffic(prod=prod, new=new, share=int(action[7:]), step=action)
    if action in ("prod alone", "new alone"):
        return rollout.Traffic(prod=prod if action == "prod alone" else new, step="serve")
    if action in ("stop prod", "stop new", "kill new"):
        return None
    raise ValueError(f"unknown switch action {action!r}")


def markdown(results: dict) -> str:
    """The serve.md table."""
    lines = [
        f"### Serving benchmark: {results['scale']} scale bundle, {results['workers']} worker, "
        f"{results['duration_s']:.0f} s per case",
        "",
        f"Bundle {results['bundle_mb']:.1f} MB; start-up (spawn to ready) "
        f"{results['startup_s']:.2f} s, of which load + verify + warm-up "
        f"{results['load_s']:.2f} s. Machine: {results['machine']['cpus']} CPUs.",
        "",
        "| case | requests | p50 ms | p99 ms | rows/s | floor p50 ms (in process) | p50 / floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, case in results["cases"].items():
        floor = case["floor_p50_ms"]
        lines.append(
            f"| {name} | {case['requests']:,} | {case['p50_ms']:.2f} | {case['p99_ms']:.2f} "
            f"| {case['rows_per_s']:,.0f} | {floor:.2f} | {case['p50_ms'] / floor:.1f} |"
        )
    if results.get("logged"):
        lines += [
            "",
            f"With the prediction log on ({results['logged_rows']:,} rows written, every one):",
            "",
            "| case | p50 ms | p99 ms | p50 added ms | p99 added ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, case in results["logged"].items():
            lines.append(
                f"| {name} | {case['p50_ms']:.2f} | {case['p99_ms']:.2f} "
                f"| {case['p50_added_ms']:+.2f} | {case['p99_added_ms']:+.2f} |"
            )
    if results.get("nginx"):
        lines += ["", *_nginx_markdown(results["nginx"], results["duration_s"])]
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for key, check in results["targets"].items():
        measured = check["measured"]
        shown = f"{measured:,}" if isinstance(measured, int) else f"{measured:,.2f}"
        lines.append(
            f"| {key} ≤ {check['target']:g} | {shown} | "
            f"{'yes' if check['met'] else 'NO'} |".replace("rows_per_s ≤", "rows_per_s ≥")
        )
    return "\n".join(lines) + "\n"


def _nginx_markdown(nginx: dict, duration_s: float) -> list[str]:
    rounds = nginx["rounds"]
    lines = [
        f"Through nginx (as `make rollout` serves; each version logs its predictions), 1 client, "
        f"{duration_s:.0f} s a phase in {rounds} turns of {duration_s / rounds:.1f} s:",
        "",
        "| case | direct p50 ms | nginx p50 ms | p50 added ms | p50 added in a pair of turns, "
        "median (min … max) | direct p99 ms | nginx p99 ms | p99 added ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, case in nginx["cases"].items():
        direct, through = case["direct"], case["nginx"]
        lines.append(
            f"| {name} | {direct['p50_ms']:.2f} | {through['p50_ms']:.2f} "
            f"| {case['p50_added_ms']:+.2f} | {_spread(case.get('turn_p50_added_ms'))} "
            f"| {direct['p99_ms']:.2f} | {through['p99_ms']:.2f} | {case['p99_added_ms']:+.2f} |"
        )
    shadow = nginx["shadow"]
    off, on = shadow["off"], shadow["on"]
    lines += [
        "",
        "Shadowing (1 row through nginx; every request, or a sample of "
        f"{SHADOW_SAMPLE} %, mirrored to a second service of the bundle):",
        "",
        "| mirror | requests | p50 ms | p99 ms | prod service p50 ms | prod service p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {phase['requests']:,} | {phase['p50_ms']:.2f} | {phase['p99_ms']:.2f} "
            f"| {_ms(phase.get('prod_upstream', {}).get('p50_ms'))} "
            f"| {_ms(phase.get('prod_upstream', {}).get('p99_ms'))} |"
            for name, phase in (
                ("off", off),
                ("on", on),
                (f"on, {SHADOW_SAMPLE} % sampled", shadow.get("sampled")),
            )
            if phase
        ),
        "",
        "(prod service: its own answer times in nginx's access log, as rollout's analysis "
        "judges them; p50 / p99 ms: the client's.)",
        "",
        f"The mirror adds {shadow['p50_added_ms']:+.2f} ms to the p50 and "
        f"{shadow['p99_added_ms']:+.2f} ms ({shadow['p99_increase_pct']:+.1f} %) to the p99"
        + (
            f"; mirroring {SHADOW_SAMPLE} % adds {shadow['sampled_p99_increase_pct']:+.1f} %."
            if "sampled_p99_increase_pct" in shadow
            else "."
        ),
        "",
        f"Traffic switches under load ({nginx['switch_clients']} clients of 1 row through nginx):",
        "",
        "| switch | steps | requests | failed | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, switch in nginx["switches"].items():
        errors = ", ".join(f"{k} {v}" for k, v in switch["errors"].items())
        lines.append(
            f"| {name} | {' → '.join(switch['steps'])} | {switch['requests']:,} "
            f"| {switch['failed']}{f' ({errors})' if errors else ''} "
            f"| {_ms(switch['p99_ms'])} | {_ms(switch['max_ms'])} |"
        )
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _spread(turns: dict | None) -> str:
    if not turns:
        return "-"
    return f"{turns['median']:+.2f} ({turns['min']:+.2f} … {turns['max']:+.2f})"


def ensure_bundle(work: Path, scale: str, problem: Problem) -> tuple[Path, Path]:
    """The bundle and raw rows to score (the batch table) of `make bench`'s project of the
    scale; built if missing."""
    project = work / f"project-{scale}"
    path = project / "models" / "bundle"
    if not (path / bundle.MANIFEST).exists():
        log.info("no %s bundle in %s: making the data and running dvc repro bundle", scale, work)
        data, _ = bench.ensure_data(work, scale, bench.generate_settings(), regenerate=False)
        bench.copy_project(project, data)
        repro = dvc("repro", "--quiet", "bundle", cwd=project, env=bench.stage_path())
        checked(repro, f"dvc repro bundle in {project}")
    if problem.contract.batch is None:
        raise UserError(f"problem {problem.name} has no batch table: give --bundle and --rows")
    return path, project / "data" / problem.contract.batch


def read_rows(path: Path, problem: Problem) -> pa.Table:
    """The input fields (the problem's Row) of raw rows: a Parquet file, or a CSV of the
    contract's batch table, read as the stages read it."""
    names = [f.name for f in bundle.input_fields(problem.Row)]
    if path.suffix != ".csv":
        return read_parquet(path, columns=names)
    contract = problem.contract
    if contract.batch is None:
        raise UserError(f"{path}: problem {problem.name} has no batch table; give Parquet rows")
    return read_table(path, contract.tables[contract.batch], names)


def check_answer(answer: dict, rows: int, flags: tuple[str, ...]) -> None:
    """A /predict answer must score every row and count each of the problem's flags."""
    got = answer.get("probabilities")
    if answer.get("rows") != rows or not isinstance(got, list) or len(got) != rows:
        raise UserError(f"POST /predict of {rows} row(s) answered {json.dumps(answer)[:200]}")
    if sorted(answer.get("flags") or {}) != sorted(flags):
        raise UserError(
            f"POST /predict counted the flags {sorted(answer.get('flags') or {})}, not the "
            f"problem's {sorted(flags)}"
        )


@contextlib.contextmanager
def running(
    path: Path, workers: int, log_path: Path, prediction_log: str = ""
) -> Iterator[tuple[str, float]]:
    """The service on a free port (`prediction_log`: "" = none); yields its URL and the
    seconds from spawn to ready."""
    import httpx2

    (port,) = free_ports()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cd4ml.serve", "--bundle", str(path), "--port", str(port)]
    # A bundle built for the bench is unsigned; a signed one is verified all the same.
    command += ["--prediction-log", prediction_log, "--allow-unsigned"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=bench.ROOT,
        )
        try:
            while True:
                if process.poll() is not None:
                    raise UserError(
                        f"the service exited with {process.returncode}; see {log_path}"
                    )
                with contextlib.suppress(httpx2.HTTPError):
                    if httpx2.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                        break
                if time.perf_counter() - started > 120:
                    raise UserError(f"the service was not ready after 120 s; see {log_path}")
                time.sleep(0.02)
            yield url, time.perf_counter() - started
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def _drive(
    url: str, bodies: list[bytes], clients: int, duration: float, check: Any = None
) -> list[float]:
    """`clients` loops, each sending one request after the other until the time is up;
    `check` (if given) judges each loop's first answer."""
    import httpx2

    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Content-Type": "application/json"}
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:

        async def loop(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                response = await client.post(
                    "/predict", content=bodies[i % len(bodies)], headers=headers
                )
                if response.status_code != 200:
                    raise UserError(
                        f"POST /predict answered {response.status_code}: {response.text[:200]}"
                    )
                latencies.append(time.perf_counter() - sent)
                if check is not None and i == offset:
                    check(response.json())
                i += clients

        await asyncio.gather(*(loop(k) for k in range(clients)))
    return latencies


def _case(
    url: str,
    scorer: bundle.Scorer,
    name: str,
    batches: list[list[dict]],
    clients: int,
    args: argparse.Namespace,
) -> dict:
    """One case: the load generator for --duration seconds, and the in-process floor."""
    bodies = [json.dumps({"rows": b}).encode() for b in batches]
    floor = []
    for batch in batches[:20]:
        started = time.perf_counter()
        scorer.score(batch)
        floor.append(time.perf_counter() - started)
    rows = len(batches[0])  # the case's size, or every row there is when there are fewer
    flags = scorer.problem.flags

    def check(answer: dict) -> None:
        check_answer(answer, rows, flags)

    log.info("%s: %d client(s) for %.0f s", name, clients, args.duration)
    started = time.perf_counter()
    latencies = asyncio.run(_drive(url, bodies, clients, args.duration, check))
    case = summary(latencies, rows, time.perf_counter() - started)
    case["floor_p50_ms"] = statistics.median(floor) * 1000.0
    log.info(
        "%s: p50 %.2f ms, p99 %.2f ms, %.0f rows/s",
        name,
        case["p50_ms"],
        case["p99_ms"],
        case["rows_per_s"],
    )
    return case


def _interleaved(
    phases: dict[str, Callable[[], str]],
    bodies: list[bytes],
    rows: int,
    duration: float,
    check: Any,
) -> dict[str, dict]:
    """Each phase (its callable readies it and gives the URL to load) for `duration` seconds in
    all, in turns(duration) turns of 1 client; a summary per phase."""
    latencies: dict[str, list[float]] = {name: [] for name in phases}
    turn_p50: dict[str, list[float]] = {name: [] for name in phases}
    wall = dict.fromkeys(phases, 0.0)
    rounds = turns(duration)
    for name in round_order(tuple(phases), rounds):
        url = phases[name]()
        started = time.perf_counter()
        got = asyncio.run(_drive(url, bodies, 1, duration / rounds, check))
        wall[name] += time.perf_counter() - started
        latencies[name] += got
        turn_p50[name].append(statistics.median(got) * 1000.0)
    return {
        name: {**summary(latencies[name], rows, wall[name]), "turn_p50_ms": turn_p50[name]}
        for name in phases
    }


class _Load:
    """Clients posting 1-row requests in a thread of their own until stopped; each request's
    (seconds, "" or what failed) kept, failures never raised: they are what is counted."""

    def __init__(self, url: str, bodies: list[bytes], clients: int) -> None:
        self.url, self.bodies, self.clients = url, bodies, clients
        self.outcomes: list[tuple[float, str]] = []
        self.wall_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import httpx2

        limits = httpx2.Limits(max_connections=self.clients)
        headers = {"Content-Type": "application/json"}
        started = time.perf_counter()
        async with httpx2.AsyncClient(base_url=self.url, limits=limits, timeout=30.0) as client:

            async def loop(i: int) -> None:
                while not self._stop.is_set():
                    sent = time.perf_counter()
                    body = self.bodies[i % len(self.bodies)]
                    try:
                        response = await client.post("/predict", content=body, headers=headers)
                        status = response.status_code
                        what = "" if status == 200 else f"HTTP {status}"
                    except httpx2.HTTPError as err:
                        what = type(err).__name__
                    self.outcomes.append((time.perf_counter() - sent, what))
                    if what:
                        await asyncio.sleep(0.01)  # no busy loop on a refused connection
                    i += self.clients

            await asyncio.gather(*(loop(k) for k in range(self.clients)))
        self.wall_s = time.perf_counter() - started

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _version(home: Path, name: str, signed: Path) -> rollout.Version:
    """A version folder as rollout.install makes one: the (signed) bundle, linked, and its
    bundle.json naming `name`."""
    folder = home / "versions" / name
    folder.mkdir(parents=True)
    (folder / "bundle").symlink_to(signed.resolve(), target_is_directory=True)
    (folder / "bundle.json").write_text(json.dumps({"version": name}), encoding="utf-8")
    return rollout.Version(name, str(folder))


class _Host:
    """nginx and the versions' services of a rollout home, stopped on exit."""

    def __init__(self, home: Path, path: Path) -> None:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        # Released bundles are signed, and a rollout's services verify them: a copy signed
        # with a key of the bench's own (the workspace's bundle stays as DVC made it).
        self.path = home / "bundle"
        shutil.copytree(path, self.path)
        keys = home / "keys"
        signing.keygen(keys / "release.pem", keys / "release.pub")
        signing.sign(self.path, keys / "release.pem")
        self._key = os.environ.get(signing.PUBLIC_KEY_ENV)
        os.environ[signing.PUBLIC_KEY_ENV] = str(keys / "release.pub")
        self.home = home
        (self.port,) = free_ports()
        self.url = f"http://127.0.0.1:{self.port}"
        self.versions: list[rollout.Version] = []
        self.traffic: rollout.Traffic | None = None

    def start(self) -> rollout.Version:
        version = _version(self.home, f"v{len(self.versions) + 1}", self.path)
        self.versions.append(version)
        return rollout.start(version, str(bench.ROOT / "params.yaml"), 120.0)

    def route(self, traffic: rollout.Traffic, settle: bool = False) -> None:
        """nginx routed as `traffic` says (not reloaded when it already is); `settle`: also
        wait until the workers of the config before have exited. A keepalive connection one of
        them holds is closed when it is idle, and a request sent on it right then is lost:
        a steady-state measure must not see that, a switch under load must."""
        if traffic != self.traffic:
            rollout.route(self.home, self.port, traffic)
            self.traffic = traffic
        master = rollout._pid(self.home / "nginx" / "nginx.pid")
        deadline = time.monotonic() + 30
        while settle and master and len(rollout._workers(master)) > 1:
            if time.monotonic() > deadline:
                raise UserError(f"nginx (pid {master}): old workers still running after 30 s")
            time.sleep(0.02)

    def __enter__(self) -> _Host:
        return self

    def __exit__(self, *exc: object) -> None:
        conf = self.home / "nginx" / "nginx.conf"
        if conf.exists():
            with contextlib.suppress(UserError):
                rollout._nginx(conf, "-s", "quit")
        for version in self.versions:
            rollout.stop(version)
        if self._key is None:
            os.environ.pop(signing.PUBLIC_KEY_ENV, None)
        else:
            os.environ[signing.PUBLIC_KEY_ENV] = self._key


def _switch(
    host: _Host,
    name: str,
    prod: rollout.Version,
    new: rollout.Version,
    bodies: list[bytes],
    duration: float,
) -> dict[str, Any]:
    """Load through nginx while traffic switches as SWITCHES[name] says; the failed requests."""
    actions = SWITCHES[name]
    hold = duration / (len(actions) + 1)
    host.route(rollout.Traffic(prod=prod.port), settle=True)
    log.info("%s under load: %s, %.1f s each", name, " → ".join(actions), hold)
    with _Load(host.url, bodies, SWITCH_CLIENTS) as load:
        time.sleep(hold)
        for action in actions:
            traffic = traffic_for(action, prod.port, new.port)
            if traffic is not None:
                host.route(traffic)
            elif action == "kill new":
                os.kill(new.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(new.pid, 0)
            else:
                rollout.stop(prod if action == "stop prod" else new)
            time.sleep(hold)
    result = switch_summary(load.outcomes, load.wall_s)
    result["steps"] = list(actions)
    log.info(
        "%s: %d requests, %d failed %s",
        name,
        *(result[k] for k in ("requests", "failed", "errors")),
    )
    return result


def _through_nginx(
    home: Path, path: Path, scorer: bundle.Scorer, batches: dict, duration: float
) -> dict[str, Any]:
    """nginx's added latency, the shadow's cost and the switches' failed requests."""
    flags = scorer.problem.flags
    bodies = {
        name: [json.dumps({"rows": b}).encode() for b in batches[name]] for name in NGINX_CASES
    }
    ones = bodies["1 row"]
    result: dict[str, Any] = {
        "rounds": turns(duration),
        "switch_clients": SWITCH_CLIENTS,
        "cases": {},
        "switches": {},
    }
    with _Host(home, path) as host:
        prod, new = host.start(), host.start()
        host.route(rollout.Traffic(prod=prod.port), settle=True)
        direct = f"http://127.0.0.1:{prod.port}"
        for name in NGINX_CASES:
            rows = len(batches[name][0])
            log.info("%s: direct and through nginx, %d turns each", name, turns(duration))

            def check(answer: dict, rows: int = rows) -> None:
                check_answer(answer, rows, flags)

            phases = {"direct": lambda: direct, "nginx": lambda: host.url}
            case = _interleaved(phases, bodies[name], rows, duration, check)
            case.update(compare(case["direct"], case["nginx"]))
            log.info(
                "%s: nginx adds %.2f ms at p50, %.2f ms at p99",
                name,
                case["p50_added_ms"],
                case["p99_added_ms"],
            )
            result["cases"][name] = case

        def to(traffic: rollout.Traffic) -> Callable[[], str]:
            def ready() -> str:
                host.route(traffic, settle=True)
                return host.url

            return ready

        steps = {"off": "mirror-off", "on": "shadow", "sampled": "shadow-sample"}
        off = rollout.Traffic(prod=prod.port, step=steps["off"])
        mirrored = rollout.Traffic(prod.port, new.port, mirror=True, step=steps["on"])
        sampled = rollout.Traffic(
            prod.port, new.port, mirror=True, mirror_share=SHADOW_SAMPLE, step=steps["sampled"]
        )
        log.info("1 row through nginx: mirror off, on, on for %d %% of them", SHADOW_SAMPLE)
        shadow = _interleaved(
            {"off": to(off), "on": to(mirrored), "sampled": to(sampled)},
            ones,
            1,
            duration,
            lambda answer: check_answer(answer, 1, flags),
        )
        shadow.update(compare(shadow["off"], shadow["on"]))
        shadow["sampled_p99_increase_pct"] = compare(shadow["off"], shadow["sampled"])[
            "p99_increase_pct"
        ]
        access = rollout.read_access_log(host.home / "nginx" / "access.log")
        for phase, step in steps.items():
            shadow[phase]["prod_upstream"] = upstream_ms(access, step, prod.port)
        log.info(
            "the mirror adds %.1f %% to the p99 (%.1f %% mirroring %d %%)",
            shadow["p99_increase_pct"],
            shadow["sampled_p99_increase_pct"],
            SHADOW_SAMPLE,
        )
        result["shadow"] = shadow
        result["switches"]["promote"] = _switch(host, "promote", prod, new, ones, duration)
        prod = new  # promoted
        for name in ("abort", "kill"):
            new = host.start()
            result["switches"][name] = _switch(host, name, prod, new, ones, duration)
    return result


def _batches(rows: list[dict], size: int, count: int, rng: random.Random) -> list[list[dict]]:
    return [rng.sample(rows, size) if size < len(rows) else rows for _ in range(count)]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a line per request
    # The services it starts log member ids hashed, as in production: a throwaway key if none.
    os.environ[predlog.KEY_ENV] = os.environ.get(predlog.KEY_ENV) or secrets.token_hex(32)
    # The service reads params.yaml where it runs (the repository's root): its problem.
    problem = params.problem(bench.ROOT / "params.yaml")
    if args.bundle is not None:
        path, rows_path = args.bundle, args.rows
        if rows_path is None:
            raise UserError(
                "--bundle needs --rows: raw rows to send (Parquet, or a CSV of the batch table)"
            )
    else:
        path, rows_path = ensure_bundle(args.work.resolve(), args.scale, problem)
    rows_path = args.rows or rows_path
    pool = read_rows(rows_path, problem).slice(0, 200_000).to_pylist()
    rng = random.Random(0)
    scorer = bundle.load(path, problem)
    scorer.featurizer.warm_up()  # as the service does before it is ready: the floor is warm too
    results: dict[str, Any] = {
        "scale": args.scale if args.bundle is None else str(args.bundle),
        "bundle_mb": sum(e["bytes"] for e in scorer.manifest["files"].values()) / 1e6,
        "workers": args.workers,
        "duration_s": args.duration,
        "machine": {"cpus": os.cpu_count()},
        "cases": {},
    }
    logs = args.work / "logs" / "serve.log"
    batches = {
        name: _batches(pool, size, 200 if size == 1 else 20, rng) for name, size, _ in CASES
    }
    with running(path, args.workers, logs) as (url, startup):
        results["startup_s"] = startup
        for name, _, clients in CASES:
            results["cases"][name] = _case(url, scorer, name, batches[name], clients, args)
    log_folder = args.work / "serve-prediction-log"
    shutil.rmtree(log_folder, ignore_errors=True)
    results["logged"] = {}
    with running(path, args.workers, logs.with_name("serve-logged.log"), str(log_folder)) as (
        url,
        _,
    ):
        for name, _, clients in CASES:
            if name in LOGGED:
                case = _case(url, scorer, name, batches[name], clients, args)
                plain = results["cases"][name]
                case["p50_added_ms"] = case["p50_ms"] - plain["p50_ms"]
                case["p99_added_ms"] = case["p99_ms"] - plain["p99_ms"]
                results["logged"][name] = case
    results["logged_rows"] = sum(
        pq.read_metadata(f).num_rows for f in log_folder.glob("predictions-*.parquet")
    )
    results["load_s"] = _load_seconds(logs)
    if args.nginx:
        home = (args.work / "serve-nginx").resolve()
        results["nginx"] = _through_nginx(home, path, scorer, batches, args.duration)
    results["targets"] = check_targets(results)
    bench.write_results(args.out, "serve", results, markdown(results))


def _load_seconds(log_path: Path) -> float:
    """What the service logged for its own load + verify + warm-up."""
    for line in log_path.read_text(encoding="utf-8").splitlines():
        if "loaded, verified and warmed up in " in line:
            return float(line.split("warmed up in ", 1)[1].split(" s", 1)[0])
    return float("nan")


if __name__ == "__main__":
    run_main(main)
