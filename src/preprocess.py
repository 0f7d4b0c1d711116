"""Stage preprocess: join plays with members and songs, clean, encode, write model features."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa

from kkbox import features
from kkbox.io import atomic_dir, load_params, read_parquet, require, run_main, write_json
from kkbox.io import write_parquet

log = logging.getLogger("preprocess")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validated", type=Path, required=True, help="raw tables as Parquet")
    parser.add_argument("--split", type=Path, required=True, help="train / eval parts")
    parser.add_argument("--out", type=Path, required=True, help="folder for the features")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def _frame(path: Path) -> pd.DataFrame:
    return read_parquet(path).to_pandas()


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params(args.params, "preprocess")
    min_count = require(params, "min_category_count", int, "preprocess")
    smoothing = require(params, "target_smoothing", (int, float), "preprocess")
    n_folds = require(params, "target_folds", int, "preprocess")
    seed = require(params, "seed", int, "preprocess")

    members = _frame(args.validated / "members.parquet")
    songs = _frame(args.validated / "songs.parquet")
    extra = _frame(args.validated / "song_extra_info.parquet")
    member_attrs = features.member_table(members)
    song_attrs = features.song_table(songs, extra)
    log.info("attributes: %d members, %d songs", len(member_attrs), len(song_attrs))

    def joined(path: Path) -> pd.DataFrame:
        plays = _frame(path)
        frame = features.join_plays(plays, members, songs, member_attrs, song_attrs)
        for col in ("target", "id"):
            if col in plays:
                frame[col] = plays[col].to_numpy()
        log.info("joined %s: %d rows, %d not in songs.csv", path.name, len(frame),
                 int((frame["song_key"] < 0).sum()))
        return frame

    train = joined(args.split / "train.parquet")
    encoder = features.fit(train, min_count=min_count, smoothing=float(smoothing))
    folds = features.assign_folds(len(train), n_folds, seed)
    with atomic_dir(args.out) as tmp:
        train_x = features.transform(train, encoder, oof_folds=folds)
        train_x["target"] = train["target"].to_numpy()
        write_parquet(_table(train_x), tmp / "train.parquet")
        del train, train_x
        evaluation = joined(args.split / "eval.parquet")
        eval_x = features.transform(evaluation, encoder)
        eval_x["target"] = evaluation["target"].to_numpy()
        write_parquet(_table(eval_x), tmp / "eval.parquet")
        del evaluation, eval_x
        test = joined(args.validated / "test.parquet")
        test_x = features.transform(test, encoder)
        test_x.insert(0, "id", test["id"].to_numpy())
        write_parquet(_table(test_x), tmp / "test.parquet")
        write_json(encoder.summary(), tmp / "encoder.json")
    log.info("wrote %d features for train, eval and test to %s", len(features.FEATURES), args.out)


if __name__ == "__main__":
    run_main(main)
