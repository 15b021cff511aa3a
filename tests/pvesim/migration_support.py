"""Helpers shared by the migration tests: read guests, tasks and events through the APIs."""

from __future__ import annotations

import re
from typing import Any

from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks

from tests.conftest import Control

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def guest(pve: ProxmoxAPI, vmid: int) -> dict[str, Any]:
    """The guest's `/cluster/resources` entry."""
    return next(r for r in pve.cluster.resources.get(type="vm") if r["vmid"] == vmid)


def node(pve: ProxmoxAPI, name: str) -> dict[str, Any]:
    """The node's `/cluster/resources` entry."""
    return next(r for r in pve.cluster.resources.get(type="node") if r["node"] == name)


def migrate(pve: ProxmoxAPI, source: str, vmid: int, kind: str = "qemu", **params: Any) -> str:
    """POST .../migrate on the source node; dashed parameters go in as a dict."""
    return str(getattr(pve.nodes(source), kind)(vmid).migrate.post(**params))


def status(pve: ProxmoxAPI, upid: str) -> dict[str, Any]:
    node_name = Tasks.decode_upid(upid)["node"]
    return dict(pve.nodes(node_name).tasks(upid).status.get())


def log(pve: ProxmoxAPI, upid: str) -> list[str]:
    """The whole task log (limit=0) as text lines."""
    node_name = Tasks.decode_upid(upid)["node"]
    return [line["t"] for line in pve.nodes(node_name).tasks(upid).log.get(start=0, limit=0)]


def run_until_stopped(
    pve: ProxmoxAPI, control: Control, upid: str, step: float = 1.0, limit: float = 600.0
) -> dict[str, Any]:
    """Advance the paused clock in steps until the task has stopped; return its status."""
    waited = 0.0
    while waited <= limit:
        st = status(pve, upid)
        if st["status"] == "stopped":
            return st
        control.advance(step)
        waited += step
    raise AssertionError(f"task {upid} still running after {limit} simulated seconds")


def events_of(control: Control, kind: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in control.events(kind) if all(e.get(k) == v for k, v in match.items())]


def migration_seconds(control: Control, upid: str) -> float:
    """Simulated time between the task's migration_started and migration_finished events."""
    (started,) = events_of(control, "migration_started", upid=upid)
    (finished,) = events_of(control, "migration_finished", upid=upid)
    return float(finished["time"] - started["time"])


def logged_duration(lines: list[str]) -> int:
    """Seconds from the `(duration HH:MM:SS)` of the final success or abort line."""
    found = [m for line in lines if (m := re.search(r"duration (\d\d):(\d\d):(\d\d)\)", line))]
    assert found, f"no duration in log: {lines}"
    h, m, s = (int(x) for x in found[-1].groups())
    return h * 3600 + m * 60 + s
