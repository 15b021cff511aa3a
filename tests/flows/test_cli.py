"""The `proxflow` command line: `demo` and `sim` as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from proxmoxer import ProxmoxAPI
from typer.testing import CliRunner

from flows.cli import app


def test_sim_refuses_an_unknown_scenario_with_the_names_it_knows():
    result = CliRunner().invoke(app, ["sim", "--scenario", "nope", "--port", "0"])
    assert result.exit_code == 2
    assert "unknown scenario 'nope'" in result.output
    assert "demo" in result.output and "small" in result.output


def test_sim_reports_every_problem_of_a_bad_scenario_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nnodes:\n  - {name: pve1, cores: 0, memory: 8GiB}\n"
        "guests:\n  - {vmid: 100, name: a, node: pve9, memory: lots}\n"
    )
    result = CliRunner().invoke(app, ["sim", "--scenario", str(bad), "--port", "0"])
    assert result.exit_code == 2
    assert "nodes.0.cores" in result.output
    assert "guests.0.memory" in result.output


def test_sim_serves_until_terminated_and_prints_what_a_client_needs():
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "sim", "--scenario", "small", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        printed: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while "CA file" not in printed and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            key, _, value = line.strip().partition(" ")
            if key in ("host", "token", "CA"):
                printed["CA file" if key == "CA" else key] = value.strip()
        host = printed["host"].split()[0]
        token_id, _, secret = printed["token"].rpartition("=")
        user, _, token_name = token_id.partition("!")
        ca_file = printed["CA file"].removeprefix("file").strip()
        pve = ProxmoxAPI(
            host, user=user, token_name=token_name, token_value=secret, verify_ssl=ca_file
        )
        assert {n["node"] for n in pve.nodes.get()} == {"pve1", "pve2", "pve3"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "pvesim stopped" in out
