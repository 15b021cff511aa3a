"""The concurrency limits: created on first use, safely when several tasks race to do it."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from tasks.limits import ExecutionLimits, migration_slots, node_limit

LIMITS = ExecutionLimits(
    cluster=8, node=8, slot_timeout=60, task_timeout=60, lease_seconds=60, poll_seconds=1
)


def test_moves_racing_to_create_a_new_nodes_limit_all_get_their_slots(
    prefect_backend: None,
) -> None:
    node = f"new-{uuid.uuid4().hex[:8]}"  # a limit nobody has created yet

    def one_move(i: int) -> str:
        with migration_slots(node, f"other-{i}", LIMITS):
            return node_limit(node)

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(one_move, range(6))) == [node_limit(node)] * 6
