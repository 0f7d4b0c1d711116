"""cd4ml.serve in process (FastAPI's test client): every endpoint, every bad request, and a
bad bundle that stops the start. The real server on a loopback port: tests/e2e/test_serve.py."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cd4ml import bundle, predlog, serve
from cd4ml.io import UserError, run_main
from cd4ml.predlog import PredictionLog, log_schema
from kkbox import PROBLEM
from kkbox.features import FEATURES
from tests import faulty
from tests.bundles import ABOUT, COLD, fit_featurizer, train, write_bundle

MAX_ROWS = 50
MAX_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[TestClient, bundle.Scorer, list[dict]]:
    """A client of the service of a small xgb bundle (registry version v0.0.7), its scorer and
    the raw eval rows as a client sends them."""
    folder = tmp_path_factory.mktemp("serve")
    fitted = fit_featurizer(folder)
    path = write_bundle(folder / "bundle", fitted, train(fitted, "xgb"))
    path.with_name("bundle.json").write_text(json.dumps({"version": "v0.0.7"}))
    scorer = bundle.load(path, PROBLEM)
    rows = fitted.eval_raw.select([f.name for f in scorer.fields]).to_pylist()
    app = serve.create_app(scorer, MAX_ROWS, serve.fetched_version(path), None, MAX_BYTES)
    return TestClient(app), scorer, rows


def test_health_readiness_and_metadata(served):
    client, _, _ = served
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["verified"] is True
    meta = client.get("/metadata").json()
    assert meta["version"] == "v0.0.7" and meta["name"] == PROBLEM.name
    assert meta["model"] == "xgb" and meta["build"] == ABOUT["build"]["sha256"]
    assert "git" not in meta
    assert meta["features"] == FEATURES and meta["data_version"] == "x"
    assert meta["max_batch_rows"] == MAX_ROWS and meta["prediction_log"] is None
    assert sorted(meta["input"]) == sorted(PROBLEM.Row.model_fields)
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_the_openapi_page_shows_the_rows_fields_and_the_optional_id(served):
    client, _, _ = served
    api = client.get("/openapi.json").json()
    assert api["info"]["title"] == PROBLEM.name
    assert api["info"]["description"] == PROBLEM.description
    request = api["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    body = api["components"]["schemas"][request["schema"]["$ref"].rsplit("/", 1)[1]]
    row = api["components"]["schemas"][body["properties"]["rows"]["items"]["$ref"].rsplit("/")[-1]]
    assert list(row["properties"]) == [*PROBLEM.Row.model_fields, "id"]
    assert sorted(row["required"]) == sorted(PROBLEM.Row.model_fields)  # id is optional
    for name, spec in PROBLEM.Row.model_fields.items():
        assert row["properties"][name]["description"] == spec.description
    response = api["components"]["schemas"]["PredictResponse"]["properties"]
    assert "flags" in response and "unknown_members" not in response


def test_the_request_models_add_an_optional_id_to_the_row():
    with_id, body = serve.request_models(PROBLEM.Row)
    row = {
        "msno": "m",
        "song_id": "s",
        **dict.fromkeys(["source_system_tab", "source_screen_name", "source_type"]),
    }
    assert with_id.model_validate(row).id is None
    assert with_id.model_validate({**row, "id": 4}).id == 4
    assert issubclass(with_id, PROBLEM.Row)
    parsed = body.model_validate({"rows": [row, {**row, "id": 1}]})
    assert [r.id for r in parsed.rows] == [None, 1]


def test_predict_returns_the_bundles_probabilities_in_order(served):
    client, scorer, rows = served
    batch = rows[:MAX_ROWS]
    answer = client.post("/predict", json={"rows": batch})
    assert answer.status_code == 200
    body = answer.json()
    expected = scorer.predict_proba(batch)
    assert body["rows"] == len(batch) and body["model_version"] == "v0.0.7"
    assert np.max(np.abs(np.array(body["probabilities"]) - expected)) <= 1e-6
    assert body["ids"] is None
    reversed_body = client.post("/predict", json={"rows": batch[::-1]}).json()
    assert reversed_body["probabilities"] == body["probabilities"][::-1]


def test_unknown_members_and_songs_are_counted_and_ids_echoed(served):
    client, _, _ = served
    rows = [
        {
            "msno": m,
            "song_id": s,
            "source_system_tab": None,
            "source_screen_name": None,
            "source_type": "radio",
            "id": i,
        }
        for i, (m, s) in enumerate([*COLD, ("m000", "s000")])
    ]
    body = client.post("/predict", json={"rows": rows}).json()
    assert body["ids"] == [0, 1, 2]
    # m-new / s-new are in no table; m-idle / s-idle are (never played), m000 / s000 too.
    assert body["flags"] == {"unknown_member": 1, "unknown_song": 1}
    assert all(0.0 <= p <= 1.0 for p in body["probabilities"])


def test_an_empty_batch_scores_nothing(served):
    client, _, _ = served
    body = client.post("/predict", json={"rows": []}).json()
    assert body["rows"] == 0 and body["probabilities"] == []
    assert body["flags"] == {"unknown_member": 0, "unknown_song": 0}


@pytest.mark.parametrize(
    ("row_change", "says"),
    [
        ({"msno": None}, "rows[1].msno: Input should be a valid string"),
        ({"msno": 12}, "rows[1].msno: Input should be a valid string"),
        ({"msno": ""}, "rows[1].msno: String should have at least 1 character"),
        ({"source_type": 3}, "rows[1].source_type: Input should be a valid string"),
        ({"id": "seven"}, "rows[1].id: Input should be a valid integer"),
    ],
)
def test_a_mistyped_field_is_422_naming_row_and_field(served, row_change, says):
    client, _, rows = served
    batch = [rows[0], {**rows[1], **row_change}]
    answer = client.post("/predict", json={"rows": batch})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(says)


def test_a_missing_field_is_422_naming_row_and_field(served):
    client, _, rows = served
    row = dict(rows[2])
    del row["source_screen_name"]  # nullable, but Kaggle's rows always have the column
    answer = client.post("/predict", json={"rows": [rows[0], rows[1], row]})
    assert answer.status_code == 422
    assert answer.json()["error"] == "rows[2].source_screen_name: Field required"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"plays": []}, "rows: Field required"),
        ({"rows": {"msno": "a"}}, "rows: Input should be a valid list"),
        ([1, 2], "body: Input should be a valid dictionary or object"),
    ],
)
def test_a_body_of_the_wrong_shape_is_422(served, body, says):
    client, _, _ = served
    answer = client.post("/predict", json=body)
    assert answer.status_code == 422 and answer.json()["error"].startswith(says)


def test_a_body_that_is_not_json_is_400(served):
    client, _, _ = served
    answer = client.post(
        "/predict", content=b'{"rows": [', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "the body is not valid JSON"


def test_a_batch_over_the_limit_is_413(served):
    client, _, rows = served
    answer = client.post("/predict", json={"rows": rows[: MAX_ROWS + 1]})
    assert answer.status_code == 413
    assert answer.json()["error"].startswith(f"{MAX_ROWS + 1} rows in one request; at most ")


def test_an_id_out_of_range_or_not_an_integer_is_422_not_a_500(served):
    client, _, rows = served
    for bad, says in ((2**63, "less than or equal to"), (-(2**53), "greater than or equal to")):
        answer = client.post("/predict", json={"rows": [{**rows[0], "id": bad}]})
        assert answer.status_code == 422
        assert answer.json()["error"].startswith(f"rows[0].id: Input should be {says} ")
    largest = {"rows": [{**rows[0], "id": serve.MAX_ID}]}
    assert client.post("/predict", json=largest).json()["ids"] == [2**53 - 1]
    for not_a_number in (True, "7", 7.5):
        answer = client.post("/predict", json={"rows": [{**rows[0], "id": not_a_number}]})
        assert answer.status_code == 422, not_a_number
    # 7.0 is an integer to JSON Schema, so to the service too
    assert client.post("/predict", json={"rows": [{**rows[0], "id": 7.0}]}).json()["ids"] == [7]


def test_a_body_over_max_body_bytes_is_413_before_it_is_parsed(served):
    client, _, rows = served
    body = json.dumps({"rows": rows[:1], "pad": "x" * MAX_BYTES}).encode()
    answer = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["error"] == (
        f"a body of {len(body):,} bytes; at most serve.max_body_bytes {MAX_BYTES:,}: "
        "split the batch"
    )

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"rows": [], "pad": "'
        for _ in range(MAX_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    chunked = client.post(
        "/predict", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413 and "a body of more than " in chunked.json()["error"]
    small = client.post(
        "/predict", content=(b for b in [b'{"rows": ', b"[]}"]),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert small.status_code == 200 and small.json()["rows"] == 0


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_by_its_type_is_415(served, kind):
    client, _, rows = served
    headers = {"Content-Type": kind} if kind else {}
    answer = client.post("/predict", content=json.dumps({"rows": rows[:1]}), headers=headers)
    assert answer.status_code == 415
    assert answer.json()["error"] == f"the body must be application/json, not {kind or 'untyped'}"
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert client.post("/predict", content=json.dumps({"rows": []}), headers=charset).is_success


def test_with_a_token_predict_and_metadata_need_it_and_probes_do_not(served):
    _, scorer, rows = served
    app = serve.create_app(scorer, MAX_ROWS, "v1", None, MAX_BYTES, token="s3cret")
    client = TestClient(app)
    for path, call in (("/predict", "post"), ("/metadata", "get")):
        kwargs = {"json": {"rows": rows[:1]}} if call == "post" else {}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            answer = getattr(client, call)(path, headers=headers, **kwargs)
            assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
            assert (
                answer.json()["error"]
                == f"{path} needs `Authorization: Bearer <token>` (SERVE_TOKEN)"
            )
        good = getattr(client, call)(path, headers={"Authorization": "Bearer s3cret"}, **kwargs)
        assert good.status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_the_openapi_document_declares_every_refusal_with_one_error_model(served):
    client, _, _ = served
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]["responses"]
    assert set(predict) == {"200", "400", "401", "413", "415", "422"}
    for status in ("400", "401", "413", "415", "422"):
        schema = predict[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert set(spec["paths"]["/metadata"]["get"]["responses"]) == {"200", "401"}
    row = spec["components"]["schemas"]["Play"]["properties"]["id"]["anyOf"][0]
    assert (row["minimum"], row["maximum"]) == (-(2**53 - 1), 2**53 - 1)


def test_wrong_method_and_path_are_client_errors(served):
    client, _, _ = served
    assert client.get("/predict").status_code == 405
    assert client.get("/nothing-here").status_code == 404


def test_every_request_is_one_access_log_line(served, caplog):
    client, _, rows = served
    with caplog.at_level(logging.INFO, logger="serve"):
        client.post("/predict", json={"rows": rows[:3]})
        client.post("/predict", json={"rows": [{"msno": 1}]})
    lines = [r.getMessage() for r in caplog.records if r.name == "serve"]
    assert len(lines) == 2
    assert lines[0].startswith("POST /predict 200 rows=3 ") and lines[0].endswith("ms")
    assert lines[1].startswith("POST /predict 422 rows=0 ")


def test_a_tampered_bundle_refuses_to_start_with_one_line(served, tmp_path, capsys):
    _, scorer, _ = served
    folder = Path(shutil.copytree(scorer.path, tmp_path / "bundle"))
    with (folder / "featurizer" / "stats.parquet").open("r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(SystemExit) as stopped:
        run_main(serve.main, ["--bundle", str(folder), "--port", "1", "--allow-unsigned"])
    assert stopped.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {folder / 'featurizer' / 'stats.parquet'}: sha256 differs from manifest.json: "
        "the file was changed or damaged"
    ]


def test_a_missing_bundle_refuses_to_start_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_main(serve.main, ["--bundle", str(tmp_path / "nothing"), "--port", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'nothing'}: no bundle folder")


def test_smoke_against_nothing_listening_is_one_line(capsys):
    with pytest.raises(SystemExit):
        run_main(serve.main, ["smoke", "--url", "http://127.0.0.1:9", "--wait", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "http://127.0.0.1:9/readyz: no answer" in err[0]


def test_scored_rows_reach_the_prediction_log_and_a_clean_stop_writes_them(served, tmp_path):
    _, scorer, rows = served
    schema = log_schema(scorer.fields, PROBLEM.flags)
    log = PredictionLog(str(tmp_path / "log"), schema, rows_per_file=1000, flush_seconds=60)
    log.start()
    app = serve.create_app(scorer, MAX_ROWS, "v0.0.7", log)
    with TestClient(app) as client:  # the context runs the app's start-up and shutdown
        for start in range(0, 120, 40):
            batch = [{**row, "id": start + i} for i, row in enumerate(rows[start : start + 40])]
            headers = {"X-Request-ID": f"r{start}"} if start else {}  # nginx sets it
            answer = client.post("/predict", json={"rows": batch}, headers=headers)
            assert answer.status_code == 200
        client.post("/predict", json={"rows": [{"msno": 1}]})  # refused: never logged
        assert client.get("/metadata").json()["prediction_log"]["dropped_rows"] == 0
    import pyarrow.parquet as pq

    files = sorted((tmp_path / "log").glob("predictions-*.parquet"))
    logged = pq.read_table(files[0])
    assert len(files) == 1 and logged.num_rows == 120 and logged.schema == schema
    assert logged["id"].to_pylist() == list(range(120))
    assert logged["request_id"].to_pylist() == [None] * 40 + ["r40"] * 40 + ["r80"] * 40
    assert logged["msno"].to_pylist() == [row["msno"] for row in rows[:120]]
    flags = scorer.score(rows[:120]).flags
    for name in PROBLEM.flags:
        assert logged[name].to_pylist() == flags[name].tolist()
    assert set(logged["model_version"].to_pylist()) == {"v0.0.7"}
    expected = scorer.predict_proba(rows[:120])
    assert np.max(np.abs(logged["probability"].to_numpy() - expected)) <= 1e-6


def test_open_log_starts_a_log_of_the_bundles_fields_or_none(served, tmp_path, monkeypatch):
    _, scorer, _ = served
    settings = serve.Serve(
        max_batch_rows=10,
        max_body_bytes=4096,
        workers=1,
        prediction_log="",
        log_rows_per_file=10,
        log_flush_seconds=1.0,
        log_retention_days=30,
    )
    assert serve.open_log("", settings, scorer) is None
    monkeypatch.delenv(predlog.KEY_ENV, raising=False)
    with pytest.raises(UserError, match="msno as keyed hashes and CD4ML_LOG_KEY is not set"):
        serve.open_log(str(tmp_path / "log"), settings, scorer)
    log = serve.open_log(str(tmp_path / "log"), settings, scorer, keep_raw_ids=True)
    try:
        assert log.schema == log_schema(scorer.fields, PROBLEM.flags)
        assert (log.rows_per_file, log.flush_seconds) == (10, 1.0)
    finally:
        log.close()
    monkeypatch.setenv(predlog.KEY_ENV, "s3cret")
    log = serve.open_log(str(tmp_path / "hashed"), settings, scorer)
    log.close()
    assert log.schema == log_schema(scorer.fields, PROBLEM.flags, ("msno",), b"s3cret")
    assert predlog.hashed_with(log.schema) == predlog.fingerprint(b"s3cret")


def test_a_log_without_a_key_refuses_to_start_with_one_line(served, tmp_path, monkeypatch, capsys):
    import uvicorn

    _, scorer, _ = served
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("it started"))
    monkeypatch.setenv(predlog.KEY_ENV, "")
    argv = ["--bundle", str(scorer.path), "--allow-unsigned", "--prediction-log", str(tmp_path)]
    with pytest.raises(SystemExit) as stopped:
        run_main(serve.main, argv)
    assert stopped.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the prediction log writes msno as keyed")
    assert "CD4ML_LOG_KEY" in err[0] and "--keep-raw-ids" in err[0]
    assert not list(tmp_path.iterdir())


def test_the_smoke_row_is_a_made_up_row_the_service_scores(served):
    client, _, _ = served
    fields = client.get("/metadata").json()["input"]
    row = serve.smoke_row(fields)
    assert row == {
        "msno": "smoke-test",
        "song_id": "smoke-test",
        "source_system_tab": None,
        "source_screen_name": None,
        "source_type": None,
    }
    answer = client.post("/predict", json={"rows": [row]})
    assert answer.status_code == 200
    assert answer.json()["flags"] == {"unknown_member": 1, "unknown_song": 1}
    numbers = {"n": {"type": "int64", "nullable": False}, "x": {"type": "double"}}
    assert serve.smoke_row(numbers) == {"n": 0, "x": 0.0}


def test_a_row_the_model_scores_nan_is_422_naming_it_with_an_alarm_never_500(
    served, tmp_path, caplog
):
    _, scorer, rows = served
    folder = Path(shutil.copytree(scorer.path, tmp_path / "bundle"))
    manifest = json.loads((folder / bundle.MANIFEST).read_text())
    manifest.update(problem="tests.faulty", model="nan")  # NaN for every row but the first
    (folder / bundle.MANIFEST).write_text(json.dumps(manifest))
    app = serve.create_app(bundle.load(folder, faulty.PROBLEM), MAX_ROWS, "v0.0.9")
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/predict", json={"rows": rows[:1]}).status_code == 200
    with caplog.at_level(logging.INFO, logger="serve"):
        answer = client.post("/predict", json={"rows": rows[:3]})
    assert answer.status_code == 422
    assert answer.json() == {
        "error": "the model cannot score rows[1]: the model's probability is nan, not a number "
        "in [0, 1]",
        "detail": None,
    }
    alarms = [r for r in caplog.records if r.name == "serve" and r.levelno >= logging.WARNING]
    assert len(alarms) == 1 and alarms[0].levelno == logging.ERROR
    assert alarms[0].getMessage().startswith("numerical health: row 1 of 3, probability: rows[1]")
    access = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert access[-1].startswith("POST /predict 422 rows=3 ")
