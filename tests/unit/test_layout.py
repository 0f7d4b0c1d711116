"""The tests mirror the code: every module of src/cd4ml, src/kkbox (its kinds too) and tools/ has
its unit test file, and every end-to-end test is marked slow (so `make unit` leaves it out)."""

from __future__ import annotations

import ast

from tests.project import ROOT

TESTS = ROOT / "tests"
PACKAGES = {
    "cd4ml": ROOT / "src" / "cd4ml",
    "kkbox": ROOT / "src" / "kkbox",
    "kkbox.kinds": ROOT / "src" / "kkbox" / "kinds",
    "tools": ROOT / "tools",
}


def _modules() -> dict[str, list[str]]:
    """Module name -> the packages that have a module of that name (`__init__` left out)."""
    found: dict[str, list[str]] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.glob("*.py")):
            if path.stem != "__init__":
                found.setdefault(path.stem, []).append(package)
    return found


def test_every_module_has_its_unit_test_file():
    modules = _modules()
    assert len(modules) >= 40  # the rule is checked on the real packages, not on an empty glob
    missing = [
        f"{'/'.join(packages)}.{name}: tests/unit/test_{name}.py"
        for name, packages in sorted(modules.items())
        if not (TESTS / "unit" / f"test_{name}.py").is_file()
    ]
    assert missing == [], "modules without a unit test file"


def test_no_two_modules_share_a_name():
    # One tests/unit/test_<module>.py per module name: two packages with the same module
    # name would share (and blur) one test file.
    shared = {name: packages for name, packages in _modules().items() if len(packages) > 1}
    assert shared == {}


def test_every_test_folder_is_a_package():
    for folder in ("", "unit", "data", "e2e", "toy"):
        assert (TESTS / folder / "__init__.py").is_file(), f"tests/{folder}"


def _marks(decorators: list[ast.expr]) -> set[str]:
    """The names of the `pytest.mark.NAME` among the decorators or a pytestmark value."""
    names = set()
    for node in decorators:
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.value, ast.Attribute)
                and sub.value.attr == "mark"
            ):
                names.add(sub.attr)
    return names


def slow_problems(source: str) -> list[str]:
    """The test functions of a module that are not marked slow (module-wide or one by one)."""
    tree = ast.parse(source)
    module_marks = _marks(
        [
            node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == "pytestmark" for t in node.targets)
        ]
    )
    if "slow" in module_marks:
        return []
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("test_")
        and "slow" not in _marks(node.decorator_list)
    ]


def test_every_end_to_end_test_is_marked_slow():
    files = sorted((TESTS / "e2e").glob("test_*.py"))
    assert files
    problems = {
        path.name: found
        for path in files
        if (found := slow_problems(path.read_text(encoding="utf-8")))
    }
    assert problems == {}


def test_a_test_not_marked_slow_is_found():
    marked = "import pytest\npytestmark = [pytest.mark.slow, pytest.mark.s3]\ndef test_a(): ...\n"
    assert slow_problems(marked) == []
    one_by_one = "@pytest.mark.slow\ndef test_a(): ...\n@pytest.mark.s3\ndef test_b(): ...\n"
    assert slow_problems(one_by_one) == ["test_b"]
    assert slow_problems("pytestmark = pytest.mark.ci\ndef test_c(): ...\n") == ["test_c"]
