"""kkbox.provenance: the data version from a .dvc file, library versions, the git commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from cd4ml import provenance
from tests.project import run


def test_data_version_reads_the_md5_of_the_first_output():
    text = "outs:\n- md5: 0123abcd.dir\n  size: 10\n  path: data\n"
    assert provenance.data_version(text) == "0123abcd.dir"
    assert provenance.data_version("") is None
    assert provenance.data_version("outs: []\n") is None
    assert provenance.data_version("{not: [yaml") is None


def test_library_versions_are_the_installed_ones():
    import xgboost

    versions = provenance.library_versions(("xgboost", "no-such-library-here"))
    assert versions == {"xgboost": xgboost.__version__, "no-such-library-here": None}
    assert set(provenance.library_versions()) == set(provenance.LIBRARIES)
    assert provenance.python_version().startswith("3.")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed git repository with code, params and a data file: the working directory."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    path = tmp_path / "project"
    (path / "src").mkdir(parents=True)
    (path / "src" / "train.py").write_text("print('train')\n")
    (path / "params.yaml").write_text("train:\n  seed: 1\n")
    (path / "README.md").write_text("# project\n")
    run(["git", "init", "-q"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "first"], path)
    monkeypatch.chdir(path)
    return path


def head(path: Path) -> str:
    return run(["git", "rev-parse", "HEAD"], path).stdout.strip()


def test_git_commit_outside_a_repository_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert provenance.git_commit() == {"commit": None, "dirty": None}


def test_git_commit_before_the_first_commit_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    run(["git", "init", "-q"], tmp_path)
    monkeypatch.chdir(tmp_path)
    assert provenance.git_commit() == {"commit": None, "dirty": None}


def test_git_commit_is_head_and_clean_right_after_a_commit(repo):
    commit = head(repo)
    assert len(commit) == 40
    assert provenance.git_commit() == {"commit": commit, "dirty": False}


def test_a_commit_of_anything_but_the_code_keeps_the_code_commit(repo):
    # A release commits dvc.lock, metrics and baseline.txt: the bundle of its clone is the same.
    code_commit = head(repo)
    (repo / "README.md").write_text("# project, released\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "release"], repo)
    assert head(repo) != code_commit
    assert provenance.git_commit() == {"commit": code_commit, "dirty": False}
    (repo / "params.yaml").write_text("train:\n  seed: 2\n")
    run(["git", "commit", "-qam", "new params"], repo)
    assert provenance.git_commit() == {"commit": head(repo), "dirty": False}


def test_untracked_files_and_changes_outside_the_code_do_not_make_it_dirty(repo):
    (repo / "src" / "scratch.py").write_text("x = 1\n")
    (repo / "dvc.yaml").write_text("stages: {}\n")  # not committed: untracked
    (repo / "README.md").write_text("# project, edited\n")
    assert provenance.git_commit() == {"commit": head(repo), "dirty": False}


@pytest.mark.parametrize("edit", ["params", "code", "staged", "deleted"])
def test_a_change_to_the_code_or_params_makes_it_dirty(repo, edit):
    if edit == "params":
        (repo / "params.yaml").write_text("train:\n  seed: 2\n")
    elif edit == "code":
        (repo / "src" / "train.py").write_text("print('changed')\n")
    elif edit == "staged":
        (repo / "src" / "new.py").write_text("x = 1\n")
        run(["git", "add", "src/new.py"], repo)
    else:
        (repo / "params.yaml").unlink()
    assert provenance.git_commit() == {"commit": head(repo), "dirty": True}
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "second"], repo)
    assert provenance.git_commit() == {"commit": head(repo), "dirty": False}
