"""Start and stop a simulated cluster: scenario + clock + credentials + HTTPS server."""

from __future__ import annotations

import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pvesim.auth import ALL_PRIVILEGES, Authenticator, TokenCredential, UserCredential
from pvesim.clock import VirtualClock
from pvesim.cluster import Cluster
from pvesim.noise import stream_key
from pvesim.scenario import PveVersion, ScenarioSpec, load_scenario
from pvesim.server import SimHTTPServer
from pvesim.tls import TlsFiles, make_certificates


@dataclass
class SimConfig:
    scenario: str | Path | ScenarioSpec = "demo"
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port
    speed: float = 1.0
    seed: int | None = None  # overrides the scenario's seed
    pve_version: PveVersion | None = None  # overrides the scenario's version
    token_user: str = "root@pam"
    token_name: str = "proxflow"
    token_secret: str | None = None  # derived from the seed when unset
    username: str = "root@pam"
    password: str | None = None  # derived from the seed when unset
    privileges: frozenset[str] = ALL_PRIVILEGES
    auth_failure_delay: float = 3.0
    state_dir: Path | None = None  # where the CA and server certificate go
    traces_dir: Path | None = None
    extra_tokens: list[TokenCredential] = field(default_factory=list)


class Simulator:
    """A running simulated PVE cluster; use as a context manager or call start()/stop()."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = cfg = config or SimConfig()
        spec = (
            cfg.scenario if isinstance(cfg.scenario, ScenarioSpec) else load_scenario(cfg.scenario)
        )
        updates: dict[str, object] = {}
        if cfg.seed is not None:
            updates["seed"] = cfg.seed
        if cfg.pve_version is not None:
            updates["pve_version"] = cfg.pve_version
        self.spec = spec.model_copy(update=updates) if updates else spec
        seed = self.spec.seed
        self.token_secret = cfg.token_secret or str(
            uuid.UUID(int=stream_key(seed, "token") << 64 | stream_key(seed, "token2"))
        )
        self.password = cfg.password or f"pvesim-{stream_key(seed, 'password') % 10**8:08d}"
        self.clock = VirtualClock(self.spec.start, cfg.speed)
        self.cluster = Cluster(self.spec, self.clock, cfg.traces_dir)
        self.token = TokenCredential(
            cfg.token_user, cfg.token_name, self.token_secret, cfg.privileges
        )
        self.auth = Authenticator(
            secret=stream_key(seed, "ticket-key").to_bytes(8, "big") * 4,
            version=self.spec.pve_version,
            tokens=[self.token, *cfg.extra_tokens],
            users=[UserCredential(cfg.username, self.password, cfg.privileges)],
            failure_delay=cfg.auth_failure_delay,
        )
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.tls: TlsFiles | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Simulator:
        state_dir = self.config.state_dir
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pvesim-")
            state_dir = Path(self._tmp.name)
        self.tls = make_certificates(state_dir)
        self.cluster.fingerprint = self.tls.fingerprint
        self._server = SimHTTPServer(
            (self.config.host, self.config.port),
            self.cluster,
            self.auth,
            self.tls.server_context(),
            self.spec.seed,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="pvesim",
            kwargs={"poll_interval": 0.2},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what a client needs ----------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """`host:port` as proxmoxer's `host` argument takes it."""
        return f"{self.config.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}/api2/json"

    @property
    def ca_file(self) -> Path:
        if self.tls is None:
            raise RuntimeError("the simulator is not running")
        return self.tls.ca_cert

    @property
    def token_id(self) -> str:
        return self.token.full_id
