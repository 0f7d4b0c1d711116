"""Post the evaluation report as one note on the pipeline's GitLab merge request.

    python -m cd4ml.mrnote --body reports/mr_note.md   # create the note, or update it

The note starts with a hidden marker line; a later pipeline of the same merge request finds the
note by it and edits it, so the merge request keeps one report note, never a pile of them. It
talks to GitLab's REST API through python-gitlab (CI_API_V4_URL, CI_PROJECT_ID,
CI_MERGE_REQUEST_IID: GitLab CI sets them in merge request pipelines) with the token in
CD4ML_API_TOKEN, else CD4ML_PUSH_TOKEN: a project access token with api scope. Without a merge
request or a token it says why it skipped and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cd4ml.io import UserError, run_main

log = logging.getLogger("mrnote")

MARKER = "<!-- cd4ml-kkbox evaluation report -->"
TOKEN_VARS = ("CD4ML_API_TOKEN", "CD4ML_PUSH_TOKEN")
TIMEOUT_S = 10.0


@contextlib.contextmanager
def _explained(what: str, url: str) -> Iterator[None]:
    """python-gitlab's and requests' errors as one line naming the request and the fix."""
    import gitlab.exceptions
    import requests

    status = f"{what} {url}"
    try:
        yield
    except gitlab.exceptions.GitlabError as err:
        code = err.response_code
        status = f"{status}: HTTP {code} {err.error_message}"
        if code in (401, 403):
            raise UserError(
                f"{status}; the token was refused: set CD4ML_API_TOKEN to a project access "
                "token with api scope and role Reporter or higher"
            ) from None
        if code == 404:
            raise UserError(
                f"{status}; wrong project or merge request (CI_PROJECT_ID, "
                "CI_MERGE_REQUEST_IID), or the token cannot see the project"
            ) from None
        raise UserError(status) from None
    except requests.Timeout:
        raise UserError(
            f"{status}: GitLab did not answer within {TIMEOUT_S:g} s (timed out)"
        ) from None
    except requests.RequestException as err:
        raise UserError(f"{status}: no answer from GitLab ({type(err).__name__})") from None


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise UserError(f"{name} is not set: run this in a GitLab CI merge request pipeline")
    return value


def _link(note: Any, iid: str) -> str:
    """Where the note can be seen: GitLab's notes carry no web_url, so build one."""
    project_url = os.environ.get("CI_MERGE_REQUEST_PROJECT_URL")
    if project_url:
        return f"{project_url.rstrip('/')}/-/merge_requests/{iid}#note_{note.id}"
    return f"note {note.id}"


def post_note(body_path: Path) -> str:
    """Create or update the marked note; return the line that says which it did."""
    import gitlab

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
    if not api.startswith(("http://", "https://")) or not api.endswith("/api/v4"):
        raise UserError(f"CI_API_V4_URL={api!r}: expected e.g. https://gitlab.example.com/api/v4")
    project_id = _required("CI_PROJECT_ID")
    client = gitlab.Gitlab(api.removesuffix("/api/v4"), private_token=token, timeout=TIMEOUT_S)
    request = client.projects.get(project_id, lazy=True).mergerequests.get(iid, lazy=True)
    notes_url = f"{api}/projects/{project_id}/merge_requests/{iid}/notes"
    body = f"{MARKER}\n{text}"
    with _explained("GET", notes_url):
        earlier = next(
            (
                note
                for note in request.notes.list(
                    iterator=True, per_page=100, sort="asc", order_by="created_at"
                )
                if str(note.body).startswith(MARKER)
            ),
            None,
        )
    if earlier is None:
        with _explained("POST", notes_url):
            note = request.notes.create({"body": body})
        action = "created"
    else:
        with _explained("PUT", f"{notes_url}/{earlier.id}"):
            earlier.body = body
            earlier.save()
        note, action = earlier, "updated"
    log.debug("%s note %s on %s", action, note.id, notes_url)
    return f"mr note {action}: {_link(note, iid)}"


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
