"""Push to, pull from and check the DVC remote; a failure is one line naming remote and fix.

The remote comes from DVC's config (.dvc/config, then .dvc/config.local). S3_BUCKET and S3_ENDPOINT
(or --bucket / --endpoint) are probed first, then written to .dvc/config.local, so tracked files
never change and a remote that does not answer leaves no trace there.
Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) as DVC reads them.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cd4ml.io import UserError, run_main
from cd4ml.shell import dvc

log = logging.getLogger("remote")

# What DVC says when a tracked file is neither in the local cache nor on the remote.
MISSING_FILES = "cache files do not exist neither locally nor on remote"
# Fail within seconds when the endpoint is down instead of botocore's long default back-off.
S3_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 2}}


@dataclass(frozen=True)
class Remote:
    """A DVC remote as DVC would use it: name, URL, endpoint and its other config options."""

    name: str
    url: str
    endpoint: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_s3(self) -> bool:
        """True for an s3:// remote (the only kind this module can probe)."""
        return urlsplit(self.url).scheme == "s3"

    @property
    def bucket(self) -> str:
        """The bucket of an s3:// URL."""
        return urlsplit(self.url).netloc

    @property
    def prefix(self) -> str:
        """The key prefix of an s3:// URL, without slashes at the ends."""
        return urlsplit(self.url).path.strip("/")

    def describe(self) -> str:
        """How the remote is named in messages: name, URL and (for S3) endpoint."""
        if not self.is_s3:
            return f"remote '{self.name}' ({self.url})"
        endpoint = self.endpoint or "AWS default endpoint"
        return f"remote '{self.name}' ({self.url}, endpoint {endpoint})"


def with_bucket(url: str, bucket: str) -> str:
    """Return the s3:// URL with its bucket replaced and its key prefix kept."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise UserError(f"S3_BUCKET is set but the remote URL {url} is not an s3:// URL")
    return f"s3://{bucket}{parts.path}"


def dvc_output(result: subprocess.CompletedProcess[str]) -> str:
    """DVC's stdout and stderr as one text block."""
    return "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())


def load_config(repo: Path | None = None) -> Any:
    """DVC's config for the repository around `repo` (default: the current directory), all
    levels merged."""
    from dvc.config import Config
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    where = repo or Path.cwd()
    try:
        try:
            dvc_dir = Repo.find_dvc_dir(str(where))
        except NotDvcRepoError:
            dvc_dir = None  # as DVC does outside a repository: the global and system config
        return Config(dvc_dir=dvc_dir)
    except DvcException as err:
        raise UserError(f"cannot read the DVC config here ({where}): {err}") from None


def find_remote(config: Any, name: str | None) -> Remote:
    """A remote (default: core.remote) from DVC's merged config, config.local included."""
    name = name or config["core"].get("remote")
    if not name:
        raise UserError(
            "no default DVC remote: run `dvc remote add -d storage s3://BUCKET/dvcstore`"
        )
    remotes = config["remote"]
    if name not in remotes:
        known = ", ".join(sorted(remotes)) or "none"
        raise UserError(f"no DVC remote named '{name}' (configured: {known})")
    options = dict(remotes[name])
    return Remote(name, options.pop("url"), options.pop("endpointurl", None), options)


def with_overrides(
    remote: Remote, bucket: str | None, endpoint: str | None
) -> tuple[Remote, dict[str, str]]:
    """The remote with a bucket or endpoint override applied in memory, and the changed options."""
    changes = {}
    if bucket and bucket != remote.bucket:
        changes["url"] = with_bucket(remote.url, bucket)
    if endpoint and endpoint != remote.endpoint:
        if not remote.is_s3:
            raise UserError(
                f"S3_ENDPOINT is set but the remote URL {remote.url} is not an s3:// URL"
            )
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UserError(f"S3_ENDPOINT {endpoint!r} is not a URL like http://127.0.0.1:7480")
        changes["endpointurl"] = endpoint
    overridden = replace(
        remote,
        url=changes.get("url", remote.url),
        endpoint=changes.get("endpointurl", remote.endpoint),
    )
    return overridden, changes


def save_overrides(config: Any, name: str, changes: dict[str, str]) -> None:
    """Write the overridden options of remote `name` to .dvc/config.local (none: no write)."""
    from dvc.exceptions import DvcException

    if not changes:
        return
    try:
        # What `dvc remote modify --local` does, without starting DVC once per option.
        with config.edit("local") as local:
            local["remote"].setdefault(name, {}).update(changes)
    except DvcException as err:
        raise UserError(f"cannot write remote '{name}' to .dvc/config.local: {err}") from None
    shown = ", ".join(f"{key} = {value}" for key, value in changes.items())
    log.info("remote '%s': %s written to .dvc/config.local", name, shown)


def s3_client(remote: Remote) -> Any:
    """A boto3 S3 client with the endpoint, profile and credentials DVC would use."""
    import boto3
    from botocore.config import Config as BotoConfig

    opts = remote.options
    if opts.get("credentialpath"):
        os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", opts["credentialpath"])
    session = boto3.session.Session(
        profile_name=opts.get("profile"),
        aws_access_key_id=opts.get("access_key_id"),
        aws_secret_access_key=opts.get("secret_access_key"),
        aws_session_token=opts.get("session_token"),
        region_name=opts.get("region"),
    )
    return session.client(
        "s3",
        endpoint_url=remote.endpoint,
        verify=opts.get("ssl_verify", True),
        config=BotoConfig(**S3_TIMEOUTS),
    )


def probe(remote: Remote) -> None:
    """Check that the endpoint answers, the credentials are accepted and the bucket exists."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    where = remote.describe()
    endpoint = remote.endpoint or "the AWS endpoint"
    try:
        client = s3_client(remote)
        endpoint = client.meta.endpoint_url
        client.head_bucket(Bucket=remote.bucket)
        client.list_objects_v2(Bucket=remote.bucket, Prefix=remote.prefix, MaxKeys=1)
    except NoCredentialsError as err:
        raise UserError(
            f"{where}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n{err}"
        ) from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as err:
        raise UserError(
            f"{where}: cannot reach {endpoint}: is the server up? "
            f"set S3_ENDPOINT (or `dvc remote modify --local {remote.name} endpointurl URL`)"
            f"\n{err}"
        ) from None
    except ClientError as err:
        cause, detail = _explain(client, remote, err)
        raise UserError(f"{where}: {cause}\n{detail}") from None
    except ValueError as err:
        raise UserError(
            f"{where}: {err}: set S3_ENDPOINT to a URL like http://127.0.0.1:7480"
        ) from None
    except BotoCoreError as err:
        raise UserError(f"{where}: S3 client error: {err}") from None


def _explain(client: Any, remote: Remote, err: Any) -> tuple[str, str]:
    """Turn an S3 error response into the cause with its fix, and the server's own words."""
    from botocore.exceptions import ClientError

    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = err.response.get("Error", {}).get("Code", "")
    if status == 404 or code in ("404", "NoSuchBucket"):
        return f"bucket {remote.bucket} does not exist: create it or set S3_BUCKET", str(err)
    if status != 403:
        return f"S3 answered {status} {code}: check the endpoint and region", str(err)
    # A HEAD response has no body, so ask again with a request whose error names the reason.
    try:
        client.list_buckets()
    except ClientError as again:
        code = again.response.get("Error", {}).get("Code", "")
        err = again
    if code == "SignatureDoesNotMatch":
        return "wrong credentials: check AWS_SECRET_ACCESS_KEY", str(err)
    if code == "InvalidAccessKeyId":
        return "wrong credentials: the server does not know AWS_ACCESS_KEY_ID", str(err)
    return f"access denied to bucket {remote.bucket}: the keys have no rights on it", str(err)


def explain_dvc_failure(command: str, output: str) -> str:
    """Name the likely cause of a failed `dvc push` / `dvc pull` from its output."""
    errors = [line[len("ERROR: ") :] for line in output.splitlines() if line.startswith("ERROR: ")]
    reason = errors[0] if errors else "see DVC's message below"
    missing = MISSING_FILES in output
    if missing and command == "push":
        return (
            "some outputs are neither in the local cache nor on the remote: run `dvc repro` first"
        )
    if missing and "Checkout failed" in reason:
        return "some files are not on the remote: push them first, or pull with --allow-missing"
    return f"dvc {command} failed: {reason}"


def transfer(remote: Remote, command: str, dvc_args: list[str], repo: Path | None = None) -> None:
    """Run `dvc push` or `dvc pull` against the (probed) remote, with a clear line on failure."""
    started = time.perf_counter()
    result = dvc(command, "--run-cache", "--remote", remote.name, *dvc_args, cwd=repo)
    detail = dvc_output(result)
    # dvc push exits 0 when files are missing from the cache: for a full push that is a failure.
    incomplete = command == "push" and MISSING_FILES in result.stderr
    if result.returncode != 0 or incomplete:
        if remote.is_s3 and not incomplete:
            # The remote may have gone away during the transfer: that is the better explanation.
            try:
                probe(remote)
            except UserError as err:
                raise UserError(f"{err}\n{detail}") from None
        raise UserError(f"{remote.describe()}: {explain_dvc_failure(command, detail)}\n{detail}")
    for line in result.stderr.strip().splitlines():
        log.warning("dvc: %s", line)
    summary = result.stdout.strip().splitlines()
    log.info(
        "%s %s %s done in %.1f s: %s",
        command,
        "to" if command == "push" else "from",
        remote.describe(),
        time.perf_counter() - started,
        summary[-1] if summary else "done",
    )


def sync(
    command: str,
    targets: Sequence[str] = (),
    repo: Path | None = None,
    name: str | None = None,
    bucket: str | None = None,
    endpoint: str | None = None,
    jobs: int | None = None,
    allow_missing: bool = False,
) -> None:
    """Probe the remote, then `dvc push` or `dvc pull` the targets (all: none given), or only
    probe (`check`). `bucket` and `endpoint` default to $S3_BUCKET and $S3_ENDPOINT."""
    bucket = os.environ.get("S3_BUCKET") if bucket is None else bucket
    endpoint = os.environ.get("S3_ENDPOINT") if endpoint is None else endpoint
    # botocore logs where it found the credentials at INFO: noise before a possible error line.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    config = load_config(repo)
    remote, changes = with_overrides(find_remote(config, name), bucket or None, endpoint or None)
    if command == "check" and not remote.is_s3:
        raise UserError(f"{remote.describe()}: not an s3:// remote, which is all check knows")
    if remote.is_s3:
        probe(remote)
    # Only an override the remote answered to reaches .dvc/config.local (dvc push reads it there).
    save_overrides(config, remote.name, changes)
    if command == "check":
        log.info("%s: reachable, credentials accepted, bucket exists", remote.describe())
        return
    dvc_args = ["--jobs", str(jobs)] if jobs else []
    if allow_missing:
        dvc_args.append("--allow-missing")
    transfer(remote, command, [*dvc_args, *targets], repo)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["push", "pull", "check"])
    parser.add_argument("--remote", help="DVC remote name (default: core.remote)")
    parser.add_argument(
        "--bucket",
        help="use this bucket, kept in .dvc/config.local once it answers (default: $S3_BUCKET)",
    )
    parser.add_argument(
        "--endpoint",
        help="S3 endpoint URL, kept in .dvc/config.local once it answers (default: $S3_ENDPOINT)",
    )
    parser.add_argument("-j", "--jobs", type=int, help="parallel transfers (DVC's default)")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="pull: skip files the remote does not have instead of failing",
    )
    parser.add_argument("targets", nargs="*", help="limit to these outputs or stages")
    # Intermixed: targets may come before or after the options (pull --allow-missing data.dvc).
    args = parser.parse_intermixed_args(argv)
    if args.allow_missing and args.command != "pull":
        parser.error("--allow-missing only applies to pull")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sync(
        args.command,
        args.targets,
        name=args.remote,
        bucket=args.bucket,
        endpoint=args.endpoint,
        jobs=args.jobs,
        allow_missing=args.allow_missing,
    )


if __name__ == "__main__":
    run_main(main)
