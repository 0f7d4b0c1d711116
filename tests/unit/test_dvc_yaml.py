"""dvc.yaml tells the truth about the code: each stage depends on its script, exactly the
src/cd4ml modules it imports (found by reading the imports), and, as it loads the problem at run
time, the problem's package with the loop modules that package imports; nothing more. So editing
a serving, gate or monitor module reruns no stage, and the bundle stage, whose manifest hashes
every stage's code and params, depends on all of them."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from tests.imports import SRC, code_needed, imported_modules
from tests.project import ROOT

PROBLEM = "kkbox"  # params.yaml's `problem`
DELIVERY = ("gate", "registry", "serve", "predlog", "monitor", "report", "mrnote", "history")


def load_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def stage_script(stage: dict) -> Path:
    """src/<stage>.py from the stage's cmd (`python src/<stage>.py ...`)."""
    words = " ".join(str(stage["cmd"]).split()).split()
    return ROOT / next(w for w in words if w.startswith("src/") and w.endswith(".py"))


def _relative(paths: set[Path]) -> set[str]:
    return {str(p.relative_to(ROOT)) for p in paths}


def problem_code(package: str = PROBLEM) -> set[str]:
    """The problem's folder, and the loop modules its modules import."""
    loop = set()
    for path in (SRC / package).rglob("*.py"):
        loop |= {p for p in code_needed(path) if p.is_relative_to(SRC / "cd4ml")}
    return {f"src/{package}", *_relative(loop)}


def code_of(stage: dict) -> set[str]:
    """What a stage's code deps must be: its script's imports, and the problem's code when the
    script loads the problem (every stage does, through cd4ml.problem)."""
    needed = code_needed(stage_script(stage))
    found = _relative(needed)
    if SRC / "cd4ml" / "problem.py" in needed:
        found |= problem_code()
    return found


def declared_code(stage: dict) -> set[str]:
    return {d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith("src/")}


def deps_problems(stages: dict[str, dict]) -> list[str]:
    """Each stage's code deps against what its code needs: one line per difference; the bundle
    stage needs every stage's."""
    problems = []
    everything = set().union(*(code_of(stage) for stage in stages.values()))
    for name, stage in stages.items():
        declared = declared_code(stage)
        needed = everything if name == "bundle" else code_of(stage)
        problems += [f"{name}: needs {p} but dvc.yaml does not list it" for p in needed - declared]
        problems += [f"{name}: lists {p} but does not need it" for p in declared - needed]
    return sorted(problems)


def test_every_stage_lists_exactly_the_code_it_needs():
    assert deps_problems(load_stages()) == []


def test_a_missing_or_extra_dep_is_found():
    stages = copy.deepcopy(load_stages())
    stages["train"]["deps"].remove("src/cd4ml/model.py")
    stages["split"]["deps"].append("src/cd4ml/metrics.py")
    assert deps_problems(stages) == [
        "split: lists src/cd4ml/metrics.py but does not need it",
        "train: needs src/cd4ml/model.py but dvc.yaml does not list it",
    ]


def test_no_stage_reaches_the_delivery_modules_or_the_tools():
    for name, stage in load_stages().items():
        code = code_of(stage)
        reached = {p for p in code if p.removeprefix("src/cd4ml/").removesuffix(".py") in DELIVERY}
        assert not reached, f"{name} reaches {reached}"
        assert not [p for p in code if p.startswith("tools")], name


def test_the_bundle_stage_records_every_param_a_stage_lists():
    stages = load_stages()
    listed = {
        key.split(".")[0]
        for name, stage in stages.items()
        if name != "bundle"
        for key in stage.get("params", [])
    }
    assert listed <= set(stages["bundle"]["params"])


def test_each_stage_lists_its_own_params_only():
    """A serving, gate or monitor setting reruns nothing: no stage lists those sections."""
    for name, stage in load_stages().items():
        sections = {key.split(".")[0] for key in stage.get("params", [])}
        assert not sections & {"serve", "gate", "monitor"}, name
        assert "problem" in sections, f"{name} loads the problem: it depends on `problem`"


def test_src_holds_exactly_the_stages():
    """`ls src/*.py` and `dvc dag` tell the same story."""
    scripts = {p.stem for p in SRC.glob("*.py")}
    assert scripts == set(load_stages())
    assert {stage_script(s).stem for s in load_stages().values()} == scripts


def test_imports_under_type_checking_do_not_count(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "from typing import TYPE_CHECKING\nfrom cd4ml import io\n"
        "if TYPE_CHECKING:\n    from cd4ml.engine import FeatureOutput\n",
        encoding="utf-8",
    )
    assert imported_modules(script) == {"cd4ml.io"}
