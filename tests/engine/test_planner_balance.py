"""Balancing: a move is made only when it gains more than its cost plus the margin, leaves its
target cooler than its source was, fits the target's p90 memory (minus reserve), CPU
overcommit and CPU load caps, and stays within the budgets and cooldowns.

Loads in comments: a node's score is 0.5 × CPU share + 0.5 × memory share (predicted means);
imbalance is the mean absolute deviation (MAD) of the scores; a move's gain is the total
deviation it removes (N × ΔMAD) and its cost is migration_cost_per_gib × GiB moved (local
disks count local_disk_cost_factor GiB per GiB).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.budget import Budget
from engine.plan import Reason
from engine.policy import Policy
from tests.engine.builders import (
    GIB,
    MIN,
    apply,
    forecast,
    guest,
    imbalance,
    mem_p90,
    moved,
    node,
    nodes,
    placement,
    policy,
    run,
    scores,
    skips,
    snapshot,
    targets,
    unlimited,
)

THREE = nodes("pve1", "pve2", "pve3")

# -- gain against cost and margin -----------------------------------------------------------------


def _four_against_two(disk_gib):
    # pve1: 4 × (1 core, 4 GiB) = 4 × (1/32 + 4/128) = 0.25; pve2: 2 of them = 0.125.
    # MAD 0.0625; one move leaves 0.1875 on both: MAD 0, gain N × ΔMAD = 2 × 0.0625 = 0.125
    return snapshot(
        nodes("pve1", "pve2"),
        [
            *(guest(v, "pve1", local_disk_gib=disk_gib) for v in (101, 102, 103, 104)),
            *(guest(v, "pve2") for v in (201, 202)),
        ],
    )


MARGIN = [
    (0, 0.12, 1, "gain 0.125 - cost 4 * 0.001 = 0.121 beats a 0.12 margin"),
    (0, 0.122, 0, "net 0.121 does not beat a 0.122 margin"),
    (40, 0.11, 1, "with 40 GiB local disk the cost is (4 + 0.25 * 40) * 0.001 = 0.014: 0.111"),
    (40, 0.112, 0, "net 0.111 with local disks does not beat a 0.112 margin"),
]


@pytest.mark.parametrize(("disk", "margin", "count", "_"), MARGIN, ids=[c[3] for c in MARGIN])
def test_a_move_must_gain_more_than_its_cost_plus_the_margin(disk, margin, count, _):
    pol = policy(margin=margin, migration_cost_per_gib=0.001, allow_local_disks=True)
    result = run(_four_against_two(disk), pol)
    assert len(result.moves) == count
    if count:
        move = result.moves[0]
        assert move.reason is Reason.BALANCE
        assert move.gain == pytest.approx(0.125)
        assert move.cost == pytest.approx(0.001 * (4 + 0.25 * disk))
    else:
        assert "no move gains more than its cost plus the margin" in result.note


def test_nothing_moves_on_a_balanced_cluster():
    snap = snapshot(THREE, [guest(v, n) for v, n in ((101, "pve1"), (201, "pve2"), (301, "pve3"))])
    result = run(snap)
    assert result.moves == ()
    assert result.note.startswith("balanced")


def test_nothing_moves_while_the_imbalance_is_within_the_target():
    # MAD 0.0625 (see above) is within a 0.07 target
    result = run(_four_against_two(0), policy(target_imbalance=0.07))
    assert result.moves == ()
    assert result.note.startswith("balanced")


def test_balancing_goes_on_until_the_imbalance_is_within_the_target():
    # 8 guests of 0.0625 on pve1 (0.5), three empty nodes: MAD 0.1875 at the start
    snap = snapshot(
        nodes("pve1", "pve2", "pve3", "pve4"),
        [guest(v, "pve1", cpu=1, mem_gib=4) for v in range(101, 109)],
    )
    pol = unlimited()
    result = run(snap, pol)
    assert result.imbalance_before == pytest.approx(0.1875)
    assert result.imbalance_after <= pol.target_imbalance
    assert imbalance(apply(snap, result), pol) == pytest.approx(result.imbalance_after)


# -- the target's post-move load ---------------------------------------------------------------

POST_MOVE = [
    (
        (8, 32),
        {},
        # X scores 0.05 on the 64-core 256 GiB pve1 (0.3 with Y) but 0.4 on the small pve2:
        # MAD would halve (0.15 -> 0.075) yet pve2 would end hotter (0.4) than pve1 was (0.3)
        "a move that lowers the MAD but leaves the target hotter than the source is refused",
    ),
    (
        (16, 64),
        {101: "pve2"},
        # on a 16-core 64 GiB pve2 X scores 0.2 < 0.3
        "the same move to a larger target that ends cooler than the source is made",
    ),
]


@pytest.mark.parametrize(("size", "expected", "_"), POST_MOVE, ids=[c[2] for c in POST_MOVE])
def test_the_target_ends_cooler_than_the_source_was(size, expected, _):
    snap = snapshot(
        [node("pve1", 64, 256), node("pve2", *size)],
        [
            guest(101, "pve1", cpu=3.2, mem_gib=12.8),  # X: 0.025 + 0.025 = 0.05 on pve1
            guest(102, "pve1", cpu=16, mem_gib=64),  # Y: 0.25 on pve1, too big for pve2
        ],
    )
    result = run(snap)
    assert targets(result) == expected
    if not expected:
        assert "leaves its target cooler" in result.note
    before = scores(snap, Policy())
    for move in result.moves:
        after = scores(apply(snap, result), Policy())
        assert after[move.target] < before[move.source]


# -- capacity ------------------------------------------------------------------------------------


def _p90_cluster(z_p90_gib, pve2_reserve_gib=None):
    # pve1: 101 and 102 (4 cores, 8 GiB) = 0.25 + 0.125 = 0.375; pve3: 2 cores 8 GiB = 0.125;
    # pve2: 201 idle, 8 GiB mean = 0.0625, the coolest. Moving 101 (0.1875) to pve2 removes a
    # total deviation of 0.25, to pve3 0.125: pve2 is the choice whenever it fits.
    # 101's p90 is 10 GiB; its mean (8 GiB) plus 201's mean (8 GiB) fits pve2 by far.
    return snapshot(
        [node("pve1"), node("pve2", reserve_gib=pve2_reserve_gib), node("pve3")],
        [
            guest(101, "pve1", cpu=4, mem_gib=8),
            guest(102, "pve1", cpu=4, mem_gib=8),
            guest(201, "pve2", cpu=0, mem_gib=8),
            guest(301, "pve3", cpu=2, mem_gib=8),
        ],
        forecasts=[
            forecast(101, 4, 8, mem_p90_gib=10),
            forecast(102, 4, 8, mem_p90_gib=10),
            forecast(201, 0, 8, mem_p90_gib=z_p90_gib),
        ],
    )


P90 = [
    (52, None, Policy(), "pve2", "a p90 of 52 + 10 = 62 GiB fits 64 - 2 reserve exactly"),
    (
        52.5,
        None,
        Policy(),
        "pve3",
        "a p90 of 52.5 + 10 = 62.5 GiB overflows 62 though the mean fits",
    ),
    (52, 4, Policy(), "pve3", "the node's own 4 GiB reserve leaves 60 GiB, too little for 62"),
    (
        52,
        None,
        policy(node_reserve={"pve2": "4GiB"}),
        "pve3",
        "a per-node reserve in the policy leaves 60 GiB, too little for 62",
    ),
    (
        53,
        None,
        policy(memory_reserve="1GiB"),
        "pve2",
        "a 1 GiB default reserve leaves 63 GiB, enough for 53 + 10",
    ),
    (
        53,
        1,
        policy(memory_reserve="8GiB", node_reserve={"pve2": "8GiB"}),
        "pve2",
        "the node's own reserve beats the policy's",
    ),
]


@pytest.mark.parametrize(("z", "own", "pol", "target", "_"), P90, ids=[c[4] for c in P90])
def test_memory_fits_on_the_p90_forecast_with_the_reserve(z, own, pol, target, _):
    snap = _p90_cluster(z, own)
    # one move: the first choice is the point here (later exchanges may refine it)
    result = run(snap, replace(pol, max_moves=1))
    assert targets(result)[101] == target
    if target != "pve2":
        # 301 (8 GiB p90) may still go there later: 52.5 + 8 fits; a 10 GiB one never does
        assert all(t != "pve2" for v, t in targets(result).items() if v in (101, 102))


def test_a_guest_whose_p90_fits_nowhere_stays_on_a_hot_node():
    # 30 GiB p90 on top of 40 GiB fits neither 62 GiB node; only 101 could move
    snap = snapshot(
        THREE,
        [
            guest(101, "pve1", cpu=8, mem_gib=4),
            guest(201, "pve2", cpu=0, mem_gib=40),
            guest(301, "pve3", cpu=0, mem_gib=40),
        ],
        forecasts=[forecast(101, 8, 4, mem_p90_gib=30)],
    )
    assert run(snap).moves == ()


def test_no_move_lands_on_a_node_whose_p90_memory_it_overfills():
    # pve2 (32 GiB, 30 usable) already holds 38 GiB; 101 may leave it, but nothing may arrive:
    # a 38 GiB guest sent back in exchange leaves pve2 at 38 > 30 GiB. pve4's CPU cap
    # (3 + 2 + 4 = 9 > 0.9 × 8) keeps 101 from simply moving there on its own.
    snap = snapshot(
        [node("pve1", 8, 32), node("pve2", 8, 32), node("pve3", 8, 32), node("pve4", 8, 256)],
        [
            guest(101, "pve2", cpu=4, mem_gib=38),
            guest(201, "pve1", cpu=4, mem_gib=24),
            guest(301, "pve3", cpu=4, mem_gib=24),
            guest(401, "pve4", cpu=2, mem_gib=38),
            guest(402, "pve4", cpu=3, mem_gib=1),
        ],
    )
    result = run(snap)
    after = mem_p90(apply(snap, result))
    usable = {n.name: n.memory - 2 * GIB for n in snap.nodes}
    # the only way to cool pve2 is the overfilling exchange, so nothing may move
    assert result.moves == ()
    for m in result.moves:
        assert after[m.target] <= usable[m.target], m


OVERCOMMIT = [
    (1.0, True, "pve3", "14 + 4 vCPUs exceed 1.0 * 16 CPUs on pve2, so pve3 is chosen"),
    (1.125, True, "pve2", "14 + 4 vCPUs fit 1.125 * 16 CPUs on pve2 exactly"),
    (1.0, False, "pve2", "a stopped guest's vCPUs do not count"),
]


@pytest.mark.parametrize(
    ("cap", "running", "target", "_"), OVERCOMMIT, ids=[c[3] for c in OVERCOMMIT]
)
def test_the_cpu_overcommit_cap_counts_configured_vcpus(cap, running, target, _):
    snap = snapshot(
        THREE,
        [
            guest(101, "pve1", cpu=4, mem_gib=8, vcpus=4),
            guest(102, "pve1", cpu=4, mem_gib=8, vcpus=4),
            guest(201, "pve2", cpu=0, mem_gib=8, vcpus=14, running=running),
            guest(301, "pve3", cpu=2, mem_gib=8, vcpus=2),
        ],
    )
    assert targets(run(snap, policy(cpu_overcommit=cap)))[101] == target


CPU_LOAD = [
    (0.9, False, "pve3", "a p90 of 11 + 4 = 15 cores exceeds 0.9 * 16 = 14.4 on pve2"),
    (1.0, False, "pve2", "15 cores fit a cap of 1.0 * 16"),
    (0.9, True, "pve2", "the CPU load cap limits balancing, not an evacuation"),
]


@pytest.mark.parametrize(("cap", "evac", "target", "_"), CPU_LOAD, ids=[c[3] for c in CPU_LOAD])
def test_the_cpu_load_cap_uses_the_p90_cpu_forecast(cap, evac, target, _):
    # pve2's guest averages 0.5 cores (cool) but peaks at 11 (p90)
    snap = snapshot(
        [node("pve1", maintenance=evac), node("pve2"), node("pve3")],
        [
            guest(101, "pve1", cpu=4, mem_gib=8),
            guest(102, "pve1", cpu=4, mem_gib=8),
            guest(201, "pve2", cpu=0.5, mem_gib=8),
            guest(301, "pve3", cpu=2, mem_gib=8),
        ],
        forecasts=[forecast(201, 0.5, 8, cpu_p90=11)],
    )
    assert targets(run(snap, policy(max_cpu_load=cap)))[101] == target


# Memory alone decides the load (CPU weight 0). pve1 holds 101 (1 core, 40 GiB) and locked
# ballast 102 (8 cores, 8 GiB): 48 of 64 GiB; pve2 holds 201 (8 GiB): 0.75 against 0.125.
# 101 alone would leave pve2 as hot as pve1 was, so only exchanging 101 and 201 pays
# (0.25 / 0.625). Both nodes of 16 CPUs and 62 usable GiB must still fit afterwards.
SWAP_CAPS = [
    (5, None, None, {101: "pve2", 201: "pve1"}, "an exchange that fits both nodes is made"),
    (8, None, None, {}, "no exchange that lifts the source's p90 CPU to 16 > 0.9 * 16"),
    (5, (15, 40), None, {}, "no exchange that lifts the target's p90 CPU to 15 > 0.9 * 16"),
    (5, None, 60, {}, "no exchange that lifts the source's p90 memory to 68 > 62 GiB"),
    (5, (1, 70), None, {}, "no exchange that lifts the target's p90 memory to 70 > 62 GiB"),
]


@pytest.mark.parametrize(
    ("cpu_201", "p90_101", "mem90_201", "expected", "_"), SWAP_CAPS, ids=[c[4] for c in SWAP_CAPS]
)
def test_an_exchange_leaves_neither_node_above_its_cpu_load_or_memory_cap(
    cpu_201, p90_101, mem90_201, expected, _
):
    forecasts = []
    if p90_101 is not None:
        forecasts.append(forecast(101, 1, 40, cpu_p90=p90_101[0], mem_p90_gib=p90_101[1]))
    if mem90_201 is not None:
        forecasts.append(forecast(201, cpu_201, 8, mem_p90_gib=mem90_201))
    snap = snapshot(
        nodes("pve1", "pve2"),
        [
            guest(101, "pve1", cpu=1, mem_gib=40),
            guest(102, "pve1", cpu=8, mem_gib=8, lock="backup"),
            guest(201, "pve2", cpu=cpu_201, mem_gib=8),
        ],
        forecasts=forecasts,
    )
    pol = policy(cpu_weight=0)
    result = run(snap, pol)
    assert targets(result) == expected
    after = apply(snap, result)
    cpu90 = {n: 0.0 for n in ("pve1", "pve2")}
    for g in after.guests:
        cpu90[g.node] += after.forecast(g.vmid).cpu_p90
    mem90 = mem_p90(after)
    for m in result.moves:
        assert cpu90[m.target] <= 0.9 * 16, m
        assert mem90[m.target] <= 62 * GIB, m


def test_an_exchange_may_relieve_a_node_already_above_its_cpu_load_cap():
    # as above, with the ballast peaking at 14 cores: pve1 is at 15 > 14.4 before the exchange
    # and 14.5 after it, still over the cap but less loaded, so the exchange is no worse for it
    snap = snapshot(
        nodes("pve1", "pve2"),
        [
            guest(101, "pve1", cpu=1, mem_gib=40),
            guest(102, "pve1", cpu=8, mem_gib=8, lock="backup"),
            guest(201, "pve2", cpu=0.5, mem_gib=8),
        ],
        forecasts=[forecast(102, 8, 8, cpu_p90=14)],
    )
    assert targets(run(snap, policy(cpu_weight=0))) == {101: "pve2", 201: "pve1"}


# -- budgets -------------------------------------------------------------------------------------


def _evacuation(count=5, others=("pve2", "pve3", "pve4")):
    return snapshot(
        [node("pve1", maintenance=True), *nodes(*others)],
        [guest(v, "pve1") for v in range(101, 101 + count)],
    )


BUDGETS = [
    (_evacuation(), {"max_moves": 2}, 2, Reason.BUDGET_RUN, "max_moves caps the moves per run"),
    (_evacuation(), {"max_moves": 0}, 0, Reason.BUDGET_RUN, "max_moves 0 moves nothing"),
    (
        _evacuation(),
        {"max_moves_per_node": 3},
        3,
        Reason.BUDGET_NODE,
        "the source node takes part in every move and stops at max_moves_per_node",
    ),
    (
        _evacuation(3, others=("pve2",)),
        {"max_moves_per_node": 2},
        2,
        Reason.BUDGET_NODE,
        "a single target node stops at max_moves_per_node too",
    ),
]


@pytest.mark.parametrize(
    ("snap", "limits", "count", "reason", "_"), BUDGETS, ids=[c[4] for c in BUDGETS]
)
def test_budgets_hold_even_for_repairs(snap, limits, count, reason, _):
    result = run(snap, policy(**limits))
    assert len(result.moves) == count
    left = {g.vmid for g in snap.guests} - set(targets(result))
    assert skips(result) == {v: reason for v in left}


def test_balancing_stops_at_the_per_node_budget_and_says_so():
    snap = snapshot(
        nodes("pve1", "pve2", "pve3", "pve4"),
        [guest(v, "pve1", cpu=2, mem_gib=8) for v in range(101, 107)],
    )
    result = run(snap, policy(max_moves_per_node=2))
    assert len(result.moves) == 2
    assert "pve1 reached the budget of 2 moves per node" in result.note


def test_balancing_stops_at_the_run_budget_and_says_so():
    snap = snapshot(
        nodes("pve1", "pve2", "pve3", "pve4"),
        [guest(v, "pve1", cpu=2, mem_gib=8) for v in range(101, 107)],
    )
    result = run(snap, policy(max_moves=1))
    assert len(result.moves) == 1
    assert "budget of 1 moves per run" in result.note


NOW = 10_000_000.0

COOLDOWN = [
    ([], 60, 2, 0, "a guest never moved has no cooldown"),
    ([30], 60, 2, 30, "one move 30 min ago leaves 60 - 30 = 30 min"),
    ([90], 60, 2, 0, "one move 90 min ago is past a 60 min cooldown"),
    ([90, 300], 60, 2, 30, "a second move in the week doubles the window: 120 - 90 = 30 min"),
    ([90, 300, 600], 60, 2, 150, "a third quadruples it: 240 - 90 = 150 min"),
    ([90, 300, 600], 60, 3, 450, "back-off 3 with three moves: 60 * 9 - 90 = 450 min"),
    ([90, 8 * 24 * 60], 60, 2, 0, "moves older than a week do not lengthen the cooldown"),
    ([90, 300], 60, 1, 0, "back-off 1 keeps the window at 60 min"),
    ([5], 0, 2, 0, "a zero cooldown never holds a guest back"),
]


@pytest.mark.parametrize(
    ("ago", "minutes", "backoff", "left", "_"), COOLDOWN, ids=[c[4] for c in COOLDOWN]
)
def test_cooldown_with_back_off_for_repeat_movers(ago, minutes, backoff, left, _):
    history = tuple(moved(101, "pve1", "pve2", a, NOW) for a in ago)
    budget = Budget(policy(cooldown_minutes=minutes, cooldown_backoff=backoff), history, NOW)
    assert budget.cooldown_left(101) == pytest.approx(left * MIN)


PLAN_COOLDOWN = [
    ([], 101, "without history the first of two equal guests moves"),
    ([30], 102, "a guest that moved 30 min ago is passed over for its twin"),
    ([90], 101, "a guest that moved once 90 min ago may move again"),
    ([90, 200], 102, "a repeat mover waits twice as long: 120 min"),
]


@pytest.mark.parametrize(("ago", "mover", "_"), PLAN_COOLDOWN, ids=[c[2] for c in PLAN_COOLDOWN])
def test_balancing_honours_the_cooldown(ago, mover, _):
    # pve1: 2 × 0.125 = 0.25 with pve2 and pve3 empty: exactly one move (see test_planner_repairs)
    snap = snapshot(
        THREE,
        [guest(101, "pve1", cpu=2, mem_gib=8), guest(102, "pve1", cpu=2, mem_gib=8)],
        history=[moved(101, "pve2", "pve1", a, NOW) for a in ago],
        now=NOW,
    )
    result = run(snap)
    assert list(targets(result)) == [mover]
    if mover == 102:
        assert skips(result)[101] is Reason.COOLDOWN


def test_a_maintenance_evacuation_ignores_the_cooldown():
    snap = snapshot(
        [node("pve1", maintenance=True), node("pve2")],
        [guest(101, "pve1")],
        history=[moved(101, "pve2", "pve1", 1, NOW)],
        now=NOW,
    )
    assert targets(run(snap)) == {101: "pve2"}


# -- the plan's own numbers ----------------------------------------------------------------------


def _mixed():
    return snapshot(
        [node("pve1", 32, 128), node("pve2"), node("pve3", 8, 32), node("pve4", maintenance=True)],
        [
            guest(101, "pve1", cpu=6, mem_gib=20),
            guest(102, "pve1", cpu=3, mem_gib=12, tags="plb_anti_affinity_a"),
            guest(103, "pve1", cpu=2, mem_gib=16, tags="plb_anti_affinity_a"),
            guest(104, "pve1", cpu=5, mem_gib=6, tags="plb_affinity_b"),
            guest(105, "pve1", cpu=1, mem_gib=2, tags="plb_affinity_b"),
            guest(201, "pve2", cpu=1, mem_gib=8),
            guest(301, "pve3", cpu=0.5, mem_gib=2, tags="plb_pin_pve3"),
            guest(401, "pve4", cpu=1, mem_gib=4),
        ],
        forecasts=[forecast(101, 7, 22, cpu_p90=9, mem_p90_gib=26)],
    )


def test_the_same_input_gives_the_same_plan():
    snap, pol = _mixed(), unlimited()
    assert run(snap, pol) == run(snap, pol)


def test_the_plan_s_loads_and_imbalance_match_the_placement_it_produces():
    snap, pol = _mixed(), unlimited()
    result = run(snap, pol)
    after = apply(snap, result)
    expected = scores(after, pol)
    assert {x.node: x.score for x in result.loads_after} == pytest.approx(expected)
    assert result.imbalance_after == pytest.approx(imbalance(after, Policy(maintenance_nodes=())))
    mem = {x.node: x.mem_p90 for x in result.loads_after}
    for n in ("pve1", "pve2", "pve3", "pve4"):
        held = sum(
            after.forecast(g.vmid).mem_p90 for g in after.guests if placement(after)[g.vmid] == n
        )
        assert mem[n] == pytest.approx(held)
    assert result.gib_moved == pytest.approx(
        sum(m.mem_bytes + m.disk_bytes for m in result.moves) / GIB
    )


def test_a_repair_that_had_no_room_is_made_once_balancing_has_made_room():
    # 101 is pinned to pve1, which holds 24 + 24 + 12 = 60 GiB: 60 + 8 > 62, no room at first.
    # pve1 is also the hottest node (12/16 × 0.5 + 60/64 × 0.5 = 0.84), so balancing moves
    # guests off it, after which 36 + 8 GiB fits. The plan should use that room; otherwise the
    # next run makes the repair (and more moves) the plan could have made.
    snap = snapshot(
        THREE,
        [
            guest(101, "pve2", cpu=1, mem_gib=8, tags="plb_pin_pve1"),
            guest(102, "pve1", cpu=4, mem_gib=24),
            guest(103, "pve1", cpu=4, mem_gib=24),
            guest(104, "pve1", cpu=4, mem_gib=12),
        ],
    )
    pol = unlimited()
    first = run(snap, pol)
    assert placement(apply(snap, first))[101] == "pve1", first
    assert run(apply(snap, first), pol).moves == ()


def test_the_budget_is_charged_on_the_plan_as_it_stands_so_a_dropped_move_gives_its_share_back():
    budget = Budget(policy(max_moves=2, max_moves_per_node=2), (), NOW)
    two = {101: ("pve1", "pve2"), 102: ("pve1", "pve3")}
    # a third move is over the run's budget of 2 ...
    refused = budget.refuse({**two, 103: ("pve2", "pve3")}, [103], balancing=False)
    assert refused is not None and refused.reason is Reason.BUDGET_RUN
    # ... but not once 101 went back home (its move dropped): pve1 then takes part in 1 move
    assert budget.refuse({102: two[102], 103: ("pve2", "pve3")}, [101, 103], False) is None
    # with room in the run, pve1 (already in 2 moves) still refuses a third
    roomy = Budget(policy(max_moves=5, max_moves_per_node=2), (), NOW)
    refused = roomy.refuse({**two, 104: ("pve1", "pve3")}, [104], balancing=False)
    assert refused is not None and refused.reason is Reason.BUDGET_NODE
