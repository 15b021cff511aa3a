"""The Prefect global concurrency limits and the kill switch that guard migrations.

Limits live on the Prefect server, so they hold across threads, flow runs, workers and hosts:

- ``proxflow-migrations``: migrations running cluster-wide;
- ``proxflow-node-<node>``: migrations touching one node, taken for source and target alike;
- ``proxflow-store``: writers of the history file (DuckDB admits one writing process).

Prefect never creates a limit on first use, and ``strict=True`` only raises when *none* of the
named limits exist, so a missing or disabled per-node limit would silently stop per-node
serialization. Every acquisition therefore checks its limits first, creating missing ones
with the configured default and refusing inactive ones. Existing limits are never changed by
a flow: an operator's ``--limit 0`` is the kill switch and must stick. ``proxflow setup`` is
the one place that writes configured values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.variables import Variable

CLUSTER = "proxflow-migrations"
STORE = "proxflow-store"
PAUSE_VARIABLE = "proxflow_pause_migrations"


def node_limit(node: str) -> str:
    return f"proxflow-node-{node}"


@dataclass(frozen=True)
class ExecutionLimits:
    """How many migrations at once, and how long to wait for slots, tasks and leases."""

    cluster: int
    node: int
    slot_timeout: float
    task_timeout: float
    lease_seconds: int
    poll_seconds: float


class LimitError(RuntimeError):
    """A limit exists but cannot serve (disabled), so acting would be unguarded."""


@dataclass(frozen=True)
class LimitState:
    name: str
    limit: int
    active: bool
    active_slots: int
    created: bool = False
    changed: bool = False


def _ensure(name: str, limit: int, *, overwrite: bool) -> LimitState:
    with get_client(sync_client=True) as client:
        try:
            current = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit)
                )
                return LimitState(name, limit, True, 0, created=True)
            except ObjectAlreadyExists:  # another task or worker created it meanwhile
                current = client.read_global_concurrency_limit_by_name(name)
        if overwrite and (current.limit != limit or not current.active):
            client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=limit, active=True)
            )
            return LimitState(name, limit, True, current.active_slots, changed=True)
        return LimitState(name, current.limit, current.active, current.active_slots)


def ensure_limits(
    cluster_limit: int, node_default: int, nodes: Iterable[str], *, overwrite: bool = False
) -> list[LimitState]:
    """Create missing limits; with ``overwrite`` also set existing ones to the given values."""
    states = [
        _ensure(CLUSTER, cluster_limit, overwrite=overwrite),
        _ensure(STORE, 1, overwrite=overwrite),
    ]
    states += [_ensure(node_limit(n), node_default, overwrite=overwrite) for n in sorted(nodes)]
    return states


def pause_reason() -> str | None:
    """Why new migrations must not start now, or None: the kill switch, in either form."""
    if Variable.get(PAUSE_VARIABLE, default=False) is True:
        return f"kill switch: Prefect variable {PAUSE_VARIABLE} is true"
    with get_client(sync_client=True) as client:
        try:
            cluster = client.read_global_concurrency_limit_by_name(CLUSTER)
        except ObjectNotFound:
            return None
    if not cluster.active:
        return f"kill switch: concurrency limit {CLUSTER} is disabled"
    if cluster.limit == 0:
        return f"kill switch: concurrency limit {CLUSTER} is set to 0"
    return None


def set_paused(paused: bool) -> None:
    Variable.set(PAUSE_VARIABLE, paused, overwrite=True)


@contextmanager
def migration_slots(source: str, target: str, limits: ExecutionLimits) -> Iterator[None]:
    """Hold one cluster slot and one slot on each of the two nodes, all or nothing.

    Prefect takes every named slot in one server call or none, so two moves can never each hold
    half of what the other needs.
    """
    names = [CLUSTER, node_limit(source), node_limit(target)]
    states = [_ensure(CLUSTER, limits.cluster, overwrite=False)]
    states += [_ensure(n, limits.node, overwrite=False) for n in names[1:]]
    disabled = [s.name for s in states if not s.active]
    if disabled:
        raise LimitError(
            f"concurrency limit(s) {', '.join(disabled)} are disabled; enable them "
            f"(prefect gcl update NAME --enable) or set the limit to 0 to stop migrations"
        )
    with concurrency(
        names,
        occupy=1,
        strict=True,
        timeout_seconds=limits.slot_timeout,
        lease_duration=limits.lease_seconds,
    ):
        yield


@contextmanager
def store_slot(timeout: float = 600.0) -> Iterator[None]:
    """Queue writers of the history file across processes instead of failing on its lock."""
    _ensure(STORE, 1, overwrite=False)
    with concurrency(STORE, occupy=1, strict=True, timeout_seconds=timeout, lease_duration=60):
        yield
