"""Where a model comes from: the data version DVC recorded, and the libraries that made it."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess

import yaml

LIBRARIES = ("xgboost", "scikit-learn", "pandas", "pyarrow", "numpy", "dvc")


def data_version(dvc_file_text: str) -> str | None:
    """The md5 that a .dvc file (its text) records for its output; None when it records none."""
    try:
        outs = (yaml.safe_load(dvc_file_text) or {}).get("outs") or [{}]
        return outs[0].get("md5")
    except (yaml.YAMLError, AttributeError):
        return None


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed version of each library; None where it is not installed (dvc on a GPU box)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def python_version() -> str:
    """The running Python's version, e.g. 3.11.7."""
    return platform.python_version()


# What decides a model besides the data: a change to these that is not committed yet makes
# the recorded commit only the parent of the code that ran.
CODE = ("src", "params.yaml", "dvc.yaml", "Pipfile.lock")


def git_commit() -> dict[str, str | bool | None]:
    """The commit of the working tree, and whether the code or params differ from it (a run
    before its changes are committed); commit None outside a git repository."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False)

    try:
        head = git("rev-parse", "--verify", "--quiet", "HEAD")
    except FileNotFoundError:  # no git on this machine
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    # ":/" makes each path relative to the repository's root, wherever this runs from.
    status = git("status", "--porcelain", "--untracked-files=no", "--", *(f":/{p}" for p in CODE))
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
