"""End-to-end fixtures: a real Prefect server, workers and flow processes against the simulator.

Everything binds 127.0.0.1. Every process started here runs in its own session and is killed,
with everything it started, at teardown even when a test failed; its output goes to a log file
whose tail is shown when a wait times out. One Prefect server serves the whole directory (its
start-up is the slowest step); each module brings its own simulator, config, limits and workers.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import requests
import yaml

from pvesim import Simulator

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, log: Path | None = None) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` (and the log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n--- last lines of {log.name} ---\n{tail_of(log)}" if log else ""
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{tail}")
        time.sleep(0.25)


def tail_of(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (flow runs start in sessions of their own)."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        kids = tree.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _started_at(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields is not None else None  # field 22 of stat: start time


def _kill(family: dict[int, str | None], sig: signal.Signals) -> None:
    """Signal each process that is still the one seen (a pid may be reused once it exits)."""
    for pid, started in family.items():
        if started is not None and _started_at(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


@dataclass
class Processes:
    """Background processes of one fixture; `stop_all` ends them and whatever they started."""

    logs: Path
    env: dict[str, str]
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, *args: str | Path, env: Mapping[str, str] | None = None) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(a) for a in args],
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(popen)
        return Proc(popen, log)

    def stop_all(self) -> None:
        for popen in reversed(self.started):
            stop(popen)


@dataclass(frozen=True)
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def logged(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")


def stop(popen: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process and its descendants, SIGKILL whatever is left after `grace` s."""
    if popen.poll() is not None:
        return
    family = {pid: _started_at(pid) for pid in [popen.pid, *descendants(popen.pid)]}
    _kill(family, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=grace)
    if popen.poll() is None:  # still there: take whatever it started meanwhile too
        family |= {p: _started_at(p) for p in descendants(popen.pid) if p not in family}
    _kill(family, signal.SIGKILL)
    popen.wait(timeout=10)


def run(args: list[str | Path], env: Mapping[str, str], timeout: float = 180) -> str:
    """Run a command to its end from the project root; fail with its output if it fails."""
    try:
        done = subprocess.run(
            [str(a) for a in args],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(map(str, args))} did not finish within {timeout:g} s: {exc.output}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{output}"
    return output


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


def write_config(path: Path, sim: Simulator, data_dir: Path, **sections: Any) -> Path:
    """A proxflow config file for the running simulator (token over verified TLS)."""
    config = {
        "data_dir": str(data_dir),
        "cluster": {
            "host": "127.0.0.1",
            "port": sim.port,
            "user": sim.token.user,
            "token_name": sim.token.tokenid,
            "token_value": sim.token_secret,
            "ca_bundle": str(sim.ca_file),
        },
        **sections,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def set_up(config: Path) -> list[str]:
    """What `proxflow setup` does, from this process: limits, kill switch and work pool."""
    from flows.settings import load_settings
    from flows.setup import setup

    return setup(load_settings(config), POOL)


class SimEvents:
    """The simulator's own event log over its control API: what really happened."""

    def __init__(self, sim: Simulator) -> None:
        self.url = f"https://{sim.host}/_sim"
        self.verify = str(sim.ca_file)
        self.headers = {"Authorization": f"PVEAPIToken={sim.token_id}={sim.token_secret}"}

    def get(self, kind: str | None = None) -> list[dict[str, Any]]:
        params = {"kind": kind} if kind else {}
        r = requests.get(
            f"{self.url}/events",
            params=params,
            headers=self.headers,
            verify=self.verify,
            timeout=10,
        )
        r.raise_for_status()
        return list(r.json()["data"])

    def set_speed(self, speed: float) -> None:
        r = requests.post(
            f"{self.url}/clock",
            json={"speed": speed},
            headers=self.headers,
            verify=self.verify,
            timeout=10,
        )
        r.raise_for_status()


@dataclass(frozen=True)
class Interval:
    vmid: int
    upid: str
    source: str
    target: str
    start: float
    end: float
    ok: bool


def migrations(events: list[dict[str, Any]]) -> list[Interval]:
    """Pair each migration task's start with its finish, in simulated seconds.

    `upid` is the task the client was given: for an HA-managed guest that is the `hamigrate`
    request, and the migration itself is a later task the HA stack starts.
    """
    finished = {e["upid"]: e for e in events if e["kind"] == "migration_finished"}
    requested: dict[int, str] = {}
    out = []
    for e in sorted(events, key=lambda e: e["seq"]):
        if e["kind"] == "ha_migration_requested":
            requested[e["vmid"]] = e["upid"]
        if e["kind"] != "migration_started":
            continue
        end = finished.get(e["upid"])
        assert end is not None, f"migration {e['upid']} of {e['vmid']} never finished"
        upid = requested.pop(e["vmid"]) if e["ha"] else e["upid"]
        out.append(
            Interval(e["vmid"], upid, e["source"], e["target"], e["time"], end["time"], end["ok"])
        )
    return sorted(out, key=lambda i: i.start)


def brackets(started: float | None, finished: float | None, task: Interval) -> bool:
    """A store record spans the task: opened before it started, closed once it had ended.

    The cluster's clock, as PVE shows it, reads whole seconds, hence the floors.
    """
    if started is None or finished is None:
        return False
    return started <= task.start < task.end and math.floor(task.end) <= finished


def overlapping(a: Interval, b: Interval) -> bool:
    return a.start < b.end and b.start < a.end


def most_at_once(intervals: list[Interval]) -> int:
    """The largest number of intervals in progress at one instant (ends before starts)."""
    edges = sorted([(i.start, 1) for i in intervals] + [(i.end, -1) for i in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


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

    done: dict[str, Any] = {}

    def all_final() -> bool:
        with get_client(sync_client=True) as client:
            for run_id in run_ids:
                flow_run = client.read_flow_run(UUID(run_id))
                if flow_run.state is not None and flow_run.state.is_final():
                    done[run_id] = flow_run
        return len(done) == len(run_ids)

    deadline = time.monotonic() + timeout
    while not all_final():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name} ---\n{tail_of(log, 25)}" for log in logs)
            pytest.fail(
                f"timed out after {timeout:g} s waiting for flow runs "
                f"{sorted(set(run_ids) - set(done))} to finish\n{tails}"
            )
        time.sleep(1)
    return done
