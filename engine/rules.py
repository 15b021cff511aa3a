"""Placement rules gathered from tags, pools, HA rules and policy, with conflicts resolved.

The result says, per guest, where it may run (hard), where it would rather run (soft), and
which guests must share or avoid a node. Contradictions never raise: each is reported with
the way the planner resolves it, and the rule set is relaxed just enough to be satisfiable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.model import ClusterSnapshot, Guest
from engine.plan import Conflict
from engine.policy import Policy, PoolRule
from engine.tags import parse_tags


@dataclass(frozen=True)
class Group:
    """Guests that must (or should) share a node, or must (or should) avoid each other."""

    name: str
    vmids: tuple[int, ...]
    together: bool
    strict: bool = True
    max_per_node: int = 1  # anti-affinity only; >1 when there are more members than nodes


@dataclass
class RuleSet:
    allowed: dict[int, frozenset[str]] = field(default_factory=dict)  # absent: anywhere
    allowed_reason: dict[int, str] = field(default_factory=dict)
    preferred: dict[int, dict[str, int]] = field(default_factory=dict)  # node -> priority
    groups: list[Group] = field(default_factory=list)
    ignored: set[int] = field(default_factory=set)
    conflicts: list[Conflict] = field(default_factory=list)
    maintenance: frozenset[str] = frozenset()
    _index: dict[int, list[int]] = field(default_factory=dict, repr=False)
    _index_size: int = field(default=-1, repr=False)

    def groups_of_any(self, vmids: list[int]) -> list[Group]:
        """The groups any of `vmids` belongs to, in rule order (indexed on first use)."""
        if self._index_size != len(self.groups):
            self._index = {}
            for position, group in enumerate(self.groups):
                for v in group.vmids:
                    self._index.setdefault(v, []).append(position)
            self._index_size = len(self.groups)
        positions = sorted({p for v in vmids for p in self._index.get(v, ())})
        return [self.groups[p] for p in positions]

    def may_run_on(self, vmid: int, node: str) -> bool:
        allowed = self.allowed.get(vmid)
        return allowed is None or node in allowed


def build_rules(snapshot: ClusterSnapshot, policy: Policy) -> RuleSet:
    rules = RuleSet()
    node_names = {n.name for n in snapshot.nodes}
    by_lower = {n.lower(): n for n in node_names}
    guests = sorted(snapshot.guests, key=lambda g: g.vmid)
    known = {g.vmid for g in guests}
    rules.maintenance = frozenset(
        {n.name for n in snapshot.nodes if n.maintenance} | set(policy.maintenance_nodes)
    )
    eligible = [n.name for n in snapshot.nodes if n.online and n.name not in rules.maintenance]

    tag_groups: dict[tuple[str, bool], list[int]] = {}
    for g in guests:
        tags = parse_tags(g.tags)
        if tags.ignore:
            rules.ignored.add(g.vmid)
        for name in tags.affinity:
            tag_groups.setdefault((name, True), []).append(g.vmid)
        for name in tags.anti_affinity:
            tag_groups.setdefault((name, False), []).append(g.vmid)
        if tags.pins:
            _pin(rules, g, tags.pins, by_lower)

    for (name, together), vmids in sorted(tag_groups.items()):
        kind = "affinity" if together else "anti-affinity"
        rules.groups.append(Group(f"tag {kind} '{name}'", tuple(vmids), together))

    for pool, pp in sorted(policy.pools.items()):
        members = tuple(g.vmid for g in guests if g.pool == pool)
        if not members:
            continue
        if pp.rule is PoolRule.PIN:
            valid = _known_nodes(rules, f"pool '{pool}' pin", members, pp.nodes, node_names)
            for vmid in members:
                if not valid:
                    continue
                if pp.strict:
                    _restrict(rules, vmid, frozenset(valid), f"pool '{pool}' pin")
                else:
                    rules.preferred.setdefault(vmid, {}).update({n: 1 for n in valid})
        else:
            together = pp.rule is PoolRule.AFFINITY
            kind = "affinity" if together else "anti-affinity"
            rules.groups.append(Group(f"pool {kind} '{pool}'", members, together, pp.strict))

    for nrule in sorted(snapshot.node_rules, key=lambda r: r.name):
        members = tuple(v for v in nrule.vmids if v in known)
        listed = tuple(n for n, _ in nrule.nodes)
        valid = _known_nodes(rules, f"HA node-affinity '{nrule.name}'", members, listed, node_names)
        nodes = {n: p for n, p in nrule.nodes if n in valid}
        for vmid in members:
            if not nodes:
                continue
            if nrule.strict:
                _restrict(rules, vmid, frozenset(nodes), f"HA node-affinity '{nrule.name}'")
            rules.preferred.setdefault(vmid, {}).update(nodes)

    for rrule in sorted(snapshot.resource_rules, key=lambda r: r.name):
        members = tuple(v for v in rrule.vmids if v in known)
        if len(members) > 1:
            kind = "affinity" if rrule.positive else "anti-affinity"
            rules.groups.append(
                Group(f"HA resource-{kind} '{rrule.name}'", members, rrule.positive)
            )

    _resolve_conflicts(rules, snapshot, policy, eligible)
    return rules


def _pin(rules: RuleSet, guest: Guest, pins: tuple[str, ...], by_lower: dict[str, str]) -> None:
    resolved = {by_lower[p] for p in pins if p in by_lower}
    unknown = sorted(p for p in pins if p not in by_lower)
    if unknown:
        rules.conflicts.append(
            Conflict(
                "pin to unknown node",
                (guest.vmid,),
                f"guest {guest.vmid} is pinned to {', '.join(unknown)}, which is not a node",
                "those pins are ignored" + ("" if resolved else "; the guest may run anywhere"),
            )
        )
    if resolved:
        _restrict(rules, guest.vmid, frozenset(resolved), "plb_pin tag")


def _restrict(rules: RuleSet, vmid: int, nodes: frozenset[str], why: str) -> None:
    current = rules.allowed.get(vmid)
    if current is None:
        rules.allowed[vmid] = nodes
        rules.allowed_reason[vmid] = why
        return
    both = current & nodes
    if both:
        rules.allowed[vmid] = both
        rules.allowed_reason[vmid] = f"{rules.allowed_reason[vmid]} and {why}"
        return
    # disjoint restrictions: the HA rule wins, since PVE's HA manager enforces it anyway
    winner, loser = (nodes, current) if why.startswith("HA") else (current, nodes)
    win_why = why if winner is nodes else rules.allowed_reason[vmid]
    rules.conflicts.append(
        Conflict(
            "disjoint node restrictions",
            (vmid,),
            f"guest {vmid}: {rules.allowed_reason[vmid]} allows {sorted(current)} but "
            f"{why} allows {sorted(nodes)}",
            f"{win_why} wins ({sorted(winner)}); {sorted(loser)} is ignored",
        )
    )
    rules.allowed[vmid] = winner
    rules.allowed_reason[vmid] = win_why


def _resolve_conflicts(
    rules: RuleSet, snapshot: ClusterSnapshot, policy: Policy, eligible: list[str]
) -> None:
    capacity = {
        n.name: n.memory - policy.reserve_for(n.name, n.reserve)
        for n in snapshot.nodes
        if n.name in eligible
    }
    biggest = max(capacity.values(), default=0)
    apart: list[Group] = []
    together: list[Group] = []
    for group in rules.groups:
        (together if group.together else apart).append(group)
    # groups sharing a guest bind all their members to one node: judge them as that one group
    together = _merge_overlapping(together)

    # anti-affinity beats affinity for the same pair: separation protects availability
    kept_together: list[Group] = []
    for tg in together:
        clash = [
            ag for ag in apart if ag.strict and tg.strict and len(set(ag.vmids) & set(tg.vmids)) > 1
        ]
        if clash:
            rules.conflicts.append(
                Conflict(
                    "affinity vs anti-affinity",
                    tg.vmids,
                    f"{tg.name} keeps together guests that {clash[0].name} keeps apart",
                    f"{clash[0].name} wins; {tg.name} is not enforced",
                )
            )
            continue
        mem = sum(snapshot.forecast(v).mem_p90 for v in tg.vmids)
        if tg.strict and mem > biggest:
            rules.conflicts.append(
                Conflict(
                    "affinity group larger than any node",
                    tg.vmids,
                    f"{tg.name} needs {mem / 1024**3:.1f} GiB (p90) but the largest node "
                    f"offers {biggest / 1024**3:.1f} GiB",
                    "members are not gathered; each is placed on its own",
                )
            )
            continue
        common = _common_allowed(rules, tg.vmids, eligible)
        if tg.strict and not common:
            rules.conflicts.append(
                Conflict(
                    "affinity vs node restrictions",
                    tg.vmids,
                    f"no node is allowed for every member of {tg.name}",
                    "node restrictions win; members are not gathered",
                )
            )
            continue
        kept_together.append(tg)

    kept_apart: list[Group] = []
    for ag in apart:
        if not ag.strict:
            kept_apart.append(ag)
            continue
        if len(ag.vmids) > len(eligible) > 0:
            per_node = math.ceil(len(ag.vmids) / len(eligible))
            rules.conflicts.append(
                Conflict(
                    "more anti-affinity members than nodes",
                    ag.vmids,
                    f"{ag.name} has {len(ag.vmids)} members but only {len(eligible)} nodes "
                    "can take guests",
                    f"spread as evenly as possible: at most {per_node} per node",
                )
            )
            ag = Group(ag.name, ag.vmids, False, True, per_node)
        stuck = _unseparable(rules, ag, eligible)
        if stuck:
            rules.conflicts.append(
                Conflict(
                    "pin vs anti-affinity",
                    stuck,
                    f"node restrictions leave guests {', '.join(map(str, stuck))} of {ag.name} "
                    "no node apart from the other members",
                    "node restrictions win; these guests are exempt from the anti-affinity",
                )
            )
            members = tuple(v for v in ag.vmids if v not in stuck)
            if len(members) < 2:
                continue
            ag = Group(ag.name, members, False, True, ag.max_per_node)
        kept_apart.append(ag)
    rules.groups = kept_together + kept_apart


def _known_nodes(
    rules: RuleSet, what: str, vmids: tuple[int, ...], nodes: tuple[str, ...], known: set[str]
) -> tuple[str, ...]:
    """The listed nodes that exist; the others are reported and ignored."""
    valid = tuple(n for n in nodes if n in known)
    unknown = sorted(set(nodes) - known)
    if unknown and vmids:
        rules.conflicts.append(
            Conflict(
                "pin to unknown node",
                vmids,
                f"{what} names {', '.join(unknown)}, which is not a node",
                "those nodes are ignored" + ("" if valid else "; the rule is not enforced"),
            )
        )
    return valid


def _merge_overlapping(groups: list[Group]) -> list[Group]:
    """Affinity groups sharing a guest must all share one node: merge them into one."""
    merged: list[Group] = []
    for group in groups:
        if not group.strict:
            merged.append(group)
            continue
        members = set(group.vmids)
        names = [group.name]
        rest: list[Group] = []
        for other in merged:
            if other.strict and members.intersection(other.vmids):
                members.update(other.vmids)
                names.append(other.name)
            else:
                rest.append(other)
        merged = [*rest, Group(" + ".join(sorted(names)), tuple(sorted(members)), True)]
    return merged


def _common_allowed(rules: RuleSet, vmids: tuple[int, ...], eligible: list[str]) -> set[str]:
    common = set(eligible)
    for v in vmids:
        allowed = rules.allowed.get(v)
        if allowed is not None:
            common &= allowed
    return common


def _unseparable(rules: RuleSet, group: Group, eligible: list[str]) -> tuple[int, ...]:
    """Members left over when each gets its own node slot (bipartite matching, members in
    vmid order), i.e. the fewest guests that must be exempted for the rest to be apart."""
    slots = [n for n in sorted(eligible) for _ in range(group.max_per_node)]
    match: dict[int, int] = {}  # slot index -> vmid

    def augment(v: int, seen: set[int]) -> bool:
        allowed = rules.allowed.get(v)
        for i, node in enumerate(slots):
            if i in seen or (allowed is not None and node not in allowed):
                continue
            seen.add(i)
            if i not in match or augment(match[i], seen):
                match[i] = v
                return True
        return False

    return tuple(v for v in group.vmids if not augment(v, set()))
