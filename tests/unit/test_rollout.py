"""cd4ml.rollout without servers: nginx's config of each step, the analysis of the access log
and the prediction logs, the checks and their one-line verdicts, the settings and the state.
Real nginx, services and the registry: tests/e2e/test_rollout.py."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cd4ml import bundle, params, predlog, rollout
from cd4ml.io import UserError
from tests.project import ROOT

SETTINGS = params.section(ROOT / "params.yaml", "rollout", rollout.Rollout)
PORTS = {8001: "prod", 8002: "new"}


def test_serving_one_version_sends_every_request_to_it(tmp_path):
    conf = rollout.nginx_config(tmp_path, 8080, rollout.Traffic(prod=8001))
    assert "listen 127.0.0.1:8080;" in conf
    assert "upstream prod { server 127.0.0.1:8001; keepalive 16; }" in conf
    assert 'proxy_http_version 1.1; proxy_set_header Connection "";' in conf
    assert "map $request_id $pool { default prod; }" in conf
    assert "mirror " not in conf and "upstream new" not in conf
    assert f"pid {tmp_path.resolve()}/nginx/nginx.pid;" in conf


def test_shadow_mirrors_every_request_to_a_new_version_without_a_backup(tmp_path):
    traffic = rollout.Traffic(prod=8001, new=8002, share=0, mirror=True, step="shadow")
    conf = rollout.nginx_config(tmp_path, 8080, traffic)
    assert "mirror /_shadow;" in conf and "mirror_request_body on;" in conf
    assert "upstream shadow { server 127.0.0.1:8002; keepalive 16; }" in conf
    assert "map $request_id $pool { default prod; }" in conf  # clients get prod's answers
    assert 'map "" $rollout_step { default "shadow"; }' in conf
    assert "$shadowed" not in conf  # every request mirrored
    sample = rollout.Traffic(8001, 8002, 0, mirror=True, mirror_share=25, step="shadow")
    conf = rollout.nginx_config(tmp_path, 8080, sample)
    assert 'split_clients "${request_id}" $shadowed { 25% 1; * 0; }' in conf
    assert "if ($shadowed = 0) { return 204; }" in conf  # the rest end in nginx


def test_a_canary_step_splits_by_request_with_prod_as_the_backup(tmp_path):
    traffic = rollout.Traffic(prod=8001, new=8002, share=10, step="canary-10")
    conf = rollout.nginx_config(tmp_path, 8080, traffic)
    assert 'split_clients "${request_id}" $pool { 10% new; * prod; }' in conf
    new = "upstream new { server 127.0.0.1:8002; server 127.0.0.1:8001 backup; keepalive 16; }"
    assert new in conf
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in conf
    assert "mirror /_shadow;" not in conf
    full = rollout.nginx_config(tmp_path, 8080, rollout.Traffic(8001, 8002, 100, step="c"))
    assert 'split_clients "${request_id}" $pool { 100% new;  }' in full


def _access(lines: list[dict]) -> pd.DataFrame:
    base = {"t": 0.0, "uri": "/predict", "status": 200, "request_id": "r"}
    return pd.DataFrame([{**base, **line} for line in lines])


def test_every_try_counts_for_the_version_that_made_it():
    access = _access(
        [
            {"pool": "prod", "upstream": "127.0.0.1:8001", "upstream_status": "200",
             "upstream_s": "0.004"},
            # the new version failed; nginx retried on the prod one (its backup)
            {"pool": "new", "upstream": "127.0.0.1:8002, 127.0.0.1:8001",
             "upstream_status": "502, 200", "upstream_s": "0.001, 0.003"},
            # the new version marked down: nginx went straight to the backup
            {"pool": "new", "upstream": "127.0.0.1:8001", "upstream_status": "200",
             "upstream_s": "0.002"},
            {"pool": "prod", "upstream": "127.0.0.1:8001", "upstream_status": "-",
             "upstream_s": "-", "status": 502},
        ]
    )  # fmt: skip
    tries = rollout.attempts(access, PORTS)
    new, prod = tries[tries.role == "new"], tries[tries.role == "prod"]
    assert list(new.ok) == [False, False] and len(prod) == 4
    assert list(prod.ok) == [True, True, True, False]
    assert prod.ms.iloc[0] == pytest.approx(4.0) and np.isnan(prod.ms.iloc[3])


def test_same_rows_join_on_the_request_and_the_place_in_it():
    new = pd.DataFrame({"request_id": ["a", "a", "b", None], "probability": [0.1, 0.2, 0.3, 0.9]})
    prod = pd.DataFrame({"request_id": ["b", "a", "a", "c"], "probability": [0.4, 0.5, 0.6, 0.7]})
    pairs = rollout.same_rows(new, prod).sort_values(["request_id", "n"])
    assert list(pairs.probability_new) == [0.1, 0.2, 0.3]
    assert list(pairs.probability_prod) == [0.5, 0.6, 0.4]


def _result(**overrides) -> dict:
    result = {
        "new": {"requests": 100, "error_rate": 0.0, "p99_ms": 10.0},
        "prod": {"requests": 100, "error_rate": 0.0, "p99_ms": 10.0},
        "same_rows": 0,
    }
    for key, value in overrides.items():
        role, _, name = key.partition("__")
        if name:
            result[role] = {**result[role], name: value}
        else:
            result[key] = value
    return result


def test_a_healthy_step_fails_no_check():
    assert rollout.checks(_result(), SETTINGS) == []
    shadow = _result(same_rows=500, score_correlation=0.9, mean_score_change=0.01)
    assert rollout.checks(shadow, SETTINGS) == []


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({"new__requests": 3}, "traffic: the new version had 3 requests, fewer than "
         "rollout.min_requests 50: nothing to judge it by"),
        ({"new__error_rate": 0.05}, "error_rate: new 0.050 > prod 0.000 + "
         "rollout.max_error_rate_increase 0.01"),
        ({"new__p99_ms": 60.0}, "p99_latency: new 60.0 ms > prod 10.0 ms x rollout.max_p99_ratio "
         "1.5 + rollout.p99_slack_ms 20 = 35.0 ms"),
        ({"same_rows": 50, "score_correlation": None, "mean_score_change": 0.0},
         "score_correlation: new vs prod on 50 same rows undefined (one of them scores every row "
         "the same) < rollout.min_score_correlation 0.5"),
        ({"same_rows": 50, "score_correlation": 0.9, "mean_score_change": 0.3},
         "mean_score_change: 0.300 on 50 same rows > rollout.max_mean_score_change 0.1"),
        ({"new__labelled_rows": 300, "new__roc_auc": 0.70, "prod__labelled_rows": 300,
          "prod__roc_auc": 0.75},
         "live_roc_auc: new 0.7000 (300 labelled rows) < prod 0.7500 (300) - "
         "rollout.max_auc_drop 0.02"),
    ],
)  # fmt: skip
def test_each_check_fails_in_one_line_with_its_numbers_and_key(overrides, line):
    assert rollout.checks(_result(**overrides), SETTINGS) == [line]


def test_the_live_auc_waits_for_enough_labels():
    few = _result(
        new__labelled_rows=10, new__roc_auc=0.5, prod__labelled_rows=10, prod__roc_auc=0.9
    )
    assert rollout.checks(few, SETTINGS) == []


def test_analyse_measures_a_shadow_step_from_the_logs():
    access = _access(
        [
            {"step": "v0.0.2/run/shadow", "pool": "prod", "request_id": f"r{i}", "uri": uri,
             "upstream": f"127.0.0.1:{port}", "upstream_status": "200", "upstream_s": "0.010"}
            for i in range(60)
            for uri, port in (("/predict", 8001), ("/_shadow", 8002))
        ]
        + [{"step": step, "pool": "prod", "request_id": "old", "upstream": "127.0.0.1:8001",
            "upstream_status": "500", "upstream_s": "0.5"}
           for step in ("serve", "v0.0.1/earlier/shadow")]
    )  # fmt: skip
    rng = np.random.default_rng(0)
    p = rng.random(120)
    logs = {
        role: pd.DataFrame({"request_id": [f"r{i // 2}" for i in range(120)], "probability": q})
        for role, q in (("prod", p), ("new", p + 0.01))
    }
    label = "v0.0.2/run/shadow"  # a rollout's own label: nginx's log holds the earlier ones
    result = rollout.analyse(label, access, logs, PORTS, None, [], "target", SETTINGS)
    assert result["requests"] == 60  # the mirrored copies are not client requests
    assert result["new"]["requests"] == result["prod"]["requests"] == 60
    assert result["prod"]["error_rate"] == 0.0  # other steps and rollouts are not judged
    assert result["same_rows"] == 120 and result["score_correlation"] == pytest.approx(1.0)
    assert result["mean_score_change"] == pytest.approx(0.01)
    assert result["failed"] == []


def test_steps_must_rise_to_100(tmp_path):
    data = params.read(ROOT / "params.yaml")
    for bad in ([], [50, 10, 100], [10, 50], [0, 100], [10, 10, 100]):
        data["rollout"]["steps"] = bad
        with pytest.raises(UserError) as err:
            params.parse(rollout.Rollout, data["rollout"], "rollout", "params.yaml")
        assert str(err.value) == (
            "params.yaml: rollout.steps must be rising shares of traffic in %, from 1, ending "
            f"at 100, got {bad!r}"
        )


def test_the_state_survives_a_round_trip_and_a_broken_file_is_named(tmp_path):
    version = rollout.Version("v0.0.1", str(tmp_path / "v"), port=8001, pid=0)
    state = rollout.State(prod=version, history=["v0.0.1"])
    state.write(tmp_path)
    assert rollout.State.read(tmp_path) == state
    assert not version.alive()
    (tmp_path / "state.json").write_text(json.dumps({"prod": {"nope": 1}}))
    with pytest.raises(UserError, match=r"state\.json: not a rollout state \("):
        rollout.State.read(tmp_path)


def test_install_wants_the_version_next_to_the_bundle(tmp_path):
    (tmp_path / "bundle").mkdir()
    with pytest.raises(UserError, match=r"no bundle\.json naming its version next to it"):
        rollout.install(tmp_path / "home", tmp_path / "bundle", str(ROOT / "params.yaml"))


def test_the_picture_shows_every_step(tmp_path):
    step = {
        "new": {"p99_ms": 5.0, "error_rate": 0.0},
        "prod": {"p99_ms": 4.0, "error_rate": 0.0},
        "failed": [],
    }
    report = {
        "version": "v2",
        "prod": "v1",
        "outcome": "promoted",
        "steps": [
            {**step, "step": "shadow", "share": 0},
            {**step, "step": "canary-10", "share": 10},
        ],
    }
    rollout.picture(report, tmp_path / "rollout.png")
    assert (tmp_path / "rollout.png").read_bytes()[:4] == b"\x89PNG"


def test_the_access_log_is_read_from_where_the_rollout_began(tmp_path):
    line = {"t": 1.0, "step": "s", "pool": "prod", "uri": "/predict", "status": 200}
    line |= {"request_id": "r", "upstream": "127.0.0.1:1", "upstream_status": "200"}
    line |= {"upstream_s": "0.001", "request_s": "0.002"}
    path = tmp_path / "access.log"
    assert rollout.read_access_log(path).empty  # no log yet
    path.write_text(json.dumps({**line, "request_id": "before"}) + "\n")
    begun = path.stat().st_size
    assert rollout.read_access_log(path, begun).empty  # nothing since
    with path.open("a") as fh:
        fh.write(json.dumps({**line, "request_id": "after"}) + "\n")
    assert rollout.read_access_log(path, begun)["request_id"].tolist() == ["after"]
    assert rollout.read_access_log(path)["request_id"].tolist() == ["before", "after"]
    path.write_text(json.dumps({**line, "request_id": "new log"}) + "\n")  # shorter: a new one
    assert rollout.read_access_log(path, begun * 2)["request_id"].tolist() == ["new log"]


def test_a_long_prod_log_is_read_from_the_files_written_since_the_rollout_began(tmp_path):
    fields = [bundle.Field("user", pa.string(), False)]
    schema = predlog.log_schema(fields, ())

    def rows(request: str, hours_ago: float) -> pa.Table:
        now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)
        return pa.table(
            {
                "ts": pa.array([now] * 2, predlog.TIME),
                "model_version": ["v1.0.0"] * 2,
                "user": ["a", "b"],
                "id": [1, 2],
                "request_id": [request] * 2,
                "probability": pa.array([0.2, 0.7], pa.float32()),
            },
            schema=schema,
        )

    folder = tmp_path / "predictions"
    assert rollout.read_predictions(folder, fields, ()).empty  # no log yet
    for n, hours in enumerate([24 * 7, 24, 0]):  # prod's log from a week ago to now
        name = f"predictions-2024010{n + 1}T000000000000-7-0123abcd.parquet"
        predlog.write_file(rows(f"r{n}", hours), str(folder), name)
    began = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    since = rollout.read_predictions(folder, fields, (), since=began)
    assert since["request_id"].tolist() == ["r2", "r2"]
    assert len(rollout.read_predictions(folder, fields, ())) == 6
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert rollout.read_predictions(folder, fields, (), since=later).empty
