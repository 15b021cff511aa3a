"""The `balance` and `evacuate` flows: observe, plan, explain, then (unless told not to) act.

Dry-run is "plan, don't execute": the same flow up to the artifacts, with no execution stage.
Scheduled runs pass ``dry_run=None`` and follow the policy's automation level (`manual` plans
only, `auto` executes); a person asks explicitly with ``dry_run=False``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, cast

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import Field

from engine import Automation, ClusterSnapshot, Plan, Policy, plan, plan_evacuation, plan_exact
from flows.execute import execute, resume_interrupted
from flows.observe import Observation, observe
from flows.runtime import Runtime, connect, current_settings
from tasks.migrate import MoveResult
from tasks.plan import publish_plan, publish_results, record_plan
from tasks.pve import PveError

Planner = Literal["greedy", "exact"]
# migration tasks mostly wait (for slots, for PVE); the Prefect limits bound the real work
RUNNER = cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=8))


@dataclass(frozen=True)
class BalanceOutcome:
    plan_id: str
    plan: Plan
    snapshot: ClusterSnapshot  # what the plan was made from (forecasts included)
    executed: bool
    results: list[MoveResult] = field(default_factory=list)
    why_not_executed: str = ""

    @property
    def failed(self) -> list[MoveResult]:
        return [r for r in self.results if r.status == "failed"]


@task(name="plan", cache_policy=NO_CACHE)
def make_plan(
    obs: Observation, policy: Policy, planner: Planner, evacuate: str | None = None
) -> Plan:
    if evacuate is not None:
        return plan_evacuation(obs.snapshot, policy, evacuate)
    if planner == "exact":
        return plan_exact(obs.snapshot, policy)
    return plan(obs.snapshot, policy)


def _decide(dry_run: bool | None, policy: Policy) -> tuple[bool, str]:
    if dry_run is True:
        return False, "dry run: planned only"
    if dry_run is None and policy.automation is Automation.MANUAL:
        return False, "automation is manual: planned only (set policy.automation: auto to act)"
    return True, ""


def _publish_outcome(outcome: BalanceOutcome, title: str) -> None:
    """One line per run that says what happened and why, for the UI's artifact list."""
    plan_ = outcome.plan
    if outcome.executed:
        counts = {
            s: sum(r.status == s for r in outcome.results) for s in ("ok", "failed", "skipped")
        }
        what = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        line = f"executed {len(outcome.results)} move(s): {what}"
    else:
        line = f"not executed: {outcome.why_not_executed}"
    lines = [f"# {title}: outcome\n", f"- plan `{outcome.plan_id}`, {line}\n"]
    lines += [
        f"- {r.vmid} ({r.name}) {r.source} → {r.target}: **{r.status}**, {r.detail}\n"
        for r in outcome.results
        if r.status != "ok"
    ]
    lines.append(
        f"- predicted imbalance {plan_.imbalance_before:.2%} → {plan_.imbalance_after:.2%}\n"
    )
    create_markdown_artifact(
        markdown="".join(lines),
        key="proxflow-balance-outcome",
        description=f"{title}: what was executed and why",
    )


def _run(
    rt: Runtime, dry_run: bool | None, planner: Planner, evacuate: str | None, title: str
) -> BalanceOutcome:
    outcome = _plan_and_act(rt, dry_run, planner, evacuate, title)
    _publish_outcome(outcome, title)
    return outcome


def _plan_and_act(
    rt: Runtime, dry_run: bool | None, planner: Planner, evacuate: str | None, title: str
) -> BalanceOutcome:
    logger = get_run_logger()
    policy = rt.settings.balance_policy()
    rt.gateway.check_privileges()
    resumed = resume_interrupted(rt)
    if resumed:
        publish_results(resumed, "proxflow-resumed-migrations")
    obs = observe(rt)
    the_plan = make_plan(obs, policy, planner, evacuate)
    plan_id = uuid.uuid4().hex[:12]
    key = "proxflow-evacuation" if evacuate else "proxflow-plan"
    act, why_not = _decide(dry_run, policy)
    publish_plan(the_plan, key, title, [*obs.notes, *([why_not] if why_not else [])])
    record_plan(rt.store, the_plan, plan_id, str(flow_run.id or "local"), obs.snapshot.now)
    logger.info(
        "plan %s: %d move(s), imbalance %.2f%% -> %.2f%%",
        plan_id,
        len(the_plan.moves),
        100 * the_plan.imbalance_before,
        100 * the_plan.imbalance_after,
    )
    if not act or not the_plan.moves:
        return BalanceOutcome(
            plan_id, the_plan, obs.snapshot, False, why_not_executed=why_not or "nothing to do"
        )
    try:
        rt.gateway.require_quorum()
    except PveError as exc:
        logger.error("not executing plan %s: %s", plan_id, exc)
        return BalanceOutcome(plan_id, the_plan, obs.snapshot, False, why_not_executed=str(exc))
    results = execute(rt, the_plan, plan_id)
    publish_results(results, f"{key}-results")
    done = sum(r.done for r in results)
    logger.info("plan %s: %d of %d move(s) done", plan_id, done, len(results))
    return BalanceOutcome(plan_id, the_plan, obs.snapshot, True, results)


@flow(name="balance", task_runner=RUNNER)
def balance(dry_run: bool | None = None, planner: Planner = "greedy") -> BalanceOutcome:
    """Plan moves that spread the predicted load and repair rule violations; execute them
    unless ``dry_run`` (None: as the policy's automation level says)."""
    rt = connect(current_settings())
    return _run(rt, dry_run, planner, None, "Balance plan")


@flow(name="evacuate", task_runner=RUNNER)
def evacuate(
    node: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    ],
    dry_run: bool = False,
) -> BalanceOutcome:
    """Move every movable guest off ``node`` honouring every rule (for maintenance)."""
    rt = connect(current_settings())
    return _run(rt, dry_run, "greedy", node, f"Evacuation of {node}")
