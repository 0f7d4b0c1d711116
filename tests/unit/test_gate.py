"""The release gate: compare metrics/eval.json's roc_auc with baseline.txt, promote, diff."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from cd4ml import gate
from kkbox.io import run_main
from tests.project import ROOT


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """eval.json with roc_auc 0.8, baseline.txt with 0.79, params with min_improvement 0."""
    paths = {
        "metrics": tmp_path / "metrics" / "eval.json",
        "baseline": tmp_path / "baseline.txt",
        "params": tmp_path / "params.yaml",
    }
    paths["metrics"].parent.mkdir()
    set_score(paths, 0.8)
    paths["baseline"].write_text("0.79\n")
    set_min_improvement(paths, 0.0)
    return paths


def set_min_improvement(files: dict[str, Path], value: object) -> None:
    """The project's params.yaml with gate.min_improvement set (every section is required)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["gate"]["min_improvement"] = value
    files["params"].write_text(yaml.safe_dump(params), encoding="utf-8")


def set_score(files: dict[str, Path], roc_auc: float) -> None:
    files["metrics"].write_text(json.dumps({"roc_auc": roc_auc, "pr_auc": 0.7}))


def argv(command: str, files: dict[str, Path]) -> list[str]:
    return [command, *(f"--{k}={v}" for k, v in files.items())]


def fails(command: str, files: dict[str, Path], capsys) -> str:
    """Run the command as the CLI does; return its one error line (and check it is one)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(gate.main, argv(command, files))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_better_model_passes_and_says_so_on_stdout(files, capsys):
    gate.main(argv("check", files))
    out = capsys.readouterr().out
    assert out == (
        "gate passed: roc_auc 0.8000 beats baseline 0.7900 by +0.0100 "
        "(more than gate.min_improvement 0.0000)\n"
    )


def test_equal_model_fails(files, capsys):
    set_score(files, 0.79)
    line = fails("check", files, capsys)
    assert "gate failed: roc_auc 0.7900 does not beat baseline 0.7900" in line
    assert "(diff +0.0000)" in line and "already promoted?" in line


def test_worse_model_fails_with_values_difference_and_fix(files, capsys):
    set_score(files, 0.7812)
    files["baseline"].write_text("0.79\n")
    line = fails("check", files, capsys)
    assert line == (
        "error: gate failed: roc_auc 0.7812 does not beat baseline 0.7900 by more than 0.0000 "
        "(diff -0.0088); improve the model or data; baseline.txt holds the released model's "
        "score"
    )


def test_improvement_within_min_improvement_fails(files, capsys):
    set_min_improvement(files, 0.02)
    line = fails("check", files, capsys)
    assert "by more than 0.0200 (diff +0.0100)" in line
    assert "lower gate.min_improvement" in line


def test_improvement_above_min_improvement_passes(files, capsys):
    set_min_improvement(files, 0.005)
    gate.main(argv("check", files))
    assert capsys.readouterr().out.startswith("gate passed:")


def test_float_noise_does_not_decide_the_gate(files, capsys):
    # 0.8 - 0.79 is 0.010000000000000009 in floating point: not "more than 0.01".
    set_min_improvement(files, 0.01)
    fails("check", files, capsys)


def test_tiny_difference_is_not_printed_as_zero(files, capsys):
    set_score(files, 0.79000001)
    gate.main(argv("check", files))
    assert "by +1.00e-08" in capsys.readouterr().out


def test_missing_eval_json_names_the_file_and_the_fix(files, capsys):
    files["metrics"].unlink()
    line = fails("check", files, capsys)
    assert str(files["metrics"]) in line and "not found" in line and "make repro" in line


@pytest.mark.parametrize(
    "content", ["{not json", '{"pr_auc": 0.7}', '{"roc_auc": "0.8"}', '{"roc_auc": NaN}', "[]"]
)
def test_malformed_eval_json_names_the_file(files, capsys, content):
    files["metrics"].write_text(content)
    line = fails("check", files, capsys)
    assert str(files["metrics"]) in line and "dvc repro -f evaluate" in line


def test_missing_baseline_names_the_file_and_the_fix(files, capsys):
    files["baseline"].unlink()
    line = fails("check", files, capsys)
    assert str(files["baseline"]) in line and "not found" in line and "echo 0.5 >" in line


@pytest.mark.parametrize("content", ["", "abc\n", "0.7 0.8\n", "1.5\n", "nan\n", "-0.1\n"])
def test_malformed_baseline_names_the_file(files, capsys, content):
    files["baseline"].write_text(content)
    line = fails("check", files, capsys)
    assert str(files["baseline"]) in line and "expected one number in [0, 1]" in line


@pytest.mark.parametrize("value", [-0.1, 1.0, "abc", None])
def test_bad_min_improvement_is_a_clear_error(files, capsys, value):
    set_min_improvement(files, value)
    assert "params.yaml: gate.min_improvement must be" in fails("check", files, capsys)


def test_promote_writes_the_new_value_and_a_second_promote_fails(files, capsys):
    set_score(files, 0.8123456789)
    gate.main(argv("promote", files))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gate passed: roc_auc 0.8123 beats baseline 0.7900")
    assert out[1].startswith(f"promoted: {files['baseline']} 0.7900 -> 0.8123")
    assert files["baseline"].read_text() == "0.8123456789\n"
    assert not list(files["baseline"].parent.glob(".baseline.txt.*"))  # no temp file left

    line = fails("promote", files, capsys)
    assert "does not beat baseline 0.8123" in line and "already promoted?" in line
    assert files["baseline"].read_text() == "0.8123456789\n"


def test_failed_promote_leaves_the_baseline_alone(files, capsys):
    set_score(files, 0.5)
    fails("promote", files, capsys)
    assert files["baseline"].read_text() == "0.79\n"


def test_diff_outside_git_is_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    gate.main(["diff"])
    assert capsys.readouterr().out == "metrics diff skipped: not a git repository\n"
    gate.main(["diff", "--md", "reports/metrics_diff.md"])
    assert "Not a git repository" in (tmp_path / "reports/metrics_diff.md").read_text()


def test_diff_without_a_commit_is_skipped_and_a_bad_base_rev_is_an_error(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    gate.main(["diff"])
    assert capsys.readouterr().out == "metrics diff skipped: no commit yet\n"
    with pytest.raises(SystemExit):
        run_main(gate.main, ["diff", "--rev", "no-such-rev", "--md", "out.md"])
    assert "BASE_REV='no-such-rev' is not a commit" in capsys.readouterr().err
    assert not (tmp_path / "out.md").exists()


def test_makefile_lists_the_release_targets():
    listed = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    for target in ("gate", "promote", "metrics-diff", "sanity"):
        assert f"\x1b[36m{target} " in listed  # the help text colours target names
    assert listed.index("Release") < listed.index("Quality")
