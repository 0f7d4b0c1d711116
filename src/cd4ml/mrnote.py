"""Post the evaluation report as one note on the pipeline's GitLab merge request.

    python -m cd4ml.mrnote --body reports/mr_note.md   # create the note, or update it

The note starts with a hidden marker line; a later pipeline of the same merge request finds the
note by it and edits it, so the merge request keeps one report note, never a pile of them. It
talks to GitLab's REST API v4 (CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID: GitLab CI
sets them in merge request pipelines) with the token in CD4ML_API_TOKEN, else CD4ML_PUSH_TOKEN:
a project access token with api scope. Without a merge request or a token it says why it
skipped and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

from kkbox.io import UserError, run_main

log = logging.getLogger("mrnote")

MARKER = "<!-- cd4ml-kkbox evaluation report -->"
TOKEN_VARS = ("CD4ML_API_TOKEN", "CD4ML_PUSH_TOKEN")
TIMEOUT_S = 10.0


def _call(method: str, url: str, token: str, body: dict | None = None) -> tuple[Any, Message]:
    """One API request: the decoded JSON answer and the response headers."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"PRIVATE-TOKEN": token, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as err:
        status = f"{method} {url}: HTTP {err.code} {err.reason}"
        if err.code in (401, 403):
            raise UserError(
                f"{status}; the token was refused: set CD4ML_API_TOKEN to a project access "
                "token with api scope and role Reporter or higher"
            ) from None
        if err.code == 404:
            raise UserError(
                f"{status}; wrong project or merge request (CI_PROJECT_ID, "
                "CI_MERGE_REQUEST_IID), or the token cannot see the project"
            ) from None
        raise UserError(status) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", None) or err
        raise UserError(f"{method} {url}: no answer from GitLab ({reason})") from None
    except ValueError:
        raise UserError(f"{method} {url}: the answer is not JSON; is it GitLab's API?") from None


def find_note(notes_url: str, token: str) -> dict | None:
    """The first note whose body starts with the marker, following every page; None if none."""
    query = {"per_page": "100", "sort": "asc", "order_by": "created_at"}
    while True:
        notes, headers = _call("GET", f"{notes_url}?{urllib.parse.urlencode(query)}", token)
        for note in notes if isinstance(notes, list) else []:
            if isinstance(note, dict) and str(note.get("body", "")).startswith(MARKER):
                return note
        next_page = (headers.get("X-Next-Page") or "").strip()  # empty on the last page
        if not next_page:
            return None
        query["page"] = next_page


def _link(note: dict, iid: str) -> str:
    """Where the note can be seen: GitLab's notes carry no web_url, so build one."""
    if note.get("web_url"):
        return str(note["web_url"])
    project_url = os.environ.get("CI_MERGE_REQUEST_PROJECT_URL")
    if project_url:
        return f"{project_url.rstrip('/')}/-/merge_requests/{iid}#note_{note.get('id')}"
    return f"note {note.get('id')}"


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise UserError(f"{name} is not set: run this in a GitLab CI merge request pipeline")
    return value


def post_note(body_path: Path) -> str:
    """Create or update the marked note; return the line that says which it did."""
    iid = os.environ.get("CI_MERGE_REQUEST_IID")
    if not iid:
        return "mr note skipped: no merge request (CI_MERGE_REQUEST_IID is not set)"
    token = next((os.environ[v] for v in TOKEN_VARS if os.environ.get(v)), None)
    if token is None:
        return (
            "mr note skipped: no token (set CD4ML_API_TOKEN, a project access token with api "
            "scope)"
        )
    try:
        text = body_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{body_path}: not found; write the report first") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{body_path}: cannot read it ({err})") from None
    api = _required("CI_API_V4_URL").rstrip("/")
    if not api.startswith(("http://", "https://")):
        raise UserError(f"CI_API_V4_URL={api!r}: expected e.g. https://gitlab.example.com/api/v4")
    project = urllib.parse.quote(_required("CI_PROJECT_ID"), safe="")
    notes_url = f"{api}/projects/{project}/merge_requests/{urllib.parse.quote(iid)}/notes"
    payload = {"body": f"{MARKER}\n{text}"}
    earlier = find_note(notes_url, token)
    if earlier is None:
        note, _ = _call("POST", notes_url, token, payload)
        action = "created"
    else:
        note, _ = _call("PUT", f"{notes_url}/{earlier['id']}", token, payload)
        action = "updated"
    log.debug("%s note %s on %s", action, (note or {}).get("id"), notes_url)
    return f"mr note {action}: {_link(note if isinstance(note, dict) else {}, iid)}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--body", type=Path, required=True, help="the note's Markdown (e.g. reports/mr_note.md)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    print(post_note(parse_args(argv).body), flush=True)


if __name__ == "__main__":
    run_main(main)
