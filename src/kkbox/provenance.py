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


# What decides a model besides the data.
CODE = ("src", "params.yaml", "dvc.yaml", "Pipfile.lock")


def git_commit() -> dict[str, str | bool | None]:
    """The last commit that changed the code or params (CODE), and whether they differ from it
    now (a run before its changes are committed); commit None outside a git repository.

    Not HEAD: a commit of only dvc.lock or metrics (the release's) changes nothing that made
    the model, so every clone of it builds a byte-identical bundle."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False)

    # ":/" makes each path relative to the repository's root, wherever this runs from.
    paths = ["--", *(f":/{p}" for p in CODE)]
    try:
        last = git("log", "-1", "--format=%H", *paths)
    except FileNotFoundError:  # no git on this machine
        return {"commit": None, "dirty": None}
    if last.returncode != 0 or not last.stdout.strip():
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no", *paths)
    return {"commit": last.stdout.strip(), "dirty": bool(status.stdout.strip())}
