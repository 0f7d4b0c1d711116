"""Benchmark the pipeline at one data scale: every stage of dvc.yaml, its I/O floor, dvc repro.

In a throw-away copy of the project (in --work) it makes the data of the scale (once; timed),
runs each stage's exact `cmd` from dvc.yaml and records its wall time, CPU time (user + sys)
and peak RSS (from the child's own rusage, os.wait4), the rows it read and wrote; stages under
a minute run --repeat times and the median counts. For the data stages it also times a bare
multi-threaded pyarrow read of the data files among the stage's deps in dvc.yaml and a bare write
of the tables among its outs: the floor.
Then `dvc add data`, a full `dvc repro` and no-op ones, the bytes the data version stores (the
DVC cache: raw data and each stage's cached outputs), and `dvc push` / `dvc pull` of that version
against a loopback S3 server (tools/s3-server.sh); then one more chunk (--ingest, the last 1 %
of train.csv's rows): the history before it reproduced, the chunk ingested, and the rerun
timed. Results: <out>/results.json and .md.

GPU machine: `python -m tools.bench --scale full --stages train --device cuda,cpu --out DIR`
times train on each device, on the same data and machine.

`--engine dask` (make bench ENGINE=dask) times preprocess and train on the local engine and then
on loopback Dask clusters of --workers workers (tools.daskcluster, a fresh cluster and scratch
prefix on a loopback S3 server per run), in the same run: wall time, each worker's peak memory,
the bytes staged to S3 and moved between Dask processes, the eval ROC AUC, and whether the
features are the local engine's. Results: <out>/dask-<scale>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import yaml
from dvc.dependency.param import ParamsDependency
from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc.stage import PipelineStage

import kkbox
from cd4ml import chunks, cluster, engine, generate, ingestion, io, params, provenance
from cd4ml.incoming import open_incoming
from cd4ml.io import UserError, atomic_path, run_main, write_json
from cd4ml.metrics import EVAL_METRICS
from cd4ml.model import INFO
from cd4ml.shell import dvc, free_ports
from kkbox import synth
from tools import daskcluster, workspace
from tools.benchreport import check_targets, engines_markdown, markdown

log = logging.getLogger("bench")

ROOT = workspace.ROOT
DATA_SUFFIXES = (".csv", ".parquet")
MODEL = "models/model"  # the train stage's model folder in dvc.yaml


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: scale, repeats, which stages and devices, where to work and write."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--scale", choices=sorted(synth.SCALES), default="full")
    add(
        "--repeat",
        type=int,
        default=3,
        help="runs of each stage that takes under --once-over seconds",
    )
    add(
        "--once-over",
        type=float,
        default=60.0,
        help="a stage whose first run takes longer runs once",
    )
    add(
        "--stages",
        default="",
        help="stages to time, comma-separated (default: all); the stages before them run once, "
        "untimed",
    )
    add("--device", default="", help="train.xgb.device values to time train with, e.g. cuda,cpu")
    add("--no-repro", action="store_true", help="skip the dvc add / repro / push / pull timings")
    add("--no-transfer", action="store_true", help="skip the dvc push / pull timings")
    add("--no-baseline", action="store_true", help="skip the pandas baseline of the data stages")
    add(
        "--ingest",
        type=float,
        default=0.01,
        help="share of train.csv's last rows to ingest as one new chunk after the dvc timings: "
        "the history before it reproduced, then `cd4ml.ingest` and the rerun timed (0: skip)",
    )
    add(
        "--train-sweep",
        default="",
        help="train.xgb settings to vary one at a time, e.g. 'learning_rate=0.1,0.3;max_depth=6'"
        ": train (timed) and evaluate once per value, then params.yaml's: AUC against train time",
    )
    add(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="dask: preprocess and train on the local engine and on Dask clusters, side by side",
    )
    add(
        "--workers",
        default="0,1,2",
        help="with --engine dask: cluster sizes, comma-separated; 0 is the local engine",
    )
    add("--memory-limit", default="auto", help="with --engine dask: per worker, e.g. 4GiB")
    add(
        "--replicate",
        type=int,
        default=1,
        help="with --engine dask: the split's rows N times over (the same members and songs): "
        "N x the plays for preprocess and train",
    )
    add("--trees", type=int, default=0, help="with --engine dask: train.xgb.n_estimators")
    add(
        "--scratch",
        choices=("s3", "folder"),
        default="s3",
        help="with --engine dask: the scratch space, a loopback S3 (objects in RAM) or a folder",
    )
    add("--regenerate", action="store_true", help="make (and time) the data anew")
    add(
        "--work",
        type=Path,
        default=ROOT / "bench" / "runs",
        help="folder for the data, the project copy and the logs",
    )
    add("--out", type=Path, default=ROOT / "bench", help="folder for results.json and results.md")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not 0 <= args.ingest < 1:
        parser.error("--ingest must be a share of the train rows in [0, 1)")
    return args


# ---------------------------------------------------------------------------------------------
# Running a command and measuring it


# Linux hands a parent's peak RSS on to the children it spawns (fork copies the counters, exec
# records them), so a stage started straight from this big process would report at least this
# process's RSS. A small interpreter launches the stage and reports that child's own rusage.
_LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2], shell=True)
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump([usage.ru_utime, usage.ru_stime, usage.ru_maxrss], fh)
sys.exit(os.waitstatus_to_exitcode(status) & 255)
"""


def stage_path() -> dict[str, str]:
    """PATH with this environment first: dvc.yaml's stages run `python ...`, which must be this
    environment's Python (with the project's libraries) however the tool was started."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def measure(
    cmd: str, cwd: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a shell command; wall time, and the CPU time and peak RSS of that very command."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    usage_path = log_path.with_suffix(".rusage.json")
    env = {**os.environ, **stage_path(), "DVC_NO_ANALYTICS": "1", **(extra_env or {})}
    with log_path.open("wb") as out:
        started = time.perf_counter()
        launcher = [sys.executable, "-c", _LAUNCHER, str(usage_path), cmd]
        returncode = subprocess.run(
            launcher, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode
        wall = time.perf_counter() - started
    if returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise UserError(f"`{cmd}` failed with exit code {returncode} (log: {log_path})\n{tail}")
    user, system, maxrss_kib = json.loads(usage_path.read_text())
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(user + system, 3),
        "user_s": round(user, 3),
        "sys_s": round(system, 3),
        "peak_rss_mib": round(maxrss_kib / 1024, 1),  # Linux: KiB
    }


# ---------------------------------------------------------------------------------------------
# The pipeline in dvc.yaml


def load_stages(project: Path) -> dict[str, dict[str, Any]]:
    """Stages of dvc.yaml (name -> cmd, deps, outs) in an order that runs each after the stages
    it depends on: DVC's own graph, ties in dvc.yaml's order."""
    # no_scm: DVC builds the graph in a copy without git too (--no-repro, a bare GPU machine).
    with Repo(str(project), config={"core": {"no_scm": True}}) as repo:
        try:
            graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        except DvcException as err:
            raise UserError(f"{project / 'dvc.yaml'}: {err}") from err
        position = {stage: i for i, stage in enumerate(repo.index.stages)}
        order = nx.lexicographical_topological_sort(graph.reverse(), key=position.__getitem__)
        return {
            stage.name: {
                "cmd": " ".join(str(stage.cmd).split()),
                "deps": [d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)],
                "outs": [o.def_path for o in stage.outs],  # metrics and plots too
                "cached": [o.def_path for o in stage.outs if o.use_cache],
            }
            for stage in order
            if isinstance(stage, PipelineStage)  # not data.dvc
        }


def data_files(project: Path, paths: list[str]) -> list[Path]:
    """The CSV and Parquet files among `paths` (relative to `project`) and in their folders."""
    files: list[Path] = []
    for rel in paths:
        path = project / rel
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in DATA_SUFFIXES))
        elif path.suffix in DATA_SUFFIXES and path.exists():
            files.append(path)
    return files


def stage_inputs(project: Path, stage: dict[str, Any]) -> list[Path]:
    """The data files a stage reads: those of its deps in dvc.yaml (a test keeps them exact)."""
    return data_files(project, stage["deps"])


def count_rows(path: Path) -> int:
    """Rows of a Parquet file (its metadata) or a CSV file (lines after the header)."""
    stat = path.stat()
    return _count_rows(str(path), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _count_rows(path: str, mtime_ns: int, size: int) -> int:
    """count_rows of one version of a file (the same file is counted once per version)."""
    if path.endswith(".parquet"):
        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)


# A stage's floor: a bare multi-threaded pyarrow read of its input files, then a bare write of
# its output tables (read back first, untimed) with the codec and row groups they were written
# with, in a temporary folder of the working directory (the stage's own disk).
_FLOOR = """
import sys, tempfile, time
import pyarrow.csv as pacsv, pyarrow.parquet as pq
CODECS = {"UNCOMPRESSED": "none", "LZ4_RAW": "lz4"}
cut = sys.argv.index("--")
started = time.perf_counter()
for path in sys.argv[1:cut]:
    if path.endswith(".parquet"):
        pq.read_table(path, use_threads=True)
    else:
        pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=True))
read, write = time.perf_counter() - started, 0.0
with tempfile.TemporaryDirectory(dir=".") as tmp:
    for i, path in enumerate(sys.argv[cut + 1 :]):
        copy = f"{tmp}/{i}"
        if path.endswith(".parquet"):
            meta = pq.ParquetFile(path).metadata
            first = meta.row_group(0) if meta.num_row_groups else None
            codec = first.column(0).compression if first else "UNCOMPRESSED"
            table = pq.read_table(path, use_threads=True)
            started = time.perf_counter()
            pq.write_table(
                table, copy, compression=CODECS.get(codec, codec.lower()),
                row_group_size=first.num_rows if first else None,
            )
        else:
            table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=True))
            started = time.perf_counter()
            pacsv.write_csv(table, copy)
        write += time.perf_counter() - started
print(read, write)
"""


# The yardstick of issue 15: a straightforward pandas implementation of the seed design's data
# stages, for train.csv's rows alone (read, join on the string ids, text to category codes,
# write), timed like a stage in a fresh process.
_PANDAS_BASELINE = """
import sys
import pandas as pd
data, out = sys.argv[1], sys.argv[2]
frame = (
    pd.read_csv(f"{data}/train.csv")
    .merge(pd.read_csv(f"{data}/members.csv"), on="msno", how="left")
    .merge(pd.read_csv(f"{data}/songs.csv"), on="song_id", how="left")
)
for col in frame.select_dtypes(include=["object", "string"]).columns:
    frame[col] = frame[col].astype("category").cat.codes
frame.to_csv(out, index=False)
"""


def time_pandas_baseline(project: Path, logs: Path) -> dict[str, Any]:
    """The pandas implementation above on the project's data, once (it takes about a minute at
    full scale); the CSV it writes is deleted."""
    out = project / "pandas-baseline.csv"
    script = logs / "pandas_baseline.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(_PANDAS_BASELINE, encoding="utf-8")
    cmd = shlex.join([sys.executable, str(script), str(project / "data"), str(out)])
    try:
        result = measure(cmd, project, logs / "pandas-baseline.log")
        result["rows_out"] = count_rows(out)
    finally:
        out.unlink(missing_ok=True)
    log.info(
        "pandas baseline (train rows): %.1f s, %.0f MiB", result["wall_s"], result["peak_rss_mib"]
    )
    return result


def io_floor(inputs: list[Path], outputs: list[Path], repeat: int, cwd: Path) -> dict[str, float]:
    """Seconds of a bare read of the input files and a bare write of the output tables (the
    median of `repeat` runs of both), each run in a fresh process, as the stage itself runs."""
    runs = []
    for _ in range(repeat):
        cmd = [sys.executable, "-c", _FLOOR, *map(str, inputs), "--", *map(str, outputs)]
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True)
        read, write = map(float, result.stdout.strip().splitlines()[-1].split())
        runs.append({"floor_s": read + write, "floor_read_s": read, "floor_write_s": write})
    median = sorted(runs, key=lambda r: r["floor_s"])[len(runs) // 2]
    return {k: round(v, 3) for k, v in median.items()}


# ---------------------------------------------------------------------------------------------
# Data and the project copy


def generate_settings(path: Path = ROOT / "params.yaml") -> synth.Generate:
    """params.yaml's generate section: what the synthetic data is drawn with."""
    return params.section(path, "generate", synth.Generate)


def _fingerprint(scale: str, settings: synth.Generate) -> str:
    """What the data of a scale depends on: scale, generate settings and the code that writes
    it."""
    digest = hashlib.sha256(f"{scale}:{settings.model_dump_json()}".encode())
    code = (generate.__file__, kkbox.__file__, synth.__file__, io.__file__)
    for path in map(Path, code):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_data(
    work: Path, scale: str, settings: synth.Generate, regenerate: bool
) -> tuple[Path, dict]:
    """The data of a scale in work/data-<scale>, made (and timed) with `python -m
    cd4ml.generate` unless the same code and settings made it before."""
    data = work / f"data-{scale}"
    record_path = work / f"data-{scale}.json"
    fingerprint = _fingerprint(scale, settings)
    if not regenerate and data.is_dir() and record_path.exists():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("fingerprint") == fingerprint:
            log.info("data: reusing %s (made in %.1f s)", data, record["wall_s"])
            return data, {**record, "cached": True}
    log.info("data: generating the %s scale into %s", scale, data)
    out = shlex.quote(str(data))
    cmd = f"python -m cd4ml.generate --scale {scale} --params params.yaml --out {out}"
    record = measure(cmd, ROOT, work / "logs" / f"generate-{scale}.log")
    size = sum(p.stat().st_size for p in data.iterdir())
    record.update(fingerprint=fingerprint, seed=settings.seed, cmd=cmd, bytes=size)
    write_json(record, record_path)
    wall, cpu, rss = record["wall_s"], record["cpu_s"], record["peak_rss_mib"]
    log.info("data: %.1f s wall, %.1f s CPU, %.0f MiB peak", wall, cpu, rss)
    return data, {**record, "cached": False}


def _remove(path: Path) -> None:
    """Delete a file or a folder, if there is one."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def copy_project(dest: Path, data: Path, with_dvc: bool = True) -> Path:
    """A copy of the project (tools.workspace; a git repository unless not `with_dvc`) with no
    pipeline outputs and data/ hard-linked from the generated data."""
    workspace.copy_project(dest, commit=with_dvc)
    for stage in load_stages(dest).values():
        for out in stage["outs"]:
            _remove(dest / out)
    shutil.rmtree(dest / "data", ignore_errors=True)
    (dest / "data").mkdir()
    for path in data.iterdir():
        try:
            os.link(path, dest / "data" / path.name)
        except OSError:
            shutil.copy2(path, dest / "data" / path.name)
    return dest


@contextlib.contextmanager
def edited_params(project: Path, changes: dict[str, Any]) -> Iterator[None]:
    """params.yaml of the copy with these keys changed (dotted, e.g. train.xgb.max_depth),
    restored afterwards."""
    path = project / "params.yaml"
    original = path.read_text(encoding="utf-8")
    if changes:
        changed = yaml.safe_load(original)
        for key, value in changes.items():
            *parents, name = key.split(".")
            functools.reduce(lambda section, part: section[part], parents, changed)[name] = value
        path.write_text(yaml.safe_dump(changed, sort_keys=False), encoding="utf-8")
    try:
        yield
    finally:
        path.write_text(original, encoding="utf-8")


def xgb_params(project: Path, settings: dict[str, Any]) -> contextlib.AbstractContextManager:
    """params.yaml of the copy with these train.xgb settings (restored afterwards)."""
    return edited_params(project, {f"train.xgb.{k}": v for k, v in settings.items()})


def train_device(project: Path, device: str | None) -> contextlib.AbstractContextManager[None]:
    """params.yaml of the copy with train.xgb.device set (restored afterwards)."""
    return xgb_params(project, {"device": device} if device else {})


def parse_sweep(text: str) -> list[dict[str, Any]]:
    """--train-sweep 'a=1,2;b=x' -> [{'a': 1}, {'a': 2}, {'b': 'x'}]: one setting changed at a
    time, the others as params.yaml has them."""
    configs = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, _, values = part.partition("=")
        if not key.strip() or not values.strip():
            raise UserError(f"--train-sweep: {part!r} is not KEY=VALUE[,VALUE...]")
        configs += [{key.strip(): yaml.safe_load(v)} for v in values.split(",")]
    return configs


def sweep_train(
    stages: dict[str, dict[str, Any]], project: Path, logs: Path, configs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Train (timed) and evaluate once per setting, params.yaml's last (so the copy ends as
    dvc.lock has it): eval ROC AUC against train time, the curve a setting is chosen from."""
    rows = []
    for i, config in enumerate([*configs, {}]):
        label = ", ".join(f"{k}={v}" for k, v in config.items()) or "params.yaml"
        with xgb_params(project, config):
            run = measure(stages["train"]["cmd"], project, logs / f"sweep-{i + 1}-train.log")
            measure(stages["evaluate"]["cmd"], project, logs / f"sweep-{i + 1}-evaluate.log")
        scores = json.loads((project / EVAL_METRICS).read_text(encoding="utf-8"))
        fit = json.loads((project / MODEL / INFO).read_text(encoding="utf-8"))["fit"]
        rows.append(
            {
                "settings": label,
                "train_s": run["wall_s"],
                "trees": fit["best_iteration"] + 1,
                "roc_auc": scores["roc_auc"],
                "valid_roc_auc": scores["valid_roc_auc"],
            }
        )
        log.info(
            "sweep %-24s train %6.1f s, %3d trees, ROC AUC %.4f",
            label,
            run["wall_s"],
            rows[-1]["trees"],
            scores["roc_auc"],
        )
    return rows


# ---------------------------------------------------------------------------------------------
# The benchmark


def time_stage(
    name: str,
    stage: dict[str, Any],
    project: Path,
    logs: Path,
    repeat: int,
    once_over: float,
    label: str | None = None,
) -> dict[str, Any]:
    """Run one stage's cmd (repeated when fast); medians, inputs read, rows, floor."""
    label = label or name
    runs = [measure(stage["cmd"], project, logs / f"{label}-1.log")]
    while len(runs) < repeat and runs[0]["wall_s"] < once_over:
        runs.append(measure(stage["cmd"], project, logs / f"{label}-{len(runs) + 1}.log"))
    inputs, outputs = stage_inputs(project, stage), data_files(project, stage["outs"])
    result = {
        "cmd": stage["cmd"],
        "runs": runs,
        "wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
        "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "inputs": {str(p.relative_to(project)): count_rows(p) for p in inputs},
        "outputs": {str(p.relative_to(project)): count_rows(p) for p in outputs},
    }
    result["rows_in"] = sum(result["inputs"].values())
    result["rows_out"] = sum(result["outputs"].values())
    # A data stage reads tables and writes tables, or only checks raw CSVs (validate): it is
    # held to a bare read of its inputs and a bare write of its output tables.
    written = any(p.suffix == ".parquet" for p in outputs)
    result["data_stage"] = bool(inputs) and (written or all(p.suffix == ".csv" for p in inputs))
    floor = ""
    if result["data_stage"]:
        result.update(io_floor(inputs, outputs, repeat, project))
        result["x_floor"] = round(result["wall_s"] / max(result["floor_s"], 1e-3), 2)
        floor = (
            f"  floor {result['floor_s']:.2f} s (read {result['floor_read_s']:.2f} + write "
            f"{result['floor_write_s']:.2f}), x{result['x_floor']}"
        )
    log.info(
        "%-12s %7.1f s wall %7.1f s CPU %7.0f MiB  (%d run%s)%s",
        *(label, result["wall_s"], result["cpu_s"], result["peak_rss_mib"], len(runs)),
        *("s" * (len(runs) > 1), floor),
    )
    return result


def time_dvc(project: Path, logs: Path, repeat: int) -> dict[str, Any]:
    """`dvc add data`, then a full `dvc repro`, then no-op ones (median)."""
    add = measure("dvc add data --quiet", project, logs / "dvc-add.log")
    log.info("dvc add data: %.1f s", add["wall_s"])
    full = measure("dvc repro", project, logs / "dvc-repro.log")
    log.info("dvc repro (all stages): %.1f s", full["wall_s"])
    noop = [measure("dvc repro", project, logs / f"dvc-noop-{i + 1}.log") for i in range(repeat)]
    if "Running stage" in (logs / "dvc-noop-1.log").read_text(errors="replace"):
        raise UserError(f"a second `dvc repro` ran stages again; see {logs / 'dvc-noop-1.log'}")
    noop_s = round(statistics.median(r["wall_s"] for r in noop), 3)
    # DVC's own start-up (CLI, finding the repository), which no pipeline goes below: the
    # yardstick of the no-op.
    startup = [measure("dvc root", project, logs / f"dvc-root-{i + 1}.log") for i in range(repeat)]
    startup_s = round(statistics.median(r["wall_s"] for r in startup), 3)
    log.info("dvc repro (nothing to do): %.2f s; dvc root (start-up): %.2f s", noop_s, startup_s)
    return {"add": add, "repro": full, "noop_runs": noop, "noop_s": noop_s, "startup_s": startup_s}


def tree_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 where there is none)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def version_bytes(project: Path, stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What one data version stores in the DVC cache, hence on the remote and in every pull:
    the raw data, each stage's cached outputs, and of those the intermediates (clean_data/)."""
    by_stage = {
        name: {out: tree_bytes(project / out) for out in stage["cached"]}
        for name, stage in stages.items()
    }
    outs = {out: size for sizes in by_stage.values() for out, size in sizes.items()}
    return {
        "data": tree_bytes(project / "data"),
        "stages": {name: sum(sizes.values()) for name, sizes in by_stage.items()},
        "intermediates": sum(n for out, n in outs.items() if out.startswith("clean_data/")),
        "outs": outs,
        "cache": tree_bytes(project / ".dvc" / "cache"),
    }


@contextlib.contextmanager
def loopback_s3(store_bytes: int) -> Iterator[dict[str, str]]:
    """tools/s3-server.sh on free loopback ports, its store (RAM) sized for `store_bytes`; the
    environment cd4ml.remote reads (endpoint, bucket, keys). Stopped and deleted afterwards."""
    if shutil.which("radosgw") is None:
        raise UserError("Ceph radosgw is not installed: run `make system-deps` (or --no-transfer)")
    # Ceph's unix sockets need a short path: a temp folder of its own.
    with tempfile.TemporaryDirectory(prefix="cd4ml-s3-") as where:
        yield from _loopback_s3(Path(where) / "server", store_bytes)


def _loopback_s3(where: Path, store_bytes: int) -> Iterator[dict[str, str]]:
    port, mon_port = free_ports(2)
    keys = {"AWS_ACCESS_KEY_ID": "cd4ml-bench", "AWS_SECRET_ACCESS_KEY": "cd4ml-bench-secret"}
    server = {
        **keys,
        "S3_SERVER_DIR": str(where),
        "S3_PORT": str(port),
        "S3_MON_PORT": str(mon_port),
        "S3_BUCKET": "cd4ml-bench",
        "S3_PYTHON": sys.executable,
        # Objects live in the OSD's memory: room for the version and a margin.
        "S3_STORE_MB": str(store_bytes * 3 // 2 // 2**20 + 512),
    }
    script = str(ROOT / "tools" / "s3-server.sh")
    env = {**os.environ, **server}
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True)
    try:
        if started.returncode != 0:
            raise UserError(f"the loopback S3 server did not start:\n{started.stderr[-2000:]}")
        yield {**keys, "S3_ENDPOINT": f"http://127.0.0.1:{port}", "S3_BUCKET": "cd4ml-bench"}
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, check=False)


def time_transfer(
    project: Path, stages: dict[str, dict[str, Any]], logs: Path, s3: dict[str, str]
) -> dict[str, Any]:
    """`dvc push` of the version into an empty bucket, then `dvc pull` of it into the state of a
    fresh clone (no cache, no data, no outputs), both through cd4ml.remote; the pulled
    workspace must be up to date (`dvc status`)."""
    push = measure(
        f"{shlex.quote(sys.executable)} -m cd4ml.remote push", project, logs / "dvc-push.log", s3
    )
    log.info("dvc push: %.1f s", push["wall_s"])
    shutil.rmtree(project / ".dvc" / "cache")
    for out in ["data", *(out for stage in stages.values() for out in stage["cached"])]:
        _remove(project / out)
    pull = measure(
        f"{shlex.quote(sys.executable)} -m cd4ml.remote pull", project, logs / "dvc-pull.log", s3
    )
    log.info("dvc pull: %.1f s", pull["wall_s"])
    status = dvc("status", "--json", cwd=project)
    if status.returncode != 0 or json.loads(status.stdout or "{}"):
        raise UserError(f"after `dvc pull` the workspace is not up to date: {status.stdout[:500]}")
    return {"push": push, "pull": pull}


def last_share(share: float) -> Callable[[int], list[int]]:
    """Row boundaries (for chunks.write_chunks) of two chunks: the rows before the last `share`
    of them, and that share (at least one row each)."""

    def cuts(n_rows: int) -> list[int]:
        if n_rows < 2:
            raise UserError(f"--ingest: train.csv has {n_rows} row(s); two chunks need two")
        return [0, n_rows - min(n_rows - 1, max(1, round(n_rows * share))), n_rows]

    return cuts


def time_ingest(
    project: Path, stages: dict[str, dict[str, Any]], logs: Path, share: float
) -> dict[str, Any]:
    """One more chunk, as the daily data job brings it: data/ restarted with train.csv's rows
    before its last `share` (and their truth) and reproduced, then that share ingested from an
    incoming folder (`python -m cd4ml.ingest`, what `make ingest` runs) and the `dvc repro`
    after it timed, with the stages it reran and how many of the training rows that both runs
    featurise got other features (what a rerun could have kept)."""
    data = project / "data"
    incoming = project.parent / f"incoming-{project.name}"
    shutil.rmtree(incoming, ignore_errors=True)
    contract = params.problem(project / "params.yaml").contract
    chunks.restart(data, open_incoming(str(incoming)), last_share(share), contract)
    # The run cache holds the stages' runs on all the rows (time_dvc), which the ingest makes
    # again: DVC would restore them instead of running. A real chunk is new data.
    shutil.rmtree(project / ".dvc" / "cache" / "runs", ignore_errors=True)
    before = measure("dvc repro", project, logs / "ingest-before-repro.log")
    log.info("dvc repro of the history before the chunk: %.1f s", before["wall_s"])
    python = shlex.quote(sys.executable)
    cmd = f"{python} -m cd4ml.ingest --incoming {shlex.quote(str(incoming))} --data data"
    ingest = measure(cmd, project, logs / "ingest.log")
    features = project / "clean_data" / "features" / "train.parquet"  # the fit rows
    kept = project.parent / f"features-before-{project.name}.parquet"
    if features.exists():
        shutil.copyfile(features, kept)
    rerun = measure("dvc repro", project, logs / "ingest-repro.log")
    changed = changed_rows(kept, features) if kept.exists() and features.exists() else None
    kept.unlink(missing_ok=True)
    ran = re.findall(r"Running stage '([^']+)'", (logs / "ingest-repro.log").read_text())
    log.info(
        "ingest: %.1f s; dvc repro after it: %.1f s, %d stage(s) rerun",
        ingest["wall_s"],
        rerun["wall_s"],
        len(ran),
    )
    shutil.rmtree(incoming, ignore_errors=True)
    entries = ingestion.read_manifest(data)["chunks"]
    return {
        "share": share,
        "rows_before": entries[0]["rows"],
        "rows_new": entries[-1]["rows"],
        "repro_before": before,
        "ingest": ingest,
        "rerun": rerun,
        "rerun_stages": ran,
        "stages": len(stages),
        "features_changed": changed,
    }


def changed_rows(before: Path, after: Path) -> dict[str, Any]:
    """How the features of the rows that two feature files both have (the first ones) differ:
    the share of those rows with any feature changed, and the share for each feature."""
    first, second = pq.ParquetFile(before), pq.ParquetFile(after)
    n = min(first.metadata.num_rows, second.metadata.num_rows)
    any_changed = np.zeros(n, dtype=bool)
    by_feature = {}
    for name in first.schema_arrow.names:
        if name == "target":
            continue
        x = first.read([name])[name].to_numpy()[:n]
        y = second.read([name])[name].to_numpy()[:n]
        changed = x != y
        if x.dtype.kind == "f":
            changed &= ~(np.isnan(x) & np.isnan(y))
        by_feature[name] = round(float(changed.mean()), 4) if n else 0.0
        any_changed |= changed
    share = round(float(any_changed.mean()), 4) if n else 0.0
    return {"rows": n, "changed": share, "by_feature": by_feature}


def _proc_value(path: str, key: str) -> str | None:
    """The value after `key:` in a /proc file such as /proc/cpuinfo; None where it has none."""
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_kib = _proc_value("/proc/meminfo", "MemTotal")
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
        gpu = subprocess.run(query, capture_output=True, text=True).stdout.strip() or None
    libraries = provenance.library_versions()
    return {
        "cpu": _proc_value("/proc/cpuinfo", "model name") or "unknown",
        "nproc": nproc,
        "ram_gib": round(int(mem_kib.split()[0]) / 2**20, 1) if mem_kib else 0.0,
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": provenance.python_version(),
        "libraries": {name: version for name, version in libraries.items() if version},
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def _chosen(args: argparse.Namespace, stages: dict[str, dict[str, Any]]) -> list[str]:
    """The stages --stages names (default: all of them)."""
    chosen = [s for s in args.stages.split(",") if s] or list(stages)
    unknown = sorted(set(chosen) - set(stages))
    if unknown:
        raise UserError(f"--stages: no stage {unknown} in dvc.yaml; it has {list(stages)}")
    return chosen


def _time_stages(
    args: argparse.Namespace,
    stages: dict[str, dict[str, Any]],
    chosen: list[str],
    project: Path,
    logs: Path,
) -> dict[str, Any]:
    """Time the chosen stages (train once per --device); the stages before them run untimed."""
    devices = [d for d in args.device.split(",") if d]
    last = max(list(stages).index(s) for s in chosen)
    timed: dict[str, Any] = {}
    for name, stage in list(stages.items())[: last + 1]:
        if name not in chosen:  # an earlier stage the chosen ones need: run once, untimed
            log.info("%-12s (setup run)", name)
            measure(stage["cmd"], project, logs / f"{name}-setup.log")
            continue
        for device in devices if name == "train" and devices else [None]:
            label = f"{name}[{device}]" if device else name
            with train_device(project, device):
                try:
                    timed[label] = time_stage(
                        name, stage, project, logs, args.repeat, args.once_over, label
                    )
                except UserError as err:
                    if not device:
                        raise
                    # One device failing (no GPU) must not lose the other's timing.
                    log.error("%s failed: %s", label, str(err).splitlines()[-1])
                    timed[label] = {"error": str(err).splitlines()[-1]}
    return timed


ENGINE_STAGES = ("preprocess", "train")
FEATURES = ("train.parquet", "valid.parquet", "eval.parquet")
SPLIT = ("train.parquet", "valid.parquet", "eval.parquet", "eval_truth.parquet")


def engine_env(workers: int) -> dict[str, str]:
    """The environment that picks the engine of a stage (cd4ml.engine): local for 0 workers,
    else dask (the cluster's address and scratch come with it)."""
    return {engine.ENGINE: "dask" if workers else "local"}


def _worker_counters() -> Callable[[Any], dict[str, int]]:
    """What a worker runs to tell the bytes it has sent to other workers and to clients, and
    spilled to disk."""

    # A nested function travels by value: the workers cannot import tools/ (not installed).
    def counters(dask_worker: Any) -> dict[str, int]:
        spill = getattr(dask_worker.data, "cumulative_metrics", {})
        return {
            "sent": int(dask_worker.transfer_outgoing_bytes_total),
            "spilled": int(spill.get(("disk-write", "bytes"), 0)),
        }

    return counters


def replicate_split(split: Path, times: int) -> None:
    """The split's parts `times` over, row group by row group (the same members and songs, so
    N x the plays with the statistics of one copy): what the dask engine's bench scales with."""
    for name in SPLIT:
        path = split / name
        source = pq.ParquetFile(path)
        with atomic_path(path) as tmp:
            writer = pq.ParquetWriter(
                tmp, source.schema_arrow, compression="zstd", **io.REPEATED_IDS_PARQUET
            )
            for _ in range(times):
                for group in range(source.num_row_groups):
                    writer.write_table(source.read_row_group(group))
            writer.close()
        log.info("%s: %d rows, %d times over", path, source.metadata.num_rows, times)


def _s3_client(s3: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3["S3_ENDPOINT"],
        aws_access_key_id=s3["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def _drain(client: Any, bucket: str, prefix: str) -> int:
    """Delete every object under prefix; the bytes they held."""
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        items = page.get("Contents", [])
        total += sum(item["Size"] for item in items)
        if items:
            keys = [{"Key": item["Key"]} for item in items]
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    return total


def time_on_cluster(
    stage: dict[str, Any],
    project: Path,
    work: Path,
    label: str,
    workers: int,
    memory_limit: str,
    s3: dict[str, str] | None,
) -> dict[str, Any]:
    """One run of a stage with the dask engine on a fresh loopback cluster and scratch prefix
    (on S3, or in a folder without `s3`): wall time, workers' peak memory, bytes staged and
    sent between Dask processes and spilled to disk."""
    import distributed

    threads = max(1, machine()["nproc"] // workers)
    where = work / "dask" / label
    shutil.rmtree(where, ignore_errors=True)
    # The workers import the copy's code, as its stages do (`python src/<stage>.py`): not the
    # installed checkout's, which may have changed since the copy was made.
    path = os.pathsep.join(filter(None, [str(project / "src"), os.environ.get("PYTHONPATH")]))
    found = daskcluster.start(where, workers, memory_limit, threads, env={"PYTHONPATH": path})
    prefix = f"scratch-{label}"
    folder = work / "dask" / prefix
    scratch = f"s3://{s3['S3_BUCKET']}/{prefix}" if s3 else str(folder)
    env = {
        **(s3 or {}),
        **engine_env(workers),
        cluster.SCHEDULER: found.address,
        "DASK_SCRATCH": scratch,
    }
    try:
        run = measure(stage["cmd"], project, work / "logs" / f"{label}.log", env)
        run["worker_peak_rss_mib"] = found.peak_rss_mib()
        with distributed.Client(found.address, timeout=10) as client:
            counters = client.run(_worker_counters()).values()
        run["dask_transfer_bytes"] = sum(c["sent"] for c in counters)
        run["spilled_bytes"] = sum(c["spilled"] for c in counters)
    finally:
        found.stop()
    if s3:
        run["staged_bytes"] = _drain(_s3_client(s3), s3["S3_BUCKET"], prefix)
    else:
        run["staged_bytes"] = tree_bytes(folder)
        shutil.rmtree(folder, ignore_errors=True)
    run.update(workers=workers, threads_per_worker=threads)
    return run


def time_engines(
    args: argparse.Namespace, stages: dict[str, dict[str, Any]], project: Path, work: Path
) -> dict[str, Any]:
    """preprocess and train on the local engine (--workers 0) and on clusters of each other
    --workers size: medians of --repeat runs (one for a stage over --once-over), then
    evaluate's ROC AUC. An engine that fails (out of memory) is recorded as failed."""
    logs = work / "logs" / f"engines-{args.scale}"
    order = list(stages)
    for name in order[: order.index("preprocess")]:
        log.info("%-12s (setup run)", name)
        measure(stages[name]["cmd"], project, logs / f"{name}-setup.log")
    if args.replicate > 1:
        replicate_split(project / "clean_data" / "split", args.replicate)
    inputs = sum(tree_bytes(p) for p in stage_inputs(project, stages["preprocess"]))
    trees = {"train.xgb.n_estimators": args.trees} if args.trees else {}
    engines: dict[str, Any] = {}
    scratch = loopback_s3(3 * inputs) if args.scratch == "s3" else contextlib.nullcontext()
    with scratch as s3:
        for workers in (int(n) for n in args.workers.split(",") if n):
            label = f"dask-{workers}" if workers else "local"
            with edited_params(project, trees):
                try:
                    engines[label] = _time_engine(args, stages, project, work, workers, s3)
                except UserError as err:
                    log.error("%s failed: %s", label, str(err).splitlines()[0])
                    engines[label] = {"error": str(err).splitlines()[0]}
    done = {name: result for name, result in engines.items() if "error" not in result}
    local = done.get("local") or next(iter(done.values()), None)
    for result in done.values():
        result["same_features"] = result["features_md5"] == local["features_md5"]
        result["auc_difference"] = round(result["roc_auc"] - local["roc_auc"], 5)
        for name in ENGINE_STAGES:
            result[name]["x_local"] = round(result[name]["wall_s"] / local[name]["wall_s"], 2)
    return engines


def _time_engine(
    args: argparse.Namespace,
    stages: dict[str, dict[str, Any]],
    project: Path,
    work: Path,
    workers: int,
    s3: dict[str, str] | None,
) -> dict[str, Any]:
    """One engine's preprocess and train runs, then evaluate (untimed) for its ROC AUC."""
    which = f"dask-{workers}" if workers else "local"
    logs = work / "logs" / f"engines-{args.scale}"
    result: dict[str, Any] = {}
    for name in ENGINE_STAGES:
        runs: list[dict[str, Any]] = []
        while len(runs) < args.repeat and (not runs or runs[0]["wall_s"] < args.once_over):
            label = f"{which}-{name}-{len(runs) + 1}"
            if workers:
                memory = args.memory_limit
                runs.append(
                    time_on_cluster(stages[name], project, work, label, workers, memory, s3)
                )
            else:
                cmd = stages[name]["cmd"]
                runs.append(measure(cmd, project, logs / f"{label}.log", engine_env(0)))
        result[name] = _engine_summary(runs)
        log.info(
            "%-8s %-10s %7.1f s wall %7.0f MiB client  (%d runs)",
            *(which, name, result[name]["wall_s"], result[name]["peak_rss_mib"], len(runs)),
        )
    ran = json.loads((project / MODEL / INFO).read_text(encoding="utf-8")).get("engine")
    if ran != engine_env(workers)[engine.ENGINE]:
        raise UserError(f"{which}: train ran on the {ran} engine ({project / MODEL / INFO})")
    measure(stages["evaluate"]["cmd"], project, logs / f"{which}-evaluate.log")
    scores = json.loads((project / EVAL_METRICS).read_text(encoding="utf-8"))
    result["roc_auc"] = scores["roc_auc"]
    features = project / "clean_data" / "features"
    result["features_md5"] = {name: io.md5(features / name) for name in FEATURES}
    return result


def _engine_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs (peaks: the largest); the runs themselves."""
    summary = {
        "runs": runs,
        "wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
    }
    if "worker_peak_rss_mib" in runs[0]:
        summary["worker_peak_rss_mib"] = max(max(r["worker_peak_rss_mib"]) for r in runs)
        for key in ("staged_bytes", "dask_transfer_bytes", "spilled_bytes"):
            summary[key] = int(statistics.median(r[key] for r in runs))
        summary["workers"], summary["threads_per_worker"] = (
            runs[0]["workers"],
            runs[0]["threads_per_worker"],
        )
    return summary


def main(argv: list[str] | None = None) -> None:
    """Benchmark one scale and write results.json and results.md into --out."""
    args = parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    settings = generate_settings()
    results: dict[str, Any] = {
        "scale": args.scale,
        "rows": vars(synth.SCALES[args.scale]),
        "repeat": args.repeat,
        "once_over": args.once_over,
        "machine": machine(),
    }
    data, results["generate"] = ensure_data(work, args.scale, settings, args.regenerate)
    if args.engine == "dask":
        project = copy_project(work / f"engines-{args.scale}", data, with_dvc=False)
        results["engines"] = time_engines(args, load_stages(project), project, work)
        results["replicate"], results["memory_limit"] = args.replicate, args.memory_limit
        results["trees"], results["scratch"] = args.trees or None, args.scratch
        results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        times = f"-x{args.replicate}" if args.replicate > 1 else ""
        write_results(args.out, f"dask-{args.scale}{times}", results, engines_markdown(results))
        return
    results["engine"] = engine.name()  # the stages run where the environment chooses
    project = copy_project(work / f"project-{args.scale}", data, with_dvc=not args.no_repro)
    logs = work / "logs" / args.scale
    shutil.rmtree(logs, ignore_errors=True)
    stages = load_stages(project)
    chosen = _chosen(args, stages)
    results["stages"] = _time_stages(args, stages, chosen, project, logs)
    if not args.no_baseline and {"validate", "split", "preprocess"} <= set(chosen):
        results["pandas_baseline"] = time_pandas_baseline(project, logs)
    metrics = project / EVAL_METRICS
    if metrics.exists():
        scores = json.loads(metrics.read_text(encoding="utf-8"))
        results["auc"] = {k: scores.get(k) for k in ("roc_auc", "oracle_roc_auc")}
    if not args.no_repro and set(chosen) == set(stages):
        results["dvc"] = time_dvc(project, logs, args.repeat)
        results["storage"] = version_bytes(project, stages)
        if not args.no_transfer:
            with loopback_s3(results["storage"]["cache"]) as s3:
                results["transfer"] = time_transfer(project, stages, logs, s3)
        if args.ingest:
            results["ingest"] = time_ingest(project, stages, logs, args.ingest)
    if args.train_sweep:
        results["train_sweep"] = sweep_train(stages, project, logs, parse_sweep(args.train_sweep))
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["stage_order"] = list(results["stages"])  # results.json sorts its keys
    results["machine"]["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    results["targets"] = check_targets(results)
    write_results(args.out, "results", results, markdown(results))


def write_results(out: Path, stem: str, results: dict, report: str) -> None:
    """<out>/<stem>.json and the Markdown report <out>/<stem>.md (also printed)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(results, out / f"{stem}.json")
    with atomic_path(out / f"{stem}.md") as tmp:
        tmp.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    log.info("wrote %s and %s", out / f"{stem}.json", out / f"{stem}.md")


if __name__ == "__main__":
    run_main(main)
