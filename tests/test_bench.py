"""The benchmark's bookkeeping (no timing here: `make bench` measures, tests do not)."""

from __future__ import annotations

import bench
from project import ROOT


def test_stages_come_in_an_order_that_runs_dependencies_first():
    stages = bench.load_stages(ROOT)
    order = list(stages)
    assert order[0] == "validate" and {"split", "preprocess", "train", "predict"} <= set(order)
    for i, name in enumerate(order):
        for dep in stages[name]["deps"]:
            for later in order[i + 1 :]:
                assert not any(
                    dep == out or dep.startswith(out + "/") for out in stages[later]["outs"]
                ), (name, dep, later)


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
    results["targets"] = bench.check_targets(results)
    met = {t["target"]: t["met"] for t in results["targets"]}
    assert met == {
        "generate data": True,
        "split / read floor": False,
        "peak RSS of a data stage": True,
        "train[cpu]": True,
        "ROC AUC gap to the oracle": True,
    }
    report = bench.markdown(results)
    assert "| split (1×) | 1.0 |" in report and "train[cuda] | failed: no GPU" in report
