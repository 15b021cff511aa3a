"""Every command and config example in the README works (or is run by another test)."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.settings import load_settings
from pvesim import Simulator
from tasks.pve import REQUIRED
from tests.conftest import write_config

PROJECT = Path(__file__).resolve().parents[2]
README = (PROJECT / "README.md").read_text()
BLOCK = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    out = []
    for indent, lang, body in BLOCK.findall(README):
        if lang == language:
            out.append("\n".join(line[len(indent) :] for line in body.splitlines()))
    return out


def shell_lines() -> list[str]:
    return [line.strip() for b in blocks("sh") for line in b.splitlines() if line.strip()]


@pytest.mark.parametrize("example", blocks("yaml"), ids=lambda b: b.splitlines()[0])
def test_every_config_example_is_valid(
    example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the examples leave the token secret to the environment, as the README recommends
    monkeypatch.setenv("PROXFLOW_CLUSTER__TOKEN_VALUE", "5f0c1c3e-0000-4000-8000-000000000000")
    path = tmp_path / "proxflow.yaml"
    path.write_text(example)
    settings = load_settings(path)
    assert not settings.embedded
    settings.balance_policy()


def test_the_role_grants_exactly_the_privileges_proxflow_checks() -> None:
    (pve,) = blocks("pve")
    granted = re.search(r'--privs "([^"]+)"', pve)
    assert granted is not None
    assert set(granted.group(1).split(",")) == {priv for priv, _ in REQUIRED}


def test_the_configuration_reference_lists_every_policy_key() -> None:
    from engine.policy import _KNOWN

    for key in _KNOWN:
        assert f"policy.{key}" in README or f"`{key}`" in README, key


def test_the_proxmoxer_example_talks_to_the_simulator(
    make_sim: Callable[..., Simulator],
) -> None:
    sim = make_sim("demo")
    (code,) = blocks("python")
    code = (
        code.replace('"127.0.0.1:8006"', repr(sim.host))
        .replace('"<secret printed by proxflow sim>"', repr(sim.token_secret))
        .replace('"<CA file>"', repr(str(sim.ca_file)))
    )
    code = code.replace("pve.cluster.resources.get", "result = pve.cluster.resources.get")
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert isinstance(scope["result"], list) and len(scope["result"]) == 56


def test_prefect_commands_are_run_by_the_end_to_end_tests() -> None:
    e2e = "\n".join(p.read_text() for p in (PROJECT / "tests" / "e2e").glob("*.py"))
    prefect_lines = [line for line in shell_lines() if line.startswith("prefect ")]
    assert prefect_lines
    for line in prefect_lines:
        # the subcommand as the tests spell an argument list: "server", "start"
        head = ", ".join(f'"{w}"' for w in shlex.split(line)[1:3])
        assert head in e2e, f"{line!r}: no end-to-end test runs {head}"


@pytest.mark.slow
def test_every_proxflow_command_in_the_readme_runs(
    prefect_backend: None, make_sim: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_sim("demo", speed=600.0)
    config = write_config(
        tmp_path / "proxflow.yaml", sim, tmp_path / "data", migrations={"poll_seconds": 0.05}
    )
    commands = [shlex.split(line)[1:] for line in shell_lines() if line.startswith("proxflow ")]
    # `proxflow sim` serves until stopped: tests/flows/test_cli.py runs it in a subprocess
    commands = [c for c in commands if c[0] not in ("sim", "demo")]
    assert len(commands) >= 8
    cwd = os.getcwd()
    os.chdir(tmp_path)  # `capacity --html FILE` writes here
    try:
        for args in commands:
            result = CliRunner().invoke(app, ["--config", str(config), *args])
            assert result.exit_code == 0, (args, result.output[-2000:])
    finally:
        os.chdir(cwd)
    assert (tmp_path / "capacity-report.html").exists()
