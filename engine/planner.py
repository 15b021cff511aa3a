"""The greedy planner: repair every rule violation first, then balance, explaining each step.

Repairs run on any cluster, calm or hot, in this order: maintenance evacuation, node
restrictions (pins, strict HA node-affinity, pool pins), anti-affinity, affinity. Balancing
then makes the single best move at a time: the one whose drop in imbalance beats its
migration cost by the policy margin most, whose target ends up less loaded than the source
was, and that breaks no hard rule. The assumed state is updated after every move, so later
moves see earlier ones.

A guest appears in a plan at most once. When balancing later wants to move a guest that the
plan already moves, the existing move is re-targeted (or dropped, if it would go home), so a
plan never carries a move that undoes another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from engine.budget import Budget
from engine.filters import feasible_targets, penalties, why_unmovable
from engine.model import ClusterSnapshot, Guest, GuestKind
from engine.plan import Move, Plan, Reason, Skip
from engine.policy import Policy
from engine.rules import Group, RuleSet, build_rules
from engine.state import State

GIB = 1024**3
SOURCES_PER_STEP = 8  # hottest nodes searched for a balancing move in each step
SWAP_TARGETS = 4  # coolest nodes searched for an exchange when no single move pays
CHAIN_FIRSTS = 16  # first moves tried when looking one move ahead
REPAIR_ROUNDS = 3  # repair, balance, and again while balancing frees room for repairs


@dataclass(frozen=True)
class Unit:
    """Guests that move together: one guest, or a whole affinity group."""

    vmids: tuple[int, ...]
    name: str | None = None


def plan(
    snapshot: ClusterSnapshot,
    policy: Policy,
    *,
    balance: bool = True,
    evacuate: str | None = None,
) -> Plan:
    """A deterministic, explained migration plan for `snapshot` under `policy`."""
    if evacuate is not None:
        policy = replace(policy, maintenance_nodes=tuple({*policy.maintenance_nodes, evacuate}))
    rules = build_rules(snapshot, policy)
    # an evacuation only empties the node: other repairs wait for a normal run
    return _Planner(snapshot, policy, rules).run(balance, repairs=evacuate is None)


class _Planner:
    def __init__(self, snapshot: ClusterSnapshot, policy: Policy, rules: RuleSet) -> None:
        self.snapshot = snapshot
        self.policy = policy
        self.rules = rules
        self.state = State(snapshot, policy, rules.maintenance)
        self.budget = Budget(policy, snapshot.history, snapshot.now)
        self.guests = {g.vmid: g for g in snapshot.guests}
        self.home = {g.vmid: g.node for g in snapshot.guests}
        self.moves: dict[int, Move] = {}  # insertion order is plan order
        self.skips: dict[int, Skip] = {}
        self.note = ""
        self.blocked: dict[int, tuple[Reason, str]] = {}
        for g in sorted(snapshot.guests, key=lambda g: g.vmid):
            why = why_unmovable(g, policy, rules, self.state)
            if why is not None:
                self.blocked[g.vmid] = why
                self.skip(g.vmid, *why)

    # -- bookkeeping ------------------------------------------------------------------------
    def node_of(self, vmid: int) -> str:
        return self.state.names[self.state.where[vmid]]

    def skip(self, vmid: int, reason: Reason, detail: str) -> None:
        if vmid not in self.skips and vmid not in self.moves:
            g = self.guests[vmid]
            node = self.node_of(vmid) if vmid in self.state.where else g.node
            self.skips[vmid] = Skip(vmid, g.name, node, reason, detail)

    def cost(self, vmids: tuple[int, ...] | list[int]) -> float:
        """Migration cost of moving these guests now; zero for guests the plan moves anyway."""
        gib = 0.0
        for v in vmids:
            if v in self.moves:
                continue
            g = self.guests[v]
            mem = self.snapshot.forecast(v).mem if g.running else 0.0
            gib += mem / GIB + self.policy.local_disk_cost_factor * g.local_disk_bytes / GIB
        return self.policy.migration_cost_per_gib * gib

    def apply(self, unit: Unit, target: int, reason: Reason, detail: str, gain: float) -> bool:
        """Record and apply a move of `unit` to `target` if the budget allows it."""
        target_name = self.state.names[target]
        pairs = [(v, self.home[v]) for v in unit.vmids]
        new = sum(1 for v in unit.vmids if v not in self.moves)
        for v in unit.vmids:  # re-targets give back what their earlier move held
            if v in self.moves:
                self.budget.release(self.home[v], self.moves[v].target)
        refusal = self.budget.refuse(
            [(v, s) for v, s in pairs if s != target_name],
            target_name,
            balancing=reason is Reason.BALANCE and new > 0,
            new=new,
        )
        if refusal is not None:
            for v in unit.vmids:
                if v in self.moves:
                    self.budget.spend([(v, self.home[v])], self.moves[v].target, new=0)
            for v in unit.vmids:
                self.skip(v, refusal.reason, refusal.detail)
            return False
        cost = self.cost(unit.vmids)
        self.budget.spend([(v, s) for v, s in pairs if s != target_name], target_name, new=new)
        self.state.move(unit.vmids, target)
        share = 1.0 / len(unit.vmids)
        for v in unit.vmids:
            g = self.guests[v]
            earlier = self.moves.pop(v, None)
            self.skips.pop(v, None)
            if self.home[v] == target_name:
                continue  # back home: the earlier move is simply dropped
            first_reason = earlier.reason if earlier is not None else reason
            text = detail if earlier is None else f"{earlier.detail}; then {detail}"
            self.moves[v] = _move(
                g,
                self.home[v],
                target_name,
                first_reason,
                text,
                gain * share,
                cost * share,
                unit.name,
                self.snapshot,
            )
        return True

    # -- choosing a target ------------------------------------------------------------------
    def best_target(self, unit: Unit, balancing: bool) -> tuple[int | None, float, float]:
        """(target, net value, imbalance after) for moving `unit` from where it is now."""
        vmids = list(unit.vmids)
        sources = {self.state.where[v] for v in vmids}
        source = min(sources)
        ok = feasible_targets(vmids, source, self.state, self.rules, self.policy, balancing)
        for s in sources:
            ok[s] = False
        if not ok.any():
            return None, 0.0, 0.0
        cpu, _, mem, _, _ = self.state.unit_totals(vmids)
        if len(sources) == 1:
            after, target_load, var = self.state.imbalance_if_moved(source, cpu, mem)
        else:
            after, target_load, var = self._imbalance_if_gathered(vmids)
        pen = penalties(vmids, self.state, self.rules, self.policy.soft_rule_penalty)
        here = pen[source]
        before = self.state.imbalance()
        # gain in node-load units: the total absolute deviation removed (N × ΔMAD), so one
        # move's worth does not shrink as the cluster grows
        value = (before - after) * self.state.n_eligible - (pen - here)
        if balancing:
            value = value - self.cost(vmids)
            ok &= target_load < self.state.scores()[source]
            moving = len([v for v in vmids if v not in self.moves])
            ok &= np.array(self.budget.node_room(self.state.names, moving))
            if not ok.any():
                return None, 0.0, 0.0
        # rank by value, then by variance: among equal MAD gains the coolest target wins
        rank = np.where(ok, np.round(value, 9) - 1e-3 * var, -np.inf)
        best = int(np.argmax(rank))
        return best, float(value[best]), float(after[best])

    def _imbalance_if_gathered(self, vmids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        homes = {v: self.state.where[v] for v in vmids}
        n = len(self.state.names)
        after = np.zeros(n)
        load = np.zeros(n)
        var = np.zeros(n)
        for t in range(n):
            self.state.move(vmids, t)
            scores = self.state.scores()
            after[t] = self.state.imbalance()
            load[t] = scores[t]
            var[t] = float(np.var(scores[self.state.eligible]))
            for v, h in homes.items():
                self.state.move([v], h)
        return after, load, var

    # -- the run ----------------------------------------------------------------------------
    def run(self, balance: bool, repairs: bool = True) -> Plan:
        loads_before = self.state.loads()
        imbalance_before = self.state.imbalance()
        for round_ in range(REPAIR_ROUNDS):
            moves_before = self._move_count()
            self.repair_maintenance()
            if repairs:
                self.repair_restrictions()
                self.repair_anti_affinity()
                self.repair_affinity()
            if balance:
                self.balance()
            # a later repair or balancing may have made room for a repair that had none
            waiting = [v for v, s in self.skips.items() if s.reason is Reason.NO_TARGET]
            last = round_ == REPAIR_ROUNDS - 1
            if not waiting or self._move_count() == moves_before or last:
                break
            for v in waiting:
                del self.skips[v]
        moves = tuple(self.moves.values())
        skipped = tuple(self.skips[v] for v in sorted(self.skips))
        return Plan(
            moves=moves,
            skipped=skipped,
            conflicts=tuple(self.rules.conflicts),
            loads_before=loads_before,
            loads_after=self.state.loads(),
            imbalance_before=imbalance_before,
            imbalance_after=self.state.imbalance(),
            planner="greedy",
            note=self.note,
        )

    def _move_count(self) -> tuple[int, int]:
        """Changes so far: moves recorded and budget spent (re-targets spend nothing new)."""
        return len(self.moves), sum(self.budget.per_node.values())

    def units(self) -> list[Unit]:
        """Movable units: whole affinity groups sitting together, and every other guest."""
        grouped: set[int] = set()
        out: list[Unit] = []
        for group in self.rules.groups:
            if not (group.together and group.strict):
                continue
            grouped.update(group.vmids)
            members = [v for v in group.vmids if v in self.state.where]
            nodes = {self.state.where[v] for v in members}
            if len(nodes) == 1 and not any(v in self.blocked for v in members):
                out.append(Unit(tuple(members), group.name))
        for g in sorted(self.snapshot.guests, key=lambda g: g.vmid):
            if g.vmid not in grouped and g.vmid not in self.blocked and g.vmid in self.state.where:
                out.append(Unit((g.vmid,)))
        return out

    def unit_of(self, vmid: int) -> Unit | None:
        """The unit `vmid` moves with, or None when it cannot move without breaking one."""
        for unit in self.units():
            if vmid in unit.vmids:
                return unit
        return None

    def _repair(self, unit: Unit, reason: Reason, detail: str) -> None:
        blocked = [v for v in unit.vmids if v in self.blocked]
        if blocked:
            return  # already skipped with its own reason
        target, _, _ = self.best_target(unit, balancing=False)
        if target is None:
            for v in unit.vmids:
                self.skip(v, Reason.NO_TARGET, f"must move ({detail}) but no node can take it")
            return
        self.apply(unit, target, reason, detail, gain=0.0)

    def repair_maintenance(self) -> None:
        down = self.rules.maintenance
        for unit in self.units():
            node = self.node_of(unit.vmids[0])
            if node in down:
                self._repair(unit, Reason.MAINTENANCE, f"node {node} is in maintenance")
        for v, (_reason, detail) in self.blocked.items():
            if v in self.state.where and self.node_of(v) in down:
                self.skips[v] = replace(
                    self.skips[v],
                    detail=f"{detail}; it stays on maintenance node {self.node_of(v)}",
                )
        self._explain_held_back(lambda v: self.node_of(v) in down, "must leave a maintenance node")

    def _explain_held_back(self, breaks: Callable[[int], bool], what: str) -> None:
        """Guests that break a rule but cannot move alone, because a member of their affinity
        group cannot move: say so instead of leaving them unexplained."""
        movable = {v for unit in self.units() for v in unit.vmids}
        for v in sorted(self.state.where):
            if v in movable or v in self.blocked or v in self.moves or not breaks(v):
                continue
            partners = [
                p
                for g in self.rules.groups_of_any([v])
                if g.together and g.strict
                for p in g.vmids
                if p in self.blocked
            ]
            who = f"guest {partners[0]}" if partners else "a member"
            self.skip(
                v,
                Reason.RULE_CONFLICT,
                f"{what}, but it moves only with its affinity group and {who} cannot move",
            )

    def repair_restrictions(self) -> None:
        for unit in self.units():
            for v in unit.vmids:
                node = self.node_of(v)
                if not self.rules.may_run_on(v, node):
                    why = self.rules.allowed_reason.get(v, "node restriction")
                    reason = Reason.NODE_AFFINITY if why.startswith("HA") else Reason.PIN
                    allowed = ", ".join(sorted(self.rules.allowed[v]))
                    self._repair(unit, reason, f"{why} allows only {allowed}")
                    break
        self._explain_held_back(
            lambda v: not self.rules.may_run_on(v, self.node_of(v)), "breaks its node restriction"
        )
        for v in sorted(self.blocked):
            if v in self.state.where and not self.rules.may_run_on(v, self.node_of(v)):
                reason, detail = self.blocked[v]
                self.skips[v] = replace(
                    self.skips[v], detail=f"{detail}; it breaks its node restriction and stays"
                )

    def repair_anti_affinity(self) -> None:
        for group in self.rules.groups:
            if group.together or not group.strict:
                continue
            self._spread(group)

    def _spread(self, group: Group) -> None:
        stuck: set[int] = set()  # crowded nodes none of whose members can leave
        while True:
            by_node: dict[int, list[int]] = {}
            for v in group.vmids:
                if v in self.state.where:
                    by_node.setdefault(self.state.where[v], []).append(v)
            crowded = sorted(
                i for i, vs in by_node.items() if len(vs) > group.max_per_node and i not in stuck
            )
            if not crowded:
                return
            members = by_node[crowded[0]]
            candidates = sorted(
                (v for v in members if v not in self.blocked and v not in self.moves),
                key=lambda v: (self.snapshot.forecast(v).mem, v),
            )
            node = self.state.names[crowded[0]]
            detail = f"{group.name} allows {group.max_per_node} per node; {node} has {len(members)}"
            # move the member whose move helps the balance most (net of its cost)
            options: list[tuple[float, int, Unit, int]] = []
            for v in candidates:
                unit = self.unit_of(v)
                if unit is None:
                    continue
                target, value, _ = self.best_target(unit, balancing=False)
                if target is not None:
                    options.append((-(value - self.cost(unit.vmids)), v, unit, target))
            moved = False
            for _, _, unit, target in sorted(options, key=lambda o: (o[0], o[1])):
                if self.apply(unit, target, Reason.ANTI_AFFINITY, detail, 0.0):
                    moved = True
                    break
            if not moved:
                for v in members:
                    if v not in self.moves:
                        self.skip(v, Reason.NO_TARGET, f"{detail}, and no member can move")
                stuck.add(crowded[0])

    def repair_affinity(self) -> None:
        for group in self.rules.groups:
            if not (group.together and group.strict):
                continue
            present = [v for v in group.vmids if v in self.state.where]
            nodes = sorted({self.state.where[v] for v in present})
            if len(nodes) <= 1:
                continue
            self._gather(group, present)

    def _gather(self, group: Group, members: list[int]) -> None:
        fixed = {self.state.where[v] for v in members if v in self.blocked}
        if len(fixed) > 1:
            for v in members:
                self.skip(
                    v,
                    Reason.RULE_CONFLICT,
                    f"{group.name}: members that cannot move sit on different nodes",
                )
            return
        best: tuple[float, float, int] | None = None
        for t in range(len(self.state.names)):
            if fixed and t not in fixed:
                continue
            name = self.state.names[t]
            if not all(self.rules.may_run_on(v, name) for v in members):
                continue
            off = [v for v in members if self.state.where[v] != t]
            ok = feasible_targets(off, None, self.state, self.rules, self.policy, balancing=False)
            if not ok[t]:
                continue
            homes = {v: self.state.where[v] for v in off}
            self.state.move(off, t)
            imb = self.state.imbalance()
            for v, h in homes.items():
                self.state.move([v], h)
            gib = sum(self.snapshot.forecast(v).mem for v in off) / GIB
            key = (gib, imb, t)
            if best is None or key < best:
                best = key
        detail = f"{group.name} keeps its members on one node"
        if best is None:
            for v in members:
                self.skip(v, Reason.NO_TARGET, f"{detail}, but no node can hold them all")
            return
        target = best[2]
        moving = tuple(v for v in members if self.state.where[v] != target)
        self.apply(Unit(moving, group.name), target, Reason.AFFINITY, detail, 0.0)

    def balance(self) -> None:
        policy = self.policy
        excluded: set[tuple[int, ...]] = set()
        while True:
            imbalance = self.state.imbalance()
            if imbalance <= policy.target_imbalance:
                self.note = (
                    f"balanced: imbalance {imbalance:.1%} is within the target "
                    f"{policy.target_imbalance:.1%}"
                )
                return
            hot = self._hot_nodes()
            best: tuple[float, Unit, int, float] | None = None
            by_source: dict[int, list[Unit]] = {s: [] for s in hot}
            # once the run's budget is spent, moves already in the plan may still be
            # re-targeted: that costs no new migration
            spent = self.budget.used >= policy.max_moves
            for unit in self.units():
                source = self.state.where[unit.vmids[0]]
                if spent and not all(v in self.moves for v in unit.vmids):
                    continue
                if source in by_source and unit.vmids not in excluded:
                    by_source[source].append(unit)
            for source in hot:
                for found in self._best_from(source, by_source[source]):
                    if best is None or self._per_move(found) > self._per_move(best):
                        best = found
            stuck = best is None or best[0] <= 0
            if stuck and (
                self._try_swap(hot, imbalance) or self._try_chain(hot, by_source, imbalance)
            ):
                continue
            if best is None and spent:
                self.note = f"stopped at the budget of {policy.max_moves} moves per run"
                return
            if best is None:
                full = [
                    self.state.names[i]
                    for i in hot
                    if not self.budget.node_room([self.state.names[i]], 1)[0]
                ]
                if full:
                    self.note = (
                        f"stopped: {', '.join(full)} reached the budget of "
                        f"{policy.max_moves_per_node} moves per node per run"
                    )
                else:
                    self.note = "no balancing move keeps every rule and leaves its target cooler"
                return
            net, unit, target, after = best
            if net <= 0:
                self.note = (
                    f"no move gains more than its cost plus the margin ({policy.margin:.1%}); "
                    f"best was {_describe(unit)} to {self.state.names[target]} "
                    f"(net {net:.2%})"
                )
                return
            detail = f"imbalance {imbalance:.1%} -> {after:.1%}"
            gain = (imbalance - after) * self.state.n_eligible
            if not self.apply(unit, target, Reason.BALANCE, detail, gain):
                excluded.add(unit.vmids)

    def _swappable(self, unit: Unit) -> bool:
        """A lone guest not cooling down (one this plan already moves is simply re-targeted)."""
        v = unit.vmids[0]
        return len(unit.vmids) == 1 and (v in self.moves or self.budget.cooldown_left(v) == 0)

    def _rule_fit(self, units: list[Unit], home: int, other: int) -> tuple[np.ndarray, np.ndarray]:
        """Per unit: may it go to `other` under its hard rules (judged before the exchange:
        conservative for anti-affinity), and how much its soft rules mind (penalty there -
        penalty here). Capacity is the caller's, since the exchange frees room as it fills."""
        fits = np.zeros(len(units), dtype=bool)
        mind = np.zeros(len(units))
        for k, unit in enumerate(units):
            vmids = list(unit.vmids)
            ok = feasible_targets(
                vmids, home, self.state, self.rules, self.policy, False, capacity=False
            )
            pen = penalties(vmids, self.state, self.rules, self.policy.soft_rule_penalty)
            fits[k] = ok[other]
            mind[k] = pen[other] - pen[home]
        return fits, mind

    def _try_swap(self, hot: list[int], imbalance: float) -> bool:
        """When no single move pays, exchange a guest of the hottest node with a smaller one
        of a cooler node, if the pair gains more than both moves' costs and margins."""
        st, policy = self.state, self.policy
        if not hot or self.budget.used + 2 > policy.max_moves:
            return False
        source = hot[0]
        scores = st.scores()
        eligible = np.flatnonzero(st.eligible)
        mean = scores[eligible].mean()
        cool = [
            int(i)
            for i in eligible[np.argsort(scores[eligible], kind="stable")]
            if scores[i] < mean and i != source
        ][:SWAP_TARGETS]
        by_node: dict[int, list[Unit]] = {}
        for unit in self.units():
            if self._swappable(unit):
                by_node.setdefault(st.where[unit.vmids[0]], []).append(unit)
        mine = by_node.get(source, [])
        room = self.budget.node_room(st.names, 2)
        if not mine or not room[source]:
            return False
        best: tuple[float, Unit, Unit, int, float] | None = None
        a = np.array([st.unit_totals(u.vmids) for u in mine])
        cost_a = np.array([self.cost(u.vmids) for u in mine])
        n_e = st.n_eligible
        for t in cool:
            theirs = by_node.get(t, [])
            if not theirs or not room[t]:
                continue
            b = np.array([st.unit_totals(u.vmids) for u in theirs])
            cost_b = np.array([self.cost(u.vmids) for u in theirs])

            def share(tot: np.ndarray, node: int) -> np.ndarray:
                out: np.ndarray = (
                    st.w_cpu * tot[:, 0] / st.cpus[node] + st.w_mem * tot[:, 2] / st.memory[node]
                )
                return out

            new_s = scores[source] - share(a, source)[:, None] + share(b, source)[None, :]
            new_t = scores[t] + share(a, t)[:, None] - share(b, t)[None, :]
            others = np.array([scores[i] for i in eligible if i not in (source, t)])
            mean_after = (others.sum() + new_s + new_t) / n_e
            sad = (
                np.abs(others[None, None, :] - mean_after[:, :, None]).sum(axis=2)
                + np.abs(new_s - mean_after)
                + np.abs(new_t - mean_after)
            )
            after = sad / n_e
            fit_a, mind_a = self._rule_fit(mine, source, t)
            fit_b, mind_b = self._rule_fit(theirs, t, source)
            value = (imbalance - after) * n_e - cost_a[:, None] - cost_b[None, :]
            value = value - mind_a[:, None] - mind_b[None, :]
            ok = fit_a[:, None] & fit_b[None, :]
            ok &= new_t < scores[source]
            ok &= st.mem_p90[t] + a[:, 3:4] - b[None, :, 3] <= st.mem_limit[t]
            ok &= st.mem_p90[source] - a[:, 3:4] + b[None, :, 3] <= st.mem_limit[source]
            ok &= st.vcpus[source] - a[:, 4:5] + b[None, :, 4] <= (
                policy.cpu_overcommit * st.cpus[source]
            )
            ok &= st.vcpus[t] + a[:, 4:5] - b[None, :, 4] <= policy.cpu_overcommit * st.cpus[t]
            ok &= st.cpu_p90[t] + a[:, 1:2] - b[None, :, 1] <= policy.max_cpu_load * st.cpus[t]
            ok &= value > 2 * policy.margin
            if not ok.any():
                continue
            masked = np.where(ok, value, -np.inf)
            i, j = divmod(int(np.argmax(masked)), masked.shape[1])
            if best is None or masked[i, j] > best[0]:
                best = (float(masked[i, j]), mine[i], theirs[j], t, float(after[i, j]))
        if best is None:
            return False
        value, out, back, t, after = best
        detail = f"imbalance {imbalance:.1%} -> {after:.1%}, exchanged with guest {back.vmids[0]}"
        gain = (imbalance - after) * n_e / 2
        if not self.apply(out, t, Reason.BALANCE, detail, gain):
            return False
        back_detail = (
            f"imbalance {imbalance:.1%} -> {after:.1%}, exchanged with guest {out.vmids[0]}"
        )
        self.apply(back, source, Reason.BALANCE, back_detail, gain)
        partner, moved = back.vmids[0], out.vmids[0]
        if partner not in self.moves and moved in self.moves:
            # the partner went back home: no exchange is left, only this move
            text = self.moves[moved].detail.replace(f", exchanged with guest {partner}", "")
            self.moves[moved] = replace(self.moves[moved], detail=text)
        return True

    def _hot_nodes(self) -> list[int]:
        """The hottest nodes above the mean load, hottest first: where moves start from."""
        scores = self.state.scores()
        eligible = np.flatnonzero(self.state.eligible)
        mean = scores[eligible].mean()
        order = eligible[np.argsort(-scores[eligible], kind="stable")]
        return [int(i) for i in order if scores[i] > mean][:SOURCES_PER_STEP]

    def _per_move(self, candidate: tuple[float, Unit, int, float]) -> float:
        """A candidate's net gain per migration it adds to the plan."""
        new = sum(1 for v in candidate[1].vmids if v not in self.moves)
        return candidate[0] / max(new, 1)

    def _try_chain(
        self, hot: list[int], by_source: dict[int, list[Unit]], imbalance: float
    ) -> bool:
        """When no single move pays, look one move ahead: a move that gains little (or even
        costs) may open a second one, and the pair may pay for both."""
        policy, st = self.policy, self.state
        if self.budget.used + 2 > policy.max_moves:
            return False
        firsts = sorted(
            (c for s in hot for c in self._best_from(s, by_source[s], top=CHAIN_FIRSTS)),
            key=lambda c: (-c[0], c[1].vmids),
        )[:CHAIN_FIRSTS]
        best: tuple[float, Unit, int, Unit, int] | None = None
        for value, unit, target, _ in firsts:
            homes = {v: st.where[v] for v in unit.vmids}
            st.move(unit.vmids, target)
            hot2 = self._hot_nodes()
            nexts: dict[int, list[Unit]] = {s: [] for s in hot2}
            for u in self.units():
                s = st.where[u.vmids[0]]
                if s in nexts and u.vmids != unit.vmids:
                    nexts[s].append(u)
            for s in hot2:
                for value2, unit2, target2, _ in self._best_from(s, nexts[s]):
                    total = value + value2
                    if total > 0 and (best is None or total > best[0]):
                        best = (total, unit, target, unit2, target2)
            for v, h in homes.items():
                st.move([v], h)
        if best is None:
            return False
        total, unit, target, unit2, target2 = best
        home = st.where[unit.vmids[0]]
        after = imbalance - total / st.n_eligible
        detail = f"imbalance {imbalance:.1%} -> about {after:.1%} with the move after it"
        if not self.apply(unit, target, Reason.BALANCE, detail, total / 2):
            return False
        if not self.apply(unit2, target2, Reason.BALANCE, detail, total / 2):
            self.apply(unit, home, Reason.BALANCE, "undone", 0.0)  # back home: dropped
            return False
        return True

    def _best_from(
        self, source: int, units: list[Unit], top: int = 1
    ) -> list[tuple[float, Unit, int, float]]:
        """The `top` best balancing moves of `units` (all on `source`), evaluated together:
        one array operation per source instead of one per guest."""
        if not units:
            return []
        st = self.state
        eligible = st.eligible
        n_e = st.n_eligible
        totals = np.array([st.unit_totals(u.vmids) for u in units])
        cpu, cpu90, mem, mem90, vcpu = totals.T
        delta = st.w_cpu * cpu[:, None] / st.cpus + st.w_mem * mem[:, None] / st.memory
        scores = st.scores()
        rest = np.tile(scores, (len(units), 1))
        rest[:, source] -= delta[:, source]
        mean = (rest[:, eligible].sum(axis=1)[:, None] + delta * eligible) / n_e
        spread = rest[:, None, eligible] - mean[:, :, None]
        own_old = rest - mean
        own_new = rest + delta - mean
        fix = np.where(eligible, 1.0, 0.0)
        sad = np.abs(spread).sum(axis=2) + fix * (np.abs(own_new) - np.abs(own_old))
        sq = (spread * spread).sum(axis=2) + fix * (own_new**2 - own_old**2)
        after = sad / n_e
        var = sq / n_e
        costs = np.array([self.cost(u.vmids) for u in units])
        # net of cost and of the margin each migration must pay, so a unit of k guests
        # competes per move spent: under a move budget that is what counts
        moves = np.array(
            [max(sum(1 for v in u.vmids if v not in self.moves), 1) for u in units], dtype=float
        )
        value = (
            (st.imbalance() - after) * n_e - costs[:, None] - self.policy.margin * moves[:, None]
        )

        ok = np.tile(eligible, (len(units), 1))
        ok[:, source] = False
        ok &= st.mem_p90 + mem90[:, None] <= st.mem_limit
        ok &= st.vcpus + vcpu[:, None] <= self.policy.cpu_overcommit * st.cpus
        ok &= st.cpu_p90 + cpu90[:, None] <= self.policy.max_cpu_load * st.cpus
        ok &= scores + delta < scores[source]
        room: dict[int, np.ndarray] = {}
        for k, unit in enumerate(units):
            vmids = list(unit.vmids)
            moving = sum(1 for v in vmids if v not in self.moves)
            if moving not in room:
                room[moving] = np.array(self.budget.node_room(st.names, moving))
            ok[k] &= room[moving]
            if self.rules.groups_of_any(vmids) or any(
                v in self.rules.allowed or v in self.rules.preferred for v in vmids
            ):
                ok[k] &= feasible_targets(vmids, source, st, self.rules, self.policy, True)
                pen = penalties(vmids, st, self.rules, self.policy.soft_rule_penalty)
                value[k] -= pen - pen[source]
        if not ok.any():
            return []
        rank = np.where(ok, np.round(value / moves[:, None], 9) - 1e-3 * var, -np.inf).ravel()
        picks = np.argsort(-rank, kind="stable")[: min(top, int(ok.sum()))]
        width = ok.shape[1]
        return [
            (float(value.flat[i]), units[int(i) // width], int(i) % width, float(after.flat[i]))
            for i in picks
        ]


def _describe(unit: Unit) -> str:
    return unit.name or f"guest {unit.vmids[0]}"


def _move(
    g: Guest,
    source: str,
    target: str,
    reason: Reason,
    detail: str,
    gain: float,
    cost: float,
    unit: str | None,
    snapshot: ClusterSnapshot,
) -> Move:
    lxc = g.kind is GuestKind.LXC
    return Move(
        vmid=g.vmid,
        name=g.name,
        kind=g.kind.value,
        source=source,
        target=target,
        reason=reason,
        detail=detail,
        online=g.running and not lxc,
        restart=g.running and lxc,
        with_local_disks=g.local_disk_bytes > 0,
        mem_bytes=int(snapshot.forecast(g.vmid).mem) if g.running else 0,
        disk_bytes=g.local_disk_bytes,
        gain=gain,
        cost=cost,
        unit=unit,
    )
