"""Where a model comes from: the content of the code and params that built it, the data version
DVC recorded, and the libraries.

The bundle records a content hash of its build, not a git commit: every stage's code (the
Python dependencies of dvc.yaml's stages, folders expanded as DVC hashes them) and every
parameter the stages depend on. The same content gives the same bundle on every machine and in
every commit, so committing code needs no second commit for dvc.lock, and a fresh clone rebuilds
what dvc.lock records. Which commits hold that code is for git to answer:

    python -m cd4ml.provenance --bundle models/bundle --rev HEAD
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pathspec
import yaml

from cd4ml.io import UserError, run_main

LIBRARIES = ("xgboost", "scikit-learn", "skops", "pandas", "pyarrow", "numpy", "dvc")


def data_version(dvc_file_text: str) -> str | None:
    """The md5 that a .dvc file (its text) records for its output; None when it records none."""
    try:
        outs = (yaml.safe_load(dvc_file_text) or {}).get("outs") or [{}]
        return outs[0].get("md5")
    except (yaml.YAMLError, AttributeError):
        return None


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str | None]:
    """Installed version of each library; None where it is not installed (dvc on a GPU box)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def python_version() -> str:
    """The running Python's major.minor (e.g. 3.11): a patch release changes no result, and the
    bundle must be the same on every machine that builds it."""
    return ".".join(platform.python_version_tuple()[:2])


def _stages(pipeline: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(pipeline.read_text(encoding="utf-8"))["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise UserError(f"{pipeline}: cannot read its stages ({err})") from None


def _is_code(path: Path) -> bool:
    """A Python file, or a Python package's folder (not a data folder)."""
    return path.suffix == ".py" if path.is_file() else (path / "__init__.py").is_file()


def code_deps(pipeline: Path) -> list[str]:
    """The code every stage of the pipeline depends on: its deps that are Python files or
    packages (the stage scripts, the loop's modules, the problem's package), as dvc.yaml names
    them."""
    root = pipeline.resolve().parent
    found = {
        dep
        for stage in _stages(pipeline).values()
        for dep in stage.get("deps", [])
        if isinstance(dep, str) and _is_code(root / dep)
    }
    return sorted(found)


def param_keys(pipeline: Path) -> list[str]:
    """Every parameter (section or dotted key of params.yaml) a stage of the pipeline lists."""
    keys: set[str] = set()
    for stage in _stages(pipeline).values():
        for entry in stage.get("params", []):
            if isinstance(entry, str):
                keys.add(entry)
            elif isinstance(entry, dict):  # {other params file: [keys]}: recorded the same way
                keys.update(k for listed in entry.values() for k in listed or [])
    # A key under a listed section is in that section's value already.
    return sorted(k for k in keys if k.split(".")[0] == k or k.split(".")[0] not in keys)


def _ignored(root: Path) -> pathspec.GitIgnoreSpec:
    """What DVC leaves out of a folder's hash: .dvcignore's patterns, read as DVC reads them
    (git's rules; 'gitwildmatch' is deprecated)."""
    path = root / ".dvcignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return pathspec.GitIgnoreSpec.from_lines(lines)


def code_files(root: Path, deps: list[str]) -> list[str]:
    """The files of the deps (folders expanded, .dvcignore honoured), relative to `root`."""
    ignored = _ignored(root)
    files = set()
    for dep in deps:
        path = root / dep
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in found:
            rel = file.relative_to(root).as_posix()
            if not ignored.match_file(rel):
                files.add(rel)
    return sorted(files)


def _digest(lines: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def code_digest(root: Path, deps: list[str], read: Any = None) -> dict[str, Any]:
    """The sha256 of every code file and of them all (their paths and contents)."""
    read = read or (lambda rel: (root / rel).read_bytes())
    files = {rel: hashlib.sha256(read(rel)).hexdigest() for rel in code_files(root, deps)}
    return {"sha256": _digest(f"{sha}  {rel}" for rel, sha in files.items()), "files": files}


def params_of(params: dict, keys: list[str]) -> dict[str, Any]:
    """The values of these keys (sections or dotted keys) of a params mapping."""
    out = {}
    for key in keys:
        value: Any = params
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[key] = value
    return out


def build(root: Path, pipeline: Path, params: dict) -> dict[str, Any]:
    """The build of a bundle: its code's digest, its params, and one sha256 of both."""
    code = code_digest(root, code_deps(pipeline))
    values = params_of(params, param_keys(pipeline))
    text = json.dumps(values, sort_keys=True)
    return {"sha256": _digest([code["sha256"], text]), "code": code, "params": values}


def compare(manifest: dict, root: Path, rev: str | None, params: str = "params.yaml") -> list[str]:
    """What differs at `rev` (the working tree when None) from what built the bundle: the code
    files whose content differs, and `params.yaml: <key>` for each parameter whose value
    differs; [] when both are the same."""

    def read(rel: str) -> bytes:
        if rev is None:
            return (root / rel).read_bytes() if (root / rel).exists() else b""
        shown = subprocess.run(
            ["git", "show", f"{rev}:{rel}"], cwd=root, capture_output=True, check=False
        )
        return shown.stdout if shown.returncode == 0 else b""

    built = manifest.get("build", {})
    files = built.get("code", {}).get("files", {})
    code = [rel for rel, sha in files.items() if hashlib.sha256(read(rel)).hexdigest() != sha]
    try:
        now = params_of(yaml.safe_load(read(params)) or {}, list(built.get("params", {})))
    except yaml.YAMLError:
        now = {}
    keys = [f"{params}: {k}" for k, v in built.get("params", {}).items() if now.get(k) != v]
    return sorted(code) + keys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Does a git revision hold a bundle's code?")
    parser.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    parser.add_argument("--rev", help="a git revision (default: the working tree)")
    args = parser.parse_args(argv)
    path = args.bundle / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read it ({err})") from None
    where = args.rev or "the working tree"
    differing = compare(manifest, Path.cwd(), args.rev)
    if differing:
        raise UserError(
            f"{where} does not hold the code and params of {args.bundle}: {len(differing)} "
            f"differ ({', '.join(differing[:5])})"
        )
    count = len(manifest.get("build", {}).get("code", {}).get("files", {}))
    print(
        f"{where} holds the code and params of {args.bundle}: all {count} files and every "
        "parameter are the same",
        flush=True,
    )


if __name__ == "__main__":
    run_main(main)
