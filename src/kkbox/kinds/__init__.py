"""The model kinds of the problem, one module each: its settings (train.<name> in params.yaml),
building, fitting, saving in the library's own format, loading with a trust check, scoring and
importances. A new kind is a new module here that defines KIND, plus its section in params.yaml
(cd4ml.problem.discover_kinds finds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.io import UserError


def normalised(values: Any, names: list[str]) -> dict[str, float]:
    """Importances as shares of their sum, by feature name."""
    values = np.abs(np.asarray(values, dtype=float))
    total = values.sum() or 1.0
    return {n: float(v / total) for n, v in zip(names, values, strict=True)}


def skops_load(path: Path, trusted: tuple[str, ...], expected: type) -> Any:
    """A skops file, refused before it is loaded when it needs a type outside `trusted`, and
    after when it holds anything but an `expected`."""
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as err:  # skops raises zip, JSON and key errors for a foreign file
        raise UserError(f"{path}: not a skops file ({type(err).__name__})") from None
    refused = sorted(set(untrusted) - set(trusted))
    if refused:
        raise UserError(f"{path}: holds types this model kind never needs: {refused}")
    model = skops.io.load(path, trusted=list(trusted))
    if not isinstance(model, expected):
        raise UserError(f"{path}: holds a {type(model).__name__}, not a {expected.__name__}")
    return model
