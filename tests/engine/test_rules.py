"""build_rules: every rule source (tags, pools, HA rules, maintenance) and every conflict.

A conflict is reported with the way it is resolved and never raises; the plan then follows
that resolution.
"""

from __future__ import annotations

import pytest

from engine.policy import Policy
from engine.rules import Group, build_rules
from tests.engine.builders import (
    apply,
    forecast,
    guest,
    ha_apart,
    ha_nodes,
    ha_together,
    node,
    nodes,
    per_node,
    placement,
    policy,
    run,
    snapshot,
)

THREE = nodes("pve1", "pve2", "pve3")


# -- where a guest may run -----------------------------------------------------------------------

ALLOWED = [
    (
        snapshot(THREE, [guest(101, "pve1", tags="plb_pin_pve2")]),
        Policy(),
        {101: {"pve2"}},
        "a pin tag allows only its node",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", tags="plb_pin_pve2;plb_pin_pve3")]),
        Policy(),
        {101: {"pve2", "pve3"}},
        "repeated pin tags allow any of their nodes",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", tags="PLB_PIN_PVE2")]),
        Policy(),
        {101: {"pve2"}},
        "a pin tag in upper case finds its node",
    ),
    (
        snapshot([node("PVE-A"), node("pve-b")], [guest(101, "pve-b", tags="plb_pin_pve-a")]),
        Policy(),
        {101: {"PVE-A"}},
        "a lower-case pin resolves to a node whose name has upper case",
    ),
    (
        snapshot(
            THREE,
            [guest(101, "pve1")],
            node_rules=[ha_nodes("ha", [101], {"pve2": 2, "pve3": 1}, strict=True)],
        ),
        Policy(),
        {101: {"pve2", "pve3"}},
        "a strict HA node-affinity rule restricts the guest to its nodes",
    ),
    (
        snapshot(
            THREE,
            [guest(101, "pve1")],
            node_rules=[ha_nodes("ha", [101], {"pve2": 2}, strict=False)],
        ),
        Policy(),
        {},
        "a non-strict HA node-affinity rule restricts nothing",
    ),
    (
        snapshot(
            THREE,
            [guest(101, "pve1", tags="plb_pin_pve2;plb_pin_pve3")],
            node_rules=[ha_nodes("ha", [101], {"pve3": 1, "pve1": 1}, strict=True)],
        ),
        Policy(),
        {101: {"pve3"}},
        "a pin and a strict HA rule that overlap allow only their common nodes",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", pool="web")]),
        policy(pools={"web": {"rule": "pin", "nodes": ["pve3"]}}),
        {101: {"pve3"}},
        "a strict pool pin restricts its members",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", pool="web")]),
        policy(pools={"web": {"rule": "pin", "nodes": ["pve3"], "strict": False}}),
        {},
        "a soft pool pin restricts nothing",
    ),
]


@pytest.mark.parametrize(("snap", "pol", "allowed", "_"), ALLOWED, ids=[c[3] for c in ALLOWED])
def test_where_a_guest_may_run(snap, pol, allowed, _):
    rules = build_rules(snap, pol)
    assert {v: set(n) for v, n in rules.allowed.items()} == allowed
    assert rules.conflicts == []


PREFERRED = [
    (
        snapshot(
            THREE,
            [guest(101, "pve1")],
            node_rules=[ha_nodes("ha", [101], {"pve2": 2, "pve3": 1}, strict=False)],
        ),
        Policy(),
        {101: {"pve2": 2, "pve3": 1}},
        "a non-strict HA rule becomes a preference by priority",
    ),
    (
        snapshot(
            THREE,
            [guest(101, "pve1")],
            node_rules=[ha_nodes("ha", [101], {"pve2": 2, "pve9": 5}, strict=False)],
        ),
        Policy(),
        {101: {"pve2": 2}},
        "a preference for an unknown node is dropped",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", pool="web")]),
        policy(pools={"web": {"rule": "pin", "nodes": ["pve3"], "strict": False}}),
        {101: {"pve3": 1}},
        "a soft pool pin becomes a preference",
    ),
    (
        snapshot(
            THREE,
            [guest(101, "pve1")],
            node_rules=[ha_nodes("ha", [999], {"pve2": 1}, strict=True)],
        ),
        Policy(),
        {},
        "an HA rule about a guest that does not exist is skipped",
    ),
]


@pytest.mark.parametrize(
    ("snap", "pol", "preferred", "_"), PREFERRED, ids=[c[3] for c in PREFERRED]
)
def test_where_a_guest_would_rather_run(snap, pol, preferred, _):
    assert build_rules(snap, pol).preferred == preferred


# -- groups --------------------------------------------------------------------------------------

GROUPS = [
    (
        snapshot(
            THREE,
            [
                guest(102, "pve1", tags="plb_affinity_web"),
                guest(101, "pve2", tags="PLB_AFFINITY_WEB"),
                guest(103, "pve3", tags="plb_anti_affinity_db;plb_affinity_web"),
                guest(104, "pve3", tags="plb_anti_affinity_db"),
            ],
        ),
        Policy(),
        [
            Group("tag affinity 'web'", (101, 102, 103), True),
            Group("tag anti-affinity 'db'", (103, 104), False),
        ],
        "tags make groups, members in vmid order, and a guest can be in several",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", pool="app"), guest(102, "pve2", pool="app")]),
        policy(pools={"app": {"rule": "affinity"}}),
        [Group("pool affinity 'app'", (101, 102), True, True)],
        "a strict pool affinity is a hard group",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", pool="db"), guest(102, "pve1", pool="db")]),
        policy(pools={"db": {"rule": "anti-affinity", "strict": False}}),
        [Group("pool anti-affinity 'db'", (101, 102), False, False)],
        "a soft pool anti-affinity is a soft group",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", pool="db")]),
        policy(pools={"db": {"rule": "anti-affinity"}, "empty": {"rule": "affinity"}}),
        [Group("pool anti-affinity 'db'", (101,), False, True)],
        "a pool without members makes no group",
    ),
    (
        snapshot(
            THREE,
            [guest(101, "pve1"), guest(102, "pve2"), guest(103, "pve3")],
            resource_rules=[ha_together("pair", 101, 102), ha_apart("split", 102, 103, 999)],
        ),
        Policy(),
        [
            Group("HA resource-affinity 'pair'", (101, 102), True),
            Group("HA resource-anti-affinity 'split'", (102, 103), False),
        ],
        "HA resource-affinity rules make hard groups of the guests that exist",
    ),
    (
        snapshot(THREE, [guest(101, "pve1")], resource_rules=[ha_apart("lonely", 101, 999)]),
        Policy(),
        [],
        "an HA resource rule with one existing guest makes no group",
    ),
]


@pytest.mark.parametrize(("snap", "pol", "groups", "_"), GROUPS, ids=[c[3] for c in GROUPS])
def test_groups(snap, pol, groups, _):
    rules = build_rules(snap, pol)
    assert rules.groups == groups
    assert rules.conflicts == []


MAINTENANCE = [
    (
        [node("pve1", maintenance=True), node("pve2")],
        Policy(),
        {"pve1"},
        "a node flagged in maintenance (HA or node setting) is in maintenance",
    ),
    (
        nodes("pve1", "pve2"),
        policy(maintenance_nodes=["pve2"]),
        {"pve2"},
        "a node named in the policy is in maintenance",
    ),
    (
        [node("pve1", maintenance=True), node("pve2")],
        policy(maintenance_nodes=["pve2"]),
        {"pve1", "pve2"},
        "both sources add up",
    ),
]


@pytest.mark.parametrize(
    ("node_list", "pol", "down", "_"), MAINTENANCE, ids=[c[3] for c in MAINTENANCE]
)
def test_maintenance_nodes(node_list, pol, down, _):
    assert build_rules(snapshot(node_list, []), pol).maintenance == down


def test_ignore_tags_mark_guests_ignored():
    snap = snapshot(
        THREE,
        [
            guest(101, "pve1", tags="plb_ignore"),
            guest(102, "pve1", tags="PLB_IGNORE_backup"),
            guest(103, "pve1", tags="plb_ignored"),
        ],
    )
    assert build_rules(snap, Policy()).ignored == {101, 102}


# -- conflicts: reported with a resolution, never raised, and then honoured ----------------------


def _tag_pin_pool_pin():
    return (
        snapshot(THREE, [guest(101, "pve3", tags="plb_pin_pve1", pool="web")]),
        policy(pools={"web": {"rule": "pin", "nodes": ["pve2"]}}),
    )


CONFLICTS = [
    (
        snapshot(
            THREE,
            [
                guest(101, "pve1", tags="plb_anti_affinity_db;plb_pin_pve1"),
                guest(102, "pve1", tags="plb_anti_affinity_db;plb_pin_pve1"),
            ],
        ),
        Policy(),
        ("pin vs anti-affinity", (102,), "exempt from the anti-affinity"),
        # both must stay on pve1; the pin wins and nothing moves
        lambda after: after == {101: "pve1", 102: "pve1"},
        "two anti-affinity guests pinned to one node: the pin wins",
    ),
    (
        snapshot(
            THREE,
            [
                guest(101, "pve1", tags="plb_anti_affinity_db;plb_pin_pve1"),
                guest(102, "pve1", tags="plb_anti_affinity_db;plb_pin_pve1"),
                guest(103, "pve1", tags="plb_anti_affinity_db"),
            ],
        ),
        Policy(),
        ("pin vs anti-affinity", (102,), "exempt from the anti-affinity"),
        # 101 takes pve1, 102 is exempt, 103 still has to leave 101's node
        lambda after: after[101] == after[102] == "pve1" and after[103] != "pve1",
        "only the guests that cannot be separated are exempted",
    ),
    (
        snapshot(
            THREE,
            [
                guest(101, "pve1", tags="plb_affinity_big"),
                guest(102, "pve2", tags="plb_affinity_big"),
                guest(103, "pve3", tags="plb_affinity_big"),
            ],
            # mean 3 x 16 = 48 GiB would fit a 64 GiB node (62 after the 2 GiB reserve),
            # but p90 3 x 24 = 72 GiB does not
            forecasts=[forecast(v, 1.0, 16, mem_p90_gib=24) for v in (101, 102, 103)],
        ),
        Policy(),
        ("affinity group larger than any node", (101, 102, 103), "not gathered"),
        lambda after: after == {101: "pve1", 102: "pve2", 103: "pve3"},
        "an affinity group whose p90 memory exceeds the largest node is not gathered",
    ),
    (
        snapshot(
            [*THREE, node("pve4", maintenance=True)],
            [guest(v, "pve1", tags="plb_anti_affinity_web") for v in range(101, 106)],
        ),
        Policy(),
        ("more anti-affinity members than nodes", tuple(range(101, 106)), "at most 2 per node"),
        # 5 members over the 3 nodes that can take guests: ceil(5 / 3) = 2 per node
        lambda after: (
            max(per_node_count(after, range(101, 106)).values()) == 2
            and "pve4" not in after.values()
        ),
        "more anti-affinity members than nodes spread at most ceil(n / nodes) per node",
    ),
    (
        snapshot(
            THREE,
            [
                guest(101, "pve1", tags="plb_affinity_x;plb_anti_affinity_y"),
                guest(102, "pve1", tags="plb_affinity_x;plb_anti_affinity_y"),
            ],
        ),
        Policy(),
        ("affinity vs anti-affinity", (101, 102), "tag anti-affinity 'y' wins"),
        lambda after: after[101] != after[102],
        "affinity and anti-affinity on the same guests: anti-affinity wins",
    ),
    (
        snapshot(
            THREE,
            [guest(101, "pve1"), guest(102, "pve1")],
            resource_rules=[ha_together("keep", 101, 102), ha_apart("part", 101, 102)],
        ),
        Policy(),
        ("affinity vs anti-affinity", (101, 102), "HA resource-anti-affinity 'part' wins"),
        lambda after: after[101] != after[102],
        "HA resource-affinity positive and negative on the same guests: negative wins",
    ),
    (
        snapshot(
            THREE,
            [
                guest(101, "pve1", tags="plb_affinity_a;plb_anti_affinity_x"),
                guest(102, "pve2", tags="plb_affinity_a"),
                guest(103, "pve3", tags="plb_anti_affinity_x"),
            ],
            resource_rules=[ha_together("r", 102, 103)],
        ),
        Policy(),
        (
            "affinity vs anti-affinity",
            (101, 102, 103),
            "tag anti-affinity 'x' wins; HA resource-affinity 'r' + tag affinity 'a' is not",
        ),
        # a = {101, 102} and r = {102, 103} share 102, so together they bind 101 and 103
        # to one node, which x forbids: the merged group is judged, not each part alone
        lambda after: after[101] != after[103],
        "affinity groups that merge through a shared guest are judged as the merged group",
    ),
    (
        snapshot(
            THREE,
            [guest(101, "pve1", tags="plb_pin_pve1")],
            node_rules=[ha_nodes("ha", [101], {"pve2": 1}, strict=True)],
        ),
        Policy(),
        ("disjoint node restrictions", (101,), "HA node-affinity 'ha' wins (['pve2'])"),
        lambda after: after == {101: "pve2"},
        "a pin and a strict HA rule with no common node: the HA rule wins",
    ),
    (
        *_tag_pin_pool_pin(),
        ("disjoint node restrictions", (101,), "plb_pin tag wins (['pve1'])"),
        lambda after: after == {101: "pve1"},
        "a pin tag and a pool pin with no common node: the first rule read (the tag) wins",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", tags="plb_pin_pve9")]),
        Policy(),
        ("pin to unknown node", (101,), "may run anywhere"),
        lambda after: after == {101: "pve1"},
        "a pin to an unknown node is ignored and the guest may run anywhere",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", tags="plb_pin_pve9;plb_pin_pve3")]),
        Policy(),
        ("pin to unknown node", (101,), "those pins are ignored"),
        lambda after: after == {101: "pve3"},
        "a pin to an unknown node beside a known one keeps the known pin",
    ),
    (
        snapshot(THREE, [guest(101, "pve1", pool="web")]),
        policy(pools={"web": {"rule": "pin", "nodes": ["pve9"]}}),
        ("pin to unknown node", (101,), "ignored"),
        lambda after: after == {101: "pve1"},
        "a pool pin to an unknown node is a pin to an unknown node",
    ),
    (
        snapshot(
            THREE,
            [
                guest(101, "pve1", tags="plb_affinity_app;plb_pin_pve1"),
                guest(102, "pve2", tags="plb_affinity_app;plb_pin_pve2"),
            ],
        ),
        Policy(),
        ("affinity vs node restrictions", (101, 102), "node restrictions win"),
        lambda after: after == {101: "pve1", 102: "pve2"},
        "an affinity group whose members are pinned apart stays apart",
    ),
]


def per_node_count(after, vmids):
    chosen = set(vmids)
    counts: dict[str, int] = {}
    for v, n in after.items():
        if v in chosen:
            counts[n] = counts.get(n, 0) + 1
    return counts


@pytest.mark.parametrize(
    ("snap", "pol", "expected", "holds", "_"), CONFLICTS, ids=[c[4] for c in CONFLICTS]
)
def test_a_conflict_is_reported_with_its_resolution_and_the_plan_follows_it(
    snap, pol, expected, holds, _
):
    rule, vmids, resolution = expected
    result = run(snap, pol)  # must not raise
    found = [c for c in result.conflicts if c.rule == rule]
    assert found, [c.rule for c in result.conflicts]
    assert found[0].vmids == vmids
    assert resolution in found[0].resolution
    assert found[0].detail
    assert holds(placement(apply(snap, result))), result


def test_a_conflict_is_reported_by_build_rules_and_by_the_plan_alike():
    snap, pol = _tag_pin_pool_pin()
    assert tuple(build_rules(snap, pol).conflicts) == run(snap, pol).conflicts


DEGENERATE = [
    (snapshot([], []), "an empty cluster never raises"),
    (snapshot([], [guest(101, "pve1")]), "a guest and no nodes never raise"),
    (
        snapshot(nodes("pve1", "pve2"), [guest(101, "pve9"), guest(102, "pve1")]),
        "a guest on a node the snapshot does not list never raises",
    ),
    (
        snapshot(
            [node("pve1", maintenance=True), node("pve2", online=False)],
            [
                guest(101, "pve1", tags="plb_affinity_a;plb_anti_affinity_b"),
                guest(102, "pve1", tags="plb_affinity_a;plb_anti_affinity_b"),
                guest(103, "pve2", tags="plb_pin_pve1"),
            ],
        ),
        "a cluster where no node can take guests never raises",
    ),
    (
        snapshot(
            nodes("pve1", "pve2"),
            [guest(101, "pve1")],
            node_rules=[ha_nodes("ha", [101], {"pve9": 1}, strict=True)],
            resource_rules=[ha_apart("x", 101, 101)],
        ),
        "HA rules naming unknown nodes and one guest twice never raise",
    ),
]


@pytest.mark.parametrize(("snap", "_"), DEGENERATE, ids=[c[1] for c in DEGENERATE])
def test_odd_clusters_never_raise(snap, _):
    result = run(snap, Policy())
    assert all(m.source != m.target for m in result.moves)


def test_a_guest_on_a_node_the_snapshot_does_not_list_is_skipped_as_offline():
    snap = snapshot(nodes("pve1", "pve2"), [guest(101, "pve9")])
    result = run(snap, Policy())
    assert result.moves == ()
    assert [(s.vmid, s.reason.value) for s in result.skipped] == [(101, "source-node-offline")]


def test_a_guest_on_an_offline_node_is_skipped_not_moved():
    snap = snapshot(
        [node("pve1", online=False), *nodes("pve2", "pve3")],
        [guest(101, "pve1", tags="plb_pin_pve2")],
    )
    result = run(snap, Policy())
    assert result.moves == ()
    assert [(s.vmid, s.reason.value) for s in result.skipped] == [(101, "source-node-offline")]


def test_anti_affinity_counts_only_nodes_that_can_take_guests():
    # 3 members, 3 nodes, but pve3 is offline: 2 eligible nodes, so ceil(3 / 2) = 2 per node
    snap = snapshot(
        [*nodes("pve1", "pve2"), node("pve3", online=False)],
        [guest(v, "pve1", tags="plb_anti_affinity_a") for v in (101, 102, 103)],
    )
    result = run(snap, Policy())
    assert [c.rule for c in result.conflicts] == ["more anti-affinity members than nodes"]
    assert sorted(per_node(apply(snap, result), (101, 102, 103)).values()) == [1, 2]
