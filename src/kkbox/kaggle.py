"""The real KKBox files, from Kaggle (`make data SOURCE=download`): needs the kaggle CLI, an API
token and the competition's rules accepted on kaggle.com; without them, one line says which."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cd4ml.io import UserError, atomic_dir
from kkbox.tables import CONTRACT

COMPETITION = "kkbox-music-recommendation-challenge"


def download(out: Path) -> None:
    """Download and unpack the competition's CSVs into `out` (swapped in whole)."""
    if shutil.which("kaggle") is None:
        raise UserError(
            "the kaggle CLI is not installed: `pipenv run pip install kaggle`, or download the "
            f"competition files yourself and put the CSVs ({', '.join(CONTRACT.required)}) in "
            f"{out}/"
        )
    has_env = os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")
    if not has_env and not (Path.home() / ".kaggle" / "kaggle.json").exists():
        raise UserError(
            "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY or create "
            "~/.kaggle/kaggle.json (https://www.kaggle.com/settings > API > Create New Token)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["kaggle", "competitions", "download", "-c", COMPETITION, "-p", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise UserError(
                f"kaggle download of {COMPETITION} failed (no network, or the competition "
                f"rules not accepted on kaggle.com)\n{result.stderr.strip()}"
            )
        for archive in Path(tmp).glob("*.zip"):
            shutil.unpack_archive(archive, tmp)
        archives = list(Path(tmp).rglob("*.7z"))
        if archives and shutil.which("7z") is None:
            raise UserError("the Kaggle files are .7z archives: install p7zip-full (apt-get)")
        for archive in archives:
            subprocess.run(["7z", "x", "-y", f"-o{tmp}", str(archive)], check=True)
        with atomic_dir(out) as staging:
            for name in CONTRACT.required:
                found = next(Path(tmp).rglob(name), None)
                if found is None:
                    raise UserError(f"the Kaggle download has no {name}")
                shutil.move(found, staging / name)
