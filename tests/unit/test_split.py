"""cd4ml.split: the examples in time order cut into train, valid and eval, each a later period,
with one line for a share that leaves a part empty."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cd4ml import split
from cd4ml.io import UserError
from cd4ml.split import Split


def examples(n: int) -> tuple[pa.Table, pa.ChunkedArray]:
    """n example rows in time order (`t` = the row's time) and their true probabilities."""
    table = pa.table({"t": list(range(n)), "target": [i % 2 for i in range(n)]})
    truth = pa.chunked_array([[i / n for i in range(n)]], pa.float64())
    return table, truth


@pytest.mark.parametrize(
    ("n_rows", "fraction", "start"),
    [(10, 0.2, 8), (100, 0.2, 80), (7, 0.5, 3), (3, 0.2, 2), (1000, 0.001, 999)],
)
def test_eval_start_keeps_the_last_fraction_for_eval(n_rows, fraction, start):
    assert split.eval_start(n_rows, fraction) == start


@pytest.mark.parametrize(("n_rows", "fraction"), [(10, 0.01), (10, 0.99), (1, 0.5), (0, 0.2)])
def test_an_eval_fraction_that_leaves_a_part_empty_is_one_line(n_rows, fraction):
    with pytest.raises(UserError) as err:
        split.eval_start(n_rows, fraction)
    assert str(err.value) == (
        f"split.eval_fraction={fraction} leaves an empty part of {n_rows} example rows"
    )


@pytest.mark.parametrize(
    ("n_rows", "fraction", "start"), [(10, 0.2, 8), (5, 0.01, 4), (80, 0.1, 72), (1, 0.1, 0)]
)
def test_early_stopping_start_keeps_at_least_one_row(n_rows, fraction, start):
    assert split.early_stopping_start(n_rows, fraction) == start


def test_the_three_parts_are_in_time_order_and_cover_every_row():
    table, truth = examples(100)
    parts = split.split(table, truth, Split(eval_fraction=0.2, valid_fraction=0.1))
    assert list(parts) == [*split.PARTS, "eval_truth"]
    times = {name: parts[name]["t"].to_pylist() for name in split.PARTS}
    assert times == {
        "train": list(range(72)),
        "valid": list(range(72, 80)),
        "eval": list(range(80, 100)),
    }
    assert parts["eval"].schema == table.schema  # the rows as they are, every column
    assert parts["eval_truth"].column_names == ["target_probability"]
    assert parts["eval_truth"]["target_probability"].to_pylist() == [
        i / 100 for i in range(80, 100)
    ]


def test_eval_truth_keeps_the_missing_values_of_an_unknown_truth():
    table, _ = examples(10)
    unknown = pa.chunked_array([[None] * 10], pa.float64())
    parts = split.split(table, unknown, Split(eval_fraction=0.2, valid_fraction=0.1))
    assert parts["eval_truth"]["target_probability"].to_pylist() == [None, None]


def test_a_valid_fraction_that_leaves_no_training_rows_is_one_line():
    # One row before eval: it would be the valid part, the one early-stopping row.
    table, truth = examples(2)
    with pytest.raises(UserError) as err:
        split.split(table, truth, Split(eval_fraction=0.5, valid_fraction=0.1))
    assert str(err.value) == (
        "split.valid_fraction=0.1 leaves no training rows of the 1 before the eval part; "
        "add data or lower split.eval_fraction"
    )
    parts = split.split(*examples(4), Split(eval_fraction=0.25, valid_fraction=0.4))
    assert [parts[name].num_rows for name in split.PARTS] == [2, 1, 1]


def test_an_eval_fraction_that_leaves_no_eval_rows_fails_the_split():
    table, truth = examples(4)
    with pytest.raises(UserError, match=r"^split.eval_fraction=0.1 leaves an empty part of 4 "):
        split.split(table, truth, Split(eval_fraction=0.1, valid_fraction=0.1))


def test_the_settings_are_bounded():
    fields = Split.model_fields
    assert set(fields) == {"eval_fraction", "valid_fraction"}
    with pytest.raises(ValueError, match="valid_fraction"):
        Split(eval_fraction=0.2, valid_fraction=0.5)
    with pytest.raises(ValueError, match="eval_fraction"):
        Split(eval_fraction=1.0, valid_fraction=0.1)
