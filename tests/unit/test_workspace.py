"""tools.workspace: a throw-away copy of the repository as a fresh git repository."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cd4ml.shell import checked, git
from tests.project import ROOT, link_venv
from tools import workspace


def _tree(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


@pytest.fixture
def source(tmp_path) -> Path:
    """A small git repository: committed and new files, and ignored data, logs and
    environment."""
    root = tmp_path / "source"
    for rel, text in {
        ".gitignore": "/data/\n/logs/\n.venv/\n__pycache__/\n",
        "dvc.yaml": "stages: {}\n",
        "src/kkbox/io.py": "x = 1\n",
        "data/train.csv": "a\n1\n",
        "logs/predictions-1.parquet": "the service's prediction log",
        ".venv/bin/python": "not a python\n",
        "src/kkbox/__pycache__/io.cpython-311.pyc": "bytecode",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    checked(git("init", "-q", "-b", "main", cwd=root), "git init")
    checked(git("add", "-A", cwd=root), "git add")
    checked(git("commit", "-qm", "source", cwd=root, env=workspace.IDENTITY), "git commit")
    (root / "new.txt").write_text("not committed yet\n")
    return root


def _assert_fresh_repo(copy: Path) -> None:
    assert checked(git("status", "--porcelain", cwd=copy), "git status") == ""
    assert checked(git("rev-list", "--count", "HEAD", cwd=copy), "git rev-list").strip() == "1"


def test_copy_project_is_a_fresh_repo_with_the_files_but_no_data_or_venv(source, tmp_path):
    copy = workspace.copy_project(tmp_path / "copy", root=source)
    assert _tree(copy) == {".gitignore", "dvc.yaml", "src/kkbox/io.py", "new.txt"}
    assert (copy / "new.txt").read_text() == "not committed yet\n"
    _assert_fresh_repo(copy)


def test_copy_project_empties_the_destination_first(source, tmp_path):
    dest = tmp_path / "copy"
    (dest / "stale").mkdir(parents=True)
    (dest / "stale" / "old.txt").write_text("from before\n")
    workspace.copy_project(dest, root=source)
    assert not (dest / "stale").exists()


def test_copy_project_without_git_in_the_source_skips_data_venv_and_caches(source, tmp_path):
    plain = Path(
        shutil.copytree(source, tmp_path / "plain", ignore=shutil.ignore_patterns(".git"))
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository around `plain`
        assert git("rev-parse", cwd=plain).returncode != 0
        copy = workspace.copy_project(tmp_path / "copy", root=plain)
    assert _tree(copy) == {".gitignore", "dvc.yaml", "src/kkbox/io.py", "new.txt"}
    _assert_fresh_repo(copy)


def test_copy_project_of_this_repository_has_the_tools_and_no_venv(tmp_path):
    copy = workspace.copy_project(tmp_path / "copy")
    assert (copy / "tools/workspace.py").is_file() and (copy / "dvc.yaml").is_file()
    assert (copy / "tools/s3-server.sh").stat().st_mode & 0o111  # still executable
    assert not (copy / ".venv").exists() and not (copy / "data").exists()
    assert not (copy / ".dvc" / "cache").exists()
    _assert_fresh_repo(copy)


def test_a_clone_sharing_the_environment_does_not_reinstall_into_it(tmp_path):
    """A git clone's Pipfile.lock is newer than the environment: with the shared .venv linked,
    `make install` would reinstall into it and point it at the clone (then deleted)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    link_venv(clone)
    question = subprocess.run(["make", "-q", "install"], cwd=clone, capture_output=True)
    assert question.returncode == 0, "make would reinstall into the shared .venv"
