"""The gate's slice check and serving-cost check (cd4ml.gate), on real small bundles of
tests.faulty: a challenger better overall but upside down for new members, a champion noisier
for known ones, a slow bundle and a plain one, all of one trained model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.metrics import roc_auc_score

from cd4ml import bundle, gate
from cd4ml.io import UserError, read_parquet, write_parquet
from tests import faulty, toy
from tests.bundles import fit_featurizer, raw_tables, train, write_bundle
from tests.unit import test_gate

# Members with no play in the training part: their eval rows are the new_member slice.
HELD_OUT = [f"m{i:03d}" for i in range(40, 60)]

# test_gate's quicker gate, with these slices' and timings' settings.
SETTINGS = test_gate.SETTINGS.model_copy(
    update={
        "max_slice_drop": 0.01,
        "min_slice_rows": 30,
        "timing_repeats": 5,
        "latency_slack_ms": 10.0,  # 2 shared cores: the same bundle's medians differ by ms
    }
)


@dataclass
class Cold:
    challenger: Path  # new_member_inverted
    champion: Path  # known_noisy
    plain: Path  # xgb
    slow: Path  # slow
    rows: Path
    y: np.ndarray
    new_member: np.ndarray  # the eval rows of held-out members


def faulty_bundle(folder: Path, fitted, trained, kind: str) -> Path:
    """A bundle of tests.faulty whose model (xgb's file) is of kind `kind`."""
    write_bundle(folder, fitted, trained)
    path = folder / bundle.MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(problem="tests.faulty", model=kind)
    path.write_text(json.dumps(manifest, indent=2))
    return folder


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> Cold:
    folder = tmp_path_factory.mktemp("cold")
    tables = raw_tables()
    for part in ("train", "valid"):
        kept = pc.invert(pc.is_in(tables[part]["msno"], pa.array(HELD_OUT)))
        tables[part] = tables[part].filter(kept)
    fitted = fit_featurizer(folder, tables)
    model = train(fitted, "xgb")
    made = {
        name: faulty_bundle(folder / name, fitted, model, kind)
        for name, kind in (
            ("challenger", "new_member_inverted"),
            ("champion", "known_noisy"),
            ("plain", "xgb"),
            ("slow", "slow"),
        )
    }
    rows = folder / "eval.parquet"
    write_parquet(fitted.eval_raw, rows)
    held_out = np.isin(np.asarray(fitted.eval_raw["msno"].to_pylist()), HELD_OUT)
    return Cold(**made, rows=rows, y=fitted.eval_raw["target"].to_numpy(), new_member=held_out)


@pytest.fixture(scope="module")
def refused(cold: Cold) -> gate.Verdict:
    """The challenger worse for new members against the champion, compared once."""
    return compare(cold, cold.challenger, cold.champion)


def compare(cold: Cold, challenger: Path, champion: Path, **settings) -> gate.Verdict:
    update = SETTINGS.model_copy(update=settings)
    return gate.compare_bundles(faulty.PROBLEM, challenger, champion, cold.rows, update)


def by_name(verdict: gate.Verdict) -> dict[str, dict]:
    return {row["slice"]: row for row in verdict.slices["table"]}


def test_a_challenger_worse_only_for_new_members_is_refused_naming_the_slice(cold, refused):
    verdict = refused
    assert verdict.beats_champion  # better overall: only the slice gate refuses it
    assert not verdict.passed
    slices = by_name(verdict)
    new = slices["new_member"]
    assert new["rows"] == cold.new_member.sum() >= SETTINGS.min_slice_rows
    p_new = bundle.load(cold.challenger, faulty.PROBLEM).predict_proba(read_parquet(cold.rows))
    p_old = bundle.load(cold.champion, faulty.PROBLEM).predict_proba(read_parquet(cold.rows))
    y, mask = cold.y[cold.new_member], cold.new_member
    assert new["challenger_roc_auc"] == pytest.approx(roc_auc_score(y, p_new[mask]), abs=1e-12)
    assert new["champion_roc_auc"] == pytest.approx(roc_auc_score(y, p_old[mask]), abs=1e-12)
    assert new["status"] == "failed" and new["interval"]["high"] < 0
    assert slices["known"]["status"] == "passed" and slices["known"]["difference"] > 0
    low, high = (f"{gate._signed(new['interval'][k])}" for k in ("low", "high"))
    assert verdict.failures() == [
        f"slice new_member ({new['rows']} eval rows): roc_auc {new['challenger_roc_auc']:.4f} "
        f"vs the champion's {new['champion_roc_auc']:.4f}, diff {gate._signed(new['difference'])}"
        f" (90% interval {low} .. {high}) drops by more than gate.max_slice_drop 0.0100"
    ]
    message = verdict.message()
    assert message.startswith(f"gate failed: {verdict.failures()[0]} (overall roc_auc ")
    assert "\n" not in message


def test_the_slices_are_the_problems_and_each_value_of_its_slice_columns(cold, refused):
    slices = by_name(refused)
    n = len(cold.y)
    cold_start = ("known", "new_member", "new_song", "both_new")
    assert sum(slices[name]["rows"] for name in cold_start) == n
    sources = [name for name in slices if name.startswith("source_type=")]
    assert sources == [
        "source_type=local-library",
        "source_type=radio",
        "source_type=(missing)",
    ]
    assert sum(slices[name]["rows"] for name in sources) == n


def test_a_slice_below_min_slice_rows_is_reported_not_gated(cold, refused):
    small = by_name(refused)["both_new"]
    assert small["rows"] < SETTINGS.min_slice_rows and small["status"].startswith("reported")
    # The same challenger passes when the new members are too few rows to be gated.
    rows = int(cold.new_member.sum())
    verdict = compare(cold, cold.challenger, cold.champion, min_slice_rows=rows + 1)
    new = by_name(verdict)["new_member"]
    assert new["status"] == "reported (below gate.min_slice_rows)" and new["difference"] < 0
    assert verdict.passed and verdict.failures() == []
    text = gate.gate_markdown(verdict.report())
    assert "#### Slices (90% paired bootstrap intervals; fails: a drop beyond 0.01" in text
    assert f"| new_member | {rows} | {new['challenger_roc_auc']:.4f} | " in text
    assert "| reported (below gate.min_slice_rows) |" in text


def test_a_slower_bundle_is_refused_and_an_equal_one_passes(cold, monkeypatch):
    monkeypatch.setattr(faulty.Slow, "delay", 0.1)  # the memory probe's process keeps 1 s
    verdict = compare(cold, cold.slow, cold.champion)
    assert verdict.beats_champion and by_name(verdict)["new_member"]["difference"] == 0
    cost = {row["measure"]: row for row in verdict.cost["measures"]}
    one = cost["scoring time, 1 row (ms)"]
    assert one["challenger"] >= 100 and not one["passed"]
    assert one["growth"] == pytest.approx(one["challenger"] / one["champion"], rel=1e-3)
    assert not cost["scoring time, 1,000 rows (ms)"]["passed"]
    failures = verdict.failures()
    assert len(failures) == 2
    assert failures[0].startswith(
        f"scoring time, 1 row (ms): challenger {one['challenger']:.2f} vs the champion's "
        f"{one['champion']:.2f} (x{one['growth']:.2f}) grows beyond gate.max_latency_growth 1.5"
    )
    assert verdict.message().startswith(f"gate failed: {failures[0]}; ")

    equal = compare(cold, cold.plain, cold.plain)
    assert all(row["passed"] for row in equal.cost["measures"])
    memory = equal.cost["measures"][-1]
    assert memory["measure"] == "peak memory of load + score (MB)"
    assert memory["challenger"] > 0 and memory["champion"] > 0
    assert equal.failures() == []  # (overall it ties: the champion's gate says so alone)


def test_memory_growth_beyond_its_limit_fails_naming_both_numbers(cold):
    timed = {"1 row": [1.0, 1.0], "1,000 rows": [5.0, 5.0]}
    settings = SETTINGS.model_copy(update={"memory_slack_mb": 10.0})
    cost = gate.serving_cost(timed, [80.0, 40.0], settings)
    assert [row["passed"] for row in cost["measures"]] == [True, True, False]
    verdict = gate.Verdict(0.8, 0.7, 0.0, cost=cost)
    assert verdict.failures() == [
        "peak memory of load + score (MB): challenger 80.00 vs the champion's 40.00 (x2.00) "
        "grows beyond gate.max_memory_growth 1.5 (slack 10.0)"
    ]
    # Within the slack, a doubling of a tiny number is noise.
    assert gate.serving_cost(timed, [8.0, 4.0], settings)["measures"][2]["passed"]


def test_the_report_and_its_markdown_carry_both_tables(refused):
    report = refused.report()
    assert json.loads(json.dumps(report)) == report  # metrics/gate.json
    assert [row["slice"] for row in report["slices"]["table"]][:4] == [
        "known",
        "new_member",
        "new_song",
        "both_new",
    ]
    assert "peak RSS" in report["serving_cost"]["memory"]
    text = gate.gate_markdown(report)
    assert "| slice | eval rows | challenger | champion | difference | interval | gate |" in text
    assert "#### Serving cost (time: median of 5 interleaved runs after a warm-up" in text
    assert "| scoring time, 1 row (ms) | " in text


def test_a_slice_column_the_rows_lack_is_a_clear_error():
    class Odd(faulty.Faulty):
        slice_columns = ("no_such_column",)

    with pytest.raises(UserError, match="slice column 'no_such_column' is not a column"):
        gate.slice_masks(Odd(), None, pa.table({"a": [1]}))


def test_the_toy_problem_slices_by_tenure_and_each_plan():
    rows = pa.table({"plan": ["basic", "pro", "basic", "plus"]})
    x = pd.DataFrame({"tenure_months": [1, 10, 3, 20]})
    masks = gate.slice_masks(toy.PROBLEM, x, rows)
    assert list(masks) == ["new_customer", "tenured", "plan=basic", "plan=plus", "plan=pro"]
    assert masks["plan=basic"].tolist() == [True, False, True, False]
    # A problem without slice_columns (they are optional) has its own slices only.
    bare = SimpleNamespace(name="bare", slices=toy.PROBLEM.slices)
    assert list(gate.slice_masks(bare, x, rows)) == ["new_customer", "tenured"]
