"""Settings: one YAML file plus PROXFLOW_* variables, every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.settings import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxflow.yaml"
    path.write_text(text)
    return path


def test_no_config_at_all_means_the_embedded_simulator_and_default_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROXFLOW_CONFIG", raising=False)
    settings = load_settings()
    assert settings.embedded
    assert settings.simulator.scenario == "demo"
    assert settings.balance_policy().max_moves == 10
    assert settings.store_path == Path(".proxflow") / "history.duckdb"


def test_every_problem_of_a_bad_file_is_reported_with_its_key_and_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cluster:\n  host: pve.example\n  port: 99999\n  token_name: lb\n"
        "  token_value: s3cr3t-v4lue\n  colour: red\nmigrations:\n  cluster_limit: -1\n"
        "policy:\n  max_moves: ten\n  bogus: 1\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: 5 problem(s)")
    assert "cluster.port: Input should be less than or equal to 65535 (got 99999)" in text
    assert "cluster.colour: unknown key" in text
    assert "migrations.cluster_limit" in text and "(got -1)" in text
    assert "policy.max_moves: expected a whole number from 0 to 10000, got 'ten'" in text
    assert "policy.bogus: unknown key" in text
    assert "s3cr3t-v4lue" not in text


def test_a_secret_that_fails_validation_is_never_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path, "cluster:\n  host: pve.example\n  token_name: lb\n  token_value: [hunter2]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "cluster.token_value" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_host_without_credentials_says_what_it_needs(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster:\n  host: pve.example\n")
    with pytest.raises(ConfigError, match="needs credentials: token_name \\+ token_value"):
        load_settings(path)


def test_environment_variables_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "migrations:\n  cluster_limit: 3\npolicy:\n  max_moves: 5\n")
    monkeypatch.setenv("PROXFLOW_MIGRATIONS__CLUSTER_LIMIT", "1")
    monkeypatch.setenv("PROXFLOW_CLUSTER__HOST", "pve.example")
    monkeypatch.setenv("PROXFLOW_CLUSTER__TOKEN_NAME", "lb")
    monkeypatch.setenv("PROXFLOW_CLUSTER__TOKEN_VALUE", "abc")
    settings = load_settings(path)
    assert settings.migrations.cluster_limit == 1
    assert settings.cluster.host == "pve.example" and not settings.embedded
    assert settings.cluster.token_value is not None
    assert "abc" not in repr(settings)
    assert settings.balance_policy().max_moves == 5


def test_a_bad_environment_value_names_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROXFLOW_MIGRATIONS__NODE_LIMIT", "many")
    with pytest.raises(ConfigError, match=r"migrations.node_limit: .*integer.*'many'"):
        load_settings()


def test_a_file_that_is_not_yaml_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster:\n  host: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        load_settings(path)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path / "nope.yaml")
