"""The DVC S3 remote through cd4ml.remote, against a real S3 server (Ceph radosgw, loopback)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cd4ml.shell import dvc_command

if TYPE_CHECKING:
    from tests.conftest import S3Server

# A hung server must not hang the suite (the session's server start counts into the first test).
pytestmark = [pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(120)]

DVC = dvc_command()
TRACKED_URL = "s3://cd4ml-kkbox/dvcstore"

# A CI clone has no git identity: give every git command one.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "s3-test",
    "GIT_AUTHOR_EMAIL": "s3-test@localhost",
    "GIT_COMMITTER_NAME": "s3-test",
    "GIT_COMMITTER_EMAIL": "s3-test@localhost",
}

DVC_YAML = """\
stages:
  listing:
    cmd: ls -R data > listing.txt
    deps:
      - data
    outs:
      - listing.txt
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without the caller's AWS or S3 settings, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "S3_"))}
    env.update(GIT_IDENTITY, DVC_NO_ANALYTICS="1", **extra)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run a command in a test repository; show its output when it fails unexpectedly."""
    result = subprocess.run(
        cmd, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd} failed with {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def remote_py(
    repo: Path, command: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess:
    """Run `python -m cd4ml.remote COMMAND` in a test repository."""
    return run([sys.executable, "-m", "cd4ml.remote", command], repo, check=check, **env)


def first_line(result: subprocess.CompletedProcess) -> str:
    """The first line the command wrote on stderr."""
    return result.stderr.splitlines()[0] if result.stderr else ""


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def configure(repo: Path, server: S3Server, bucket: str) -> None:
    """Point the tracked remote at the loopback server, in .dvc/config.local only."""
    run(
        [*DVC, "remote", "modify", "--local", "storage", "url", f"s3://{bucket}/dvcstore"],
        repo,
    )
    run([*DVC, "remote", "modify", "--local", "storage", "endpointurl", server.endpoint], repo)


def closed_port() -> int:
    """A loopback port nothing listens on: bound once, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_local(repo: Path) -> bytes | None:
    """The bytes of .dvc/config.local, None when there is none."""
    path = repo / ".dvc" / "config.local"
    return path.read_bytes() if path.exists() else None


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed git + DVC project: data/ (4 MiB + 300 small files) and one pipeline output."""
    repo = tmp_path_factory.mktemp("template")
    run(["git", "init", "-q", "-b", "main"], repo)
    run([*DVC, "init", "-q"], repo)
    run([*DVC, "remote", "add", "-d", "storage", TRACKED_URL], repo)
    rng = random.Random(4)
    data = repo / "data"
    (data / "small").mkdir(parents=True)
    (data / "big.bin").write_bytes(rng.randbytes(4 * 2**20))
    for i in range(300):
        (data / "small" / f"{i:03d}.txt").write_bytes(rng.randbytes(rng.randrange(10, 2000)))
    (repo / "dvc.yaml").write_text(DVC_YAML)
    run([*DVC, "add", "-q", "data"], repo)
    run([*DVC, "repro", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "data and a pipeline"], repo)
    return repo


@pytest.fixture
def repo(template_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the template project (git history and DVC cache included)."""
    return Path(shutil.copytree(template_repo, tmp_path / "repo", symlinks=True))


def test_push_clone_pull_round_trip(
    s3_server: S3Server, s3_bucket: str, repo: Path, tmp_path: Path
) -> None:
    keys = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    configure(repo, s3_server, s3_bucket)
    remote_py(repo, "check", **keys)
    pushed = remote_py(repo, "push", **keys)
    # 301 data files, the .dir manifest of data/, listing.txt and the run-cache entry
    assert "304 files pushed" in pushed.stderr

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data").exists()
    # The second way to point at a server: S3_BUCKET / S3_ENDPOINT, kept in .dvc/config.local.
    remote_py(clone, "pull", **keys, S3_BUCKET=s3_bucket, S3_ENDPOINT=s3_server.endpoint)
    assert "endpointurl" in (clone / ".dvc" / "config.local").read_text()

    assert tree_hashes(clone / "data") == tree_hashes(repo / "data")
    assert len(tree_hashes(clone / "data")) == 301
    assert (clone / "listing.txt").read_bytes() == (repo / "listing.txt").read_bytes()
    status = run([*DVC, "status", "--cloud"], clone, **keys)
    assert "in sync" in status.stdout


@pytest.mark.parametrize(
    ("variable", "fix"),
    [
        ("AWS_SECRET_ACCESS_KEY", "wrong credentials: check AWS_SECRET_ACCESS_KEY"),
        ("AWS_ACCESS_KEY_ID", "wrong credentials: the server does not know AWS_ACCESS_KEY_ID"),
    ],
)
def test_wrong_credentials_are_named(
    s3_server: S3Server, s3_bucket: str, repo: Path, variable: str, fix: str
) -> None:
    env = {**s3_server.aws_env(), "S3_BUCKET": s3_bucket, variable: "not-the-right-one"}
    result = remote_py(repo, "push", check=False, **env)
    assert result.returncode != 0
    line = first_line(result)
    assert line.startswith("error: remote 'storage'"), result.stderr
    assert f"s3://{s3_bucket}/dvcstore" in line and s3_server.endpoint in line
    assert line.endswith(fix)
    assert config_local(repo) is None


def test_missing_credentials_are_named(repo: Path) -> None:
    result = remote_py(repo, "check", check=False, S3_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode != 0
    assert "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in first_line(result)


def test_missing_bucket_is_named(s3_server: S3Server, repo: Path) -> None:
    env = {**s3_server.aws_env(), "S3_BUCKET": "cd4ml-no-such-bucket"}
    result = remote_py(repo, "push", check=False, **env)
    assert result.returncode != 0
    assert first_line(result).endswith(
        "bucket cd4ml-no-such-bucket does not exist: create it or set S3_BUCKET"
    ), result.stderr
    assert config_local(repo) is None


def test_server_down_keeps_the_cache_and_a_retry_pushes(
    s3_server: S3Server, s3_bucket: str, repo: Path
) -> None:
    env = {**s3_server.aws_env(), "S3_BUCKET": s3_bucket}
    cache_before = tree_hashes(repo / ".dvc" / "cache")
    s3_server.stop_gateway()
    try:
        result = remote_py(repo, "push", check=False, **env)
    finally:
        s3_server.start()
    assert result.returncode != 0
    line = first_line(result)
    assert line.startswith("error: remote 'storage'"), result.stderr
    assert f"cannot reach {s3_server.endpoint}: is the server up? set S3_ENDPOINT" in line
    assert tree_hashes(repo / ".dvc" / "cache") == cache_before

    assert "304 files pushed" in remote_py(repo, "push", **env).stderr


def test_check_writes_the_overrides_only_once_the_remote_answered(
    s3_server: S3Server, s3_bucket: str, repo: Path
) -> None:
    env = {**s3_server.aws_env(), "S3_BUCKET": s3_bucket}
    remote_py(repo, "check", **env)
    written = config_local(repo)
    assert written is not None
    assert f"s3://{s3_bucket}/dvcstore" in written.decode()
    assert s3_server.endpoint in written.decode()
    # A later override the server refuses leaves the proven one byte for byte.
    wrong = {**env, "S3_BUCKET": "cd4ml-no-such-bucket"}
    for command in ("check", "push", "pull"):
        result = remote_py(repo, command, check=False, **wrong)
        assert result.returncode != 0
        assert "bucket cd4ml-no-such-bucket does not exist" in first_line(result), result.stderr
        assert config_local(repo) == written, command


@pytest.mark.parametrize("command", ["check", "push", "pull"])
@pytest.mark.parametrize("existing", [False, True], ids=["no config.local", "config.local"])
def test_unreachable_endpoint_is_not_written(repo: Path, command: str, existing: bool) -> None:
    if existing:
        run([*DVC, "remote", "modify", "--local", "storage", "region", "us-east-1"], repo)
    before = config_local(repo)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    keys = {"AWS_ACCESS_KEY_ID": "any", "AWS_SECRET_ACCESS_KEY": "any"}
    result = remote_py(
        repo, command, check=False, S3_ENDPOINT=endpoint, S3_BUCKET="elsewhere", **keys
    )
    assert result.returncode != 0
    line = first_line(result)
    assert line.startswith("error: remote 'storage' (s3://elsewhere/dvcstore"), result.stderr
    assert f"cannot reach {endpoint}: is the server up? set S3_ENDPOINT" in line
    assert "Traceback" not in result.stderr
    assert config_local(repo) == before
