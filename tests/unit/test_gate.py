"""The release gate: the challenger bundle against the champion bundle on the same eval rows
(paired bootstrap), or metrics/eval.json's roc_auc against baseline.txt without a champion;
the report file, promote, diff."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from cd4ml import bundle, gate, params, signing
from cd4ml.io import UserError, read_parquet, run_main, write_parquet
from kkbox import PROBLEM
from tests import toy
from tests.bundles import fit_featurizer, train, write_bundle
from tests.project import ROOT, release_keys, run, sign


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """eval.json with roc_auc 0.8, baseline.txt with 0.79, params with min_improvement 0, no
    champion bundle (so baseline.txt decides), and the report in tmp_path."""
    paths = {
        "metrics": tmp_path / "metrics" / "eval.json",
        "baseline": tmp_path / "baseline.txt",
        "params": tmp_path / "params.yaml",
        "champion": tmp_path / "models" / "champion",
        "report": tmp_path / "metrics" / "gate.json",
    }
    paths["metrics"].parent.mkdir()
    set_score(paths, 0.8)
    paths["baseline"].write_text("0.79\n")
    set_min_improvement(paths, 0.0)
    return paths


def set_gate(files: dict[str, Path], **gate_params: object) -> None:
    """The project's params.yaml with these gate keys set (every section is required)."""
    values = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    values["gate"].update(gate_params)
    files["params"].write_text(yaml.safe_dump(values), encoding="utf-8")


def set_min_improvement(files: dict[str, Path], value: object) -> None:
    set_gate(files, min_improvement=value)


def set_score(files: dict[str, Path], roc_auc: float, baseline: float = 0.7) -> None:
    """eval.json as evaluate writes it: the model's roc_auc and the simple baseline's."""
    scores = {
        "roc_auc": roc_auc,
        "pr_auc": 0.7,
        "baseline": {"roc_auc": baseline, "n_features": 3},
    }
    files["metrics"].write_text(json.dumps(scores))


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
        "gate passed: roc_auc 0.8000 beats baseline.txt 0.7900 by +0.0100 "
        "(more than gate.min_improvement 0.0000); roc_auc 0.8000 beats the simple baseline's "
        f"0.7000 ({files['metrics']}) by more than gate.min_gain_over_baseline 0.0020 "
        "(gain +0.1000)\n"
    )


def test_equal_model_fails(files, capsys):
    set_score(files, 0.79)
    line = fails("check", files, capsys)
    assert "gate failed: roc_auc 0.7900 does not beat baseline.txt 0.7900" in line
    assert "(diff +0.0000)" in line and "already promoted?" in line


def test_worse_model_fails_with_values_difference_and_fix(files, capsys):
    set_score(files, 0.7812)
    files["baseline"].write_text("0.79\n")
    line = fails("check", files, capsys)
    assert line == (
        "error: gate failed: roc_auc 0.7812 does not beat baseline.txt 0.7900 by more than "
        "0.0000 (diff -0.0088); improve the model or data; the champion is the released model"
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
    assert out[0].startswith("gate passed: roc_auc 0.8123 beats baseline.txt 0.7900")
    assert out[1].startswith(f"promoted: {files['baseline']} 0.7900 -> 0.8123")
    assert files["baseline"].read_text() == "0.8123456789\n"
    assert not list(files["baseline"].parent.glob(".baseline.txt.*"))  # no temp file left

    line = fails("promote", files, capsys)
    assert "does not beat baseline.txt 0.8123" in line and "already promoted?" in line
    assert files["baseline"].read_text() == "0.8123456789\n"


def test_failed_promote_leaves_the_baseline_alone(files, capsys):
    set_score(files, 0.5)
    fails("promote", files, capsys)
    assert files["baseline"].read_text() == "0.79\n"


def test_report_of_the_baseline_comparison_has_both_scores_and_no_interval(files, capsys):
    gate.main(argv("check", files))
    message = capsys.readouterr().out.strip()
    assert json.loads(files["report"].read_text()) == {
        "metric": "roc_auc",
        "challenger_roc_auc": 0.8,
        "champion_roc_auc": 0.79,
        "champion": "baseline.txt",
        "difference": 0.01,
        "interval": None,
        "n_rows": None,
        "min_improvement": 0.0,
        "decide_on": "difference",
        "simple_baseline": {
            "model_roc_auc": 0.8,
            "baseline_roc_auc": 0.7,
            "gain": 0.1,
            "min_gain_over_baseline": 0.002,
            "passed": True,
        },
        "passed": True,
        "message": message,
    }


def test_compare_writes_a_failed_verdict_without_failing_and_check_fails_on_it(files, capsys):
    set_score(files, 0.5)
    gate.main(argv("compare", files))
    out = capsys.readouterr().out
    assert out.startswith("gate failed: roc_auc 0.5000 does not beat baseline.txt 0.7900")
    report = json.loads(files["report"].read_text())
    assert report["passed"] is False and report["message"] == out.strip()
    files["report"].unlink()
    line = fails("check", files, capsys)
    assert line == f"error: {report['message']}"
    assert json.loads(files["report"].read_text()) == report


def test_lower_bound_without_an_interval_decides_on_the_difference(files, capsys):
    set_gate(files, decide_on="lower_bound")
    gate.main(argv("check", files))
    assert capsys.readouterr().out.startswith("gate passed: roc_auc 0.8000 beats baseline.txt")
    assert json.loads(files["report"].read_text())["decide_on"] == "lower_bound"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("decide_on", "upper_bound"),
        ("bootstrap_rounds", 1),
        ("confidence", 1.0),
        ("min_gain_over_baseline", 1.0),
        ("min_gain_over_baseline", "0.01"),
    ],
)
def test_bad_gate_params_are_a_clear_error(files, capsys, key, value):
    set_gate(files, **{key: value})
    assert f"params.yaml: gate.{key} must be" in fails("compare", files, capsys)
    assert not files["report"].exists()


# --- the simple baseline: evaluate's, on the same eval rows -----------------------------------


def test_a_model_that_ties_the_simple_baseline_fails_the_gate(files, capsys):
    set_score(files, 0.8, baseline=0.8)  # beats the champion; ties the baseline (a logreg model)
    line = fails("check", files, capsys)
    assert line == (
        "error: gate failed: roc_auc 0.8000 does not beat the simple baseline's 0.8000 "
        f"({files['metrics']}) by more than gate.min_gain_over_baseline 0.0020 (gain +0.0000); "
        "improve the model or data, or lower gate.min_gain_over_baseline in params.yaml"
    )
    report = json.loads(files["report"].read_text())
    assert report["difference"] > 0 and report["passed"] is False
    assert report["simple_baseline"]["gain"] == 0 and not report["simple_baseline"]["passed"]
    text = gate.gate_markdown(report)
    assert "| simple baseline (evaluate, same eval rows) | 0.8000 |\n" in text
    assert "| gain over the simple baseline | +0.0000 (needs more than 0.0020) |\n" in text
    assert "| eval rows | - |\n| verdict | failed |\n" in text


def test_a_gain_over_the_baseline_within_its_minimum_fails_and_above_it_passes(files, capsys):
    set_score(files, 0.8, baseline=0.7985)
    assert "0.0020 (gain +0.0015); improve the model" in fails("check", files, capsys)
    set_gate(files, min_gain_over_baseline=0.001)
    gate.main(argv("check", files))
    out = capsys.readouterr().out
    assert out.startswith("gate passed: roc_auc 0.8000 beats baseline.txt 0.7900")
    assert out.endswith("by more than gate.min_gain_over_baseline 0.0010 (gain +0.0015)\n")


def test_a_model_worse_than_the_champion_and_the_baseline_names_both(files, capsys):
    set_score(files, 0.78, baseline=0.785)
    line = fails("check", files, capsys)
    assert line.startswith("error: gate failed: roc_auc 0.7800 does not beat baseline.txt 0.7900")
    assert line.endswith(
        "; also roc_auc 0.7800 does not beat the simple baseline's 0.7850 "
        f"({files['metrics']}) by more than gate.min_gain_over_baseline 0.0020 (gain -0.0050)"
    )


def test_promote_refuses_a_model_no_better_than_the_baseline(files, capsys):
    set_score(files, 0.8, baseline=0.81)
    assert "(gain -0.0100)" in fails("promote", files, capsys)
    assert files["baseline"].read_text() == "0.79\n"


@pytest.mark.parametrize(
    "scores",
    [{"roc_auc": 0.8}, {"roc_auc": 0.8, "baseline": 0.7}, {"roc_auc": 0.8, "baseline": {}}],
    ids=["no baseline", "not a section", "no roc_auc"],
)
def test_metrics_without_the_baseline_are_one_line_naming_the_file_and_fix(files, capsys, scores):
    files["metrics"].write_text(json.dumps(scores))
    line = fails("compare", files, capsys)
    assert line.startswith(
        f"error: {files['metrics']}: 'baseline/roc_auc' (the simple baseline's) must be a "
        "number in [0, 1], got "
    )
    assert line.endswith("; rerun `dvc repro -f evaluate`")
    assert not files["report"].exists()


# --- the interval decides: Verdict on its own ------------------------------------------------


def verdict(low: float, high: float, decide_on: str = "lower_bound") -> gate.Verdict:
    """A gain of +0.0100 over the champion with this interval on 1000 rows."""
    return gate.Verdict(
        0.8, 0.79, 0.0, "kkbox-recommender@v0.0.1", (low, high), 0.95, 1000, decide_on
    )


def test_lower_bound_fails_a_gain_whose_interval_includes_zero_as_maybe_noise():
    noisy = verdict(-0.004, 0.024)
    assert noisy.diff > noisy.min_improvement and not noisy.passed
    assert noisy.message() == (
        "gate failed: roc_auc 0.8000 does not beat kkbox-recommender@v0.0.1 0.7900 by more "
        "than 0.0000 (diff +0.0100, 95% interval -0.0040 .. +0.0240 on 1000 eval rows); the "
        "interval's low end does not: the gain may be noise (gate.decide_on: lower_bound); "
        "improve the model or data, or decide on the difference"
    )
    assert noisy.report()["interval"] == {"low": -0.004, "high": 0.024, "confidence": 0.95}
    assert verdict(-0.004, 0.024, decide_on="difference").passed


def test_lower_bound_passes_a_gain_whose_low_end_beats_min_improvement():
    sure = verdict(0.003, 0.017)
    assert sure.passed
    assert sure.message() == (
        "gate passed: roc_auc 0.8000 beats kkbox-recommender@v0.0.1 0.7900 by +0.0100 (it and "
        "its interval's low end beat gate.min_improvement 0.0000, 95% interval +0.0030 .. "
        "+0.0170 on 1000 eval rows)"
    )
    stricter = dataclasses.replace(sure, min_improvement=0.005)
    assert not stricter.passed and "may be noise" in stricter.message()
    assert not verdict(0.0, 0.02).passed  # the low end must be above, not at, the minimum


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


def test_diff_md_says_no_metric_changed_and_adds_the_gate_report(tmp_path, monkeypatch):
    repo = dvc_repo(tmp_path, {"auc": 0.7})
    monkeypatch.chdir(repo)
    report = gate.Verdict(0.81, 0.79, 0.0).report()
    (repo / "gate.json").write_text(json.dumps(report))
    gate.main(["diff", "--rev", "HEAD", "--md", "out.md", "--gate", "gate.json"])
    text = (repo / "out.md").read_text()
    assert text == ("### Metrics vs `HEAD`\n\nNo metric changed.\n\n" + gate.gate_markdown(report))
    assert "| baseline.txt | 0.7900 |" in text and "| verdict | passed |" in text

    (repo / "metrics.json").write_text(json.dumps({"auc": 0.8}))
    (repo / "gate.json").unlink()
    gate.main(["diff", "--rev", "HEAD", "--md", "out.md", "--gate", "gate.json"])
    text = (repo / "out.md").read_text()
    assert "| metrics.json | auc      | 0.7    | 0.8" in text
    assert "No metric changed." not in text and "### Gate" not in text  # no report, no table


def test_diff_md_with_a_damaged_gate_report_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    repo = dvc_repo(tmp_path, {"auc": 0.7})
    monkeypatch.chdir(repo)
    (repo / "gate.json").write_text('{"passed": true}')
    with pytest.raises(SystemExit):
        run_main(gate.main, ["diff", "--rev", "HEAD", "--md", "out.md", "--gate", "gate.json"])
    err = capsys.readouterr().err
    assert "error: gate.json: not a gate report (KeyError); rerun" in err
    assert not (repo / "out.md").exists()


def dvc_repo(path: Path, metrics: dict) -> Path:
    """A committed git + DVC project whose dvc.yaml lists metrics.json."""
    run(["git", "init", "-q"], path)
    run(["dvc", "init", "-q"], path)
    (path / "dvc.yaml").write_text("metrics:\n- metrics.json\n")
    (path / "metrics.json").write_text(json.dumps(metrics))
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "metrics"], path)
    return path


def test_gate_markdown_of_the_baseline_comparison_says_there_is_no_interval():
    text = gate.gate_markdown(gate.Verdict(0.7812, 0.79, 0.0).report())
    assert text.startswith("### Gate: challenger vs champion (roc_auc)\n\n| | |\n|---|---|\n")
    assert "| challenger (this pipeline) | 0.7812 |\n| baseline.txt | 0.7900 |\n" in text
    assert "| difference | -0.0088 |" in text
    assert "| interval of the difference | none (no released bundle" in text
    assert "| eval rows | - |\n| verdict | failed |\n" in text


# --- challenger bundle against champion bundle -----------------------------------------------


@dataclass
class Release:
    challenger: Path
    champion: Path
    rows: Path  # raw eval rows with the target
    y: np.ndarray
    p_challenger: np.ndarray
    p_champion: np.ndarray


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    """A challenger bundle and a weaker champion (trained on shuffled targets), the raw eval
    rows, and the registry's sidecar naming the champion's version."""
    folder = tmp_path_factory.mktemp("release")
    fitted = fit_featurizer(folder)
    challenger = write_bundle(folder / "bundle", fitted, train(fitted, "xgb"))
    weak = train(fitted, "xgb", shuffle_targets=True)
    champion = sign(write_bundle(folder / "champion", fitted, weak))  # fetched: a release
    (folder / "champion.json").write_text(json.dumps({"version": "v0.0.1"}))
    rows = folder / "eval.parquet"
    write_parquet(fitted.eval_raw, rows)
    return Release(
        challenger,
        champion,
        rows,
        fitted.eval_raw["target"].to_numpy(),
        bundle.load(challenger, PROBLEM).predict_proba(fitted.eval_raw),
        bundle.load(champion, PROBLEM).predict_proba(fitted.eval_raw),
    )


@pytest.fixture(autouse=True)
def _release_key(monkeypatch) -> None:
    """The public key a fetched champion is verified with (the committed keys/release.pub)."""
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(release_keys()[1]))


# The committed gate section with a quicker bootstrap (its other keys as committed).
SETTINGS = params.section(ROOT / "params.yaml", "gate", gate.Gate).model_copy(
    update={
        "min_improvement": 0.0,
        "bootstrap_rounds": 200,
        "confidence": 0.9,
        "decide_on": "difference",
        "seed": 11,
        "timing_repeats": 3,
    }
)


def test_compare_bundles_scores_both_on_the_same_rows_with_an_interval(release):
    v = gate.compare_bundles(PROBLEM, release.challenger, release.champion, release.rows, SETTINGS)
    assert v.new == pytest.approx(roc_auc_score(release.y, release.p_challenger), abs=1e-12)
    assert v.baseline == pytest.approx(roc_auc_score(release.y, release.p_champion), abs=1e-12)
    assert v.new > 0.65 and v.baseline < 0.55  # the champion learned nothing
    assert v.champion == "kkbox-recommender@v0.0.1"
    assert v.n_rows == len(release.y) and v.confidence == 0.9
    low, high = v.interval
    assert 0 < low < v.diff < high
    assert v.passed and "90% interval" in v.message()


def test_compare_bundles_is_reproducible_and_its_interval_widens_with_confidence(release):
    def compare(settings: gate.Gate) -> gate.Verdict:
        return gate.compare_bundles(
            PROBLEM, release.challenger, release.champion, release.rows, settings
        )

    first, again = compare(SETTINGS), compare(SETTINGS)
    measured = {"serving_cost": None}  # timings and memory are measured: all else reproduces
    assert {**again.report(), **measured} == {**first.report(), **measured}
    interval = compare(SETTINGS.model_copy(update={"confidence": 0.99})).interval
    assert interval[0] < first.interval[0] and interval[1] > first.interval[1]


def test_the_champion_is_named_by_path_without_a_registry_sidecar(release, tmp_path):
    champion = Path(shutil.copytree(release.champion, tmp_path / "champion"))
    assert gate._champion_name(champion, PROBLEM.name) == f"champion {champion}"
    (tmp_path / "champion.json").write_text('{"stage": "prod"}')
    assert gate._champion_name(champion, PROBLEM.name) == f"champion {champion}"
    (tmp_path / "champion.json").write_text('{"version": "v1.2.0"}')
    assert gate._champion_name(champion, PROBLEM.name) == "kkbox-recommender@v1.2.0"
    assert gate._champion_name(champion, "toy-churn") == "toy-churn@v1.2.0"


def test_a_fetched_champion_must_carry_the_release_signature(release, tmp_path):
    champion = Path(shutil.copytree(release.champion, tmp_path / "champion"))
    shutil.copy(release.champion.with_name("champion.json"), tmp_path / "champion.json")
    (champion / signing.SIGNATURE).unlink()
    with pytest.raises(UserError, match=r"champion: unsigned \(no model\.sig\)"):
        gate.compare_bundles(PROBLEM, release.challenger, champion, release.rows, SETTINGS)
    # Re-signed after a change, by a key that is not the release key.
    (champion / "profile.json").write_text("{}")
    other = tmp_path / "other"
    signing.keygen(other / "k.pem", other / "k.pub")
    signing.sign(champion, other / "k.pem")
    with pytest.raises(UserError, match="signed by another key than the public key"):
        gate.compare_bundles(PROBLEM, release.challenger, champion, release.rows, SETTINGS)
    # A champion folder the registry did not fetch (no sidecar) is a local one: no signature.
    (tmp_path / "champion.json").unlink()
    (champion / signing.SIGNATURE).unlink()
    (champion / "profile.json").write_bytes((release.champion / "profile.json").read_bytes())
    verdict = gate.compare_bundles(PROBLEM, release.challenger, champion, release.rows, SETTINGS)
    assert verdict.champion == f"champion {champion}"


def test_compare_bundles_refuses_a_bundle_of_another_problem(release):
    with pytest.raises(UserError, match=r"a bundle of problem 'kkbox', not 'tests\.toy'"):
        gate.compare_bundles(
            toy.PROBLEM, release.challenger, release.champion, release.rows, SETTINGS
        )


def test_compare_bundles_refuses_rows_without_the_target(release, tmp_path):
    rows = tmp_path / "rows.parquet"
    write_parquet(read_parquet(release.rows).drop(["target"]), rows)
    with pytest.raises(UserError) as err:
        gate.compare_bundles(PROBLEM, release.challenger, release.champion, rows, SETTINGS)
    assert str(err.value).startswith(f"{rows}: no column 'target': not the eval rows of ")


def bundle_files(files: dict[str, Path], release: Release) -> dict[str, Path]:
    return {
        **files,
        "challenger": release.challenger,
        "champion": release.champion,
        "rows": release.rows,
    }


def test_compare_with_a_champion_bundle_writes_the_paired_report(files, release, capsys):
    files["baseline"].write_text("0.99\n")  # baseline.txt plays no part now
    gate.main(argv("compare", bundle_files(files, release)))
    report = json.loads(files["report"].read_text())
    auc_new = roc_auc_score(release.y, release.p_challenger)
    auc_old = roc_auc_score(release.y, release.p_champion)
    assert report["challenger_roc_auc"] == pytest.approx(auc_new, abs=1e-12)
    assert report["champion_roc_auc"] == pytest.approx(auc_old, abs=1e-12)
    assert report["champion"] == "kkbox-recommender@v0.0.1"
    assert report["n_rows"] == len(release.y) and report["passed"] is True
    interval = report["interval"]
    assert interval["confidence"] == 0.95  # the project's params.yaml
    assert 0 < interval["low"] < report["difference"] < interval["high"]
    assert report["message"] == capsys.readouterr().out.strip()
    assert report["message"].startswith(
        f"gate passed: roc_auc {auc_new:.4f} beats kkbox-recommender@v0.0.1 {auc_old:.4f}"
    )
    assert f"interval {gate._signed(interval['low'])} .. " in report["message"]
    assert f"on {len(release.y)} eval rows)" in report["message"]

    text = gate.gate_markdown(report)
    assert f"| kkbox-recommender@v0.0.1 | {auc_old:.4f} |" in text
    assert f"| eval rows | {len(release.y)} |\n| verdict | passed |" in text
    assert (
        f"| interval of the difference | {gate._signed(interval['low'])} .. "
        f"{gate._signed(interval['high'])} (95%, paired bootstrap) |"
    ) in text


def test_check_on_lower_bound_passes_a_sure_gain_and_promote_records_it(files, release, capsys):
    set_gate(files, decide_on="lower_bound", min_improvement=0.05)
    paths = bundle_files(files, release)
    gate.main(argv("check", paths))
    assert "(it and its interval's low end beat gate.min_improvement 0.0500" in (
        capsys.readouterr().out
    )
    gate.main(argv("promote", paths))
    promoted = float(files["baseline"].read_text())
    assert promoted == pytest.approx(roc_auc_score(release.y, release.p_challenger), abs=1e-12)


def test_a_champion_as_good_as_the_challenger_fails_the_gate(files, release, capsys):
    paths = {**bundle_files(files, release), "champion": release.challenger}
    line = fails("check", paths, capsys)
    assert "(diff +0.0000, 95% interval +0.0000 .. +0.0000" in line
    assert "already promoted?" in line
    report = json.loads(files["report"].read_text())
    assert report["difference"] == 0 and report["interval"]["low"] == 0
    assert report["champion"] == f"champion {release.challenger}"


def test_a_challenger_that_beats_the_champion_but_not_the_baseline_fails(files, release, capsys):
    set_score(files, 0.8, baseline=0.9)  # evaluate's metrics of the same model and eval rows
    line = fails("check", bundle_files(files, release), capsys)
    assert line.startswith(
        "error: gate failed: roc_auc 0.8000 does not beat the simple baseline's 0.9000"
    )
    report = json.loads(files["report"].read_text())
    assert report["difference"] > 0 and report["interval"]["low"] > 0  # the champion is beaten
    assert report["passed"] is False and report["simple_baseline"]["gain"] == -0.1


def test_a_missing_challenger_bundle_is_an_error_naming_it(files, release, capsys, tmp_path):
    paths = {**bundle_files(files, release), "challenger": tmp_path / "no-bundle"}
    line = fails("check", paths, capsys)
    assert f"{tmp_path / 'no-bundle'}: no bundle folder" in line


def test_makefile_lists_the_release_targets():
    listed = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    for target in ("gate", "promote", "metrics-diff", "sanity"):
        assert f"\x1b[36m{target} " in listed  # the help text colours target names
    assert listed.index("Release") < listed.index("Quality")
