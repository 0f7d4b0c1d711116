"""Stage preprocess: join plays with members and songs, clean, encode, write model features."""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from kkbox import features, params
from kkbox.io import (
    atomic_dir,
    lean_memory_pool,
    read_parquet,
    run_main,
    write_json,
    write_parquet,
)

log = logging.getLogger("preprocess")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validated", type=Path, required=True, help="raw tables as Parquet")
    parser.add_argument("--split", type=Path, required=True, help="train / eval parts")
    parser.add_argument("--out", type=Path, required=True, help="folder for the features")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


class Tables:
    """Members and songs with their attributes, and the member / song key of every play."""

    def __init__(self, validated: Path, parts: dict[str, Path]) -> None:
        members = read_parquet(validated / "members.parquet")
        member_keys = _keys(parts, "msno", members["msno"])
        songs = read_parquet(validated / "songs.parquet")
        with ThreadPoolExecutor(1) as pool:
            # Arrow's kernels release the GIL: song keys are found while the attributes are made.
            song_keys = pool.submit(_keys, parts, "song_id", songs["song_id"])
            self.member_attrs = features.as_categories(features.member_table(members.to_pandas()))
            extra = read_parquet(
                validated / "song_extra_info.parquet", columns=["song_id", "isrc"]
            )
            self.song_attrs = features.as_categories(
                features.song_table(
                    songs.to_pandas(types_mapper=pd.ArrowDtype),
                    extra.to_pandas(types_mapper=pd.ArrowDtype),
                )
            )
            del songs, extra
            self.keys = {part: (member_keys[part], song_keys.result()[part]) for part in parts}
        log.info("attributes: %d members, %d songs", len(self.member_attrs), len(self.song_attrs))

    def joined(self, part: str, path: Path, extra: str) -> pd.DataFrame:
        """One part of the plays (train, eval or test) joined with the attributes."""
        columns = [*features.SOURCE, extra]
        plays = read_parquet(path, columns=columns, read_dictionary=features.SOURCE).to_pandas()
        member_key, song_key = self.keys.pop(part)
        frame = features.join_plays(
            plays, member_key, song_key, self.member_attrs, self.song_attrs
        )
        frame[extra] = plays[extra].to_numpy()
        log.info(
            "joined %s: %d rows, %d not in songs.csv",
            path.name,
            len(frame),
            int((song_key < 0).sum()),
        )
        return frame


def _keys(
    parts: dict[str, Path], column: str, table_ids: pa.ChunkedArray
) -> dict[str, np.ndarray]:
    """The key (row in the table) of every play of every part: one hash join for all parts."""
    # Dictionary-encoded in split's files (msno): then joined per distinct id, not per play.
    dictionary = [column] if column == "msno" else None
    ids = {
        part: read_parquet(path, columns=[column], read_dictionary=dictionary)[column]
        for part, path in parts.items()
    }
    chunks = [chunk for part in ids.values() for chunk in part.chunks]
    kind = pa.dictionary(pa.int32(), pa.string()) if dictionary else pa.string()
    keys = features.keys_of(pa.chunked_array(chunks, kind), table_ids)
    ends = np.cumsum([len(part) for part in ids.values()])
    return dict(zip(ids, np.split(keys, ends[:-1]), strict=True))


def _table(
    frame: pd.DataFrame,
    first: str | None = None,
    last: str | None = None,
    values: np.ndarray | None = None,
) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if first is not None:
        table = table.add_column(0, first, pa.array(values))
    if last is not None:
        table = table.append_column(last, pa.array(values))
    return table


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lean_memory_pool()
    settings = params.load(args.params).preprocess

    parts = {
        "train": args.split / "train.parquet",
        "eval": args.split / "eval.parquet",
        "test": args.validated / "test.parquet",
    }
    tables = Tables(args.validated, parts)
    train = tables.joined("train", parts["train"], "target")
    encoder = features.fit(
        train, min_count=settings.min_category_count, smoothing=settings.target_smoothing
    )
    folds = features.assign_folds(len(train), settings.target_folds, settings.seed)
    # Each part's Parquet file is written on another thread while the next part is computed.
    with atomic_dir(args.out) as tmp, ThreadPoolExecutor(2) as writer:
        written: list[Future] = []

        def write(table: pa.Table, name: str) -> None:
            # lz4: the model stages read these files, and they decompress fastest
            written.append(writer.submit(write_parquet, table, tmp / name, "lz4"))

        train_x = features.transform(train, encoder, oof_folds=folds)
        write(_table(train_x, last="target", values=train["target"].to_numpy()), "train.parquet")
        del train, train_x
        evaluation = tables.joined("eval", parts["eval"], "target")
        eval_x = features.transform(evaluation, encoder)
        write(
            _table(eval_x, last="target", values=evaluation["target"].to_numpy()), "eval.parquet"
        )
        del evaluation, eval_x
        test = tables.joined("test", parts["test"], "id")
        test_x = features.transform(test, encoder)
        write(_table(test_x, first="id", values=test["id"].to_numpy()), "test.parquet")
        del test, test_x
        write_json(encoder.summary(), tmp / "encoder.json")
        for done in written:
            done.result()
    log.info("wrote %d features for train, eval and test to %s", len(features.FEATURES), args.out)


if __name__ == "__main__":
    run_main(main)
