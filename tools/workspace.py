"""A throw-away copy of this repository as a fresh git repository: for tests and the bench."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cd4ml.shell import checked, git

ROOT = Path(__file__).resolve().parents[1]

IDENTITY = {
    "GIT_AUTHOR_NAME": "cd4ml",
    "GIT_AUTHOR_EMAIL": "cd4ml@cd4ml-kkbox.invalid",
    "GIT_COMMITTER_NAME": "cd4ml",
    "GIT_COMMITTER_EMAIL": "cd4ml@cd4ml-kkbox.invalid",
}
# Without git (a bare GPU machine) every file is copied but these folders: outputs, data and
# what .gitignore keeps out of a clone.
_TOP_LEVEL = {
    *(".git", ".venv", ".tools", ".cache", ".dask-scratch", "bench", "data", "clean_data"),
    *("models", "predictions", "incoming", "logs", "reports", "served"),
}
_ANY_NAME = {"__pycache__", ".pytest_cache", ".ruff_cache"}
_PATHS = {".dvc/cache", ".dvc/tmp"}


def project_files(root: Path = ROOT) -> list[str]:
    """The repository's files as a fresh clone has them, plus new ones not ignored by git."""
    listed = git("ls-files", "-co", "--exclude-standard", "-z", cwd=root)
    if listed.returncode == 0:
        return [rel for rel in listed.stdout.split("\0") if rel and (root / rel).is_file()]
    files = []
    for folder, dirs, names in os.walk(root):
        rel = Path(folder).relative_to(root)
        skip = _TOP_LEVEL if rel == Path() else set()
        dirs[:] = [
            d for d in dirs if d not in skip | _ANY_NAME and (rel / d).as_posix() not in _PATHS
        ]
        files.extend((rel / name).as_posix() for name in names)
    return files


def copy_project(dest: Path, root: Path = ROOT, commit: bool = True) -> Path:
    """Copy the repository's files into `dest` (emptied first) and commit them there, so that
    DVC and git work in the copy as in a fresh clone: no DVC cache, no data, no outputs."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in project_files(root):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
    if commit:
        for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-qm", "a copy")):
            checked(git(*args, cwd=dest, env=IDENTITY), f"git {args[0]} in {dest}")
    return dest
