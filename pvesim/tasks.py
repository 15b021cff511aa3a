"""PVE worker tasks: UPIDs, status and logs, with lines stamped in simulated time.

A task's whole log is written when it is planned, each line with the simulated instant it
"happens"; readers only see lines whose instant has passed. That keeps tasks deterministic
and lets them progress without a background thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LogLine:
    at: float
    text: str


@dataclass
class Task:
    upid: str
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str
    tokenid: str | None
    ends_at: float | None = None
    exitstatus: str | None = None
    lines: list[LogLine] = field(default_factory=list)

    def running(self, now: float) -> bool:
        return self.ends_at is None or now < self.ends_at

    def log(self, at: float, text: str) -> None:
        self.lines.append(LogLine(at, text))

    def log_stamped(self, at: float, text: str) -> None:
        self.lines.append(LogLine(at, f"{_stamp(at)} {text}"))

    def finish(self, at: float, exitstatus: str) -> None:
        self.ends_at = at
        self.exitstatus = exitstatus
        if exitstatus == "OK":
            final = "TASK OK"
        elif exitstatus.startswith("WARNINGS"):
            final = "TASK " + exitstatus
        else:
            final = "TASK ERROR: " + exitstatus
        self.lines.append(LogLine(at, final))

    def visible_lines(self, now: float) -> list[str]:
        return [line.text for line in sorted(self.lines, key=lambda x: x.at) if line.at <= now]

    def status(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "upid": self.upid,
            "node": self.node,
            "pid": self.pid,
            "pstart": self.pstart,
            "starttime": self.starttime,
            "type": self.type,
            "id": self.id,
            "user": self.user,
        }
        if self.tokenid:
            out["tokenid"] = self.tokenid
        if self.running(now):
            out["status"] = "running"
        else:
            out["status"] = "stopped"
            out["exitstatus"] = self.exitstatus
        return out

    def list_entry(self, now: float) -> dict[str, Any]:
        out = {k: v for k, v in self.status(now).items() if k != "exitstatus"}
        if self.running(now):
            out["status"] = "RUNNING"
        else:
            out["status"] = self.exitstatus
            out["endtime"] = int(self.ends_at or 0)
        return out


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def make_upid(
    node: str, pid: int, pstart: int, starttime: int, kind: str, ident: str, user: str
) -> str:
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{ident}:{user}:"


def parse_upid(upid: str) -> dict[str, Any] | None:
    parts = upid.split(":")
    if len(parts) != 9 or parts[0] != "UPID" or parts[8] != "":
        return None
    try:
        return {
            "node": parts[1],
            "pid": int(parts[2], 16),
            "pstart": int(parts[3], 16),
            "starttime": int(parts[4], 16),
            "type": parts[5],
            "id": parts[6],
            "user": parts[7],
        }
    except ValueError:
        return None


class TaskRegistry:
    """All tasks of the cluster; PIDs and process starts are counters, so runs are repeatable."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._order: list[str] = []
        self._pid = 40_000

    def create(self, node: str, kind: str, ident: str, auth_user: str, at: float) -> Task:
        self._pid += 7
        user, _, tokenid = auth_user.partition("!")
        starttime = int(at)
        pstart = 1_000_000 + int(at) % 10_000_000
        upid = make_upid(node, self._pid, pstart, starttime, kind, ident, auth_user)
        task = Task(upid, node, self._pid, pstart, starttime, kind, ident, user, tokenid or None)
        self._tasks[upid] = task
        self._order.append(upid)
        return task

    def get(self, upid: str) -> Task | None:
        return self._tasks.get(upid)

    def all(self) -> list[Task]:
        return [self._tasks[u] for u in self._order]
