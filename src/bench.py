"""Benchmark the pipeline at one data scale: every stage of dvc.yaml, its read floor, dvc repro.

In a throw-away copy of the project (in --work) it makes the data of the scale (once; timed),
runs each stage's exact `cmd` from dvc.yaml and records its wall time, CPU time (user + sys)
and peak RSS (from the child's own rusage, os.wait4), the rows it read and wrote; stages under
a minute run --repeat times and the median counts. For the data stages it also times a bare
multi-threaded pyarrow read of the files the stage opened (seen with inotify): the floor. Then
`dvc add data`, a full `dvc repro` and no-op ones. Results: <out>/results.json and results.md.

GPU machine: `python src/bench.py --scale full --stages train --device cuda,cpu --out DIR`
times train on each device, on the same data and machine.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kkbox import params, synth
from kkbox.io import UserError, atomic_path, run_main, write_json

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]
DATA_SUFFIXES = (".csv", ".parquet")
# Targets of the pipeline at Kaggle's full scale on a 2-core machine (issue 6).
TARGETS = {
    "generate_s": 90.0,
    "split_x_floor": 2.0,
    "preprocess_x_floor": 3.0,
    "data_stage_rss_gib": 4.0,
    "train_s": 300.0,
    "evaluate_sanity_predict_s": 90.0,
    "dvc_repro_s": 480.0,
    "dvc_noop_s": 2.0,
    "auc_gap": 0.02,
}
LIBRARIES = ("numpy", "pandas", "pyarrow", "scikit-learn", "xgboost", "dvc")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=sorted(synth.SCALES), default="full")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each stage that takes under --once-over seconds",
    )
    parser.add_argument(
        "--once-over",
        type=float,
        default=60.0,
        help="a stage whose first run takes longer runs once",
    )
    parser.add_argument(
        "--stages",
        default="",
        help="stages to time, comma-separated (default: all); the stages "
        "before them run once, untimed",
    )
    parser.add_argument(
        "--device", default="", help="train.xgb.device values to time train with, e.g. cuda,cpu"
    )
    parser.add_argument("--no-repro", action="store_true", help="skip the dvc add / repro timings")
    parser.add_argument("--regenerate", action="store_true", help="make (and time) the data anew")
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / "bench" / "runs",
        help="folder for the data, the project copy and the logs",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench", help="folder for results.json and results.md"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------
# Running a command and measuring it


def _env() -> dict[str, str]:
    """The project's environment first on PATH (dvc.yaml runs `python ...`), no DVC analytics."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


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


def measure(cmd: str, cwd: Path, log_path: Path) -> dict[str, Any]:
    """Run a shell command; wall time, and the CPU time and peak RSS of that very command."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    usage_path = log_path.with_suffix(".rusage.json")
    with log_path.open("wb") as out:
        started = time.perf_counter()
        returncode = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(usage_path), cmd],
            cwd=cwd,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
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


class OpenedFiles:
    """The files opened in some folders while it is active (Linux inotify, through ctypes)."""

    _IN_OPEN = 0x20
    _IN_ISDIR = 0x40000000
    _IN_NONBLOCK = 0o4000
    _IN_CLOEXEC = 0o2000000

    def __init__(self, folders: list[Path]) -> None:
        self.fd = -1
        self.watches: dict[int, Path] = {}
        self.works = False
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self.fd = libc.inotify_init1(self._IN_NONBLOCK | self._IN_CLOEXEC)
        except (OSError, AttributeError):
            return
        for folder in folders:
            wd = libc.inotify_add_watch(self.fd, os.fsencode(folder), self._IN_OPEN)
            if wd >= 0:
                self.watches[wd] = folder
        self.works = self.fd >= 0 and bool(self.watches)

    def collect(self) -> set[Path]:
        """Files opened since the start; stops watching."""
        opened: set[Path] = set()
        if self.fd < 0:
            return opened
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            pos = 0
            while pos < len(buf):
                wd, mask, _, length = struct.unpack_from("iIII", buf, pos)
                name = buf[pos + 16 : pos + 16 + length].rstrip(b"\0")
                pos += 16 + length
                if name and not mask & self._IN_ISDIR and wd in self.watches:
                    opened.add(self.watches[wd] / os.fsdecode(name))
        os.close(self.fd)
        self.fd = -1
        return opened


# ---------------------------------------------------------------------------------------------
# The pipeline in dvc.yaml


def _paths(entries: list | None) -> list[str]:
    """Paths of a dvc.yaml deps / outs / metrics / plots list (entries are str or {path: opts})."""
    out = []
    for entry in entries or []:
        out.extend(entry if isinstance(entry, dict) else [entry])
    return [str(p) for p in out]


def load_stages(project: Path) -> dict[str, dict[str, Any]]:
    """Stages of dvc.yaml in an order that runs each after the stages it depends on."""
    with (project / "dvc.yaml").open(encoding="utf-8") as fh:
        stages = yaml.safe_load(fh)["stages"]
    info = {
        name: {
            "cmd": " ".join(str(s["cmd"]).split()),
            "deps": _paths(s.get("deps")),
            "outs": _paths(s.get("outs")) + _paths(s.get("metrics")) + _paths(s.get("plots")),
        }
        for name, s in stages.items()
    }

    def under(path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder.rstrip("/") + "/")

    order: list[str] = []
    pending = list(info)
    while pending:
        for name in pending:
            needs = {
                other
                for other in pending
                if other != name
                and any(
                    under(dep, out) for dep in info[name]["deps"] for out in info[other]["outs"]
                )
            }
            if not needs:
                order.append(name)
                pending.remove(name)
                break
        else:
            raise UserError(f"dvc.yaml: stages {pending} depend on each other in a cycle")
    return {name: info[name] for name in order}


def _data_files(project: Path, paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for rel in paths:
        path = project / rel
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in DATA_SUFFIXES))
        elif path.suffix in DATA_SUFFIXES and path.exists():
            files.append(path)
    return files


def _folders(project: Path, paths: list[str]) -> list[Path]:
    folders: set[Path] = set()
    for rel in paths:
        path = project / rel
        if path.is_dir():
            folders.add(path)
            folders.update(p for p in path.rglob("*") if p.is_dir())
        elif path.exists():
            folders.add(path.parent)
    return sorted(folders)


_ROWS: dict[tuple[str, int, int], int] = {}


def count_rows(path: Path) -> int:
    """Rows of a Parquet file (its metadata) or a CSV file (lines after the header)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _ROWS:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            _ROWS[key] = pq.ParquetFile(path).metadata.num_rows
        else:
            lines = 0
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 24):
                    lines += chunk.count(b"\n")
            _ROWS[key] = max(lines - 1, 0)
    return _ROWS[key]


_FLOOR = """
import sys, time
import pyarrow.csv as pacsv, pyarrow.parquet as pq
started = time.perf_counter()
for path in sys.argv[1:]:
    if path.endswith(".parquet"):
        pq.read_table(path, use_threads=True)
    else:
        pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=True))
print(time.perf_counter() - started)
"""


def read_floor(files: list[Path], repeat: int) -> float:
    """Median seconds of a bare multi-threaded pyarrow read of the files (all columns), timed
    inside a fresh process: the benchmark itself stays small, so that a child's peak RSS (which
    starts from its parent's at fork) is the child's own."""
    times = []
    for _ in range(repeat):
        result = subprocess.run(
            [sys.executable, "-c", _FLOOR, *map(str, files)],
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(result.stdout.strip().splitlines()[-1]))
    return round(statistics.median(times), 3)


# ---------------------------------------------------------------------------------------------
# Data and the project copy


def _fingerprint(scale: str, seed: int) -> str:
    digest = hashlib.sha256(f"{scale}:{seed}".encode())
    for rel in ("src/generate.py", "src/kkbox/synth.py", "src/kkbox/io.py"):
        digest.update((ROOT / rel).read_bytes())
    return digest.hexdigest()[:16]


def ensure_data(work: Path, scale: str, seed: int, regenerate: bool) -> tuple[Path, dict]:
    """The data of a scale in work/data-<scale>, made (and timed) unless the same code and seed
    made it before."""
    data = work / f"data-{scale}"
    record_path = work / f"data-{scale}.json"
    fingerprint = _fingerprint(scale, seed)
    if not regenerate and data.is_dir() and record_path.exists():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("fingerprint") == fingerprint:
            log.info("data: reusing %s (made in %.1f s)", data, record["wall_s"])
            return data, {**record, "cached": True}
    log.info("data: generating the %s scale into %s", scale, data)
    out = shlex.quote(str(data))
    cmd = f"python src/generate.py --scale {scale} --params params.yaml --out {out}"
    record = measure(cmd, ROOT, work / "logs" / f"generate-{scale}.log")
    record.update(
        fingerprint=fingerprint,
        seed=seed,
        cmd=cmd,
        bytes=sum(p.stat().st_size for p in data.iterdir()),
    )
    write_json(record, record_path)
    log.info(
        "data: %.1f s wall, %.1f s CPU, %.0f MiB peak",
        record["wall_s"],
        record["cpu_s"],
        record["peak_rss_mib"],
    )
    return data, {**record, "cached": False}


def _project_files() -> list[str]:
    """This repository's files (tracked and new, not ignored); without git (a bare GPU machine),
    every file but the environment, the caches and the pipeline's data."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout.decode()
        return [rel for rel in listed.split("\0") if rel]
    except (OSError, subprocess.CalledProcessError):
        top = {
            ".git",
            ".venv",
            ".tools",
            "bench",
            "data",
            "clean_data",
            "models",
            "metrics",
            "plots",
            "predictions",
        }
        anywhere = {"__pycache__", ".pytest_cache", ".ruff_cache", "cache", "tmp"}
        files = []
        for folder, dirs, names in os.walk(ROOT):
            rel = Path(folder).relative_to(ROOT)
            skip = anywhere | (top if rel == Path() else set())
            dirs[:] = [d for d in dirs if d not in skip]
            files.extend((rel / name).as_posix() for name in names)
        return files


def copy_project(dest: Path, data: Path, with_dvc: bool = True) -> Path:
    """A fresh project (a git repository for DVC) with this repository's files, no pipeline
    outputs, and data/ hard-linked from the generated data."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in _project_files():
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for stage in load_stages(dest).values():
        for out in stage["outs"]:
            target = dest / out
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    shutil.rmtree(dest / "data", ignore_errors=True)
    (dest / "data").mkdir()
    for path in data.iterdir():
        try:
            os.link(path, dest / "data" / path.name)
        except OSError:
            shutil.copy2(path, dest / "data" / path.name)
    if with_dvc:
        git = {
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@cd4ml-kkbox.invalid",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@cd4ml-kkbox.invalid",
        }
        for cmd in (
            ["git", "init", "-q", "-b", "main"],
            ["git", "add", "-A"],
            ["git", "commit", "-qm", "benchmark copy"],
        ):
            subprocess.run(cmd, cwd=dest, env={**_env(), **git}, check=True, capture_output=True)
    return dest


@contextlib.contextmanager
def train_device(project: Path, device: str | None) -> Iterator[None]:
    """params.yaml of the copy with train.xgb.device set (restored afterwards)."""
    path = project / "params.yaml"
    original = path.read_text(encoding="utf-8")
    if device:
        params = yaml.safe_load(original)
        params["train"]["xgb"]["device"] = device
        path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    try:
        yield
    finally:
        path.write_text(original, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The benchmark


def time_stage(
    name: str,
    stage: dict,
    project: Path,
    logs: Path,
    repeat: int,
    once_over: float,
    label: str | None = None,
) -> dict[str, Any]:
    """Run one stage's cmd (repeated when fast); medians, inputs read, rows, floor."""
    label = label or name
    watcher = OpenedFiles(_folders(project, stage["deps"]))
    runs = [measure(stage["cmd"], project, logs / f"{label}-1.log")]
    opened = watcher.collect()
    while len(runs) < repeat and runs[0]["wall_s"] < once_over:
        runs.append(measure(stage["cmd"], project, logs / f"{label}-{len(runs) + 1}.log"))
    outputs = _data_files(project, stage["outs"])
    if watcher.works:
        inputs = sorted(p for p in opened if p.suffix in DATA_SUFFIXES and p not in outputs)
    else:  # no inotify: every data file under the stage's deps
        inputs = _data_files(project, stage["deps"])
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
    # A data stage reads tables and writes tables: it is held to a bare read of its inputs.
    result["data_stage"] = bool(inputs) and any(p.suffix == ".parquet" for p in outputs)
    if result["data_stage"]:
        result["floor_s"] = read_floor(inputs, repeat)
        result["x_floor"] = round(result["wall_s"] / max(result["floor_s"], 1e-3), 2)
    log.info(
        "%-12s %7.1f s wall %7.1f s CPU %7.0f MiB  (%d run%s)%s",
        label,
        result["wall_s"],
        result["cpu_s"],
        result["peak_rss_mib"],
        len(runs),
        "s" * (len(runs) > 1),
        f"  floor {result['floor_s']:.2f} s, x{result['x_floor']}" if "floor_s" in result else "",
    )
    return result


def time_dvc(project: Path, logs: Path, repeat: int) -> dict[str, Any]:
    """`dvc add data`, then a full `dvc repro`, then no-op ones (median)."""
    add = measure("dvc add data --quiet", project, logs / "dvc-add.log")
    log.info("dvc add data: %.1f s", add["wall_s"])
    full = measure("dvc repro", project, logs / "dvc-repro.log")
    log.info("dvc repro (all stages): %.1f s", full["wall_s"])
    noop = [measure("dvc repro", project, logs / f"dvc-noop-{i + 1}.log") for i in range(repeat)]
    noop_log = (logs / "dvc-noop-1.log").read_text(errors="replace")
    if "Running stage" in noop_log:
        raise UserError(f"a second `dvc repro` ran stages again; see {logs / 'dvc-noop-1.log'}")
    result = {
        "add": add,
        "repro": full,
        "noop_runs": noop,
        "noop_s": round(statistics.median(r["wall_s"] for r in noop), 3),
    }
    log.info("dvc repro (nothing to do): %.2f s", result["noop_s"])
    return result


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu
        )
    ram = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as fh:
        ram = next(
            (int(line.split()[1]) / 2**20 for line in fh if line.startswith("MemTotal")), ram
        )
    gpu = None
    if shutil.which("nvidia-smi"):
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        gpu = query.stdout.strip() or None
    libraries = {}
    for lib in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            libraries[lib] = importlib.metadata.version(lib)
    return {
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "ram_gib": round(ram, 1),
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": libraries,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 6 with the measured value and whether it is met."""
    stages = results["stages"]
    checks = []

    def add(name: str, value: float | None, limit: float, unit: str) -> None:
        if value is not None:
            checks.append(
                {
                    "target": name,
                    "value": round(value, 4),
                    "limit": limit,
                    "unit": unit,
                    "met": value <= limit,
                }
            )

    if not results["generate"].get("cached"):
        add("generate data", results["generate"]["wall_s"], TARGETS["generate_s"], "s")
    for stage in ("split", "preprocess"):
        if "x_floor" in stages.get(stage, {}):
            add(
                f"{stage} / read floor", stages[stage]["x_floor"], TARGETS[f"{stage}_x_floor"], "x"
            )
    data_rss = [s["peak_rss_mib"] for s in stages.values() if s.get("data_stage")]
    if data_rss:
        add("peak RSS of a data stage", max(data_rss) / 1024, TARGETS["data_stage_rss_gib"], "GiB")
    for label, stage in stages.items():
        if (label == "train" or label.startswith("train[")) and "wall_s" in stage:
            add(f"{label}", stage["wall_s"], TARGETS["train_s"], "s")
    tail = [stages[s]["wall_s"] for s in ("evaluate", "sanity", "predict") if s in stages]
    if tail:
        add("evaluate + sanity + predict", sum(tail), TARGETS["evaluate_sanity_predict_s"], "s")
    if results.get("dvc"):
        add(
            "dvc repro (all stages)",
            results["dvc"]["repro"]["wall_s"],
            TARGETS["dvc_repro_s"],
            "s",
        )
        add("dvc repro (nothing to do)", results["dvc"]["noop_s"], TARGETS["dvc_noop_s"], "s")
    auc = results.get("auc") or {}
    if auc.get("oracle_roc_auc") is not None:
        add(
            "ROC AUC gap to the oracle",
            auc["oracle_roc_auc"] - auc["roc_auc"],
            TARGETS["auc_gap"],
            "",
        )
    return checks


def _rows(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n:,}"


def markdown(results: dict[str, Any]) -> str:
    """A README-ready report: machine, per-stage table, dvc, targets."""
    m = results["machine"]
    gen = results["generate"]
    lines = [
        f"### Benchmark: {results['scale']} scale "
        f"({_rows(results['rows']['train'])} train rows, {_rows(results['rows']['test'])} test "
        f"rows, {_rows(results['rows']['songs'])} songs, {results['rows']['members']:,} members)",
        "",
        f"Machine: {m['cpu']}, `nproc` {m['nproc']}, {m['ram_gib']} GiB RAM"
        + (f", GPU {m['gpu']}" if m["gpu"] else "")
        + f"; {m['os']}, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
        + f". Load average (other work on the machine) at start {m['load_average_start']}, "
        f"at end {m.get('load_average_end')}; OMP_WAIT_POLICY={m.get('omp_wait_policy')}.",
        "",
        f"Stages run as `dvc.yaml` runs them; median of up to {results['repeat']} runs (stages "
        f"over {results['once_over']:.0f} s run once). CPU = user + sys of the stage's process; "
        "floor = a bare multi-threaded pyarrow read of the files the stage read.",
        "",
        "| step | wall s | CPU s | peak RSS MiB | rows in → out | read floor s | × floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| generate data{' (cached)' if gen.get('cached') else ''} | {gen['wall_s']:.1f} "
        f"| {gen['cpu_s']:.1f} | {gen['peak_rss_mib']:.0f} | → "
        f"{gen.get('bytes', 0) / 2**30:.2f} GiB CSV | | |",
    ]
    for label in results.get("stage_order", results["stages"]):
        s = results["stages"][label]
        if "error" in s:
            lines.append(f"| {label} | failed: {s['error']} | | | | | |")
            continue
        floor = f"{s['floor_s']:.2f} | {s['x_floor']:.1f}" if "floor_s" in s else " | "
        lines.append(
            f"| {label} ({len(s['runs'])}×) | {s['wall_s']:.1f} | {s['cpu_s']:.1f} "
            f"| {s['peak_rss_mib']:.0f} | {_rows(s['rows_in'])} → {_rows(s['rows_out'])} "
            f"| {floor} |"
        )
    if results.get("dvc"):
        d = results["dvc"]
        lines += [
            f"| `dvc add data` | {d['add']['wall_s']:.1f} | {d['add']['cpu_s']:.1f} "
            f"| {d['add']['peak_rss_mib']:.0f} | | | |",
            f"| `dvc repro` (all stages) | {d['repro']['wall_s']:.1f} "
            f"| {d['repro']['cpu_s']:.1f} | {d['repro']['peak_rss_mib']:.0f} | | | |",
            f"| `dvc repro` (nothing to do, {len(d['noop_runs'])}×) | {d['noop_s']:.2f} "
            f"| {statistics.median(r['cpu_s'] for r in d['noop_runs']):.1f} | | | | |",
        ]
    auc = results.get("auc") or {}
    if auc.get("roc_auc") is not None:
        oracle = auc.get("oracle_roc_auc")
        lines += [
            "",
            f"Eval ROC AUC {auc['roc_auc']:.4f}"
            + (f", oracle {oracle:.4f} (gap {oracle - auc['roc_auc']:.4f})" if oracle else ""),
        ]
    if results["targets"]:
        lines += [
            "",
            "| target (full scale, 2 cores) | measured | limit | met |",
            "|---|---:|---:|:---:|",
        ]
        for t in results["targets"]:
            lines.append(
                f"| {t['target']} | {t['value']:g} {t['unit']} | {t['limit']:g} "
                f"{t['unit']} | {'yes' if t['met'] else '**no**'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    seed = params.load(ROOT / "params.yaml").generate.seed
    results: dict[str, Any] = {
        "scale": args.scale,
        "rows": vars(synth.SCALES[args.scale]),
        "repeat": args.repeat,
        "once_over": args.once_over,
        "machine": machine(),
    }
    data, results["generate"] = ensure_data(work, args.scale, seed, args.regenerate)
    project = copy_project(work / f"project-{args.scale}", data, with_dvc=not args.no_repro)
    logs = work / "logs" / args.scale
    shutil.rmtree(logs, ignore_errors=True)
    stages = load_stages(project)
    chosen = [s for s in args.stages.split(",") if s] or list(stages)
    unknown = sorted(set(chosen) - set(stages))
    if unknown:
        raise UserError(f"--stages: no stage {unknown} in dvc.yaml; it has {list(stages)}")
    devices = [d for d in args.device.split(",") if d]
    last = max(list(stages).index(s) for s in chosen)
    results["stages"] = {}
    for name, stage in list(stages.items())[: last + 1]:
        if name not in chosen:  # an earlier stage the chosen ones need: run once, untimed
            log.info("%-12s (setup run)", name)
            measure(stage["cmd"], project, logs / f"{name}-setup.log")
            continue
        for device in devices if name == "train" and devices else [None]:
            label = f"{name}[{device}]" if device else name
            with train_device(project, device):
                try:
                    results["stages"][label] = time_stage(
                        name, stage, project, logs, args.repeat, args.once_over, label
                    )
                except UserError as err:
                    if not device:
                        raise
                    # One device failing (no GPU) must not lose the other's timing.
                    log.error("%s failed: %s", label, str(err).splitlines()[-1])
                    results["stages"][label] = {"error": str(err).splitlines()[-1]}
    metrics = project / "metrics" / "eval.json"
    if metrics.exists():
        scores = json.loads(metrics.read_text(encoding="utf-8"))
        results["auc"] = {k: scores.get(k) for k in ("roc_auc", "oracle_roc_auc")}
    if not args.no_repro and set(chosen) == set(stages):
        results["dvc"] = time_dvc(project, logs, args.repeat)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["stage_order"] = list(results["stages"])  # results.json sorts its keys
    results["machine"]["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    results["targets"] = check_targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(results, args.out / "results.json")
    report = markdown(results)
    with atomic_path(args.out / "results.md") as tmp:
        tmp.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    log.info("wrote %s and %s", args.out / "results.json", args.out / "results.md")


if __name__ == "__main__":
    run_main(main)
