"""The last check before a move runs: would the target, as it is now, still take the guest?"""

from __future__ import annotations

import pytest

from engine import Policy
from engine.whatif import why_not_now
from tests.engine.builders import guest, node, nodes, snapshot

POLICY = Policy(memory_reserve=0)


@pytest.mark.parametrize(
    ("why", "cluster", "expected"),
    [
        (
            "a target with room takes the guest",
            snapshot(nodes("pve1", "pve2"), [guest(101, "pve1", mem_gib=8)]),
            None,
        ),
        (
            # pve2: 16 GiB, 12 used by another plan's guest, so 4 free for an 8 GiB guest
            "another plan's guest filled the target meanwhile",
            snapshot(
                [node("pve1", mem_gib=64), node("pve2", mem_gib=16)],
                [guest(101, "pve1", mem_gib=8), guest(102, "pve2", mem_gib=12)],
            ),
            "pve2 has 4.0 GiB free after its reserve, the guest needs 8.0",
        ),
        (
            "an anti-affine partner arrived on the target",
            snapshot(
                nodes("pve1", "pve2", "pve3"),
                [
                    guest(101, "pve1", tags="plb_anti_affinity_db"),
                    guest(102, "pve2", tags="plb_anti_affinity_db"),
                ],
            ),
            "a placement rule forbids pve2 now (pin, node affinity or anti-affinity)",
        ),
        (
            "the target went offline",
            snapshot([node("pve1"), node("pve2", online=False)], [guest(101, "pve1")]),
            "pve2 is offline",
        ),
        (
            "the target entered maintenance",
            snapshot([node("pve1"), node("pve2", maintenance=True)], [guest(101, "pve1")]),
            "pve2 is in maintenance",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v and not v.startswith("pve") else "",
)
def test_the_target_is_judged_on_the_cluster_as_it_is_now(
    why: str, cluster: object, expected: str | None
) -> None:
    assert why_not_now(cluster, POLICY, 101, "pve2") == expected, why  # type: ignore[arg-type]
