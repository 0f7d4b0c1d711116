"""kkbox.kaggle: the real files' download says clearly what is missing (no network here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cd4ml.io import UserError
from kkbox import kaggle
from kkbox.tables import CONTRACT


def _fake_cli(folder: Path) -> Path:
    """A `kaggle` command on PATH that fails as the real one does with a refused token."""
    folder.mkdir()
    cli = folder / "kaggle"
    cli.write_text("#!/bin/sh\necho '401 - Unauthorized' >&2\nexit 1\n")
    cli.chmod(0o755)
    return folder


def test_without_the_cli_names_the_files_to_put_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "d"
    with pytest.raises(UserError) as err:
        kaggle.download(out)
    message = str(err.value)
    assert message.startswith("the kaggle CLI is not installed: `pipenv run pip install kaggle`")
    assert ", ".join(CONTRACT.required) in message and f"in {out}/" in message
    assert "\n" not in message
    assert not out.exists()


def test_without_credentials_names_both_ways_to_give_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{_fake_cli(tmp_path / 'bin')}{os.pathsep}/usr/bin:/bin")
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"^no Kaggle credentials: set KAGGLE_USERNAME and"):
        kaggle.download(tmp_path / "d")
    # A user name alone is no credential either.
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    with pytest.raises(UserError, match=r"~/.kaggle/kaggle.json"):
        kaggle.download(tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_a_failed_download_says_why_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{_fake_cli(tmp_path / 'bin')}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-key")
    with pytest.raises(UserError) as err:
        kaggle.download(tmp_path / "d")
    first, *rest = str(err.value).splitlines()
    assert first == (
        f"kaggle download of {kaggle.COMPETITION} failed (no network, or the competition "
        "rules not accepted on kaggle.com)"
    )
    assert rest == ["401 - Unauthorized"]
    assert not (tmp_path / "d").exists()
