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

from cd4ml import bundle, registry, signing
from cd4ml.io import UserError, run_main, sha256, write_json
from cd4ml.shell import checked, dvc, git
from kkbox import PROBLEM
from tests.project import ROOT, release_keys, sign

NAME = "kkbox-recommender"  # the artifact of the project's dvc.yaml

IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def _fake_bundle(folder: Path, payload: str, signed: bool = True) -> None:
    """A folder that passes bundle.verify: one file and a manifest of its sha256, signed with
    the test session's release key (as the release job signs)."""
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
    (folder / signing.SIGNATURE).unlink(missing_ok=True)
    if signed:
        sign(folder)


def _commit(repo: Path, message: str) -> None:
    checked(git("add", "-A", cwd=repo), "git add")
    checked(git("commit", "--quiet", "-m", message, cwd=repo), "git commit")


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A git + DVC repository with the artifact declared and one bundle version committed."""
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("S3_ENDPOINT", raising=False)
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(release_keys()[1]))
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
    assert sorted(p.name for p in out.iterdir()) == [bundle.MANIFEST, "model.sig", "model.ubj"]

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
    folder = repo / "models" / "bundle"
    (folder / "model.ubj").write_text("changed after the manifest")
    with pytest.raises(UserError, match=r"altered after signing: model\.ubj changed"):
        registry.release(NAME, "prod", "bad release")  # refused before it is registered
    _release(repo, folder, "registered all the same (gto register)")
    out = repo / "models" / "champion"
    with pytest.raises(UserError, match=r"model.ubj: sha256 differs from manifest.json"):
        registry.fetch(NAME, None, "v0.0.1", out, ".")
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


def _release(repo: Path, folder: Path, message: str) -> None:
    """Commit the bundle folder as it is now and register it (as a release job's commit)."""
    checked(dvc("add", "--quiet", "models/bundle"), "dvc add")
    _commit(repo, message)
    gto.api.register(".", NAME, "HEAD")


def test_fetch_refuses_an_unsigned_or_foreign_or_altered_release_and_keeps_what_it_had(
    repo, tmp_path, capsys
):
    registry.release(NAME, "prod", "first release")  # signed: fetched and kept
    out = repo / "served" / "bundle"
    assert registry.fetch(NAME, "prod", None, out, ".") == "v0.0.1"
    folder = repo / "models" / "bundle"
    _fake_bundle(folder, "unsigned", signed=False)
    _release(repo, folder, "an unsigned bundle")  # v0.0.2
    # Signed by a key that is not the release key.
    other = tmp_path / "other"
    signing.keygen(other / "k.pem", other / "k.pub")
    _fake_bundle(folder, "another key", signed=False)
    signing.sign(folder, other / "k.pem")
    _release(repo, folder, "a bundle of another key")  # v0.0.3
    # Whoever can write the remote replaced the model and rewrote the manifest's hashes.
    _fake_bundle(folder, "genuine")
    (folder / "model.ubj").write_text("replaced")
    manifest = json.loads((folder / bundle.MANIFEST).read_text())
    manifest["files"]["model.ubj"]["sha256"] = sha256(folder / "model.ubj")
    write_json(manifest, folder / bundle.MANIFEST)
    bundle.verify(folder)  # the manifest alone cannot tell
    _release(repo, folder, "an altered bundle")  # v0.0.4

    refusals = {
        "v0.0.2": "kkbox-recommender@v0.0.2: unsigned (no model.sig): ",
        "v0.0.3": "kkbox-recommender@v0.0.3: signed by another key than the public key (",
        "v0.0.4": "kkbox-recommender@v0.0.4: altered after signing: ",
    }
    for version, first in refusals.items():
        with pytest.raises(SystemExit):
            run_main(registry.main, ["fetch", "--version", version, "--out", "served/bundle"])
        assert capsys.readouterr().err.splitlines()[0].startswith(f"error: {first}"), version
        assert registry.fetched_version(out) == "v0.0.1"  # what was there stays
        assert (out / "model.ubj").read_text() == "version one"
    # Told so, an unsigned bundle is accepted; a signed one is still verified.
    assert registry.fetch(NAME, None, "v0.0.2", out, ".", allow_unsigned=True) == "v0.0.2"
    with pytest.raises(UserError, match="altered after signing"):
        registry.fetch(NAME, None, "v0.0.4", out, ".", allow_unsigned=True)
