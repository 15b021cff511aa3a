"""The simulator's event log as migration intervals in simulated time: the ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Interval:
    vmid: int
    upid: str
    source: str
    target: str
    start: float
    end: float
    ok: bool


def migrations(events: list[dict[str, Any]]) -> list[Interval]:
    """Pair each migration task's start with its finish, in simulated seconds.

    `upid` is the task the client was given: for an HA-managed guest that is the `hamigrate`
    request, and the migration itself is a later task the HA stack starts.
    """
    finished = {e["upid"]: e for e in events if e["kind"] == "migration_finished"}
    requested: dict[int, str] = {}
    out = []
    for e in sorted(events, key=lambda e: e["seq"]):
        if e["kind"] == "ha_migration_requested":
            requested[e["vmid"]] = e["upid"]
        if e["kind"] != "migration_started":
            continue
        end = finished.get(e["upid"])
        assert end is not None, f"migration {e['upid']} of {e['vmid']} never finished"
        upid = requested.pop(e["vmid"]) if e["ha"] else e["upid"]
        out.append(
            Interval(e["vmid"], upid, e["source"], e["target"], e["time"], end["time"], end["ok"])
        )
    return sorted(out, key=lambda i: i.start)


def brackets(started: float | None, finished: float | None, task: Interval) -> bool:
    """A store record spans the task: opened before it started, closed once it had ended.

    The cluster's clock, as PVE shows it, reads whole seconds, hence the floors.
    """
    if started is None or finished is None:
        return False
    return started <= task.start < task.end and math.floor(task.end) <= finished


def overlapping(a: Interval, b: Interval) -> bool:
    return a.start < b.end and b.start < a.end


def most_at_once(intervals: list[Interval]) -> int:
    """The largest number of intervals in progress at one instant (ends before starts)."""
    edges = sorted([(i.start, 1) for i in intervals] + [(i.end, -1) for i in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak
