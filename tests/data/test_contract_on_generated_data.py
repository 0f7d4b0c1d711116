"""Data tests of the contract: generated tables pass KKBox's contract and the committed
reference, a broken column is found, and stage validate checks drift against a reference."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pyarrow as pa
import pytest
import yaml

from cd4ml import validation
from cd4ml.io import write_csv
from cd4ml.reading import read_tables
from kkbox import synth
from kkbox.tables import CONTRACT, MEMBERS, SONGS, TRAIN
from tests.project import ROOT
from tests.tables import SETTINGS, check_rules

REFERENCE = ROOT / "reference" / "profile.json"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, pa.Table]:
    """The tiny synthetic data set, written as CSV and read back as stage validate reads it."""
    folder = tmp_path_factory.mktemp("tiny")
    for name, columns in synth.generate(synth.SCALES["tiny"], seed=2017).items():
        write_csv(columns, folder / name)
    found = read_tables(folder, CONTRACT)
    assert list(found) == [*CONTRACT.required, *CONTRACT.optional]
    return found


def test_tiny_synthetic_data_passes_and_its_quirks_are_counted(tiny):
    outcome = validation.validate(tiny, CONTRACT, SETTINGS, None)
    assert outcome.errors == []
    quirks = outcome.report["quirks"]
    assert quirks["members.csv"]["bd"]["bd 0 (age not given)"] > 0
    assert quirks["songs.csv"]["language"]["language -1 (unknown)"] > 0
    assert quirks["songs.csv"]["genre_ids"]["genre missing"] > 0
    assert quirks["train.csv"]["source_system_tab"]["literal 'null' tab"] > 0
    assert quirks["train.csv"]["source_type"]["unknown category"] == 0
    assert outcome.report["coverage"]["train.csv"]["msno in members.csv"] == 1.0
    assert 0.99 < outcome.report["coverage"]["train.csv"]["song_id in songs.csv"] <= 1.0


@pytest.mark.parametrize("name", [TRAIN, MEMBERS, SONGS])
def test_generated_rows_pass_and_one_broken_column_is_found(tiny, name):
    table = tiny[name].slice(0, 300)
    assert check_rules(name, table)[0] == []
    broken = {
        TRAIN: ("target", pa.array([2] + [0] * 299, pa.int8())),
        MEMBERS: ("expiration_date", pa.array([20171340] * 300, pa.int32())),
        SONGS: ("song_length", pa.array([-1] * 300, pa.int32())),
    }[name]
    bad = table.set_column(table.column_names.index(broken[0]), broken[0], broken[1])
    found, _ = check_rules(name, bad)
    assert {f.column for f in found} == {broken[0]}


def test_committed_reference_is_a_small_scale_profile_of_known_categories():
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    tables = reference["tables"]
    assert set(CONTRACT.required) <= set(tables)
    assert tables[TRAIN]["rows"] == synth.SCALES["small"].train
    assert 0.4 < reference["positive_rate"] < 0.6
    for name, columns in validation.known_categories(CONTRACT).items():
        for col, known in columns.items():
            labels = {validation.category_label(v) for v in known}
            assert set(tables[name]["categories"][col]) <= labels, (name, col)
            assert sum(tables[name]["categories"][col].values()) == pytest.approx(1, abs=1e-4)


def _stage(*args: str) -> subprocess.CompletedProcess[str]:
    """Run stage validate as DVC runs it: the script, from the repository root."""
    return subprocess.run(
        [sys.executable, "src/validate.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_update_reference_then_validate_against_it(tmp_path):
    data = tmp_path / "data"
    for name, columns in synth.generate(synth.SCALES["tiny"], seed=5).items():
        write_csv(columns, data / name)
    params = tmp_path / "params.yaml"
    settings = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    settings["validate"]["drift_severity"] = "fail"
    params.write_text(yaml.safe_dump(settings), encoding="utf-8")
    ref = tmp_path / "profile.json"
    common = ["--data", str(data), "--reference", str(ref), "--params", str(params)]
    outputs = ["--report", str(tmp_path / "r.json")]
    updated = _stage(*common, "--update-reference")
    assert updated.returncode == 0, updated.stderr
    assert not (tmp_path / "r.json").exists()
    passed = _stage(*common, *outputs)
    assert passed.returncode == 0, passed.stderr
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["status"] == "ok" and report["drift"]["anomalies"] == []
    assert sorted(report["tables"]) == sorted(CONTRACT.tables)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data",
        "params.yaml",
        "profile.json",
        "r.json",
    ]
    # A different category mix, with drift_severity: fail, stops the stage, and the report says
    # why.
    reference = json.loads(ref.read_text(encoding="utf-8"))
    reference["tables"][TRAIN]["categories"]["source_type"] = {"radio": 1.0}
    ref.write_text(json.dumps(reference), encoding="utf-8")
    stopped = _stage(*common, *outputs)
    assert stopped.returncode == 1
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: data drift against "), stopped.stderr
    assert re.search(r"data drift against .*'source_type' category mix", stopped.stderr)
    assert "Traceback" not in stopped.stderr
    failed = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert failed["status"] == "failed" and failed["errors"][0].startswith("data drift against")
    assert failed["drift"]["anomalies"] and failed["tables"][TRAIN]["rows"] > 0
