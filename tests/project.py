"""Helpers for tests that need a throw-away copy of this repository (a real git + DVC project)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "cd4ml test",
    "GIT_AUTHOR_EMAIL": "test@cd4ml-kkbox.invalid",
    "GIT_COMMITTER_NAME": "cd4ml test",
    "GIT_COMMITTER_EMAIL": "test@cd4ml-kkbox.invalid",
}


def project_env(**extra: str) -> dict[str, str]:
    """Environment for commands in a project copy: the venv first on PATH, no DVC analytics, and
    Python writing bytecode as it does on users' machines (these machines turn that off)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(GIT_IDENTITY)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
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


def copy_project(dest: Path, with_data: bool = False) -> Path:
    """Copy the repository's files (tracked and new, not ignored) into a fresh git repo at dest.

    The DVC cache, outputs and data/ are not copied: the copy starts as a fresh clone would.
    """
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = ROOT / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    if with_data and (ROOT / "data").is_dir():
        shutil.copytree(ROOT / "data", dest / "data")
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "copy of the project under test"], dest)
    return dest
