"""The dask engine's plumbing: scratch space, pieces of Parquet files, gathering outputs, and
the workers' code checked against this checkout's (the loop's and the problem's packages)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import kkbox
from cd4ml import cluster
from cd4ml.io import UserError, write_parquet
from cd4ml.problem import module_of
from cd4ml.shell import free_ports

PACKAGES = ("cd4ml", module_of(kkbox.PROBLEM))  # what the engine asks the workers to share


def _table(rows: int) -> pa.Table:
    rng = np.random.default_rng(3)
    return pa.table({"x": rng.random(rows).astype(np.float32), "k": np.arange(rows)})


def test_a_file_is_staged_under_its_md5_once(tmp_path: Path):
    space = cluster.Scratch(str(tmp_path / "scratch"), {"auto_mkdir": True})
    source = tmp_path / "members.csv"
    source.write_text("msno,city\nA,1\n")
    (url,) = space.stage(source)
    digest = hashlib.md5(source.read_bytes()).hexdigest()
    assert url == f"{space.url}/md5/{digest[:2]}/{digest[2:]}"
    assert Path(url).read_bytes() == source.read_bytes()
    first = Path(url).stat().st_mtime_ns
    time.sleep(0.01)
    assert space.stage(source) == [url] and Path(url).stat().st_mtime_ns == first  # not again
    assert [p.name for p in Path(url).parent.iterdir()] == [digest[2:]]  # no temp file left


def test_scratch_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for name in ("DASK_SCRATCH", "S3_BUCKET", "S3_ENDPOINT", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert cluster.scratch(local_cluster=True).url == str(tmp_path / ".dask-scratch")
    with pytest.raises(UserError, match="DASK_SCRATCH"):
        cluster.scratch(local_cluster=False)
    monkeypatch.setenv("S3_BUCKET", "b")
    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:7480")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    space = cluster.scratch(local_cluster=False)
    assert space.url == "s3://b/dask-scratch"
    assert space.options["key"] == "id" and space.options["secret"] == "secret"
    assert space.options["client_kwargs"] == {"endpoint_url": "http://127.0.0.1:7480"}
    assert space.options["config_kwargs"]["read_timeout"] == 60
    monkeypatch.setenv("DASK_SCRATCH", "s3://other/prefix/")
    assert cluster.scratch(local_cluster=False).url == "s3://other/prefix"


def test_pieces_cover_every_row_once_and_read_back_in_order(tmp_path: Path):
    path = tmp_path / "t.parquet"
    table = _table(10_000)
    pq.write_table(table, path, row_group_size=3000)  # pieces cross row groups
    space = cluster.Scratch(str(tmp_path))
    cuts = cluster.pieces(space, str(path), 7)
    assert [(p.start, p.stop) for p in cuts][:2] == [(0, 1429), (1429, 2858)]
    assert cuts[-1].stop == 10_000 and len(cuts) == 7
    parts = [cluster.read_piece(p, {}, ["x", "k"]) for p in cuts]
    assert pa.concat_tables(parts).equals(table)


def test_gathered_partitions_are_the_bytes_of_one_write(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(cluster, "ROW_GROUP", 1000)  # the layout rule, at a small size
    table = _table(4321)
    space = cluster.Scratch(str(tmp_path / "s"), {"auto_mkdir": True})
    urls = []
    for i, (lo, hi) in enumerate([(0, 700), (700, 2900), (2900, 2900), (2900, 4321)]):
        if hi > lo:
            urls.append(
                cluster.write_piece(table.slice(lo, hi - lo), f"{space.url}/{i}", space.options)
            )
    whole, gathered = tmp_path / "whole.parquet", tmp_path / "gathered.parquet"
    write_parquet(table, whole, "lz4", row_group_size=1000)
    assert cluster.gather_parquet(space, urls, gathered, "lz4") == 4321
    assert gathered.read_bytes() == whole.read_bytes()


def test_an_unreachable_scheduler_fails_within_ten_seconds_naming_it(monkeypatch):
    (port,) = free_ports(1)
    address = f"tcp://127.0.0.1:{port}"
    monkeypatch.setenv(cluster.SCHEDULER, address)
    started = time.monotonic()
    with pytest.raises(UserError) as err, cluster.connect(PACKAGES):
        pass
    assert time.monotonic() - started <= 10
    assert f"cannot reach the Dask scheduler at {address} (DASK_SCHEDULER_ADDRESS)" in str(err)
    assert "\n" not in str(err.value)


def _package(root: Path, name: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_code_digest_covers_every_python_file_of_each_package(tmp_path: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    files = {"__init__.py": "", "a.py": "X = 1\n", "sub/b.py": "Y = 2\n", "data.csv": "1,2\n"}
    _package(tmp_path / "one", "digest_pkg_one", files)
    _package(tmp_path / "two", "digest_pkg_two", files)
    monkeypatch.syspath_prepend(str(tmp_path / "one"))
    monkeypatch.syspath_prepend(str(tmp_path / "two"))
    first = cluster.code_digest(("digest_pkg_one",))
    assert len(first) == 12 and int(first, 16) >= 0
    assert cluster.code_digest(("digest_pkg_one",)) == first
    assert cluster.code_digest(("digest_pkg_two",)) != first  # the package's name counts
    both = cluster.code_digest(("digest_pkg_one", "digest_pkg_two"))
    assert both not in (first, cluster.code_digest(("digest_pkg_two", "digest_pkg_one")))
    (tmp_path / "one" / "digest_pkg_one" / "data.csv").write_text("changed\n")
    assert cluster.code_digest(("digest_pkg_one",)) == first  # not Python: not code
    (tmp_path / "one" / "digest_pkg_one" / "sub" / "b.py").write_text("Y = 3\n")
    assert cluster.code_digest(("digest_pkg_one",)) != first


def test_the_problems_package_is_its_folder_under_src():
    assert PACKAGES == ("cd4ml", "kkbox")
    assert cluster.code_digest(PACKAGES) != cluster.code_digest(("cd4ml",))


@pytest.mark.timeout(120)
def test_workers_running_other_problem_code_are_refused(tmp_path: Path, monkeypatch):
    """Real workers: one imports this checkout's kkbox, the other a copy with one line changed
    (first on its PYTHONPATH); workers that cannot import a package are refused too."""
    import shutil

    from tools import daskcluster

    other = tmp_path / "other"
    shutil.copytree(Path(kkbox.__file__).parent, other / "kkbox")
    with (other / "kkbox" / "features.py").open("a") as fh:
        fh.write("\nUNSEEN = 7\n")
    same = daskcluster.start(tmp_path / "same", workers=1)
    odd = daskcluster.start(tmp_path / "odd", workers=1, env={"PYTHONPATH": str(other)})
    monkeypatch.setenv("DASK_SCRATCH", str(tmp_path / "scratch"))  # a shared folder: one machine
    try:
        monkeypatch.setenv(cluster.SCHEDULER, same.address)
        with cluster.connect(PACKAGES) as (client, space):
            mine = cluster.code_digest(PACKAGES)
            assert set(client.run(cluster.code_digest, PACKAGES).values()) == {mine}
            assert space.url == str(tmp_path / "scratch")
            # A problem package that is here only: the workers cannot import it
            _package(tmp_path / "here", "local_only_problem", {"__init__.py": ""})
            monkeypatch.syspath_prepend(str(tmp_path / "here"))
            with pytest.raises(UserError) as err:
                cluster.check_workers(client, same.address, ("cd4ml", "local_only_problem"))
            assert str(err.value).startswith(
                f"the Dask workers of {same.address} cannot run cd4ml and local_only_problem "
                "(ModuleNotFoundError: "
            )
            assert str(err.value).endswith("environment (Pipfile.lock) on them")
        monkeypatch.setenv(cluster.SCHEDULER, odd.address)
        with pytest.raises(UserError) as err, cluster.connect(PACKAGES):
            pass
        message = str(err.value)
        assert message.startswith(f"1 of the 1 Dask workers of {odd.address} run other cd4ml ")
        assert "and kkbox code than this checkout" in message and f"here: {mine}" in message
        with cluster.connect(("cd4ml",)):  # the loop's code is the same there
            pass
    finally:
        same.stop()
        odd.stop()
