"""The merge request note: against a loopback HTTP server that answers as GitLab's notes API does
(pages, 201 on create, 200 on update, 401 and 404), it creates one note, finds it again by its
marker and updates it, and says in one line why it skipped or failed."""

from __future__ import annotations

import http.server
import json
import re
import socket
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from cd4ml import mrnote
from cd4ml.io import run_main

NOTES = re.compile(r"/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes(?:/(\d+))?")
BOT = {"id": 9, "username": "project_42_bot", "name": "cd4ml"}
HUMAN = {"id": 3, "username": "alice", "name": "Alice"}
LIST = "/api/v4/projects/42/merge_requests/7/notes?per_page=100&sort=asc&order_by=created_at"


class GitLab(http.server.ThreadingHTTPServer):
    """GitLab's merge request notes API for one project and merge request; records requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.project, self.iid, self.token = "42", "7", "api-token"
        self.notes: list[dict] = []
        self.requests: list[dict] = []
        self.errors: list[BaseException] = []
        self.page_size = 100  # GitLab's own cap on per_page
        self.status: int | None = None  # answer every request with this error
        self.delay = 0.0
        self.release = threading.Event()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v4"

    def marked(self) -> list[dict]:
        return [n for n in self.notes if n["body"].startswith(mrnote.MARKER)]

    def handle_error(self, request, client_address) -> None:
        self.errors.append(sys.exc_info()[1])


class Handler(http.server.BaseHTTPRequestHandler):
    server: GitLab

    def log_message(self, *args) -> None:  # quiet: no access log on stderr
        pass

    def _send(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "json": json.loads(raw) if raw else None,
            }
        )
        if self.server.delay:  # a server that hangs: no answer until the test ends
            self.server.release.wait(self.server.delay)
            return
        url = urllib.parse.urlsplit(self.path)
        route = NOTES.fullmatch(url.path)
        if self.server.status is not None:
            return self._send(self.server.status, {"message": f"{self.server.status} Error"})
        if self.headers.get("PRIVATE-TOKEN") != self.server.token:
            return self._send(401, {"message": "401 Unauthorized"})
        if route is None or route[1] != self.server.project:
            return self._send(404, {"message": "404 Project Not Found"})
        if route[2] != self.server.iid:
            return self._send(404, {"message": "404 Not found"})
        if self.command == "GET" and route[3] is None:
            return self._list(url.path, urllib.parse.parse_qs(url.query))
        if self.command == "POST" and route[3] is None:
            note = {
                "id": max((n["id"] for n in self.server.notes), default=0) + 1,
                "body": json.loads(raw)["body"],
                "author": BOT,
                "system": False,
                "noteable_type": "MergeRequest",
                "noteable_iid": int(self.server.iid),
            }
            self.server.notes.append(note)
            return self._send(201, note)
        found = [n for n in self.server.notes if str(n["id"]) == route[3]]
        if self.command == "PUT" and found:
            found[0]["body"] = json.loads(raw)["body"]
            return self._send(200, found[0])
        return self._send(404, {"message": "404 Not found"})

    def _list(self, path: str, query: dict[str, list[str]]) -> None:
        per_page = min(int(query.get("per_page", ["20"])[0]), self.server.page_size)
        page = int(query.get("page", ["1"])[0])
        notes = self.server.notes
        pages = max(1, -(-len(notes) // per_page))

        def link(to: int, rel: str) -> str:
            """GitLab's Link header entry: this request's URL and query, on page `to`."""
            params = {k: v[0] for k, v in query.items() if k != "page"} | {"page": str(to)}
            base = self.server.api.removesuffix("/api/v4")
            return f'<{base}{path}?{urllib.parse.urlencode(params)}>; rel="{rel}"'

        links = [link(page + 1, "next")] if page < pages else []
        links += [link(page - 1, "prev")] if page > 1 else []
        links += [link(1, "first"), link(pages, "last")]
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(len(notes)),
            "X-Total-Pages": str(pages),
            "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
            "Link": ", ".join(links),  # python-gitlab follows rel="next"
        }
        self._send(200, notes[(page - 1) * per_page : page * per_page], headers)

    do_GET = do_POST = do_PUT = _answer


@pytest.fixture
def gitlab(monkeypatch) -> Iterator[GitLab]:
    """A running fake GitLab, and the CI variables of a merge request pipeline pointing at it."""
    server = GitLab()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    monkeypatch.setenv("CI_API_V4_URL", server.api)
    monkeypatch.setenv("CI_PROJECT_ID", server.project)
    monkeypatch.setenv("CI_MERGE_REQUEST_IID", server.iid)
    monkeypatch.setenv("CD4ML_API_TOKEN", server.token)
    monkeypatch.setenv("CD4ML_PUSH_TOKEN", "push-token")
    monkeypatch.delenv("CI_MERGE_REQUEST_PROJECT_URL", raising=False)
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    assert server.errors == []


@pytest.fixture
def body(tmp_path: Path) -> Path:
    path = tmp_path / "mr_note.md"
    path.write_text("### Metrics vs `main`\n\n| a | b |\n|---|---|\n", encoding="utf-8")
    return path


def calls(server: GitLab) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in server.requests]


def note(note_id: int, text: str, author: dict = HUMAN, system: bool = False) -> dict:
    return {"id": note_id, "body": text, "author": author, "system": system}


def fails(argv: list[str], capsys) -> str:
    """Run the CLI as python -m does; return its one error line (and check it is one)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(mrnote.main, argv)
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == ""
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_without_an_earlier_note_it_lists_then_posts_one(gitlab, body, monkeypatch, capsys):
    monkeypatch.setenv("CI_MERGE_REQUEST_PROJECT_URL", "https://gitlab.example.com/g/p")
    mrnote.main(["--body", str(body)])
    notes = "/api/v4/projects/42/merge_requests/7/notes"
    assert calls(gitlab) == [("GET", LIST), ("POST", notes)]
    assert all(r["headers"]["private-token"] == "api-token" for r in gitlab.requests)
    assert gitlab.requests[1]["headers"]["content-type"] == "application/json"
    expected = f"{mrnote.MARKER}\n{body.read_text(encoding='utf-8')}"
    assert gitlab.requests[1]["json"] == {"body": expected}
    assert [n["body"] for n in gitlab.notes] == [expected]
    assert capsys.readouterr().out == (
        "mr note created: https://gitlab.example.com/g/p/-/merge_requests/7#note_1\n"
    )


def test_the_push_token_is_used_without_an_api_token(gitlab, body, monkeypatch, capsys):
    monkeypatch.delenv("CD4ML_API_TOKEN")
    gitlab.token = "push-token"
    mrnote.main(["--body", str(body)])
    assert [r["headers"]["private-token"] for r in gitlab.requests] == ["push-token"] * 2
    assert capsys.readouterr().out == "mr note created: note 1\n"


def test_an_earlier_marked_note_on_page_two_is_updated_not_duplicated(gitlab, body, capsys):
    gitlab.page_size = 3
    gitlab.notes = [
        note(1, "Looks good, but check the AUC"),
        note(2, "added 1 commit", system=True),
        note(3, f"quoting the report: {mrnote.MARKER} old"),
        note(4, f"{mrnote.MARKER}\nthe old report", author=BOT),
        note(5, "thanks!"),
    ]
    mrnote.main(["--body", str(body)])
    notes = "/api/v4/projects/42/merge_requests/7/notes"
    assert calls(gitlab) == [("GET", LIST), ("GET", f"{LIST}&page=2"), ("PUT", f"{notes}/4")]
    assert [n["id"] for n in gitlab.notes] == [1, 2, 3, 4, 5]
    assert gitlab.notes[3]["body"] == f"{mrnote.MARKER}\n{body.read_text(encoding='utf-8')}"
    assert gitlab.notes[2]["body"] == f"quoting the report: {mrnote.MARKER} old"
    assert capsys.readouterr().out == "mr note updated: note 4\n"


def test_two_runs_leave_one_marked_note_with_the_latest_report(gitlab, body, capsys):
    gitlab.notes = [note(1, "first!")]
    mrnote.main(["--body", str(body)])
    body.write_text("the second pipeline's report\n", encoding="utf-8")
    mrnote.main(["--body", str(body)])
    assert [r["method"] for r in gitlab.requests] == ["GET", "POST", "GET", "PUT"]
    assert gitlab.marked() == [
        {**gitlab.notes[1], "body": f"{mrnote.MARKER}\nthe second pipeline's report\n"}
    ]
    assert capsys.readouterr().out == "mr note created: note 2\nmr note updated: note 2\n"


def test_a_project_path_is_url_encoded(gitlab, body, monkeypatch, capsys):
    gitlab.project = "group%2Fsub%2Fproject"
    monkeypatch.setenv("CI_PROJECT_ID", "group/sub/project")
    mrnote.main(["--body", str(body)])
    notes = "/api/v4/projects/group%2Fsub%2Fproject/merge_requests/7/notes"
    assert [path.split("?")[0] for _, path in calls(gitlab)] == [notes, notes]
    assert capsys.readouterr().out == "mr note created: note 1\n"


NO_MR = "mr note skipped: no merge request (CI_MERGE_REQUEST_IID is not set)"
NO_TOKEN = "mr note skipped: no token (set CD4ML_API_TOKEN, a project access token with api scope)"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"CI_MERGE_REQUEST_IID": None}, NO_MR),  # a branch pipeline
        ({"CI_MERGE_REQUEST_IID": ""}, NO_MR),
        ({"CD4ML_API_TOKEN": None, "CD4ML_PUSH_TOKEN": None}, NO_TOKEN),
        ({"CD4ML_API_TOKEN": "", "CD4ML_PUSH_TOKEN": None}, NO_TOKEN),
    ],
)
def test_it_skips_in_one_line_without_a_request(gitlab, tmp_path, monkeypatch, capsys, env, line):
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    run_main(mrnote.main, ["--body", str(tmp_path / "absent.md")])
    assert capsys.readouterr().out == f"{line}\n"
    assert gitlab.requests == []


@pytest.mark.parametrize(
    ("status", "words"),
    [(403, ["HTTP 403", "api scope", "Reporter"]), (500, ["HTTP 500"]), (502, ["HTTP 502"])],
)
def test_other_refusals_fail_in_one_line_naming_the_url(gitlab, body, capsys, status, words):
    gitlab.status = status
    line = fails(["--body", str(body)], capsys)
    assert line.startswith(f"error: GET {gitlab.api}/projects/42/merge_requests/7/notes: ")
    assert all(word in line for word in words)


def test_a_refused_token_fails_in_one_line_naming_the_fix(gitlab, body, monkeypatch, capsys):
    monkeypatch.setenv("CD4ML_API_TOKEN", "expired")
    line = fails(["--body", str(body)], capsys)
    assert "HTTP 401" in line and "CD4ML_API_TOKEN" in line and "api scope" in line
    assert "expired" not in line  # the token never shows in a log


def test_a_wrong_merge_request_fails_in_one_line_naming_the_url(gitlab, body, monkeypatch, capsys):
    monkeypatch.setenv("CI_MERGE_REQUEST_IID", "8")
    line = fails(["--body", str(body)], capsys)
    assert f"GET {gitlab.api}/projects/42/merge_requests/8/notes: " in line
    assert "HTTP 404" in line and "CI_MERGE_REQUEST_IID" in line


def test_a_server_that_is_down_fails_in_one_line_naming_the_url(body, gitlab, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("CI_API_V4_URL", f"http://127.0.0.1:{port}/api/v4/")
    line = fails(["--body", str(body)], capsys)
    assert f"GET http://127.0.0.1:{port}/api/v4/projects/42/merge_requests/7/notes: " in line
    assert "no answer from GitLab (ConnectionError)" in line


def test_a_server_that_hangs_times_out_in_one_line(gitlab, body, monkeypatch, capsys):
    monkeypatch.setattr(mrnote, "TIMEOUT_S", 0.2)
    gitlab.delay = 5.0
    line = fails(["--body", str(body)], capsys)
    assert f"GET {gitlab.api}/projects/42/merge_requests/7/notes: " in line
    assert "GitLab did not answer within 0.2 s (timed out)" in line


def test_a_missing_body_file_fails_in_one_line_naming_it(gitlab, tmp_path, capsys):
    absent = tmp_path / "reports" / "mr_note.md"
    line = fails(["--body", str(absent)], capsys)
    assert line.startswith(f"error: {absent}: not found")
    assert gitlab.requests == []


def test_a_missing_api_url_fails_in_one_line(gitlab, body, monkeypatch, capsys):
    monkeypatch.delenv("CI_API_V4_URL")
    line = fails(["--body", str(body)], capsys)
    assert "CI_API_V4_URL is not set" in line
    assert gitlab.requests == []
