"""Test helpers: the repository root, a params.yaml variant, and throw-away copies of this
repository (a real git + DVC project) to run commands in."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import ValidationError, create_model
from pydantic.fields import FieldInfo

from cd4ml import params, signing
from tools import workspace

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "cd4ml test",
    "GIT_AUTHOR_EMAIL": "test@cd4ml-kkbox.invalid",
    "GIT_COMMITTER_NAME": "cd4ml test",
    "GIT_COMMITTER_EMAIL": "test@cd4ml-kkbox.invalid",
}


LOG_KEY = "test-prediction-log-key"


@functools.cache
def release_keys() -> tuple[Path, Path]:
    """The test session's release key pair (private PEM, public PEM), made once, deleted at
    exit: what a project's CI variable and committed public key are."""
    folder = Path(tempfile.mkdtemp(prefix="cd4ml-test-keys-"))
    atexit.register(shutil.rmtree, folder, True)
    private, public = folder / "release.pem", folder / "release.pub"
    signing.keygen(private, public)
    return private, public


def sign(folder: Path) -> Path:
    """Sign a bundle folder with the test session's release key, as the release job does."""
    signing.sign(folder, release_keys()[0])
    return folder


def project_env(**extra: str) -> dict[str, str]:
    """Environment for commands in a project copy: the venv first on PATH, no DVC analytics, and
    Python writing bytecode as it does on users' machines (these machines turn that off)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(GIT_IDENTITY)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["CD4ML_LOG_KEY"] = LOG_KEY  # services log member ids hashed ("" in `extra`: no key)
    private, public = release_keys()  # the release job signs, services verify
    env[signing.PRIVATE_KEY_ENV], env[signing.PUBLIC_KEY_ENV] = str(private), str(public)
    env.update(extra)
    return env


def run(
    cmd: list[str] | str, cwd: Path, check: bool = True, **env: str
) -> subprocess.CompletedProcess:
    """Run a command in a project copy and capture its output (shown when `check` fails)."""
    result = subprocess.run(
        cmd,
        cwd=cwd,
        env=project_env(**env),
        capture_output=True,
        text=True,
        shell=isinstance(cmd, str),
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd} failed with {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def link_venv(project: Path) -> Path:
    """Point the project's .venv at this one: its make targets find the environment installed and
    install nothing (another copy costs 1.8 GB of disk and a minute; CI's fresh clone installs).

    The project's Pipfile and Pipfile.lock get this repository's times: a git clone's are newer
    than the environment, and `make` would reinstall into it, pointing it at the clone."""
    for name in ("Pipfile", "Pipfile.lock"):
        if (project / name).read_bytes() != (ROOT / name).read_bytes():
            raise AssertionError(f"{project / name} differs from {ROOT / name}: no shared .venv")
        stat = (ROOT / name).stat()
        os.utime(project / name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (project / ".venv").symlink_to(ROOT / ".venv")
    return project


def copy_project(dest: Path, with_data: bool = False) -> Path:
    """A fresh git repo at dest with the repository's files (tools.workspace.copy_project) and
    this environment: no DVC cache, outputs or data/, as a fresh clone; `with_data` copies data/
    in (not committed)."""
    workspace.copy_project(dest)
    link_venv(dest)
    if with_data and (ROOT / "data").is_dir():
        shutil.copytree(ROOT / "data", dest / "data")
    return dest


def tiny_project(dest: Path) -> Path:
    """copy_project with the tiny synthetic data made and tracked (`dvc add`), nothing run."""
    copy_project(dest)
    for cmd in (
        ["python", "-m", "cd4ml.generate", "--scale", "tiny", "--out", "data"],
        ["dvc", "add", "data", "--quiet"],
    ):
        subprocess.run(cmd, cwd=dest, env=project_env(), check=True, capture_output=True)
    return dest


def write_params(path: Path, **generate: object) -> None:
    """The project's params.yaml with these `generate` keys (every section is required)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["generate"].update(generate)
    path.write_text(yaml.safe_dump(params), encoding="utf-8")


def out_of_range(spec: FieldInfo) -> Any:
    """A value of the field's type that the field refuses (just past a bound, a choice it does
    not offer, a text its pattern refuses), or None where it takes every value of its type: what
    the params tests and the bad-input corpus give each key."""
    probe = create_model("Probe", __base__=params.Section, value=(spec.annotation, spec))
    for candidate in _candidates(spec):
        try:
            probe.model_validate({"value": candidate})
        except ValidationError:
            return candidate
    return None


def _candidates(spec: FieldInfo) -> list[Any]:
    """Values just past each bound of the field (the low one first), then texts."""
    kind = spec.annotation
    if typing.get_origin(kind) is Literal:
        return ["unknown", ""]
    if kind is str:
        return ["", "unknown"]
    if typing.get_origin(kind) is list:
        # Names repeated for a list of names ([] may mean "all"), else past a list's rules.
        return [["", ""]] if typing.get_args(kind) == (str,) else [[], [0], [100, 50]]
    if kind not in (int, float):
        return []
    step = 1 if kind is int else 0.5
    found = []
    for item in spec.metadata:
        if isinstance(item, annotated_types.Ge):
            found.append(kind(item.ge - step))
        elif isinstance(item, annotated_types.Gt):
            found.append(kind(item.gt))
    for item in spec.metadata:
        if isinstance(item, annotated_types.Le):
            found.append(kind(item.le + step))
        elif isinstance(item, annotated_types.Lt):
            found.append(kind(item.lt))
    return found
