"""The documentation tells the truth: the params reference is what `python -m cd4ml.params
--markdown` makes of params.yaml, every relative link of the README and docs/ reaches a file,
the README walks in at most 300 lines, and `make help` shows the loop before the tools."""

from __future__ import annotations

import re
import subprocess

from cd4ml import params
from tests.project import ROOT, project_env

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_params_reference_is_current():
    expected = params.markdown(ROOT / "params.yaml")
    written = (ROOT / "docs" / "reference" / "params.md").read_text(encoding="utf-8")
    assert written == expected, "run: python -m cd4ml.params --markdown > docs/reference/params.md"


def test_every_relative_link_reaches_a_file():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert len(pages) >= 8
    broken = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in pages
        for target in LINK.findall(page.read_text(encoding="utf-8"))
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert broken == []


def test_the_readme_walks_in_at_most_300_lines_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert "make run" in text and "make test" in text


def test_make_help_lists_the_loop_before_the_tools():
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    headings = re.findall(r"\x1b\[1m([^\x1b]+)\x1b\[0m", shown)
    assert headings[0] == "Set up" and headings[-1].startswith("Tools")
    targets = re.findall(r"^  \x1b\[36m(\S+)", shown, re.M)
    for target in ("run", "test", "repro", "gate", "serve", "monitor", "bench", "oracle-gap"):
        assert target in targets, target
    assert targets.index("bench") > targets.index("monitor") > targets.index("run")
