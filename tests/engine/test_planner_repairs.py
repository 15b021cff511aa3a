"""Repairs come first and run on calm clusters too: maintenance evacuation, node restrictions
(pins, strict HA node-affinity, pool pins), anti-affinity, affinity. Guests that may not move
are skipped with their reason, and their load still counts.

Loads in comments: a node's score is 0.5 × CPU share + 0.5 × memory share of predicted means.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.plan import Reason
from engine.policy import Policy
from tests.engine.builders import (
    apply,
    forecast,
    guest,
    ha_apart,
    ha_nodes,
    ha_together,
    moved,
    node,
    nodes,
    placement,
    policy,
    reasons,
    run,
    skips,
    snapshot,
    targets,
)

THREE = nodes("pve1", "pve2", "pve3")
FOUR = nodes("pve1", "pve2", "pve3", "pve4")


def calm(*extra, node_list=FOUR):
    """Every node carries the same load (one 2-core 8 GiB guest: score 0.125); `extra` adds more
    guests, which is what the test is about."""
    base = [guest(900 + i, n.name, cpu=2, mem_gib=8) for i, n in enumerate(node_list)]
    return [*base, *extra]


def ours(result):
    """Moves of the guests a test is about (not the 8xx fillers or 9xx calm base), which
    balancing may still shuffle once a repair has changed the loads."""
    return {v: t for v, t in targets(result).items() if v < 800}


# -- maintenance ---------------------------------------------------------------------------------


def test_a_maintenance_node_is_emptied_honouring_every_rule():
    snap = snapshot(
        [node("pve1", maintenance=True), *nodes("pve2", "pve3"), node("pve4", mem_gib=128)],
        [
            guest(101, "pve1", tags="plb_anti_affinity_db"),  # not beside 201 on pve2
            guest(102, "pve1", tags="plb_pin_pve1;plb_pin_pve3"),  # pve1 is down: only pve3
            guest(103, "pve1", cpu=2, mem_gib=80),  # 80 GiB fits only pve4 (128 - 2 reserve)
            guest(104, "pve1", passthrough=("hostpci0",)),
            guest(105, "pve1", lock="backup"),
            guest(106, "pve1", tags="plb_ignore"),
            guest(201, "pve2", tags="plb_anti_affinity_db"),  # pve2 is the coolest node
            guest(301, "pve3", cpu=4, mem_gib=24),
            guest(401, "pve4", cpu=4, mem_gib=24),
        ],
    )
    result = run(snap, balance=False)
    assert targets(result) == {101: "pve4", 102: "pve3", 103: "pve4"}
    assert set(reasons(result).values()) == {Reason.MAINTENANCE}
    assert skips(result) == {
        104: Reason.LOCAL_RESOURCES,
        105: Reason.LOCKED,
        106: Reason.IGNORED,
    }
    for s in result.skipped:
        assert "stays on maintenance node pve1" in s.detail
    after = apply(snap, result)
    limit = {n.name: n.memory - 2 * 1024**3 for n in snap.nodes}
    for load in result.loads_after:
        assert load.mem_p90 <= limit[load.node] or load.node == "pve1"
    assert placement(after)[101] != placement(after)[201]


EVACUATE = [
    (
        [node("pve1", maintenance=True), *nodes("pve2", "pve3")],
        Policy(),
        {},
        "a node flagged in maintenance is emptied",
    ),
    (THREE, policy(maintenance_nodes=["pve1"]), {}, "a node named in the policy is emptied"),
    (THREE, Policy(), {"evacuate": "pve1"}, "a node passed to plan(evacuate=) is emptied"),
]


@pytest.mark.parametrize(("node_list", "pol", "kw", "_"), EVACUATE, ids=[c[3] for c in EVACUATE])
def test_every_way_of_naming_a_maintenance_node_empties_it(node_list, pol, kw, _):
    snap = snapshot(node_list, [guest(101, "pve1"), guest(102, "pve1"), guest(201, "pve2")])
    result = run(snap, pol, balance=False, **kw)
    assert set(targets(result)) == {101, 102}
    assert "pve1" not in targets(result).values()
    assert set(reasons(result).values()) == {Reason.MAINTENANCE}


def test_a_maintenance_node_takes_nothing_even_when_it_is_the_coolest():
    # pve1: 4 guests of 2 cores, 8 GiB = 4 × 0.125 = 0.5; pve2 (maintenance) is empty; pve3 0.125
    snap = snapshot(
        [node("pve1"), node("pve2", maintenance=True), node("pve3")],
        [*(guest(v, "pve1", cpu=2, mem_gib=8) for v in (101, 102, 103, 104)), guest(301, "pve3")],
    )
    result = run(snap)
    assert result.moves
    assert set(targets(result).values()) == {"pve3"}


def test_an_evacuation_that_does_not_fit_moves_what_fits_and_says_why_the_rest_stays():
    # pve2 holds 62 GiB (64 - 2 reserve): 40 GiB is already used, so one 16 GiB guest fits
    snap = snapshot(
        [node("pve1", maintenance=True), node("pve2")],
        [
            guest(101, "pve1", mem_gib=16),
            guest(102, "pve1", mem_gib=16),
            guest(201, "pve2", mem_gib=40),
        ],
    )
    result = run(snap)
    assert targets(result) == {101: "pve2"}
    assert skips(result) == {102: Reason.NO_TARGET}
    assert "maintenance" in result.skipped[0].detail


def test_an_offline_node_takes_nothing():
    snap = snapshot(
        [node("pve1", maintenance=True), node("pve2", online=False), node("pve3")],
        [guest(101, "pve1")],
    )
    assert targets(run(snap)) == {101: "pve3"}


# -- guests that never move ---------------------------------------------------------------------

BLOCKED = [
    (guest(101, "pve1", tags="plb_ignore"), Policy(), Reason.IGNORED, "an ignored guest"),
    (
        guest(101, "pve1", tags="plb_ignore_me"),
        Policy(),
        Reason.IGNORED,
        "a guest tagged plb_ignore_<anything>",
    ),
    (guest(101, "pve1", lock="backup"), Policy(), Reason.LOCKED, "a locked guest"),
    (
        guest(101, "pve1", passthrough=("hostpci0",)),
        policy(allow_local_disks=True, allow_container_restart=True),
        Reason.LOCAL_RESOURCES,
        "a guest with PCI passthrough, whatever the policy allows",
    ),
    (
        guest(101, "pve1", kind="lxc", passthrough=("usb0",)),
        policy(allow_container_restart=True),
        Reason.LOCAL_RESOURCES,
        "a container with a USB device, even when restarts are allowed",
    ),
    (
        guest(101, "pve1", local_disk_gib=32),
        Policy(),
        Reason.LOCAL_DISKS,
        "a guest with local disks when the policy does not allow moving them",
    ),
    (
        guest(101, "pve1", kind="lxc"),
        Policy(),
        Reason.CONTAINER_RESTART,
        "a running container when restarts are not allowed",
    ),
]


@pytest.mark.parametrize(
    "why",
    ["maintenance", "pin", "hot"],
    ids=[
        "never moves even off a maintenance node",
        "never moves even when pinned elsewhere",
        "never moves even off the hottest node",
    ],
)
@pytest.mark.parametrize(("g", "pol", "reason", "_"), BLOCKED, ids=[c[3] for c in BLOCKED])
def test_a_blocked_guest_never_moves_and_is_skipped_with_its_reason(g, pol, reason, _, why):
    others = [guest(201, "pve2"), guest(301, "pve3")]
    if why == "maintenance":
        snap = snapshot([node("pve1", maintenance=True), *nodes("pve2", "pve3")], [g, *others])
    elif why == "pin":
        snap = snapshot(THREE, [replace(g, tags=(*g.tags, "plb_pin_pve3")), *others])
    else:
        # the blocked guest alone makes pve1 hot: 8 cores, 32 GiB = 0.25 + 0.25 = 0.5
        big = replace(g, cpu_used=8.0, vcpus=8, mem_used=32 * 1024**3, mem_max=32 * 1024**3)
        snap = snapshot(THREE, [big, *others])
    result = run(snap, pol)
    assert 101 not in targets(result)
    assert skips(result)[101] is reason


MOVABLE = [
    (
        guest(101, "pve1"),
        Policy(),
        {"online": True, "restart": False, "with_local_disks": False, "kind": "qemu"},
        "a running VM migrates online",
    ),
    (
        guest(101, "pve1", running=False),
        Policy(),
        {"online": False, "restart": False, "mem_bytes": 0},
        "a stopped VM migrates offline and moves no memory",
    ),
    (
        guest(101, "pve1", local_disk_gib=32),
        policy(allow_local_disks=True),
        {"with_local_disks": True, "disk_bytes": 32 * 1024**3, "online": True},
        "a guest with local disks moves with them when the policy allows it",
    ),
    (
        guest(101, "pve1", kind="lxc"),
        policy(allow_container_restart=True),
        {"online": False, "restart": True, "kind": "lxc"},
        "a running container moves in restart mode when the policy allows it",
    ),
    (
        guest(101, "pve1", kind="lxc", running=False),
        Policy(),
        {"online": False, "restart": False, "kind": "lxc"},
        "a stopped container moves without the restart permission",
    ),
]


@pytest.mark.parametrize(("g", "pol", "fields", "_"), MOVABLE, ids=[c[3] for c in MOVABLE])
def test_how_a_movable_guest_migrates(g, pol, fields, _):
    snap = snapshot([node("pve1", maintenance=True), node("pve2")], [g])
    result = run(snap, pol)
    assert len(result.moves) == 1
    move = result.moves[0]
    assert (move.source, move.target) == ("pve1", "pve2")
    for key, value in fields.items():
        assert getattr(move, key) == value, key


def test_an_ignored_guest_s_memory_keeps_others_off_its_node():
    # pve2 would be the coolest target (no CPU used), but the ignored guest's 56 GiB plus the
    # 8 GiB evacuee is 64 GiB > 62 GiB (64 - 2 reserve), so the evacuee goes to pve3
    ignored = guest(201, "pve2", cpu=0, mem_gib=56, tags="plb_ignore")
    rest = [guest(101, "pve1", cpu=1, mem_gib=8), guest(301, "pve3", cpu=8, mem_gib=8)]
    down = [node("pve1", maintenance=True), *nodes("pve2", "pve3")]
    with_it = run(snapshot(down, [ignored, *rest]))
    assert targets(with_it) == {101: "pve3"}
    assert skips(with_it) == {201: Reason.IGNORED}
    # the same cluster without that guest sends the evacuee to pve2
    assert targets(run(snapshot(down, rest))) == {101: "pve2"}


def test_an_ignored_guest_s_load_makes_its_node_hot_and_others_leave_it():
    # pve1: ignored 8 cores 32 GiB (0.5) + two 1-core 4 GiB guests (0.0625 each) = 0.625;
    # moving the ignored guest would help most, but only the small ones may go
    snap = snapshot(
        THREE,
        [
            guest(101, "pve1", cpu=8, mem_gib=32, tags="plb_ignore"),
            guest(102, "pve1", cpu=1, mem_gib=4),
            guest(103, "pve1", cpu=1, mem_gib=4),
        ],
    )
    result = run(snap)
    pve1 = next(x for x in result.loads_before if x.node == "pve1")
    assert pve1.score == pytest.approx(0.625)
    assert set(targets(result)) == {102, 103}
    assert skips(result)[101] is Reason.IGNORED


# -- node restrictions ----------------------------------------------------------------------------

PINS = [
    ("plb_pin_pve3", {}, {101: "pve3"}, "a pinned guest on the wrong node moves to its pin"),
    ("PLB_PIN_PVE3", {}, {101: "pve3"}, "a pin tag in upper case is honoured"),
    ("plb_pin_pve1;plb_pin_pve3", {}, {}, "a guest on one of its pins stays"),
    (
        "plb_pin_pve2,plb_pin_pve3",
        {"pve2": 40},
        {101: "pve3"},
        "of two pins the one with room is taken (pve2 has 40 + 8 + 16 > 62 GiB)",
    ),
    (
        "plb_pin_pve2 plb_pin_pve3",
        {"pve3": 4},
        {101: "pve2"},
        "of two pins the cooler is taken (pve3 carries 4 GiB more)",
    ),
]


@pytest.mark.parametrize(("tags", "extra", "expected", "_"), PINS, ids=[c[3] for c in PINS])
def test_a_pinned_guest_on_the_wrong_node_is_moved_on_a_calm_cluster(tags, extra, expected, _):
    # calm: every node carries one 2-core 8 GiB guest; the pinned guest is 1 core, 16 GiB
    filler = [guest(800 + i, n, cpu=0, mem_gib=gib) for i, (n, gib) in enumerate(extra.items())]
    snap = snapshot(FOUR, calm(guest(101, "pve1", mem_gib=16, tags=tags), *filler))
    result = run(snap)
    assert ours(result) == expected
    assert {reasons(result)[v] for v in expected} <= {Reason.PIN}


def test_a_pin_with_no_room_is_skipped_not_forced():
    # pve3 already holds 56 GiB; 56 + 8 > 62
    snap = snapshot(
        THREE,
        [guest(101, "pve1", mem_gib=8, tags="plb_pin_pve3"), guest(301, "pve3", mem_gib=56)],
    )
    result = run(snap)
    assert result.moves == ()
    assert skips(result) == {101: Reason.NO_TARGET}


def test_a_pin_repair_ignores_the_cooldown():
    now = 1_000_000.0
    snap = snapshot(
        FOUR,
        calm(guest(101, "pve1", tags="plb_pin_pve2")),
        history=[moved(101, "pve2", "pve1", minutes_ago=5, now=now)],
        now=now,
    )
    assert ours(run(snap)) == {101: "pve2"}


HA_NODE = [
    (
        {"pve2": 1, "pve3": 2},
        True,
        {101: "pve3"},
        Reason.NODE_AFFINITY,
        "a strict HA rule moves the guest to its highest-priority node",
    ),
    (
        {"pve2": 1, "pve3": 1},
        True,
        {101: "pve2"},
        Reason.NODE_AFFINITY,
        "a strict HA rule with equal priorities takes the first of equally cool nodes",
    ),
    (
        {"pve2": 1, "pve3": 2},
        False,
        {},
        None,
        "a non-strict HA rule moves nothing on a calm cluster",
    ),
    (
        {"pve1": 1, "pve3": 2},
        True,
        {},
        None,
        "a strict HA rule that allows the current node moves nothing on a calm cluster",
    ),
]


@pytest.mark.parametrize(
    ("prio", "strict", "expected", "reason", "_"), HA_NODE, ids=[c[4] for c in HA_NODE]
)
def test_ha_node_affinity(prio, strict, expected, reason, _):
    snap = snapshot(
        FOUR,
        calm(guest(101, "pve1")),
        node_rules=[ha_nodes("ha-web", [101], prio, strict=strict)],
    )
    result = run(snap)
    assert ours(result) == expected
    if reason:
        assert reasons(result)[101] is reason


def test_a_pve8_restricted_group_is_a_strict_node_affinity_rule():
    # PVE 8: group "db-nodes" restricted=1 nodes pve3:2,pve4:1 -> strict rule
    snap = snapshot(
        FOUR,
        calm(guest(101, "pve1"), guest(102, "pve4")),
        node_rules=[ha_nodes("db-nodes", [101, 102], {"pve3": 2, "pve4": 1}, strict=True)],
    )
    result = run(snap)
    # 101 sits outside the group and must enter it (at its best node); 102 is inside and stays
    assert ours(result) == {101: "pve3"}
    assert reasons(result)[101] is Reason.NODE_AFFINITY


SOFT = [
    ({}, "pve3", "a soft rule's highest priority node is preferred"),
    ({"pve3": 50}, "pve2", "when the first choice is full the next priority is taken"),
    ({"pve3": 50, "pve2": 50}, "pve4", "when every listed node is full any node will do"),
    # the evacuee scores 1/16 × 0.5 + 8/64 × 0.5 = 0.09375 and each idle GiB 1/64 × 0.5; the
    # total deviation (N × MAD) grows by about 0.0156 per GiB on pve3 over pve2, against the
    # default soft penalty of 0.05: 2 GiB (≈ 0.031) is smaller, 4 GiB (≈ 0.0625) larger
    ({"pve3": 2}, "pve3", "priority beats a load difference smaller than the soft penalty"),
    ({"pve3": 4}, "pve2", "a load difference larger than the soft penalty beats priority"),
]


@pytest.mark.parametrize(("fill", "target", "_"), SOFT, ids=[c[2] for c in SOFT])
def test_a_non_strict_ha_rule_is_a_preference_by_priority(fill, target, _):
    # pve1 is evacuated; the guest prefers pve3 (2) over pve2 (1) and does not list pve4;
    # fill: GiB of idle guests put on a node beforehand
    filler = [guest(800 + i, n, cpu=0, mem_gib=g) for i, (n, g) in enumerate(fill.items())]
    snap = snapshot(
        [node("pve1", maintenance=True), *nodes("pve2", "pve3", "pve4")],
        [guest(101, "pve1", mem_gib=8), *filler],
        node_rules=[ha_nodes("pref", [101], {"pve3": 2, "pve2": 1}, strict=False)],
    )
    assert targets(run(snap, balance=False)) == {101: target}


STEER = [
    ([], {101: "pve2"}, "without preferences the first guest goes to the first cool node"),
    ([102], {102: "pve3"}, "a guest that prefers pve3 is the one moved, and to pve3"),
    ([101], {101: "pve3"}, "a preference picks the target among equally cool nodes"),
]


@pytest.mark.parametrize(("prefer", "expected", "_"), STEER, ids=[c[2] for c in STEER])
def test_a_soft_preference_steers_a_balancing_move(prefer, expected, _):
    # pve1: 2 × 0.125 = 0.25, pve2 and pve3 empty: one move leaves 0.125, 0.125, 0 and a
    # second would not leave its target cooler than its source, so exactly one move is made
    snap = snapshot(
        THREE,
        [guest(v, "pve1", cpu=2, mem_gib=8) for v in (101, 102)],
        node_rules=[ha_nodes("pref", prefer, {"pve3": 1}, strict=False)] if prefer else [],
    )
    assert targets(run(snap)) == expected


# -- anti-affinity -------------------------------------------------------------------------------

APART = [
    ("tags", "two guests tagged with one anti-affinity group are split"),
    ("ha", "an HA negative resource-affinity rule splits its guests"),
    ("pool", "a strict pool anti-affinity splits its members"),
]


def _apart_snapshot(source, hot):
    load = [guest(v, "pve1", cpu=2, mem_gib=8) for v in (111, 112, 113)] if hot else []
    tags = "plb_anti_affinity_db" if source == "tags" else ""
    pool = "db" if source == "pool" else None
    members = [guest(v, "pve1", tags=tags, pool=pool) for v in (101, 102)]
    rules = [ha_apart("db", 101, 102)] if source == "ha" else []
    pol = policy(pools={"db": {"rule": "anti-affinity"}}) if source == "pool" else Policy()
    return snapshot(THREE, [*members, *load], resource_rules=rules), pol


@pytest.mark.parametrize("hot", [True, False], ids=["on a hot node", "on a calm cluster"])
@pytest.mark.parametrize(("source", "_"), APART, ids=[c[1] for c in APART])
def test_anti_affinity_pair_on_one_node_is_split(source, _, hot):
    snap, pol = _apart_snapshot(source, hot)
    result = run(snap, pol, balance=hot)
    after = placement(apply(snap, result))
    assert after[101] != after[102]
    first = result.moves[0]
    assert first.vmid in (101, 102)
    assert first.reason is Reason.ANTI_AFFINITY


def test_a_soft_pool_anti_affinity_is_not_repaired_on_a_calm_cluster():
    snap = snapshot(THREE, [guest(101, "pve1", pool="db"), guest(102, "pve1", pool="db")])
    pol = policy(pools={"db": {"rule": "anti-affinity", "strict": False}})
    assert run(snap, pol, balance=False).moves == ()


def test_a_soft_pool_anti_affinity_steers_an_evacuee_away_from_its_peer():
    # pve2 (1 GiB, 0.0078) is cooler than pve3 (1.25 GiB, 0.0098) but holds 102 of the same
    # soft anti-affinity pool. With the evacuee (0.0625) the total deviation is 0.0605 on pve2
    # and 0.0645 on pve3: 0.0039 apart, less than the 0.01 soft penalty.
    snap = snapshot(
        [node("pve1", maintenance=True), *nodes("pve2", "pve3")],
        [
            guest(101, "pve1", pool="db"),
            guest(102, "pve2", cpu=0, mem_gib=1, pool="db"),
            guest(301, "pve3", cpu=0, mem_gib=1.25),
        ],
    )
    pol = policy(pools={"db": {"rule": "anti-affinity", "strict": False}})
    assert targets(run(snap, pol, balance=False)) == {101: "pve3"}


def test_anti_affinity_repair_never_splits_an_affinity_group():
    # 101+102 must stay together (affinity 'app'); 101 and 103 must be apart (anti 'db').
    # 102 (40 GiB) fits nowhere but pve1 (pve2 holds 30 GiB), so the only repair that keeps
    # every rule is to move 103 to pve2.
    snap = snapshot(
        [node("pve1"), node("pve2", mem_gib=32)],
        [
            guest(101, "pve1", mem_gib=2, tags="plb_affinity_app;plb_anti_affinity_db"),
            guest(102, "pve1", mem_gib=40, tags="plb_affinity_app"),
            guest(103, "pve1", mem_gib=8, tags="plb_anti_affinity_db"),
        ],
    )
    result = run(snap, balance=False)
    after = placement(apply(snap, result))
    assert after[101] == after[102], result
    assert after[101] != after[103], result


# -- affinity ------------------------------------------------------------------------------------

TOGETHER = [
    ("tags", "a split affinity tag group is gathered where the least memory moves"),
    ("ha", "an HA positive resource-affinity rule gathers its guests"),
    ("pool", "a strict pool affinity gathers its members"),
]


@pytest.mark.parametrize(("source", "_"), TOGETHER, ids=[c[1] for c in TOGETHER])
def test_a_split_affinity_group_is_gathered(source, _):
    tags = "plb_affinity_app" if source == "tags" else ""
    pool = "app" if source == "pool" else None
    snap = snapshot(
        FOUR,
        calm(
            guest(101, "pve1", mem_gib=4, tags=tags, pool=pool),
            guest(102, "pve2", mem_gib=16, tags=tags, pool=pool),
            guest(103, "pve3", mem_gib=8, tags=tags, pool=pool),
        ),
        resource_rules=[ha_together("app", 101, 102, 103)] if source == "ha" else [],
    )
    pol = policy(pools={"app": {"rule": "affinity"}}) if source == "pool" else Policy()
    result = run(snap, pol)
    # gathering on pve2 moves 4 + 8 = 12 GiB, on pve3 4 + 16 = 20, on pve1 8 + 16 = 24
    assert ours(result) == {101: "pve2", 103: "pve2"}
    assert {reasons(result)[v] for v in (101, 103)} == {Reason.AFFINITY}


def test_a_soft_pool_affinity_is_not_gathered_on_a_calm_cluster():
    snap = snapshot(FOUR, calm(guest(101, "pve1", pool="app"), guest(102, "pve2", pool="app")))
    assert run(snap, policy(pools={"app": {"rule": "affinity", "strict": False}})).moves == ()


def test_an_affinity_group_is_evacuated_to_one_node():
    snap = snapshot(
        [node("pve1", maintenance=True), *nodes("pve2", "pve3")],
        [
            guest(101, "pve1", tags="plb_affinity_app"),
            guest(102, "pve1", tags="plb_affinity_app"),
            guest(103, "pve1", tags="plb_affinity_app"),
        ],
    )
    result = run(snap)
    assert len(set(targets(result).values())) == 1
    assert set(targets(result)) == {101, 102, 103}
    assert {m.unit for m in result.moves} == {"tag affinity 'app'"}


def test_an_affinity_group_that_fits_no_node_together_right_now_does_not_move_at_all():
    # the group needs 3 × 12 = 36 GiB; pve2 and pve3 each have 62 - 40 = 22 GiB free. The
    # largest node could hold it empty, so there is no conflict: the group stays, explained.
    snap = snapshot(
        [node("pve1", maintenance=True), *nodes("pve2", "pve3")],
        [
            *(guest(v, "pve1", mem_gib=12, tags="plb_affinity_app") for v in (101, 102, 103)),
            guest(201, "pve2", cpu=0, mem_gib=40),
            guest(301, "pve3", cpu=0, mem_gib=40),
        ],
    )
    result = run(snap)
    assert result.conflicts == ()
    assert result.moves == ()
    assert skips(result) == {v: Reason.NO_TARGET for v in (101, 102, 103)}


def test_an_affinity_group_moves_as_one_unit_when_balancing():
    # pve1: the pair (2 × 0.125) + 103 (0.125) = 0.375; pve2 0.125, pve3 0.125
    snap = snapshot(
        THREE,
        [
            guest(101, "pve1", cpu=2, mem_gib=8, tags="plb_affinity_app"),
            guest(102, "pve1", cpu=2, mem_gib=8, tags="plb_affinity_app"),
            guest(103, "pve1", cpu=2, mem_gib=8),
            guest(201, "pve2", cpu=2, mem_gib=8),
            guest(301, "pve3", cpu=2, mem_gib=8),
        ],
    )
    result = run(snap)
    after = placement(apply(snap, result))
    assert after[101] == after[102]
    pair = [m for m in result.moves if m.vmid in (101, 102)]
    assert len(pair) in (0, 2)
    assert all(m.unit == "tag affinity 'app'" for m in pair)


def test_an_affinity_group_with_an_immovable_member_does_not_move_at_all():
    # pve1 is hot: the pair (2 × 0.25) = 0.5 and 103; only 103 may leave
    snap = snapshot(
        THREE,
        [
            guest(101, "pve1", cpu=4, mem_gib=16, tags="plb_affinity_app", lock="backup"),
            guest(102, "pve1", cpu=4, mem_gib=16, tags="plb_affinity_app"),
            guest(103, "pve1", cpu=1, mem_gib=4),
        ],
    )
    result = run(snap)
    assert 101 not in targets(result)
    assert 102 not in targets(result)
    assert skips(result)[101] is Reason.LOCKED


def test_a_partner_of_an_immovable_guest_left_on_a_maintenance_node_is_explained():
    # 101 (passthrough) cannot leave pve1; its affinity partner 102 therefore stays too,
    # and the plan must say so: every guest left on a maintenance node carries a reason
    snap = snapshot(
        [node("pve1", maintenance=True), *nodes("pve2", "pve3")],
        [
            guest(101, "pve1", tags="plb_affinity_app", passthrough=("hostpci0",)),
            guest(102, "pve1", tags="plb_affinity_app"),
            guest(103, "pve1"),
        ],
    )
    result = run(snap)
    assert set(targets(result)) == {103}
    assert set(skips(result)) == {101, 102}


CHAINED = [
    (
        "tags",
        False,
        "balancing moves two tag groups that share a guest as one",
    ),
    ("ha", False, "balancing moves two HA resource-affinity rules that share a guest as one"),
    ("tags", True, "an evacuation keeps two tag groups that share a guest on one node"),
    ("ha", True, "an evacuation keeps two HA rules that share a guest on one node"),
]


@pytest.mark.parametrize(("source", "evacuate", "_"), CHAINED, ids=[c[2] for c in CHAINED])
def test_a_guest_in_two_affinity_groups_keeps_both(source, evacuate, _):
    # 'a' = {101, 102} and 'b' = {102, 103}: all three must end on one node.
    # balancing: pve1 holds them plus 104, 4 × 0.125 = 0.5, while pve2 and pve3 are empty;
    # evacuation: pve1 holds only the three (1 core, 4 GiB each)
    tags = {101: "plb_affinity_a", 102: "plb_affinity_a;plb_affinity_b", 103: "plb_affinity_b"}
    size = {"cpu": 1, "mem_gib": 4} if evacuate else {"cpu": 2, "mem_gib": 8}
    members = [
        guest(v, "pve1", tags=tags[v] if source == "tags" else "", **size) for v in (101, 102, 103)
    ]
    snap = snapshot(
        [node("pve1", maintenance=evacuate), *nodes("pve2", "pve3")],
        members if evacuate else [*members, guest(104, "pve1", **size)],
        resource_rules=(
            [ha_together("a", 101, 102), ha_together("b", 102, 103)] if source == "ha" else []
        ),
    )
    result = run(snap)
    after = placement(apply(snap, result))
    assert after[101] == after[102] == after[103], result.moves


def test_a_pinned_guest_held_back_by_an_immovable_partner_is_explained():
    # 102 is pinned to pve2 but must stay with 101, which has passthrough and cannot move:
    # the plan cannot repair the pin and must say why (a skip or a reported conflict)
    snap = snapshot(
        THREE,
        [
            guest(101, "pve1", tags="plb_affinity_a", passthrough=("hostpci0",)),
            guest(102, "pve1", tags="plb_affinity_a;plb_pin_pve2"),
        ],
    )
    result = run(snap)
    assert result.moves == ()
    assert 102 in skips(result) or any(102 in c.vmids for c in result.conflicts)


def test_gathering_an_affinity_group_honours_every_member_s_pin():
    # 101 is pinned to pve2 but sits on pve1; its partner 102 sits on pve2. Moving the
    # smaller 102 to pve1 would gather them on a node 101 may not use: 101 must go to pve2.
    snap = snapshot(
        THREE,
        [
            guest(101, "pve1", mem_gib=8, tags="plb_affinity_app;plb_pin_pve2"),
            guest(102, "pve2", mem_gib=2, tags="plb_affinity_app"),
        ],
    )
    result = run(snap, balance=False)
    assert placement(apply(snap, result)) == {101: "pve2", 102: "pve2"}


def test_a_pinned_member_takes_its_whole_affinity_group_to_the_pin():
    snap = snapshot(
        FOUR,
        calm(
            guest(101, "pve1", tags="plb_affinity_app;plb_pin_pve4"),
            guest(102, "pve1", tags="plb_affinity_app"),
        ),
    )
    result = run(snap)
    assert ours(result) == {101: "pve4", 102: "pve4"}
    assert {reasons(result)[v] for v in (101, 102)} == {Reason.PIN}


# -- pools ---------------------------------------------------------------------------------------

POOL_PINS = [
    (True, False, {101: "pve3"}, "a strict pool pin moves its member on a calm cluster"),
    (False, False, {}, "a soft pool pin moves nothing on a calm cluster"),
    (False, True, {101: "pve3"}, "a soft pool pin steers an evacuation to its node"),
    (True, True, {101: "pve3"}, "a strict pool pin steers an evacuation to its node"),
]


@pytest.mark.parametrize(
    ("strict", "evacuate", "expected", "_"), POOL_PINS, ids=[c[3] for c in POOL_PINS]
)
def test_pool_pins(strict, evacuate, expected, _):
    # pve3 carries 1 GiB more than pve2 and pve4, so only the pin can make it the choice
    snap = snapshot(
        FOUR, calm(guest(101, "pve1", pool="web"), guest(801, "pve3", cpu=0, mem_gib=1))
    )
    pol = policy(pools={"web": {"rule": "pin", "nodes": ["pve3"], "strict": strict}})
    result = run(snap, pol, evacuate="pve1" if evacuate else None)
    assert ours(result) == expected


def test_forecasts_drive_repairs_too():
    # the evacuee is small now but its p90 is 20 GiB: pve2 (50 GiB used) cannot take it
    snap = snapshot(
        [node("pve1", maintenance=True), *nodes("pve2", "pve3")],
        [guest(101, "pve1", mem_gib=2), guest(201, "pve2", cpu=0, mem_gib=50)],
        forecasts=[forecast(101, 1.0, 2, mem_p90_gib=20)],
    )
    assert targets(run(snap)) == {101: "pve3"}
