"""params.yaml is declared once (kkbox.params): unknown keys, bad types and ranges fail clearly."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from cd4ml import params
from cd4ml.io import UserError
from tests.project import ROOT, out_of_range

COMMITTED = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def with_value(key: str, value: Any) -> dict:
    data = copy.deepcopy(COMMITTED)
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


def load(tmp_path: Path, data: Any) -> params.Params:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return params.load(path)


def test_the_committed_file_loads():
    loaded = params.load(ROOT / "params.yaml")
    assert loaded.train.model in ("xgb", "rf")
    assert isinstance(loaded.train.xgb.learning_rate, float)
    assert isinstance(loaded.preprocess.target_smoothing, float)  # 20 in YAML, a float here


def test_every_declared_key_is_in_the_file_and_nothing_else():
    declared = {key for key, _, _ in params.leaves()}

    def flat(node: dict, where: str = "") -> set[str]:
        keys = set()
        for k, v in node.items():
            key = f"{where}.{k}" if where else k
            keys |= flat(v, key) if isinstance(v, dict) else {key}
        return keys

    assert flat(COMMITTED) == declared


def test_unknown_key_names_the_closest_known_one(tmp_path):
    data = with_value("train.modle", "rf")
    with pytest.raises(UserError, match=r"^params.yaml: unknown key train.modle \(did you mean "):
        load(tmp_path, data)
    with pytest.raises(UserError, match=r"did you mean train.xgb.max_depth\?"):
        load(tmp_path, with_value("train.xgb.max_dept", 3))
    with pytest.raises(UserError, match=r"unknown key trian \(did you mean train\?\)"):
        load(tmp_path, {**COMMITTED, "trian": {}})
    with pytest.raises(
        UserError, match=r"unknown key zzz; known keys: engine, generate, validate"
    ):
        load(tmp_path, {**COMMITTED, "zzz": 1})


def test_the_hint_reads_train_model(tmp_path):
    with pytest.raises(UserError) as err:
        load(tmp_path, with_value("train.modle", "rf"))
    assert str(err.value) == "params.yaml: unknown key train.modle (did you mean train.model?)"


@pytest.mark.parametrize(
    ("key", "kind", "bounds"),
    [leaf for leaf in params.leaves() if leaf[1] in (int, float)],
    ids=lambda leaf: leaf if isinstance(leaf, str) else "",
)
def test_every_numeric_key_refuses_a_value_out_of_range(tmp_path, key, kind, bounds):
    bad = out_of_range(kind, bounds)
    assert bad is not None, f"{key} accepts every number: give it a range"
    with pytest.raises(UserError) as err:
        load(tmp_path, with_value(key, bad))
    message = str(err.value)
    assert message.startswith(f"params.yaml: {key} must be "), message
    assert repr(float(bad) if kind is float else bad) in message and "\n" not in message


def test_max_depth_minus_three_is_one_line(tmp_path):
    with pytest.raises(UserError) as err:
        load(tmp_path, with_value("train.xgb.max_depth", -3))
    assert str(err.value) == "params.yaml: train.xgb.max_depth must be in [1, 64], got -3"


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        (
            "split.eval_fraction",
            "abc",
            "split.eval_fraction must be a number (in (0, 1)), got 'abc'",
        ),
        ("train.xgb.n_estimators", 2.5, "must be an integer (>= 1), got 2.5 (float)"),
        ("train.xgb.n_estimators", True, "must be an integer (>= 1), got True (bool)"),
        ("train.model", "svm", "train.model must be one of xgb, rf, got 'svm'"),
        ("train.xgb.device", "gpu", "must be cpu, cuda or cuda:<ordinal>, got 'gpu'"),
        ("validate.max_category_tvd", float("nan"), "must be in [0, 1], got nan"),
        ("train.xgb", 3, "train.xgb must be a mapping of keys, got 3 (int)"),
    ],
)
def test_wrong_types_and_choices(tmp_path, key, value, words):
    with pytest.raises(UserError, match=r"^params.yaml: ") as err:
        load(tmp_path, with_value(key, value))
    assert words in str(err.value)


def test_a_missing_key_or_section_is_named(tmp_path):
    data = copy.deepcopy(COMMITTED)
    del data["train"]["rf"]["max_samples"]
    with pytest.raises(UserError, match=r"train.rf.max_samples is missing"):
        load(tmp_path, data)
    data = copy.deepcopy(COMMITTED)
    del data["gate"]
    with pytest.raises(UserError, match=r"params.yaml: gate is missing"):
        load(tmp_path, data)


def test_the_file_itself(tmp_path):
    with pytest.raises(UserError, match="params file not found"):
        params.load(tmp_path / "nope.yaml")
    (tmp_path / "params.yaml").write_text("train: [1, 2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"params.yaml: not valid YAML"):
        params.load(tmp_path / "params.yaml")
    with pytest.raises(UserError, match=r"the file must be a mapping of keys, got nothing"):
        load(tmp_path, None)


def test_cross_key_rule_sanity_rows_per_fold(tmp_path):
    with pytest.raises(UserError, match=r"sanity.cv_max_rows=30 is too small"):
        load(tmp_path, with_value("sanity.cv_max_rows", 30))


def test_the_engine_is_local_or_dask(tmp_path):
    assert load(tmp_path, COMMITTED).engine == "local"
    assert load(tmp_path, {**COMMITTED, "engine": "dask"}).engine == "dask"
    with pytest.raises(
        UserError, match=r"^params.yaml: engine must be one of local, dask, got 'spark'"
    ):
        load(tmp_path, {**COMMITTED, "engine": "spark"})
