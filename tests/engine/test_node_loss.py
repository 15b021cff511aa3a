"""Losing a node: HA restarts its guests elsewhere, so only what binds a guest to the failed
hardware strands it — not the rules that merely stop the balancer from moving it."""

from __future__ import annotations

import pytest

from engine import Guest, Policy
from engine.whatif import lose_node, plan_evacuation
from tests.engine.builders import guest, nodes, snapshot

POLICY = Policy()  # containers may not restart, local disks may not move


LOST_GUESTS = [
    ("an ignored guest still needs a home", guest(101, "pve1", tags="plb_ignore"), False),
    ("a locked guest still needs a home", guest(102, "pve1", lock="backup"), False),
    ("a running container restarts elsewhere", guest(103, "pve1", kind="lxc"), False),
    (
        "a passthrough device stays with the dead node",
        guest(104, "pve1", passthrough=["hostpci0"]),
        True,
    ),
    ("disks on the dead node are gone with it", guest(105, "pve1", local_disk_gib=32), True),
]


@pytest.mark.parametrize(
    ("why", "lost_guest", "stranded"), LOST_GUESTS, ids=[c[0] for c in LOST_GUESTS]
)
def test_a_node_failure_strands_only_guests_tied_to_its_hardware(
    why: str, lost_guest: Guest, stranded: bool
) -> None:
    snap = snapshot(nodes("pve1", "pve2", "pve3"), [lost_guest, guest(200, "pve2")])
    loss = lose_node(snap, POLICY, "pve1")
    assert (len(loss.stranded) == 1) is stranded, why
    assert loss.survivable is not stranded


def test_a_planned_evacuation_still_honours_the_balancers_own_rules() -> None:
    snap = snapshot(
        nodes("pve1", "pve2"),
        [guest(101, "pve1", tags="plb_ignore"), guest(103, "pve1", kind="lxc")],
    )
    evacuation = plan_evacuation(snap, POLICY, "pve1")
    assert evacuation.moves == ()
    assert {s.vmid for s in evacuation.skipped} == {101, 103}


def test_losing_an_unknown_node_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"no node named 'pve9'; nodes are pve1, pve2$"):
        lose_node(snapshot(nodes("pve1", "pve2"), []), POLICY, "pve9")
