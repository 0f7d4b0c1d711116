"""cd4ml.synth: the generator's building blocks and its tables, on tiny inline scales."""

from __future__ import annotations

import base64
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pytest

from kkbox import synth
from cd4ml import params
from kkbox import schema
from tests.project import ROOT

# Enough songs for every genre to have some: make_plays needs that (with 300 songs, seed 2
# leaves a genre empty and its plays unset).
TINY = synth.Scale(members=60, songs=1000, train=500, test=100)


def test_the_generator_only_uses_declared_categories():
    tabs, screens, types = ({s[i] for s in synth.SOURCES if s[i] is not None} for i in range(3))
    assert tabs <= set(schema.SOURCE_SYSTEM_TABS)
    assert screens <= set(schema.SOURCE_SCREEN_NAMES)
    assert types <= set(schema.SOURCE_TYPES)
    assert set(synth.CITIES) <= set(schema.CITIES)
    assert {v for v, _ in synth.REGISTERED_VIA} <= set(schema.REGISTERED_VIA)
    assert {code for code, _, _ in synth.LANGUAGES} <= set(schema.LANGUAGES)


def test_logit_offset_bisects_to_the_rate():
    logit = np.random.default_rng(0).normal(0.0, 1.5, 1000)
    assert synth.logit_offset(logit, 0.5) == 0.0
    shift = synth.logit_offset(logit, 0.9)
    mean = (1 / (1 + np.exp(-(logit + shift)))).mean()
    assert shift > 0 and mean == pytest.approx(0.9, abs=1e-9)
    assert synth.logit_offset(logit, 0.1) < 0
    with pytest.raises(ValueError, match="positive_rate must be in"):
        synth.logit_offset(logit, 1.0)


def test_kaggle_ids_are_unique_44_character_base64_of_32_bytes():
    ids = synth.kaggle_ids(np.random.default_rng(3), 200).to_pylist()
    assert len(ids) == len(set(ids)) == 200
    assert all(len(i) == 44 and i.endswith("=") for i in ids)
    assert all(len(base64.b64decode(i)) == 32 for i in ids)
    assert synth.kaggle_ids(np.random.default_rng(3), 200).to_pylist() == ids
    assert synth.kaggle_ids(np.random.default_rng(4), 200).to_pylist() != ids


def test_generate_makes_every_declared_table_at_the_scale_asked_for():
    tables = synth.generate(TINY, seed=1)
    assert set(tables) == set(schema.TABLES)
    for name, columns in tables.items():
        assert list(columns) == list(schema.TABLES[name]), name
        assert len({len(values) for values in columns.values()}) == 1, name
    assert len(tables[schema.MEMBERS]["msno"]) == TINY.members
    assert len(tables[schema.TRAIN]["target"]) == len(tables[schema.TRUTH]["target_probability"])
    assert len(tables[schema.TRAIN]["target"]) == TINY.train
    assert tables[schema.TEST]["id"].tolist() == list(range(TINY.test))
    # A few songs are left out of songs.csv, as in Kaggle's: never more than there are.
    assert len(tables[schema.SONGS]["song_id"]) <= TINY.songs
    assert set(tables[schema.TRAIN]["target"].tolist()) == {0, 1}
    p = tables[schema.TRUTH]["target_probability"]
    assert ((p > 0) & (p < 1)).all()


def test_plays_refer_to_generated_members():
    tables = synth.generate(TINY, seed=1)
    members = set(tables[schema.MEMBERS]["msno"].to_pylist())
    for name in (schema.TRAIN, schema.TEST):
        msno = tables[name]["msno"]
        assert isinstance(msno, pa.DictionaryArray)
        assert set(msno.dictionary_decode().to_pylist()) <= members


def test_one_seed_gives_the_same_tables_another_seed_different_ones():
    first, again, other = (synth.generate(TINY, seed) for seed in (1, 1, 2))
    for name, columns in first.items():
        for col, values in columns.items():
            assert _as_list(values) == _as_list(again[name][col]), (name, col)
    assert _as_list(first[schema.MEMBERS]["msno"]) != _as_list(other[schema.MEMBERS]["msno"])


@pytest.mark.parametrize("rate", [0.2, 0.8])
def test_the_truth_is_shifted_to_the_positive_rate(rate):
    truth = synth.generate(TINY, seed=1, positive_rate=rate)[schema.TRUTH]["target_probability"]
    assert truth.mean() == pytest.approx(rate, abs=1e-4)


def _as_list(values: pa.Array | np.ndarray) -> list:
    if isinstance(values, pa.DictionaryArray):
        values = values.dictionary_decode()
    return values.to_pylist() if isinstance(values, pa.Array) else values.tolist()


def test_the_time_effect_defaults_are_params_yamls():
    settings = params.load(ROOT / "params.yaml").generate
    assert settings.time_effects() == asdict(synth.TimeEffects())


def test_an_unknown_time_effect_is_refused():
    with pytest.raises(TypeError, match="song_trnd"):
        synth.generate(TINY, seed=1, song_trnd=1.0)


def test_rows_fall_in_epochs_and_windows_in_time_order():
    when = np.array([0.0, 0.049, 0.05, 0.7999, 0.8, 0.999999, 1.0, 1.26])
    epoch = synth._epoch_of(when)
    assert epoch.tolist() == [0, 0, 1, 15, 16, 19, 20, 25]
    assert synth._window_of(epoch, 6).tolist() == [0, 0, 0, 3, 4, 4, 5, 5]
