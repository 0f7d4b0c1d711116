"""cd4ml.params: params.yaml through the pydantic models of the code that reads each section;
every key is required, typed strictly and bounded, and whatever is wrong is one clear line."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from cd4ml import params
from cd4ml.io import UserError
from kkbox import PROBLEM
from tests.project import ROOT, out_of_range

COMMITTED = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
MODELS = params.models(PROBLEM)
LEAVES = [leaf for name, model in MODELS.items() for leaf in params.leaves(model, name)]
# Keys that take any value of their type: nothing is out of their range (a wrong type is).
FREE = {"serve.prediction_log"}


def with_value(key: str, value: Any) -> dict:
    data = copy.deepcopy(COMMITTED)
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Write a params.yaml and check it whole, as `python -m cd4ml.params` does; the errors
    name the file as a stage run from the project root names it."""
    monkeypatch.chdir(tmp_path)

    def check(data: Any) -> dict[str, BaseModel]:
        Path("params.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return params.check_all("params.yaml")

    return check


def _message(load: Any, data: Any) -> str:
    with pytest.raises(UserError) as err:
        load(data)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_the_committed_file_is_valid():
    checked = params.check_all(ROOT / "params.yaml")
    assert list(checked) == list(MODELS)
    assert checked["train"].model in PROBLEM.kinds
    assert isinstance(checked["train"].xgb.learning_rate, float)
    assert isinstance(checked["preprocess"].target_smoothing, float)  # 20 in YAML, a float here
    assert params.problem(ROOT / "params.yaml") is PROBLEM


def test_the_sections_are_the_loops_then_the_problems():
    loop = [name for name in params.LOOP if name != "problem"]
    assert list(MODELS) == [*loop, *PROBLEM.sections]
    assert set(MODELS["train"].model_fields) == {"model", "seed", *PROBLEM.kinds}
    for name, kind in PROBLEM.kinds.items():
        assert MODELS["train"].model_fields[name].annotation is kind.Settings


def test_every_declared_key_is_in_the_file_and_nothing_else():
    def flat(node: dict, where: str = "") -> set[str]:
        keys = set()
        for k, v in node.items():
            key = f"{where}.{k}" if where else k
            keys |= flat(v, key) if isinstance(v, dict) else {key}
        return keys

    assert flat(COMMITTED) == {"problem", *(key for key, _ in LEAVES)}


def test_every_key_is_required_without_a_default():
    assert LEAVES
    for key, spec in LEAVES:
        assert spec.is_required(), key


@pytest.mark.parametrize(("key", "spec"), LEAVES, ids=[key for key, _ in LEAVES])
def test_every_key_refuses_a_value_out_of_its_range(load, key, spec):
    bad = out_of_range(spec)
    if key in FREE:
        assert bad is None
        message = _message(load, with_value(key, 5))
        assert (
            message
            == f"params.yaml: {key} must be a string ({params.describe(spec)}), got 5 (int)"
        )
        return
    assert bad is not None, f"{key} accepts every value of its type: give it a range"
    message = _message(load, with_value(key, bad))
    assert message.startswith(f"params.yaml: {key} must be {params.describe(spec)}"), message
    assert message.endswith(f", got {bad!r}"), message


@pytest.mark.parametrize(("key", "spec"), LEAVES, ids=[key for key, _ in LEAVES])
def test_the_committed_value_of_every_key_is_in_range(key, spec):
    value = COMMITTED
    for part in key.split("."):
        value = value[part]
    assert out_of_range(spec) != value


def test_out_of_range_gives_the_value_just_past_the_nearest_bound():
    fields = dict(LEAVES)
    assert out_of_range(fields["train.xgb.max_depth"]) == 0
    assert out_of_range(fields["split.eval_fraction"]) == 0.0
    assert out_of_range(fields["validate.min_join_coverage"]) == -0.5
    assert out_of_range(fields["train.rf.n_jobs"]) == -2
    assert out_of_range(fields["train.model"]) == "unknown"
    assert out_of_range(fields["train.xgb.device"]) == ""


def test_max_depth_minus_three_is_one_line(load):
    message = _message(load, with_value("train.xgb.max_depth", -3))
    assert message == "params.yaml: train.xgb.max_depth must be in [1, 64], got -3"
    assert _message(load, with_value("train.xgb.max_depth", 100)).endswith("got 100")


def test_rf_n_jobs_refuses_zero(load):
    message = _message(load, with_value("train.rf.n_jobs", 0))
    assert message == "params.yaml: train.rf.n_jobs must be >= -1, not 0, got 0"


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        (
            "split.eval_fraction",
            "abc",
            "split.eval_fraction must be a number (in (0, 1)), got 'abc' (str)",
        ),
        ("validate.max_category_tvd", "0.1", "must be a number (in [0, 1]), got '0.1' (str)"),
        ("train.xgb.n_estimators", 2.5, "must be an integer (>= 1), got 2.5 (float)"),
        ("train.xgb.n_estimators", True, "must be an integer (>= 1), got True (bool)"),
        ("train.xgb.n_estimators", "5", "must be an integer (>= 1), got '5' (str)"),
        ("train.xgb.learning_rate", False, "must be a number (in (0, 1]), got False (bool)"),
        ("train.seed", None, "train.seed must be an integer (in [0, 4294967295]), got nothing"),
        ("train.model", "svm", "train.model must be one of logreg, rf, xgb, got 'svm'"),
        ("train.xgb.device", "gpu", "must be cpu, cuda or cuda:<ordinal>, got 'gpu'"),
        ("validate.max_category_tvd", float("nan"), "must be in [0, 1], got nan"),
        ("train.xgb", 3, "train.xgb must be a mapping of keys, got 3 (int)"),
    ],
)
def test_wrong_types_and_choices(load, key, value, words):
    message = _message(load, with_value(key, value))
    assert message.startswith("params.yaml: ") and words in message, message


def test_an_int_is_a_number_and_a_number_never_an_int(load):
    checked = load(with_value("train.xgb.learning_rate", 1))
    assert checked["train"].xgb.learning_rate == 1.0
    assert isinstance(checked["train"].xgb.learning_rate, float)
    assert "got 300.0 (float)" in _message(load, with_value("train.xgb.n_estimators", 300.0))


def test_a_section_that_is_not_a_mapping_is_named(load):
    message = _message(load, {**COMMITTED, "gate": [1, 2]})
    assert message == "params.yaml: gate must be a mapping of keys, got [1, 2] (list)"
    assert _message(load, {**COMMITTED, "split": None}) == (
        "params.yaml: split must be a mapping of keys, got nothing"
    )


def test_unknown_keys_name_the_closest_known_one(load):
    message = _message(load, with_value("train.modle", "rf"))
    assert message == "params.yaml: unknown key train.modle (did you mean train.model?)"
    message = _message(load, with_value("train.xgb.max_dept", 3))
    assert (
        message
        == "params.yaml: unknown key train.xgb.max_dept (did you mean train.xgb.max_depth?)"
    )
    message = _message(load, with_value("generate.sed", 3))
    assert message == "params.yaml: unknown key generate.sed (did you mean generate.seed?)"


def test_an_unknown_key_far_from_any_lists_the_known_ones(load):
    message = _message(load, with_value("gate.zzz", 1))
    assert message == (
        "params.yaml: unknown key gate.zzz; known keys: min_improvement, decide_on, "
        "bootstrap_rounds, confidence, seed, min_gain_over_baseline, max_slice_drop, "
        "min_slice_rows, max_latency_growth, max_memory_growth, latency_slack_ms, "
        "memory_slack_mb, timing_repeats"
    )


def test_an_unknown_section_is_named(load):
    message = _message(load, {**COMMITTED, "trian": {}})
    assert message == "params.yaml: unknown key trian (did you mean train?)"
    message = _message(load, {**COMMITTED, "zzz": 1})
    assert message.startswith("params.yaml: unknown key zzz; known keys: problem, validate, split")
    assert message.endswith("monitor, rollout, generate, preprocess")
    # The engine is no setting of params.yaml any more (cd4ml.engine.name).
    assert _message(load, {**COMMITTED, "engine": "dask"}).startswith(
        "params.yaml: unknown key engine"
    )


def test_a_missing_key_or_section_is_named(load):
    data = copy.deepcopy(COMMITTED)
    del data["train"]["rf"]["max_samples"]
    message = _message(load, data)
    assert (
        message == "params.yaml: train.rf.max_samples is missing; add it (every key is required)"
    )
    data = copy.deepcopy(COMMITTED)
    del data["train"]["logreg"]
    assert _message(load, data) == (
        "params.yaml: train.logreg is missing; add it (every key is required)"
    )
    data = copy.deepcopy(COMMITTED)
    del data["gate"]
    assert _message(load, data) == (
        "params.yaml: section gate is missing; add it (docs/reference/params.md)"
    )


def test_the_problem_must_be_named_and_importable(load):
    data = {k: v for k, v in COMMITTED.items() if k != "problem"}
    assert _message(load, data) == (
        "params.yaml: problem is missing; add it (docs/reference/params.md)"
    )
    message = _message(load, {**COMMITTED, "problem": "no_such_problem"})
    assert message.startswith("params.yaml: problem 'no_such_problem' cannot be imported")
    assert _message(load, {**COMMITTED, "problem": 3}) == (
        "params.yaml: problem must name a Python package (e.g. kkbox), got 3"
    )


def test_the_file_itself(tmp_path, load):
    with pytest.raises(UserError, match=r"nope.yaml: params file not found"):
        params.check_all(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.yaml: not valid YAML \(.*\); fix the file$"):
        params.check_all(tmp_path / "bad.yaml")
    assert _message(load, None) == "params.yaml: must be a mapping of sections, got nothing"
    assert _message(load, [1]) == "params.yaml: must be a mapping of sections, got [1] (list)"


def test_cross_key_rule_sanity_rows_per_fold(load):
    data = with_value("sanity.cv_max_rows", 30)
    assert _message(load, data) == (
        "params.yaml: sanity.cv_max_rows=30 is too small for sanity.cv_folds=5; use at least 50"
    )
    data["sanity"]["cv_folds"] = 3
    assert load(data)["sanity"].cv_max_rows == 30


def test_a_stage_reads_only_its_own_section(tmp_path):
    path = tmp_path / "params.yaml"
    bad = with_value("gate.confidence", 2.0)
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    split = params.section(path, "split", MODELS["split"])
    assert split.eval_fraction == COMMITTED["split"]["eval_fraction"]
    with pytest.raises(UserError, match=r"gate.confidence must be in \(0, 1\), got 2.0$"):
        params.section(path, "gate", MODELS["gate"])
    assert params.value(path, "problem") == "kkbox"
    generate = params.problem_section(PROBLEM, "generate", path)
    assert generate.seed == COMMITTED["generate"]["seed"]
    assert params.problem_section(PROBLEM, "no_section_of_kkbox", path) is None


def test_parse_names_where_the_section_sits():
    model = MODELS["split"]
    with pytest.raises(UserError) as err:
        params.parse(model, {"eval_fraction": 0.2}, "split", "p.yaml")
    assert (
        str(err.value) == "p.yaml: split.valid_fraction is missing; add it (every key is required)"
    )
    with pytest.raises(
        UserError, match=r"^p.yaml: split must be a mapping of keys, got 3 \(int\)"
    ):
        params.parse(model, 3, "split", "p.yaml")
    assert (
        params.parse(model, {"eval_fraction": 0.2, "valid_fraction": 0.1}, "split").eval_fraction
        == 0.2
    )


def test_a_section_is_frozen():
    split = params.parse(MODELS["split"], COMMITTED["split"], "split")
    with pytest.raises(Exception, match="frozen"):
        split.eval_fraction = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("validate.max_category_tvd", "in [0, 1]"),
        ("split.eval_fraction", "in (0, 1)"),
        ("gate.min_improvement", "in [0, 1)"),
        ("train.xgb.learning_rate", "in (0, 1]"),
        ("train.logreg.C", "> 0"),
        ("train.xgb.n_estimators", ">= 1"),
        ("gate.decide_on", "one of difference, lower_bound"),
        ("train.xgb.device", "cpu, cuda or cuda:<ordinal>"),
    ],
)
def test_describe_says_what_a_key_allows(spec, words):
    assert params.describe(dict(LEAVES)[spec]) == words


def test_the_command_checks_the_committed_file():
    result = subprocess.run(
        [sys.executable, "-m", "cd4ml.params"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"params.yaml: every key of {len(MODELS)} sections is valid\n"


def test_the_command_fails_with_one_line(load, tmp_path):
    load(COMMITTED)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(with_value("train.xgb.max_depth", 100)), encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, "-m", "cd4ml.params", "--params", str(tmp_path / "params.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {tmp_path / 'params.yaml'}: train.xgb.max_depth must be in [1, 64], got 100\n"
    )


def test_the_markdown_lists_every_key_with_what_it_allows_and_its_value():
    page = params.markdown(ROOT / "params.yaml")
    rows = [line for line in page.splitlines() if line.startswith("| ") and "---" not in line]
    keys = [row.split(" | ")[0].removeprefix("| ") for row in rows[1:]]
    assert keys == ["problem", *(key for key, _ in LEAVES)]
    assert "| train.xgb.max_depth | integer | in [1, 64] | 8 |" in rows
    assert "| split.eval_fraction | number | in (0, 1) | 0.2 |" in rows
    assert "| train.model | string | one of logreg, rf, xgb | xgb |" in rows
    assert "| problem | string | an importable problem package | kkbox |" in rows
    result = subprocess.run(
        [sys.executable, "-m", "cd4ml.params", "--markdown"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout == page
