"""cd4ml.provenance: the data version, the libraries, and the build (a content hash of the code
and params of dvc.yaml's stages) that git revisions are compared with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cd4ml import provenance
from cd4ml.io import UserError
from tests.project import run


def test_data_version_reads_the_md5_of_the_first_output():
    text = "outs:\n- md5: 0123abcd.dir\n  size: 10\n  path: data\n"
    assert provenance.data_version(text) == "0123abcd.dir"
    assert provenance.data_version("") is None
    assert provenance.data_version("outs: []\n") is None
    assert provenance.data_version("{not: [yaml") is None


def test_library_versions_are_the_installed_ones():
    import xgboost

    versions = provenance.library_versions(("xgboost", "no-such-library-here"))
    assert versions == {"xgboost": xgboost.__version__, "no-such-library-here": None}
    assert set(provenance.library_versions()) == set(provenance.LIBRARIES)


def test_the_python_version_is_major_and_minor_only():
    major, minor = provenance.python_version().split(".")
    assert major == "3" and minor.isdigit()


PIPELINE = {
    "stages": {
        "split": {
            "cmd": "python src/split.py",
            "deps": ["src/split.py", "src/loop", "data", "params.yaml"],
            "params": ["split"],
        },
        "train": {
            "cmd": "python src/train.py",
            "deps": ["src/train.py", "src/loop", "src/problem"],
            "params": ["train.seed", {"other.yaml": ["extra.key"]}],
        },
    }
}
PARAMS = {"split": {"eval_fraction": 0.2}, "train": {"seed": 1, "model": "xgb"}, "serve": {}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project: two stages' code (scripts, packages), data, a .dvcignore and a params.yaml."""
    root = tmp_path / "project"
    files = {
        "src/split.py": "print('split')\n",
        "src/train.py": "print('train')\n",
        "src/loop/__init__.py": "",
        "src/loop/io.py": "x = 1\n",
        "src/loop/templates/page.html": "<p>page</p>\n",
        "src/loop/__pycache__/io.cpython-311.pyc": "compiled",
        "src/problem/__init__.py": "",
        "src/problem/kinds/__init__.py": "",
        "src/problem/kinds/xgb.py": "y = 2\n",
        "src/unused.py": "z = 3\n",
        "data/train.csv": "a\n1\n",
        ".dvcignore": "__pycache__\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    (root / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE), encoding="utf-8")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS), encoding="utf-8")
    return root


def test_the_code_deps_are_the_python_files_and_packages_of_the_stages(project):
    # data/ is no package and params.yaml no Python file: they are not code.
    assert provenance.code_deps(project / "dvc.yaml") == [
        "src/loop",
        "src/problem",
        "src/split.py",
        "src/train.py",
    ]


def test_the_param_keys_are_every_stages_sections_and_dotted_keys(project):
    assert provenance.param_keys(project / "dvc.yaml") == ["extra.key", "split", "train.seed"]


def test_an_unreadable_pipeline_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"dvc.yaml: cannot read its stages"):
        provenance.code_deps(tmp_path / "dvc.yaml")
    (tmp_path / "dvc.yaml").write_text("jobs: {}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"dvc.yaml: cannot read its stages"):
        provenance.param_keys(tmp_path / "dvc.yaml")


def test_code_files_expand_folders_as_dvc_hashes_them(project):
    deps = provenance.code_deps(project / "dvc.yaml")
    assert provenance.code_files(project, deps) == [
        "src/loop/__init__.py",
        "src/loop/io.py",
        "src/loop/templates/page.html",
        "src/problem/__init__.py",
        "src/problem/kinds/__init__.py",
        "src/problem/kinds/xgb.py",
        "src/split.py",
        "src/train.py",
    ]


def test_params_of_reads_sections_and_dotted_keys():
    values = provenance.params_of(PARAMS, ["split", "train.seed", "extra.key", "train.x.y"])
    assert values == {
        "split": {"eval_fraction": 0.2},
        "train.seed": 1,
        "extra.key": None,
        "train.x.y": None,
    }


def _build(root: Path) -> dict:
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    return provenance.build(root, root / "dvc.yaml", params)


def test_the_build_is_the_same_for_the_same_content_anywhere(project, tmp_path):
    built = _build(project)
    assert set(built["code"]["files"]) == set(
        provenance.code_files(project, provenance.code_deps(project / "dvc.yaml"))
    )
    assert built["params"] == {"extra.key": None, "split": {"eval_fraction": 0.2}, "train.seed": 1}
    elsewhere = shutil.copytree(project, tmp_path / "elsewhere")
    assert _build(elsewhere) == built
    # What no stage reads changes nothing: a file outside the deps, compiled code, a setting.
    (project / "src" / "unused.py").write_text("z = 4\n", encoding="utf-8")
    (project / "src" / "loop" / "__pycache__" / "io.cpython-311.pyc").write_text("other")
    (project / "data" / "train.csv").write_text("a\n2\n", encoding="utf-8")
    params = {**PARAMS, "serve": {"workers": 2}, "train": {**PARAMS["train"], "model": "rf"}}
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert _build(project) == built


@pytest.mark.parametrize(
    "change", ["code", "template", "new file", "renamed file", "listed param", "section"]
)
def test_a_change_to_the_code_or_the_params_of_a_stage_changes_the_build(project, change):
    before = _build(project)["sha256"]
    if change == "code":
        (project / "src" / "problem" / "kinds" / "xgb.py").write_text("y = 3\n")
    elif change == "template":
        (project / "src" / "loop" / "templates" / "page.html").write_text("<p>new</p>\n")
    elif change == "new file":
        (project / "src" / "loop" / "new.py").write_text("")
    elif change == "renamed file":
        (project / "src" / "loop" / "io.py").rename(project / "src" / "loop" / "inout.py")
    else:
        params = {**PARAMS, "train": {**PARAMS["train"], "seed": 2}}
        if change == "section":
            params = {**PARAMS, "split": {"eval_fraction": 0.25}}
        (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert len(before) == 64
    assert _build(project)["sha256"] != before


@pytest.fixture
def repo(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project committed to a real git repository, with a bundle's manifest of its build."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(project.parent))
    run(["git", "init", "-q"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "first"], project)
    bundle = project.parent / "bundle"
    bundle.mkdir()
    manifest = {"build": _build(project)}
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    monkeypatch.chdir(project)
    return project


def _manifest(repo: Path) -> dict:
    return json.loads((repo.parent / "bundle" / "manifest.json").read_text(encoding="utf-8"))


def test_compare_names_the_files_a_revision_changed(repo):
    manifest = _manifest(repo)
    assert provenance.compare(manifest, repo, None) == []
    assert provenance.compare(manifest, repo, "HEAD") == []
    (repo / "src" / "train.py").write_text("print('changed')\n")
    (repo / "src" / "loop" / "io.py").unlink()
    assert provenance.compare(manifest, repo, None) == ["src/loop/io.py", "src/train.py"]
    assert provenance.compare(manifest, repo, "HEAD") == []  # the commit still holds it
    run(["git", "commit", "-qam", "second"], repo)
    assert provenance.compare(manifest, repo, "HEAD") == ["src/loop/io.py", "src/train.py"]
    assert provenance.compare(manifest, repo, "HEAD~1") == []
    # A commit of anything but the code (a release's dvc.lock, metrics) holds the same code.
    assert provenance.compare({"build": _build(repo)}, repo, "HEAD") == []


def test_compare_names_the_params_a_revision_changed(repo):
    manifest = _manifest(repo)
    unread = {**PARAMS, "serve": {"workers": 4}, "train": {**PARAMS["train"], "model": "rf"}}
    (repo / "params.yaml").write_text(yaml.safe_dump(unread), encoding="utf-8")
    assert provenance.compare(manifest, repo, None) == []  # no stage reads those
    read = {**PARAMS, "train": {**PARAMS["train"], "seed": 2}, "split": {"eval_fraction": 0.3}}
    (repo / "params.yaml").write_text(yaml.safe_dump(read), encoding="utf-8")
    assert provenance.compare(manifest, repo, None) == [
        "params.yaml: split",
        "params.yaml: train.seed",
    ]
    assert provenance.compare(manifest, repo, "HEAD") == []
    (repo / "params.yaml").unlink()
    assert provenance.compare(manifest, repo, None) == [
        "params.yaml: split",
        "params.yaml: train.seed",
    ]


def test_main_says_whether_a_revision_holds_the_bundles_code(repo, capsys):
    bundle = str(repo.parent / "bundle")
    provenance.main(["--bundle", bundle, "--rev", "HEAD"])
    assert capsys.readouterr().out == (
        f"HEAD holds the code and params of {bundle}: all 8 files and every parameter are the "
        "same\n"
    )
    (repo / "src" / "split.py").write_text("print('changed')\n")
    provenance.main(["--bundle", bundle, "--rev", "HEAD"])
    with pytest.raises(UserError) as err:
        provenance.main(["--bundle", bundle])
    assert str(err.value) == (
        f"the working tree does not hold the code and params of {bundle}: 1 differ (src/split.py)"
    )
    with pytest.raises(UserError, match=r"nowhere/manifest.json: cannot read it"):
        provenance.main(["--bundle", str(repo / "nowhere")])
