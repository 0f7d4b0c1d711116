"""End to end: a second problem (tests/toy, customer churn: its own tables, synthetic data,
features and request schema) goes through the same stages, gate, bundle, service and monitor as
KKBox, with no edit to cd4ml. What changes in the project is what docs/adapt.md says changes:
params.yaml's `problem` and the problem's own sections, dvc.yaml's problem folder and artifact
name, and the reference profile."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cd4ml.io import read_parquet
from tests.e2e.test_serve import call, server
from tests.project import copy_project, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

INPUT = ["plan", "region", "tenure_months", "monthly_charge", "support_calls"]


def adapt(project: Path) -> None:
    """What a user writes to put their problem under the loop (docs/adapt.md)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["problem"] = "tests.toy"
    params["generate"] = {"seed": 7, "churn_drift": 0.3}
    params["preprocess"] = {"min_category_count": 5}
    params["monitor"]["min_rows"] = 500
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    pipeline = project / "dvc.yaml"
    text = pipeline.read_text(encoding="utf-8")
    text = text.replace("      - src/kkbox\n", "      - tests/toy\n")
    pipeline.write_text(text.replace("  kkbox-recommender:", "  toy-churn:"), encoding="utf-8")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("toy") / "project")
    adapt(project)
    env = {"PYTHONPATH": str(project)}  # the toy package lives with the tests
    run(["python", "-m", "cd4ml.generate", "--scale", "tiny", "--out", "data"], project, **env)
    run(["make", "reference"], project, **env)
    run(["dvc", "add", "data", "--quiet"], project)
    run(["make", "repro"], project, **env)
    return project


def _env(project: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(project)}


def test_the_pipeline_runs_the_second_problem_without_touching_the_loop(project):
    changed = run(["git", "status", "--porcelain", "--", "src"], project).stdout
    assert changed == "", "the loop or KKBox was edited"
    scores = json.loads((project / "eval" / "metrics.json").read_text())
    assert scores["roc_auc"] > 0.7
    assert set(scores["slices"]) == {"new_customer", "tenured"}
    assert scores["oracle_roc_auc"] > scores["roc_auc"]
    manifest = json.loads((project / "models" / "bundle" / "manifest.json").read_text())
    assert (manifest["name"], manifest["problem"], manifest["model"]) == (
        "toy-churn",
        "tests.toy",
        "xgb",
    )
    assert "tests/toy/churn.py" in manifest["build"]["code"]["files"]
    submission = (project / "predictions" / "submission.csv").read_text().splitlines()
    assert submission[0] == "id,target" and len(submission) == 3001
    status = run(["dvc", "status"], project, **_env(project))
    assert "Data and pipelines are up to date" in status.stdout


def test_the_service_takes_the_second_problems_rows_and_the_monitor_judges_them(project, tmp_path):
    eval_rows = read_parquet(project / "clean_data" / "split" / "eval.parquet")
    rows = eval_rows.select(INPUT).to_pylist()
    log = tmp_path / "log"
    served = ("--allow-unsigned", "--prediction-log", str(log))  # a local build
    with server(project, *served, **_env(project)) as (url, process):
        schema = call(f"{url}/openapi.json")["components"]["schemas"]
        assert set(schema["Customer"]["properties"]) == {*INPUT, "id"}
        assert "msno" not in json.dumps(schema)
        meta = call(f"{url}/metadata")
        assert meta["name"] == "toy-churn" and set(meta["input"]) == set(INPUT)
        scored = call(f"{url}/predict", {"rows": rows[:3]})
        assert len(scored["probabilities"]) == 3 and scored["flags"] == {"unknown_plan": 0}
        odd = {**rows[0], "plan": "enterprise"}
        assert call(f"{url}/predict", {"rows": [odd]})["flags"] == {"unknown_plan": 1}
        for start in range(0, len(rows), 500):
            call(f"{url}/predict", {"rows": rows[start : start + 500]})
        process.terminate()
        process.communicate(timeout=30)
    labels = tmp_path / "labels.parquet"
    eval_rows.select([*INPUT, "churned"]).to_pandas().to_parquet(labels)
    done = run(
        ["python", "-m", "cd4ml.monitor", "--log", str(log), "--labels", str(labels)],
        project,
        **_env(project),
    )
    assert done.stdout.startswith("monitor passed: 2,404 logged rows"), done.stdout
    report = json.loads((project / "metrics" / "monitor.json").read_text())
    assert set(report["overall"]["flag_shares"]) == {"unknown_plan"}
    assert set(report["overall"]["category_tvd"]) == {"plan", "region"}
    assert report["live"]["labelled_rows"] == 2400
    assert report["live"]["roc_auc"] > 0.7


def test_the_gate_holds_a_challenger_against_the_champion_of_the_second_problem(project):
    champion = project / "models" / "champion"
    shutil.rmtree(champion, ignore_errors=True)
    shutil.copytree(project / "models" / "bundle", champion)
    run(["dvc", "exp", "run", "-S", "train.model=logreg"], project, **_env(project))
    compared = run(
        ["python", "-m", "cd4ml.gate", "compare", "--champion", str(champion)],
        project,
        **_env(project),
    )
    report = json.loads((project / "metrics" / "gate.json").read_text())
    assert report["champion"] == f"champion {champion}"
    assert report["n_rows"] == 2400 and report["interval"] is not None
    assert compared.stdout.startswith(("gate passed", "gate failed"))
    manifest = json.loads((project / "models" / "bundle" / "manifest.json").read_text())
    assert manifest["model"] == "logreg"
