"""params.yaml declared once: every section, key, type and allowed range, checked on load.

Each stage and tool reads its section through `load(path)`, which checks the whole file: an
unknown key names the closest known one, a wrong type or a value out of range names the key,
the value and what is allowed. The values themselves live only in params.yaml (no defaults here),
so DVC sees every parameter a run used.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from kkbox.io import UserError


@dataclass(frozen=True)
class Bounds:
    """What a value may be: a numeric range (open or closed ends), a set of choices, a pattern."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    pattern: str | None = None
    exclude: tuple[Any, ...] = ()
    text: str | None = None  # how the allowed values read, where the rule alone reads badly

    def allows(self, value: Any) -> bool:
        """True when `value` (already of the declared type) keeps these bounds."""
        if self.choices and value not in self.choices:
            return False
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return False
        if value in self.exclude:
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """The allowed values in words: 'in (0, 1]', '>= 1', 'one of warn, fail'."""
        if self.text is not None:
            return self.text
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.pattern is not None:
            return f"matching {self.pattern}"
        if self.low is None and self.high is None:
            return "any value"
        if self.high is None:
            text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
        elif self.low is None:
            text = f"{'<' if self.high_open else '<='} {_num(self.high)}"
        else:
            text = (
                f"in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}"
                f"{')' if self.high_open else ']'}"
            )
        return text + "".join(f", not {_num(x)}" for x in self.exclude)


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _param(**bounds: Any) -> Any:
    """A required key of params.yaml, with the bounds its value must keep."""
    return field(metadata={"bounds": Bounds(**bounds)})


def _fraction(**ends: Any) -> Any:
    return _param(low=0, high=1, **ends)


SEED = dict(low=0, high=2**32 - 1)


@dataclass(frozen=True)
class Generate:
    """The synthetic data generator (make data)."""

    seed: int = _param(**SEED)
    positive_rate: float = _fraction(low_open=True, high_open=True)
    new_member_rows_eval: float = _param(low=0, high=0.5)
    new_member_rows_test: float = _param(low=0, high=0.5)
    new_song_rows_eval: float = _param(low=0, high=0.5)
    new_song_rows_test: float = _param(low=0, high=0.5)
    song_trend: float = _param(low=0, high=3)
    release_fade: float = _param(low=0, high=1, low_open=True)
    member_trend: float = _param(low=0, high=3)
    source_drift: float = _param(low=0, high=3)

    def time_effects(self) -> dict[str, float]:
        """The keys of cd4ml.synth.TimeEffects (every key but seed and positive_rate)."""
        return {k: v for k, v in asdict(self).items() if k not in ("seed", "positive_rate")}


@dataclass(frozen=True)
class Validate:
    """Stage validate: drift thresholds against the reference profile."""

    drift_severity: str = _param(choices=("warn", "fail"))
    max_missing_rate_change: float = _fraction()
    max_category_tvd: float = _fraction()
    max_new_category_share: float = _fraction()
    max_positive_rate_change: float = _fraction()
    min_join_coverage: float = _fraction()

    def thresholds(self) -> dict[str, float]:
        """The numeric settings, as the report shows them."""
        return {k: v for k, v in asdict(self).items() if k != "drift_severity"}


@dataclass(frozen=True)
class Split:
    """Stage split: the eval set is the last rows of train.csv."""

    eval_fraction: float = _fraction(low_open=True, high_open=True)


@dataclass(frozen=True)
class Preprocess:
    """Stage preprocess: vocabularies and target encodings."""

    min_category_count: int = _param(low=1)
    target_smoothing: float = _param(low=0)
    target_folds: int = _param(low=2, high=100)
    seed: int = _param(**SEED)
    valid_fraction: float = _param(low=0, high=0.5, low_open=True, high_open=True)


@dataclass(frozen=True)
class XGB:
    """train.xgb: XGBoost's hist trees."""

    n_estimators: int = _param(low=1)
    learning_rate: float = _fraction(low_open=True)
    max_depth: int = _param(low=1, high=64)
    min_child_weight: float = _param(low=0)
    subsample: float = _fraction(low_open=True)
    colsample_bytree: float = _fraction(low_open=True)
    max_bin: int = _param(low=2, high=65536)
    early_stopping_rounds: int = _param(low=1)
    n_jobs: int = _param(low=0)
    device: str = _param(pattern=r"cpu|cuda(:\d+)?", text="cpu, cuda or cuda:<ordinal>")


@dataclass(frozen=True)
class RF:
    """train.rf: scikit-learn's random forest."""

    n_estimators: int = _param(low=1)
    max_depth: int = _param(low=1)
    min_samples_leaf: int = _param(low=1)
    max_features: float = _fraction(low_open=True)
    max_samples: float = _fraction(low_open=True)
    n_jobs: int = _param(low=-1, exclude=(0,))


@dataclass(frozen=True)
class Train:
    """Stage train: which model, its seed, the early-stopping slice and each model's settings."""

    model: str = _param(choices=("xgb", "rf"))
    seed: int = _param(**SEED)
    xgb: XGB
    rf: RF


@dataclass(frozen=True)
class Evaluate:
    """Stage evaluate."""

    threshold: float = _fraction(low_open=True, high_open=True)
    max_valid_gap: float = _fraction()


@dataclass(frozen=True)
class Sanity:
    """Stage sanity: the checks a model must pass before it is released."""

    calibration_tolerance: float = _fraction()
    min_roc_auc: float = _fraction()
    cv_folds: int = _param(low=2, high=100)
    cv_max_deviation: float = _fraction()
    cv_max_rows: int = _param(low=20)
    seed: int = _param(**SEED)

    def __post_init__(self) -> None:
        if self.cv_max_rows < 10 * self.cv_folds:
            raise UserError(
                f"params.yaml: sanity.cv_max_rows={self.cv_max_rows} is too small for "
                f"sanity.cv_folds={self.cv_folds}; use at least {10 * self.cv_folds}"
            )


@dataclass(frozen=True)
class Gate:
    """The release gate (make gate / promote): challenger against champion on the same rows."""

    min_improvement: float = _fraction(high_open=True)
    bootstrap_rounds: int = _param(low=10, high=100_000)
    confidence: float = _fraction(low_open=True, high_open=True)
    decide_on: str = _param(choices=("difference", "lower_bound"))
    seed: int = _param(**SEED)


@dataclass(frozen=True)
class Serve:
    """The HTTP service of the release bundle (make serve)."""

    max_batch_rows: int = _param(low=1, high=1_000_000)
    workers: int = _param(low=1, high=64)
    prediction_log: str = _param(text="a folder, an s3:// prefix, or empty (no log)")
    log_rows_per_file: int = _param(low=1, high=10_000_000)
    log_flush_seconds: float = _param(low=0, low_open=True, high=3600)


@dataclass(frozen=True)
class Monitor:
    """make monitor: the prediction log against the served bundle's training profile (the
    missing-rate and category-mix thresholds are the validate stage's)."""

    window_hours: float = _param(low=0, low_open=True)
    buckets: int = _param(low=1, high=1000)
    min_rows: int = _param(low=1)
    max_unknown_share_change: float = _fraction()
    max_mean_probability_change: float = _fraction()


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml."""

    engine: str = _param(choices=("local", "dask"))
    generate: Generate
    validate: Validate
    split: Split
    preprocess: Preprocess
    train: Train
    evaluate: Evaluate
    sanity: Sanity
    gate: Gate
    serve: Serve
    monitor: Monitor


def load(path: str | Path = "params.yaml") -> Params:
    """Read and check the whole params file; one UserError line names the first problem."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: params file not found") from None
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0]
        raise UserError(f"{path}: not valid YAML ({first}); fix the file") from None
    try:
        return parse(Params, data, "")
    except UserError as err:
        if path.name == "params.yaml":
            raise
        raise UserError(str(err).replace("params.yaml: ", f"{path}: ", 1)) from None


def parse(cls: type, data: Any, where: str) -> Any:
    """An instance of the dataclass `cls` from YAML data at `where` (a dotted key)."""
    label = where or "the file"
    if not isinstance(data, dict):
        got = "nothing" if data is None else f"{data!r} ({type(data).__name__})"
        raise UserError(f"params.yaml: {label} must be a mapping of keys, got {got}")
    declared = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in declared:
            hint = _hint(key, cls, where)
            raise UserError(f"params.yaml: unknown key {_dotted(where, key)}{hint}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, spec in declared.items():
        key = _dotted(where, name)
        if name not in data:
            raise UserError(f"params.yaml: {key} is missing; add it (every key is required)")
        values[name] = _value(hints[name], spec, data[name], key)
    return cls(**values)


def _dotted(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _hint(key: Any, cls: type, where: str) -> str:
    """' (did you mean X?)' for the closest declared key, where one is close."""
    close = difflib.get_close_matches(str(key), [f.name for f in fields(cls)], n=1, cutoff=0.6)
    if close:
        return f" (did you mean {_dotted(where, close[0])}?)"
    return f"; known keys: {_names(cls)}"


def _names(cls: type) -> str:
    return ", ".join(f.name for f in fields(cls))


_KINDS = {int: "an integer", float: "a number", str: "a string"}


def _value(kind: type, spec: Any, value: Any, key: str) -> Any:
    if is_dataclass(kind):
        return parse(kind, value, key)
    bounds: Bounds = spec.metadata.get("bounds", Bounds())
    # bool is an int subclass in Python: `true` must not pass as a number.
    ok = not isinstance(value, bool) and (
        isinstance(value, kind) or (kind is float and isinstance(value, int))
    )
    if not ok:
        raise UserError(
            f"params.yaml: {key} must be {_KINDS[kind]} ({bounds.describe()}), "
            f"got {value!r} ({type(value).__name__})"
        )
    value = float(value) if kind is float else value
    if not bounds.allows(value):
        raise UserError(f"params.yaml: {key} must be {bounds.describe()}, got {value!r}")
    return value


def leaves(cls: type = Params, where: str = "") -> list[tuple[str, type, Bounds]]:
    """Every key of the declaration as (dotted key, type, bounds): for docs and tests."""
    hints = typing.get_type_hints(cls)
    out = []
    for spec in fields(cls):
        key = _dotted(where, spec.name)
        if is_dataclass(hints[spec.name]):
            out.extend(leaves(hints[spec.name], key))
        else:
            out.append((key, hints[spec.name], spec.metadata.get("bounds", Bounds())))
    return out
