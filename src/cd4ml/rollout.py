"""Progressive delivery on one host: a new version shadowed, then canaried behind nginx, and
promoted or rolled back automatically; the previous version back in one command.

    python -m cd4ml.rollout run --bundle served/bundle [--labels FILE]   # make rollout
    python -m cd4ml.rollout rollback                                      # make rollback
    python -m cd4ml.rollout status | stop

nginx listens on 127.0.0.1:rollout.port, the clients' one address; each version is a
`cd4ml.serve` process on a loopback port of its own, with its own prediction log. A rollout:

1. shadow: every request (or a sample: rollout.shadow_share) is mirrored to the new version
   (nginx `mirror`); clients get the prod version's answers; both log what they scored under
   nginx's request id;
2. canary: rollout.steps per cent of the requests go to the new version (nginx
   `split_clients`), nginx reloaded between steps, never restarted; a request the new version
   fails is retried on the prod one (`proxy_next_upstream`, prod as the `backup` server);
3. before each next step, the analysis of the step: error rate and p99 latency of each version
   from nginx's access log, the two versions' scores of the same mirrored rows from their
   prediction logs, and the live ROC AUC of each where labels have come (--labels);
4. promote (the registry assigns the new version to prod, then only it is served) or abort
   (only the prod version is served, the registry untouched, one line naming the failed check).

Everything a host needs lives in --home (deploy/): nginx's config, pid and logs, one folder per
version (its verified bundle, the params it is served with, its prediction log and service log)
and state.json. `rollout.json` and `rollout.png` there describe the last rollout, step by step.
The services get this process's environment (SERVE_TOKEN and CD4ML_LOG_KEY among it; see
cd4ml.serve): their prediction logs hold the problem's private fields as keyed hashes, and the
labels' are hashed with the same key before they are joined.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import AfterValidator, Field

from cd4ml import bundle, monitor, params, plots, predlog, registry, signing
from cd4ml.io import UserError, run_main, write_json
from cd4ml.params import Fraction, Section
from cd4ml.serve import Serve, auth_headers
from cd4ml.shell import free_ports

log = logging.getLogger("rollout")

SHADOW = "shadow"
STEPS = "rising shares of traffic in %, from 1, ending at 100"


def _rising_to_100(steps: list[int]) -> list[int]:
    if not (steps and all(1 <= s <= 100 for s in steps) and steps[-1] == 100):
        raise ValueError(STEPS)
    if not all(a < b for a, b in itertools.pairwise(steps)):
        raise ValueError(STEPS)
    return steps


class Rollout(Section):
    """params.yaml's rollout: how a new version is shadowed, canaried and judged (make rollout)."""

    port: Annotated[int, Field(ge=1, le=65535)]  # nginx on 127.0.0.1: the clients' address
    shadow_seconds: Annotated[float, Field(gt=0, le=86400)]  # requests mirrored this long
    shadow_share: Annotated[int, Field(ge=1, le=100)]  # % of the requests mirrored
    steps: Annotated[
        list[int], AfterValidator(_rising_to_100), Field(json_schema_extra={"allowed": STEPS})
    ]
    step_seconds: Annotated[float, Field(gt=0, le=86400)]  # each canary step at least this long
    min_requests: Annotated[int, Field(ge=1)]  # of the new version in a step, or it is not judged
    max_error_rate_increase: Fraction  # the new version's 5xx share over the prod version's
    max_p99_ratio: Annotated[float, Field(ge=1, le=100)]  # new p99 <= prod p99 x this + slack
    p99_slack_ms: Annotated[float, Field(ge=0, le=60_000)]
    min_score_correlation: Annotated[float, Field(ge=-1, le=1)]  # Spearman, same mirrored rows
    max_mean_score_change: Fraction  # |mean new - mean prod| on the same mirrored rows
    min_labelled_rows: Annotated[int, Field(ge=1)]  # live AUC judged from this many rows
    max_auc_drop: Fraction  # live ROC AUC: new >= prod - this
    ready_seconds: Annotated[float, Field(gt=0, le=3600)]  # a version's start, bundle verified


# ---------------------------------------------------------------------------------------------
# nginx


@dataclass
class Traffic:
    """What nginx does with requests: who answers, who else sees them, under which step name."""

    prod: int  # the port of the version that answers (and takes every request left over)
    new: int | None = None  # the new version's port
    share: int = 0  # % of requests the new version answers (prod is its backup)
    mirror: bool = False  # requests also go to the new version, its answers dropped
    mirror_share: int = 100  # % of the requests mirrored (a sample: the shadow costs prod less)
    step: str = "serve"


LOG_FORMAT = (
    '{"t":$msec,"step":"$rollout_step","pool":"$pool","uri":"$uri","status":$status,'
    '"request_id":"$request_id","upstream":"$upstream_addr","upstream_status":"$upstream_status",'
    '"upstream_s":"$upstream_response_time","request_s":"$request_time"}'
)
# Connections to the services are kept open (HTTP/1.1), not one per request.
KEEPALIVE = "keepalive 16;"
UPSTREAM_KEEPALIVE = 'proxy_http_version 1.1; proxy_set_header Connection "";'


def nginx_config(home: Path, port: int, traffic: Traffic) -> str:
    """nginx.conf for `traffic`: its own pid, logs and temp folders under home/nginx."""
    d = (home / "nginx").resolve()
    new = traffic.new
    upstreams = [f"upstream prod {{ server 127.0.0.1:{traffic.prod}; {KEEPALIVE} }}"]
    pools = "default prod;"
    if new is not None and traffic.share:
        # The prod version as `backup`: a request the new one fails goes there, not to the client.
        upstreams.append(
            f"upstream new {{ server 127.0.0.1:{new}; server 127.0.0.1:{traffic.prod} backup; "
            f"{KEEPALIVE} }}"
        )
        pools = "" if traffic.share == 100 else "* prod;"
        pools = f'split_clients "${{request_id}}" $pool {{ {traffic.share}% new; {pools} }}'
    else:
        pools = f"map $request_id $pool {{ {pools} }}"
    mirror = sample = ""
    if new is not None and traffic.mirror:
        # Its own upstream without a backup: a shadow that fails must not reach prod twice.
        upstreams.append(f"upstream shadow {{ server 127.0.0.1:{new}; {KEEPALIVE} }}")
        mirror = "mirror /_shadow;\n      mirror_request_body on;"
        if traffic.mirror_share < 100:
            # The copies not in the sample end in nginx, never reaching the new version.
            upstreams.append(
                f'split_clients "${{request_id}}" $shadowed {{ {traffic.mirror_share}% 1; * 0; }}'
            )
            sample = "if ($shadowed = 0) { return 204; }"
    temp = " ".join(
        f"{name}_temp_path {d}/tmp/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    ups = "\n  ".join(upstreams)
    return f"""# Step {traffic.step}, written by python -m cd4ml.rollout (rewritten at each step).
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  {temp}
  log_subrequest on;
  log_format rollout escape=json '{LOG_FORMAT}';
  map "" $rollout_step {{ default "{traffic.step}"; }}
  {ups}
  {pools}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64m;
    # Bodies and answers stay in memory: the workers never write under home (they may run as
    # another user than the folder's owner).
    client_body_buffer_size 64m;
    proxy_max_temp_file_size 0;
    access_log {d}/access.log rollout;
    location / {{
      {mirror}
      proxy_set_header X-Request-ID $request_id;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_pass http://$pool;
      {UPSTREAM_KEEPALIVE}
    }}
    location = /_shadow {{
      internal;
      {sample}
      proxy_set_header X-Request-ID $request_id;
      proxy_pass http://shadow$request_uri;
      {UPSTREAM_KEEPALIVE}
    }}
  }}
}}
"""


def _nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise UserError("nginx is not installed: run `make system-deps` (Debian package nginx)")
    return found


def _nginx(conf: Path, *args: str) -> None:
    done = subprocess.run(
        [_nginx_binary(), "-c", str(conf.resolve()), "-p", str(conf.parent.resolve()), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"nginx {' '.join(args) or 'start'} ({conf}) failed: {first}")


def route(home: Path, port: int, traffic: Traffic) -> None:
    """Send traffic as `traffic` says: the config checked, then nginx started or reloaded."""
    conf = home / "nginx" / "nginx.conf"
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (conf.parent / "tmp" / name).mkdir(parents=True, exist_ok=True)
    candidate = conf.with_name("nginx.conf.new")
    candidate.write_text(nginx_config(home, port, traffic), encoding="utf-8")
    _nginx(candidate, "-t", "-q")
    os.replace(candidate, conf)
    master = _pid(conf.parent / "nginx.pid")
    if master is None:
        _nginx(conf)
    else:
        reloaded = _workers(master)
        _nginx(conf, "-s", "reload")
        _wait_new_workers(master, reloaded)
    log.info("nginx on 127.0.0.1:%d: %s", port, describe(traffic))


def describe(traffic: Traffic) -> str:
    if traffic.new is None or not (traffic.share or traffic.mirror):
        return f"every request to :{traffic.prod}"
    parts = [f"{traffic.share} % to :{traffic.new}, the rest to :{traffic.prod}"]
    if traffic.mirror:
        parts.append(f"{traffic.mirror_share} % mirrored to :{traffic.new}")
    return "; ".join(parts)


def _pid(path: Path) -> int | None:
    """The live process of a pid file, or None."""
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _workers(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    try:
        return set(map(int, children.read_text().split()))
    except OSError:
        return set()


def _wait_new_workers(master: int, old: set[int], timeout: float = 10.0) -> None:
    """Until a worker started by the reload runs: from then on requests get the new config."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _workers(master) - old:
            return
        time.sleep(0.02)
    raise UserError(f"nginx (pid {master}) did not start new workers within {timeout:g} s")


# ---------------------------------------------------------------------------------------------
# Versions: a cd4ml.serve process each


@dataclass
class Version:
    """One version on the host: its folder (bundle, bundle.json, predictions/, serve.log)."""

    version: str
    folder: str
    port: int = 0
    pid: int = 0

    @property
    def bundle(self) -> Path:
        return Path(self.folder) / "bundle"

    @property
    def params(self) -> str:
        return str(Path(self.folder) / "params.yaml")

    @property
    def predictions(self) -> Path:
        return Path(self.folder) / "predictions"

    def alive(self) -> bool:
        if not self.pid:
            return False
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        # A zombie (exited, not reaped) is dead too.
        with contextlib.suppress(OSError):
            if Path(f"/proc/{self.pid}/stat").read_text().split()[2] == "Z":
                return False
        return True


@dataclass
class State:
    """state.json: which version serves on which port; `prod` is the one nginx answers with."""

    prod: Version | None = None
    new: Version | None = None
    history: list[str] = field(default_factory=list)  # versions promoted here, oldest first

    @classmethod
    def read(cls, home: Path) -> State:
        path = home / "state.json"
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                prod=Version(**data["prod"]) if data.get("prod") else None,
                new=Version(**data["new"]) if data.get("new") else None,
                history=list(data.get("history", [])),
            )
        except (ValueError, TypeError, KeyError) as err:
            raise UserError(
                f"{path}: not a rollout state ({err}); `rollout stop` and start anew"
            ) from None

    def write(self, home: Path) -> None:
        write_json(asdict(self), home / "state.json")


def install(home: Path, source: Path, params_path: str) -> Version:
    """Copy a fetched bundle (and its bundle.json, which names the version) into
    home/versions/<version>/, verified, with the params file it is to be served with: a version
    keeps its own serve settings, whatever the next release brings."""
    version = registry.fetched_version(source)
    if version is None:
        raise UserError(
            f"{source}: no {source.name}.json naming its version next to it; fetch the bundle "
            "with `python -m cd4ml.registry fetch --version vX.Y.Z --out served/bundle`"
        )
    bundle.verify(source)
    signing.verify(source, name=f"{source} ({version})")  # a release: signed by the release key
    folder = (home / "versions" / version).resolve()
    if (folder / "bundle").resolve() != source.resolve():
        tmp = folder.with_name(f".{version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copytree(source, tmp / "bundle")
        shutil.copy2(source.with_name(f"{source.name}.json"), tmp / "bundle.json")
        shutil.copy2(params_path, tmp / "params.yaml")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return Version(version, str(folder))


def start(version: Version, params_path: str, wait_s: float) -> Version:
    """Start the version's service on a free loopback port; return once /readyz answers."""
    private = params.problem(params_path).private
    if private and not predlog.env_key():
        raise UserError(
            f"the services log {', '.join(private)} as keyed hashes and {predlog.KEY_ENV} is "
            "not set: set it to the secret of the prediction logs (a masked CI variable)"
        )
    (version.port,) = free_ports()
    folder = Path(version.folder)
    out = (folder / "serve.log").open("ab")
    command = [
        sys.executable,
        *("-m", "cd4ml.serve", "--bundle", str(version.bundle), "--params", params_path),
        *("--port", str(version.port), "--prediction-log", str(version.predictions)),
        *("--public-key", str(signing.public_key_path().resolve())),
    ]
    process = subprocess.Popen(
        command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    version.pid = process.pid
    url = f"http://127.0.0.1:{version.port}"
    deadline = time.monotonic() + wait_s
    while True:
        if process.poll() is not None:
            tail = (folder / "serve.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise UserError(
                f"{version.version} did not start ({' '.join(tail) or 'no output'}); "
                f"see {folder / 'serve.log'}"
            )
        with contextlib.suppress(UserError):
            _get(f"{url}/readyz", timeout=1.0)
            break
        if time.monotonic() > deadline:
            stop(version)
            raise UserError(
                f"{version.version} was not ready within rollout.ready_seconds {wait_s:g}"
            )
        time.sleep(0.2)
    log.info("%s serves on %s (pid %d)", version.version, url, version.pid)
    return version


def stop(version: Version | None, timeout: float = 30.0) -> None:
    """Stop a version's service: SIGTERM (its prediction log written out), SIGKILL after
    `timeout`."""
    if version is None or not version.alive():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(version.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while version.alive() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(version.pid, os.WNOHANG)
        time.sleep(0.05)
    if version.alive():
        os.kill(version.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(version.pid, 0)


def _get(url: str, timeout: float = 5.0) -> dict:
    request = urllib.request.Request(url, headers=auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as err:
        raise UserError(f"{url}: no answer ({getattr(err, 'reason', err)})") from None


# ---------------------------------------------------------------------------------------------
# Analysis


ACCESS_COLUMNS = ["t", "step", "pool", "uri", "status", "request_id", "upstream"]
_TEXT = ["upstream_status", "upstream_s", "request_s"]  # lists, "-" when none


def read_access_log(path: Path, start: int = 0) -> pd.DataFrame:
    """nginx's access log (LOG_FORMAT) from byte `start` on (the log outlives rollouts: a
    rollout reads its own lines only): one row per request and one per mirrored copy."""
    size = path.stat().st_size if path.exists() else 0
    with contextlib.suppress(FileNotFoundError), path.open("rb") as fh:
        fh.seek(start if start <= size else 0)  # a smaller file: a new log
        lines = fh.read().decode("utf-8", errors="replace")
        if lines.strip():
            text = dict.fromkeys(["request_id", "upstream", *_TEXT], str)
            return pd.read_json(io.StringIO(lines), lines=True, dtype=text)
    return pd.DataFrame(columns=[*ACCESS_COLUMNS, *_TEXT])


def attempts(requests: pd.DataFrame, ports: dict[int, str]) -> pd.DataFrame:
    """Each try nginx made of a version: (role, ok, ms). A request of the new pool that nginx
    sent straight to the backup (the new version marked down) is a failed try of the new one."""
    rows = []
    for r in requests.itertuples(index=False):
        addrs = [a.strip() for a in str(r.upstream).split(",")]
        statuses = [s.strip() for s in str(r.upstream_status).split(",")]
        times = [t.strip() for t in str(r.upstream_s).split(",")]
        roles = [ports.get(_port(a), "other") for a in addrs]
        for role, status, ms in zip(roles, statuses, times, strict=False):
            ok = status.isdigit() and int(status) < 500
            seconds = float(ms) if _number(ms) else np.nan
            rows.append((role, ok, seconds * 1000))
        if r.pool == "new" and roles and roles[0] != "new":
            rows.append(("new", False, np.nan))
    return pd.DataFrame(rows, columns=["role", "ok", "ms"])


def _port(addr: str) -> int:
    tail = addr.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_predictions(
    folder: Path,
    fields: list[bundle.Field],
    flags: tuple,
    key: bytes = b"",
    since: dt.datetime | None = None,
) -> pd.DataFrame:
    """A version's prediction log (empty when it has none yet); `key`: CD4ML_LOG_KEY; `since`:
    only the files that hold rows scored since then (prod's log outlives rollouts)."""
    if not any(folder.glob(f"{predlog.PREFIX}*{predlog.SUFFIX}")):
        return pd.DataFrame(columns=["request_id", "probability"])
    table = monitor.read_log(str(folder), predlog.log_schema(fields, flags), key, since)
    return table.to_pandas()


def same_rows(new: pd.DataFrame, prod: pd.DataFrame) -> pd.DataFrame:
    """The rows both versions scored (a mirrored request): joined on nginx's request id and
    the row's place in its request."""
    keyed = []
    for frame in (new, prod):
        frame = frame[frame["request_id"].notna()].copy()
        frame["n"] = frame.groupby("request_id").cumcount()
        keyed.append(frame[["request_id", "n", "probability"]])
    return keyed[0].merge(keyed[1], on=["request_id", "n"], suffixes=("_new", "_prod"))


def analyse(
    step: str,
    access: pd.DataFrame,
    logs: dict[str, pd.DataFrame],
    ports: dict[int, str],
    labels: pa.Table | None,
    names: list[str],
    target: str,
    settings: Rollout,
) -> dict[str, Any]:
    """The measures of one step and the checks they fail (each a line naming its numbers)."""
    mine = access[access["step"] == step]
    ids = set(mine["request_id"])
    tries = attempts(mine, ports)
    result: dict[str, Any] = {"step": step, "requests": int((mine["uri"] != "/_shadow").sum())}
    for role in ("prod", "new"):
        own = tries[tries["role"] == role]
        ms = own["ms"].dropna()
        result[role] = {
            "requests": len(own),
            "error_rate": float(1 - own["ok"].mean()) if len(own) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        }
    scored = {role: frame[frame["request_id"].isin(ids)] for role, frame in logs.items()}
    pairs = same_rows(scored["new"], scored["prod"])
    result["same_rows"] = len(pairs)
    if len(pairs) >= 2:
        a, b = pairs["probability_new"], pairs["probability_prod"]
        corr = a.rank().corr(b.rank()) if a.nunique() > 1 and b.nunique() > 1 else float("nan")
        result["score_correlation"] = None if np.isnan(corr) else float(corr)
        result["mean_score_change"] = float(abs(a.mean() - b.mean()))
    if labels is not None:
        for role in ("prod", "new"):
            rows = scored[role]
            if len(rows):
                logged = pa.Table.from_pandas(rows, preserve_index=False)
                live = monitor.live_auc(logged, labels, names, target)
                result[role]["labelled_rows"] = live["labelled_rows"]
                result[role]["roc_auc"] = live["roc_auc"]
    result["failed"] = checks(result, settings)
    return result


def checks(result: dict[str, Any], s: Rollout) -> list[str]:
    """The checks a step's measures fail, each one line with its numbers and its key."""
    new, prod = result["new"], result["prod"]
    failed = []
    if new["requests"] < s.min_requests:
        return [
            f"traffic: the new version had {new['requests']} requests, fewer than "
            f"rollout.min_requests {s.min_requests}: nothing to judge it by"
        ]
    prod_errors = prod["error_rate"] or 0.0
    if new["error_rate"] > prod_errors + s.max_error_rate_increase:
        failed.append(
            f"error_rate: new {new['error_rate']:.3f} > prod {prod_errors:.3f} + "
            f"rollout.max_error_rate_increase {s.max_error_rate_increase}"
        )
    if new["p99_ms"] is not None and prod["p99_ms"] is not None:
        limit = prod["p99_ms"] * s.max_p99_ratio + s.p99_slack_ms
        if new["p99_ms"] > limit:
            failed.append(
                f"p99_latency: new {new['p99_ms']:.1f} ms > prod {prod['p99_ms']:.1f} ms x "
                f"rollout.max_p99_ratio {s.max_p99_ratio:g} + rollout.p99_slack_ms "
                f"{s.p99_slack_ms:g} = {limit:.1f} ms"
            )
    if result["same_rows"] >= 2:
        corr = result["score_correlation"]
        if corr is None or corr < s.min_score_correlation:
            shown = (
                "undefined (one of them scores every row the same)"
                if corr is None
                else (f"{corr:.3f}")
            )
            failed.append(
                f"score_correlation: new vs prod on {result['same_rows']} same rows {shown} < "
                f"rollout.min_score_correlation {s.min_score_correlation}"
            )
        if result["mean_score_change"] > s.max_mean_score_change:
            failed.append(
                f"mean_score_change: {result['mean_score_change']:.3f} on "
                f"{result['same_rows']} same rows > rollout.max_mean_score_change "
                f"{s.max_mean_score_change}"
            )
    n_new, n_prod = new.get("labelled_rows", 0), prod.get("labelled_rows", 0)
    aucs = (new.get("roc_auc"), prod.get("roc_auc"))
    judged = min(n_new, n_prod) >= s.min_labelled_rows and None not in aucs
    if judged and aucs[0] < aucs[1] - s.max_auc_drop:
        failed.append(
            f"live_roc_auc: new {aucs[0]:.4f} ({n_new} labelled rows) < prod {aucs[1]:.4f} "
            f"({n_prod}) - rollout.max_auc_drop {s.max_auc_drop}"
        )
    return failed


# ---------------------------------------------------------------------------------------------
# The commands


@dataclass
class Host:
    """The host's folder, the params file and the rollout settings."""

    home: Path
    params_path: str
    settings: Rollout
    name: str  # the artifact in the registry

    def access_log(self) -> Path:
        return self.home / "nginx" / "access.log"

    def route(self, traffic: Traffic) -> None:
        route(self.home, self.settings.port, traffic)


def _ensure_prod(host: Host, state: State) -> None:
    """The prod version up (after a reboot, a crash): restarted from its folder."""
    if state.prod is not None and not state.prod.alive():
        log.warning("%s was not running: starting it again", state.prod.version)
        start(state.prod, state.prod.params, host.settings.ready_seconds)
        host.route(Traffic(prod=state.prod.port))
        state.write(host.home)


def _settle(*versions: Version) -> None:
    """Let the step's logged rows reach their files: a service writes its prediction log at
    least every serve.log_flush_seconds (of the params it runs with)."""
    flush = max(params.section(v.params, "serve", Serve).log_flush_seconds for v in versions)
    time.sleep(min(flush + 0.5, 120))


def run(host: Host, source: Path, labels_path: Path | None) -> dict[str, Any]:
    """Roll the fetched bundle at `source` out: shadow, canary steps, promote or abort."""
    s = host.settings
    host.home.mkdir(parents=True, exist_ok=True)
    state = State.read(host.home)
    if state.prod is not None and state.prod.version == registry.fetched_version(source):
        raise UserError(
            f"{state.prod.version} is already the prod version here: nothing to roll out"
        )
    if state.new is not None:  # an earlier rollout that did not finish
        stop(state.new)
        state.new = None
    new = install(host.home, source, host.params_path)
    _ensure_prod(host, state)
    start(new, new.params, s.ready_seconds)
    if state.prod is None:  # the first version this host serves: nothing to compare it with
        try:
            _assign(host, new.version)
        except BaseException:
            stop(new)
            raise
        host.route(Traffic(prod=new.port))
        state.prod, state.history = new, [*state.history, new.version]
        state.write(host.home)
        print(f"{new.version} serves alone on 127.0.0.1:{s.port}: the first version here")
        return {"version": new.version, "outcome": "first", "steps": []}
    state.new = new
    state.write(host.home)
    plan = [(SHADOW, 0, True, s.shadow_seconds)] + [
        (f"canary-{share}", share, False, s.step_seconds) for share in s.steps
    ]
    report: dict[str, Any] = {
        "version": new.version,
        "prod": state.prod.version,
        "settings": s.model_dump(),
        "steps": [],
    }
    try:
        outcome = _judge(host, state.prod, new, plan, report, labels_path)
        if outcome == "promoted":
            _assign(host, new.version)
    except BaseException:  # an error, Ctrl-C: prod alone again, as an abort leaves it
        host.route(Traffic(prod=state.prod.port, step="serve"))
        stop(new)
        state.new = None
        state.write(host.home)
        raise
    if outcome == "promoted":
        host.route(Traffic(prod=new.port, step="serve"))
        stop(state.prod)
        state.prod, state.new = new, None
        state.history.append(new.version)
    else:
        host.route(Traffic(prod=state.prod.port, step="serve"))
        stop(new)
        state.new = None
    state.write(host.home)
    report["outcome"] = outcome
    write_json(report, host.home / "rollout.json")
    picture(report, host.home / "rollout.png")
    if outcome == "aborted":
        last = report["steps"][-1]
        raise UserError(
            f"rollout of {new.version} aborted at {last['step']}, {report['prod']} serves "
            f"everything, the registry is unchanged: {'; '.join(last['failed'])}"
        )
    print(
        f"{new.version} promoted: it serves every request on 127.0.0.1:{s.port} and is prod in "
        f"the registry ({len(report['steps'])} steps judged; {host.home / 'rollout.json'})",
        flush=True,
    )
    return report


def _judge(
    host: Host,
    prod: Version,
    new: Version,
    plan: list[tuple[str, int, bool, float]],
    report: dict[str, Any],
    labels_path: Path | None,
) -> str:
    """Run the plan's steps, each judged before the next; "promoted" or "aborted"."""
    problem = params.problem(host.params_path)
    fields = bundle.input_fields(problem.Row)
    names = [f.name for f in fields]
    key = predlog.env_key()
    labels = None
    if labels_path:  # their private fields hashed as the services hash them, so they join
        labels = predlog.hash_columns(
            monitor.read_labels(labels_path, problem), problem.private, key
        )
    ports = {prod.port: "prod", new.port: "new"}
    # nginx's log outlives a rollout: its lines are this one's by their label, read from where
    # the log ended when it began.
    run_id = f"{new.version}/{uuid.uuid4().hex[:8]}"
    begun = host.access_log().stat().st_size if host.access_log().exists() else 0
    # The prediction logs' files, from when it began (a second early: whole milliseconds).
    begun_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for step, share, mirror, seconds in plan:
        label = f"{run_id}/{step}"
        mirrored = host.settings.shadow_share
        host.route(Traffic(prod.port, new.port, share, mirror, mirrored, step=label))
        started = time.monotonic()
        while time.monotonic() - started < seconds and new.alive():
            time.sleep(0.1)
        _settle(prod, new)
        logs = {
            role: read_predictions(v.predictions, fields, problem.flags, key, begun_at)
            for role, v in (("prod", prod), ("new", new))
        }
        access = read_access_log(host.access_log(), begun)
        target = problem.contract.target
        result = analyse(label, access, logs, ports, labels, names, target, host.settings)
        result.update(step=step, share=share)
        if not new.alive():
            result["failed"].insert(0, f"alive: {new.version} stopped (pid {new.pid} is gone)")
        report["steps"].append(result)
        log.info("%s: %s", step, _summary(result))
        if result["failed"]:
            return "aborted"
    return "promoted"


def _summary(result: dict[str, Any]) -> str:
    new, prod = result["new"], result["prod"]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} ms"

    def rate(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    text = (
        f"new {new['requests']} requests, errors {rate(new['error_rate'])}, p99 "
        f"{ms(new['p99_ms'])}; prod {prod['requests']}, errors {rate(prod['error_rate'])}, "
        f"p99 {ms(prod['p99_ms'])}; {result['same_rows']} same rows"
    )
    return text + (f"; FAILED: {'; '.join(result['failed'])}" if result["failed"] else "; ok")


def _assign(host: Host, version: str) -> None:
    """The registry's prod stage to `version` (a GTO tag in this repository; CI pushes it)."""
    registry.assign(host.name, "prod", version)


def rollback(host: Host, repo: str) -> str:
    """The previous prod version back: the current one taken out of prod in the registry
    (GTO's rollback), the previous one's bundle (kept here, else fetched) verified and served
    alone; /metadata through nginx must name it."""
    state = State.read(host.home)
    if state.prod is None:
        raise UserError(f"{host.home}: nothing is served here yet; `make rollout` first")
    current = state.prod.version
    earlier = [v for v in registry.versions_in_stage(host.name, "prod") if v != current]
    if not earlier:
        raise UserError(f"no version was in prod before {current}: nothing to roll back to")
    previous = earlier[0]
    folder = (host.home / "versions" / previous).resolve()
    if (folder / "bundle").is_dir():
        bundle.verify(folder / "bundle")
    else:
        registry.fetch(host.name, None, previous, folder / "bundle", repo)
    back = Version(previous, str(folder))
    if not Path(back.params).exists():
        shutil.copy2(host.params_path, back.params)
    start(back, back.params, host.settings.ready_seconds)
    if current in registry.versions_in_stage(host.name, "prod"):
        registry.unassign(host.name, "prod", current)
    host.route(Traffic(prod=back.port))
    stop(state.prod)
    stop(state.new)
    state.prod, state.new = back, None
    state.history.append(previous)
    state.write(host.home)
    served = _get(f"http://127.0.0.1:{host.settings.port}/metadata").get("version")
    if served != previous:
        raise UserError(f"rolled back to {previous}, but /metadata through nginx says {served!r}")
    print(
        f"rolled back: {current} -> {previous} (prod in the registry); /metadata through nginx "
        f"reports {served}",
        flush=True,
    )
    return previous


def status(host: Host) -> dict[str, Any]:
    state = State.read(host.home)
    out = {
        role: None if v is None else {**asdict(v), "alive": v.alive()}
        for role, v in (("prod", state.prod), ("new", state.new))
    }
    out["nginx"] = _pid(host.home / "nginx" / "nginx.pid")
    out["port"] = host.settings.port
    print(json.dumps(out, indent=2))
    return out


def stop_all(host: Host) -> None:
    """Stop nginx and every version's service (the host's folder stays)."""
    state = State.read(host.home)
    conf = host.home / "nginx" / "nginx.conf"
    if _pid(conf.parent / "nginx.pid") is not None:
        _nginx(conf, "-s", "quit")
    stop(state.prod)
    stop(state.new)
    print(f"stopped nginx and the services of {host.home}")


def picture(report: dict[str, Any], path: Path) -> None:
    """rollout.png: per step, the new version's share of traffic, and the measures judged."""
    plt = plots._pyplot()
    steps = report["steps"]
    labels = [s["step"] for s in steps]
    x = np.arange(len(steps))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    share = [100 if s["step"] == SHADOW else s["share"] for s in steps]
    colors = ["#bbbbbb" if s["step"] == SHADOW else "#4c72b0" for s in steps]
    axes[0].bar(x, share, color=colors)
    axes[0].set_ylabel("% of requests to the new version")
    axes[0].set_title("traffic (grey: mirrored, answers dropped)")
    for role, style in (("prod", "o-"), ("new", "s-")):
        p99 = [np.nan if s[role]["p99_ms"] is None else s[role]["p99_ms"] for s in steps]
        err = [np.nan if s[role]["error_rate"] is None else s[role]["error_rate"] for s in steps]
        axes[1].plot(x, p99, style, label=role)
        axes[2].plot(x, err, style, label=role)
    axes[1].set_title("p99 latency (ms)")
    axes[1].set_ylim(bottom=0)
    axes[2].set_title("error rate")
    axes[2].set_ylim(
        0, max(0.05, *(np.nan_to_num(line.get_ydata()).max() for line in axes[2].lines))
    )
    for ax in axes:
        ax.set_xticks(x, labels, rotation=20)
        for tick, step in zip(ax.get_xticklabels(), steps, strict=True):
            tick.set_color("#c0392b" if step["failed"] else "black")
    axes[1].legend()
    outcome = report.get("outcome", "")
    failed = [line.split(":", 1)[0] for s in steps for line in s["failed"]]
    why = f" ({', '.join(failed)} failed at {steps[-1]['step']})" if failed else ""
    fig.suptitle(f"rollout of {report['version']} over {report['prod']}: {outcome}{why}")
    plots.save(fig, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--home", type=Path, default=Path("deploy"), help="the host's folder")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pipeline", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--port", type=int, help="nginx's port (default: rollout.port)")
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="shadow, canary, then promote or abort")
    go.add_argument("--bundle", type=Path, default=Path("served/bundle"))
    go.add_argument("--labels", type=Path, help="targets of the served rows, as they arrive")
    back = sub.add_parser("rollback", help="the previous prod version back")
    back.add_argument("--repo", default=".", help="the git repository (URL or path)")
    sub.add_parser("status", help="the versions served here and nginx")
    sub.add_parser("stop", help="stop nginx and the services")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = params.section(args.params, "rollout", Rollout)
    if args.port is not None:
        settings = params.parse(Rollout, {**settings.model_dump(), "port": args.port}, "rollout")
    host = Host(args.home, args.params, settings, registry.artifact_name(args.pipeline))
    if args.command == "run":
        run(host, args.bundle, args.labels)
    elif args.command == "rollback":
        rollback(host, args.repo)
    elif args.command == "status":
        status(host)
    else:
        stop_all(host)


if __name__ == "__main__":
    run_main(main)
