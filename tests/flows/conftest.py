"""Flow tests: one Prefect test server for the session, heartbeats off, results in a temp dir.

The harness server copies this process's environment, so server-side settings set here (a short
wait between concurrency-slot retries) reach it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.runtime import use_settings
from flows.settings import Settings
from pvesim import Simulator
from tasks.limits import ensure_limits, set_paused
from tests.conftest import cluster_section

os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", "0.5")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_INTERNAL_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session")
def prefect_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOCAL_STORAGE_PATH,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    store = tmp_path_factory.mktemp("prefect-results")
    with (
        prefect_test_harness(server_startup_timeout=90),
        temporary_settings(
            {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_LOCAL_STORAGE_PATH: store}
        ),
    ):
        yield


def settings_for(sim: Simulator, data_dir: Path, **sections: Any) -> Settings:
    """Settings pointing at a running simulator over verified TLS, history in `data_dir`."""
    return Settings(data_dir=data_dir, cluster=cluster_section(sim), **sections)


@pytest.fixture
def configure(prefect_backend: None, tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Make this process's flows use settings for the given simulator."""

    def apply(sim: Simulator, **sections: Any) -> Settings:
        # bounded waits: a migration that cannot finish fails the test instead of hanging it
        sections.setdefault(
            "migrations",
            {"poll_seconds": 0.05, "lease_seconds": 60, "task_timeout": 120, "slot_timeout": 120},
        )
        settings = settings_for(sim, tmp_path / "data", **sections)
        use_settings(settings)
        # the test server outlives each test: start every test from the configured limits
        m = settings.migrations
        ensure_limits(m.cluster_limit, m.node_limit, (), overwrite=True)
        set_paused(False)
        return settings

    yield apply
    use_settings(None)
