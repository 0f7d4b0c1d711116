"""cd4ml.remote without a server: the remote from DVC's config, overrides, and the one-line
explanation of each failure. Against a real S3 server: tests/e2e/test_s3_remote.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from cd4ml import remote
from cd4ml.io import UserError
from cd4ml.remote import Remote, with_bucket

S3 = Remote("storage", "s3://cd4ml-kkbox/dvcstore", "http://127.0.0.1:7480")


def test_with_bucket_keeps_the_prefix() -> None:
    assert with_bucket("s3://cd4ml-kkbox/dvcstore", "other") == "s3://other/dvcstore"
    assert with_bucket("s3://a", "b") == "s3://b"


def test_with_bucket_of_a_local_remote_is_a_clear_error():
    with pytest.raises(UserError, match=r"^S3_BUCKET is set but the remote URL /srv/dvc is not"):
        with_bucket("/srv/dvc", "other")


def test_a_remote_knows_its_bucket_prefix_and_how_it_is_named():
    assert (S3.is_s3, S3.bucket, S3.prefix) == (True, "cd4ml-kkbox", "dvcstore")
    assert S3.describe() == (
        "remote 'storage' (s3://cd4ml-kkbox/dvcstore, endpoint http://127.0.0.1:7480)"
    )
    aws = Remote("storage", "s3://b/a/b/")
    assert aws.prefix == "a/b"
    assert aws.describe() == "remote 'storage' (s3://b/a/b/, endpoint AWS default endpoint)"
    local = Remote("backup", "/srv/dvc")
    assert not local.is_s3 and local.describe() == "remote 'backup' (/srv/dvc)"


@pytest.mark.parametrize(
    ("command", "output", "explained"),
    [
        (
            "push",
            f"WARNING: {remote.MISSING_FILES}\nERROR: failed to push",
            "some outputs are neither in the local cache nor on the remote: run `dvc repro` first",
        ),
        (
            "pull",
            f"ERROR: Checkout failed for following targets:\n{remote.MISSING_FILES}",
            "some files are not on the remote: push them first, or pull with --allow-missing",
        ),
        ("pull", "ERROR: unexpected error - boom\nERROR: again", "dvc pull failed: unexpected"),
        ("push", "nothing said", "dvc push failed: see DVC's message below"),
    ],
)
def test_explain_dvc_failure_names_the_likely_cause(command, output, explained):
    assert remote.explain_dvc_failure(command, output).startswith(explained)


def test_explain_dvc_failure_gives_the_first_error_line_whole():
    output = "Collecting\nERROR: unexpected error - boom\nERROR: again"
    assert remote.explain_dvc_failure("pull", output) == "dvc pull failed: unexpected error - boom"


def test_overrides_change_only_what_differs():
    same, none = remote.with_overrides(S3, "cd4ml-kkbox", "http://127.0.0.1:7480")
    assert same == S3 and none == {}
    moved, changes = remote.with_overrides(S3, "other", "https://s3.example.invalid")
    assert changes == {"url": "s3://other/dvcstore", "endpointurl": "https://s3.example.invalid"}
    assert (moved.url, moved.endpoint, moved.name) == (
        "s3://other/dvcstore",
        "https://s3.example.invalid",
        "storage",
    )
    assert remote.with_overrides(S3, None, None) == (S3, {})


@pytest.mark.parametrize(
    ("base", "endpoint", "message"),
    [
        (S3, "127.0.0.1:7480", r"S3_ENDPOINT '127.0.0.1:7480' is not a URL like http://"),
        (S3, "ftp://host", r"S3_ENDPOINT 'ftp://host' is not a URL"),
        (Remote("backup", "/srv/dvc"), "http://h:1", r"the remote URL /srv/dvc is not an s3://"),
    ],
)
def test_a_bad_endpoint_override_is_a_clear_error(base, endpoint, message):
    with pytest.raises(UserError, match=message):
        remote.with_overrides(base, None, endpoint)


def _config() -> dict:
    return {
        "core": {"remote": "storage"},
        "remote": {
            "storage": {"url": "s3://b/p", "endpointurl": "http://h:1", "region": "us-east-1"},
            "backup": {"url": "/srv/dvc"},
        },
    }


def test_find_remote_takes_the_default_or_the_one_named():
    assert remote.find_remote(_config(), None) == Remote(
        "storage", "s3://b/p", "http://h:1", {"region": "us-east-1"}
    )
    assert remote.find_remote(_config(), "backup") == Remote("backup", "/srv/dvc")
    with pytest.raises(UserError, match=r"^no DVC remote named 'x' \(configured: backup, stor"):
        remote.find_remote(_config(), "x")
    with pytest.raises(UserError, match=r"^no default DVC remote: run `dvc remote add -d"):
        remote.find_remote({"core": {}, "remote": {}}, None)


@pytest.fixture
def dvc_repo(tmp_path) -> Path:
    """A folder with a hand-written .dvc/config: default remote `storage` on S3."""
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text(
        "[core]\n    remote = storage\n"
        "['remote \"storage\"']\n    url = s3://cd4ml-kkbox/dvcstore\n"
        "['remote \"backup\"']\n    url = /srv/dvc\n",
        encoding="utf-8",
    )
    return tmp_path


def test_overrides_are_saved_to_config_local_and_read_back(dvc_repo):
    config = remote.load_config(dvc_repo)
    found = remote.find_remote(config, None)
    assert (found.url, found.endpoint) == ("s3://cd4ml-kkbox/dvcstore", None)
    remote.save_overrides(config, "storage", {})
    assert not (dvc_repo / ".dvc" / "config.local").exists()
    remote.save_overrides(config, "storage", {"endpointurl": "http://127.0.0.1:9"})
    assert "endpointurl = http://127.0.0.1:9" in (dvc_repo / ".dvc/config.local").read_text()
    again = remote.find_remote(remote.load_config(dvc_repo), None)
    assert (again.url, again.endpoint) == ("s3://cd4ml-kkbox/dvcstore", "http://127.0.0.1:9")
    assert "127.0.0.1" not in (dvc_repo / ".dvc" / "config").read_text()


def test_check_of_a_remote_that_is_not_s3_says_so(dvc_repo, monkeypatch):
    monkeypatch.delenv("S3_BUCKET", raising=False)
    monkeypatch.delenv("S3_ENDPOINT", raising=False)
    with pytest.raises(UserError, match=r"^remote 'backup' \(/srv/dvc\): not an s3:// remote"):
        remote.sync("check", repo=dvc_repo, name="backup")


def test_a_broken_dvc_config_names_the_folder(dvc_repo):
    (dvc_repo / ".dvc" / "config").write_text("[core]\n    no_such_option = 1\n")
    with pytest.raises(UserError, match=r"^cannot read the DVC config here \("):
        remote.load_config(dvc_repo)


def _error(status: int, code: str, operation: str = "HeadBucket") -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


class _Client:
    """An S3 client whose HEAD of the bucket fails, and whose listing of buckets says why."""

    class meta:
        endpoint_url = "http://127.0.0.1:7480"

    def __init__(self, head: Exception, listing: Exception | None = None) -> None:
        self.head, self.listing = head, listing

    def head_bucket(self, Bucket: str) -> None:
        raise self.head

    def list_buckets(self) -> None:
        if self.listing:
            raise self.listing


@pytest.mark.parametrize(
    ("head", "listing", "cause"),
    [
        (
            _error(404, "404"),
            None,
            "bucket cd4ml-kkbox does not exist: create it or set S3_BUCKET",
        ),
        (
            _error(403, "403"),
            _error(403, "SignatureDoesNotMatch", "ListBuckets"),
            "wrong credentials: check AWS_SECRET_ACCESS_KEY",
        ),
        (
            _error(403, "403"),
            _error(403, "InvalidAccessKeyId", "ListBuckets"),
            "wrong credentials: the server does not know AWS_ACCESS_KEY_ID",
        ),
        (
            _error(403, "403"),
            None,
            "access denied to bucket cd4ml-kkbox: the keys have no rights on it",
        ),
        (_error(500, "InternalError"), None, "S3 answered 500 InternalError: check the endpoint"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:7480"),
            None,
            "cannot reach http://127.0.0.1:7480: is the server up? set S3_ENDPOINT",
        ),
        (NoCredentialsError(), None, "no credentials: set AWS_ACCESS_KEY_ID and"),
    ],
)
def test_probe_turns_each_s3_failure_into_its_cause_and_fix(monkeypatch, head, listing, cause):
    monkeypatch.setattr(remote, "s3_client", lambda _: _Client(head, listing))
    with pytest.raises(UserError) as err:
        remote.probe(S3)
    assert str(err.value).splitlines()[0].startswith(f"{S3.describe()}: {cause}")


def test_allow_missing_is_only_for_pull():
    args = remote.parse_args(["pull", "data.dvc", "--allow-missing"])
    assert args.allow_missing and args.targets == ["data.dvc"]
    with pytest.raises(SystemExit):
        remote.parse_args(["push", "--allow-missing"])
