"""End to end: `make report` after `make run` writes a page that headless Chromium, with every
network request failing, renders as a person would see it: not blank, with the verdict and every
section in its DOM; and `make plots-diff` renders DVC's plots offline too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.project import ROOT, copy_project, run
from tests.unit.test_report import SECTIONS
from tools import browser

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("report") / "project")
    run(["make", "run", "SCALE=tiny"], project)
    shown = run(["make", "--no-print-directory", "report"], project)
    assert "wrote reports/index.html" in shown.stderr
    return project


def test_the_page_renders_offline_with_the_verdict_and_every_section(project, tmp_path):
    page = project / "reports" / "index.html"
    shot = tmp_path / "report.png"
    browser.screenshot(page, shot, width=1280, height=1600)
    assert not browser.is_blank(shot)
    dom = browser.dump_dom(page)
    assert 'id="verdict-line">gate passed: roc_auc ' in dom
    for key, title in SECTIONS.items():
        assert f'id="{key}"' in dom and title in dom
    assert dom.count("data:image/png;base64,") >= 3  # curves, importance, slices


def test_dvc_plots_diff_renders_offline(project, tmp_path):
    # The vega libraries `make system-deps` put into this checkout's .tools/.
    modules = f"NODE_MODULES={ROOT / '.tools' / 'node_modules'}"
    run(["make", "--no-print-directory", "plots-diff", "BASE_REV=HEAD", modules], project)
    page = project / "reports" / "plots" / "index.html"
    assert "cdn.jsdelivr" not in page.read_text(encoding="utf-8")
    dom = browser.dump_dom(page)
    assert "<svg" in dom or "<canvas" in dom  # drawn by the inlined vega, with no network
    shot = tmp_path / "plots.png"
    browser.screenshot(page, shot, width=1200, height=1200)
    assert not browser.is_blank(shot)
