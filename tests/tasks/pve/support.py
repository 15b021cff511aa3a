"""Gateways pointed at a simulator the way a deployment points one at a cluster, and a fake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.plan import Move, Reason
from pvesim import Simulator
from tasks.pve import Gateway, PveEndpoint, RetryPolicy
from tasks.pve.errors import PveError
from tasks.pve.transport import Transport
from tests.conftest import Control

# retries without waiting, so fault tests take milliseconds
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002)


def token_endpoint(sim: Simulator, **overrides: Any) -> PveEndpoint:
    fields: dict[str, Any] = {
        "host": sim.config.host,
        "port": sim.port,
        "user": sim.token.user,
        "token_name": sim.token.tokenid,
        "token_value": sim.token_secret,
        "verify": str(sim.ca_file),
        "timeout": 10,
    }
    return PveEndpoint(**{**fields, **overrides})


def password_endpoint(sim: Simulator, **overrides: Any) -> PveEndpoint:
    fields: dict[str, Any] = {
        "host": sim.config.host,
        "port": sim.port,
        "user": sim.config.username,
        "password": sim.password,
        "verify": str(sim.ca_file),
        "timeout": 10,
    }
    return PveEndpoint(**{**fields, **overrides})


def connect(sim: Simulator, retry: RetryPolicy = FAST, **overrides: Any) -> Gateway:
    return Gateway.connect(token_endpoint(sim, **overrides), retry)


def requests_made(control: Control) -> dict[str, int]:
    """API requests per route since the last reset, as the simulator counted them."""
    return dict(control.get("requests")["routes"])


def move(
    vmid: int,
    kind: str,
    source: str,
    target: str,
    *,
    online: bool = False,
    restart: bool = False,
    with_local_disks: bool = False,
) -> Move:
    return Move(
        vmid=vmid,
        name=f"guest{vmid}",
        kind=kind,
        source=source,
        target=target,
        reason=Reason.BALANCE,
        detail="",
        online=online,
        restart=restart,
        with_local_disks=with_local_disks,
        mem_bytes=0,
        disk_bytes=0,
        gain=0.0,
        cost=0.0,
    )


class FakeTransport(Transport):
    """Canned answers per path, for shapes the simulator never sends."""

    def __init__(self, answers: dict[str, Any] | Callable[[str], Any]) -> None:
        super().__init__(api=None, who="root@pam!proxflow", retry=FAST)  # type: ignore[arg-type]
        self.answers = answers
        self.paths: list[str] = []

    def get_once(self, path: str, **params: Any) -> Any:
        self._count()
        self.paths.append(path)
        answer = self.answers(path) if callable(self.answers) else self.answers[path]
        if isinstance(answer, PveError):
            raise answer
        return answer

    def post(self, path: str, **data: Any) -> Any:
        raise AssertionError(f"a fake transport takes no writes ({path})")


def fake_gateway(answers: dict[str, Any] | Callable[[str], Any], release: str = "9.1") -> Gateway:
    gateway = Gateway(FakeTransport(answers), PveEndpoint(host="pve.example", password="x"))
    gateway._release = release
    return gateway
