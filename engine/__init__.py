"""Pure domain: cluster model, placement rules, scoring and the planner. No I/O, no Prefect."""
