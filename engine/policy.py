"""The balancing policy: built from a plain mapping, validated in one pass.

Every problem in the mapping is collected and reported together (key, value, what is
allowed), so an operator fixes a config file once instead of once per error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

GIB = 1024**3
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|K|KiB|M|MiB|G|GiB|T|TiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": GIB, "gib": GIB}
_SIZE_UNITS.update({"t": 1024**4, "tib": 1024**4})


class PoolRule(StrEnum):
    AFFINITY = "affinity"
    ANTI_AFFINITY = "anti-affinity"
    PIN = "pin"


class Automation(StrEnum):
    MANUAL = "manual"  # plan only
    AUTO = "auto"  # plan and execute


@dataclass(frozen=True)
class PoolPolicy:
    rule: PoolRule
    nodes: tuple[str, ...] = ()
    strict: bool = True


@dataclass(frozen=True)
class Policy:
    cpu_weight: float = 0.5
    memory_weight: float = 0.5
    target_imbalance: float = 0.03  # balancing stops below this spread
    # a move's gain is the node load it takes off the spread (N × the drop in imbalance);
    # it must beat the move's cost (per GiB of memory and local disk moved) by the margin
    margin: float = 0.005
    migration_cost_per_gib: float = 0.001
    local_disk_cost_factor: float = 0.25  # a GiB of local disk costs this many GiB of memory
    soft_rule_penalty: float = 0.05  # node load a soft rule is worth, per breach
    memory_reserve: int = 2 * GIB
    node_reserve: Mapping[str, int] = field(default_factory=dict)
    cpu_overcommit: float = 4.0  # max configured vCPUs per logical CPU
    max_cpu_load: float = 0.9  # predicted p90 CPU a target may reach, fraction of its CPUs
    max_moves: int = 10
    max_moves_per_node: int = 4
    cooldown_minutes: float = 60.0
    cooldown_backoff: float = 2.0
    allow_local_disks: bool = False
    allow_container_restart: bool = False
    maintenance_nodes: tuple[str, ...] = ()
    pools: Mapping[str, PoolPolicy] = field(default_factory=dict)
    automation: Automation = Automation.MANUAL

    @staticmethod
    def from_mapping(data: Mapping[str, Any] | None, source: str = "policy") -> Policy:
        return _build(data or {}, source)

    def reserve_for(self, node: str, own: int | None = None) -> int:
        if own is not None:
            return own
        return self.node_reserve.get(node, self.memory_reserve)


class PolicyError(ValueError):
    """Every problem found in a policy mapping."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


_NUMBERS: dict[str, tuple[float, float]] = {
    "cpu_weight": (0.0, 1.0),
    "memory_weight": (0.0, 1.0),
    "target_imbalance": (0.0, 1.0),
    "margin": (0.0, 1.0),
    "migration_cost_per_gib": (0.0, 1.0),
    "local_disk_cost_factor": (0.0, 100.0),
    "soft_rule_penalty": (0.0, 1.0),
    "cpu_overcommit": (0.1, 64.0),
    "max_cpu_load": (0.05, 4.0),
    "cooldown_minutes": (0.0, 7 * 24 * 60.0),
    "cooldown_backoff": (1.0, 100.0),
}
_INTS: dict[str, tuple[int, int]] = {"max_moves": (0, 10_000), "max_moves_per_node": (0, 10_000)}
_BOOLS = ("allow_local_disks", "allow_container_restart")
_KNOWN = {
    *_NUMBERS,
    *_INTS,
    *_BOOLS,
    "memory_reserve",
    "node_reserve",
    "maintenance_nodes",
    "pools",
    "automation",
}


def parse_size(value: Any) -> int:
    """Bytes from a non-negative int or a string like '4GiB' (binary units)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected bytes or a size like '4GiB'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return int(value)
    match = _SIZE.match(value)
    if not match:
        raise ValueError("expected bytes or a size like '4GiB' (units B, KiB, MiB, GiB, TiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])


def _build(data: Mapping[str, Any], source: str) -> Policy:
    problems: list[str] = []
    out: dict[str, Any] = {}
    if not isinstance(data, Mapping):
        raise PolicyError(source, [f"expected a mapping of keys, got {type(data).__name__}"])
    for key in sorted(set(data) - _KNOWN):
        problems.append(f"{key}: unknown key; known keys are {', '.join(sorted(_KNOWN))}")
    for key, (lo, hi) in _NUMBERS.items():
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{key}: expected a number from {lo:g} to {hi:g}, got {value!r}")
            elif not lo <= value <= hi:
                problems.append(f"{key}: {value!r} is outside {lo:g}..{hi:g}")
            else:
                out[key] = float(value)
    for key, (ilo, ihi) in _INTS.items():
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(
                    f"{key}: expected a whole number from {ilo} to {ihi}, got {value!r}"
                )
            elif not ilo <= value <= ihi:
                problems.append(f"{key}: {value!r} is outside {ilo}..{ihi}")
            else:
                out[key] = value
    for key in _BOOLS:
        if key in data:
            if not isinstance(data[key], bool):
                problems.append(f"{key}: expected true or false, got {data[key]!r}")
            else:
                out[key] = data[key]
    if "memory_reserve" in data:
        try:
            out["memory_reserve"] = parse_size(data["memory_reserve"])
        except ValueError as exc:
            problems.append(f"memory_reserve: {exc}, got {data['memory_reserve']!r}")
    if "node_reserve" in data:
        out["node_reserve"] = _node_reserve(data["node_reserve"], problems)
    if "maintenance_nodes" in data:
        nodes = data["maintenance_nodes"]
        if not isinstance(nodes, list | tuple) or not all(isinstance(n, str) for n in nodes):
            problems.append(f"maintenance_nodes: expected a list of node names, got {nodes!r}")
        else:
            out["maintenance_nodes"] = tuple(sorted(nodes))
    if "pools" in data:
        out["pools"] = _pools(data["pools"], problems)
    if "automation" in data:
        try:
            out["automation"] = Automation(data["automation"])
        except ValueError:
            allowed = ", ".join(a.value for a in Automation)
            problems.append(f"automation: {data['automation']!r} is not one of {allowed}")
    weights = (out.get("cpu_weight", 0.5), out.get("memory_weight", 0.5))
    if sum(weights) <= 0:
        problems.append("cpu_weight, memory_weight: at least one weight must be above 0")
    if problems:
        raise PolicyError(source, problems)
    return Policy(**out)


def _node_reserve(value: Any, problems: list[str]) -> dict[str, int]:
    if not isinstance(value, Mapping):
        problems.append(f"node_reserve: expected a mapping of node name to size, got {value!r}")
        return {}
    out: dict[str, int] = {}
    for node, size in value.items():
        try:
            out[str(node)] = parse_size(size)
        except ValueError as exc:
            problems.append(f"node_reserve.{node}: {exc}, got {size!r}")
    return out


def _pools(value: Any, problems: list[str]) -> dict[str, PoolPolicy]:
    if not isinstance(value, Mapping):
        problems.append(f"pools: expected a mapping of pool name to rule, got {value!r}")
        return {}
    out: dict[str, PoolPolicy] = {}
    allowed = ", ".join(r.value for r in PoolRule)
    for name, spec in value.items():
        where = f"pools.{name}"
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: expected a mapping with 'rule', got {spec!r}")
            continue
        before = len(problems)
        for key in sorted(set(spec) - {"rule", "nodes", "strict"}):
            problems.append(f"{where}.{key}: unknown key; known keys are nodes, rule, strict")
        rule: PoolRule | None = None
        try:
            rule = PoolRule(str(spec.get("rule")))
        except ValueError:
            problems.append(f"{where}.rule: {spec.get('rule')!r} is not one of {allowed}")
        nodes = spec.get("nodes", [])
        if not isinstance(nodes, list | tuple) or not all(isinstance(n, str) for n in nodes):
            problems.append(f"{where}.nodes: expected a list of node names, got {nodes!r}")
            nodes = []
        elif rule is PoolRule.PIN and not nodes:
            problems.append(f"{where}.nodes: a pin rule needs at least one node")
        strict = spec.get("strict", True)
        if not isinstance(strict, bool):
            problems.append(f"{where}.strict: expected true or false, got {strict!r}")
        if rule is not None and len(problems) == before:
            out[str(name)] = PoolPolicy(rule, tuple(nodes), strict)
    return out
