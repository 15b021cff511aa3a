"""The deeper balancing search on small clusters: ejection pairs and the pilot.

All nodes have 64 cores and 256 GiB, and every guest uses c cores and 4c GiB, so its share of
a node's load is c / 64 on both resources: guests are written by that share (`_g`). Locked
guests are ballast that keeps a node's load where the table needs it. Migration costs are
made small (0.0001 per GiB) so that the shapes, not the costs, decide.
"""

from __future__ import annotations

import pytest

from engine.plan import Reason
from tests.engine.builders import apply, guest, imbalance, node, policy, run, snapshot, targets

NODES = tuple(node(n, 64, 256) for n in ("pve1", "pve2", "pve3"))


def _g(vmid: int, where: str, share: float, **kw):
    cores = share * 64
    return guest(vmid, where, cpu=cores, mem_gib=4 * cores, **kw)


# -- ejection pairs -------------------------------------------------------------------------------
# pve1 0.64 (guest 101: 0.40), pve2 0.32 (guest 201 and ballast), pve3 0.26; mean 0.4067.
# 101 alone overfills every node: pve2 would end at 0.72, pve3 at 0.66, both above pve1's 0.64.
# 101 to pve2 with 201 moving on to pve3 leaves 0.24 / 0.56 / 0.42 (MAD 0.111 from 0.156).
PAIRS = [
    (0.16, None, {101: "pve2", 201: "pve3"}, "a big guest goes where a small one moves on"),
    (0.16, "backup", {}, "no pair when the guest that would make room is locked"),
    (0.06, None, {}, "no pair that leaves the middle node hotter than the source was"),
]


@pytest.mark.parametrize(("share", "lock", "expected", "_"), PAIRS, ids=[p[3] for p in PAIRS])
def test_an_ejection_pair_moves_a_guest_no_single_move_can_place(share, lock, expected, _):
    snap = snapshot(
        NODES,
        [
            _g(101, "pve1", 0.40),
            _g(102, "pve1", 0.24, lock="backup"),
            # pinned to pve2 and pve3: it cannot simply change places with 101
            _g(201, "pve2", share, tags="plb_pin_pve2;plb_pin_pve3", lock=lock),
            _g(202, "pve2", 0.32 - share, lock="backup"),
            _g(301, "pve3", 0.26, lock="backup"),
        ],
    )
    pol = policy(migration_cost_per_gib=0.0001)
    result = run(snap, pol)
    assert targets(result) == expected
    if expected:
        assert all(m.reason is Reason.BALANCE for m in result.moves)
        by_vmid = {m.vmid: m for m in result.moves}
        assert "with guest 201 moving on from pve2" in by_vmid[101].detail
        assert "making room on pve2 for guest 101" in by_vmid[201].detail
        assert result.imbalance_after == pytest.approx(1 / 9, abs=1e-6)
        assert imbalance(apply(snap, result), pol) == pytest.approx(result.imbalance_after)
    else:
        assert "no balancing move" in result.note


# -- the pilot ------------------------------------------------------------------------------------
# Everything starts on pve1 (0.87): guests 102 (0.19), 101 (0.15), 103 (0.07), affinity group
# 'app' (901 0.12 + 902 0.08, which move together) and 0.26 of ballast; mean 0.29.
# In order of gain per migration: 102 to pve2, 101 and 103 to pve3. With 4 moves per node pve1
# has then one move left and the group needs two: 0.46 / 0.19 / 0.22, MAD 0.113. The pilot sees
# that the group, which gains most in one step, ends better: 102 and 101 to pve2, the group to
# pve3: 0.33 / 0.34 / 0.20, MAD 0.06. With 10 moves per node the group still fits after the
# singles, 101 moving on from pve3 to pve2 to make room for it: 0.26 / 0.34 / 0.27, MAD 0.033.
PILOT = [
    (4, {102: "pve2", 101: "pve2", 901: "pve3", 902: "pve3"}, 0.06, "when the budget is tight"),
    (
        10,
        {102: "pve2", 101: "pve2", 103: "pve3", 901: "pve3", 902: "pve3"},
        0.1 / 3,
        "with room in the budget",
    ),
]


@pytest.mark.parametrize(("per_node", "expected", "after", "_"), PILOT, ids=[p[3] for p in PILOT])
def test_the_pilot_moves_a_group_that_per_migration_order_would_leave_behind(
    per_node, expected, after, _
):
    snap = snapshot(
        NODES,
        [
            _g(101, "pve1", 0.15),
            _g(102, "pve1", 0.19),
            _g(103, "pve1", 0.07),
            _g(104, "pve1", 0.26, lock="backup"),
            _g(901, "pve1", 0.12, tags="plb_affinity_app"),
            _g(902, "pve1", 0.08, tags="plb_affinity_app"),
        ],
    )
    pol = policy(migration_cost_per_gib=0.0001, target_imbalance=0.0, max_moves_per_node=per_node)
    result = run(snap, pol)
    assert targets(result) == expected
    assert result.imbalance_after == pytest.approx(after, abs=1e-6)
    assert all(m.reason is Reason.BALANCE for m in result.moves)
    assert run(snap, pol) == result
