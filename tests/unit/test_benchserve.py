"""tools.benchserve: the summary, the targets and the report, then a short real run of the load
generator against the real service of a small bundle."""

from __future__ import annotations

import json

import pytest

from cd4ml import bundle
from cd4ml.io import UserError, write_csv, write_parquet
from kkbox import PROBLEM, tables
from tests.bundles import fit_featurizer, train, write_bundle
from tools import benchserve


def test_summary_gives_percentiles_and_throughput():
    latencies = [0.001] * 98 + [0.010, 0.020]
    case = benchserve.summary(latencies, rows_per_request=1000, wall_s=2.0)
    assert case["requests"] == 100 and case["p50_ms"] == pytest.approx(1.0)
    assert case["p99_ms"] == pytest.approx(10.1) and case["max_ms"] == pytest.approx(20.0)
    assert case["requests_per_s"] == 50 and case["rows_per_s"] == 50_000


def test_no_completed_request_is_an_error():
    with pytest.raises(UserError, match="no request completed"):
        benchserve.summary([], 1, 1.0)


def _results(p99_one: float, rows_per_s: float) -> dict:
    one = {"p99_ms": p99_one, "rows_per_s": 100.0}
    many = {"p99_ms": 50.0, "rows_per_s": rows_per_s}
    return {"cases": {"1 row": one, "1,000 rows": many}, "startup_s": 3.0}


def test_targets_hold_or_not_on_the_measured_values():
    good = benchserve.check_targets(_results(p99_one=4.0, rows_per_s=60_000))
    assert all(check["met"] for check in good.values())
    bad = benchserve.check_targets(_results(p99_one=12.0, rows_per_s=40_000))
    assert not bad["p99_1_row_ms"]["met"] and not bad["rows_per_s"]["met"]
    assert bad["startup_s"]["met"] and bad["p99_1000_rows_ms"]["met"]


@pytest.mark.timeout(120)
def test_a_short_run_against_the_real_service(tmp_path):
    fitted = fit_featurizer(tmp_path)
    path = write_bundle(tmp_path / "bundle", fitted, train(fitted, "xgb"))
    rows = tmp_path / "rows.parquet"
    write_parquet(fitted.eval_raw, rows)
    argv = ["--bundle", str(path), "--rows", str(rows), "--duration", "0.5"]
    benchserve.main([*argv, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    results = json.loads((tmp_path / "out" / "serve.json").read_text())
    assert set(results["cases"]) == {name for name, _, _ in benchserve.CASES}
    for case in results["cases"].values():
        assert case["requests"] > 0 and 0 < case["p50_ms"] <= case["p99_ms"]
        assert case["floor_p50_ms"] > 0
    assert 0 < results["load_s"] < results["startup_s"]
    # The logged run wrote every row it scored (the service flushes its log when it stops).
    logged = results["logged"]
    assert set(logged) == set(benchserve.LOGGED)
    one, many = logged["1 row"]["requests"], logged["1,000 rows"]["requests"]
    assert results["logged_rows"] == one + many * min(1000, fitted.eval_raw.num_rows)
    report = (tmp_path / "out" / "serve.md").read_text()
    assert "| 1 row |" in report and "rows_per_s ≥ 50000" in report


def test_an_answer_scores_every_row_and_counts_the_problems_flags():
    flags = ("unknown_member", "unknown_song")
    good = {
        "rows": 2,
        "probabilities": [0.1, 0.9],
        "flags": {"unknown_song": 1, "unknown_member": 0},
    }
    benchserve.check_answer(good, 2, flags)
    with pytest.raises(UserError, match="of 2 row"):
        benchserve.check_answer({**good, "probabilities": [0.1]}, 2, flags)
    old = {"rows": 2, "probabilities": [0.1, 0.9], "unknown_members": 0, "unknown_songs": 1}
    with pytest.raises(UserError, match="counted the flags"):
        benchserve.check_answer(old, 2, flags)


def test_rows_of_the_batch_table_are_read_as_the_problems_input_fields(tmp_path):
    path = tmp_path / tables.TEST
    write_csv(
        {
            "id": [0, 1],
            "msno": ["m1", "m2"],
            "song_id": ["s1", "s2"],
            "source_system_tab": ["my library", ""],
            "source_screen_name": ["Radio", "Search"],
            "source_type": ["radio", "song"],
        },
        path,
    )
    rows = benchserve.read_rows(path, PROBLEM)
    assert rows.column_names == [f.name for f in bundle.input_fields(PROBLEM.Row)]
    assert rows.to_pylist()[1] == {
        "msno": "m2",
        "song_id": "s2",
        "source_system_tab": None,  # empty is missing, as the stages read it
        "source_screen_name": "Search",
        "source_type": "song",
    }
