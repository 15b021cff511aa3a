"""Waiting for a PVE task to end, and following an HA request to the migration it causes.

`exitstatus` "OK" and "WARNINGS: n" are success (PVE's own `status_is_error` says so); any
other text is a failure, explained by the last lines of the task log. For an HA-managed guest
the POST answers with a `hamigrate` task that only queues the request and ends OK at once; the
HA manager starts the real `qmigrate`/`vzmigrate` on the same node seconds later, so that task
is looked up in the node's task list and followed in turn. If the HA manager has started
nothing `HA_GRACE` seconds (cluster time) after the request and is not moving the guest either
(its HA state is not `migrate`), it declined (a rule forbids the target, the guest is locked):
that is a failure, reported at once instead of holding the caller until its timeout.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.pve.errors import TransientError
from tasks.pve.transport import Transport
from tasks.pve.upid import Upid, parse_upid

FOLLOWED_TYPES = frozenset({"qmigrate", "vzmigrate"})
DETAIL_LINES = 5
HA_GRACE = 120.0  # the CRM acts every 10 s and the LRM soon after; a minute or two is plenty
MOVING = frozenset({"migrate", "relocate"})
_WARNINGS = re.compile(r"^WARNINGS: (\d+)$")


@dataclass(frozen=True)
class TaskOutcome:
    upid: str  # the task waited for
    ok: bool
    exitstatus: str | None  # None: still running when the wait timed out
    warnings: int
    followed: tuple[str, ...]  # the real migration(s) an HA request led to
    started: float
    finished: float | None  # cluster time the end was seen; None when timed out
    detail: str = ""  # why it failed: the task log's last lines

    @property
    def timed_out(self) -> bool:
        return self.exitstatus is None


def is_success(exitstatus: str) -> bool:
    return exitstatus == "OK" or _WARNINGS.match(exitstatus) is not None


def _status(api: Transport, task: Upid, upid: str) -> dict[str, Any] | None:
    """The task's status, or None while its node cannot answer (a reboot: keep waiting)."""
    try:
        status = api.get_once(f"nodes/{task.node}/tasks/{upid}/status")
    except TransientError:
        return None
    return status if isinstance(status, dict) else None


def _follower(api: Transport, request: Upid, upid: str) -> str | None:
    """The migration task HA started for the guest of `request`, once it exists."""
    try:
        items = api.get_once(
            f"nodes/{request.node}/tasks", vmid=request.id, source="all", limit=100
        )
    except TransientError:
        return None
    found = [
        (int(t.get("starttime") or 0), str(t["upid"]))
        for t in items
        if isinstance(t, dict)
        and t.get("type") in FOLLOWED_TYPES
        and t.get("upid") != upid
        and int(t.get("starttime") or 0) >= request.starttime
    ]
    return min(found)[1] if found else None


def _detail(api: Transport, task: Upid, upid: str) -> str:
    try:
        lines = api.get(f"nodes/{task.node}/tasks/{upid}/log", start=0, limit=0)
    except TransientError as exc:
        return f"task log unavailable: {exc.message}"
    texts = [str(x.get("t", "")) for x in lines if isinstance(x, dict)]
    return " | ".join(texts[-DETAIL_LINES:])


def wait(
    api: Transport,
    upid: str,
    *,
    timeout: float,
    poll: float,
    now: Callable[[], float],
    hastate: Callable[[int], str | None],
    on_progress: Callable[[str, str], None] | None = None,
) -> TaskOutcome:
    """Poll until the task (and any migration it led to) ends, or `timeout` seconds pass."""
    first = parse_upid(upid)
    deadline = time.monotonic() + timeout
    current, current_id = first, upid
    followed: list[str] = []
    ha_since: float | None = None  # cluster time the HA request was seen done
    while True:
        if ha_since is not None:
            nxt = _follower(api, current, current_id)
            if nxt is not None:
                followed.append(nxt)
                current, current_id, ha_since = parse_upid(nxt), nxt, None
                continue
            state = "waiting for the HA manager to start the migration"
            at = now()
            if at - ha_since > HA_GRACE and current.vmid is not None:
                ha = hastate(current.vmid)
                if ha not in MOVING:
                    return TaskOutcome(
                        upid=upid,
                        ok=False,
                        exitstatus="no migration",
                        warnings=0,
                        followed=tuple(followed),
                        started=float(first.starttime),
                        finished=at,
                        detail=(
                            f"the HA manager started no migration within {HA_GRACE:g} s of "
                            f"the request (HA state {ha}); check the HA rules and the guest's lock"
                        ),
                    )
        else:
            status = _status(api, current, current_id)
            if status is not None and status.get("status") == "stopped":
                exitstatus = str(status.get("exitstatus") or "unexpected status")
                ok = is_success(exitstatus)
                if ok and current.type == "hamigrate":
                    ha_since = now()
                    continue
                m = _WARNINGS.match(exitstatus)
                return TaskOutcome(
                    upid=upid,
                    ok=ok,
                    exitstatus=exitstatus,
                    warnings=int(m[1]) if m else 0,
                    followed=tuple(followed),
                    started=float(first.starttime),
                    finished=now(),
                    detail="" if ok else _detail(api, current, current_id),
                )
            state = "running" if status is not None else "node not answering"
        if on_progress is not None:
            on_progress(current_id, state)
        if time.monotonic() >= deadline:
            return TaskOutcome(
                upid=upid,
                ok=False,
                exitstatus=None,
                warnings=0,
                followed=tuple(followed),
                started=float(first.starttime),
                finished=None,
                detail=f"{state} after {timeout:g} s",
            )
        time.sleep(poll)
