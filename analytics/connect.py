"""Opening a DuckDB file safely: short connections, back-off on lock errors, threads queue.

DuckDB lets one process hold a file read-write, and then every open from another process fails
at once with ``IOException: Could not set lock on file`` (it does not wait). So every unit of
work opens late and closes early, and an open that hits the lock backs off with jitter until a
deadline, then raises :class:`StoreLockedError`. Inside one process a per-file threading lock
makes threads queue (and stops a read-only and a read-write open of the same file meeting in one
process, which DuckDB refuses). Across flow runs, callers additionally hold the Prefect
concurrency slot ``proxflow-store`` around writes; that lives in ``tasks/``, not here.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl


class StoreLockedError(RuntimeError):
    """Another process kept the file locked for longer than the back-off deadline."""


@dataclass(frozen=True)
class Backoff:
    """Retry policy for lock errors: exponential from ``first`` to ``cap``, full jitter."""

    deadline: float = 30.0
    first: float = 0.005
    cap: float = 0.25

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.cap, self.first * 2**attempt))


_locks_guard = threading.Lock()
_locks: dict[Path, threading.RLock] = {}


def path_lock(path: Path) -> threading.RLock:
    """The process-wide lock for one file; every open of that file goes through it."""
    key = path.resolve()
    with _locks_guard:
        return _locks.setdefault(key, threading.RLock())


def _is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def connect(path: Path, *, read_only: bool, backoff: Backoff) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying lock errors with jittered back-off until ``backoff.deadline``."""
    give_up = time.monotonic() + backoff.deadline
    attempt = 0
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise
            left = give_up - time.monotonic()
            if left <= 0:
                mode = "read-only" if read_only else "read-write"
                raise StoreLockedError(
                    f"could not open {path} {mode}: another process kept it locked for "
                    f"{backoff.deadline:g} s ({attempt + 1} attempts). DuckDB allows one "
                    f"writing process per file; last error: {exc}"
                ) from exc
            time.sleep(min(left, backoff.delay(attempt)))
            attempt += 1


@contextmanager
def opened(path: Path, *, read_only: bool, backoff: Backoff) -> Iterator[duckdb.DuckDBPyConnection]:
    """Hold the file's thread lock, open with back-off, yield, and always close."""
    with path_lock(path):
        con = connect(path, read_only=read_only, backoff=backoff)
        try:
            yield con
        finally:
            con.close()


Params = Sequence[Any] | Mapping[str, Any] | None


def fetch_frame(con: duckdb.DuckDBPyConnection, sql: str, params: Params = None) -> pl.DataFrame:
    """Run a query and materialise the whole result as a polars frame (via the Arrow stream)."""
    bound: list[Any] | dict[str, Any] | None = None
    if isinstance(params, Mapping):
        bound = dict(params)
    elif params is not None:
        bound = list(params)
    rel = con.sql(sql, params=bound)
    # pl.DataFrame reads the relation's Arrow C stream: the result is materialised here, so the
    # connection can close right after (duckdb's .pl() would need pyarrow, not installed)
    return pl.DataFrame() if rel is None else pl.DataFrame(rel)


def read_frame(
    path: str | Path,
    sql: str,
    params: Params = None,
    *,
    backoff: Backoff | None = None,
) -> pl.DataFrame:
    """For notebooks: open read-only, run ``sql``, materialise to polars and close at once.

    ``params`` binds ``?``/``$1`` (a sequence) or ``$name`` (a mapping) placeholders.

    Retries while a writer holds the file, so a notebook never blocks the collector for longer
    than one query, and never keeps a connection that would lock writers out.
    """
    with opened(Path(path), read_only=True, backoff=backoff or Backoff()) as con:
        return fetch_frame(con, sql, params)
