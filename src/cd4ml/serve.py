"""Serve the release bundle over HTTP: FastAPI on uvicorn, the bundle's own scorer.

    python -m cd4ml.serve --bundle models/bundle --host 127.0.0.1 --port 8000
    python -m cd4ml.serve smoke --url http://127.0.0.1:8000 [--version v0.0.3]

GET /healthz (alive), /readyz (bundle loaded, hashes verified, warmed up), /metadata, /docs
(OpenAPI); POST /predict {"rows": [raw input rows]}: each row has the problem's fields (its Row
model, so the OpenAPI page shows them) and an optional `id`, echoed back. A bad request is the
client's fault and says so, in one error model that the OpenAPI document declares for every
status: 400 not JSON, 401 no or a wrong token (when SERVE_TOKEN is set, /predict and /metadata
need `Authorization: Bearer <token>`), 413 too many rows or bytes, 415 not application/json, 422
a missing or mistyped field, naming row and field, or a row that makes an infinite feature or
a probability outside [0, 1] (naming the row; logged as an error). A missing or tampered bundle
stops the start with one line. The registry version comes from `<bundle>.json`, which
`python -m cd4ml.registry fetch` writes next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, Field, create_model
from pydantic_core import PydanticCustomError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from cd4ml import bundle, health, params, signing
from cd4ml.io import UserError, run_main
from cd4ml.params import Section
from cd4ml.predlog import PredictionLog, log_key, log_schema
from cd4ml.registry import fetched_version

log = logging.getLogger("serve")

BUNDLE_ENV = "CD4ML_SERVE_BUNDLE"  # how uvicorn's worker processes find the bundle
PARAMS_ENV = "CD4ML_SERVE_PARAMS"
LOG_ENV = "CD4ML_SERVE_LOG"
RAW_ENV = "CD4ML_SERVE_KEEP_RAW_IDS"  # "1": --keep-raw-ids, for the worker processes
TOKEN_ENV = "SERVE_TOKEN"  # set: /predict and /metadata need `Authorization: Bearer <it>`
# The ids a JSON client holds exactly (JavaScript's safe integers); the log stores them as int64.
MAX_ID = 2**53 - 1


class Serve(Section):
    """params.yaml's serve: the HTTP service of the release bundle (make serve)."""

    max_batch_rows: Annotated[int, Field(ge=1, le=1_000_000)]  # more rows a request: 413
    max_body_bytes: Annotated[int, Field(ge=1024, le=2**31)]  # a larger body: 413, never parsed
    workers: Annotated[int, Field(ge=1, le=64)]  # uvicorn processes, each with the bundle
    # every scored row: a folder, an s3:// prefix, or "" (no log)
    prediction_log: Annotated[
        str, Field(json_schema_extra={"allowed": "a folder, an s3:// prefix, or empty (no log)"})
    ]
    log_rows_per_file: Annotated[int, Field(ge=1, le=10_000_000)]
    log_flush_seconds: Annotated[float, Field(gt=0, le=3600)]  # a file at least this often
    # make monitor deletes the log's files written longer ago than this
    log_retention_days: Annotated[float, Field(gt=0, le=3650)]


def _a_number(value: Any) -> Any:
    """An id is a JSON number (7 or 7.0, as JSON Schema's integer), never true or "7"."""
    if isinstance(value, bool | str):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def request_models(row: type[BaseModel]) -> tuple[type[BaseModel], type[BaseModel]]:
    """The request body's models: the problem's row plus an optional `id`, and a list of them."""
    with_id = create_model(
        row.__name__,
        __base__=row,
        id=(
            Annotated[int | None, BeforeValidator(_a_number)],
            Field(default=None, ge=-MAX_ID, le=MAX_ID, description="yours: echoed, logged"),
        ),
    )
    body = create_model("PredictRequest", rows=(list[with_id], ...))
    return with_id, body


class PredictResponse(BaseModel):
    model_version: str | None
    rows: int
    probabilities: list[float]
    ids: list[int | None] | None
    flags: dict[str, int] = Field(description="how many rows raised each of the problem's flags")


def _where(loc: tuple) -> str:
    """rows[3].field from pydantic's ("body", "rows", 3, "field")."""
    text = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


class ErrorBody(BaseModel):
    """Every refusal of the service: one line, and what more there is to say."""

    error: str = Field(description="what is wrong, and where (e.g. rows[3].<field>: ...)")
    detail: Any = Field(default=None, description="422: the first validation errors")


ERRORS = {
    400: "the body is not valid JSON",
    401: "SERVE_TOKEN is set and the request has no `Authorization: Bearer <token>`, or another",
    413: "more rows than serve.max_batch_rows, or more bytes than serve.max_body_bytes",
    415: "the body is not application/json",
    422: "a row misses a field, or a field has the wrong type or is out of range, or a row "
    "makes an infinite feature or a probability that is not a number in [0, 1]",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of the refusals a path can answer."""
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in codes}


def _client_error(
    status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status_code=status, headers=headers)


class Guard:
    """What is refused before a body is read, in this order: a missing or wrong token (401,
    compared in constant time), a body that is not JSON (415), more bytes than `max_bytes`
    (413: by Content-Length, or counted as a chunked body arrives)."""

    def __init__(self, app: ASGIApp, token: str | None, max_bytes: int | None) -> None:
        self.app, self.token, self.max_bytes = app, token, max_bytes
        self.expected = f"Bearer {token}".encode() if token else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(scope["method"], scope["path"], headers)
        if refusal is None and self._counted(scope, headers):
            receive, refusal = await self._read(receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, method: str, path: str, headers: Headers) -> JSONResponse | None:
        if self.token and path in ("/predict", "/metadata"):
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self.expected):
                message = f"{path} needs `Authorization: Bearer <token>` (SERVE_TOKEN)"
                return _client_error(401, message, headers={"WWW-Authenticate": "Bearer"})
        if method != "POST" or path != "/predict":
            return None
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return _client_error(
                415, f"the body must be application/json, not {kind or 'untyped'}"
            )
        length = headers.get("content-length")
        if length is not None and self.max_bytes is not None:
            if not length.isdigit():
                return _client_error(400, f"Content-Length {length!r} is not a number")
            if int(length) > self.max_bytes:
                return self._too_big(int(length))
        return None

    def _counted(self, scope: Scope, headers: Headers) -> bool:
        """A chunked body to /predict: its bytes are counted as they arrive."""
        return (
            self.max_bytes is not None
            and scope["method"] == "POST"
            and scope["path"] == "/predict"
            and "content-length" not in headers
        )

    async def _read(self, receive: Receive) -> tuple[Receive, JSONResponse | None]:
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return receive, self._too_big(size, arrived=True)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        return replay, None

    def _too_big(self, size: int, arrived: bool = False) -> JSONResponse:
        more = "more than " if arrived else ""
        return _client_error(
            413,
            f"a body of {more}{size:,} bytes; at most serve.max_body_bytes {self.max_bytes:,}: "
            "split the batch",
        )


def create_app(
    scorer: bundle.Scorer,
    max_batch_rows: int,
    version: str | None = None,
    prediction_log: PredictionLog | None = None,
    max_body_bytes: int | None = None,
    token: str | None = None,
) -> FastAPI:
    """The service of one loaded bundle; `prediction_log` (started) receives every scored row
    and is closed, every row written, when the service stops; `token`: /predict and /metadata
    need it as a bearer token."""
    manifest = scorer.manifest
    problem = scorer.problem
    _, PredictRequest = request_models(problem.Row)
    arrow_schema = pa.schema([(f.name, f.type) for f in scorer.fields])
    schema = json.loads((scorer.path / bundle.SCHEMA).read_text(encoding="utf-8"))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        if prediction_log is not None:
            prediction_log.close()

    app = FastAPI(
        title=problem.name,
        version=version or "unregistered",
        description=problem.description,
        lifespan=lifespan,
    )
    state = {"ready": False}
    app.add_middleware(Guard, token=token or None, max_bytes=max_body_bytes)

    @app.middleware("http")
    async def access_log(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        request.state.rows = 0
        response = await call_next(request)
        log.info(
            "%s %s %d rows=%d %.1fms",
            request.method,
            request.url.path,
            response.status_code,
            request.state.rows,
            (time.perf_counter() - started) * 1000,
        )
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (a body it cannot decode, 404, 405) in the one error model.
        return _client_error(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _client_error(400, "the body is not valid JSON", errors[0].get("msg"))
        first = errors[0] if errors else {}
        message = f"{_where(tuple(first.get('loc', ())))}: {first.get('msg', 'invalid')}"
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors[:20]]
        return _client_error(422, message, detail)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "alive"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if not state["ready"]:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready", "bundle": str(scorer.path), "verified": True})

    @app.get("/metadata", responses=responses(401))
    def metadata() -> dict:
        return {
            "name": problem.name,
            "version": version,
            "model": manifest.get("model"),
            "data_version": manifest.get("data_version"),
            "build": (manifest.get("build") or {}).get("sha256"),
            "metrics": manifest.get("metrics"),
            "features": schema.get("features"),
            "input": schema.get("input"),
            "max_batch_rows": max_batch_rows,
            "prediction_log": None
            if prediction_log is None
            else {"where": prediction_log.where, **prediction_log.stats()},
        }

    def predict(body: Any, request: Request) -> Any:
        rows = body.rows
        request.state.rows = len(rows)
        if len(rows) > max_batch_rows:
            return _client_error(
                413,
                f"{len(rows)} rows in one request; at most serve.max_batch_rows "
                f"{max_batch_rows}: split the batch",
            )
        try:
            # Column by column from the validated rows: no dict per row on the hot path.
            columns = {f.name: [getattr(r, f.name) for r in rows] for f in scorer.fields}
            table = scorer.rows(pa.table(columns, schema=arrow_schema))
            scored = scorer.score_table(table)
        except health.Unhealthy as err:  # the model's fault more than the row's: an alarm
            log.error(
                "numerical health: row %d of %d, %s: %s",
                err.row,
                len(rows),
                err.feature or "probability",
                err,
            )
            return _client_error(422, f"the model cannot score {err}")
        except UserError as err:  # a row the schema let through but the bundle refuses
            return _client_error(422, str(err))
        ids = [r.id for r in rows]
        if prediction_log is not None:
            prediction_log.add(table, scored, version, ids, request.headers.get("x-request-id"))
        return {
            "model_version": version,
            "rows": len(rows),
            "probabilities": scored.probabilities.tolist(),
            "ids": ids if any(i is not None for i in ids) else None,
            "flags": scored.counts(),
        }

    # The body's model is made from the problem's Row: given as an object, not a name that
    # FastAPI would look up among this module's globals.
    predict.__annotations__["body"] = PredictRequest
    app.post(
        "/predict",
        response_model=PredictResponse,
        responses=responses(400, 401, 413, 415, 422),
    )(predict)

    # Ready once whatever makes a request fast is built and a first row went through every step.
    scorer.featurizer.warm_up()
    scorer.score([scorer.featurizer.example()])
    state["ready"] = True
    return app


def open_log(
    where: str, settings: Serve, scorer: bundle.Scorer, keep_raw_ids: bool = False
) -> PredictionLog | None:
    """The prediction log of the service ("" = none), started: the problem's private fields
    hashed with CD4ML_LOG_KEY (a UserError without it), or raw with `keep_raw_ids`."""
    if not where:
        return None
    private = scorer.problem.private
    key = log_key(private, keep_raw_ids)
    schema = log_schema(scorer.fields, scorer.problem.flags, private, key)
    if private and not key:
        log.warning("prediction log: raw %s kept (--keep-raw-ids)", ", ".join(private))
    return PredictionLog(
        where, schema, settings.log_rows_per_file, settings.log_flush_seconds, key=key
    ).start()


def _load(path: Path, params_path: str) -> tuple[bundle.Scorer, Serve]:
    problem = params.problem(params_path)
    settings = params.section(params_path, "serve", Serve)
    return bundle.load(path, problem), settings


def app_from_env() -> FastAPI:
    """The app of a uvicorn worker process (workers > 1): bundle, params and log from the env."""
    path = Path(os.environ[BUNDLE_ENV])
    scorer, settings = _load(path, os.environ.get(PARAMS_ENV, "params.yaml"))
    log_to = os.environ.get(LOG_ENV, "")
    return create_app(
        scorer,
        settings.max_batch_rows,
        fetched_version(path),
        open_log(log_to, settings, scorer, os.environ.get(RAW_ENV) == "1"),
        settings.max_body_bytes,
        os.environ.get(TOKEN_ENV),
    )


def serve(args: argparse.Namespace) -> None:
    """Load and verify the bundle (one line and exit 1 when it is bad), then serve it."""
    import uvicorn

    started = time.perf_counter()
    # Signed by the release key (the workers load what was verified here), or allowed unsigned.
    signed = signing.check(
        args.bundle, allow_unsigned=args.allow_unsigned, public_key=args.public_key
    )
    scorer, settings = _load(args.bundle, args.params)
    workers = args.workers or settings.workers
    version = fetched_version(args.bundle)
    log_to = settings.prediction_log if args.prediction_log is None else args.prediction_log
    if log_to:  # no key for the private fields: one line before anything listens
        log_key(scorer.problem.private, args.keep_raw_ids)
    if workers == 1:
        app = create_app(
            scorer,
            settings.max_batch_rows,
            version,
            open_log(log_to, settings, scorer, args.keep_raw_ids),
            settings.max_body_bytes,
            os.environ.get(TOKEN_ENV),
        )
    # else: verified here; every worker loads, warms and logs its own copy (app_from_env)
    log.info(
        "%s %s from %s (%s): loaded, verified%s in %.2f s; serving on http://%s:%d (%d worker%s)",
        scorer.problem.name,
        version or "(unregistered)",
        args.bundle,
        "signed" if signed else "UNSIGNED, --allow-unsigned",
        " and warmed up" if workers == 1 else " (each worker loads and warms its own copy)",
        time.perf_counter() - started,
        args.host,
        args.port,
        workers,
        "s" if workers > 1 else "",
    )
    common = {"host": args.host, "port": args.port, "access_log": False, "log_level": "info"}
    if workers == 1:
        uvicorn.run(app, **common)
        return
    os.environ[BUNDLE_ENV] = str(args.bundle.resolve())
    os.environ[PARAMS_ENV] = str(Path(args.params).resolve())
    os.environ[LOG_ENV] = log_to
    os.environ[RAW_ENV] = "1" if args.keep_raw_ids else ""
    uvicorn.run("cd4ml.serve:app_from_env", factory=True, workers=workers, **common)


def _get(url: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise UserError(f"{url}: HTTP {err.code}: {err.read()[:200]!r}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise UserError(
            f"{url}: no answer ({getattr(err, 'reason', err)}); is it running?"
        ) from None


def auth_headers() -> dict[str, str]:
    """A JSON request's headers, with the bearer token of SERVE_TOKEN when it is set."""
    token = os.environ.get(TOKEN_ENV)
    headers = {"Content-Type": "application/json"}
    return {**headers, "Authorization": f"Bearer {token}"} if token else headers


def smoke(url: str, version: str | None, wait_s: float) -> None:
    """Check a running service: ready, the expected version, one prediction in [0, 1]."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            _get(f"{url}/readyz", timeout=2.0)
            break
        except UserError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    meta = _get(f"{url}/metadata")
    if version is not None and meta.get("version") != version:
        raise UserError(f"{url}: serves version {meta.get('version')!r}, expected {version!r}")
    answer = _get(f"{url}/predict", {"rows": [smoke_row(meta.get("input") or {})]})
    p = answer.get("probabilities") or [None]
    if not (isinstance(p[0], float) and 0.0 <= p[0] <= 1.0):
        raise UserError(f"{url}/predict: expected one probability, got {answer!r:.200}")
    print(
        f"smoke test passed: {url} serves {meta.get('name')} "
        f"{meta.get('version') or '(unregistered)'} "
        f"(data {meta.get('data_version')}); a made-up row scores {p[0]:.4f}",
        flush=True,
    )


_SMOKE = {"string": "smoke-test", "int64": 0, "double": 0.0, "bool": False}


def smoke_row(fields: dict[str, dict]) -> dict[str, Any]:
    """A made-up row of the service's input fields (/metadata's input): text "smoke-test",
    numbers 0, nullable fields null."""
    return {
        name: None if spec.get("nullable") else _SMOKE.get(spec.get("type"), "smoke-test")
        for name, spec in fields.items()
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Serve (no command), or `smoke` a running service."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, help="default: serve.workers of params.yaml")
    parser.add_argument(
        "--prediction-log",
        help='folder or s3:// prefix; "" for none (default: serve.prediction_log)',
    )
    parser.add_argument(
        "--keep-raw-ids",
        action="store_true",
        help="log the problem's private fields as they came, not hashed with CD4ML_LOG_KEY",
    )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="serve a bundle without a signature (a local build); a signed one is still verified",
    )
    parser.add_argument(
        "--public-key",
        type=Path,
        help=f"verify the signature with this key (default: ${signing.PUBLIC_KEY_ENV} or "
        f"{signing.PUBLIC_KEY})",
    )
    parser.add_argument("--params", default="params.yaml")
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser("smoke", help="check a running service: ready, version, a prediction")
    check.add_argument("--url", default="http://127.0.0.1:8000")
    check.add_argument("--version", help="fail unless /metadata names this version")
    check.add_argument("--wait", type=float, default=30.0, help="seconds to wait for /readyz")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "smoke":
        smoke(args.url.rstrip("/"), args.version, args.wait)
    else:
        serve(args)


if __name__ == "__main__":
    run_main(main)
