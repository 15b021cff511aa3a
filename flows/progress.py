"""Progress of long work, shown by whoever runs the flow in this process (the CLI's bars).

Flows and tasks report to the process-wide reporter; with none installed (workers, the UI)
reports go nowhere and the run logs and artifacts tell the story instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from engine import Move


class Reporter(Protocol):
    def steps(self, label: str, done: int, total: int) -> None: ...

    def move(self, move: Move, stage: str) -> None: ...


class Silent:
    def steps(self, label: str, done: int, total: int) -> None:
        return None

    def move(self, move: Move, stage: str) -> None:
        return None


_lock = threading.Lock()
_current: list[Reporter] = [Silent()]


def reporter() -> Reporter:
    return _current[-1]


@contextmanager
def reporting(to: Reporter) -> Iterator[None]:
    with _lock:
        _current.append(to)
    try:
        yield
    finally:
        with _lock:
            _current.remove(to)


def steps(label: str) -> Callable[[int, int], None]:
    """A `(done, total)` callback for one labelled piece of work."""
    current = reporter()
    return lambda done, total: current.steps(label, done, total)
