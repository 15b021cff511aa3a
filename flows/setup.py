"""`proxflow setup`: everything the pipeline needs on the Prefect server, created idempotently.

The limits get the configured values (this is the one place that overwrites them), the kill
switch variable is created off but never flipped if it exists, and the process work pool is
created only when missing. Running it twice changes nothing the second time.
"""

from __future__ import annotations

import os

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.variables import Variable

from flows.runtime import connect
from flows.settings import Settings
from tasks.limits import PAUSE_VARIABLE, ensure_limits


def setup(settings: Settings, pool: str = "proxflow") -> list[str]:
    lines: list[str] = []
    if not os.environ.get("PREFECT_API_URL"):
        lines.append(
            "note: PREFECT_API_URL is not set, so this set up the local ephemeral Prefect "
            "database; point it at your Prefect server for workers on other hosts"
        )
    rt = connect(settings)
    nodes = [n.name for n in rt.gateway.inventory().nodes]
    m = settings.migrations
    for state in ensure_limits(m.cluster_limit, m.node_limit, nodes, overwrite=True):
        verb = "created" if state.created else "updated" if state.changed else "unchanged"
        lines.append(f"limit {state.name}: {state.limit} ({verb})")
    if Variable.get(PAUSE_VARIABLE, default=None) is None:
        Variable.set(PAUSE_VARIABLE, False)
        lines.append(f"variable {PAUSE_VARIABLE}: false (created; set true to stop migrations)")
    else:
        value = Variable.get(PAUSE_VARIABLE)
        lines.append(f"variable {PAUSE_VARIABLE}: {value} (unchanged)")
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            lines.append(f"work pool {pool}: exists (unchanged)")
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            lines.append(f"work pool {pool}: created (process)")
    return lines
