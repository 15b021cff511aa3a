"""Seeded random Proxmox clusters for the planner benchmark (and for tests that want many).

`generate(seed)` builds one `Case`: an engine `ClusterSnapshot` with forecasts, plus the
`Policy` it is planned under (the benchmark policy, with this cluster's maintenance nodes when
they come from config). The same seed always gives the same cluster.

What a cluster looks like:

- 3-16 nodes from one to three hardware generations (16-128 CPUs, 64 GiB-1 TiB), some with
  their own memory reserve;
- 5-20 guests per node (hot nodes 12-19, the rest 6-12; a guest placed to break a rule can
  shift that by one or two; a maintenance node being drained keeps 1-3), skewed: a few *hot*
  nodes are packed (memory and CPU) while the rest idle, so there is real balancing to do;
- memory always fits (p90 within capacity minus reserve on every node), and vCPUs stay within
  the overcommit cap;
- forecasts with p90 >= mean for CPU and memory; a few stopped guests (no load);
- some containers, locked guests and guests with local disks; one to three passthrough guests;
- ProxLB tags written the way people write them (mixed case, `;`/`,`/space separators):
  `plb_anti_affinity_*`, `plb_affinity_*`, `plb_pin_*`, `plb_ignore[_*]`;
- PVE 9 HA rules: node-affinity (strict and soft, with priorities) and resource-affinity
  (positive and negative);
- sometimes a maintenance node (flagged on the node, or named in the policy).

Rules go to disjoint sets of guests and never contradict each other, so every cluster has a
placement that keeps every hard rule. Most rules hold in the starting placement; at most one
of each kind (pin, strict HA node-affinity, anti-affinity, affinity) starts broken, and a
maintenance node holds at most three movable guests, so all repairs fit well inside a budget
of 10 moves.

`generate_large(nodes, guests, seed)` builds the same kind of cluster at a fixed size for the
scaling runs (rules scaled with the guest count).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from engine import (
    ClusterSnapshot,
    Forecast,
    Guest,
    GuestKind,
    Node,
    NodeAffinityRule,
    Policy,
    ResourceAffinityRule,
)

GIB = 1024**3

# The policy every planner in the benchmark is held to: the same move budget for all three,
# a per-node budget generous enough not to bind, containers may restart-migrate (ProxLB moves
# them too), local disks may not move. No early stop at a target imbalance: the comparison is
# of how far each planner gets with the same budget (the exact planner has no such stop).
BENCH_POLICY = Policy(
    max_moves=10, max_moves_per_node=10, allow_container_restart=True, target_imbalance=0.0
)

# (logical CPUs, memory GiB): hardware generations a cluster is built from
PROFILES: tuple[tuple[int, int], ...] = (
    (16, 64),
    (24, 128),
    (32, 128),
    (32, 256),
    (48, 256),
    (64, 384),
    (64, 512),
    (96, 768),
    (128, 1024),
)


@dataclass(frozen=True)
class Case:
    seed: int
    snapshot: ClusterSnapshot
    policy: Policy
    broken: tuple[str, ...] = ()  # rules that start out broken (what repairs must fix)

    @property
    def maintenance(self) -> tuple[str, ...]:
        nodes = {n.name for n in self.snapshot.nodes if n.maintenance}
        return tuple(sorted(nodes | set(self.policy.maintenance_nodes)))


def cases(count: int, seed: int = 0, policy: Policy = BENCH_POLICY) -> Iterator[Case]:
    """`count` clusters with seeds seed, seed+1, ..."""
    for i in range(count):
        yield generate(seed + i, policy)


@dataclass
class _Draft:
    """A guest being built: its placement and rule fields can still change."""

    vmid: int
    node: int
    kind: GuestKind
    vcpus: int
    mem_max: int
    mem_used: int
    cpu_used: float
    running: bool
    forecast: tuple[float, float, float, float]  # cpu, cpu_p90, mem, mem_p90
    tags: list[str] = field(default_factory=list)
    lock: str | None = None
    local_resources: tuple[str, ...] = ()
    local_disk_bytes: int = 0
    ha: bool = False
    ruled: bool = False  # already carries a placement rule (rules go to disjoint guests)

    @property
    def mem_p90(self) -> float:
        return self.forecast[3]

    @property
    def cpu_p90(self) -> float:
        return self.forecast[1]

    @property
    def movable(self) -> bool:
        return not (self.lock or self.local_resources or self.local_disk_bytes or self.ruled)


class _Builder:
    def __init__(self, rng: random.Random, policy: Policy) -> None:
        self.rng = rng
        self.policy = policy
        self.nodes: list[Node] = []
        self.guests: list[_Draft] = []
        self.next_vmid = 100
        self.broken: list[str] = []

    # -- nodes --------------------------------------------------------------------------
    def make_nodes(self, count: int, min_cpus: int = 0) -> None:
        rng = self.rng
        profiles = [p for p in PROFILES if p[0] >= min_cpus]
        generations = rng.sample(profiles, k=min(len(profiles), rng.randint(1, 3)))
        for i in range(count):
            cpus, mem = rng.choice(generations)
            reserve = rng.choice([None, None, None, 4 * GIB, 8 * GIB])
            self.nodes.append(Node(f"pve{i + 1:02d}", cpus, mem * GIB, reserve=reserve))

    def limit(self, i: int) -> float:
        n = self.nodes[i]
        return float(n.memory - self.policy.reserve_for(n.name, n.reserve))

    # -- guests -------------------------------------------------------------------------
    def fill(self, i: int, count: int, mem_fill: float, busy: float) -> None:
        """Put `count` guests on node `i` using about `mem_fill` of its memory limit (p90)
        and CPU around `busy` of the node (mean)."""
        rng = self.rng
        node = self.nodes[i]
        budget = mem_fill * self.limit(i)
        # guest sizes scatter around an even share of the budget (lognormal, heavy tail)
        weights = [rng.lognormvariate(0.0, 0.8) for _ in range(count)]
        scale = budget / sum(weights)
        cpu_weights = [rng.lognormvariate(0.0, 0.6) for _ in range(count)]
        cpu_scale = busy * node.cpus / sum(cpu_weights)
        vcpu_room = int(0.75 * self.policy.cpu_overcommit * node.cpus)
        for w, cw in zip(weights, cpu_weights, strict=True):
            mem_p90 = max(w * scale, 0.25 * GIB)
            running = rng.random() > 0.05
            kind = GuestKind.LXC if rng.random() < 0.15 else GuestKind.QEMU
            mem_mean = mem_p90 / rng.uniform(1.0, 1.25)
            mem_max = int(math.ceil(mem_p90 * rng.uniform(1.0, 1.5) / (GIB / 4)) * (GIB / 4))
            mem_used = int(mem_mean * rng.uniform(0.85, 1.1))
            cpu = cw * cpu_scale
            cpu_p90 = cpu * rng.uniform(1.0, 1.6)
            vcpus = max(1, min(2 ** round(math.log2(max(cpu_p90 * 1.5, 1))), node.cpus // 2))
            vcpus = min(vcpus, max(1, vcpu_room // count))
            cpu = min(cpu, float(vcpus))
            cpu_p90 = max(cpu, min(cpu_p90, float(vcpus)))
            cpu_used = cpu * rng.uniform(0.8, 1.2)
            forecast = (cpu, cpu_p90, mem_mean, mem_p90) if running else (0.0, 0.0, 0.0, 0.0)
            self.guests.append(
                _Draft(
                    vmid=self.next_vmid,
                    node=i,
                    kind=kind,
                    vcpus=vcpus,
                    mem_max=mem_max,
                    mem_used=mem_used if running else 0,
                    cpu_used=min(cpu_used, float(vcpus)) if running else 0.0,
                    running=running,
                    forecast=forecast,
                )
            )
            self.next_vmid += 1

    def on(self, i: int) -> list[_Draft]:
        return [g for g in self.guests if g.node == i]

    def mem_p90(self, i: int) -> float:
        return sum(g.mem_p90 for g in self.guests if g.node == i)

    def free(self, i: int) -> float:
        return self.limit(i) - self.mem_p90(i)

    def vcpus(self, i: int) -> int:
        return sum(g.vcpus for g in self.guests if g.node == i and g.running)

    def fits(self, g: _Draft, i: int) -> bool:
        if g.node == i:
            return True
        vcpu_ok = self.vcpus(i) + (g.vcpus if g.running else 0) <= (
            self.policy.cpu_overcommit * self.nodes[i].cpus
        )
        return self.free(i) >= g.mem_p90 and vcpu_ok

    def pick(self, pool: list[_Draft], k: int) -> list[_Draft]:
        """k distinct running rule-free guests from `pool` (fewer if there are not enough)."""
        free = [g for g in pool if g.running and g.movable and not g.tags]
        return self.rng.sample(free, k=min(k, len(free)))


def _tag_text(rng: random.Random, tags: list[str]) -> tuple[str, ...]:
    """Tags as operators write them: mostly PVE's lower-case `;` list, sometimes not."""
    if not tags:
        return ()
    style = rng.random()
    if style < 0.15:
        tags = [t.upper() if rng.random() < 0.5 else t.title() for t in tags]
    if style < 0.3 and len(tags) > 1:
        return (rng.choice([";", ",", " ", ", "]).join(tags),)
    return tuple(tags)


def generate(
    seed: int,
    policy: Policy = BENCH_POLICY,
    *,
    nodes: int | None = None,
    guests: int | None = None,
) -> Case:
    """One random cluster. `nodes` and `guests` fix the size (for scaling runs: `guests` is
    exact, spread over the nodes with the same skew); by default a cluster has 3-16 nodes and
    about 5-20 guests per node."""
    rng = random.Random(seed)
    b = _Builder(rng, policy)
    n_nodes = nodes if nodes is not None else rng.randint(3, 16)
    # large clusters hold 50-150 guests per node: only big hosts keep vCPUs under the cap
    b.make_nodes(n_nodes, min_cpus=64 if guests is not None else 0)
    order = list(range(n_nodes))
    rng.shuffle(order)

    # maintenance: sometimes one node, flagged on the node or named in the policy
    maint: int | None = None
    if n_nodes >= 3 and rng.random() < 0.3:
        maint = order.pop()
    n_hot = rng.randint(1, max(1, len(order) // 3))
    n_maint = rng.randint(1, 3) if maint is not None else 0
    hot = set(order[:n_hot])

    # guests per node: hot nodes are packed, the rest idle
    if guests is None:
        counts = {i: rng.randint(12, 19) if i in hot else rng.randint(6, 12) for i in order}
    else:
        shares = {i: rng.uniform(1.5, 2.5) if i in hot else rng.uniform(0.5, 1.2) for i in order}
        total = sum(shares.values())
        left = guests - n_maint
        counts = {i: max(5, int(left * s / total)) for i, s in shares.items()}
        for i in sorted(order, key=lambda i: -shares[i])[: max(0, left - sum(counts.values()))]:
            counts[i] += 1  # hand out what rounding down left over, hottest first
    for i in order:
        if i in hot:
            b.fill(i, counts[i], rng.uniform(0.7, 0.88), rng.uniform(0.45, 0.75))
        else:
            b.fill(i, counts[i], rng.uniform(0.15, 0.45), rng.uniform(0.05, 0.3))
    if maint is not None:
        # a node being drained: a few guests left, at most three of them movable
        b.fill(maint, n_maint, rng.uniform(0.05, 0.15), rng.uniform(0.02, 0.1))

    scale = max(1, (guests or 0) // 400)  # more rules on the large clusters
    movable_nodes = [i for i in range(n_nodes) if i != maint]
    _passthrough_and_friends(b, rng, maint, scale)
    _ignore(b, rng, movable_nodes, scale)
    for _ in range(rng.randint(0, 3) * scale):
        _anti_affinity(b, rng, movable_nodes)
    for _ in range(rng.randint(0, 2) * scale):
        _affinity(b, rng, movable_nodes)
    for _ in range(rng.randint(0, 3) * scale):
        _pin(b, rng, movable_nodes)
    node_rules = [_ha_node_rule(b, rng, movable_nodes, k) for k in range(rng.randint(0, 2) * scale)]
    resource_rules = [
        _ha_resource_rule(b, rng, movable_nodes, k) for k in range(rng.randint(0, 2) * scale)
    ]

    maintenance_nodes: tuple[str, ...] = ()
    node_list = list(b.nodes)
    if maint is not None:
        if rng.random() < 0.5:
            node_list[maint] = replace(node_list[maint], maintenance=True)
        else:
            maintenance_nodes = (node_list[maint].name,)
    snapshot = _snapshot(b, node_list, [r for r in node_rules if r], resource_rules, rng)
    case_policy = replace(policy, maintenance_nodes=maintenance_nodes)
    return Case(seed, snapshot, case_policy, tuple(b.broken))


def generate_large(nodes: int, guests: int, seed: int = 0, policy: Policy = BENCH_POLICY) -> Case:
    """A cluster of exactly `nodes` nodes and about `guests` guests, for scaling runs."""
    return generate(seed, policy, nodes=nodes, guests=guests)


# -- rules ------------------------------------------------------------------------------------
def _passthrough_and_friends(
    b: _Builder, rng: random.Random, maint: int | None, scale: int
) -> None:
    """Guests that may not move (or may not move freely): passthrough, locks, local disks."""
    running = [g for g in b.guests if g.running]
    for g in rng.sample(running, k=min(len(running), rng.randint(1, 3) * scale)):
        g.local_resources = (rng.choice(["hostpci0", "usb0", "hostpci1"]),)
    for g in b.guests:
        if g.local_resources:
            continue
        roll = rng.random()
        if roll < 0.02:
            g.lock = rng.choice(["backup", "snapshot"])
        elif roll < 0.06 and g.node != maint:
            g.local_disk_bytes = rng.randint(20, 200) * GIB
    if maint is not None and rng.random() < 0.5:
        # something that has to stay behind on the drained node
        stay = b.on(maint)[0]
        stay.local_resources = stay.local_resources or ("hostpci0",)


def _ignore(b: _Builder, rng: random.Random, nodes: list[int], scale: int) -> None:
    pool = [g for g in b.guests if g.node in nodes]
    for g in b.pick(pool, rng.randint(0, 4) * scale):
        g.tags.append(rng.choice(["plb_ignore", "plb_ignore_dev", "plb_ignore_backup"]))
        g.ruled = True


def _anti_affinity(b: _Builder, rng: random.Random, nodes: list[int]) -> None:
    """2-4 guests kept apart; sometimes two of them start on one node."""
    size = min(rng.randint(2, 4), len(nodes))
    if size < 2:
        return
    name = f"plb_anti_affinity_grp{len([t for g in b.guests for t in g.tags])}"
    crowd = "anti-affinity" not in b.broken and rng.random() < 0.35
    members: list[_Draft] = []
    homes = rng.sample(nodes, k=size)
    for i in homes:
        members += b.pick(b.on(i), 1)
    if crowd and len(members) == size:
        # move one member onto another member's node, if memory allows
        g, other = members[0], members[1]
        if b.fits(g, other.node):
            g.node = other.node
            b.broken.append("anti-affinity")
    if len(members) < 2:
        return
    for g in members:
        g.tags.append(name)
        g.ruled = True


def _affinity(b: _Builder, rng: random.Random, nodes: list[int]) -> None:
    """2-3 guests kept together; sometimes one starts on another node."""
    i = rng.choice(nodes)
    members = b.pick(b.on(i), rng.randint(2, 3))
    if len(members) < 2:
        return
    name = f"plb_affinity_app{members[0].vmid}"
    split = "affinity" not in b.broken and rng.random() < 0.35
    if split:
        away = [j for j in nodes if j != i and b.fits(members[-1], j)]
        if away:
            members[-1].node = rng.choice(away)
            b.broken.append("affinity")
    for g in members:
        g.tags.append(name)
        g.ruled = True


def _pin(b: _Builder, rng: random.Random, nodes: list[int]) -> None:
    """A guest pinned to 1-2 nodes; sometimes it starts off them."""
    i = rng.choice(nodes)
    chosen = b.pick(b.on(i), 1)
    if not chosen:
        return
    g = chosen[0]
    pins = {i}
    if len(nodes) > 2 and rng.random() < 0.4:
        pins.add(rng.choice([j for j in nodes if j != i]))
    if "pin" not in b.broken and rng.random() < 0.3:
        away = [j for j in nodes if j not in pins and b.fits(g, j)]
        if away:
            g.node = rng.choice(away)
            b.broken.append("pin")
    for j in sorted(pins):
        g.tags.append(f"plb_pin_{b.nodes[j].name}")
    g.ruled = True


def _ha_node_rule(
    b: _Builder, rng: random.Random, nodes: list[int], k: int
) -> NodeAffinityRule | None:
    strict = rng.random() < 0.6
    allowed = rng.sample(nodes, k=min(len(nodes), rng.randint(1, 3)))
    pool = [g for g in b.guests if g.node in allowed]
    members = b.pick(pool, rng.randint(1, 3))
    if not members:
        return None
    if strict and "ha-node-affinity" not in b.broken and rng.random() < 0.3:
        g = members[0]
        away = [j for j in nodes if j not in allowed and b.fits(g, j)]
        if away:
            g.node = rng.choice(away)
            b.broken.append("ha-node-affinity")
    for g in members:
        g.ha = True
        g.ruled = True
    prios = tuple((b.nodes[j].name, rng.choice([1, 1, 2])) for j in allowed)
    name = f"ha-node-{k}-{'strict' if strict else 'soft'}"
    return NodeAffinityRule(name, tuple(g.vmid for g in members), prios, strict)


def _ha_resource_rule(
    b: _Builder, rng: random.Random, nodes: list[int], k: int
) -> ResourceAffinityRule:
    positive = rng.random() < 0.5
    if positive:
        members = b.pick(b.on(rng.choice(nodes)), 2)
    else:
        members = []
        for i in rng.sample(nodes, k=min(len(nodes), rng.randint(2, 3))):
            members += b.pick(b.on(i), 1)
    for g in members:
        g.ha = True
        g.ruled = True
    kind = "together" if positive else "apart"
    return ResourceAffinityRule(f"ha-res-{k}-{kind}", tuple(g.vmid for g in members), positive)


def _snapshot(
    b: _Builder,
    nodes: list[Node],
    node_rules: list[NodeAffinityRule | None],
    resource_rules: list[ResourceAffinityRule],
    rng: random.Random,
) -> ClusterSnapshot:
    guests = []
    forecasts = []
    for d in sorted(b.guests, key=lambda g: g.vmid):
        extra = ["prod"] if rng.random() < 0.3 else []
        guests.append(
            Guest(
                vmid=d.vmid,
                name=f"{'ct' if d.kind is GuestKind.LXC else 'vm'}{d.vmid}",
                node=nodes[d.node].name,
                kind=d.kind,
                vcpus=d.vcpus,
                mem_max=d.mem_max,
                mem_used=d.mem_used,
                cpu_used=d.cpu_used,
                running=d.running,
                tags=_tag_text(rng, extra + d.tags),
                lock=d.lock,
                ha_managed=d.ha,
                local_resources=d.local_resources,
                local_disk_bytes=d.local_disk_bytes,
            )
        )
        forecasts.append(Forecast(d.vmid, *d.forecast))
    return ClusterSnapshot(
        nodes=tuple(nodes),
        guests=tuple(guests),
        forecasts=tuple(forecasts),
        node_rules=tuple(r for r in node_rules if r is not None),
        resource_rules=tuple(r for r in resource_rules if len(r.vmids) > 1),
        now=1_750_000_000.0,
    )
