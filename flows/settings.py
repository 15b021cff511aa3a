"""Settings: one YAML file plus ``PROXFLOW_*`` environment variables, validated in one pass.

Precedence (highest first): environment (``PROXFLOW_CLUSTER__HOST``, ``PROXFLOW_POLICY__MAX_MOVES``
…; ``__`` separates levels), the YAML file (``--config``, else ``PROXFLOW_CONFIG``, else
``proxflow.yaml`` in the working directory when present), then defaults. With no cluster host
configured proxflow runs against its own simulated cluster (``simulator`` section).

Every problem in the file and the environment is reported together as ``file: key: reason``
lines, because an operator should fix a config once, not once per error. Secret values are
never echoed in those messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine import Policy, PolicyError

CONFIG_ENV = "PROXFLOW_CONFIG"
DEFAULT_FILE = "proxflow.yaml"
SECRET_KEYS = {"token_value", "password"}


class ConfigError(ValueError):
    """Every problem found in the configuration, one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSettings(_Section):
    """A real cluster. Leave ``host`` empty to use the simulated one."""

    host: str | None = None
    port: int = Field(8006, ge=1, le=65535)
    user: str = "root@pam"
    token_name: str | None = None
    token_value: SecretStr | None = None
    password: SecretStr | None = None
    verify_tls: bool = True
    ca_bundle: Path | None = None
    timeout: float = Field(30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _credentials(self) -> ClusterSettings:
        if self.host is None:
            return self
        if self.token_name and self.token_value is None:
            raise ValueError("token_name is set but token_value is missing")
        if self.token_name is None and self.password is None:
            raise ValueError(
                "a cluster host needs credentials: token_name + token_value (recommended) "
                "or password"
            )
        if "@" not in self.user:
            raise ValueError(f"user must look like name@realm, got {self.user!r}")
        return self


class SimulatorSettings(_Section):
    """The embedded simulated cluster used when no cluster host is configured."""

    scenario: str = "demo"
    speed: float = Field(60.0, ge=0, le=100_000)
    seed: int | None = None
    pve_version: Literal["9.1", "8.4"] | None = None
    traces: Path | None = None


class StoreSettings(_Section):
    path: Path | None = None  # default: <data_dir>/history.duckdb
    raw_days: float = Field(3, gt=0)
    five_minute_days: float = Field(90, gt=0)
    hourly_days: float = Field(5 * 365, gt=0)


class ForecastSettings(_Section):
    horizon_minutes: Literal[30, 60] = 30
    training_days: float = Field(30, gt=0, le=365)
    backfill: Literal["hour", "day", "week"] = "day"
    keep_models: int = Field(5, ge=1, le=100)


class MigrationSettings(_Section):
    cluster_limit: int = Field(2, ge=0, le=64)
    node_limit: int = Field(1, ge=0, le=16)
    task_timeout: float = Field(3600, gt=0)  # seconds of waiting for one migration task
    slot_timeout: float = Field(3600, gt=0)  # seconds of waiting for the concurrency slots
    lease_seconds: int = Field(120, ge=60, le=86_400)
    poll_seconds: float = Field(1.0, gt=0, le=60)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PROXFLOW_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path(".proxflow")
    cluster: ClusterSettings = ClusterSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    store: StoreSettings = StoreSettings()
    forecast: ForecastSettings = ForecastSettings()
    migrations: MigrationSettings = MigrationSettings()
    policy: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment overrides the file, which arrives as init arguments
        return (env_settings, init_settings)

    @property
    def embedded(self) -> bool:
        return self.cluster.host is None

    @property
    def store_path(self) -> Path:
        return self.store.path or self.data_dir / "history.duckdb"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"

    def balance_policy(self) -> Policy:
        return Policy.from_mapping(self.policy)


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after",))


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    key = _location(loc) or "(top level)"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        return f"{key}: unknown key"
    shown = "" if SECRET_KEYS & {str(p) for p in loc} else f" (got {error.get('input')!r})"
    if error.get("type") == "missing" or isinstance(error.get("input"), dict):
        shown = ""
    return f"{key}: {message}{shown}"


def config_path(explicit: Path | None = None) -> Path | None:
    """The config file in use: the argument, ``PROXFLOW_CONFIG``, or ./proxflow.yaml if present."""
    if explicit is not None:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(str(path), [f"{where}{problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"expected a mapping of sections, got {type(data).__name__}"])
    return data


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate the configuration; raise `ConfigError` listing every problem."""
    source_path = config_path(path)
    data = _read_yaml(source_path) if source_path is not None else {}
    source = str(source_path) if source_path is not None else "environment (PROXFLOW_*)"
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems.extend(_describe(e) for e in exc.errors(include_url=False))
    policy = settings.policy if settings is not None else data.get("policy", {})
    try:
        Policy.from_mapping(policy if isinstance(policy, Mapping) else {}, source="policy")
    except PolicyError as exc:
        problems.extend(f"policy.{p}" for p in exc.problems)
    if isinstance(policy, Mapping) is False:
        problems.append(f"policy: expected a mapping of keys, got {type(policy).__name__}")
    if problems or settings is None:
        raise ConfigError(source, problems)
    return settings
