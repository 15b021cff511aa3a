"""End-to-end fixtures: a real Prefect server, workers and flow processes against the simulator.

Everything binds 127.0.0.1, and every process is stopped at teardown even when a test failed
(`tests.e2e.processes`). One Prefect server serves the whole directory (its start-up is the
slowest step); each module brings its own simulator, config, limits and workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import requests

from flows.settings import Settings, load_settings
from tests.e2e.processes import BIN, Proc, Processes, free_port, tail_of, wait_for

POOL = "proxflow"

# server-side and client-side settings for quick, quiet, offline runs
PREFECT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": (
        "prefect.server.concurrency.lease_storage.filesystem"
    ),
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2",
    "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "0.5",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    # the deployments carry schedules; here every run is started by the test
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_CLI_COLORS": "false",
    "COLUMNS": "200",
}


@dataclass(frozen=True)
class PrefectServer:
    url: str
    home: Path
    logs: Path
    env: dict[str, str]


def _base_env(home: Path, url: str) -> dict[str, str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "PROXFLOW_")) and k != "PYTEST_CURRENT_TEST"
    }
    return {**inherited, **PREFECT_ENV, "PREFECT_HOME": str(home), "PREFECT_API_URL": url}


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` in the foreground on a free port, with filesystem lease storage."""
    base = tmp_path_factory.mktemp("prefect")
    home, logs = base / "home", base / "logs"
    home.mkdir()
    logs.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = _base_env(home, url)
    procs = Processes(logs, env)
    try:
        server = procs.start(
            "server", BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)
        )

        def healthy() -> bool:
            if server.popen.poll() is not None:
                pytest.fail(
                    f"prefect server exited {server.popen.returncode}:\n{tail_of(server.log)}"
                )
            try:
                return requests.get(f"{url}/health", timeout=2).ok
            except requests.RequestException:
                return False

        wait_for("the Prefect server to answer /api/health", healthy, 120, server.log)
        yield PrefectServer(url, home, logs, env)
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def prefect_api(prefect_server: PrefectServer) -> Iterator[PrefectServer]:
    """Point this process's Prefect client at the server for the module."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    with temporary_settings(
        {PREFECT_API_URL: prefect_server.url, PREFECT_HOME: prefect_server.home}
    ):
        yield prefect_server


def set_up(config: Path) -> Settings:
    """What `proxflow setup` does (limits, kill switch, work pool), from this process."""
    from flows.setup import setup

    settings = load_settings(config)
    setup(settings, POOL)
    return settings


def start_workers(procs: Processes, names: list[str], *options: str) -> list[Proc]:
    """Process workers on the pool, started as prefect.yaml documents; return once all poll."""
    workers = [
        procs.start(
            name,
            *(BIN / "prefect", "worker", "start", "--pool", POOL, "--type", "process"),
            *("--install-policy", "never", "--name", name, *options),
        )
        for name in names
    ]
    for worker in workers:
        wait_for(f"{worker.log.stem} to start", partial(worker.logged, "started!"), 90, worker.log)
    return workers


def start_run(deployment: str, **parameters: Any) -> str:
    """Create a flow run of `flow/deployment` for a worker to pick up; return its id."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    flow_run = run_deployment(deployment, parameters=parameters, timeout=0)
    assert isinstance(flow_run, FlowRun)
    return str(flow_run.id)


def final_states(run_ids: list[str], timeout: float, logs: list[Path]) -> dict[str, Any]:
    """Wait for every run to reach a final state; return the runs by id."""
    from prefect import get_client

    def all_final() -> dict[str, Any] | None:
        with get_client(sync_client=True) as client:
            runs = {run_id: client.read_flow_run(UUID(run_id)) for run_id in run_ids}
        if all(r.state is not None and r.state.is_final() for r in runs.values()):
            return runs
        return None

    # each check opens a client and reads every run: once a second is often enough
    return dict(wait_for(f"flow runs {run_ids} to finish", all_final, timeout, *logs, every=1.0))
