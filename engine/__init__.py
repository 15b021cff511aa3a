"""Pure domain: cluster model, placement rules, scoring and the planner. No I/O, no Prefect.

The public surface: build a `ClusterSnapshot` and a `Policy`, call `plan` (greedy) or
`plan_exact` (MILP), and read the `Plan`. What-if helpers answer evacuation, node loss and
best-node placement with the same rules.
"""

from engine.exact import plan_exact
from engine.model import (
    ClusterSnapshot,
    Forecast,
    Guest,
    GuestKind,
    MigrationRecord,
    Node,
    NodeAffinityRule,
    ResourceAffinityRule,
)
from engine.plan import Conflict, Move, NodeLoad, Plan, Reason, Skip
from engine.planner import plan
from engine.policy import Automation, Policy, PolicyError, PoolPolicy, PoolRule
from engine.whatif import apply_plan, best_nodes, loads, lose_node, plan_evacuation

__all__ = [
    "Automation",
    "ClusterSnapshot",
    "Conflict",
    "Forecast",
    "Guest",
    "GuestKind",
    "MigrationRecord",
    "Move",
    "Node",
    "NodeAffinityRule",
    "NodeLoad",
    "Plan",
    "Policy",
    "PolicyError",
    "PoolPolicy",
    "PoolRule",
    "Reason",
    "ResourceAffinityRule",
    "Skip",
    "apply_plan",
    "best_nodes",
    "loads",
    "lose_node",
    "plan",
    "plan_evacuation",
    "plan_exact",
]
