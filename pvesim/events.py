"""The simulator's own record of what happened: ground truth for tests, never the client's word."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    seq: int
    time: float
    kind: str
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "kind": self.kind, **self.data}


class EventLog:
    def __init__(self) -> None:
        self._events: list[Event] = []

    def add(self, at: float, kind: str, **data: Any) -> Event:
        event = Event(len(self._events) + 1, at, kind, data)
        self._events.append(event)
        return event

    def since(self, seq: int = 0, kind: str | None = None) -> list[Event]:
        return [e for e in self._events[seq:] if kind is None or e.kind == kind]


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    action: Callable[[float], None] = field(compare=False)


class Scheduler:
    """Actions due at simulated instants, run in time order whenever the cluster catches up."""

    def __init__(self) -> None:
        self._heap: list[_Due] = []
        self._seq = itertools.count()

    def at(self, when: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self._heap, _Due(when, next(self._seq), action))

    def run_until(self, now: float) -> int:
        ran = 0
        while self._heap and self._heap[0].at <= now:
            due = heapq.heappop(self._heap)
            due.action(due.at)
            ran += 1
        return ran

    def __len__(self) -> int:
        return len(self._heap)
