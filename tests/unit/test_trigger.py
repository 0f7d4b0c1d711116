"""cd4ml.trigger: N-of-M hysteresis fires on a lasting degradation, not on a one-off spike; the
history is appended as one file a run and read back in order."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from cd4ml import trigger
from cd4ml.io import UserError

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def _history(crossed: str) -> list[dict[str, bool]]:
    """One record a window, oldest first: 'x' crossed the mean_probability threshold, '.' not."""
    return [{"mean_probability": c == "x", "unknown_member": False} for c in crossed]


@pytest.mark.parametrize(
    ("crossed", "fires"),
    [
        ("....xx", False),  # 2 of the last 6: fewer than 3
        ("...xxx", True),  # a lasting degradation
        ("..x.xx", True),  # 3 of 6, the latest among them
        ("x.x.x.", False),  # 3 of 6, but the latest is clean: it has ended
        (".....x", False),  # a one-off spike
        ("xx....x", False),  # the old crossings are out of the last 6 windows
        ("xxx", True),  # fewer windows than M so far: N crossings are enough
    ],
)
def test_n_of_the_last_m_windows_and_the_latest_fire(crossed, fires):
    fired = trigger.fire(_history(crossed), windows=6, min_crossings=3)
    assert ("mean_probability" in fired) is fires
    assert "unknown_member" not in fired


def test_a_single_spike_never_fires_whatever_came_before_it_was_clean():
    for m in range(1, 8):
        for n in range(2, m + 1):
            assert trigger.fire(_history("." * 10 + "x"), m, n) == {}


def test_fire_counts_the_crossings_and_treats_a_missing_check_as_not_crossed():
    history = [{"a": True}, {}, {"a": True, "b": True}, {"a": True, "b": True}]
    assert trigger.fire(history, windows=4, min_crossings=2) == {"a": 3, "b": 2}
    assert trigger.fire(history, windows=4, min_crossings=4) == {}
    assert trigger.fire([], windows=4, min_crossings=1) == {}
    assert trigger.fire(history, windows=1, min_crossings=1) == {"a": 1, "b": 1}


def _entry(end: str, **checks: bool) -> dict:
    return {
        "run_at": end,
        "window_start": end,
        "window_end": end,
        "model_versions": ["v1"],
        "rows": 10,
        "checks": checks,
    }


def test_the_history_is_appended_one_file_a_run_and_read_back_in_order(tmp_path):
    where = str(tmp_path / "log")
    assert trigger.read(where) == []
    ends = [f"2026-12-0{d}T00:00:00.000+00:00" for d in (1, 2, 3)]
    paths = [
        trigger.append(where, _entry(end, drift=d % 2 == 0), NOW + dt.timedelta(seconds=d))
        for d, end in enumerate(ends)
    ]
    assert len(set(paths)) == 3
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == sorted(
        p.rsplit("/", 1)[-1] for p in paths
    )
    read = trigger.read(where)
    assert [r["window_end"] for r in read] == ends
    assert [r["checks"] for r in read] == [{"drift": True}, {"drift": False}, {"drift": True}]
    # Other files of the log's folder are not the history's.
    (tmp_path / "log" / "predictions-20261201T000000000000-1-0123abcd.parquet").write_bytes(b"")
    assert len(trigger.read(where)) == 3


def test_two_runs_in_the_same_second_keep_both_records(tmp_path):
    where = str(tmp_path)
    trigger.append(where, _entry("2026-12-01T00:00:00.000+00:00"), NOW)
    trigger.append(where, _entry("2026-12-02T00:00:00.000+00:00"), NOW)
    assert len(trigger.read(where)) == 2


def test_a_window_judged_twice_counts_once_with_its_latest_verdicts():
    records = [
        _entry("2026-12-01T00:00:00.000+00:00", drift=True),
        _entry("2026-12-02T00:00:00.000+00:00", drift=True),
        _entry("2026-12-02T00:00:00.000+00:00", drift=False),
    ]
    judged = trigger.windows(records)
    assert [(e["window_end"][:10], e["checks"]["drift"]) for e in judged] == [
        ("2026-12-01", True),
        ("2026-12-02", False),
    ]


def test_a_lasting_degradation_gives_a_request_naming_checks_and_windows(tmp_path):
    where = str(tmp_path)
    for day, crossed in enumerate([False, True, True, True], start=1):
        end = f"2026-12-0{day}T00:00:00.000+00:00"
        trigger.append(where, _entry(end, mean_probability=crossed, drift=day == 4), NOW)
    verdict = trigger.decide(trigger.read(where), 4, 3, NOW)
    assert verdict["fired"] == {"mean_probability": 3}
    request = verdict["request"]
    assert request["requested_at"] == "2026-12-04T12:00:00+00:00"
    assert request["checks"]["mean_probability"]["windows"] == [
        f"2026-12-0{d}T00:00:00.000+00:00" for d in (2, 3, 4)
    ]
    assert [w["end"][:10] for w in request["windows"]] == [f"2026-12-0{d}" for d in (1, 2, 3, 4)]
    assert json.loads(json.dumps(request)) == request
    assert trigger.summary(verdict) == "retrain trigger: FIRED (mean_probability in 3 of 4)"
    quiet = trigger.decide(trigger.read(where), 4, 4, NOW)
    assert quiet["request"] is None
    assert trigger.summary(quiet).startswith("retrain trigger: not fired")


def test_windows_judged_more_often_than_their_length_count_once():
    """24-hour windows judged every 6 hours: a spike in one run's window is in the next three
    runs' windows too; only windows that barely overlap the later one count."""
    day = dt.timedelta(hours=24)
    records = []
    for run in range(9):  # ends every 6 hours
        end = NOW + dt.timedelta(hours=6 * run)
        records.append(
            {
                **_entry(end.isoformat(), drift=run in (5, 6, 7, 8)),
                "window_start": (end - day).isoformat(),
            }
        )
    judged = trigger.windows(records)
    assert [e["window_end"] for e in judged] == [records[i]["window_end"] for i in (0, 4, 8)]
    # One spike, in the last four runs' windows: counting every run would fire (4 of 6) ...
    assert trigger.fire([e["checks"] for e in records], 6, 2) == {"drift": 4}
    # ... it is in one distinct window: it does not.
    assert trigger.decide(records, 6, 2, NOW)["fired"] == {}
    records[4]["checks"]["drift"] = True  # a day earlier too: a lasting degradation
    assert trigger.decide(records, 6, 2, NOW)["fired"] == {"drift": 2}


def test_a_damaged_history_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "monitor-20261201T000000000000-1-0123abcd.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match=f"{bad}: not a monitor history record"):
        trigger.read(str(tmp_path))
    bad.write_text(json.dumps({"window_end": "x"}))
    with pytest.raises(UserError, match="delete it"):
        trigger.read(str(tmp_path))
