"""The `replay` scenario serves real trace load through the PVE API."""

from __future__ import annotations

import pytest

from pvesim import ScenarioError, SimConfig, Simulator
from pvesim.metrics import refresh_instant
from pvesim.traces import load_series
from tests.conftest import shared_dir, token_client


def test_replayed_guests_report_the_trace_cpu_as_their_own(make_sim):
    traces = shared_dir("traces")
    sim = make_sim("replay", traces_dir=traces)
    pve = token_client(sim)
    sim.clock.advance(3 * 3600)  # three hours in: 36 five-minute steps
    now = refresh_instant(sim.clock.now())
    position = (now - sim.spec.start) / 300.0
    series = load_series(traces, "bitbrains", "2013-8/1")
    i = int(position)
    frac = position - i
    expected = series.cpu[i] * (1 - frac) + series.cpu[i + 1] * frac
    vm = next(r for r in pve.cluster.resources.get(type="vm") if r["vmid"] == 101)
    assert vm["cpu"] == pytest.approx(expected, abs=1e-6)
    assert vm["mem"] == pytest.approx(
        series.mem[i] * (1 - frac) * vm["maxmem"] + series.mem[i + 1] * frac * vm["maxmem"],
        rel=1e-3,
    )


def test_node_load_of_a_replay_cluster_is_the_sum_of_its_replayed_guests(make_sim):
    sim = make_sim("replay", traces_dir=shared_dir("traces"))
    pve = token_client(sim)
    resources = pve.cluster.resources.get()
    nodes = {r["node"]: r for r in resources if r["type"] == "node"}
    for name, node in nodes.items():
        guests = [r for r in resources if r["type"] in ("qemu", "lxc") and r["node"] == name]
        busy = sum(g["cpu"] * g["maxcpu"] for g in guests)
        overhead = sim.cluster.nodes[name].spec.overhead_cpu
        # node cpu is the fraction of all host CPUs: (guest vCPUs busy + host overhead) / maxcpu
        assert node["cpu"] == pytest.approx((busy + overhead) / node["maxcpu"], abs=1e-5)


def test_a_replay_scenario_without_a_traces_folder_says_how_to_give_one():
    with pytest.raises(ValueError, match="--traces DIR"):
        Simulator(SimConfig(scenario="replay"))


def test_loading_a_missing_scenario_file_names_it(tmp_path):
    with pytest.raises(ScenarioError, match="does not exist"):
        Simulator(SimConfig(scenario=tmp_path / "absent.yaml"))
