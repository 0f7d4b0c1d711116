"""kkbox.fit: the featurizer fitted on the train part and the features of every part, written
through the engine's FeatureOutput; and the same fit as a Plan of mergeable statistics over
partitions (what the Dask engine runs), which gives the same features, value for value."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cd4ml import split
from cd4ml.cluster import Piece, read_piece
from cd4ml.engine import FeatureOutput
from cd4ml.io import REPEATED_IDS_PARQUET, parquet_folder, read_parquet, write_csv, write_parquet
from cd4ml.model import TARGET
from cd4ml.reading import read_table
from kkbox import features, featurizer, fit, synth
from kkbox.tables import CONTRACT, Play

# Enough members, songs and plays for every statistic to see rare and common keys, cold
# starts in the later parts and categories under min_category_count.
SCALE = synth.Scale(members=150, songs=1500, train=4000, test=10)
SETTINGS = fit.Preprocess(min_category_count=3, target_smoothing=10.0, target_folds=4, seed=5)
# Uneven partitions of each part: one row alone, and cuts that split no key's rows evenly.
CUTS = {"train": [0, 1, 700, 701, 1500, 2880], "valid": [0, 100, 320], "eval": [0, 1, 333, 800]}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], Path]:
    """Synthetic raw data, the split's parts (as the split stage writes them), and the local
    fit's output folder."""
    root = tmp_path_factory.mktemp("fit")
    data = root / "data"
    data.mkdir()
    for name, columns in synth.generate(SCALE, seed=3).items():
        write_csv(columns, data / name)
    examples = read_table(data / CONTRACT.examples, CONTRACT.tables[CONTRACT.examples])
    truth = pa.chunked_array([pa.nulls(examples.num_rows, pa.float64())])
    cut = split.split(examples, truth, split.Split(eval_fraction=0.2, valid_fraction=0.1))
    parts = {}
    for part in split.PARTS:
        parts[part] = root / "split" / f"{part}.parquet"
        write_parquet(cut[part], parts[part], "zstd", **REPEATED_IDS_PARQUET)
    assert [cut[p].num_rows for p in split.PARTS] == [CUTS[p][-1] for p in split.PARTS]
    out = root / "features"
    with parquet_folder(out) as folder:
        fit.fit(data, parts, SETTINGS, FeatureOutput(folder))
    return data, parts, out


def test_fit_writes_the_features_of_every_part_and_the_featurizer(made):
    _, parts, out = made
    assert sorted(p.name for p in out.iterdir()) == [
        "eval.parquet",
        "featurizer",
        "train.parquet",
        "valid.parquet",
    ]
    assert sorted(p.name for p in (out / "featurizer").iterdir()) == sorted(featurizer.FILES)
    for part in split.PARTS:
        table = read_parquet(out / f"{part}.parquet")
        assert table.column_names == [*features.FEATURES, TARGET], part
        rows = read_parquet(parts[part], columns=["target"])
        assert table[TARGET].to_pylist() == rows["target"].to_pylist(), part
    x = read_parquet(out / "train.parquet").to_pandas()
    assert x["member_plays"].gt(0).all()  # counted over the train part: each row itself too
    eval_x = read_parquet(out / "eval.parquet").to_pandas()
    assert eval_x["member_plays"].eq(0).any() and eval_x["song_plays"].eq(0).any()  # cold starts


def test_the_featurizer_scores_raw_eval_rows_as_the_fit_featurised_them(made):
    _, parts, out = made
    fitted = featurizer.load(out / "featurizer")
    rows = read_parquet(parts["eval"], columns=list(Play.model_fields))
    made_x = fitted.transform(rows)
    written = read_parquet(out / "eval.parquet").to_pandas().drop(columns=[TARGET])
    pd.testing.assert_frame_equal(made_x.x, written)
    assert set(made_x.flags) == {"unknown_member", "unknown_song"}
    # The synthetic members.csv has every member: a row of another member and song is flagged.
    assert not made_x.flags["unknown_member"].any()
    stranger = {**rows.slice(0, 1).to_pylist()[0], "msno": "nobody", "song_id": "nothing"}
    both = fitted.transform(pa.Table.from_pylist([rows.slice(0, 1).to_pylist()[0], stranger]))
    assert both.flags["unknown_member"].tolist() == [False, True]
    assert both.flags["unknown_song"].tolist() == [False, True]
    assert both.x["member_plays"].tolist() == [written["member_plays"][0], 0]


def test_the_valid_rows_are_encoded_from_the_train_rows_only(made):
    """Valid rows are featurised as eval rows are: by the rows before them, never their own."""
    data, parts, out = made
    flipped = read_parquet(parts["valid"])
    target = pa.array(1 - np.asarray(flipped["target"]), pa.int8())
    flipped = flipped.set_column(flipped.schema.get_field_index("target"), "target", target)
    changed = dict(parts, valid=parts["valid"].with_name("valid_flipped.parquet"))
    write_parquet(flipped, changed["valid"], "zstd", **REPEATED_IDS_PARQUET)
    again = out.with_name("features_flipped")
    with parquet_folder(again) as folder:
        fit.fit(data, changed, SETTINGS, FeatureOutput(folder))
    valid = read_parquet(out / "valid.parquet").drop([TARGET])
    assert read_parquet(again / "valid.parquet").drop([TARGET]).equals(valid)
    # Eval's encodings come from every training row: the flipped targets move them.
    evals = [read_parquet(folder / "eval.parquet") for folder in (out, again)]
    assert not evals[0]["te_member"].equals(evals[1]["te_member"])


def _partitions(path: Path, part: str, plan: fit.Plan, side: fit.Tables) -> list[tuple]:
    """A part's partitions as the Dask engine's workers read and prepare them."""
    bounds = CUTS[part]
    pieces = [Piece(str(path), a, b) for a, b in itertools.pairwise(bounds)]
    read = [read_piece(p, {}, list(plan.columns), list(plan.dictionary)) for p in pieces]
    return [
        (plan.prepare(t.to_pandas(), side), p.start) for t, p in zip(read, pieces, strict=True)
    ]


def _tree(plan: fit.Plan, step: int, partials: list) -> tuple:
    """Partials merged two by two, then the merges merged: the merge must be associative."""
    while len(partials) > 1:
        partials = [plan.merge(step, *partials[i : i + 2]) for i in range(0, len(partials), 2)]
    return partials[0]


def test_the_plan_over_partitions_gives_the_features_of_fit_value_for_value(made, tmp_path):
    data, parts, out = made
    plan = fit.Plan(SETTINGS)
    assert plan.side_files == ("members.csv", "songs.csv", "song_extra_info.csv")
    side = plan.side(data)
    frames = {part: _partitions(parts[part], part, plan, side) for part in split.PARTS}
    state = None
    for step in range(plan.passes):
        partials = [
            plan.partial(step, part, frame, start, state)
            for part in ("train", "valid")
            for frame, start in frames[part]
        ]
        state = plan.finish(step, _tree(plan, step, partials), state)
    for part in split.PARTS:
        tables = [
            FeatureOutput.table(*plan.transform(part, frame, start, state))
            for frame, start in frames[part]
        ]
        got = pa.concat_tables(tables)
        want = read_parquet(out / f"{part}.parquet")
        assert got.column_names == want.column_names, part
        for name in want.column_names:
            assert got[name].equals(want[name]), (part, name)
    plan.save(side, state, tmp_path / "featurizer")
    _assert_same_featurizer(tmp_path / "featurizer", out / "featurizer")


def _assert_same_featurizer(got: Path, want: Path) -> None:
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in want.iterdir())
    for path in want.iterdir():
        if path.suffix == ".json":
            assert json.loads((got / path.name).read_text()) == json.loads(path.read_text())
        else:
            assert read_parquet(got / path.name).equals(read_parquet(path)), path.name


def test_the_plans_passes_see_only_the_training_parts(made):
    """Eval rows feed no statistic: the plan's partials are made of train and valid rows, and
    eval partitions only go through transform."""
    data, parts, _ = made
    plan = fit.Plan(SETTINGS)
    side = plan.side(data)
    (valid, start), *_ = _partitions(parts["valid"], "valid", plan, side)
    past_counts, all_counts = plan.partial(0, "valid", valid, start, None)
    assert past_counts is None and set(all_counts) == set(features.CATEGORICAL)
    (train, start), *_ = _partitions(parts["train"], "train", plan, side)
    merged = plan.merge(0, plan.partial(0, "train", train, start, None), (past_counts, all_counts))
    assert merged[0] is not None and merged[1] is not None
