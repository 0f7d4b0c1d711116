"""A corpus of bad inputs, each run through the real pipeline in a copy of the project.

One tiny data set is generated and the pipeline run up to `preprocess` once; every case copies
that project, breaks one thing and runs the stage command from dvc.yaml (or `dvc repro`). A bad
input must give a non-zero exit, one readable `error: ...` line naming the problem (the first
line on stderr that is not a log record) and no traceback, and leave every previous output and
the DVC cache as they were. The table case -> first error line is printed at the end.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from project import copy_project, run

pytestmark = pytest.mark.slow

LOG_RECORD = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+: ")
OUTPUTS = ("clean_data", "models", "metrics", "plots", "predictions")
CACHE = Path(".dvc/cache")


# --- breaking things --------------------------------------------------------------------------


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8", newline="")


def _set_field(name: str, row: int, column: str, value: str) -> Callable[[Path], None]:
    """Set one field (row 1 = first data row) of data/<name>."""

    def apply(project: Path) -> None:
        path = project / "data" / name
        rows = _rows(path)
        rows[row][rows[0].index(column)] = value
        _write_rows(path, rows)

    return apply


def _edit_rows(
    name: str, edit: Callable[[list[list[str]]], list[list[str]]]
) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        path = project / "data" / name
        _write_rows(path, edit(_rows(path)))

    return apply


def _edit_bytes(path: str, edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(edit(target.read_bytes() if target.exists() else b""))

    return apply


def _edit_params(section: str, key: str, value: object) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        path = project / "params.yaml"
        text = path.read_text(encoding="utf-8")
        params = yaml.safe_load(text)
        params[section][key] = value
        path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")

    return apply


def _both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        for step in steps:
            step(project)

    return apply


def _unlink(path: str) -> Callable[[Path], None]:
    return lambda project: (project / path).unlink()


def _drop_column(rows: list[list[str]], column: str) -> list[list[str]]:
    i = rows[0].index(column)
    return [r[:i] + r[i + 1 :] for r in rows]


def _new_song_ids(rows: list[list[str]]) -> list[list[str]]:
    col = rows[0].index("song_id")
    for r in rows[1::10]:
        r[col] = "unknown-song"
    return rows


def _podcasts(rows: list[list[str]]) -> list[list[str]]:
    col = rows[0].index("source_type")
    for r in rows[1::4]:
        r[col] = "podcast"
    return rows


def _cut_last_line(data: bytes) -> bytes:
    return data[: len(data) - 1 - len(data.rstrip(b"\n").rsplit(b"\n", 1)[1]) // 2]


def _non_utf8(data: bytes) -> bytes:
    """Latin-1 bytes in genre_ids (a text column) of data row 20."""
    lines = data.split(b"\n")
    song_id, length, rest = lines[20].split(b",", 2)
    lines[20] = b",".join([song_id, length, b"\xe9t\xe9" + rest])
    return b"\n".join(lines)


def _corrupt(data: bytes) -> bytes:
    return data[: len(data) // 2] + b"\x00" * 64


# --- the corpus -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """Break the project copy, run `stages`, expect these words in the first error line."""

    id: str
    breaks: Callable[[Path], None]
    stages: tuple[str, ...]
    expect: tuple[str, ...] = ()
    dvc: bool = False  # `dvc repro <stage>` instead of the stage's command
    succeeds: bool = False


CASES = [
    Case(
        "missing file",
        _unlink("data/members.csv"),
        ("validate",),
        ("data/members.csv: file not found",),
    ),
    Case(
        "empty file",
        _edit_bytes("data/songs.csv", lambda _: b""),
        ("validate",),
        ("data/songs.csv: file is empty (0 bytes)",),
    ),
    Case(
        "header only",
        _edit_rows("train.csv", lambda rows: rows[:1]),
        ("validate",),
        ("data/train.csv: has a header but no rows",),
    ),
    Case(
        "missing column",
        _edit_rows("members.csv", lambda rows: _drop_column(rows, "bd")),
        ("validate",),
        ("data/members.csv: missing column(s) ['bd']",),
    ),
    Case(
        "renamed column",
        _set_field("songs.csv", 0, "song_length", "length"),
        ("validate",),
        ("data/songs.csv: column 'song_length' is missing, 'length' is in its place",),
    ),
    Case(
        "extra column",
        _edit_rows(
            "test.csv",
            lambda rows: [r + (["extra"] if i == 0 else ["1"]) for i, r in enumerate(rows)],
        ),
        ("validate",),
        ("data/test.csv: unexpected column(s) ['extra']",),
    ),
    Case(
        "wrong dtype: text in song_length",
        _set_field("songs.csv", 10, "song_length", "abc"),
        ("validate",),
        ("data/songs.csv: row 10, column 'song_length': 'abc' is not a valid",),
    ),
    Case(
        "target 2",
        _set_field("train.csv", 5, "target", "2"),
        ("validate",),
        ("data/train.csv: column 'target' must be 0 or 1: 1 row fails (row 5: 2)",),
        dvc=True,
    ),
    Case(
        "duplicated member id",
        _edit_rows("members.csv", lambda rows: [*rows, rows[3]]),
        ("validate",),
        (
            "data/members.csv: column 'msno' must be unique: 1 duplicate row, 1 repeated value",
            "row 3: ",
            "row 401: ",
        ),
    ),
    Case(
        "invalid date 20171340",
        _set_field("members.csv", 7, "expiration_date", "20171340"),
        ("validate",),
        (
            "data/members.csv: column 'expiration_date' must be a valid YYYYMMDD "
            "date: 1 row fails (row 7: 20171340)",
        ),
    ),
    Case(
        "truncated last line",
        _edit_bytes("data/train.csv", _cut_last_line),
        ("validate",),
        ("data/train.csv: row 30000: expected 6 fields, got",),
    ),
    Case(
        "non-UTF-8 bytes",
        _edit_bytes("data/songs.csv", _non_utf8),
        ("validate",),
        ("data/songs.csv: row 20: bytes that are not UTF-8",),
    ),
    Case(
        "CRLF line endings",
        _both(
            *(
                _edit_bytes(f"data/{n}", lambda d: d.replace(b"\n", b"\r\n"))
                for n in (
                    "train.csv",
                    "test.csv",
                    "members.csv",
                    "songs.csv",
                    "song_extra_info.csv",
                )
            )
        ),
        ("validate",),
        succeeds=True,
    ),
    Case(
        "empty key (msno)",
        _set_field("train.csv", 12, "msno", ""),
        ("validate",),
        ("data/train.csv: column 'msno' must not be empty: 1 row fails (row 12: empty)",),
    ),
    Case(
        "song_length 0",
        _set_field("songs.csv", 3, "song_length", "0"),
        ("validate",),
        ("data/songs.csv: column 'song_length' must be > 0", "(row 3: 0)"),
    ),
    Case(
        "10% of train songs unknown",
        _edit_rows("train.csv", _new_song_ids),
        ("validate",),
        (
            "data/train.csv: column 'song_id' must join songs.csv for at least 95.0% of rows",
            "row 1: 'unknown-song'",
        ),
    ),
    Case(
        "new category 25%, drift_severity fail",
        _both(
            _edit_rows("train.csv", _podcasts), _edit_params("validate", "drift_severity", "fail")
        ),
        ("validate",),
        ("data drift against reference/profile.json: train.csv: column 'source_type'",),
    ),
    Case(
        "new category 25%, drift_severity warn",
        _edit_rows("train.csv", _podcasts),
        ("validate",),
        succeeds=True,
    ),
    Case(
        "validate params: drift_severity loud",
        _edit_params("validate", "drift_severity", "loud"),
        ("validate",),
        ("params.yaml: validate.drift_severity must be one of ('warn', 'fail'), got 'loud'",),
    ),
    Case(
        "0-byte model: evaluate",
        _edit_bytes("models/model.joblib", lambda _: b""),
        ("evaluate",),
        ("models/model.joblib: model file is empty (0 bytes)",),
    ),
    Case(
        "0-byte model: predict",
        _edit_bytes("models/model.joblib", lambda _: b""),
        ("predict",),
        ("models/model.joblib: model file is empty (0 bytes)",),
    ),
    Case(
        "corrupt Parquet in clean_data/",
        _edit_bytes("clean_data/validated/train.parquet", _corrupt),
        ("split",),
        ("clean_data/validated/train.parquet: not a readable Parquet file",),
    ),
    Case(
        "params: split.eval_fraction 'abc'",
        _edit_params("split", "eval_fraction", "abc"),
        ("split",),
        ("params.yaml: split.eval_fraction must be float or int, got 'abc' (str)",),
        dvc=True,
    ),
]


# --- running and checking --------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A project with tiny data and the pipeline run up to preprocess (DVC lock and cache)."""
    project = copy_project(tmp_path_factory.mktemp("bad-inputs") / "base")
    run(["python", "src/generate.py", "--scale", "tiny", "--out", "data"], project)
    run(["dvc", "add", "data", "--quiet"], project)
    run(["dvc", "repro", "preprocess"], project)
    return project


@pytest.fixture(scope="module")
def error_table(request) -> list[tuple[str, str]]:
    """Collects case -> first error line; printed after the module's tests."""
    rows: list[tuple[str, str]] = []
    yield rows
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not rows:
        return
    with capture.global_and_fixture_disabled():  # shown without -s too
        reporter.write_sep("-", "bad inputs: case -> first line on stderr")
        for case, line in rows:
            reporter.write_line(f"{case:<40} {line}")


def _hashes(project: Path, *roots: str | Path) -> dict[str, str]:
    """sha256 of every file under the given folders (hidden temp files included)."""
    found = {}
    for root in roots:
        for path in sorted((project / root).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(project))] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return found


def _first_error_line(stderr: str) -> str:
    """The first line on stderr that is not a log record of the stage (nor DVC's progress)."""
    for line in stderr.splitlines():
        if line.strip() and not LOG_RECORD.match(line):
            return line
    return ""


def _stage_outs(project: Path, stage: str) -> list[str]:
    spec = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"][stage]
    return [next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", [])]


def _data_objects(project: Path) -> set[str]:
    """Cache files of the data version data.dvc names now (dvc repro commits changed data)."""
    md5 = yaml.safe_load((project / "data.dvc").read_text(encoding="utf-8"))["outs"][0]["md5"]
    files = project / CACHE / "files" / "md5"
    listing = files / md5[:2] / md5[2:]
    objects = {listing} | {
        files / e["md5"][:2] / e["md5"][2:]
        for e in json.loads(listing.read_text(encoding="utf-8"))
    }
    return {str(p.relative_to(project)) for p in objects}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, baseline: Path, tmp_path: Path, error_table) -> None:
    project = tmp_path / "repo"
    shutil.copytree(baseline, project, symlinks=True)
    case.breaks(project)
    outputs = _hashes(project, *OUTPUTS)
    cache = _hashes(project, CACHE)
    lock = (project / "dvc.lock").read_bytes()
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]

    for stage in case.stages:
        if case.dvc:
            result = run(["dvc", "repro", stage], project, check=False)
        else:
            result = run(stages[stage]["cmd"], project, check=False)
        first = _first_error_line(result.stderr)
        error_table.append((case.id, first or "(exit 0, no error line)"))
        assert "Traceback" not in result.stderr, result.stderr
        if case.succeeds:
            assert result.returncode == 0, result.stderr
            continue
        assert result.returncode != 0, result.stderr
        assert first.startswith("error: "), result.stderr
        for words in case.expect:
            assert words in first, result.stderr

    if case.succeeds:
        _check_same_results(project, baseline, case)
        return
    if case.dvc:
        assert f"failed to reproduce '{case.stages[-1]}'" in result.stderr
        _check_dvc_left_nothing(project, case.stages[-1], outputs, cache, lock)
        return
    assert _hashes(project, *OUTPUTS) == outputs
    assert _hashes(project, CACHE) == cache
    assert (project / "dvc.lock").read_bytes() == lock


def _check_same_results(project: Path, baseline: Path, case: Case) -> None:
    report = json.loads((project / "metrics/data_validation.json").read_text(encoding="utf-8"))
    if case.id.startswith("CRLF"):
        validated = sorted((baseline / "clean_data/validated").iterdir())
        for path in validated:
            new = pq.read_table(project / "clean_data/validated" / path.name)
            assert new.equals(pq.read_table(path)), path.name
        old = json.loads((baseline / "metrics/data_validation.json").read_text(encoding="utf-8"))
        assert report == old
    else:
        kinds = {(a["column"], a["kind"]) for a in report["drift"]["anomalies"]}
        assert ("source_type", "new_category") in kinds
        assert report["status"] == "drift"
        assert report["quirks"]["train.csv"]["source_type"]["unknown category"] == 7_500


def _check_dvc_left_nothing(
    project: Path, stage: str, outputs: dict, cache: dict, lock: bytes
) -> None:
    """DVC removes a stage's outputs before running it: a failed run may leave them absent
    (`dvc checkout` brings them back), never partial; nothing new reaches the lock or cache."""
    assert (project / "dvc.lock").read_bytes() == lock
    new_objects = set(_hashes(project, CACHE)) - set(cache)
    assert new_objects <= _data_objects(project), "a stage output reached the DVC cache"
    after = _hashes(project, *OUTPUTS)
    assert after.items() <= outputs.items(), "an output changed"
    outs = _stage_outs(project, stage)
    for gone in set(outputs) - set(after):
        assert any(gone == o or gone.startswith(o + "/") for o in outs), gone
    run(["dvc", "checkout", stage], project)
    restored = _hashes(project, *OUTPUTS)
    assert {k: v for k, v in outputs.items() if k in restored} == restored
    assert set(outputs) - set(restored) <= {"metrics/data_validation.json"}  # cache: false
