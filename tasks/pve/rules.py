"""HA placement rules (PVE 9 rules, PVE 8 groups) and HA maintenance, as engine rules.

PVE 8 groups become node-affinity rules the way PVE 9's own migration turns them into rules:
`ha-group-<name>`, restricted = strict. Disabled rules and rules PVE flags with `errors` are
not enforced by PVE, so the planner does not enforce them either (the latter are reported).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.model import NodeAffinityRule, ResourceAffinityRule

_SID = re.compile(r"^(?:vm|ct):(\d+)$")
_MAINTENANCE = re.compile(r"\bmaintenance\b")


@dataclass
class Rules:
    node_rules: list[NodeAffinityRule] = field(default_factory=list)
    resource_rules: list[ResourceAffinityRule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def seen_rows(self, ts: int) -> list[tuple[int, str, str, str]]:
        """(ts, kind, name, members as JSON) for the store's `rules_seen`."""
        rows = [
            (
                ts,
                "node-affinity",
                r.name,
                json.dumps({"vmids": list(r.vmids), "nodes": r.nodes, "strict": r.strict}),
            )
            for r in self.node_rules
        ]
        rows += [
            (
                ts,
                "resource-affinity",
                r.name,
                json.dumps({"vmids": list(r.vmids), "positive": r.positive}),
            )
            for r in self.resource_rules
        ]
        return rows


class _Bad(ValueError):
    pass


def _vmids(text: Any) -> tuple[int, ...]:
    if not isinstance(text, str):
        raise _Bad(f"resources {text!r} is not a list of vm:/ct: ids")
    out = []
    for sid in filter(None, (s.strip() for s in text.split(","))):
        m = _SID.match(sid)
        if m is None:
            raise _Bad(f"resource {sid!r} is not vm:<vmid> or ct:<vmid>")
        out.append(int(m[1]))
    return tuple(out)


def _nodes(text: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(text, str) or not text:
        raise _Bad(f"nodes {text!r} is not a list of node[:priority]")
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, prio = item.partition(":")
        if not name or (prio and not prio.isdigit()):
            raise _Bad(f"node entry {item!r} is not node[:priority]")
        out.append((name, int(prio) if prio else 0))  # PVE's default priority is 0
    return tuple(out)


def from_rules(items: Iterable[Any]) -> Rules:
    """PVE 9 `/cluster/ha/rules`."""
    out = Rules()
    for item in items:
        name = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(name, str):
            out.problems.append(f"HA rules: entry without a rule name, skipped: {item!r:.80}")
            continue
        if item.get("disable"):
            continue
        if item.get("errors"):
            out.problems.append(
                f"HA rule {name}: PVE marks it invalid and does not apply it ({item['errors']}); "
                "not enforced"
            )
            continue
        kind = item.get("type")
        try:
            if kind == "node-affinity":
                out.node_rules.append(
                    NodeAffinityRule(
                        name,
                        _vmids(item.get("resources")),
                        _nodes(item.get("nodes")),
                        strict=bool(item.get("strict")),
                    )
                )
            elif kind == "resource-affinity":
                affinity = item.get("affinity")
                if affinity not in ("positive", "negative"):
                    raise _Bad(f"affinity {affinity!r} is not positive or negative")
                out.resource_rules.append(
                    ResourceAffinityRule(
                        name, _vmids(item.get("resources")), positive=affinity == "positive"
                    )
                )
            else:
                out.problems.append(f"HA rule {name}: unknown type {kind!r}, skipped")
        except _Bad as bad:
            out.problems.append(f"HA rule {name}: {bad}, skipped")
    return out


def from_groups(groups: Iterable[Any], resources: Iterable[Any]) -> Rules:
    """PVE 8 `/cluster/ha/groups` plus the `group` of each `/cluster/ha/resources` entry."""
    out = Rules()
    members: dict[str, list[int]] = {}
    for res in resources:
        if not isinstance(res, dict) or not res.get("group"):
            continue
        try:
            members.setdefault(str(res["group"]), []).extend(_vmids(res.get("sid")))
        except _Bad as bad:
            out.problems.append(f"HA resource {res.get('sid')!r}: {bad}, skipped")
    for group in groups:
        name = group.get("group") if isinstance(group, dict) else None
        if not isinstance(name, str):
            out.problems.append(f"HA groups: entry without a group name, skipped: {group!r:.80}")
            continue
        if name not in members:
            continue
        try:
            nodes = _nodes(group.get("nodes"))
        except _Bad as bad:
            out.problems.append(f"HA group {name}: {bad}, skipped")
            continue
        out.node_rules.append(
            NodeAffinityRule(
                f"ha-group-{name}",
                tuple(sorted(members[name])),
                nodes,
                strict=bool(group.get("restricted")),
            )
        )
    return out


def maintenance_nodes(status: Iterable[Any]) -> set[str]:
    """Nodes whose HA LRM is in maintenance mode, from `/cluster/ha/status/current`."""
    out = set()
    for item in status:
        if not isinstance(item, dict) or item.get("type") != "lrm":
            continue
        node = item.get("node")
        mode = item.get("mode")
        text = str(item.get("status") or "")
        if isinstance(node, str) and (mode == "maintenance" or _MAINTENANCE.search(text)):
            out.add(node)
    return out
