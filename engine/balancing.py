"""Balancing: the best single move at a time, then exchanges and a one-move look-ahead.

A move's worth is the node load it takes off the spread (N × the drop in imbalance), net of
its migration cost and the policy margin; candidates compete per migration they add, since
the move budget is what runs out. Targets must end cooler than the source was.

Small clusters get a deeper search, because there one guest is a large share of a node and
single moves alone stall far from balance (a big node's guest overfills a small node; the move
that would fit needs another guest to make room first):

- ejection pairs (up to PAIR_NODES eligible nodes and PAIR_UNITS movable units): a unit
  leaves a hot node for a node that then sheds a unit of its own, judged as one option;
- a pilot (up to PILOT_NODES eligible nodes): when the option that gains most is not the one
  that gains most per migration, both are carried on to the end and the better plan wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engine.filters import feasible_targets, penalties, room
from engine.plan import Reason
from engine.planning import PlanBuilder, Unit

SOURCES_PER_STEP = 8  # hottest nodes searched for a balancing move in each step
SWAP_TARGETS = 4  # coolest nodes searched for an exchange when no single move pays
CHAIN_FIRSTS = 16  # first moves tried when looking one move ahead
# Ejection pairs score every (unit of a hot node, middle node, unit there, end node) at once:
# with at most 6 eligible nodes and 80 units a step is at most 6 × 5 arrays of 80 × 80 × 5 × 6.
PAIR_NODES = 6
PAIR_UNITS = 80
OPTIONS_PER_SOURCE = 4  # best options kept per hot node (singles) or node pair (ejection pairs)
# The pilot finishes the plan twice per decision, so a plan of S steps costs about 2·S² steps.
# On three nodes one guest is the largest share of a node. On four it helps too, but spends
# more of the budget than bench/planner.py's move target (no more moves than the baseline).
PILOT_NODES = 3

Key = tuple[object, ...]  # a unit's guests, or an option that failed to apply


@dataclass(frozen=True)
class Option:
    """One balancing step: a single move, or an ejection pair judged as a whole."""

    value: float  # net gain of all its moves: load off the spread less costs and margins
    steps: tuple[tuple[Unit, int], ...]
    after: float  # imbalance once done
    new: int  # migrations it is charged for (re-targeting a planned move counts as one)

    @property
    def per_move(self) -> float:
        return self.value / max(self.new, 1)

    @property
    def key(self) -> Key:
        return tuple((u.vmids, t) for u, t in self.steps)


class Balancing(PlanBuilder):
    def balance(self) -> None:
        excluded: set[Key] = set()
        n_e = self.state.n_eligible
        deep = n_e <= PAIR_NODES and len(self.units()) <= PAIR_UNITS
        pilot = deep and n_e <= PILOT_NODES
        while self._pilot_step(excluded) if pilot else self._step(excluded, deep):
            pass

    def _pilot_step(self, excluded: set[Key]) -> bool:
        """Ranking per migration can spend the budget on small gains and leave a large one
        that no longer fits (the knapsack greedy's weakness). When the option that gains most
        is not the one that gains most per migration, carry both on greedily to the end and
        take the one whose finished plan scores better as a whole (`objective`)."""
        if self.state.imbalance() <= self.policy.target_imbalance:
            return self._step(excluded, True)
        hot, by_node, _ = self._sources(excluded)
        options = self._options(hot, by_node, excluded)
        if not options:
            return self._step(excluded, True)
        chosen = first = options[0]
        largest = max(options, key=lambda o: round(o.value, 12))  # first of equals
        if largest is not first:
            best = float("inf")
            for option in (first, largest):
                trial = self.fork()
                tried = set(excluded)
                if not trial._take(option, tried):
                    continue
                while trial._step(tried, True):
                    pass
                score = trial.objective()
                if score < best - 1e-12:
                    chosen, best = option, score
        self._take(chosen, excluded)
        return True

    def _sources(self, excluded: set[Key]) -> tuple[list[int], dict[int, list[Unit]], bool]:
        """The hot nodes, the units on every node that may move, and whether the run's budget
        is spent."""
        hot = self._hot_nodes()
        by_node: dict[int, list[Unit]] = {s: [] for s in hot}
        # once the run's budget is spent, moves already in the plan may still be
        # re-targeted: that costs no new migration
        spent = len(self.moves) >= self.policy.max_moves
        for unit in self.units():
            source = self.state.where[unit.vmids[0]]
            if spent and self.added_moves(unit):
                continue
            if unit.vmids not in excluded:
                by_node.setdefault(source, []).append(unit)
        return hot, by_node, spent

    def _options(
        self, hot: list[int], by_node: dict[int, list[Unit]], excluded: set[Key]
    ) -> list[Option]:
        """The paying options, best per migration first (ties: hotter source, then order)."""
        found = [
            Option(value, ((unit, target),), after, self.added_moves(unit))
            for s in hot
            for value, unit, target, after in self._best_from(s, by_node[s], top=OPTIONS_PER_SOURCE)
            if value > 0
        ]
        found += [o for o in self._pairs(hot, by_node, OPTIONS_PER_SOURCE) if o.key not in excluded]
        return sorted(found, key=lambda o: -round(o.per_move, 12))  # stable: ties keep order

    def _step(self, excluded: set[Key], deep: bool = False) -> bool:
        """One balancing step: the best single move (or, on a small cluster, ejection pair),
        else an exchange or a pair of moves. False (with the note saying why) once there is
        nothing left worth doing."""
        policy = self.policy
        imbalance = self.state.imbalance()
        if imbalance <= policy.target_imbalance:
            self.note = (
                f"balanced: imbalance {imbalance:.1%} is within the target "
                f"{policy.target_imbalance:.1%}"
            )
            return False
        hot, by_source, spent = self._sources(excluded)
        best: tuple[float, Unit, int, float] | None = None
        best_per = -np.inf  # best's gain per migration it adds
        for source in hot:
            for found in self._best_from(source, by_source[source]):
                per = self._per_move(found)
                if best is None or per > best_per:
                    best, best_per = found, per
        if deep:
            pairs = [o for o in self._pairs(hot, by_source, 1) if o.key not in excluded]
            if pairs:
                pair = max(pairs, key=lambda o: o.per_move)  # first of equals
                if best is None or best[0] <= 0 or pair.per_move > best_per:
                    self._take(pair, excluded)
                    return True
        stuck = best is None or best[0] <= 0
        if stuck and (self._try_swap(hot, imbalance) or self._try_chain(hot, by_source, imbalance)):
            return True
        if best is None and spent:
            self.note = f"stopped at the budget of {policy.max_moves} moves per run"
            return False
        if best is None:
            full = [
                self.state.names[i]
                for i in hot
                if not self.budget.node_room(self.planned().values(), [self.state.names[i]], 1)[0]
            ]
            if full:
                self.note = (
                    f"stopped: {', '.join(full)} reached the budget of "
                    f"{policy.max_moves_per_node} moves per node per run"
                )
            else:
                self.note = "no balancing move keeps every rule and leaves its target cooler"
            return False
        net, unit, target, after = best
        if net <= 0:
            self.note = (
                f"no move gains more than its cost plus the margin ({policy.margin:.1%}); "
                f"best was {_describe(unit)} to {self.state.names[target]} "
                f"(net {net:.2%})"
            )
            return False
        self._take(Option(net, ((unit, target),), after, self.added_moves(unit)), excluded)
        return True

    def _pairs(self, hot: list[int], by_node: dict[int, list[Unit]], top: int) -> list[Option]:
        """Ejection pairs: a unit leaves a hot node for any node t, even one it leaves hotter
        than the source was, and a unit of t moves on to any node. Judged on the pair: it must
        pay for both moves, and every node that ends with more load ends cooler than the source
        was. All pairs between two nodes are scored in one array operation; rules and capacity
        are judged before the pair moves, which is conservative for the second move."""
        st, policy = self.state, self.policy
        out: list[Option] = []
        if len(self.moves) + 2 > policy.max_moves:
            return out
        elig = [int(i) for i in np.flatnonzero(st.eligible)]
        n_e = len(elig)
        col = {node: k for k, node in enumerate(elig)}
        scores = st.scores()
        imbalance = st.imbalance()
        planned = list(self.planned().values())
        room1 = self.budget.node_room(planned, st.names, 1)
        room2 = self.budget.node_room(planned, st.names, 2)  # the middle node takes part twice
        table = {n: self._unit_table(units) for n, units in by_node.items() if units}
        for s in hot:
            if s not in table or not room1[s]:
                continue
            ua, da, costa, movesa, feasa, pena = table[s]
            for t in elig:
                if t == s or t not in table or not room2[t]:
                    continue
                ub, db, costb, movesb, feasb, penb = table[t]
                ends = [u for u in elig if u != t and room1[u]]
                # load of every eligible node for each (first unit, second unit, second target)
                load = np.broadcast_to(scores[elig], (len(ua), len(ub), len(ends), n_e)).copy()
                load[:, :, :, col[s]] -= da[:, s][:, None, None]
                load[:, :, :, col[t]] += (da[:, t][:, None] - db[:, t][None, :])[:, :, None]
                for k, u in enumerate(ends):
                    load[:, :, k, col[u]] += db[:, u][None, :]
                after = np.abs(load - load.mean(axis=3, keepdims=True)).mean(axis=3)
                value = (imbalance - after) * n_e
                value -= (costa + policy.margin * movesa + pena[:, t] - pena[:, s])[:, None, None]
                value -= (costb + policy.margin * movesb)[None, :, None]
                value -= (penb[:, ends] - penb[:, t : t + 1])[None, :, :]
                ok = feasa[:, t][:, None, None] & feasb[:, ends][None, :, :] & (value > 0)
                ok &= after < imbalance  # soft rules alone never pay for raising the spread
                # every node that gains load ends cooler than the source was
                end_t = load[:, :, :, col[t]]
                ok &= (end_t <= scores[t]) | (end_t < scores[s])
                for k, u in enumerate(ends):
                    end_u = load[:, :, k, col[u]]
                    ok[:, :, k] &= (end_u <= scores[u]) | (end_u < scores[s])
                if not ok.any():
                    continue
                per = value / (movesa[:, None] + movesb[None, :])[:, :, None]
                rank = np.where(ok, np.round(per, 12), -np.inf).ravel()
                for i in np.argsort(-rank, kind="stable")[: min(top, int(ok.sum()))]:
                    i_a, i_b, k = (int(x) for x in np.unravel_index(int(i), ok.shape))
                    steps = ((ua[i_a], t), (ub[i_b], ends[k]))
                    new = int(movesa[i_a] + movesb[i_b])
                    out.append(
                        Option(float(value[i_a, i_b, k]), steps, float(after[i_a, i_b, k]), new)
                    )
        return out

    def _unit_table(
        self, units: list[Unit]
    ) -> tuple[list[Unit], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per unit of one node: load it adds to each node, migration cost, migrations it adds,
        the nodes its rules and capacity allow, and its soft-rule penalty on each node."""
        st, policy = self.state, self.policy
        totals = np.array([st.unit_totals(u.vmids) for u in units])
        delta = st.share(totals[:, 0:1], totals[:, 2:3])
        cost = np.array([self.cost(u.vmids) for u in units])
        moves = np.array([max(self.added_moves(u), 1) for u in units], dtype=float)
        source = st.where[units[0].vmids[0]]
        feas = np.array(
            [feasible_targets(list(u.vmids), source, st, self.rules, policy, True) for u in units]
        )
        pen = np.array(
            [penalties(list(u.vmids), st, self.rules, policy.soft_rule_penalty) for u in units]
        )
        return units, delta, cost, moves, feas, pen

    def _take(self, option: Option, excluded: set[Key]) -> bool:
        """Make every move of `option`, or none of them (the plan is left as it was)."""
        imbalance = self.state.imbalance()
        gain = (imbalance - option.after) * self.state.n_eligible / len(option.steps)
        if len(option.steps) == 1:
            unit, target = option.steps[0]
            detail = f"imbalance {imbalance:.1%} -> {option.after:.1%}"
            if not self.apply(unit, target, Reason.BALANCE, detail, gain):
                excluded.add(unit.vmids)
                return False
            return True
        (first, via), (second, _) = option.steps
        details = (
            f"imbalance {imbalance:.1%} -> {option.after:.1%} with {_describe(second)} "
            f"moving on from {self.state.names[via]}",
            f"imbalance {imbalance:.1%} -> {option.after:.1%}, making room on "
            f"{self.state.names[via]} for {_describe(first)}",
        )
        steps = [(u, t, d, gain) for (u, t), d in zip(option.steps, details, strict=True)]
        if not self.apply_all(steps, Reason.BALANCE):
            excluded.add(option.key)
            return False
        return True

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
        room2 = self.budget.node_room(self.planned().values(), st.names, 2)
        if not mine or not room2[source]:
            return False
        best: tuple[float, Unit, Unit, int, float] | None = None
        a = np.array([st.unit_totals(u.vmids) for u in mine])
        share_a = st.share(a[:, 0:1], a[:, 2:3])  # per unit of `mine`, its load on each node
        cost_a = np.array([self.cost(u.vmids) for u in mine])
        n_e = st.n_eligible
        for t in cool:
            theirs = by_node.get(t, [])
            if not theirs or not room2[t]:
                continue
            b = np.array([st.unit_totals(u.vmids) for u in theirs])
            cost_b = np.array([self.cost(u.vmids) for u in theirs])
            share_b = st.share(b[:, 0:1], b[:, 2:3])
            new_s = scores[source] - share_a[:, source, None] + share_b[None, :, source]
            new_t = scores[t] + share_a[:, t, None] - share_b[None, :, t]
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
            # both nodes must fit once the exchange is done: each gains one guest, loses one
            shift = a[:, None, :] - b[None, :, :]  # what the target gains, the source loses
            ok &= room(st, policy, shift[..., 1], shift[..., 3], shift[..., 4], t).fits()
            ok &= room(st, policy, -shift[..., 1], -shift[..., 3], -shift[..., 4], source).fits()
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
        detail = f"imbalance {imbalance:.1%} -> {after:.1%}, exchanged with guest"
        gain = (imbalance - after) * n_e / 2
        steps = [
            (out, t, f"{detail} {back.vmids[0]}", gain),
            (back, source, f"{detail} {out.vmids[0]}", gain),
        ]
        if not self.apply_all(steps, Reason.BALANCE):
            return False
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
        return candidate[0] / max(self.added_moves(candidate[1]), 1)

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
            ahead = self.fork()  # the cluster as the first move leaves it, the plan as it is
            ahead.state.move(unit.vmids, target)
            hot2 = ahead._hot_nodes()
            nexts: dict[int, list[Unit]] = {s: [] for s in hot2}
            for u in ahead.units():
                s = ahead.state.where[u.vmids[0]]
                if s in nexts and u.vmids != unit.vmids:
                    nexts[s].append(u)
            for s in hot2:
                for value2, unit2, target2, _ in ahead._best_from(s, nexts[s]):
                    total = value + value2
                    if total > 0 and (best is None or total > best[0]):
                        best = (total, unit, target, unit2, target2)
        if best is None:
            return False
        total, unit, target, unit2, target2 = best
        after = imbalance - total / st.n_eligible
        detail = f"imbalance {imbalance:.1%} -> about {after:.1%} with the move after it"
        steps = [(unit, target, detail, total / 2), (unit2, target2, detail, total / 2)]
        return self.apply_all(steps, Reason.BALANCE)

    def _best_from(
        self, source: int, units: list[Unit], top: int = 1
    ) -> list[tuple[float, Unit, int, float]]:
        """The `top` best balancing moves of `units` (all on `source`), evaluated together:
        one array operation per source instead of one per guest. Targets end cooler than the
        source was."""
        if not units:
            return []
        st = self.state
        eligible = st.eligible
        n_e = st.n_eligible
        totals = np.array([st.unit_totals(u.vmids) for u in units])
        cpu, cpu90, mem, mem90, vcpu = totals.T
        delta = st.share(cpu[:, None], mem[:, None])
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
        added = [self.added_moves(u) for u in units]
        moves = np.array([max(n, 1) for n in added], dtype=float)
        value = (
            (st.imbalance() - after) * n_e - costs[:, None] - self.policy.margin * moves[:, None]
        )

        ok = np.tile(eligible, (len(units), 1))
        ok[:, source] = False
        ok &= room(st, self.policy, cpu90[:, None], mem90[:, None], vcpu[:, None]).fits()
        ok &= scores + delta < scores[source]
        room_for: dict[int, np.ndarray] = {}
        planned = list(self.planned().values())
        for k, (unit, moving) in enumerate(zip(units, added, strict=True)):
            vmids = list(unit.vmids)
            if moving not in room_for:
                room_for[moving] = np.array(self.budget.node_room(planned, st.names, moving))
            ok[k] &= room_for[moving]
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
