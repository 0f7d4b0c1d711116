"""make data: the problem's sample data (synthesize, at a scale) or its real files (download),
into data/."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cd4ml import params
from cd4ml.io import run_main

log = logging.getLogger("generate")


def parse_args(argv: list[str] | None, scales: tuple[str, ...]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", choices=["synthetic", "download"], default="synthetic")
    parser.add_argument("--scale", choices=scales, default="small")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("data"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    # The problem (named in the params file) gives the scales the arguments may choose.
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--params", default="params.yaml")
    found = params.problem(first.parse_known_args(argv)[0].params)
    args = parse_args(argv, found.scales)
    if args.source == "download":
        found.download(args.out)
        return
    found.synthesize(args.out, args.scale, params.problem_section(found, "generate", args.params))


if __name__ == "__main__":
    run_main(main)
