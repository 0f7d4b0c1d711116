"""The model registry: versions and stages of the release bundle as GTO's git tags.

    python -m cd4ml.registry list                      # versions, stages, each version's AUC
    python -m cd4ml.registry release                   # register HEAD, assign it to prod
    python -m cd4ml.registry release --no-stage        # register only: make rollout assigns prod
    python -m cd4ml.registry version --stage prod      # print the version in a stage
    python -m cd4ml.registry fetch --out models/champion   # the prod bundle, from the remote

dvc.yaml declares the bundle as an artifact (kkbox-recommender); GTO keeps its versions
(`kkbox-recommender@v0.0.3`) and stage assignments (`kkbox-recommender#prod#4`) as annotated
git tags, read and written through gto.api, and `dvc artifacts get` downloads a version's
bundle from the DVC remote. S3_ENDPOINT (when set) is the remote's endpoint, as for make push /
pull.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from cd4ml import bundle, signing
from cd4ml.io import UserError, atomic_path, run_main
from cd4ml.metrics import EVAL_METRICS
from cd4ml.shell import checked, dvc, git

log = logging.getLogger("registry")

BUNDLE_PATH = "models/bundle"  # the release bundle, an out of the bundle stage


def artifact_name(pipeline: Path = Path("dvc.yaml")) -> str:
    """The bundle's name in the registry: the artifact of dvc.yaml whose path is the bundle."""
    try:
        artifacts = yaml.safe_load(pipeline.read_text(encoding="utf-8")).get("artifacts") or {}
    except (OSError, yaml.YAMLError, AttributeError) as err:
        raise UserError(f"{pipeline}: cannot read its artifacts ({err})") from None
    for name, spec in artifacts.items():
        if isinstance(spec, dict) and spec.get("path") == BUNDLE_PATH:
            return name
    raise UserError(f"{pipeline}: no artifact has path {BUNDLE_PATH}; declare the bundle there")


@contextlib.contextmanager
def _gto(what: str) -> Iterator[None]:
    """GTO's errors (and those of scmrepo, its git layer) as one line naming what was being
    done."""
    from gto.exceptions import GTOException
    from scmrepo.exceptions import SCMError

    try:
        yield
    except (GTOException, SCMError) as err:
        raise UserError(f"{what} failed: {err}") from None


def _check_identity(what: str) -> None:
    """GTO's tags are annotated: they need git's identity. Asked of git itself, which reads its
    config and environment anew (the library GTO tags with may keep what it read first)."""
    found = git("var", "GIT_COMMITTER_IDENT")
    if found.returncode != 0:
        raise UserError(
            f"{what} failed: git has no identity to tag with; set user.name and user.email "
            "(git config) or GIT_COMMITTER_NAME and GIT_COMMITTER_EMAIL"
        )


def _quiet_studio(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """DVC first tries DVC Studio (never configured here) and says so on an error line of its
    own: drop that line, so that the real reason comes first."""
    kept = "\n".join(line for line in result.stderr.splitlines() if "via Studio" not in line)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout, kept)


def versions(name: str) -> list[dict[str, Any]]:
    """Every registered version, newest first (gto.api.show); [] when none is registered."""
    import gto.api
    from gto.exceptions import ArtifactNotFound

    with _gto(f"gto show {name}"):
        try:
            return gto.api.show(".", name)
        except ArtifactNotFound:  # nothing registered yet
            return []


def stage_version(name: str, stage: str) -> str | None:
    """The version assigned to `stage` (e.g. v0.0.3), or None when none is."""
    import gto.api
    from gto.exceptions import ArtifactNotFound

    with _gto(f"gto show {name}#{stage}"):
        try:
            found = gto.api.find_versions_in_stage(".", name, stage)
        except ArtifactNotFound:  # nothing registered yet
            return None
    return found[0].version if found else None


def _roc_auc_at(commit: str) -> float | None:
    """The roc_auc a release commit recorded (the eval metrics, committed by the release)."""
    shown = git("show", f"{commit}:{EVAL_METRICS}")
    try:
        return float(json.loads(shown.stdout)["roc_auc"]) if shown.returncode == 0 else None
    except (ValueError, KeyError, TypeError):
        return None


def show(name: str) -> None:
    """Print versions, stages and each version's ROC AUC, newest first."""
    found = versions(name)
    if not found:
        print(f"no version of {name} registered yet: the release job (make release) registers one")
        return
    print("| version | stages | roc_auc | commit | registered |")
    print("|---|---|---|---|---|")
    for v in found:
        stages = ", ".join(s["stage"] for s in v.get("stages", []) if s.get("is_active")) or "-"
        auc = _roc_auc_at(v["commit_hexsha"])
        print(
            f"| {v['version']} | {stages} | {'-' if auc is None else f'{auc:.4f}'} "
            f"| {v['commit_hexsha'][:8]} | {str(v.get('created_at', ''))[:19]} |"
        )


def release(name: str, stage: str | None, message: str) -> list[str]:
    """Register HEAD as the next version and assign it to `stage` (None: no stage; a rollout
    assigns prod once the version has proved itself); return the new tags (the caller pushes
    them with the release commit)."""
    import gto.api

    _check_identity(f"gto register {name}")
    # What is registered is fetched and served only if signed: refused here, not downstream.
    signing.verify(Path(BUNDLE_PATH), name=f"{BUNDLE_PATH} (to be registered as {name})")
    with _gto(f"gto register {name}"):
        registered = gto.api.register(".", name, "HEAD", message=message)
    tags = [registered.tag]
    if stage is not None:
        with _gto(f"gto assign {name} {registered.version} to {stage}"):
            assigned = gto.api.assign(
                ".", name, stage, version=registered.version, message=message
            )
        tags.append(assigned.tag)
    log.info("registered %s@%s (stage %s): tags %s", name, registered.version, stage, tags)
    return tags


def versions_in_stage(name: str, stage: str) -> list[str]:
    """The versions with an active assignment to `stage`, the one GTO calls the stage's first
    (the highest)."""
    import gto.api
    from gto.exceptions import ArtifactNotFound

    with _gto(f"gto show {name}#{stage}"):
        try:
            found = gto.api.find_versions_in_stage(".", name, stage, versions_per_stage=-1)
        except ArtifactNotFound:
            return []
    return [v.version for v in found or []]


def assign(name: str, stage: str, version: str) -> str | None:
    """Assign `version` to `stage` (a GTO tag in this repository; the caller pushes it); None
    when it already is the stage's version."""
    import gto.api

    if stage_version(name, stage) == version:
        return None
    _check_identity(f"gto assign {name} {version} to {stage}")
    with _gto(f"gto assign {name} {version} to {stage}"):
        # force: a version that was in the stage before (then rolled back) may come back.
        done = gto.api.assign(".", name, stage, version=version, force=True)
    log.info("assigned %s@%s to %s: tag %s", name, version, stage, done.tag)
    return done.tag


def unassign(name: str, stage: str, version: str) -> str:
    """Take `version` out of `stage`: the version before it is the stage's again (GTO's
    rollback). Returns the new tag."""
    import gto.api

    _check_identity(f"gto unassign {name} {version} from {stage}")
    with _gto(f"gto unassign {name} {version} from {stage}"):
        done = gto.api.unassign(".", name, version=version, stage=stage)
    log.info("took %s@%s out of %s: tag %s", name, version, stage, done.tag)
    return done.tag


def fetched(path: Path) -> dict[str, Any] | None:
    """What `fetch` recorded next to a bundle folder (name, version, stage, commit); None for a
    local build."""
    try:
        info = json.loads(path.with_name(f"{path.name}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("version"), str) else None


def fetched_version(path: Path) -> str | None:
    """The registry version `fetch` recorded next to a bundle folder; None for a local build."""
    return (fetched(path) or {}).get("version")


def fetch(
    name: str,
    stage: str | None,
    version: str | None,
    out: Path,
    repo: str,
    allow_unsigned: bool = False,
) -> str | None:
    """Download a version's bundle (or the one in `stage`) into `out`, its hashes and its
    signature verified (an unsigned one refused unless `allow_unsigned`), with a `<out>.json`
    naming the version; None when no version is in the stage (out is removed). A refused
    bundle leaves `out` as it was."""
    sidecar = out.with_name(f"{out.name}.json")
    if version is None:
        version = stage_version(name, stage or "prod")
    if version is None:
        shutil.rmtree(out, ignore_errors=True)
        sidecar.unlink(missing_ok=True)
        print(f"no version of {name} in stage {stage}: nothing to fetch", flush=True)
        return None
    tmp = out.with_name(f".{out.name}.fetch")
    shutil.rmtree(tmp, ignore_errors=True)
    args = ["artifacts", "get", repo, name, "--rev", version, "-o", str(tmp)]
    if os.environ.get("S3_ENDPOINT"):
        args += ["--remote-config", f"endpointurl={os.environ['S3_ENDPOINT']}"]
    try:
        checked(_quiet_studio(dvc(*args)), f"dvc artifacts get {name}@{version} from {repo}")
        bundle.verify(tmp)
        signing.check(tmp, allow_unsigned=allow_unsigned, name=f"{name}@{version}")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    commit = git("rev-parse", "--verify", "--quiet", f"{name}@{version}^{{commit}}").stdout
    with atomic_path(sidecar) as path:
        info = {"name": name, "version": version, "stage": stage, "commit": commit.strip() or None}
        path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(f"fetched {name}@{version} ({stage or 'as asked'}) into {out}, verified", flush=True)
    return version


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pipeline", type=Path, default=Path("dvc.yaml"))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="versions, stages and each version's roc_auc")
    rel = sub.add_parser("release", help="register HEAD as the next version, assign a stage")
    to = rel.add_mutually_exclusive_group()
    to.add_argument("--stage", default="prod")
    to.add_argument(
        "--no-stage", action="store_true", help="register only (make rollout assigns prod)"
    )
    rel.add_argument("-m", "--message", help="default: 'Release of <name>'")
    ver = sub.add_parser("version", help="print the version in a stage (nothing if none)")
    ver.add_argument("--stage", default="prod")
    get = sub.add_parser("fetch", help="download a released bundle (verified) into --out")
    which = get.add_mutually_exclusive_group()
    which.add_argument("--stage", default="prod", help="the version in this stage (prod)")
    which.add_argument("--version", help="this version, e.g. v0.0.3")
    get.add_argument("--out", type=Path, default=Path("models/champion"))
    get.add_argument("--repo", default=".", help="the git repository (URL or path)")
    get.add_argument(
        "--allow-unsigned", action="store_true", help="accept a release without a signature"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    name = artifact_name(args.pipeline)
    if args.command == "list":
        show(name)
    elif args.command == "release":
        stage = None if args.no_stage else args.stage
        for tag in release(name, stage, args.message or f"Release of {name}"):
            print(tag, flush=True)
    elif args.command == "version":
        print(stage_version(name, args.stage) or "", flush=True)
    else:
        stage = None if args.version else args.stage
        fetch(name, stage, args.version, args.out, args.repo, args.allow_unsigned)


if __name__ == "__main__":
    run_main(main)
