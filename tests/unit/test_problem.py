"""cd4ml.problem: the one interface between the loop and a problem. The loop never imports a
problem (read from the code's imports); a problem package is loaded by name, with one clear line
for each way it can be wrong; model kinds are found by module."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

import kkbox
from cd4ml import params
from cd4ml import problem as problems
from cd4ml.io import UserError
from tests.imports import SRC
from tests.project import ROOT

PROBLEMS = ("kkbox",)


def problem_imports(source: str) -> list[str]:
    """Every import of a problem package in a source text, wherever it stands (a function,
    an `if TYPE_CHECKING:` block), and every importlib.import_module of one by a literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in PROBLEMS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PROBLEMS:
            found.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            literal = node.args[0] if node.args else None
            if isinstance(literal, ast.Constant) and str(literal.value).split(".")[0] in PROBLEMS:
                found.append(literal.value)
    return found


def test_no_module_of_the_loop_or_a_stage_imports_the_problem():
    files = [*sorted((SRC / "cd4ml").rglob("*.py")), *sorted(SRC.glob("*.py"))]
    assert len(files) > 30
    found = {
        str(path.relative_to(ROOT)): imports
        for path in files
        if (imports := problem_imports(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_an_import_of_the_problem_is_found_wherever_it_stands():
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        import importlib
        if TYPE_CHECKING:
            from kkbox.tables import Play
        def f():
            import kkbox.features
            return importlib.import_module("kkbox")
        """
    )
    assert sorted(problem_imports(source)) == ["kkbox", "kkbox.features", "kkbox.tables"]
    assert problem_imports("import cd4ml.model\nfrom cd4ml import io\n") == []


def test_kkbox_is_a_problem_with_kinds_found_by_module():
    assert isinstance(kkbox.PROBLEM, problems.Problem)
    assert sorted(kkbox.PROBLEM.kinds) == ["logreg", "rf", "xgb"]
    for name, kind in kkbox.PROBLEM.kinds.items():
        assert isinstance(kind, problems.ModelKind)
        assert kind.name == name
    assert problems.load("kkbox") is kkbox.PROBLEM


def _package(root: Path, name: str, files: dict[str, str]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for file, text in {"__init__.py": "", **files}.items():
        (folder / file).write_text(textwrap.dedent(text), encoding="utf-8")


def test_a_new_kind_is_a_new_module(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(
        tmp_path,
        "mykinds",
        {
            "copied.py": "from kkbox.kinds.logreg import KIND as KIND\n",
            "helpers.py": "WEIGHT = 2\n",  # no KIND: not a kind
        },
    )
    assert list(problems.discover_kinds("mykinds")) == ["logreg"]


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("noproblem", "", "defines no PROBLEM"),
        ("halfproblem", "PROBLEM = object()\n", "lacks ['name', 'description'"),
    ],
)
def test_a_package_that_is_no_problem_is_refused_in_one_line(
    tmp_path, monkeypatch, name, text, words
):
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, name, {"__init__.py": text})
    with pytest.raises(UserError, match=r"params\.yaml: ") as err:
        problems.load(name)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["kkbocks", "", None, 3])
def test_a_problem_that_cannot_be_imported_is_named(name):
    with pytest.raises(UserError, match=r"params.yaml: problem") as err:
        problems.load(name)
    assert "docs/adapt.md" in str(err.value) or "must name" in str(err.value)


def _params(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text(encoding="utf-8") + extra)
    return path


def test_from_params_loads_the_problem_params_names(tmp_path):
    assert params.problem(_params(tmp_path)) is kkbox.PROBLEM
    generate = params.problem_section(kkbox.PROBLEM, "generate", _params(tmp_path))
    assert generate.seed == 2017
    assert params.problem_section(kkbox.PROBLEM, "no-such-section", _params(tmp_path)) is None


def test_a_top_level_key_that_is_no_section_is_refused_with_a_hint(tmp_path):
    with pytest.raises(UserError, match=r"unknown key preprocss \(did you mean preprocess\?\)"):
        params.problem(_params(tmp_path, "preprocss: {}\n"))


def test_a_missing_problem_key_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text(encoding="utf-8").replace("problem: kkbox\n", "")
    path.write_text(text)
    with pytest.raises(UserError, match="problem is missing"):
        params.problem(path)
