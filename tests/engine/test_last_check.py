"""The last check before a move runs: would the target, as it is now, still take the guest?"""

from __future__ import annotations

import pytest

from engine import ClusterSnapshot, Policy
from engine.whatif import best_nodes, why_not_now
from tests.engine.builders import GIB, guest, node, nodes, snapshot

POLICY = Policy(memory_reserve=0)

LAST_CHECKS = [
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
        "an anti-affinity group already has a member on pve2",
    ),
    (
        "the guest is pinned to other nodes",
        snapshot(
            nodes("pve1", "pve2", "pve3"),
            [guest(101, "pve1", tags="plb_pin_pve1;plb_pin_pve3")],
        ),
        "plb_pin tag rules out pve2",
    ),
    (
        # 8 + 60 configured vCPUs on 16 CPUs exceed 4 per CPU
        "the target's configured vCPUs would exceed the overcommit cap",
        snapshot(
            nodes("pve1", "pve2"),
            [guest(101, "pve1", vcpus=8), guest(102, "pve2", vcpus=60)],
        ),
        "pve2 would exceed the vCPU overcommit cap (4x)",
    ),
    (
        # 8 + 10 p90 cores exceed 0.9 × 16, but that cap limits balancing, not a planned move
        "a busy target still takes a planned move",
        snapshot(nodes("pve1", "pve2"), [guest(101, "pve1", cpu=8), guest(102, "pve2", cpu=10)]),
        None,
    ),
    (
        "the guest is already on the target",
        snapshot(nodes("pve1", "pve2"), [guest(101, "pve2")]),
        "the guest is already on pve2",
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
]


@pytest.mark.parametrize(
    ("why", "cluster", "expected"), LAST_CHECKS, ids=[c[0] for c in LAST_CHECKS]
)
def test_the_target_is_judged_on_the_cluster_as_it_is_now(
    why: str, cluster: ClusterSnapshot, expected: str | None
) -> None:
    assert why_not_now(cluster, POLICY, 101, "pve2") == expected, why


def test_a_new_guest_is_refused_a_node_for_the_same_reasons():
    # pinned to pve1, whose p90 CPU would reach 10 + 8 > 0.9 × 16 cores
    cluster = snapshot(nodes("pve1", "pve2"), [guest(101, "pve1", cpu=10)])
    places = best_nodes(cluster, POLICY, 8, 8 * GIB, tags=("plb_pin_pve1",), cpu=8)
    assert {p.node: p.why_not for p in places} == {
        "pve1": "predicted p90 CPU on pve1 would exceed 90%",
        "pve2": "plb_pin tag rules out pve2",
    }
