"""A corpus of bad inputs, each run through the real pipeline in a copy of the project.

One tiny data set is generated and the whole pipeline run once; every case copies that project,
breaks one thing and runs the stage command from dvc.yaml, a tool, or `make repro`'s
scripts/repro.sh. A bad input must give a non-zero exit, one readable `error: ...` line naming
the problem (the first line on stderr that is not a log record) and no traceback, and leave every
previous output and the DVC cache as they were: after `make repro` the outputs DVC removed are
back. A rejected data set leaves its report in metrics/data_validation.json. Every numeric key of
params.yaml gets a case with a value out of its declared range. The table case -> first error
line is printed at the end.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import http.client
import io
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pydantic.fields import FieldInfo

from cd4ml import params, signing
from cd4ml.shell import free_ports
from kkbox import PROBLEM
from tests.project import out_of_range, project_env, run, sign, tiny_project

pytestmark = pytest.mark.slow

LOG_RECORD = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+: ")
OUTPUTS = ("clean_data", "models", "metrics", "eval", "predictions")
CACHE = Path(".dvc/cache")
REPORT = "metrics/data_validation.json"


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
    """Set params.yaml's `section.key` (section may be dotted: train.xgb)."""

    def apply(project: Path) -> None:
        path = project / "params.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        node = data
        for part in section.split("."):
            node = node[part]
        node[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

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


def _three_quarters_positive(rows: list[list[str]]) -> list[list[str]]:
    """Half of the negative rows become positive: from about 50 % to 75 % positives."""
    col = rows[0].index("target")
    negatives = [r for r in rows[1:] if r[col] == "0"]
    for r in negatives[::2]:
        r[col] = "1"
    return rows


def _podcasts(rows: list[list[str]]) -> list[list[str]]:
    col = rows[0].index("source_type")
    for r in rows[1::4]:
        r[col] = "podcast"
    return rows


def _sign_with_another_key(folder: Path) -> None:
    keys = folder.parent / "other-keys"
    signing.keygen(keys / "k.pem", keys / "k.pub")
    signing.sign(folder, keys / "k.pem")


def _alter_after_signing(folder: Path) -> None:
    """Whoever can write the remote: the model replaced, the manifest's hashes rewritten."""
    sign(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    model = folder / manifest["model_file"]
    model.write_bytes(model.read_bytes() + b" ")
    manifest["files"][model.name]["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


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
    dvc: bool = False  # `make repro` (scripts/repro.sh <stage>) instead of the stage's command
    succeeds: bool = False
    command: str | None = None  # a tool's command line instead of a stage (generate, gate)


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
        "single class (all targets 1)",
        _edit_rows("train.csv", lambda rows: [rows[0], *([*r[:-1], "1"] for r in rows[1:])]),
        ("validate",),
        (
            "data/train.csv: column 'target' has only class 1 in all 30000 rows (no 0): "
            "a model needs both; check the export or the ingested chunks",
        ),
    ),
    Case(
        "repeated header line in songs.csv",
        _edit_rows("songs.csv", lambda rows: [*rows[:120], rows[0], *rows[120:]]),
        ("validate",),
        ("data/songs.csv: row 120 repeats the header line (concatenated files?); remove it",),
    ),
    Case(
        "repeated header line in song_extra_info.csv",
        _edit_rows("song_extra_info.csv", lambda rows: [*rows[:50], rows[0], *rows[50:]]),
        ("validate",),
        (
            "data/song_extra_info.csv: row 50 repeats the header line (concatenated files?); "
            "remove it",
        ),
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
        ("validate", "split", "preprocess"),
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
        ("params.yaml: validate.drift_severity must be one of warn, fail, got 'loud'",),
    ),
    Case(
        "params: unknown key train.modle",
        _edit_params("train", "modle", "rf"),
        ("train",),
        ("params.yaml: unknown key train.modle (did you mean train.model?)",),
        dvc=True,
    ),
    Case(
        "params: train.xgb.max_depth -3",
        _edit_params("train.xgb", "max_depth", -3),
        ("train",),
        ("params.yaml: train.xgb.max_depth must be in [1, 64], got -3",),
        dvc=True,
    ),
    Case(
        "0-byte model: evaluate",
        _edit_bytes("models/model/model.ubj", lambda _: b""),
        ("evaluate",),
        ("models/model/model.ubj: model file is empty (0 bytes)",),
    ),
    Case(
        "0-byte model: bundle",
        _edit_bytes("models/model/model.ubj", lambda _: b""),
        ("bundle",),
        ("models/model/model.ubj: model file is empty (0 bytes)",),
    ),
    Case(
        "model of an unknown kind: evaluate",
        _edit_bytes("models/model/model.json", lambda b: b.replace(b'"xgb"', b'"svm"')),
        ("evaluate",),
        (
            "models/model/model.json: model kind 'svm' is not one of the problem's "
            "['logreg', 'rf', 'xgb']",
        ),
    ),
    Case(
        "params: a baseline feature that is not one",
        _edit_params("evaluate", "baseline_features", ["te_member", "te_membr"]),
        ("evaluate",),
        (
            "params.yaml: evaluate.baseline_features names 'te_membr', not a feature of the "
            "model (did you mean 'te_member'? it has 29: ",
            "; fix the name, or [] for every feature",
        ),
    ),
    Case(
        "params: a baseline of an unknown kind",
        _edit_params("evaluate", "baseline_kind", "svm"),
        ("evaluate",),
        (
            "params.yaml: evaluate.baseline_kind 'svm' is not one of the problem's model kinds "
            "['logreg', 'rf', 'xgb']",
        ),
    ),
    Case(
        "params: repeated baseline features",
        _edit_params("evaluate", "baseline_features", ["te_song", "te_song"]),
        ("evaluate",),
        (
            "params.yaml: evaluate.baseline_features must be distinct feature names, or [] for "
            "every feature, got ['te_song', 'te_song']",
        ),
    ),
    Case(
        "tampered bundle: predict",
        _edit_bytes(
            "models/bundle/featurizer/stats.parquet",
            lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:],
        ),
        ("predict",),
        (
            "models/bundle/featurizer/stats.parquet: sha256 differs from manifest.json: the "
            "file was changed or damaged",
        ),
    ),
    Case(
        "params: problem kkbocks",
        lambda project: (project / "params.yaml").write_text(
            (project / "params.yaml").read_text().replace("problem: kkbox", "problem: kkbocks")
        ),
        ("validate",),
        ("params.yaml: problem 'kkbocks' cannot be imported",),
    ),
    Case(
        "extra file in the bundle: predict",
        _edit_bytes("models/bundle/notes.txt", lambda _: b"hello"),
        ("predict",),
        ("models/bundle/notes.txt: not listed in manifest.json: an extra file (tampered?)",),
    ),
    Case(
        "bundle unsigned: serve",
        lambda project: None,  # make run's bundle: a local build
        (),
        ("models/bundle: unsigned (no model.sig): a release is signed (make sign",),
        command="python -m cd4ml.serve --port 1",
    ),
    Case(
        "bundle signed by another key: serve",
        lambda project: _sign_with_another_key(project / "models" / "bundle"),
        (),
        ("models/bundle: signed by another key than the public key (",),
        command="python -m cd4ml.serve --port 1 --allow-unsigned",
    ),
    Case(
        "bundle altered after signing: serve",
        lambda project: _alter_after_signing(project / "models" / "bundle"),
        (),
        ("models/bundle: altered after signing: manifest.json, model.ubj changed (",),
        command="python -m cd4ml.serve --port 1 --allow-unsigned",
    ),
    Case(
        "bundle signature damaged: serve",
        _both(
            lambda project: sign(project / "models" / "bundle"),
            _edit_bytes("models/bundle/model.sig", lambda b: b[: len(b) // 2]),
        ),
        (),
        ("models/bundle: model.sig is not a signature (damaged); refusing it",),
        command="python -m cd4ml.serve --port 1",
    ),
    Case(
        "prediction log without CD4ML_LOG_KEY: serve",
        lambda project: None,
        (),
        ("the prediction log writes msno as keyed hashes and CD4ML_LOG_KEY is not set:",),
        command="CD4ML_LOG_KEY= python -m cd4ml.serve --port 1 --allow-unsigned",
    ),
    Case(
        "bundle manifest not JSON: predict",
        _edit_bytes("models/bundle/manifest.json", lambda b: b[:-20]),
        ("predict",),
        ("models/bundle/manifest.json: not valid JSON",),
    ),
    Case(
        "corrupt Parquet in clean_data/",
        _edit_bytes("clean_data/split/train.parquet", _corrupt),
        ("preprocess",),
        ("clean_data/split/train.parquet: not a readable Parquet file",),
    ),
    Case(
        "params: split.eval_fraction 'abc'",
        _edit_params("split", "eval_fraction", "abc"),
        ("split",),
        ("params.yaml: split.eval_fraction must be a number (in (0, 1)), got 'abc' (str)",),
        dvc=True,
    ),
    Case(
        "imbalanced data: 75% positives",
        _edit_rows("train.csv", _three_quarters_positive),
        ("sanity",),
        dvc=True,
        succeeds=True,
    ),
]

# The command that reads each params.yaml section: a stage of dvc.yaml, or a tool.
TOOLS = {
    "generate": "python -m cd4ml.generate --scale tiny --out data",
    "gate": "python -m cd4ml.gate check",
    "serve": "python -m cd4ml.serve --port 1 --allow-unsigned",
    "monitor": "python -m cd4ml.monitor",
    "rollout": "python -m cd4ml.rollout status",
}


def _param_case(key: str, spec: FieldInfo) -> Case:
    section, _, name = key.rpartition(".")
    value = out_of_range(spec)
    shown = repr(value)
    top = key.split(".")[0]
    return Case(
        f"params: {key} {shown}",
        _edit_params(section, name, value),
        () if top in TOOLS else (top,),
        (f"params.yaml: {key} must be {params.describe(spec)}, got {shown}",),
        command=TOOLS.get(top),
    )


# Every numeric key of every section (the loop's and the problem's) with its bounds.
PARAM_CASES = [
    _param_case(key, spec)
    for name, model in params.models(PROBLEM).items()
    for key, spec in params.leaves(model, name)
    if spec.annotation in (int, float) and out_of_range(spec) is not None
]


# --- running and checking --------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A project with tiny data and the whole pipeline run: every stage in DVC's lock and cache."""
    project = tiny_project(tmp_path_factory.mktemp("bad-inputs") / "base")
    run(["dvc", "repro"], project)
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


@pytest.mark.parametrize("case", CASES + PARAM_CASES, ids=[c.id for c in CASES + PARAM_CASES])
def test_bad_input(case: Case, baseline: Path, tmp_path: Path, error_table) -> None:
    project = tmp_path / "repo"
    shutil.copytree(baseline, project, symlinks=True)
    case.breaks(project)
    outputs = _hashes(project, *OUTPUTS)
    cache = _hashes(project, CACHE)
    lock = (project / "dvc.lock").read_bytes()
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    commands = (
        [case.command]
        if case.command
        else [
            f"scripts/repro.sh {stage}" if case.dvc else stages[stage]["cmd"]
            for stage in case.stages
        ]
    )

    for command in commands:
        result = run(command, project, check=False)
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
        # make repro: DVC removed the stage's outputs before running it; they are back.
        assert f"failed to reproduce '{case.stages[-1]}'" in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert "the last good outputs recorded in dvc.lock are back in place" in last, last
        new_objects = set(_hashes(project, CACHE)) - set(cache)
        assert new_objects <= _data_objects(project), "a stage output reached the DVC cache"
    else:
        assert _hashes(project, CACHE) == cache
    assert (project / "dvc.lock").read_bytes() == lock
    after = _hashes(project, *OUTPUTS)
    if "validate" in case.stages and "params.yaml" not in first:
        # A rejected data set is reported: the report is most useful exactly then.
        report = json.loads((project / REPORT).read_text(encoding="utf-8"))
        assert report["status"] == "failed" and f"error: {report['errors'][0]}" == first
        outputs[REPORT] = after[REPORT]
    assert after == outputs


def _check_same_results(project: Path, baseline: Path, case: Case) -> None:
    report = json.loads((project / REPORT).read_text(encoding="utf-8"))
    assert report["errors"] == []
    if case.id.startswith("CRLF"):
        # Read through the same reader by every stage: the same tables, the same features.
        made = sorted((baseline / "clean_data").rglob("*.parquet"))
        assert len(made) > 5
        for path in made:
            new = pq.read_table(project / path.relative_to(baseline))
            assert new.equals(pq.read_table(path)), path
        old = json.loads((baseline / REPORT).read_text(encoding="utf-8"))
        assert report == old
    elif case.id.startswith("imbalanced"):
        assert report["positive_rate"] == pytest.approx(0.75, abs=0.01)
        sanity = json.loads((project / "metrics/sanity.json").read_text(encoding="utf-8"))
        assert sanity["passed"], sanity
    else:
        kinds = {(a["column"], a["kind"]) for a in report["drift"]["anomalies"]}
        assert ("source_type", "new_category") in kinds
        assert report["status"] == "drift"
        assert report["quirks"]["train.csv"]["source_type"]["unknown category"] == 7_500


# --- bad HTTP requests ------------------------------------------------------------------------

TOKEN = "bad-inputs-token"
ROW = {"id": 1, "msno": "m", "song_id": "s", "source_system_tab": None}
ROW |= {"source_screen_name": None, "source_type": None}


@dataclass(frozen=True)
class Request:
    """A request to the real service, its expected status and the start of its error line."""

    id: str
    body: bytes
    status: int
    expect: str
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    token: str | None = TOKEN


AUTH = "/predict needs `Authorization: Bearer <token>` (SERVE_TOKEN)"


def _body(*rows: dict) -> bytes:
    return json.dumps({"rows": list(rows)}).encode()


REQUESTS = [
    Request("id beyond 2^53", _body({**ROW, "id": 2**63}), 422, "rows[0].id: "),
    Request("id not a number", _body({**ROW, "id": "1e400"}), 422, "rows[0].id: "),
    Request("body not JSON", b'{"rows": [', 400, "the body is not valid JSON"),
    Request(  # refused on its Content-Length: the test sends no more than the headers
        "oversized body (9 MiB)",
        b'{"rows": []' + b" " * (9 << 20) + b"}",
        413,
        "a body of 9,437,196 bytes; at most serve.max_body_bytes 8,388,608",
    ),
    Request(
        "wrong content type",
        _body(ROW),
        415,
        "the body must be application/json, not text/plain",
        (("Content-Type", "text/plain"),),
    ),
    Request("missing token", _body(ROW), 401, AUTH, token=None),
    Request("wrong token", _body(ROW), 401, AUTH, token="not-the-token"),
]


@pytest.fixture(scope="module")
def service(baseline: Path, tmp_path_factory) -> Iterator[str]:
    """The baseline's bundle served by the real service, with a token and its log on."""
    (port,) = free_ports()
    log = tmp_path_factory.mktemp("service") / "predictions"
    command = [sys.executable, "-m", "cd4ml.serve", "--port", str(port), "--allow-unsigned"]
    process = subprocess.Popen(
        [*command, "--prediction-log", str(log)],
        cwd=baseline,
        env=project_env(SERVE_TOKEN=TOKEN),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/readyz", timeout=1).close()
                break
            assert process.poll() is None, "the service did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("request_", REQUESTS, ids=[r.id for r in REQUESTS])
def test_bad_request(request_: Request, service: str, error_table) -> None:
    headers = {**dict(request_.headers), "Content-Length": str(len(request_.body))}
    if request_.token is not None:
        headers["Authorization"] = f"Bearer {request_.token}"
    connection = http.client.HTTPConnection(service.removeprefix("http://"), timeout=60)
    connection.putrequest("POST", "/predict")
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    if len(request_.body) <= 1 << 20:  # a larger one is answered before it is sent
        connection.send(request_.body)
    answer = connection.getresponse()
    status, body = answer.status, json.loads(answer.read())
    connection.close()
    error_table.append((f"HTTP {request_.id}", f"{status} {body['error']}"))
    assert status == request_.status, body
    assert body["error"].startswith(request_.expect) and "\n" not in body["error"], body
    with urllib.request.urlopen(f"{service}/healthz", timeout=10) as alive:  # still serving
        assert alive.status == 200
