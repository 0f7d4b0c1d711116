"""End to end: the serving image (ci/serve.Dockerfile) built by buildah around a small real
bundle, then run on a free loopback port and smoke-tested as the deploy job tests the service
(tools/image.sh build / run). The base image it makes is kept (a cache); the test's image goes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cd4ml.shell import free_ports
from kkbox import PROBLEM
from tests.bundles import fit_featurizer, train, write_bundle
from tests.project import ROOT, project_env, run, sign

# A cold build downloads and installs the locked environment (2 min on 2 cores, 1.8 GB).
pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(1200)]

SCRIPT = ROOT / "tools" / "image.sh"
VERSION = "v0.0.7"
# The locked default environment is 1.6 GB (NCCL's GPU library alone 0.5 GB, xgboost's 0.2 GB):
# what the image may weigh before someone should look at what grew.
MAX_IMAGE_BYTES = 1_600_000_000  # 1.3 GB measured: the default packages less NCCL


def buildah(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["buildah", *args], ROOT)


def inspect(tag: str) -> dict:
    """`buildah inspect` of an image: its Docker config and manifest (layer sizes) among others."""
    return json.loads(buildah("inspect", "--type", "image", tag).stdout)


def containers_of(tag: str) -> list[str]:
    """The names of the buildah containers made from image `tag`."""
    found = json.loads(buildah("containers", "--json").stdout) or []
    return [c["containername"] for c in found if c["imagename"] == tag]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Iterator[str]:
    """The serving image of a small xgb bundle fetched as registry version v0.0.7, signed with
    the test session's release key (its public half goes into the image); removed at the end."""
    if shutil.which("buildah") is None:
        message = "buildah is not installed: run `make system-deps`"
        if os.environ.get("CI"):  # in CI a missing tool is a broken set-up, not a skip
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("image")
    fitted = fit_featurizer(folder)
    bundle = sign(write_bundle(folder / "bundle", fitted, train(fitted, "xgb")))
    sidecar = {"name": PROBLEM.name, "version": VERSION, "stage": "prod", "commit": None}
    bundle.with_name("bundle.json").write_text(json.dumps(sidecar), encoding="utf-8")
    tag = f"localhost/cd4ml-serve-test:{uuid.uuid4().hex[:12]}"
    try:
        built = run([str(SCRIPT), "build", str(bundle), tag], ROOT)
        assert f"built {tag} in " in built.stderr
        yield tag
    finally:
        subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


def test_an_unsigned_bundle_gets_no_image(tmp_path):
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed: run `make system-deps`")
    folder = tmp_path / "bundle"
    folder.mkdir()
    (tmp_path / "bundle.json").write_text("{}")
    refused = run([str(SCRIPT), "build", str(folder), "localhost/never:built"], ROOT, check=False)
    assert refused.returncode == 1
    assert f"{folder} is unsigned (no model.sig): the image serves signed releases only" in (
        refused.stderr
    )


def test_the_image_runs_as_a_user_with_a_healthcheck(image):
    found = inspect(image)
    config = found["Docker"]["config"]
    assert config["User"] and config["User"].split(":")[0] not in ("root", "0")
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])  # docker format: kept
    assert "8000/tcp" in config["ExposedPorts"]
    layers = json.loads(found["Manifest"])["layers"]
    size = sum(layer["size"] for layer in layers)
    assert 0 < size < MAX_IMAGE_BYTES, f"{size / 1e9:.2f} GB"


def test_nothing_of_the_build_mounts_stays_in_the_image(image):
    container = buildah("from", "--quiet", "--pull-never", image).stdout.strip()
    try:
        root = Path(buildah("mount", container).stdout.strip())
        ca = root / "run" / "build-ca.crt"
        assert not ca.exists() or ca.stat().st_size == 0  # an empty mount point at most
        assert not (root / "root" / ".cache" / "pip").exists()
        assert (root / "srv" / "cd4ml" / "bundle.json").is_file()
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)


def test_the_image_serves_the_bundle_and_stops_on_sigterm(image):
    (port,) = free_ports()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(SCRIPT), "run", image, str(port)],
        cwd=ROOT,
        env=project_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        smoke = ["smoke", "--url", url, "--version", VERSION, "--wait", "120"]
        shown = run([sys.executable, "-m", "cd4ml.serve", *smoke], ROOT, check=False)
    finally:
        server.terminate()
        try:
            log = server.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            log = server.communicate()[0]
    assert shown.returncode == 0, f"{shown.stderr}\n--- tools/image.sh run:\n{log[-4000:]}"
    assert shown.stdout.startswith(f"smoke test passed: {url} serves {PROBLEM.name} {VERSION}")
    assert server.returncode == 143, log[-4000:]  # stopped by SIGTERM, as a caller stops it
    assert "Finished server process" in log  # uvicorn shut down gracefully
    assert containers_of(image) == []
