"""Shared by the model kinds' unit tests: a small frame with a learnable signal, a kind fitted
on it, and a skops file rewritten to smuggle in an untrusted type."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cd4ml import params
from tests.project import ROOT


def committed(kind: str) -> dict[str, Any]:
    """The committed params.yaml's train.<kind> section."""
    return params.read(ROOT / "params.yaml")["train"][kind]


# What makes each kind small and quick for a test: few trees, one core.
QUICK = {"xgb": {"n_estimators": 20, "n_jobs": 1}, "rf": {"n_estimators": 10, "n_jobs": 1}}


def small(kind: Any, **changes: Any) -> Any:
    """The committed settings of a kind, made quick (QUICK), with `changes`."""
    values = {**committed(kind.name), **QUICK.get(kind.name, {}), **changes}
    return kind.Settings.model_validate(values)


def frame(n: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature `a` carries the signal, `b` is noise on another scale, `c` is missing in part."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    x = pd.DataFrame({"a": a, "b": 100 * rng.normal(size=n), "c": rng.normal(size=n)})
    x.loc[::7, "c"] = np.nan
    y = (a + 0.3 * rng.normal(size=n) > 0).astype(int)
    return x, y


def fitted(kind: Any, settings: Any, seed: int = 42) -> tuple[Any, dict, pd.DataFrame, np.ndarray]:
    """A model of `kind` built with `settings`, fitted on the first 900 rows of `frame()` with
    the last 100 as the valid rows; what the fit reported, and the frame."""
    x, y = frame()
    model = kind.build(settings, seed)
    info = kind.fit(model, x[:900], y[:900], (x[900:], y[900:]))
    return model, info, x, y


def tamper(path: Path, module: str, name: str) -> None:
    """Rewrite a skops file so that its first object of `module.name` is a subprocess.Popen."""
    with zipfile.ZipFile(path) as src:
        files = {item: src.read(item) for item in src.namelist()}
    schema = json.loads(files["schema.json"])
    todo = [schema]
    while todo:
        node = todo.pop(0)
        if isinstance(node, dict):
            if (node.get("__module__"), node.get("__class__")) == (module, name):
                node.update({"__module__": "subprocess", "__class__": "Popen"})
                break
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    else:
        raise AssertionError(f"no {module}.{name} in {path}")
    files["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as out:
        for item, data in files.items():
            out.writestr(item, data)
