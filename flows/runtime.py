"""The composition root: settings in, a connected gateway and the history store out.

With no cluster host configured, the simulated cluster is started inside this process, once,
and every flow of the process talks to it over real HTTPS like to any cluster. Its state lives
as long as the process does, which is what the demo and ad-hoc CLI runs want; scheduled
deployments on workers should point at a real cluster (or a `proxflow sim` started apart).
"""

from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from analytics import Store
from flows.settings import Settings, load_settings
from tasks.pve import Gateway, PveEndpoint

log = logging.getLogger("proxflow")


def _send_logs_to_runs() -> None:
    """The gateway and store log to `proxflow.*` without knowing Prefect; inside a flow run
    these lines belong in the run's log too (retries, offline nodes, odd API answers)."""
    from prefect.logging.handlers import APILogHandler

    if not any(isinstance(h, APILogHandler) for h in log.handlers):
        log.addHandler(APILogHandler(level=logging.INFO))
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


_lock = threading.Lock()
_embedded: dict[str, object] = {}
_settings_override: list[Settings] = []


def use_settings(settings: Settings | None) -> None:
    """Make flows of this process use these settings instead of reading the config again."""
    _settings_override.clear()
    if settings is not None:
        _settings_override.append(settings)


def current_settings(config: Path | None = None) -> Settings:
    if _settings_override and config is None:
        return _settings_override[0]
    return load_settings(config)


def _simulator(settings: Settings) -> object:
    from pvesim import SimConfig, Simulator

    sim_cfg = settings.simulator
    with _lock:
        sim = _embedded.get("sim")
        if sim is None:
            sim = Simulator(
                SimConfig(
                    scenario=sim_cfg.scenario,
                    speed=sim_cfg.speed,
                    seed=sim_cfg.seed,
                    pve_version=sim_cfg.pve_version,
                    traces_dir=sim_cfg.traces,
                )
            ).start()
            _embedded["sim"] = sim
            atexit.register(sim.stop)
            log.info("no cluster configured: started the simulated cluster at %s", sim.url)
        return sim


def endpoint(settings: Settings) -> PveEndpoint:
    if settings.embedded:
        from pvesim import Simulator

        sim = _simulator(settings)
        assert isinstance(sim, Simulator)
        return PveEndpoint(
            host=sim.config.host,
            port=sim.port,
            user=sim.token.user,
            token_name=sim.token.tokenid,
            token_value=sim.token_secret,
            verify=str(sim.ca_file),
        )
    c = settings.cluster
    assert c.host is not None
    verify: bool | str = str(c.ca_bundle) if c.ca_bundle else c.verify_tls
    return PveEndpoint(
        host=c.host,
        port=c.port,
        user=c.user,
        token_name=c.token_name,
        token_value=c.token_value,
        password=c.password,
        verify=verify,
        timeout=c.timeout,
    )


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    gateway: Gateway
    store: Store


def connect(settings: Settings) -> Runtime:
    _send_logs_to_runs()
    gateway = Gateway.connect(endpoint(settings))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Runtime(settings, gateway, Store(settings.store_path))
