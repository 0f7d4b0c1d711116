"""Running git and DVC from the tools (captured output, one clear line when they fail), and
the loopback ports their servers listen on."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from cd4ml.io import UserError


def free_ports(count: int = 1) -> list[int]:
    """Ports free on 127.0.0.1 right now (the kernel's choice), all different."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def dvc_command() -> list[str]:
    """The DVC of this environment: the `dvc` script next to the running Python."""
    script = Path(sys.executable).with_name("dvc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dvc"]


def dvc(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run DVC (analytics off) and capture its output; never raises. `env` adds to the
    environment."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", **(env or {})}
    return subprocess.run(
        [*dvc_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def git(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run git and capture its output; never raises (exit 127 where git is not installed).
    `env` adds to the environment (a commit identity, say)."""
    if shutil.which("git") is None:
        return subprocess.CompletedProcess(["git", *args], 127, "", "git: command not found")
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def checked(result: subprocess.CompletedProcess[str], what: str) -> str:
    """The command's stdout; on failure a UserError naming `what`, the tool's own reason first,
    then its whole output."""
    if result.returncode == 0:
        return result.stdout
    output = f"{result.stdout}{result.stderr}".strip()
    reason = next(
        (
            line.strip().removeprefix("error: ").removeprefix("ERROR: ").removeprefix("❌ ")
            for line in output.splitlines()
            if line.lower().startswith(("error:", "fatal:", "❌"))
        ),
        f"`{' '.join(map(str, result.args))}` exited {result.returncode}",
    )
    raise UserError(f"{what} failed: {reason}\n{output}")
