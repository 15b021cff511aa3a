"""One `proxflow demo` run for the whole session: its output, history and report are what the
demo and notebook tests look at."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoRun:
    code: int
    output: str
    data_dir: Path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    env = {**os.environ, "COLUMNS": "160", "PYTHONPATH": str(PROJECT)}
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--data-dir", str(data_dir)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return DemoRun(proc.returncode, proc.stdout + proc.stderr, data_dir)
