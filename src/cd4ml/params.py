"""params.yaml through pydantic: one model per section, declared next to the code that reads it.

A stage reads only its own sections (`section`), so DVC's `params:` and the stage's code agree,
and a serving or gate setting never reruns the pipeline. Every key is required and typed
strictly (`true` is no number, "5" no integer); bounds are `Field` constraints. Whatever is
wrong comes back as one line that names the dotted key, the value and what is allowed:

    params.yaml: train.xgb.max_depth must be in [1, 64], got 100
    params.yaml: unknown key train.xgb.max_dept (did you mean train.xgb.max_depth?)

`python -m cd4ml.params` checks the whole file; `--markdown` prints docs/reference/params.md.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from cd4ml import problem as problems
from cd4ml.io import UserError, run_main

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """A section (or sub-section) of params.yaml: no unknown key, no default, strict types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
Fraction = Annotated[float, Field(ge=0, le=1)]
OpenFraction = Annotated[float, Field(gt=0, lt=1)]

# The loop's sections and the modules that declare them (imported only to check or document
# the whole file: a stage imports the modules of its own sections, nothing else). `problem`
# names the problem package; the problem declares its own sections (Problem.sections), and
# `train` is made from its model kinds (cd4ml.model.train_settings).
LOOP = {
    "problem": None,
    "validate": "cd4ml.validation:Validate",
    "split": "cd4ml.split:Split",
    "train": "cd4ml.model:train_settings",
    "evaluate": "cd4ml.metrics:Evaluate",
    "sanity": "cd4ml.checks:Sanity",
    "gate": "cd4ml.gate:Gate",
    "serve": "cd4ml.serve:Serve",
    "monitor": "cd4ml.monitor:Monitor",
    "rollout": "cd4ml.rollout:Rollout",
}


def read(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The params file as a mapping, with one clear line when it is missing or not YAML."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: params file not found") from None
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0]
        raise UserError(f"{path}: not valid YAML ({first}); fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: must be a mapping of sections, got {_shown(data)}")
    return data


def check_sections(data: Mapping[str, Any], known: list[str], path: str | Path) -> None:
    """Refuse a top-level key that is no section of the loop or the problem (a typo)."""
    for key in data:
        if key not in known:
            raise UserError(f"{path}: unknown key {key}{_hint(str(key), known, '')}")


def section(path: str | Path, name: str, model: type[M]) -> M:
    """The section `name` of the params file, checked against `model`."""
    data = read(path)
    if name not in data:
        raise UserError(f"{path}: section {name} is missing; add it (docs/reference/params.md)")
    return parse(model, data[name], name, path)


def value(path: str | Path, key: str) -> Any:
    """One top-level value (e.g. `problem`), present or a clear error."""
    data = read(path)
    if key not in data:
        raise UserError(f"{path}: {key} is missing; add it (docs/reference/params.md)")
    return data[key]


def problem(path: str | Path = "params.yaml") -> problems.Problem:
    """The problem the file's `problem` names, once its top-level keys are all known sections of
    the loop or of that problem."""
    data = read(path)
    found = problems.load(value(path, "problem"), str(path))
    check_sections(data, [*LOOP, *found.sections], path)
    return found


def problem_section(found: problems.Problem, name: str, path: str | Path = "params.yaml") -> Any:
    """The problem's own section `name` of the file; None if it declares none."""
    if name not in found.sections:
        return None
    return section(path, name, found.sections[name])


def parse(model: type[M], data: Any, where: str, path: str | Path = "params.yaml") -> M:
    """An instance of `model` from the YAML data of the section at `where`."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: {where} must be a mapping of keys, got {_shown(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(f"{path}: {_explain(model, err.errors()[0], where)}") from None


def _explain(model: type[BaseModel], error: Any, where: str) -> str:
    """One pydantic error as a sentence about the dotted key."""
    loc = tuple(error["loc"])
    key = ".".join([where, *map(str, loc)])
    kind = error["type"]
    got = error.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        names = list(parent.model_fields) if parent is not None else []
        return f"unknown key {key}{_hint(str(loc[-1]), names, key.rsplit('.', 1)[0])}"
    if kind == "missing":
        return f"{key} is missing; add it (every key is required)"
    if kind == "value_error" and not loc:  # a section's own check: its message names the keys
        return str(error["msg"]).removeprefix("Value error, ")
    spec = _field_at(model, loc)
    allowed = describe(spec) if spec is not None else error["msg"]
    if kind in ("model_type", "dict_type"):
        return f"{key} must be a mapping of keys, got {_shown(got)}"
    if kind.endswith("_type"):
        wanted = _KINDS.get(kind.removesuffix("_type"), "")
        text = f"{wanted} ({allowed})" if wanted and allowed != "any value" else allowed
        return f"{key} must be {text}, got {_shown(got)}"
    return f"{key} must be {allowed}, got {got!r}"


_KINDS = {"int": "an integer", "float": "a number", "string": "a string", "bool": "true or false"}
_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def _shown(value: Any) -> str:
    return "nothing" if value is None else f"{value!r} ({type(value).__name__})"


def _hint(key: str, names: list[str], where: str) -> str:
    """' (did you mean X?)' for the closest known key, else the known keys."""
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    prefix = f"{where}." if where else ""
    if close:
        return f" (did you mean {prefix}{close[0]}?)"
    return f"; known keys: {', '.join(names)}"


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The (sub-)model at a location of a section."""
    for part in loc:
        spec = model.model_fields.get(str(part))
        inner = spec.annotation if spec is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


def _field_at(model: type[BaseModel], loc: tuple) -> FieldInfo | None:
    parent = _model_at(model, loc[:-1])
    return None if parent is None else parent.model_fields.get(str(loc[-1]))


def describe(spec: FieldInfo) -> str:
    """The values a field allows, in words: 'in (0, 1]', '>= 1', 'one of warn, fail'."""
    extra = spec.json_schema_extra if isinstance(spec.json_schema_extra, dict) else {}
    if "allowed" in extra:
        return str(extra["allowed"])
    if typing.get_origin(spec.annotation) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(spec.annotation)))
    low = high = None
    for item in spec.metadata:
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            low = ("[" if isinstance(item, annotated_types.Ge) else "(", _num(_bound(item)))
        elif isinstance(item, annotated_types.Le | annotated_types.Lt):
            high = ("]" if isinstance(item, annotated_types.Le) else ")", _num(_bound(item)))
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]}"
    return "any value"


def _bound(item: Any) -> Any:
    for name in ("ge", "gt", "le", "lt"):
        if hasattr(item, name):
            return getattr(item, name)
    raise AssertionError(item)


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def leaves(model: type[BaseModel], where: str) -> list[tuple[str, FieldInfo]]:
    """Every key of a section as (dotted key, its field): for the docs and the tests."""
    out = []
    for name, spec in model.model_fields.items():
        key = f"{where}.{name}"
        inner = spec.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out.extend(leaves(inner, key))
        else:
            out.append((key, spec))
    return out


def models(found: problems.Problem) -> dict[str, type[BaseModel]]:
    """The model of every section of params.yaml (the loop's, then the problem's)."""
    out: dict[str, type[BaseModel]] = {}
    for name, where in LOOP.items():
        if where is None:
            continue
        module, attr = where.split(":")
        made = getattr(importlib.import_module(module), attr)
        out[name] = made(found.kinds) if attr == "train_settings" else made
    out.update(found.sections)
    return out


def check_all(path: str | Path = "params.yaml") -> dict[str, BaseModel]:
    """Check every section of the file (what no single stage does)."""
    return {name: section(path, name, model) for name, model in models(problem(path)).items()}


def markdown(path: str | Path = "params.yaml") -> str:
    """docs/reference/params.md: every key, its type, what it allows and its value here."""
    data = read(path)
    found = problem(path)
    lines = [
        "# params.yaml",
        "",
        "Every key is required. Generated by `python -m cd4ml.params --markdown` from the",
        "pydantic models that read each section (a test keeps this page current). Sections",
        f"of the problem ({data.get('problem')}): {', '.join(found.sections) or 'none'}.",
        "",
        "| key | type | allowed | value |",
        "|---|---|---|---|",
        f"| problem | string | an importable problem package | {data.get('problem')} |",
    ]
    for name, model in models(found).items():
        for key, spec in leaves(model, name):
            kind = _TYPE_NAMES.get(spec.annotation, str(spec.annotation))
            if typing.get_origin(spec.annotation) is Literal:
                kind = "string"
            current: Any = data
            for part in key.split("."):
                current = current.get(part) if isinstance(current, dict) else None
            lines.append(f"| {key} | {kind} | {describe(spec)} | {current} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Check params.yaml whole, or document it.")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--markdown", action="store_true", help="print the reference page")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown(args.params))
        return
    checked = check_all(args.params)
    print(f"{args.params}: every key of {len(checked)} sections is valid", flush=True)


if __name__ == "__main__":
    run_main(main)
