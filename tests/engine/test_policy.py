"""Policy.from_mapping: valid config becomes a Policy; every problem is reported at once,
each naming the key, the value given and what is allowed."""

from __future__ import annotations

import math

import pytest

from engine.policy import GIB, Automation, Policy, PolicyError, PoolPolicy, PoolRule, parse_size


def problems_of(mapping) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        Policy.from_mapping(mapping)
    return exc.value.problems


# -- valid input ---------------------------------------------------------------------------------


def test_no_mapping_and_an_empty_mapping_give_the_defaults():
    assert Policy.from_mapping(None) == Policy()
    assert Policy.from_mapping({}) == Policy()


VALID = [
    ({"cpu_weight": 1}, "cpu_weight", 1.0, "an int is accepted where a number is expected"),
    ({"margin": 0.01}, "margin", 0.01, "a float in range is kept"),
    ({"max_moves": 0}, "max_moves", 0, "zero moves per run is a valid way to plan nothing"),
    ({"allow_local_disks": True}, "allow_local_disks", True, "a boolean is kept"),
    ({"memory_reserve": "4GiB"}, "memory_reserve", 4 * GIB, "a size with a GiB unit is parsed"),
    ({"memory_reserve": "512 mib"}, "memory_reserve", 512 * 1024**2, "units match in any case"),
    ({"memory_reserve": "1.5G"}, "memory_reserve", int(1.5 * GIB), "fractional sizes are parsed"),
    ({"memory_reserve": 1024}, "memory_reserve", 1024, "a bare number is bytes"),
    ({"memory_reserve": "1T"}, "memory_reserve", 1024**4, "T means TiB"),
    (
        {"maintenance_nodes": ["pve3", "pve1"]},
        "maintenance_nodes",
        ("pve1", "pve3"),
        "maintenance nodes are kept sorted",
    ),
    (
        {"node_reserve": {"pve1": "8GiB", "pve2": 0}},
        "node_reserve",
        {"pve1": 8 * GIB, "pve2": 0},
        "per-node reserves are parsed as sizes",
    ),
    (
        {"pools": {"db": {"rule": "anti-affinity", "strict": False}}},
        "pools",
        {"db": PoolPolicy(PoolRule.ANTI_AFFINITY, (), False)},
        "a soft pool anti-affinity is read",
    ),
    (
        {"pools": {"web": {"rule": "pin", "nodes": ["pve1", "pve2"]}}},
        "pools",
        {"web": PoolPolicy(PoolRule.PIN, ("pve1", "pve2"), True)},
        "a pool pin is strict unless told otherwise",
    ),
    ({"automation": "auto"}, "automation", Automation.AUTO, "automation takes its enum value"),
]


@pytest.mark.parametrize(("mapping", "key", "value", "_"), VALID, ids=[c[3] for c in VALID])
def test_valid_values_are_read(mapping, key, value, _):
    assert getattr(Policy.from_mapping(mapping), key) == value


def test_a_node_reserve_beats_the_default_and_the_node_s_own_reserve_beats_both():
    pol = Policy.from_mapping({"memory_reserve": "2GiB", "node_reserve": {"pve1": "8GiB"}})
    assert pol.reserve_for("pve2") == 2 * GIB
    assert pol.reserve_for("pve1") == 8 * GIB
    assert pol.reserve_for("pve1", own=1 * GIB) == 1 * GIB


@pytest.mark.parametrize(
    ("raw", "size"),
    [("0", 0), ("1K", 1024), ("1KiB", 1024), ("2 M", 2 * 1024**2), ("3gib", 3 * GIB), (7.9, 7)],
    ids=[
        "zero is a size",
        "K is KiB",
        "KiB is binary",
        "a blank between number and unit is allowed",
        "lower case units are read",
        "a float of bytes is truncated",
    ],
)
def test_parse_size(raw, size):
    assert parse_size(raw) == size


# -- one problem at a time: key, value and what is allowed are all named ------------------------

INVALID = [
    (
        {"max_move": 3},
        ["max_move: unknown key", "max_moves"],
        "an unknown key is named and the known keys are listed",
    ),
    (
        {"cpu_weight": "high"},
        ["cpu_weight:", "'high'", "from 0 to 1"],
        "a string where a number belongs names the range",
    ),
    (
        {"memory_weight": True},
        ["memory_weight:", "True", "from 0 to 1"],
        "a boolean is not taken for a number",
    ),
    ({"margin": 2}, ["margin:", "2", "0..1"], "a number out of range names the range"),
    ({"margin": math.nan}, ["margin:", "nan", "0..1"], "NaN is out of every range"),
    (
        {"cooldown_backoff": 0.5},
        ["cooldown_backoff:", "0.5", "1..100"],
        "a back-off below 1 would shorten cooldowns and is refused",
    ),
    (
        {"max_moves": 2.5},
        ["max_moves:", "2.5", "whole number from 0 to 10000"],
        "a fraction is not a move count",
    ),
    (
        {"max_moves_per_node": -1},
        ["max_moves_per_node:", "-1", "0..10000"],
        "a negative move count is refused",
    ),
    (
        {"allow_local_disks": "yes"},
        ["allow_local_disks:", "'yes'", "true or false"],
        "yes is not a boolean",
    ),
    (
        {"memory_reserve": "lots"},
        ["memory_reserve:", "'lots'", "4GiB"],
        "an unreadable size shows an example of a good one",
    ),
    (
        {"memory_reserve": -1},
        ["memory_reserve:", "-1", "negative"],
        "a negative reserve is refused",
    ),
    (
        {"memory_reserve": "4PB"},
        ["memory_reserve:", "'4PB'", "TiB"],
        "an unknown unit lists the known ones",
    ),
    (
        {"node_reserve": ["pve1"]},
        ["node_reserve:", "['pve1']", "mapping of node name to size"],
        "node reserves must be a mapping",
    ),
    (
        {"node_reserve": {"pve1": "x"}},
        ["node_reserve.pve1:", "'x'"],
        "a bad per-node size names the node",
    ),
    (
        {"maintenance_nodes": "pve1"},
        ["maintenance_nodes:", "'pve1'", "list of node names"],
        "one node name must still be given as a list",
    ),
    ({"pools": ["web"]}, ["pools:", "['web']", "mapping"], "pools must be a mapping"),
    (
        {"pools": {"web": "pin"}},
        ["pools.web:", "'pin'", "'rule'"],
        "a pool must be a mapping with a rule",
    ),
    (
        {"pools": {"web": {"rule": "spread"}}},
        ["pools.web.rule:", "'spread'", "affinity, anti-affinity, pin"],
        "an unknown pool rule lists the rules",
    ),
    (
        {"pools": {"web": {"rule": "pin"}}},
        ["pools.web.nodes:", "at least one node"],
        "a pin without nodes is refused",
    ),
    (
        {"pools": {"web": {"rule": "affinity", "nodes": "pve1"}}},
        ["pools.web.nodes:", "'pve1'", "list of node names"],
        "pool nodes must be a list",
    ),
    (
        {"pools": {"web": {"rule": "affinity", "strict": "yes"}}},
        ["pools.web.strict:", "'yes'", "true or false"],
        "pool strictness must be a boolean",
    ),
    (
        {"pools": {"web": {"rule": "affinity", "spread": 2}}},
        ["pools.web.spread: unknown key", "nodes, rule, strict"],
        "an unknown pool key lists the known ones",
    ),
    (
        {"automation": "yolo"},
        ["automation:", "'yolo'", "manual, auto"],
        "an unknown automation level lists the levels",
    ),
    (
        {"cpu_weight": 0, "memory_weight": 0},
        ["cpu_weight, memory_weight:", "above 0"],
        "two zero weights leave nothing to balance",
    ),
]


@pytest.mark.parametrize(("mapping", "parts", "_"), INVALID, ids=[c[2] for c in INVALID])
def test_a_problem_names_key_value_and_what_is_allowed(mapping, parts, _):
    problems = problems_of(mapping)
    assert len(problems) == 1, problems
    for part in parts:
        assert part in problems[0]


def test_a_mapping_that_is_not_a_mapping_is_one_clear_problem():
    assert problems_of(["max_moves", 3]) == ["expected a mapping of keys, got list"]


# -- all at once ---------------------------------------------------------------------------------


def test_every_problem_is_reported_in_one_error_naming_the_source():
    bad = {
        "max_move": 1,
        "cpu_weight": "high",
        "margin": 5,
        "max_moves": 1.5,
        "allow_container_restart": "no",
        "memory_reserve": "lots",
        "node_reserve": {"pve1": -1},
        "maintenance_nodes": "pve1",
        "pools": {"web": {"rule": "spread"}},
        "automation": "yolo",
    }
    with pytest.raises(PolicyError) as exc:
        Policy.from_mapping(bad, source="proxflow.yaml")
    keys = sorted(p.split(":")[0] for p in exc.value.problems)
    assert keys == [
        "allow_container_restart",
        "automation",
        "cpu_weight",
        "maintenance_nodes",
        "margin",
        "max_move",
        "max_moves",
        "memory_reserve",
        "node_reserve.pve1",
        "pools.web.rule",
    ]
    text = str(exc.value)
    assert text.startswith("proxflow.yaml: 10 problem(s):\n")
    assert all(f"  - {p}" in text for p in exc.value.problems)
    assert isinstance(exc.value, ValueError)


def test_every_problem_of_one_pool_is_reported_at_once():
    # three independent mistakes in one pool spec: the rule, the nodes and strict
    problems = problems_of({"pools": {"web": {"rule": "spread", "nodes": "pve1", "strict": "y"}}})
    assert sorted(p.split(":")[0] for p in problems) == [
        "pools.web.nodes",
        "pools.web.rule",
        "pools.web.strict",
    ]


def test_zero_weights_are_reported_together_with_other_problems():
    problems = problems_of({"cpu_weight": 0, "memory_weight": 0, "max_moves": -1})
    assert sorted(p.split(":")[0] for p in problems) == [
        "cpu_weight, memory_weight",
        "max_moves",
    ]
