"""Cut the examples table (KKBox: data/train.csv) into time-ordered chunks for the incoming area
(each with the header), then restart the data history with the first chunk only."""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from cd4ml import ingestion, params
from cd4ml.contract import Contract
from cd4ml.incoming import Incoming, chunk_name, open_incoming, truth_name
from cd4ml.io import UserError, run_main
from cd4ml.reading import read_header

log = logging.getLogger("chunks")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--out", default="incoming", help="local folder or s3://bucket/prefix")
    parser.add_argument("--commit", action="store_true", help="record the first version in git")
    parser.add_argument("--push", action="store_true", help="dvc push the first version")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def cut_points(n_rows: int, n_chunks: int) -> list[int]:
    """Row boundaries of n_chunks near-equal contiguous parts (time order is kept)."""
    if n_chunks < 1 or n_chunks > n_rows:
        raise UserError(f"CHUNKS={n_chunks}: must be between 1 and the {n_rows} train rows")
    return [round(i * n_rows / n_chunks) for i in range(n_chunks + 1)]


def write_chunks(
    src: Path, folder: Path, cuts: int | Callable[[int], list[int]], suffix: str = ".csv"
) -> list[Path]:
    """Split a CSV by lines into chunk files, each starting with the header row. `cuts`: the
    number of near-equal chunks, or the row boundaries (first 0, last n) of a CSV of n rows."""
    with src.open("rb") as fh:
        header = fh.readline()
        lines = fh.read().splitlines(keepends=True)
    bounds = cut_points(len(lines), cuts) if isinstance(cuts, int) else cuts(len(lines))
    paths = []
    for i in range(len(bounds) - 1):
        path = folder / chunk_name(i + 1).replace(".csv", suffix)
        with path.open("wb") as out:
            out.write(header)
            out.writelines(lines[bounds[i] : bounds[i + 1]])
        paths.append(path)
    return paths


def restart(
    data: Path,
    incoming: Incoming,
    cuts: int | Callable[[int], list[int]],
    contract: Contract,
) -> list[str]:
    """Cut data/train.csv (and its truth file, where there is one) into chunks (`cuts` as
    write_chunks takes it), put them all in the incoming area, and restart data/ with the
    first. The chunks' names, in order."""
    train = data / contract.examples
    read_header(train)
    with tempfile.TemporaryDirectory() as tmp:
        chunks = write_chunks(train, Path(tmp), cuts)
        truth_file = data / (contract.truth or "")
        truths = (
            write_chunks(truth_file, Path(tmp), cuts, ".truth.csv")
            if contract.truth and truth_file.exists()
            else [None] * len(chunks)
        )
        for chunk, truth in zip(chunks, truths, strict=True):
            incoming.put(chunk, chunk.name)
            if truth is not None:
                incoming.put(truth, truth_name(chunk.name))
        ingestion.new_version(data, chunks[0], truths[0], chunks[0].name, True, contract)
    return [chunk.name for chunk in chunks]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    contract = params.problem(args.params).contract
    names = restart(args.data, open_incoming(args.out), args.chunks, contract)
    log.info("wrote %d chunks of %s to %s", len(names), args.data / contract.examples, args.out)
    if args.commit:
        message = f"data: restart the history with {names[0]}"
        ingestion.record(Path.cwd(), message, push=args.push, git_push=False)


if __name__ == "__main__":
    run_main(main)
