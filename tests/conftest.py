"""Shared fixtures: a running simulator and proxmoxer clients that verify its TLS for real."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from proxmoxer import ProxmoxAPI

from pvesim import SimConfig, Simulator

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_dir(*parts: str) -> Path:
    """A folder of the shared reference data, or skip the test saying where it was looked for."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found at {path}; it lives in ../shared beside the project")
    return path


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Simulator]]:
    """Start simulators with a paused clock and no 401 delay; all are stopped after the test."""
    started: list[Simulator] = []

    def start(scenario: Any = "small", **overrides: Any) -> Simulator:
        overrides.setdefault("speed", 0.0)
        overrides.setdefault("auth_failure_delay", 0.0)
        sim = Simulator(SimConfig(scenario=scenario, **overrides)).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim("small")


def token_client(sim: Simulator, **kwargs: Any) -> ProxmoxAPI:
    return ProxmoxAPI(
        sim.host,
        user=sim.token.user,
        token_name=sim.token.tokenid,
        token_value=sim.token_secret,
        verify_ssl=str(sim.ca_file),
        timeout=kwargs.pop("timeout", 10),
        **kwargs,
    )


def password_client(sim: Simulator, **kwargs: Any) -> ProxmoxAPI:
    return ProxmoxAPI(
        sim.host,
        user=sim.config.username,
        password=sim.password,
        verify_ssl=str(sim.ca_file),
        timeout=kwargs.pop("timeout", 10),
        **kwargs,
    )


@pytest.fixture
def pve(sim: Simulator) -> ProxmoxAPI:
    return token_client(sim)


class Control:
    """The simulator's /_sim API, spoken over HTTPS like any other client would."""

    def __init__(self, sim: Simulator) -> None:
        self.base = f"https://{sim.host}/_sim"
        self.session = requests.Session()
        # passed on each call: a session-level `verify` loses to REQUESTS_CA_BUNDLE in requests
        self.verify = str(sim.ca_file)
        self.session.headers["Authorization"] = f"PVEAPIToken={sim.token_id}={sim.token_secret}"

    def get(self, path: str, /, **params: Any) -> Any:
        r = self.session.get(f"{self.base}/{path}", params=params, timeout=10, verify=self.verify)
        r.raise_for_status()
        return r.json()["data"]

    def post(self, path: str, /, **data: Any) -> Any:
        r = self.session.post(f"{self.base}/{path}", json=data, timeout=10, verify=self.verify)
        r.raise_for_status()
        return r.json()["data"]

    def delete(self, path: str) -> Any:
        r = self.session.delete(f"{self.base}/{path}", timeout=10, verify=self.verify)
        r.raise_for_status()
        return r.json()["data"]

    def advance(self, seconds: float) -> float:
        return float(self.post("clock", advance=seconds)["now"])

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        params = {"kind": kind} if kind else {}
        return list(self.get("events", **params))


@pytest.fixture
def control(sim: Simulator) -> Control:
    return Control(sim)


def cluster_section(sim: Simulator) -> dict[str, Any]:
    """The `cluster` settings for a running simulator: its token, over verified TLS."""
    return {
        "host": "127.0.0.1",
        "port": sim.port,
        "user": sim.token.user,
        "token_name": sim.token.tokenid,
        "token_value": sim.token_secret,
        "ca_bundle": str(sim.ca_file),
    }


def write_config(path: Path, sim: Simulator, data_dir: Path, **sections: Any) -> Path:
    """A proxflow config file for the running simulator."""
    config = {"data_dir": str(data_dir), "cluster": cluster_section(sim), **sections}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
