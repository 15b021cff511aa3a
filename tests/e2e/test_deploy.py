"""The project's prefect.yaml deploys as documented and every deployment completes on a worker.

Exactly the operator's steps: `proxflow setup`, `prefect --no-prompt deploy --all` from the
project root, `prefect worker start --pool proxflow --type process`, then one run of each
deployment. `ingest` runs first so `train` and the capacity report have history to work on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from pvesim import SimConfig, Simulator
from tests.conftest import write_config
from tests.e2e.conftest import POOL, PrefectServer, final_states, start_run, start_workers
from tests.e2e.processes import BIN, ROOT, Processes, run

pytestmark = pytest.mark.slow

# parameters the deployments need to run by hand (the others run as scheduled)
PARAMETERS: dict[str, dict[str, Any]] = {
    "evacuate": {"node": "pve5", "dry_run": True},
    "place": {"cores": 2, "memory": "4GiB", "tags": ["web"]},
}


@dataclass(frozen=True)
class Deployed:
    output: str  # of `prefect deploy --all`
    deployments: dict[str, Any]  # name -> the server's deployment
    runs: dict[str, Any]  # deployment name -> its finished flow run


def declared() -> list[dict[str, Any]]:
    return list(yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"])


@pytest.fixture(scope="module")
def deployed(
    prefect_api: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    from prefect import get_client

    base = tmp_path_factory.mktemp("deploy")
    sim = Simulator(SimConfig(scenario="demo", speed=60.0, auth_failure_delay=0)).start()
    procs = Processes(base, prefect_api.env)
    try:
        # an hour of history: enough for every flow to run, too little for `train` to spend
        # minutes fitting (it declines and says so; fitting is tested apart)
        config = write_config(
            base / "proxflow.yaml", sim, base / "data", forecast={"backfill": "hour"}
        )
        env = procs.env = {**prefect_api.env, "PROXFLOW_CONFIG": str(config)}
        run([BIN / "proxflow", "--config", config, "setup"], env)
        output = run([BIN / "prefect", "--no-prompt", "deploy", "--all"], env)
        with get_client(sync_client=True) as client:
            deployments = {d.name: d for d in client.read_deployments()}
        (worker,) = start_workers(procs, ["deploy-worker"])
        first = start_run(str(deployments["ingest"].id))
        runs = {"ingest": final_states([first], 180, [worker.log])[first]}
        ids = {
            start_run(str(d.id), **PARAMETERS.get(name, {})): name
            for name, d in deployments.items()
            if name != "ingest"
        }
        for run_id, flow_run in final_states(list(ids), 240, [worker.log]).items():
            runs[ids[run_id]] = flow_run
        yield Deployed(output, deployments, runs)
    finally:
        procs.stop_all()
        sim.stop()


def test_deploy_creates_every_deployment_of_the_project_file_on_the_proxflow_pool(
    deployed: Deployed,
) -> None:
    names = [d["name"] for d in declared()]
    assert sorted(deployed.deployments) == sorted(names)
    for name in names:
        assert f"successfully created with id '{deployed.deployments[name].id}'" in deployed.output
        assert deployed.deployments[name].work_pool_name == POOL


def test_deployments_keep_their_schedules_and_one_at_a_time_limits(deployed: Deployed) -> None:
    for spec in declared():
        got = deployed.deployments[spec["name"]]
        assert len(got.schedules) == len(spec.get("schedules", [])), spec["name"]
        limit = spec.get("concurrency_limit")
        if limit is None:
            assert got.global_concurrency_limit is None, spec["name"]
        else:
            assert got.global_concurrency_limit.limit == limit["limit"], spec["name"]
            assert got.concurrency_options.collision_strategy.value == limit["collision_strategy"]


@pytest.mark.parametrize("name", [d["name"] for d in declared()])
def test_every_deployment_completes_a_run_on_the_worker(deployed: Deployed, name: str) -> None:
    flow_run = deployed.runs[name]
    assert flow_run.state.is_completed(), (
        f"{name}: {flow_run.state.type.value} {flow_run.state.message}"
    )
