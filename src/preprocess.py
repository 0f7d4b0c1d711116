"""Stage preprocess: join plays with members and songs, clean, encode, write model features
and the fitted featurizer (what the release bundle scores raw rows with).

params.yaml's `engine` says where: in this process (local), or on a Dask cluster (dask), where
each partition of the plays is joined and encoded on a worker, the statistics of the partitions
are merged into the same encoder, and the features are the local engine's, bit for bit."""

from __future__ import annotations

import argparse
import functools
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from kkbox import cluster, features, featurizer, params, schema
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
        attrs = _attributes(data, members, songs)
        keys = {part: (member_keys[part], song_keys.result()[part]) for part in parts}
    return keys, attrs, (members["msno"], songs["song_id"])


def _attributes(
    data: Path, members: pa.Table, songs: pa.Table
) -> tuple[pd.DataFrame, pd.DataFrame]:
    extra = read_table(data / schema.SONG_EXTRA, schema.SONG_EXTRA, ["song_id", "isrc"])
    return features.attributes(members, songs, extra)


def _with_target(frame: pd.DataFrame, target: np.ndarray) -> pa.Table:
    """The features as Arrow, the target as the last column."""
    return pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "target", pa.array(target)
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lean_memory_pool()
    config = params.load(args.params)
    if config.engine == "dask":
        on_cluster(args, config.preprocess)
    else:
        local(args, config.preprocess)
    log.info("wrote %d features and the featurizer to %s", len(features.FEATURES), args.out)


def local(args: argparse.Namespace, settings: params.Preprocess) -> None:
    """The local engine: every part in memory in this process."""
    parts = {
        "train": args.split / "train.parquet",
        "eval": args.split / "eval.parquet",
    }
    keys, attrs, ids = _keys_and_attributes(args.data, parts)
    log.info("attributes: %d members, %d songs", len(attrs[0]), len(attrs[1]))
    # Each file is written on another thread while the next one is computed. The features are
    # lz4: the model stages read them, and they decompress fastest. Test rows are scored by the
    # predict stage through the release bundle (the featurizer), from raw rows.
    with parquet_folder(args.out) as out:
        saved = out.path / "featurizer"
        featurizer.save_attributes(saved, ids[0], attrs[0], ids[1], attrs[1], out.write)
        train = _joined(parts["train"], keys.pop("train"), attrs, "target")
        target = train["target"].to_numpy()

        def write(train_x: pd.DataFrame, valid_x: pd.DataFrame) -> None:
            cut = len(train_x)
            out.write(_with_target(train_x, target[:cut]), "train.parquet", "lz4")
            out.write(_with_target(valid_x, target[cut:]), "valid.parquet", "lz4")
            log.info("train: %d rows before the early-stopping slice", cut)

        encoder, *_ = features.fit_training(
            train,
            settings.min_category_count,
            settings.target_smoothing,
            (settings.target_folds, settings.seed),
            settings.valid_fraction,
            write,
        )
        featurizer.save_encoder(saved, encoder, out.write)
        del train, _
        frame = _joined(parts["eval"], keys.pop("eval"), attrs, "target")
        x = features.transform(frame, encoder)
        out.write(_with_target(x, frame["target"].to_numpy()), "eval.parquet", "lz4")


# ---------------------------------------------------------------------------------------------
# The dask engine. Functions whose name starts with `_on_worker` run on the workers: they read
# from and write to the scratch space only.

PLAY_COLUMNS = [*features.SOURCE, "msno", "song_id"]


@dataclass(frozen=True)
class Tables:
    """The member and song tables a worker joins the plays with (see features.Joinable)."""

    member_ids: pa.ChunkedArray
    song_ids: pa.ChunkedArray
    attrs: tuple[pd.DataFrame, pd.DataFrame]
    joinable: tuple[features.Joinable, features.Joinable]


def _on_worker_tables(urls: dict[str, str], options: dict[str, Any]) -> Tables:
    """The attribute tables, from the raw CSVs in the scratch space (read on one worker)."""
    import fsspec

    with tempfile.TemporaryDirectory(prefix="kkbox-tables-") as tmp:
        data = Path(tmp)
        for name, url in urls.items():
            fsspec.core.url_to_fs(url, **options)[0].get_file(url, str(data / name))
        members = read_table(data / schema.MEMBERS, schema.MEMBERS)
        songs = read_table(data / schema.SONGS, schema.SONGS)
        attrs = _attributes(data, members, songs)
    return Tables(
        members["msno"], songs["song_id"], attrs, tuple(features.joinable(a) for a in attrs)
    )


def _on_worker_plays(piece: cluster.Piece, options: dict[str, Any]) -> pd.DataFrame:
    """One piece of a part's plays, the ids and sources as Categoricals."""
    return cluster.read_piece(piece, options, [*PLAY_COLUMNS, "target"], PLAY_COLUMNS).to_pandas()


def _on_worker_joined(plays: pd.DataFrame, tables: Tables) -> pd.DataFrame:
    """Plays joined with the attributes (as the local engine's _joined), the target kept."""
    keys = [
        features.keys_of(plays[column], ids)
        for column, ids in (("msno", tables.member_ids), ("song_id", tables.song_ids))
    ]
    frame = features.join_plays(plays, *keys, *tables.joinable)
    frame["target"] = plays["target"].to_numpy()
    return frame


def _before(frame: pd.DataFrame, start: int, cut: int) -> int:
    """How many of a partition's rows (its first is row `start`) come before row `cut`."""
    return min(max(cut - start, 0), len(frame))


def _folds(start: int, rows: int, folds: tuple[int, int]) -> features.Folds:
    """The folds of `rows` training rows from row `start` on (`folds`: number, seed)."""
    return features.Folds(features.assign_folds(start, start + rows, *folds), folds[0])


def _on_worker_counts(frame: pd.DataFrame, start: int, cut: int) -> tuple[dict, dict]:
    """The category counts of a partition's rows before the cut and of all its rows."""
    return (
        features.category_counts(frame.iloc[: _before(frame, start, cut)]),
        features.category_counts(frame),
    )


def _on_worker_stats(
    frame: pd.DataFrame,
    start: int,
    cut: int,
    vocabularies: tuple[dict, dict],
    folds: tuple[int, int],
) -> tuple[dict, dict, dict]:
    """A partition's statistics: of its rows before the cut, their (key, fold) pairs, and of
    all its rows (with the vocabularies of the rows before the cut and of all rows)."""
    lo = _before(frame, start, cut)
    before = frame.iloc[:lo]
    fold_rows = _folds(start, lo, folds)
    stats = (
        features.key_stats(before, vocabularies[0]),
        features.key_stats(before, vocabularies[0], fold_rows),
        features.key_stats(frame, vocabularies[1]),
    )
    return tuple({name: stat.compact() for name, stat in kind.items()} for kind in stats)


def _on_worker_merged(*parts: tuple[dict, ...]) -> tuple[dict, ...]:
    """Statistics of several partitions added up (KeyStats.merge), kind by kind."""
    return tuple(
        {name: features.KeyStats.merge([p[kind][name] for p in parts]) for name in parts[0][kind]}
        for kind in range(len(parts[0]))
    )


def _on_worker_encoders(
    merged: tuple[dict, dict, dict], vocabularies: tuple[dict, dict], smoothing: float
) -> tuple[features.Encoder, dict, features.Encoder]:
    """The encoder of the rows before the cut, their (key, fold) statistics, and the encoder of
    all training rows (what eval and test get)."""
    past, fold_stats, full = merged
    return (
        features.encoder_of(vocabularies[0], past, smoothing),
        fold_stats,
        features.encoder_of(vocabularies[1], full, smoothing),
    )


def _on_worker_features(
    frame: pd.DataFrame,
    start: int,
    cut: int,
    encoders: tuple[features.Encoder, dict, features.Encoder],
    folds: tuple[int, int],
    urls: tuple[str, str],
    options: dict[str, Any],
) -> list[str | None]:
    """A training partition's features: out-of-fold before the cut, the early-stopping slice
    after it; or, with `cut` None, an eval partition's; written to `urls`."""
    past, fold_stats, full = encoders
    y = frame["target"].to_numpy()
    if cut is None:
        tables = [_with_target(features.transform(frame, full), y), None]
    else:
        lo = _before(frame, start, cut)
        before, after = frame.iloc[:lo], frame.iloc[lo:]
        fold_rows = _folds(start, lo, folds)
        tables = [
            _with_target(features.transform(before, past, fold_rows, fold_stats), y[:lo]),
            _with_target(features.transform(after, past), y[lo:]),
        ]
    return [
        cluster.write_piece(t, url, options) if t is not None and len(t) else None
        for t, url in zip(tables, urls, strict=True)
    ]


def _tree(parts: list[Any], merge: Any, fan_in: int = 8) -> Any:
    """Partition results merged on the workers in a tree of `fan_in`-way merges."""
    import dask

    while len(parts) > 1:
        parts = [dask.delayed(merge)(*parts[i : i + fan_in]) for i in range(0, len(parts), fan_in)]
    return parts[0]


def _on_worker_featurizer(tables: Tables, encoders: tuple) -> tuple:
    """What featurizer.save takes: the full encoder, the member and song ids and attributes."""
    return encoders[2], tables.member_ids, tables.attrs[0], tables.song_ids, tables.attrs[1]


def on_cluster(args: argparse.Namespace, settings: params.Preprocess) -> None:
    """The dask engine: partitions of the plays joined, counted and encoded on the workers, the
    statistics merged into the local engine's encoder, the features streamed back here."""
    import dask

    folds = (settings.target_folds, settings.seed)
    with cluster.connect() as (client, space):
        options, run = space.options, space.run_prefix()
        workers = len(client.scheduler_info()["workers"])
        names = (schema.MEMBERS, schema.SONGS, schema.SONG_EXTRA)
        *csvs, train_url, eval_url = space.stage(
            *(args.data / name for name in names),
            *(args.split / f"{part}.parquet" for part in ("train", "eval")),
        )
        tables = client.submit(_on_worker_tables, dict(zip(names, csvs, strict=True)), options)
        read = functools.partial(_on_worker_plays, options=options)
        parts, starts, rows, meta = {}, {}, {}, None
        for part, url in (("train", train_url), ("eval", eval_url)):
            plays, cuts = cluster.frame(space, url, 2 * workers, read)
            if meta is None:  # the joined columns: a join of no rows, on a worker
                meta = client.submit(_on_worker_joined, plays._meta, tables).result()
            # Each partition is read and joined on a worker once, and kept there for the passes.
            joined = client.persist(plays.map_partitions(_on_worker_joined, tables, meta=meta))
            parts[part], starts[part] = joined.to_delayed(), [piece.start for piece in cuts]
            rows[part] = cuts[-1].stop
        cut = features.early_stopping_start(rows["train"], settings.valid_fraction)
        train = list(zip(parts["train"], starts["train"], strict=True))

        counts = client.gather(
            client.compute([dask.delayed(_on_worker_counts)(p, s, cut) for p, s in train])
        )
        vocabularies = tuple(
            features.fit_vocabularies([c[kind] for c in counts], settings.min_category_count)
            for kind in (0, 1)
        )
        stats = [dask.delayed(_on_worker_stats)(p, s, cut, vocabularies, folds) for p, s in train]
        encoders = client.compute(
            dask.delayed(_on_worker_encoders)(
                _tree(stats, _on_worker_merged), vocabularies, settings.target_smoothing
            )
        )
        written = {}
        for part, cut_at in (("train", cut), ("eval", None)):
            jobs = [
                dask.delayed(_on_worker_features)(
                    p,
                    s,
                    cut_at,
                    encoders,
                    folds,
                    (f"{run}/{part}/{i:05d}.parquet", f"{run}/valid/{i:05d}.parquet"),
                    options,
                )
                for i, (p, s) in enumerate(zip(parts[part], starts[part], strict=True))
            ]
            written[part] = client.gather(client.compute(jobs))
        try:
            with parquet_folder(args.out) as out:
                outputs = {
                    "train": [urls[0] for urls in written["train"]],
                    "valid": [urls[1] for urls in written["train"]],
                    "eval": [urls[0] for urls in written["eval"]],
                }
                for name, urls in outputs.items():
                    got = cluster.gather_parquet(
                        space, [u for u in urls if u], out.path / f"{name}.parquet", "lz4"
                    )
                    log.info("%s: %d rows from %d partitions", name, got, len(urls))
                saved = client.submit(_on_worker_featurizer, tables, encoders).result()
                featurizer.save(out.path / "featurizer", *saved)
        finally:
            space.remove(run)


if __name__ == "__main__":
    run_main(main)
