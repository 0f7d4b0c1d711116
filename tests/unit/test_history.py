"""cd4ml.history: one record per commit that changed the metrics, from a small git repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cd4ml import history
from cd4ml.io import UserError
from cd4ml.metrics import EVAL_METRICS
from cd4ml.shell import checked, git
from tools import workspace


def _commit(repo: Path, subject: str, files: dict[str, str | None]) -> str:
    """Write (None: delete) the files and commit them; return the commit's hash."""
    for rel, text in files.items():
        path = repo / rel
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    checked(git("add", "-A", cwd=repo), "git add")
    checked(git("commit", "-qm", subject, cwd=repo, env=workspace.IDENTITY), "git commit")
    return checked(git("rev-parse", "HEAD", cwd=repo), "git rev-parse").strip()


def _dvc_file(md5: str) -> str:
    return f"outs:\n- md5: {md5}\n  size: 10\n  nfiles: 5\n  path: data\n"


@pytest.fixture
def repo(tmp_path, monkeypatch) -> tuple[Path, list[str]]:
    """A repository with three metric versions, a commit between them that is not one, and
    data.dvc untracked in the last; the current directory."""
    repo = tmp_path / "repo"
    repo.mkdir()
    checked(git("init", "-q", "-b", "main", cwd=repo), "git init")
    eval_json = EVAL_METRICS  # eval/metrics.json: DVCLive's, what the evaluate stage commits
    commits = [
        _commit(
            repo,
            "first model",
            {
                eval_json: json.dumps(
                    {"roc_auc": 0.712345678, "oracle_roc_auc": 0.8, "n_train": 8, "n_eval": 2}
                ),
                "data.dvc": _dvc_file("0123456789abcdef.dir"),
            },
        ),
        _commit(repo, "docs only", {"README.md": "hello\n"}),
        _commit(
            repo,
            "data: ingest chunk-002.csv",
            {
                eval_json: json.dumps({"roc_auc": 0.75, "n_train": 16, "n_eval": 4}),
                "data.dvc": _dvc_file("fedcba9876543210.dir"),
            },
        ),
        _commit(repo, "data untracked", {eval_json: '{"roc_auc": 0.7}', "data.dvc": None}),
    ]
    monkeypatch.chdir(repo)
    return repo, commits


def test_collect_gives_one_record_per_metrics_commit_oldest_first(repo):
    _, commits = repo
    assert EVAL_METRICS == "eval/metrics.json"
    records = history.collect(EVAL_METRICS, "data.dvc")
    assert records == [
        {
            "version": 1,
            "commit": commits[0][:8],
            "data": "01234567",
            "rows": 10,
            "roc_auc": 0.71235,
            "oracle_roc_auc": 0.8,
            "subject": "first model",
        },
        {
            "version": 2,
            "commit": commits[2][:8],
            "data": "fedcba98",
            "rows": 20,
            "roc_auc": 0.75,
            "oracle_roc_auc": None,
            "subject": "data: ingest chunk-002.csv",
        },
        {
            "version": 3,
            "commit": commits[3][:8],
            "data": "untracked",
            "rows": 0,
            "roc_auc": 0.7,
            "oracle_roc_auc": None,
            "subject": "data untracked",
        },
    ]


def test_since_keeps_only_the_later_commits(repo):
    _, commits = repo
    records = history.collect(EVAL_METRICS, "data.dvc", since=commits[1])
    assert [(r["version"], r["commit"]) for r in records] == [
        (1, commits[2][:8]),
        (2, commits[3][:8]),
    ]


def test_main_writes_the_table_and_the_picture(repo):
    root, _ = repo
    history.main(["--out", "plots/history"])  # the metrics: eval/metrics.json by default
    table = json.loads((root / "plots/history/data_versions.json").read_text(encoding="utf-8"))
    assert [r["roc_auc"] for r in table] == [0.71235, 0.75, 0.7]
    assert (root / "plots/history/data_versions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_commit_with_metrics_is_a_clear_error(repo):
    with pytest.raises(UserError, match=r"^no commit has metrics/other.json yet: run the pipe"):
        history.main(["--metrics", "metrics/other.json", "--out", "plots/history"])
    assert not Path("plots").exists()
