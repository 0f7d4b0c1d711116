"""cd4ml.registry: GTO's tags for versions and stages (through gto.api), and `dvc artifacts get`
of a version.

Real git, GTO and DVC on a small repository whose dvc.yaml declares the artifact; the bundle
is a folder of files with a valid manifest (the registry never loads the model)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import gto.api
import pytest

from cd4ml import bundle, registry
from cd4ml.io import UserError, run_main, sha256, write_json
from cd4ml.shell import checked, dvc, git
from kkbox import PROBLEM
from tests.project import ROOT

NAME = "kkbox-recommender"  # the artifact of the project's dvc.yaml

IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def _fake_bundle(folder: Path, payload: str) -> None:
    """A folder that passes bundle.verify: one file and a manifest of its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.ubj").write_text(payload)
    write_json(
        {
            "format": bundle.FORMAT,
            "name": PROBLEM.name,
            "problem": "kkbox",
            "model": "xgb",
            "model_file": "model.ubj",
            "files": {"model.ubj": {"sha256": sha256(folder / "model.ubj")}},
        },
        folder / bundle.MANIFEST,
    )


def _commit(repo: Path, message: str) -> None:
    checked(git("add", "-A", cwd=repo), "git add")
    checked(git("commit", "--quiet", "-m", message, cwd=repo), "git commit")


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A git + DVC repository with the artifact declared and one bundle version committed."""
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("S3_ENDPOINT", raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    checked(git("init", "--quiet", "-b", "main", cwd=repo), "git init")
    checked(dvc("init", "--quiet", cwd=repo), "dvc init")
    declared = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    (repo / "dvc.yaml").write_text(declared[declared.index("artifacts:") :], encoding="utf-8")
    _fake_bundle(repo / "models" / "bundle", "version one")
    checked(dvc("add", "--quiet", "models/bundle", cwd=repo), "dvc add")
    _commit(repo, "first bundle")
    monkeypatch.chdir(repo)
    return repo


def test_the_artifact_is_the_one_whose_path_is_the_bundle(tmp_path):
    assert registry.artifact_name(ROOT / "dvc.yaml") == NAME == PROBLEM.name
    other = tmp_path / "dvc.yaml"
    other.write_text("artifacts:\n  churn:\n    path: models/bundle\n  x:\n    path: y\n")
    assert registry.artifact_name(other) == "churn"
    other.write_text("artifacts:\n  x:\n    path: models/other\n")
    with pytest.raises(UserError, match=r"dvc\.yaml: no artifact has path models/bundle; "):
        registry.artifact_name(other)
    other.write_text("stages: [unclosed\n")
    with pytest.raises(UserError, match=r"dvc\.yaml: cannot read its artifacts \("):
        registry.artifact_name(other)
    with pytest.raises(UserError, match="cannot read its artifacts"):
        registry.artifact_name(tmp_path / "none.yaml")


def test_no_version_registered_yet(repo, capsys):
    assert registry.versions(NAME) == []
    assert registry.stage_version(NAME, "prod") is None
    run_main(registry.main, ["list"])
    assert "no version of kkbox-recommender registered yet" in capsys.readouterr().out
    champion = repo / "models" / "champion"
    _fake_bundle(champion, "stale")  # an earlier fetch: it must not be taken for the champion
    assert registry.fetch(NAME, "prod", None, champion, ".") is None
    assert not champion.exists() and not champion.with_name("champion.json").exists()


def test_release_tags_the_commit_and_fetch_restores_the_bundle_verified(repo, capsys):
    tags = registry.release(NAME, "prod", "first release")
    assert tags == ["kkbox-recommender@v0.0.1", "kkbox-recommender#prod#1"]
    head = git("rev-parse", "HEAD").stdout.strip()
    for tag in tags:  # annotated tags (GTO ignores lightweight ones), on the released commit
        assert git("cat-file", "-t", tag).stdout.strip() == "tag"
        assert git("rev-parse", f"{tag}^{{commit}}").stdout.strip() == head
    assert registry.stage_version(NAME, "prod") == "v0.0.1"
    assert registry.stage_version(NAME, "staging") is None

    # A second version, not in prod: the prod fetch still gives the first one.
    _fake_bundle(repo / "models" / "bundle", "version two")
    checked(dvc("add", "--quiet", "models/bundle"), "dvc add")
    _commit(repo, "second bundle")
    gto.api.register(".", NAME, "HEAD")
    assert [v["version"] for v in registry.versions(NAME)] == ["v0.0.2", "v0.0.1"]

    out = repo / "fetched" / "champion"
    assert registry.fetch(NAME, "prod", None, out, str(repo)) == "v0.0.1"
    assert (out / "model.ubj").read_text() == "version one"
    assert bundle.verify(out)["name"] == NAME
    info = json.loads(out.with_name("champion.json").read_text())
    assert info == {"name": NAME, "version": "v0.0.1", "stage": "prod", "commit": head}
    assert registry.fetched_version(out) == "v0.0.1"
    # Fetching again replaces the folder (dvc artifacts get alone would nest a second copy).
    assert registry.fetch(NAME, None, "v0.0.2", out, str(repo)) == "v0.0.2"
    assert registry.fetched_version(out) == "v0.0.2"
    assert (out / "model.ubj").read_text() == "version two"
    assert sorted(p.name for p in out.iterdir()) == [bundle.MANIFEST, "model.ubj"]

    capsys.readouterr()
    run_main(registry.main, ["list"])
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| version | stages | roc_auc | commit | registered |"
    assert table[2].startswith("| v0.0.2 | - | - |") and table[3].startswith("| v0.0.1 | prod |")


def test_register_only_then_assign_and_roll_back_as_a_rollout_does(repo, capsys):
    run_main(registry.main, ["release", "--no-stage", "-m", "first"])
    assert capsys.readouterr().out.split() == ["kkbox-recommender@v0.0.1"]
    assert registry.stage_version(NAME, "prod") is None
    assert registry.assign(NAME, "prod", "v0.0.1") == "kkbox-recommender#prod#1"
    assert registry.assign(NAME, "prod", "v0.0.1") is None  # already there: no new tag
    _fake_bundle(repo / "models" / "bundle", "version two")
    checked(dvc("add", "--quiet", "models/bundle"), "dvc add")
    _commit(repo, "second bundle")
    assert registry.release(NAME, None, "second") == ["kkbox-recommender@v0.0.2"]
    registry.assign(NAME, "prod", "v0.0.2")
    assert registry.versions_in_stage(NAME, "prod") == ["v0.0.2", "v0.0.1"]
    # The rollback: v0.0.2 out of prod, v0.0.1 is the stage's version again.
    assert registry.unassign(NAME, "prod", "v0.0.2").startswith("kkbox-recommender#prod!#")
    assert registry.stage_version(NAME, "prod") == "v0.0.1"
    assert registry.versions_in_stage(NAME, "prod") == ["v0.0.1"]
    # A version rolled back may come back later (GTO needs force for it). Git's tag times are
    # in seconds: in the same second as the unassignment GTO could not order the two.
    time.sleep(1.1)
    assert registry.assign(NAME, "prod", "v0.0.2") is not None
    assert registry.stage_version(NAME, "prod") == "v0.0.2"


def test_a_version_that_does_not_exist_is_one_line_without_studio_noise(repo, capsys):
    registry.release(NAME, "prod", "first release")
    with pytest.raises(SystemExit):
        run_main(registry.main, ["fetch", "--version", "v9.9.9", "--out", "models/champion"])
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("error: dvc artifacts get kkbox-recommender@v9.9.9 from . failed: ")
    assert "Studio" not in first and "Unable to find artifact" in first
    assert not (repo / "models" / "champion").exists()
    assert not [p for p in (repo / "models").iterdir() if p.name.startswith(".champion")]


def test_a_fetched_bundle_that_fails_verification_is_not_kept(repo, capsys):
    (repo / "models" / "bundle" / "model.ubj").write_text("changed after the manifest")
    checked(dvc("add", "--quiet", "models/bundle"), "dvc add")
    _commit(repo, "a bundle whose manifest does not match")
    registry.release(NAME, "prod", "bad release")
    out = repo / "models" / "champion"
    with pytest.raises(UserError, match=r"model.ubj: sha256 differs from manifest.json"):
        registry.fetch(NAME, "prod", None, out, ".")
    assert not out.exists()


def test_release_without_a_git_identity_names_it(repo, monkeypatch):
    for key in IDENTITY:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(repo))  # no global git config either
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    with pytest.raises(UserError) as err:
        registry.release(NAME, "prod", "no identity")
    assert str(err.value) == (
        "gto register kkbox-recommender failed: git has no identity to tag with; set "
        "user.name and user.email (git config) or GIT_COMMITTER_NAME and GIT_COMMITTER_EMAIL"
    )
    assert git("tag").stdout == ""  # nothing half-released
    assert os.environ.get("GIT_COMMITTER_NAME") is None
