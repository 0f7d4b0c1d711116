"""cd4ml.benchreport: the benchmark's targets and its Markdown report, from a results dict."""

from __future__ import annotations

from cd4ml import benchreport
from cd4ml.benchreport import check_targets


def test_targets_and_report_from_results():
    stage = {
        "runs": [{"wall_s": 1.0}],
        "wall_s": 1.0,
        "cpu_s": 1.5,
        "peak_rss_mib": 100.0,
        "rows_in": 10,
        "rows_out": 5,
    }
    results = {
        "scale": "tiny",
        "rows": {"train": 30_000, "test": 8_000, "songs": 4_000, "members": 400},
        "repeat": 3,
        "once_over": 60.0,
        "machine": {
            "cpu": "x",
            "nproc": 2,
            "ram_gib": 1.0,
            "gpu": None,
            "os": "Linux",
            "python": "3.11",
            "libraries": {},
            "load_average_start": [0, 0, 0],
        },
        "generate": {"wall_s": 2.0, "cpu_s": 2.0, "peak_rss_mib": 50.0, "cached": False},
        "stages": {
            "split": {**stage, "data_stage": True, "floor_s": 0.4, "x_floor": 2.5},
            "train[cuda]": {"error": "no GPU"},
            "train[cpu]": stage,
        },
        "auc": {"roc_auc": 0.79, "oracle_roc_auc": 0.80},
    }
    results["targets"] = benchreport.check_targets(results)
    met = {t["target"]: t["met"] for t in results["targets"]}
    assert met == {
        "generate data": True,
        "split / read floor": False,
        "peak RSS of a data stage": True,
        "train[cpu]": True,
        "ROC AUC gap to the oracle": True,
    }
    report = benchreport.markdown(results)
    assert "| split (1×) | 1.0 |" in report and "train[cuda] | failed: no GPU" in report
    assert "| split / read floor | 2.5 x | 2 x | **no** |" in report


def test_cached_data_is_no_target_and_the_dvc_timings_are():
    results = {
        "stages": {
            "evaluate": {"wall_s": 30.0},
            "sanity": {"wall_s": 30.0},
            "predict": {"wall_s": 40.0},
        },
        "generate": {"wall_s": 999.0, "cached": True},
        "dvc": {"repro": {"wall_s": 500.0}, "noop_s": 1.0},
        "auc": {"roc_auc": 0.7, "oracle_roc_auc": None},
    }
    targets = {t["target"]: (t["value"], t["limit"], t["met"]) for t in check_targets(results)}
    assert targets == {
        "evaluate + sanity + predict": (100.0, 90.0, False),
        "dvc repro (all stages)": (500.0, 480.0, False),
        "dvc repro (nothing to do)": (1.0, 2.0, True),
    }
