"""The retrain trigger: the monitor's verdicts of each window kept as a history, and a retrain
requested when a threshold stays crossed.

Each `make monitor` run appends one record to the history (its window, and for each check it
judged whether its threshold was crossed) as a small JSON file of its own next to the prediction
log (a folder or an s3:// prefix): a run never rewrites a file another one wrote, so concurrent
runs and S3 both work. A check fires when its threshold was crossed in at least
`monitor.trigger_min_crossings` of the last `monitor.trigger_windows` windows *and* in the latest
one: a lasting degradation triggers, a one-off spike does not, and a degradation that has ended
does not either. Then the monitor writes a retrain request (which checks, which windows, when),
which the scheduled CI pipeline turns into a train → gate → rollout run (.gitlab-ci.yml's
`retrain` job).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from cd4ml import predlog
from cd4ml.io import UserError

PREFIX, SUFFIX = "monitor-", ".json"  # monitor-<UTC time>-<pid>-<random>.json: one run's record


def fire(history: Sequence[dict[str, bool]], windows: int, min_crossings: int) -> dict[str, int]:
    """The checks that fire, each with its number of crossings in the last `windows` records:
    crossed in the latest record and in at least `min_crossings` of the last `windows` (a
    check a record lacks was not crossed then). `history`: oldest first."""
    if not history:
        return {}
    last = history[-windows:]
    fired = {}
    for name, crossed in history[-1].items():
        if crossed:
            count = sum(bool(record.get(name)) for record in last)
            if count >= min_crossings:
                fired[name] = count
    return fired


def record(report: dict, checks: dict[str, bool], now: dt.datetime) -> dict[str, Any]:
    """One run's entry of the history: when, which window, which versions, each check's
    verdict (True: its threshold crossed)."""
    return {
        "run_at": now.isoformat(timespec="seconds"),
        "window_start": report["window"]["start"],
        "window_end": report["window"]["end"],
        "model_versions": report["model_versions"],
        "rows": report["overall"]["rows"],
        "checks": checks,
    }


def append(where: str, entry: dict, now: dt.datetime) -> str:
    """Add `entry` to the history at `where` (a folder or an s3:// prefix) as a new file; its
    name starts with the time, so that names sort in time order. Returns its path."""
    data = json.dumps(entry, indent=1, sort_keys=True).encode()
    return predlog.store(where, predlog.file_name(PREFIX, SUFFIX, now), lambda fh: fh.write(data))


def read(where: str) -> list[dict]:
    """Every record of the history at `where`, in the order they were written (none: [])."""
    opener = predlog.opener(where)
    records = []
    for path in predlog.listing(where, f"{PREFIX}*{SUFFIX}"):
        try:
            with opener(path, "rb") as fh:
                entry = json.loads(fh.read())
            entry["checks"] = {str(k): bool(v) for k, v in entry["checks"].items()}
            entry["window_end"] = str(entry["window_end"])
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise UserError(
                f"{path}: not a monitor history record ({type(err).__name__}: {err}); "
                "delete it, the next run writes a new one"
            ) from None
        records.append(entry)
    return records


def windows(records: Sequence[dict]) -> list[dict]:
    """The records of distinct windows, oldest first. A window judged twice (no new log rows
    between two runs) counts once, with its latest verdicts; going back from the latest, a
    window that overlaps the later one kept by more than a tenth of its length is left out (a
    monitor run more often than monitor.window_hours judges the same rows again: a spike must
    not count once a run)."""
    latest: dict[str, dict] = {}
    for entry in records:  # written in time order: a later run replaces an earlier one
        latest[entry["window_end"]] = entry
    kept: list[dict] = []
    for entry in sorted(latest.values(), key=lambda e: _time(e["window_end"]), reverse=True):
        if kept:
            start, end = _time(kept[-1]["window_start"]), _time(kept[-1]["window_end"])
            if _time(entry["window_end"]) > start + (end - start) / 10:
                continue
        kept.append(entry)
    return kept[::-1]


def _time(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"monitor history: {text!r} is not an ISO time; delete the record that holds it"
        ) from None


def decide(
    records: Sequence[dict], windows_m: int, min_crossings: int, now: dt.datetime
) -> dict[str, Any]:
    """The trigger's verdict on the history: the checks that fire, and the request to write
    (None when none fires)."""
    judged = windows(records)[-windows_m:]
    fired = fire([e["checks"] for e in judged], windows_m, min_crossings)
    verdict: dict[str, Any] = {
        "windows": windows_m,
        "min_crossings": min_crossings,
        "judged_windows": len(judged),
        "fired": fired,
        "request": None,
    }
    if fired:
        verdict["request"] = {
            "requested_at": now.isoformat(timespec="seconds"),
            "reason": f"threshold crossed in at least {min_crossings} of the last {windows_m} "
            "monitored windows and in the latest one",
            "checks": {
                name: {
                    "crossings": count,
                    "windows": [e["window_end"] for e in judged if e["checks"].get(name)],
                }
                for name, count in fired.items()
            },
            "windows": [
                {"start": e["window_start"], "end": e["window_end"], "run_at": e["run_at"]}
                for e in judged
            ],
            "model_versions": judged[-1]["model_versions"],
        }
    return verdict


def summary(verdict: dict) -> str:
    """The verdict in a few words, for the monitor's last line."""
    m, n = verdict["windows"], verdict["min_crossings"]
    if not verdict["fired"]:
        return (
            f"retrain trigger: not fired (no threshold crossed in {n} of the last {m} windows "
            f"and the latest; {verdict['judged_windows']} judged so far)"
        )
    checks = ", ".join(f"{name} in {count} of {m}" for name, count in verdict["fired"].items())
    return f"retrain trigger: FIRED ({checks})"
