"""What the code imports, read from its source (ast): for the tests that keep dvc.yaml's code
deps exact and the loop free of the problem."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.project import ROOT

SRC = ROOT / "src"
PACKAGES = ("kkbox", "cd4ml")


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"


def imported_modules(path: Path, packages: tuple[str, ...] = PACKAGES) -> set[str]:
    """The project modules a file imports at run time (`if TYPE_CHECKING:` blocks left out)."""
    found: set[str] = set()
    todo = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in packages}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in packages:  # from cd4ml import io, params
                found |= {f"{node.module}.{a.name}" for a in node.names}
            elif node.module.split(".")[0] in packages:
                found.add(node.module)
    return found


def module_file(module: str) -> Path:
    """The file of a module (a package's is its __init__.py)."""
    path = SRC / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def code_needed(script: Path) -> set[Path]:
    """The script and every project module it reaches through imports (each package's
    __init__.py too: importing cd4ml.x runs cd4ml/__init__.py first)."""
    needed = {script}
    todo = [script]
    while todo:
        for module in imported_modules(todo.pop()):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):
                path = module_file(".".join(parts[:i]))
                if path.exists() and path not in needed:
                    needed.add(path)
                    todo.append(path)
    return needed
