"""The pipeline commands of `proxflow`, run the way a user runs them, against the simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from pvesim import Simulator
from tests.conftest import Control, write_config


@pytest.fixture
def config(make_sim: Callable[..., Simulator], tmp_path: Path) -> tuple[Simulator, Path]:
    sim = make_sim("demo", speed=600.0)
    path = write_config(
        tmp_path / "proxflow.yaml",
        sim,
        tmp_path / "data",
        migrations={"poll_seconds": 0.05},
        policy={"max_moves": 20, "max_moves_per_node": 10},
    )
    return sim, path


def run(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(path), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_nodes_and_guests_show_the_cluster_with_tags_and_rules(
    config: tuple[Simulator, Path],
) -> None:
    _, path = config
    code, out = run(path, "nodes")
    assert code == 0, out
    assert "Nodes (imbalance" in out and all(f"pve{i}" in out for i in range(1, 6))
    code, out = run(path, "guests", "--node", "pve1")
    assert code == 0, out
    assert "Guests on pve1" in out and "anti-affinity:db" in out
    assert "web-frontend" in out and "dns2" not in out  # dns2 lives on pve5


def test_status_reports_version_privileges_and_quorum(config: tuple[Simulator, Path]) -> None:
    _, path = config
    code, out = run(path, "status")
    assert code == 0, out
    assert "PVE 9.1" in out and "all present" in out and "quorum      ok" in out


def test_plan_as_json_lists_moves_with_reasons_and_executes_nothing(
    prefect_backend: None, config: tuple[Simulator, Path]
) -> None:
    sim, path = config
    code, out = run(path, "plan", "--json")
    assert code == 0, out
    plan = json.loads(out[out.index("{") :])
    assert plan["moves"] and all(m["reason"] and m["detail"] for m in plan["moves"])
    assert plan["imbalance_after"] < plan["imbalance_before"]
    assert Control(sim).events("migration_started") == []


def test_balance_without_yes_outside_a_terminal_does_not_execute(
    prefect_backend: None, config: tuple[Simulator, Path]
) -> None:
    sim, path = config
    code, out = run(path, "balance")
    assert code == 0, out
    assert "pass --yes" in out
    assert Control(sim).events("migration_started") == []


def test_balance_yes_executes_and_shows_each_migration(
    prefect_backend: None, config: tuple[Simulator, Path]
) -> None:
    sim, path = config
    code, out = run(path, "balance", "--yes")
    assert code == 0, out
    started = Control(sim).events("migration_started")
    assert started and out.count(" ok ") >= len(started)


def test_a_bad_config_file_exits_2_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("cluster:\n  port: 0\npolicy:\n  margin: 7\n")
    code, out = run(path, "nodes")
    assert code == 2
    assert "cluster.port" in out and "policy.margin" in out


def test_a_wrong_token_is_one_clear_line_without_the_secret(
    config: tuple[Simulator, Path],
) -> None:
    _, path = config
    data = yaml.safe_load(path.read_text())
    data["cluster"]["token_value"] = "00000000-dead-beef-0000-000000000000"
    path.write_text(yaml.safe_dump(data))
    code, out = run(path, "nodes")
    assert code == 1
    assert "error:" in out and "dead-beef" not in out
