"""Balancing: the best single move at a time, then exchanges and a one-move look-ahead.

A move's worth is the node load it takes off the spread (N × the drop in imbalance), net of
its migration cost and the policy margin; candidates compete per migration they add, since
the move budget is what runs out. Targets must end cooler than the source was.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.filters import feasible_targets, penalties
from engine.plan import Reason
from engine.planning import PlanBuilder, Unit

SOURCES_PER_STEP = 8  # hottest nodes searched for a balancing move in each step
SWAP_TARGETS = 4  # coolest nodes searched for an exchange when no single move pays
CHAIN_FIRSTS = 16  # first moves tried when looking one move ahead


class Balancing(PlanBuilder):
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
            spent = len(self.moves) >= policy.max_moves
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
                    if not self.budget.node_room(self.planned().values(), [self.state.names[i]], 1)[
                        0
                    ]
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
        if not hot or len(self.moves) + 2 > policy.max_moves:
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
        room = self.budget.node_room(self.planned().values(), st.names, 2)
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
        if len(self.moves) + 2 > policy.max_moves:
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
        planned = list(self.planned().values())
        for k, unit in enumerate(units):
            vmids = list(unit.vmids)
            moving = sum(1 for v in vmids if v not in self.moves)
            if moving not in room:
                room[moving] = np.array(self.budget.node_room(planned, st.names, moving))
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
