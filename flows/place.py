"""The `place` flow: which node should a new guest of this size and these tags go to?

Answers with every node ranked (feasible first, lowest resulting imbalance first) and, for the
others, why not; the same hard rules as the planner, on the forecast load.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.artifacts import create_table_artifact
from pydantic import Field

from engine import best_nodes
from engine.policy import parse_size
from engine.whatif import Placement
from flows.observe import observe
from flows.runtime import connect, current_settings

Tag = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.+-]+$")]


def memory_bytes(memory: str | int) -> int:
    """Bytes from '8GiB', '512MiB' or a number of bytes; a clear error otherwise."""
    try:
        size = parse_size(memory)
    except ValueError as exc:
        raise ValueError(f"memory: {exc}, got {memory!r}") from None
    if size <= 0:
        raise ValueError(f"memory: must be above 0, got {memory!r}")
    return size


@flow(name="place")
def place(
    cores: Annotated[int, Field(ge=1, le=1024)],
    memory: str,
    tags: list[Tag] | None = None,
    pool: str | None = None,
) -> list[Placement]:
    """Rank the nodes for a new guest with ``cores`` vCPUs and ``memory`` (e.g. '8GiB')."""
    size = memory_bytes(memory)
    rt = connect(current_settings())
    obs = observe(rt)
    policy = rt.settings.balance_policy()
    ranked = best_nodes(obs.snapshot, policy, cores, size, tuple(tags or ()), pool=pool)
    create_table_artifact(
        key="proxflow-placement",
        description=f"best node for a guest with {cores} vCPUs and {memory}",
        table=[
            {
                "rank": i,
                "node": p.node,
                "feasible": p.feasible,
                "load after": round(p.load_after, 4),
                "imbalance after": round(p.imbalance_after, 4),
                "why not": p.why_not,
            }
            for i, p in enumerate(ranked, 1)
        ],
    )
    return ranked
