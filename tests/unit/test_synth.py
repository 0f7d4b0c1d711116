"""kkbox.synth: the generator's building blocks, its tables on tiny inline scales, its write."""

from __future__ import annotations

import base64
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cd4ml import params
from kkbox import synth
from kkbox.tables import (
    CITIES,
    CONTRACT,
    LANGUAGES,
    MEMBERS,
    REGISTERED_VIA,
    SONGS,
    SOURCE_SCREEN_NAMES,
    SOURCE_SYSTEM_TABS,
    SOURCE_TYPES,
    TEST,
    TRAIN,
    TRUTH,
)
from tests.project import ROOT

# Enough songs for every genre to have some: make_plays needs that (with 300 songs, seed 2
# leaves a genre empty and its plays unset).
TINY = synth.Scale(members=60, songs=1000, train=500, test=100)


def test_the_generator_only_uses_declared_categories():
    tabs, screens, types = ({s[i] for s in synth.SOURCES if s[i] is not None} for i in range(3))
    assert tabs <= set(SOURCE_SYSTEM_TABS)
    assert screens <= set(SOURCE_SCREEN_NAMES)
    assert types <= set(SOURCE_TYPES)
    assert set(synth.CITIES) <= set(CITIES)
    assert {v for v, _ in synth.REGISTERED_VIA} <= set(REGISTERED_VIA)
    assert {code for code, _, _ in synth.LANGUAGES} <= set(LANGUAGES)


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
    assert set(tables) == set(CONTRACT.tables)
    for name, columns in tables.items():
        assert list(columns) == list(CONTRACT.tables[name].columns), name
        assert len({len(values) for values in columns.values()}) == 1, name
    assert len(tables[MEMBERS]["msno"]) == TINY.members
    assert len(tables[TRAIN]["target"]) == len(tables[TRUTH]["target_probability"])
    assert len(tables[TRAIN]["target"]) == TINY.train
    assert tables[TEST]["id"].tolist() == list(range(TINY.test))
    # A few songs are left out of songs.csv, as in Kaggle's: never more than there are.
    assert len(tables[SONGS]["song_id"]) <= TINY.songs
    assert set(tables[TRAIN]["target"].tolist()) == {0, 1}
    p = tables[TRUTH]["target_probability"]
    assert ((p > 0) & (p < 1)).all()


def test_plays_refer_to_generated_members():
    tables = synth.generate(TINY, seed=1)
    members = set(tables[MEMBERS]["msno"].to_pylist())
    for name in (TRAIN, TEST):
        msno = tables[name]["msno"]
        assert isinstance(msno, pa.DictionaryArray)
        assert set(msno.dictionary_decode().to_pylist()) <= members


def test_one_seed_gives_the_same_tables_another_seed_different_ones():
    first, again, other = (synth.generate(TINY, seed) for seed in (1, 1, 2))
    for name, columns in first.items():
        for col, values in columns.items():
            assert _as_list(values) == _as_list(again[name][col]), (name, col)
    assert _as_list(first[MEMBERS]["msno"]) != _as_list(other[MEMBERS]["msno"])


@pytest.mark.parametrize("rate", [0.2, 0.8])
def test_the_truth_is_shifted_to_the_positive_rate(rate):
    truth = synth.generate(TINY, seed=1, positive_rate=rate)[TRUTH]["target_probability"]
    assert truth.mean() == pytest.approx(rate, abs=1e-4)


def _as_list(values: pa.Array | np.ndarray) -> list:
    if isinstance(values, pa.DictionaryArray):
        values = values.dictionary_decode()
    return values.to_pylist() if isinstance(values, pa.Array) else values.tolist()


def test_the_time_effect_defaults_are_params_yamls():
    settings = params.section(ROOT / "params.yaml", "generate", synth.Generate)
    assert settings.time_effects() == asdict(synth.TimeEffects())
    assert set(settings.time_effects()) == set(synth.Generate.model_fields) - {
        "seed",
        "positive_rate",
    }


def test_an_unknown_time_effect_is_refused():
    with pytest.raises(TypeError, match="song_trnd"):
        synth.generate(TINY, seed=1, song_trnd=1.0)


def test_rows_fall_in_epochs_and_windows_in_time_order():
    when = np.array([0.0, 0.049, 0.05, 0.7999, 0.8, 0.999999, 1.0, 1.26])
    epoch = synth._epoch_of(when)
    assert epoch.tolist() == [0, 0, 1, 15, 16, 19, 20, 25]
    assert synth._window_of(epoch, 6).tolist() == [0, 0, 0, 3, 4, 4, 5, 5]


def _two_tables(scale: synth.Scale, seed: int, positive_rate: float, **effects: float) -> dict:
    return {
        "a.csv": {"x": np.array([seed, 2]), "p": np.array([positive_rate, 0.25])},
        "b.csv": {"y": np.array([scale.train])},
    }


def test_write_writes_every_table_of_the_scale_and_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "generate", _two_tables)
    out = tmp_path / "data"
    synth.write(out, "tiny", seed=7, positive_rate=0.75)
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv"]
    assert (out / "a.csv").read_text() == "x,p\n7,0.75\n2,0.25\n"
    assert (out / "b.csv").read_text() == f"y\n{synth.SCALES['tiny'].train}\n"


def test_write_passes_the_time_effects_to_the_generator(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    synth.write(a, "tiny", seed=3)
    synth.write(b, "tiny", seed=3, song_trend=0.0, source_drift=0.0)
    assert (a / MEMBERS).read_bytes() == (b / MEMBERS).read_bytes()
    assert (a / TRAIN).read_bytes() != (b / TRAIN).read_bytes()


def test_a_failed_write_leaves_the_previous_data(tmp_path, monkeypatch):
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.csv").write_text("kept\n")
    written = []

    def disk_full_on_the_second_table(columns: dict, path: Path) -> int:
        if written:
            raise OSError(28, "No space left on device")
        written.append(path.name)
        path.write_text("x\n1\n")
        return 1

    monkeypatch.setattr(synth, "generate", _two_tables)
    monkeypatch.setattr(synth, "write_csv", disk_full_on_the_second_table)
    with pytest.raises(OSError, match="No space left"):
        synth.write(out, "tiny", seed=1)
    assert written == ["a.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temp folder left
    assert [p.name for p in out.iterdir()] == ["old.csv"]
