"""cd4ml.signing: OpenSSF Model Signing's key mode over a bundle folder, for real (no network):
key pairs, signing, and each refusal (unsigned, another key, altered after signing, a rewritten
manifest, a damaged signature, a missing key), each one line naming the bundle."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cd4ml import bundle, signing
from cd4ml.io import UserError, run_main, sha256, write_json


def _bundle(folder: Path) -> Path:
    """A folder that passes bundle.verify: two files, one in a subfolder, and their manifest."""
    (folder / "featurizer").mkdir(parents=True)
    (folder / "model.ubj").write_bytes(b"model bytes")
    (folder / "featurizer" / "stats.parquet").write_bytes(b"statistics")
    files = ["featurizer/stats.parquet", "model.ubj"]
    hashes = {name: {"sha256": sha256(folder / name)} for name in files}
    manifest = {"format": bundle.FORMAT, "files": hashes}
    write_json(manifest, folder / bundle.MANIFEST)
    return folder


@pytest.fixture
def keys(tmp_path) -> tuple[Path, Path]:
    private, public = tmp_path / "keys" / "release.pem", tmp_path / "keys" / "release.pub"
    signing.keygen(private, public)
    return private, public


@pytest.fixture
def signed(tmp_path, keys) -> Path:
    folder = _bundle(tmp_path / "bundle")
    signing.sign(folder, keys[0])
    return folder


def test_keygen_makes_a_private_file_only_its_owner_reads_and_never_overwrites(tmp_path, keys):
    private, public = keys
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert private.stat().st_mode & 0o777 == 0o600
    with pytest.raises(UserError, match=r"release\.pem: exists; move it away first"):
        signing.keygen(private, tmp_path / "other.pub")


def test_a_signed_bundle_verifies_and_its_signature_is_no_extra_file(signed, keys):
    assert sorted(p.name for p in signed.iterdir()) == [
        "featurizer",
        bundle.MANIFEST,
        signing.SIGNATURE,
        "model.ubj",
    ]
    signing.verify(signed, keys[1])
    assert bundle.verify(signed)["files"].keys() == {"featurizer/stats.parquet", "model.ubj"}
    assert signing.check(signed, public_key=keys[1]) is True
    # Signing again replaces the signature (it does not sign the old one).
    signing.sign(signed, keys[0])
    signing.verify(signed, keys[1])


def test_the_librarys_own_command_verifies_it_too(signed, keys):
    command = [sys.executable, "-m", "model_signing", "verify", "key", str(signed)]
    command += ["--signature", str(signed / signing.SIGNATURE), "--public_key", str(keys[1])]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_unsigned_bundle_is_refused_unless_allowed_and_a_signed_one_always_verified(
    tmp_path, keys, signed, caplog
):
    unsigned = _bundle(tmp_path / "unsigned")
    with pytest.raises(UserError) as refused:
        signing.check(unsigned, public_key=keys[1], name="v0.0.2")
    assert str(refused.value).startswith("v0.0.2: unsigned (no model.sig): a release is signed")
    with caplog.at_level(logging.WARNING, logger="signing"):
        assert signing.check(unsigned, allow_unsigned=True, public_key=keys[1]) is False
    assert "unsigned, allowed (--allow-unsigned)" in caplog.text
    (signed / "model.ubj").write_bytes(b"other bytes")
    with pytest.raises(UserError, match=r"altered after signing: model\.ubj changed"):
        signing.check(signed, allow_unsigned=True, public_key=keys[1])


def test_a_bundle_signed_by_another_key_is_refused(signed, tmp_path):
    other = tmp_path / "other"
    signing.keygen(other / "k.pem", other / "k.pub")
    with pytest.raises(UserError) as refused:
        signing.verify(signed, other / "k.pub", name="kkbox-recommender@v0.0.3")
    assert str(refused.value) == (
        f"kkbox-recommender@v0.0.3: signed by another key than the public key "
        f"({other / 'k.pub'}); refusing it"
    )


def test_a_rewritten_manifest_passes_the_hashes_but_not_the_signature(signed, keys):
    (signed / "model.ubj").write_bytes(b"the attacker's model")
    manifest = json.loads((signed / bundle.MANIFEST).read_text())
    manifest["files"]["model.ubj"]["sha256"] = sha256(signed / "model.ubj")
    write_json(manifest, signed / bundle.MANIFEST)
    bundle.verify(signed)  # consistent: the manifest alone cannot tell
    changed = r"bundle: altered after signing: manifest\.json, model\.ubj changed \("
    with pytest.raises(UserError, match=changed):
        signing.verify(signed, keys[1])


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda f: (f / "featurizer" / "extra.json").write_text("{}"), "altered after signing"),
        (lambda f: (f / "featurizer" / "stats.parquet").unlink(), "altered after signing"),
        (lambda f: (f / signing.SIGNATURE).write_text("not json"), "model.sig is not a signature"),
        (lambda f: (f / signing.SIGNATURE).write_text("{}"), "model.sig is not a signature"),
    ],
    ids=["extra-file", "missing-file", "garbage-signature", "empty-signature"],
)
def test_every_alteration_is_refused_in_one_line(signed, keys, change, reason):
    change(signed)
    with pytest.raises(UserError) as refused:
        signing.verify(signed, keys[1])
    message = str(refused.value)
    assert reason in message and "\n" not in message and message.endswith("refusing it")


def test_a_missing_or_bad_public_key_is_named(signed, tmp_path, monkeypatch):
    monkeypatch.delenv(signing.PUBLIC_KEY_ENV, raising=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(UserError, match=r"^keys/release\.pub: no public key to verify "):
        signing.verify(signed)
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(tmp_path / "bad.pub"))
    (tmp_path / "bad.pub").write_text("not a key")
    with pytest.raises(UserError, match=r"bad\.pub: not an EC public key in PEM"):
        signing.verify(signed)


@pytest.mark.parametrize("form", ["base64", "pem", "path"])
def test_the_ci_variable_holds_the_key_in_any_of_its_forms(tmp_path, keys, monkeypatch, form):
    private, public = keys
    value = {
        "base64": base64.b64encode(private.read_bytes()).decode(),
        "pem": private.read_text(),
        "path": str(private),
    }[form]
    monkeypatch.setenv(signing.PRIVATE_KEY_ENV, value)
    folder = _bundle(tmp_path / "bundle")
    assert signing.sign(folder) >= 0
    signing.verify(folder, public)


def test_a_missing_or_bad_private_key_is_named(tmp_path, keys, monkeypatch):
    folder = _bundle(tmp_path / "bundle")
    monkeypatch.delenv(signing.PRIVATE_KEY_ENV, raising=False)
    with pytest.raises(UserError, match=r"^CD4ML_SIGNING_KEY is not set: give the release job"):
        signing.sign(folder)
    monkeypatch.setenv(signing.PRIVATE_KEY_ENV, "zz")
    with pytest.raises(UserError, match=r"^CD4ML_SIGNING_KEY: neither a PEM key, nor its base64"):
        signing.sign(folder)
    with pytest.raises(UserError, match=r"^CD4ML_SIGNING_KEY: not an EC private key in PEM"):
        signing.sign(folder, keys[1])  # the public half
    with pytest.raises(UserError, match=r"nothing\.pem: cannot read the key"):
        signing.sign(folder, tmp_path / "nothing.pem")
    with pytest.raises(UserError, match=r"no bundle folder to sign"):
        signing.sign(tmp_path / "none", keys[0])
    assert not (folder / signing.SIGNATURE).exists()


def test_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # keys/ made here by the command
    run_main(signing.main, ["keygen"])
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("private key: keys/release.pem (keep it secret")
    assert base64.b64decode(shown[-1]) == (tmp_path / "keys" / "release.pem").read_bytes()
    folder = _bundle(tmp_path / "bundle")
    run_main(signing.main, ["sign", "bundle", "--private-key", "keys/release.pem"])
    assert capsys.readouterr().out.startswith("signed bundle into model.sig in ")
    monkeypatch.delenv(signing.PUBLIC_KEY_ENV, raising=False)
    run_main(signing.main, ["verify", "bundle"])
    assert capsys.readouterr().out.startswith("bundle: signature verified with keys/release.pub")
    os.remove(folder / signing.SIGNATURE)
    with pytest.raises(SystemExit) as stopped:
        run_main(signing.main, ["verify", "bundle"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.startswith("error: bundle: unsigned (no model.sig)")


def test_a_bundle_of_links_verifies_as_its_content(tmp_path, keys):
    """DVC may link a bundle's files into its cache (cache.type symlink), and a rollout links a
    version's bundle folder: what is signed and verified is the content behind the links."""
    real = _bundle(tmp_path / "real")
    linked = tmp_path / "linked"
    (linked / "featurizer").mkdir(parents=True)
    for name in ("model.ubj", bundle.MANIFEST, "featurizer/stats.parquet"):
        (linked / name).symlink_to(real / name)
    signing.sign(linked, keys[0])
    folder = tmp_path / "version-bundle"
    folder.symlink_to(linked, target_is_directory=True)
    signing.verify(folder, keys[1])
    (real / "model.ubj").write_bytes(b"changed behind the link")
    with pytest.raises(UserError, match=r"altered after signing: model\.ubj changed"):
        signing.verify(folder, keys[1])
