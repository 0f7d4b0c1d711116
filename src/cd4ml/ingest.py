"""The daily data job: take the next chunk from the incoming area, validate it, append it to the
examples table (KKBox: data/train.csv) as a new DVC data version, push it and commit it (so CI
retrains)."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from cd4ml import ingestion, params
from cd4ml.incoming import open_incoming, truth_name
from cd4ml.io import UserError, run_main, sha256

log = logging.getLogger("ingest")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--incoming",
        default="incoming",
        help="local folder or s3://bucket/prefix holding chunk-NNN.csv files",
    )
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--chunk", help="ingest this chunk instead of the next new one")
    parser.add_argument("--push", action="store_true", help="dvc push the new data version")
    parser.add_argument("--commit", action="store_true", help="git commit data.dvc")
    parser.add_argument("--git-push", action="store_true", help="git push the commit, if a remote")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def pick_chunk(available: list[str], done: dict[str, str], wanted: str | None) -> str | None:
    """The chunk to ingest: the one asked for, else the first one not ingested yet."""
    if wanted is not None:
        if wanted not in available:
            raise UserError(
                f"chunk {wanted} is not in the incoming area ({len(available)} chunks)"
            )
        return wanted
    return next((name for name in available if name not in done), None)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    contract = params.problem(args.params).contract
    ingestion.recover(args.data)
    incoming = open_incoming(args.incoming)
    done = {c["name"]: c["sha256"] for c in ingestion.read_manifest(args.data)["chunks"]}
    name = pick_chunk(incoming.names(), done, args.chunk)
    if name is None:
        log.info("nothing new in %s: %d chunk(s) already in data/", args.incoming, len(done))
        return
    with tempfile.TemporaryDirectory() as tmp:
        chunk = Path(tmp) / name
        incoming.fetch(name, chunk)
        if name in done:
            if done[name] == sha256(chunk):
                log.info("%s is already in data/: nothing to do", name)
                return
            raise UserError(
                f"{name} was ingested before with different content; "
                "give the new data a new chunk name"
            )
        truth = Path(tmp) / truth_name(name)
        has_truth = incoming.fetch(truth_name(name), truth)
        try:
            entry = ingestion.new_version(
                args.data, chunk, truth if has_truth else None, name, False, contract
            )
        except UserError as err:
            raise UserError(f"chunk {name} rejected, data/ unchanged: {err}") from None
    if args.commit:
        message = (
            f"data: ingest {name} (+{entry['rows']} rows, "
            f"{contract.examples} now {entry['train_rows_after']} rows)"
        )
        ingestion.record(Path.cwd(), message, push=args.push, git_push=args.git_push)
        log.info("committed: %s", message)


if __name__ == "__main__":
    run_main(main)
