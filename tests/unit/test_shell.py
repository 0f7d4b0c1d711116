"""cd4ml.shell: git and DVC run with captured output, and one clear line when they fail."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cd4ml import shell
from cd4ml.io import UserError, run_main
from cd4ml.shell import checked, free_ports, git


def test_checked_gives_the_output_of_a_command_that_succeeds(tmp_path):
    assert checked(git("--version", cwd=tmp_path), "git --version").startswith("git version ")


def test_checked_names_what_failed_and_the_tools_reason_first(tmp_path, capsys):
    failed = git("status", cwd=tmp_path, env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})
    with pytest.raises(UserError) as raised:
        checked(failed, f"git status in {tmp_path}")
    first, _, detail = str(raised.value).partition("\n")
    assert first.startswith(f"git status in {tmp_path} failed: fatal: not a git repository")
    assert "not a git repository" in detail  # the tool's whole output follows

    def main(argv: list[str] | None) -> None:
        checked(failed, "git status")

    with pytest.raises(SystemExit) as exited:
        run_main(main, [])
    assert exited.value.code == 1
    shown = capsys.readouterr().err.splitlines()[0]
    assert shown.startswith("error: git status failed: fatal: not a git repository")


@pytest.mark.parametrize(
    ("stdout", "stderr", "reason"),
    [
        ("", "ERROR: failed to push data to the cloud\n", "failed to push data to the cloud"),
        ("working\n", "error: pathspec 'x' did not match\n", "pathspec 'x' did not match"),
        ("some output\n", "", "`dvc push` exited 2"),
    ],
)
def test_checked_reason_is_the_first_error_line_else_the_exit_status(stdout, stderr, reason):
    result = subprocess.CompletedProcess(["dvc", "push"], 2, stdout, stderr)
    with pytest.raises(UserError) as raised:
        checked(result, "dvc push")
    assert str(raised.value).splitlines()[0] == f"dvc push failed: {reason}"


def test_git_adds_env_to_the_environment(tmp_path):
    identity = {"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.invalid"}
    shown = checked(git("var", "GIT_AUTHOR_IDENT", cwd=tmp_path, env=identity), "git var")
    assert shown.startswith("Ada <ada@example.invalid> ")


def test_git_missing_from_path_is_exit_127_and_named_by_checked(monkeypatch):
    monkeypatch.setattr(shell.shutil, "which", lambda name: None)
    result = git("status")
    assert (result.returncode, result.stderr) == (127, "git: command not found")
    with pytest.raises(UserError, match=r"^git status failed: `git status` exited 127\n"):
        checked(result, "git status")


def test_dvc_is_the_one_of_this_environment(tmp_path):
    command = shell.dvc_command()
    assert command in ([str(Path(sys.executable).with_name("dvc"))], [sys.executable, "-m", "dvc"])
    result = shell.dvc("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip()[:1].isdigit(), result.stderr


def test_free_ports_are_distinct_and_can_be_bound():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
