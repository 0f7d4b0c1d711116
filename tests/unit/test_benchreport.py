"""tools.benchreport: the benchmark's targets and its Markdown report, from a results dict."""

from __future__ import annotations

from tools import benchreport
from tools.benchreport import check_targets


def _run(repeat: int = 1) -> dict:
    """What every results dict holds about the run: scale, rows, repeats, the machine."""
    return {
        "scale": "tiny",
        "rows": {"train": 30_000, "test": 8_000, "songs": 4_000, "members": 400},
        "repeat": repeat,
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
    }


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
        **_run(repeat=3),
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
        "split / I/O floor": False,
        "peak RSS of a data stage": True,
        "train[cpu]": True,
        "ROC AUC gap to the oracle": True,
    }
    report = benchreport.markdown(results)
    assert "| split (1×) | 1.0 |" in report and "train[cuda] | failed: no GPU" in report
    assert "| split / I/O floor | 2.5 x | 2 x | **no** |" in report


def test_cached_data_is_no_target_and_the_dvc_timings_are():
    results = {
        "stages": {
            "evaluate": {"wall_s": 30.0},
            "sanity": {"wall_s": 30.0},
            "predict": {"wall_s": 40.0},
        },
        "generate": {"wall_s": 999.0, "cached": True},
        "dvc": {"repro": {"wall_s": 500.0}, "noop_s": 1.5, "startup_s": 0.3},
        "auc": {"roc_auc": 0.7, "oracle_roc_auc": None},
    }
    targets = {t["target"]: (t["value"], t["limit"], t["met"]) for t in check_targets(results)}
    assert targets == {
        "evaluate + sanity + predict": (100.0, 90.0, False),
        "dvc repro (all stages)": (500.0, 180.0, False),
        "dvc repro (nothing to do) over DVC's start-up": (1.2, 1.0, False),
    }


def test_the_way_from_csv_to_features_is_held_to_the_csv_read():
    stages = {
        "validate": {"wall_s": 3.0, "floor_s": 2.0, "x_floor": 1.5, "data_stage": True},
        "split": {"wall_s": 0.5, "floor_s": 0.5, "x_floor": 1.0, "data_stage": True},
        "preprocess": {"wall_s": 4.5, "floor_s": 1.0, "x_floor": 4.5, "data_stage": True},
    }
    for stage in stages.values():
        stage["peak_rss_mib"] = 3 * 1024.0
    results = {"stages": stages, "generate": {"cached": True}}
    targets = {t["target"]: (t["value"], t["met"]) for t in check_targets(results)}
    assert targets["CSV to features / CSV read floor"] == (4.0, False)  # (3 + 0.5 + 4.5) / 2
    assert targets["validate / I/O floor"] == (1.5, True)
    assert targets["preprocess / I/O floor"] == (4.5, False)
    assert targets["peak RSS of a data stage"] == (3.0, False)


def test_the_bytes_of_a_data_version_and_its_transfer_are_reported():
    mib = 2**20
    run = {"wall_s": 12.5, "cpu_s": 3.0, "peak_rss_mib": 200.0}
    results = {
        **_run(),
        "generate": {"wall_s": 2.0, "cpu_s": 2.0, "peak_rss_mib": 50.0, "cached": True},
        "stages": {},
        "storage": {
            "data": 1700 * mib,
            "outs": {"clean_data/validated": 400 * mib, "models/bundle": 130 * mib},
            "intermediates": 400 * mib,
            "cache": 2230 * mib,
        },
        "transfer": {"push": run, "pull": {**run, "wall_s": 20.0}},
    }
    results["targets"] = check_targets(results)
    assert [(t["target"], round(t["value"], 3), t["met"]) for t in results["targets"]] == [
        ("intermediates per data version", 0.391, True)
    ]
    report = benchreport.markdown(results)
    assert "| `clean_data/validated` | 400 |" in report
    assert "| **intermediates** (`clean_data/`) | **400** |" in report
    assert "| `dvc push` (loopback S3) | 12.5 |" in report
    assert "| `dvc pull` (fresh clone) | 20.0 |" in report


def test_the_rerun_after_one_more_chunk_is_reported_with_the_stages_it_ran():
    run = {"wall_s": 150.0, "cpu_s": 160.0, "peak_rss_mib": 3000.0}
    results = {
        **_run(),
        "generate": {"wall_s": 2.0, "cpu_s": 2.0, "peak_rss_mib": 50.0, "cached": True},
        "stages": {},
        "ingest": {
            "share": 0.01,
            "rows_before": 7_303_644,
            "rows_new": 73_774,
            "repro_before": run,
            "ingest": {**run, "wall_s": 9.5},
            "rerun": {**run, "wall_s": 151.5},
            "rerun_stages": ["validate", "split"],
            "stages": 3,
            "features_changed": {
                "rows": 5_250_000,
                "changed": 0.9991,
                "by_feature": {"city": 0.0, "te_member": 0.9502, "te_song": 0.81, "bd": 0.1},
            },
        },
    }
    results["targets"] = check_targets(results)
    report = benchreport.markdown(results)
    assert "history before one more chunk (7.30M train rows) | 150.0 |" in report
    assert "chunk (train.csv's last 1%: 73,774 rows) | 9.5 |" in report
    assert "| `dvc repro` after it (2 of 3 stages rerun) | 151.5 | 160.0 | 3000 |" in report
    assert (
        "After the chunk, 99.9% of the 5.25M training rows featurised before it have another "
        "feature value (most often: te_member 95.0%, te_song 81.0%, bd 10.0%)." in report
    )


def test_the_train_sweep_is_a_table_of_auc_against_train_time():
    results = {
        **_run(),
        "generate": {"wall_s": 2.0, "cpu_s": 2.0, "peak_rss_mib": 50.0, "cached": True},
        "stages": {},
        "train_sweep": [
            {
                "settings": "max_depth=6",
                "train_s": 40.25,
                "trees": 90,
                "roc_auc": 0.7701,
                "valid_roc_auc": 0.7755,
            },
            {
                "settings": "params.yaml",
                "train_s": 80.0,
                "trees": 76,
                "roc_auc": 0.7731,
                "valid_roc_auc": 0.7784,
            },
        ],
        "targets": [],
    }
    report = benchreport.markdown(results)
    assert "| max_depth=6 | 40.2 | 90 | 0.7701 | 0.7755 |" in report
    assert "| params.yaml | 80.0 | 76 | 0.7731 | 0.7784 |" in report


def test_the_data_stages_are_held_to_the_pandas_baseline():
    stages = {
        name: {
            "runs": [{"wall_s": wall}],
            "wall_s": wall,
            "cpu_s": wall,
            "peak_rss_mib": 900.0,
            "rows_in": 10,
            "rows_out": 10,
            "floor_s": 1.0,
            "x_floor": wall,
            "data_stage": True,
        }
        for name, wall in (("validate", 2.0), ("split", 1.0), ("preprocess", 7.0))
    }
    run = {"wall_s": 60.0, "cpu_s": 70.0, "peak_rss_mib": 3900.0, "rows_out": 7_377_418}
    generate = {"wall_s": 2.0, "cpu_s": 2.0, "peak_rss_mib": 50.0, "cached": True}
    results = {**_run(), "stages": stages, "generate": generate, "pandas_baseline": run}
    targets = {t["target"]: (t["value"], t["met"]) for t in check_targets(results)}
    assert targets["CSV to features / pandas baseline"] == (round(10 / 60, 4), True)
    results["targets"] = check_targets(results)
    report = benchreport.markdown(results)
    assert (
        "| pandas baseline (train rows: read, join, codes, write) | 60.0 | 70.0 | 3900 | → 7.38M |"
        in report
    )


def test_the_engines_report_holds_each_engine_against_the_local_one():
    local = {"wall_s": 10.0, "peak_rss_mib": 900.0, "x_local": 1.0}
    dask = {
        "wall_s": 15.0,
        "peak_rss_mib": 300.0,
        "x_local": 1.5,
        "worker_peak_rss_mib": 700.0,
        "staged_bytes": 3 << 20,
        "dask_transfer_bytes": 5 << 20,
        "workers": 2,
        "threads_per_worker": 1,
    }
    results = {
        **_run(repeat=3),
        "engines": {
            "local": {
                "preprocess": local,
                "train": local,
                "roc_auc": 0.75,
                "auc_difference": 0.0,
                "same_features": True,
            },
            "dask-2": {
                "preprocess": dask,
                "train": dask,
                "roc_auc": 0.7488,
                "auc_difference": -0.0012,
                "same_features": True,
            },
        },
    }
    report = benchreport.engines_markdown(results)
    assert "| dask-2 2 x 1 threads | preprocess | 15.0 s | 1.50 | 300 MiB | 700 MiB" in report
    assert "| 3 MiB | 5 MiB |" in report
    assert "| dask-2 | 0.7488 | -0.0012 | bit for bit |" in report
    results["engines"]["dask-2"]["same_features"] = False
    assert "| dask-2 | 0.7488 | -0.0012 | **no** |" in benchreport.engines_markdown(results)


def test_a_failed_engine_is_reported_as_such():
    results = {
        **_run(),
        "replicate": 10,
        "memory_limit": "4GiB",
        "engines": {"local": {"error": "`python src/preprocess.py` failed with exit code 137"}},
    }
    report = benchreport.engines_markdown(results)
    assert "tiny scale, its plays 10 times over" in report and "workers capped at 4GiB" in report
    assert "| local | | failed: `python src/preprocess.py` failed with exit code 137 |" in report
