"""tools.benchserve: the summary, the targets and the report, then a short real run of the load
generator against the real service of a small bundle (and one through real nginx, where it is
installed)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from cd4ml import bundle, rollout
from cd4ml.io import UserError, write_csv, write_parquet
from kkbox import PROBLEM, tables
from tests.bundles import Fitted, fit_featurizer, train, write_bundle
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


def _short_run(tmp_path, *options: str) -> tuple[dict, Fitted]:
    """The tool on a small real bundle and its eval rows: its serve.json, the bundle's data."""
    fitted = fit_featurizer(tmp_path)
    path = write_bundle(tmp_path / "bundle", fitted, train(fitted, "xgb"))
    rows = tmp_path / "rows.parquet"
    write_parquet(fitted.eval_raw, rows)
    argv = ["--bundle", str(path), "--rows", str(rows), *options]
    benchserve.main([*argv, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    return json.loads((tmp_path / "out" / "serve.json").read_text()), fitted


@pytest.mark.timeout(120)
def test_a_short_run_against_the_real_service(tmp_path):
    results, fitted = _short_run(tmp_path, "--duration", "0.5", "--no-nginx")
    assert "nginx" not in results and "shadow_p99_increase_pct" not in results["targets"]
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


def _through_nginx(
    added_p50: float, shadow_pct: float, failed: dict[str, int], sampled_pct: float = 2.0
) -> dict:
    case = {"p50_added_ms": added_p50, "p99_added_ms": 0.5}
    switches = {name: {"failed": n} for name, n in failed.items()}
    return {
        "cases": {"1 row": case, "1,000 rows": {**case, "p50_added_ms": 2.0}},
        "shadow": {"p99_increase_pct": shadow_pct, "sampled_p99_increase_pct": sampled_pct},
        "switches": switches,
    }


def test_nginx_targets_join_the_others_only_when_measured():
    results = _results(p99_one=4.0, rows_per_s=60_000)
    assert set(benchserve.check_targets(results)) == set(benchserve.TARGETS)
    results["nginx"] = _through_nginx(0.3, 8.0, {"promote": 0, "abort": 0, "kill": 0})
    good = benchserve.check_targets(results)
    assert set(good) == set(benchserve.TARGETS) | set(benchserve.NGINX_TARGETS)
    assert all(check["met"] for check in good.values())
    assert good["nginx_added_p50_1_row_ms"]["measured"] == 0.3  # the 1-row case's, not 1,000's
    results["nginx"] = _through_nginx(0.6, 12.0, {"promote": 0, "abort": 3, "kill": 1}, 11.0)
    bad = benchserve.check_targets(results)
    assert [key for key, check in bad.items() if not check["met"]] == [
        "nginx_added_p50_1_row_ms",
        "shadow_p99_increase_pct",
        "sampled_shadow_p99_increase_pct",
        "failed_requests_abort",
        "failed_requests_kill",
    ]


def test_compare_gives_what_the_second_phase_adds():
    base = {"p50_ms": 5.0, "p99_ms": 8.0}
    added = benchserve.compare(base, {"p50_ms": 5.25, "p99_ms": 8.8})
    assert added["p50_added_ms"] == pytest.approx(0.25)
    assert added["p99_added_ms"] == pytest.approx(0.8)
    assert added["p99_increase_pct"] == pytest.approx(10.0)
    assert "turn_p50_added_ms" not in added


def test_compare_pairs_the_turns_of_two_phases():
    base = {"p50_ms": 5.0, "p99_ms": 8.0, "turn_p50_ms": [5.0, 6.0, 5.0]}
    other = {"p50_ms": 5.5, "p99_ms": 8.0, "turn_p50_ms": [5.5, 5.0, 6.0]}
    turns = benchserve.compare(base, other)["turn_p50_added_ms"]
    assert turns == pytest.approx({"median": 0.5, "min": -1.0, "max": 1.0})


def test_phases_take_turns_neither_always_first():
    order = benchserve.round_order(("direct", "nginx"), 4)
    assert order == ["direct", "nginx", "nginx", "direct", "direct", "nginx", "nginx", "direct"]
    assert benchserve.round_order(("off", "on"), 1) == ["off", "on"]


def test_turns_are_about_a_second_each_and_two_at_least():
    assert benchserve.turns(10.0) == 10 and benchserve.turns(20.0) == 20
    assert benchserve.turns(0.5) == 2


def test_the_prod_services_own_times_come_from_nginxs_access_log():
    prod, new = "127.0.0.1:8001", "127.0.0.1:8002"
    access = pd.DataFrame(
        {
            "step": ["shadow", "shadow", "shadow", "shadow", "mirror-off"],
            "uri": ["/predict", "/_shadow", "/predict", "/predict", "/predict"],
            "pool": ["prod"] * 5,
            "upstream": [prod, new, prod, f"{new}, {prod}", prod],
            "upstream_status": ["200", "200", "200", "502, 200", "200"],
            "upstream_s": ["0.004", "0.050", "0.006", "0.001, 0.005", "0.100"],
        }
    )
    on = benchserve.upstream_ms(access, "shadow", port=8001)
    # The mirrored copy (/_shadow) and the other version's try are not prod's answers.
    assert on["p50_ms"] == pytest.approx(5.0) and on["p99_ms"] == pytest.approx(5.98)
    assert benchserve.upstream_ms(access, "mirror-off", 8001)["p99_ms"] == pytest.approx(100.0)
    assert benchserve.upstream_ms(access, "canary-10", 8001) == {"p50_ms": None, "p99_ms": None}


def test_a_switch_counts_every_failed_request_by_kind():
    outcomes = [(0.005, "")] * 98 + [(0.001, "HTTP 502"), (0.030, "ReadError")]
    switch = benchserve.switch_summary(outcomes, wall_s=2.0)
    assert switch["requests"] == 100 and switch["failed"] == 2
    assert switch["errors"] == {"HTTP 502": 1, "ReadError": 1}
    assert switch["max_ms"] == pytest.approx(5.0)  # latencies of the answered requests only
    assert switch["requests_per_s"] == 50
    clean = benchserve.switch_summary([(0.004, "")], 1.0)
    assert clean["failed"] == 0 and clean["errors"] == {}
    none_ok = benchserve.switch_summary([(0.001, "ConnectError")], 1.0)
    assert none_ok["failed"] == 1 and none_ok["p99_ms"] is None
    with pytest.raises(UserError, match="no request completed"):
        benchserve.switch_summary([], 1.0)


def test_switch_actions_route_as_a_rollout_does():
    canary = benchserve.traffic_for("canary-10", prod=8001, new=8002)
    assert canary == rollout.Traffic(prod=8001, new=8002, share=10, step="canary-10")
    assert benchserve.traffic_for("new alone", 8001, 8002) == rollout.Traffic(prod=8002)
    assert benchserve.traffic_for("prod alone", 8001, 8002) == rollout.Traffic(prod=8001)
    assert benchserve.traffic_for("kill new", 8001, 8002) is None
    for actions in benchserve.SWITCHES.values():  # every action of a plan is known
        for action in actions:
            benchserve.traffic_for(action, 8001, 8002)
    with pytest.raises(ValueError, match="unknown switch action"):
        benchserve.traffic_for("canary", 8001, 8002)


def test_the_report_shows_nginx_the_shadow_and_the_switches():
    summary = {"requests": 1000, "p50_ms": 5.0, "p99_ms": 8.0}
    case = {"direct": summary, "nginx": {**summary, "p50_ms": 5.3}, "p50_added_ms": 0.3}
    case["turn_p50_added_ms"] = {"median": 0.25, "min": -1.5, "max": 2.0}
    upstream = {"prod_upstream": {"p50_ms": 3.5, "p99_ms": 6.25}}
    shadow = {
        "off": summary,
        "on": {**summary, "p99_ms": 8.4, **upstream},
        "sampled": {**summary, "p99_ms": 8.1, **upstream},
        "p50_added_ms": 0.0,
        "sampled_p99_increase_pct": 1.25,
    }
    switch = {"steps": ["canary-50", "kill new"], "requests": 400, "p99_ms": 9.0, "max_ms": 20}
    results = {
        "scale": "full",
        "workers": 1,
        "duration_s": 10.0,
        "bundle_mb": 100.0,
        "startup_s": 3.0,
        "load_s": 2.5,
        "machine": {"cpus": 2},
        "cases": {"1 row": {**summary, "rows_per_s": 200.0, "floor_p50_ms": 4.0}},
        "nginx": {
            "rounds": 4,
            "switch_clients": 2,
            "cases": {"1 row": {**case, "p99_added_ms": 0.0}},
            "shadow": {**shadow, "p99_added_ms": 0.4, "p99_increase_pct": 5.0},
            "switches": {
                "promote": {**switch, "failed": 0, "errors": {}},
                "abort": {**switch, "failed": 0, "errors": {}},
                "kill": {**switch, "failed": 2, "errors": {"HTTP 502": 2}},
            },
        },
    }
    results["targets"] = benchserve.check_targets(
        {**results, "cases": {**results["cases"], "1,000 rows": results["cases"]["1 row"]}}
    )
    report = benchserve.markdown(results)
    assert (
        "| 1 row | 5.00 | 5.30 | +0.30 | +0.25 (-1.50 … +2.00) | 8.00 | 8.00 | +0.00 |" in report
    )
    assert "| on | 1,000 | 5.00 | 8.40 | 3.50 | 6.25 |" in report
    assert "| on, 25 % sampled | 1,000 | 5.00 | 8.10 | 3.50 | 6.25 |" in report
    assert "; mirroring 25 % adds +1.2 %." in report
    assert "| off | 1,000 | 5.00 | 8.00 | - | - |" in report and "(+5.0 %) to the p99" in report
    assert "| promote | canary-50 → kill new | 400 | 0 | 9.00 | 20.00 |" in report
    assert "| kill | canary-50 → kill new | 400 | 2 (HTTP 502 2) |" in report
    assert "| failed_requests_kill ≤ 0 | 2 | NO |" in report
    assert "| nginx_added_p50_1_row_ms ≤ 0.5 | 0.30 | yes |" in report


@pytest.mark.timeout(240)
@pytest.mark.skipif(
    shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin") is None,
    reason="needs nginx (make system-deps)",
)
def test_a_short_run_through_real_nginx(tmp_path):
    nginx = _short_run(tmp_path, "--duration", "0.8", "--nginx")[0]["nginx"]
    assert set(nginx["cases"]) == set(benchserve.NGINX_CASES)
    for case in nginx["cases"].values():
        assert case["direct"]["requests"] > 0 and case["nginx"]["requests"] > 0
        assert len(case["direct"]["turn_p50_ms"]) == benchserve.turns(0.8)
        assert case["turn_p50_added_ms"]["min"] <= case["turn_p50_added_ms"]["max"]
    for phase in ("off", "on", "sampled"):
        shadow = nginx["shadow"][phase]
        assert shadow["requests"] > 0 and 0 < shadow["prod_upstream"]["p50_ms"] < shadow["p99_ms"]
    assert set(nginx["switches"]) == set(benchserve.SWITCHES)
    for switch in nginx["switches"].values():
        assert switch["requests"] > 0 and 0 <= switch["failed"] <= switch["requests"]
    # The mirrored requests reached the second version: it logged what it scored.
    second = tmp_path / "work" / "serve-nginx" / "versions" / "v2" / "predictions"
    assert any(second.glob("predictions-*.parquet"))
    report = (tmp_path / "out" / "serve.md").read_text()
    assert "| promote | canary-10 → canary-50 → canary-100 → new alone → stop prod |" in report
