"""Stage preprocess: join plays with members and songs, clean, encode, write model features
and the fitted featurizer (what the release bundle scores raw rows with)."""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from kkbox import features, featurizer, params, schema
from kkbox.io import lean_memory_pool, parquet_folder, read_parquet, run_main
from kkbox.raw import read_table

log = logging.getLogger("preprocess")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder of the raw CSVs")
    parser.add_argument("--split", type=Path, required=True, help="train / eval parts")
    parser.add_argument("--out", type=Path, required=True, help="folder for the features")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def _ids(parts: dict[str, Path], column: str) -> dict[str, pa.ChunkedArray]:
    """One id column of every part, dictionary-encoded as split wrote it."""
    return {
        part: read_parquet(path, columns=[column], read_dictionary=[column])[column]
        for part, path in parts.items()
    }


def _joined(
    path: Path,
    keys: tuple[np.ndarray, np.ndarray],
    attrs: tuple[pd.DataFrame, pd.DataFrame],
    extra: str,
) -> pd.DataFrame:
    """One part of the plays (train, eval or test) joined with the attributes, plus `extra`
    (the target, or test's id)."""
    columns = [*features.SOURCE, extra]
    plays = read_parquet(path, columns=columns, read_dictionary=features.SOURCE).to_pandas()
    frame = features.join_plays(plays, *keys, *attrs)
    frame[extra] = plays[extra].to_numpy()
    log.info("joined %s: %d rows, %d not in songs.csv", path, len(frame), int((keys[1] < 0).sum()))
    return frame


def _keys_and_attributes(
    data: Path, parts: dict[str, Path]
) -> tuple[
    dict[str, tuple[np.ndarray, np.ndarray]],
    tuple[pd.DataFrame, pd.DataFrame],
    tuple[pa.ChunkedArray, pa.ChunkedArray],
]:
    """The (member, song) keys of every part's plays, the member and song attributes, and the
    ids (msno, song_id) that number the keys."""
    members = read_table(data / schema.MEMBERS, schema.MEMBERS)
    songs = read_table(data / schema.SONGS, schema.SONGS)
    with ThreadPoolExecutor(1) as pool:
        # Arrow's kernels release the GIL: the song keys are found while the attributes are made.
        song_keys = pool.submit(features.keys_by_part, _ids(parts, "song_id"), songs["song_id"])
        member_keys = features.keys_by_part(_ids(parts, "msno"), members["msno"])
        extra = read_table(data / schema.SONG_EXTRA, schema.SONG_EXTRA, ["song_id", "isrc"])
        attrs = features.attributes(members, songs, extra)
        keys = {part: (member_keys[part], song_keys.result()[part]) for part in parts}
    return keys, attrs, (members["msno"], songs["song_id"])


def _with_target(frame: pd.DataFrame, target: np.ndarray) -> pa.Table:
    """The features as Arrow, the target as the last column."""
    return pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "target", pa.array(target)
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lean_memory_pool()
    settings = params.load(args.params).preprocess
    parts = {
        "train": args.split / "train.parquet",
        "eval": args.split / "eval.parquet",
    }
    keys, attrs, ids = _keys_and_attributes(args.data, parts)
    log.info("attributes: %d members, %d songs", len(attrs[0]), len(attrs[1]))

    train = _joined(parts["train"], keys.pop("train"), attrs, "target")
    encoder, train_x, valid_x = features.fit_training(
        train,
        settings.min_category_count,
        settings.target_smoothing,
        (settings.target_folds, settings.seed),
        settings.valid_fraction,
    )
    # Each part is written on another thread while the next one is computed; lz4: the model
    # stages read these files, and they decompress fastest.
    cut = len(train_x)
    with parquet_folder(args.out) as out:
        target = train["target"].to_numpy()
        for name, x, y in (("train", train_x, target[:cut]), ("valid", valid_x, target[cut:])):
            out.write(_with_target(x, y), f"{name}.parquet", "lz4")
        del train, train_x, valid_x, target, x
        frame = _joined(parts["eval"], keys.pop("eval"), attrs, "target")
        x = features.transform(frame, encoder)
        out.write(_with_target(x, frame["target"].to_numpy()), "eval.parquet", "lz4")
        del frame, x
        # Test rows are scored by the predict stage through the release bundle, from raw rows.
        featurizer.save(out.path / "featurizer", encoder, ids[0], attrs[0], ids[1], attrs[1])
    log.info(
        "wrote %d features for train (%d rows), valid (early stopping) and eval, and the "
        "featurizer, to %s",
        len(features.FEATURES),
        cut,
        args.out,
    )


if __name__ == "__main__":
    run_main(main)
