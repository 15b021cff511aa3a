"""Writing to the history store from flow runs: one writer process at a time, across hosts.

DuckDB admits one writing process per file and fails the others' opens at once. The store
already backs off on that error; holding the ``proxflow-store`` slot on top makes concurrent
flow runs queue in Prefect instead of spinning against the file lock.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass

import polars as pl

from analytics import Store
from tasks.limits import store_slot


def write(store: Store, table: str, frame: pl.DataFrame, *, upsert: bool = False) -> int:
    return write_many(store, [(table, frame, upsert)])[0]


Slot = Callable[[], AbstractContextManager[object]]


def write_many(
    store: Store, batches: list[tuple[str, pl.DataFrame, bool]], *, slot: Slot = store_slot
) -> list[int]:
    """Write several frames while holding the writer slot once: `(table, frame, upsert)`.

    `slot` makes that slot: the cross-process Prefect one, or e.g. `contextlib.nullcontext`
    where a single process writes (benchmarks, tests).
    """
    if all(frame.is_empty() for _, frame, _ in batches):
        return [0] * len(batches)
    with slot():
        return [
            (store.upsert(t, f) if up else store.append(t, f)) if not f.is_empty() else 0
            for t, f, up in batches
        ]


@dataclass
class MigrationRow:
    """One migration's record, written whole at every step (intent, running, outcome)."""

    id: str
    plan_id: str
    vmid: int
    source: str
    target: str
    upid: str | None = None
    status: str = "intent"  # intent → running → ok | failed | skipped
    started: float | None = None
    finished: float | None = None
    result: str = ""

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [asdict(self)],
            schema={
                "id": pl.String,
                "plan_id": pl.String,
                "vmid": pl.Int64,
                "source": pl.String,
                "target": pl.String,
                "upid": pl.String,
                "status": pl.String,
                "started": pl.Float64,
                "finished": pl.Float64,
                "result": pl.String,
            },
        )


def record_migration(store: Store, row: MigrationRow) -> None:
    write(store, "migrations", row.frame(), upsert=True)


def unfinished_migrations(store: Store, only: str | None = None) -> list[MigrationRow]:
    """Records with an intent but no outcome (all of them, or the one with id `only`).

    Such a record belongs either to a run that died or to one still moving that guest; only
    the slots it holds tell them apart (see `flows.execute.resume_interrupted`).
    """
    return [
        MigrationRow(
            id=r["id"],
            plan_id=r["plan_id"],
            vmid=int(r["vmid"]),
            source=r["source"],
            target=r["target"],
            upid=r["upid"],
            status=r["status"],
            started=r["started"],
            result=r["result"] or "",
        )
        for r in store.unfinished_migrations(only).iter_rows(named=True)
    ]
