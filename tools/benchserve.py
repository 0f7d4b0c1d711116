"""Benchmark the HTTP service on a bundle of one data scale (make bench-serve).

Starts `python -m cd4ml.serve` on a free loopback port, measures its start-up (spawn to a ready
/readyz: imports, hash verification, load, warm-up), then drives it from a bounded asyncio load
generator (httpx2) for a fixed time per case, with request bodies made beforehand from the
scale's raw rows to score (the contract's batch table: KKBox's test.csv), the problem's Row
fields of each. The floor of each case is the bundle's own scoring of the same batches in
this process, no HTTP. Writes <out>/serve.json and serve.md.

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
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cd4ml import bundle, params
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
    return {
        key: {
            "target": target,
            "measured": measured[key],
            "met": measured[key] >= target if key == "rows_per_s" else measured[key] <= target,
        }
        for key, target in TARGETS.items()
    }


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
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for key, check in results["targets"].items():
        lines.append(
            f"| {key} ≤ {check['target']:g} | {check['measured']:,.2f} | "
            f"{'yes' if check['met'] else 'NO'} |".replace("rows_per_s ≤", "rows_per_s ≥")
        )
    return "\n".join(lines) + "\n"


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
    command += ["--prediction-log", prediction_log]
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


def _batches(rows: list[dict], size: int, count: int, rng: random.Random) -> list[list[dict]]:
    return [rng.sample(rows, size) if size < len(rows) else rows for _ in range(count)]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a line per request
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
