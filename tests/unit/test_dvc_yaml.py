"""dvc.yaml tells the truth about the code: each stage depends on its script and on exactly the
src/kkbox modules that script imports (found by reading the imports), nothing more, nothing less.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import yaml

from tests.project import ROOT

SRC = ROOT / "src"
PACKAGES = ("kkbox", "cd4ml")


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"


def imported_modules(path: Path) -> set[str]:
    """The project modules a file imports at run time (`if TYPE_CHECKING:` blocks left out)."""
    found: set[str] = set()
    todo = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in PACKAGES:  # from kkbox import io, params
                found |= {f"{node.module}.{a.name}" for a in node.names}
            elif node.module.split(".")[0] in PACKAGES:
                found.add(node.module)
    return found


def module_file(module: str) -> Path:
    return SRC / (module.replace(".", "/") + ".py")


def code_needed(script: Path) -> set[str]:
    """The script and every project module it reaches through imports, as dvc.yaml paths."""
    needed = {script}
    todo = [script]
    while todo:
        for module in imported_modules(todo.pop()):
            path = module_file(module)
            if path not in needed:
                needed.add(path)
                todo.append(path)
    # Importing kkbox.x runs kkbox/__init__.py first.
    packages = {SRC / p.relative_to(SRC).parts[0] / "__init__.py" for p in needed if p != script}
    return {str(p.relative_to(ROOT)) for p in needed | packages}


def stage_script(stage: dict) -> Path:
    """src/<stage>.py from the stage's cmd (`python src/<stage>.py ...`)."""
    words = " ".join(str(stage["cmd"]).split()).split()
    return ROOT / next(w for w in words if w.startswith("src/") and w.endswith(".py"))


def deps_problems(stages: dict[str, dict]) -> list[str]:
    """Each stage's code deps against what its script imports: one line per difference."""
    problems = []
    for name, stage in stages.items():
        declared = {
            d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith("src/")
        }
        needed = code_needed(stage_script(stage))
        problems += [
            f"{name}: imports {p} but dvc.yaml does not list it" for p in needed - declared
        ]
        problems += [f"{name}: lists {p} but does not import it" for p in declared - needed]
    return sorted(problems)


def load_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_every_stage_lists_exactly_the_code_it_imports():
    assert deps_problems(load_stages()) == []


def test_a_missing_import_is_found():
    stages = copy.deepcopy(load_stages())
    stages["train"]["deps"].remove("src/kkbox/model.py")
    stages["split"]["deps"].append("src/kkbox/features.py")
    assert deps_problems(stages) == [
        "split: lists src/kkbox/features.py but does not import it",
        "train: imports src/kkbox/model.py but dvc.yaml does not list it",
    ]


def test_no_stage_reaches_the_tools_or_a_folder():
    for name, stage in load_stages().items():
        code = code_needed(stage_script(stage))
        assert not [p for p in code if p.startswith("src/cd4ml")], name
        assert "src/kkbox" not in stage["deps"], f"{name} depends on the whole package"


def test_src_holds_exactly_the_stages():
    """`ls src/*.py` and `dvc dag` tell the same story."""
    scripts = {p.stem for p in SRC.glob("*.py")}
    assert scripts == set(load_stages())
    assert {stage_script(s).stem for s in load_stages().values()} == scripts


def test_imports_under_type_checking_do_not_count(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "from typing import TYPE_CHECKING\nfrom kkbox import io\n"
        "if TYPE_CHECKING:\n    from cd4ml.params import Train\n",
        encoding="utf-8",
    )
    assert imported_modules(script) == {"kkbox.io"}
