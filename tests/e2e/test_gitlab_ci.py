"""The GitLab CI pipeline (.gitlab-ci.yml), checked offline and run through gitlab-ci-local."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.ci]

CI_YAML = ROOT / ".gitlab-ci.yml"
TOOLS = ROOT / ".tools" / "node_modules" / ".bin"
GCL = TOOLS / "gitlab-ci-local"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
CI_LOCAL = ROOT / "scripts" / "ci-local.sh"

# A CI clone has no git identity: give every git command one.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "ci-test",
    "GIT_AUTHOR_EMAIL": "ci-test@localhost",
    "GIT_COMMITTER_NAME": "ci-test",
    "GIT_COMMITTER_EMAIL": "ci-test@localhost",
}

# Locally a missing tool skips; in CI (`make test` installs it) the tests run and fail instead.
needs_gcl = pytest.mark.skipif(
    not GCL.exists() and not os.environ.get("CI"),
    reason="gitlab-ci-local is not installed: run make system-deps",
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MAKE"))}
    env["PATH"] = f"{TOOLS}{os.pathsep}{env['PATH']}"
    return {**env, **GIT_IDENTITY, **extra}


def _run(cmd: list[str | Path], cwd: Path, timeout: int = 60, **env: str):
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _git(repo: Path, *args: str) -> None:
    _run(["git", *args], repo).check_returncode()


def _ci_repo(tmp_path: Path, yaml_text: str, branch: str = "feature") -> Path:
    """A git repository holding only `yaml_text` as .gitlab-ci.yml, on `branch`, default main."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gitlab-ci.yml").write_text(yaml_text)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    _git(repo, "add", ".gitlab-ci.yml")
    _git(repo, "commit", "--quiet", "-m", "ci")
    _git(repo, "remote", "add", "origin", "https://gitlab.example.com/cd4ml/cd4ml-kkbox.git")
    _git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    _git(repo, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    if branch != "main":
        _git(repo, "switch", "--quiet", "-c", branch)
    return repo


def _listed_jobs(repo: Path, *args: str) -> dict[str, dict[str, str]]:
    """Jobs gitlab-ci-local would run in `repo` (when: never left out), by name."""
    run = _run([GCL, "--list-csv", *args], repo)
    assert run.returncode == 0, run.stdout + run.stderr
    header = run.stdout.index("name;stage;")
    rows = csv.DictReader(run.stdout[header:].splitlines(), delimiter=";")
    return {row["name"]: row for row in rows}


def test_ci_yaml_matches_gitlab_schema():
    run = _run(
        [
            CHECK_JSONSCHEMA,
            "--builtin-schema",
            "vendor.gitlab-ci",
            "--data-transform",
            "gitlab-ci",  # understands GitLab's !reference tag
            CI_YAML,
        ],
        ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@needs_gcl
def test_branch_pipeline_runs_test_train_evaluate(tmp_path):
    jobs = _listed_jobs(_ci_repo(tmp_path, CI_YAML.read_text(), branch="feature"))
    assert {name: (job["stage"], job["when"]) for name, job in jobs.items()} == {
        "test": ("test", "on_success"),
        "train": ("train", "on_success"),
        "train-gpu": ("train", "manual"),
        "train-dask": ("train", "manual"),
        "evaluate": ("evaluate", "on_success"),
    }
    assert jobs["train"]["needs"] == "[test]"
    assert jobs["evaluate"]["needs"] == "[train]"


@needs_gcl
def test_default_branch_pipeline_also_releases_and_deploys(tmp_path):
    jobs = _listed_jobs(_ci_repo(tmp_path, CI_YAML.read_text(), branch="main"))
    assert list(jobs) == [
        "test",
        "train",
        "train-gpu",
        "train-dask",
        "evaluate",
        "release",
        "deploy",
    ]
    assert jobs["release"]["stage"] == "release"
    assert jobs["release"]["needs"] == "[evaluate]"
    assert jobs["deploy"]["stage"] == "deploy" and jobs["deploy"]["needs"] == "[release]"


@needs_gcl
def test_scheduled_pipeline_only_ingests(tmp_path):
    repo = _ci_repo(tmp_path, CI_YAML.read_text(), branch="main")
    jobs = _listed_jobs(
        repo,
        "--variable",
        "CI_PIPELINE_SOURCE=schedule",
        "--ignore-predefined-vars",
        "CI_PIPELINE_SOURCE",
    )
    assert list(jobs) == ["ingest"]


def _monitor_schedule(tmp_path: Path, *variables: str) -> dict[str, dict[str, str]]:
    repo = _ci_repo(tmp_path, CI_YAML.read_text(), branch="main")
    pairs = ["CI_PIPELINE_SOURCE=schedule", "MONITOR_LOG=s3://bucket/predictions", *variables]
    args = [arg for pair in pairs for arg in ("--variable", pair)]
    return _listed_jobs(repo, *args, "--ignore-predefined-vars", "CI_PIPELINE_SOURCE")


@needs_gcl
def test_a_monitor_schedule_monitors_and_turns_a_retrain_request_into_a_pipeline(tmp_path):
    jobs = _monitor_schedule(tmp_path)
    assert {name: (job["stage"], job["when"]) for name, job in jobs.items()} == {
        "monitor": ("monitor", "on_success"),
        # whatever the monitor's verdict: it fails exactly when a threshold is crossed
        "retrain-request": ("retrain", "always"),
        "retrain": ("retrain", "on_success"),
    }
    assert jobs["retrain-request"]["needs"] == "[monitor]"
    assert jobs["retrain"]["needs"] == "[retrain-request]"
    # The request travels as a dotenv report; the pipeline starts through the triggers API.
    text = CI_YAML.read_text()
    assert "dotenv: retrain.env" in text
    assert '"$CI_API_V4_URL/projects/$CI_PROJECT_ID/trigger/pipeline"' in text


@needs_gcl
def test_retrain_approval_manual_makes_a_person_start_the_retraining(tmp_path):
    jobs = _monitor_schedule(tmp_path, "RETRAIN_APPROVAL=manual")
    assert jobs["retrain"]["when"] == "manual" and jobs["retrain-request"]["when"] == "always"


@needs_gcl
def test_the_pipeline_a_retrain_request_starts_trains_gates_and_rolls_out(tmp_path):
    repo = _ci_repo(tmp_path, CI_YAML.read_text(), branch="main")
    jobs = _listed_jobs(
        repo,
        "--variable",
        "CI_PIPELINE_SOURCE=pipeline",  # what the triggers API with a job token starts
        "--ignore-predefined-vars",
        "CI_PIPELINE_SOURCE",
    )
    assert [n for n in jobs if "manual" not in jobs[n]["when"]] == [
        "test",
        "train",
        "evaluate",
        "release",
        "deploy",
    ]


NO_SCRIPT = "stages: [test]\nunit:\n  stage: test\n  image: python:3.11\n"
BAD_WHEN = "unit:\n  script: [make unit]\n  when: sometimes\n"
UNKNOWN_NEED = "unit:\n  script: [make unit]\n  needs: [lint]\n"


@needs_gcl
@pytest.mark.parametrize("yaml_text", [NO_SCRIPT, BAD_WHEN, UNKNOWN_NEED])
def test_gitlab_ci_local_rejects_invalid_yaml(tmp_path, yaml_text):
    run = _run([GCL, "--list"], _ci_repo(tmp_path, yaml_text))
    assert run.returncode != 0, run.stdout + run.stderr


def test_schema_check_rejects_invalid_yaml(tmp_path):
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(BAD_WHEN)
    run = _run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.gitlab-ci", path], tmp_path)
    assert run.returncode != 0
    assert "sometimes" in run.stdout


def _job_results(output: str) -> dict[str, str]:
    """The PASS / FAIL summary gitlab-ci-local prints at the end, by job name."""
    results = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in {"PASS", "FAIL", "WARN"}:
            results[words[1]] = words[0]
    return results


def _git_out(repo: Path, *args: str) -> str:
    run = _run(["git", *args], repo)
    run.check_returncode()
    return run.stdout.strip()


@needs_gcl
@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.timeout(600)
def test_pipeline_end_to_end(tmp_path, s3_server, s3_bucket):
    """A default-branch pipeline on an empty remote passes and releases a registry version; the
    next pipeline's gate holds the same model against that prod bundle and fails."""
    installed = (ROOT / ".venv" / ".installed").stat().st_mtime
    if any((ROOT / f).stat().st_mtime > installed for f in ("Pipfile", "Pipfile.lock")):
        pytest.skip("the environment is older than Pipfile.lock: run make install")
    env = {
        **s3_server.aws_env(),
        "S3_BUCKET": s3_bucket,  # a bucket of its own: the DVC remote starts empty
        "CI_LOCAL_S3": "external",
        "CI_LOCAL_DIR": str(tmp_path / "ci"),
        "CI_LOCAL_BRANCH": "main",
        "SCALE": "tiny",
    }

    first = _run([CI_LOCAL], ROOT, timeout=480, **env)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-6000:]
    assert _job_results(output) == {
        "test": "PASS",
        "train": "PASS",
        "train-dask": "PASS",
        "evaluate": "PASS",
        "release": "PASS",
        "deploy": "PASS",
    }
    # train-dask ran preprocess and train on the loopback Dask cluster, by its address.
    on_cluster = [line for line in output.splitlines() if "cd4ml.cluster: dask cluster" in line]
    assert on_cluster and all(line.split()[:2] == ["train-dask", ">"] for line in on_cluster)
    # The remote was empty: train regenerated data/ and pushed it, evaluate pulled it.
    assert "data/ is not on the remote: regenerating it" in output
    project = tmp_path / "ci" / "project"
    assert "Metrics vs `origin/main`" in (project / "reports" / "metrics_diff.md").read_text()
    # The evaluate job's artifacts hold the report page; not a merge request: no note posted.
    assert 'id="verdict-line">gate passed: ' in (project / "reports" / "index.html").read_text()
    assert "mr note skipped: no merge request" in output
    assert list((project / "eval").rglob("*.png"))
    # No release yet: the gate held the model against baseline.txt.
    assert "| baseline.txt | 0.5000 |" in (project / "reports" / "metrics_diff.md").read_text()
    # release pushed a [skip ci] commit with the new baseline, and GTO's registry tags on it.
    origin = tmp_path / "ci" / "origin.git"
    assert "[skip ci]" in _git_out(origin, "log", "-1", "--format=%s", "main")
    released_commit = _git_out(origin, "rev-parse", "main")
    for tag in ("kkbox-recommender@v0.0.1", "kkbox-recommender#prod#1"):
        assert _git_out(origin, "rev-parse", f"{tag}^{{commit}}") == released_commit
    released = float(_git_out(origin, "show", "main:baseline.txt"))
    auc = json.loads((project / "eval" / "metrics.json").read_text())["roc_auc"]
    assert released == pytest.approx(auc)
    # release registered the version; deploy fetched it from the registry, rolled it out (the
    # prod tag is the rollout's) and smoke-tested it through nginx.
    assert "smoke test passed: http://127.0.0.1:" in output
    assert "serves kkbox-recommender v0.0.1" in output
    # Its rollout: the first version this host serves goes alone behind nginx, and into prod.
    assert "v0.0.1 serves alone on 127.0.0.1:" in output

    # The next pipeline's champion is that prod bundle, fetched from the registry: the same
    # model scores the same on the same rows, so the gate stops it.
    (project / "README.md").write_text("a change that leaves the model as it is\n")
    _git(project, "commit", "--quiet", "-am", "touch the README")
    second = _run([CI_LOCAL, "evaluate"], ROOT, timeout=300, CI_LOCAL_REUSE="1", **env)
    output = second.stdout + second.stderr
    assert second.returncode != 0, output[-6000:]
    assert _job_results(output) == {"evaluate": "FAIL"}
    assert "fetched kkbox-recommender@v0.0.1 (prod)" in output
    assert "gate failed: roc_auc" in output and "kkbox-recommender@v0.0.1" in output
    report = (project / "reports" / "metrics_diff.md").read_text()
    assert "| kkbox-recommender@v0.0.1 |" in report and "paired bootstrap" in report
