"""PVE task ids: `UPID:node:PID:PSTART:STARTTIME:type:id:user:` (hex numbers, trailing colon)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UPID = re.compile(
    r"^UPID:(?P<node>[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?):(?P<pid>[0-9A-Fa-f]{8}):"
    r"(?P<pstart>[0-9A-Fa-f]{8,9}):(?P<starttime>[0-9A-Fa-f]{8}):(?P<type>[^:\s/]+):"
    r"(?P<id>[^:\s/]*):(?P<user>[^:\s/]+):$"
)


@dataclass(frozen=True)
class Upid:
    node: str  # where the task runs: its status is read there
    pid: int
    pstart: int
    starttime: int  # epoch seconds
    type: str  # qmigrate, vzmigrate, hamigrate, ...
    id: str  # the vmid for guest tasks, else empty
    user: str  # as started, token id included (root@pam!proxflow)

    @property
    def vmid(self) -> int | None:
        return int(self.id) if self.id.isdigit() else None


def parse_upid(text: str) -> Upid:
    """Split a UPID; a malformed one raises ValueError naming it."""
    m = _UPID.match(text)
    if m is None:
        raise ValueError(
            f"not a PVE task id: {text!r}; expected UPID:node:pid:pstart:starttime:type:id:user:"
        )
    return Upid(
        node=m["node"],
        pid=int(m["pid"], 16),
        pstart=int(m["pstart"], 16),
        starttime=int(m["starttime"], 16),
        type=m["type"],
        id=m["id"],
        user=m["user"],
    )
