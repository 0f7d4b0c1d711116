"""Where a model comes from: the data version DVC recorded, and the libraries that made it."""

from __future__ import annotations

import importlib.metadata
import platform

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
