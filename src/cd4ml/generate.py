"""Make data/: the synthetic KKBox tables (default) or the real ones from Kaggle."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cd4ml import synth
from kkbox import params, schema
from kkbox.io import UserError, atomic_dir, run_main, write_csv

log = logging.getLogger("generate")

COMPETITION = "kkbox-music-recommendation-challenge"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", choices=["synthetic", "kaggle"], default="synthetic")
    parser.add_argument("--scale", choices=sorted(synth.SCALES), default="small")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("data"))
    return parser.parse_args(argv)


def write_synthetic(
    out: Path, scale: str, seed: int, positive_rate: float = 0.5, **effects: float
) -> None:
    """Generate every table of one scale and write them into `out` (atomically, as a whole);
    `effects` are synth.TimeEffects' fields (its defaults where left out)."""
    started = time.perf_counter()
    tables = synth.generate(synth.SCALES[scale], seed, positive_rate=positive_rate, **effects)
    with atomic_dir(out) as tmp:
        for name, columns in tables.items():
            rows = write_csv(columns, tmp / name)
            log.info("wrote %s/%s: %d rows", out, name, rows)
    log.info(
        "%s scale, seed %d, positive rate %g: done in %.1f s",
        scale,
        seed,
        positive_rate,
        time.perf_counter() - started,
    )


def download_kaggle(out: Path) -> None:
    """Download and unpack the competition's CSVs with the kaggle CLI (needs credentials)."""
    if shutil.which("kaggle") is None:
        raise UserError(
            "the kaggle CLI is not installed: `pipenv run pip install kaggle`, or download the "
            f"competition files yourself and put the CSVs ({', '.join(schema.REQUIRED)}) in {out}/"
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
            for name in schema.REQUIRED:
                found = next(Path(tmp).rglob(name), None)
                if found is None:
                    raise UserError(f"the Kaggle download has no {name}")
                shutil.move(found, staging / name)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.source == "kaggle":
        download_kaggle(args.out)
        return
    settings = params.load(args.params).generate
    write_synthetic(
        args.out, args.scale, settings.seed, settings.positive_rate, **settings.time_effects()
    )


if __name__ == "__main__":
    run_main(main)
