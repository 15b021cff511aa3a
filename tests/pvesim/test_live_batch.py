"""Batched metrics: one implementation of the load model, whichever way the guests are grouped.

The synthetic model runs on numpy arrays (pvesim.load.SyntheticTable) and a refresh's live
figures are computed once for the whole cluster (pvesim.metrics.live_view). These tests pin
down that grouping never changes a value: a guest alone, in a batch, in the live view, in an
rrd series or in any endpoint gives the same bits, and nodes add up their guests exactly.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from pvesim.clock import VirtualClock
from pvesim.cluster import Cluster
from pvesim.load import (
    DAY,
    NOISE_STEP,
    LoadBatch,
    SyntheticSource,
    SyntheticTable,
    TraceSource,
)
from pvesim.metrics import (
    MIGRATION_CPU,
    cluster_table,
    guest_counters,
    guest_sample,
    live_view,
    node_sample,
    node_samples,
    refresh_instant,
)
from pvesim.noise import normal, normal_array, stream_key, uniform, uniform_array
from pvesim.rrd import _instants, buckets, guest_series, node_series
from pvesim.scenario import SyntheticLoad, TraceLoad, generate_large, load_scenario
from pvesim.traces import TraceSeries
from tests.conftest import Control, token_client

ORIGIN = 1_795_000_000.0


def varied_specs(n: int, seed: int = 3) -> list[SyntheticLoad]:
    """Specs exercising every part of the model: bursts long and short, trends, weekend dips."""
    rng = random.Random(seed)
    return [
        SyntheticLoad(
            cpu=rng.uniform(0.0, 1.5),
            daily=rng.uniform(0, 1),
            weekly=rng.uniform(0, 1),
            peak_hour=rng.uniform(0, 23.9),
            trend=rng.uniform(-0.2, 0.2),
            bursts_per_day=rng.choice([0.0, 0.5, 6.0, 48.0]),
            burst_height=rng.uniform(0, 3),
            burst_minutes=rng.choice([5.0, 20.0, 90.0, 400.0]),
            noise=rng.uniform(0, 0.5),
            mem=rng.uniform(0, 1),
            mem_trend=rng.uniform(-0.05, 0.05),
            mem_noise=rng.uniform(0, 0.2),
            net_kbps=rng.uniform(0, 5000),
            disk_kbps=rng.uniform(0, 5000),
        )
        for _ in range(n)
    ]


def reference_cpu_mem(spec: SyntheticLoad, seed: int, vmid: int, t: float) -> tuple[float, float]:
    """The synthetic model written out with `math`, one guest and one instant at a time."""
    hour = (t % DAY) / 3600.0
    daily = 1.0 + spec.daily * math.cos(2.0 * math.pi * (hour - spec.peak_hour) / 24.0)
    weekday = (int(t // DAY) + 3) % 7  # 1970-01-01 was a Thursday
    weekly = 1.0 - spec.weekly if weekday >= 5 else 1.0
    cycle = daily * weekly * max(0.0, 1.0 + spec.trend * (t - ORIGIN) / DAY)
    bursts = stream_key(seed, vmid, "bursts")
    length = spec.burst_minutes * 60.0
    burst = 0.0
    h_now = int(t // 3600.0)
    for h in range(h_now - int(length // 3600.0) - 1, h_now + 1):
        if uniform(bursts, 2 * h) < spec.bursts_per_day / 24.0:
            start = h * 3600.0 + uniform(bursts, 2 * h + 1) * 3600.0
            if start <= t < start + length:
                burst = spec.burst_height
    noise = normal(stream_key(seed, vmid, "cpu-noise"), int(t // NOISE_STEP))
    cpu = min(max(spec.cpu * (cycle + burst + spec.noise * noise), 0.0), 1.0)
    wobble = normal(stream_key(seed, vmid, "mem-noise"), int(t // 60.0))
    mem = spec.mem + spec.mem_trend * (t - ORIGIN) / DAY + spec.mem_noise * wobble
    mem += 0.1 * spec.mem * (cycle - 1.0)
    return cpu, min(max(mem, 0.01), 0.99)


def instants(n: int, seed: int = 5) -> list[float]:
    rng = random.Random(seed)
    return [ORIGIN + rng.uniform(-40 * DAY, 40 * DAY) for _ in range(n)]


# --- the draws ------------------------------------------------------------------------------


def test_array_draws_are_the_scalar_draws() -> None:
    rng = random.Random(1)
    keys = [stream_key(7, rng.randrange(100, 10**6), "cpu-noise") for _ in range(3000)]
    index = [rng.randrange(-(10**12), 10**12) for _ in range(3000)]
    k = np.array(keys, dtype=np.uint64)
    i = np.array(index, dtype=np.int64)
    # the integer part (splitmix64) is exact in both
    assert uniform_array(k, i).tolist() == [uniform(a, b) for a, b in zip(keys, index, strict=True)]
    # Box-Muller through numpy's log/cos: the same number up to the last bit or so
    scalar = [normal(a, b) for a, b in zip(keys, index, strict=True)]
    assert normal_array(k, i).tolist() == pytest.approx(scalar, rel=1e-14, abs=1e-14)


# --- the synthetic table ----------------------------------------------------------------------


def test_the_batched_model_is_the_model_written_out_with_math() -> None:
    specs = varied_specs(60)
    table = SyntheticTable()
    sources = [SyntheticSource(s, 9, 100 + i, ORIGIN, table) for i, s in enumerate(specs)]
    for t in instants(40):
        loads = LoadBatch(sources).loads(np.full(len(sources), t))
        for i, spec in enumerate(specs):
            cpu, mem = reference_cpu_mem(spec, 9, 100 + i, t)
            assert loads.cpu[i] == pytest.approx(cpu, rel=1e-12, abs=1e-12), (i, t)
            assert loads.mem[i] == pytest.approx(mem, rel=1e-12, abs=1e-12), (i, t)


def test_a_guest_gives_the_same_bits_alone_and_in_any_batch() -> None:
    specs = varied_specs(40)
    table = SyntheticTable()
    sources = [SyntheticSource(s, 4, 500 + i, ORIGIN, table) for i, s in enumerate(specs)]
    times = instants(len(sources) * 5)
    pairs = [(sources[i % len(sources)], t) for i, t in enumerate(times)]
    rng = random.Random(2)
    rng.shuffle(pairs)
    batch = LoadBatch([s for s, _ in pairs])
    ts = np.array([t for _, t in pairs])
    loads = batch.loads(ts)
    start = np.full(len(pairs), ORIGIN - 3 * DAY)
    net, disk = batch.bytes(start, ts)
    for i, (src, t) in enumerate(pairs):
        # a fresh source on its own table: nothing memoised, a one-element evaluation
        alone = SyntheticSource(src.spec, 4, 500 + sources.index(src), ORIGIN)
        assert alone.cpu(t) == loads.cpu[i]
        assert alone.mem(t) == loads.mem[i]
        assert alone.net_rate(t) == loads.net_rate[i]
        assert alone.disk_rate(t) == loads.disk_rate[i]
        assert alone.net_bytes(ORIGIN - 3 * DAY, t) == net[i]
        assert alone.disk_bytes(ORIGIN - 3 * DAY, t) == disk[i]


def test_counters_do_not_run_backwards_and_start_at_zero() -> None:
    source = SyntheticSource(varied_specs(1)[0], 1, 100, ORIGIN)
    assert source.net_bytes(ORIGIN, ORIGIN) == 0.0
    assert source.disk_bytes(ORIGIN + 5, ORIGIN) == 0.0
    values = [source.net_bytes(ORIGIN, ORIGIN + 37.0 * k) for k in range(500)]
    assert values == sorted(values)


def test_a_mixed_batch_asks_trace_sources_one_by_one() -> None:
    series = TraceSeries(step=300.0, cpu=(0.1, 0.7, 0.3, 0.9), mem=None)
    trace_spec = TraceLoad(model="trace", dataset="planetlab", series="20110303/vm")
    traces = [TraceSource(trace_spec, series, 1, 200 + i, ORIGIN) for i in range(3)]
    table = SyntheticTable()
    synthetic = [
        SyntheticSource(s, 1, 300 + i, ORIGIN, table) for i, s in enumerate(varied_specs(4))
    ]
    mixed = [
        synthetic[0],
        traces[0],
        synthetic[1],
        traces[1],
        synthetic[2],
        traces[2],
        synthetic[3],
    ]
    times = instants(len(mixed))
    loads = LoadBatch(mixed).loads(np.array(times))
    for i, (src, t) in enumerate(zip(mixed, times, strict=True)):
        assert (loads.cpu[i], loads.mem[i]) == (src.cpu(t), src.mem(t))
        assert (loads.net_rate[i], loads.disk_rate[i]) == (src.net_rate(t), src.disk_rate(t))


def test_an_empty_batch_is_empty() -> None:
    loads = LoadBatch([]).loads(np.empty(0))
    assert all(len(column) == 0 for column in loads)


# --- the live view ----------------------------------------------------------------------------


@pytest.fixture
def big() -> Cluster:
    spec = generate_large(8, 400)
    return Cluster(spec, VirtualClock(spec.start, 0.0))


def test_live_figures_are_each_guest_s_own_sample(big: Cluster) -> None:
    now = big.spec.start + 1234.5
    t = refresh_instant(now)
    view = live_view(big, now)
    for guest in big.guests.values():
        status, seen, _ = view.guests[guest.vmid]
        assert (status, seen) == ("running", t)
        live = view.sample(guest.vmid)
        assert live is not None
        alone = guest_sample(guest, t)
        assert (live.cpu, live.mem, live.memhost) == (alone.cpu, alone.mem, alone.memhost)
        assert (live.netin, live.netout, live.diskread, live.diskwrite) == guest_counters(guest, t)


def test_a_node_is_its_overhead_plus_its_guests_exactly(big: Cluster) -> None:
    now = big.spec.start + 777.0
    view = live_view(big, now)
    for node in big.nodes.values():
        busy = node.spec.overhead_cpu
        mem = float(node.spec.overhead_mem)
        for guest in big.guests_on(node.name):
            live = view.sample(guest.vmid)
            assert live is not None
            busy += live.cpu * guest.spec.cores
            mem += live.memhost
        shown = view.nodes[node.name]
        assert shown.cpu == min(busy / node.spec.maxcpu, 1.0)
        assert shown.mem == int(min(mem, float(node.spec.memory)))
        # the rrd path (guests found by placement, one instant) adds up the same
        assert node_sample(big, node, refresh_instant(now)) == shown


def test_node_series_instants_batched_or_alone_agree(big: Cluster) -> None:
    node = big.nodes["pve3"]
    ts = [big.spec.start - 3600.0 * k - 17.0 for k in range(12)]
    assert node_samples(big, node, ts) == [node_sample(big, node, t) for t in ts]


def test_the_live_view_is_built_once_per_refresh_and_state(big: Cluster) -> None:
    now = refresh_instant(big.spec.start) + 10.0
    first = live_view(big, now)
    assert live_view(big, now + 9.9) is first  # same refresh window
    big.touch()
    second = live_view(big, now + 9.9)
    assert second is not first
    assert second.cpu == first.cpu  # nothing that matters changed
    assert live_view(big, now + 10.0) is not second  # the next refresh


def test_guests_of_an_offline_node_keep_its_last_broadcast(big: Cluster) -> None:
    start = big.spec.start
    node = big.nodes["pve2"]
    big.clock.advance(25.0)
    big.set_node_online("pve2", False)
    frozen = refresh_instant(start + 25.0)
    big.clock.advance(100.0)
    view = live_view(big, big.now())
    for guest in big.guests_on("pve2"):
        status, seen, _ = view.guests[guest.vmid]
        assert (status, seen) == ("running", frozen)
        live = view.sample(guest.vmid)
        assert live is not None and live.cpu == guest_sample(guest, frozen).cpu
    assert "pve2" not in view.nodes
    assert node.name in big.nodes
    big.clock.advance(400.0)  # the 5 min RRD expiry has passed
    view = live_view(big, big.now())
    assert {view.guests[g.vmid][0] for g in big.guests_on("pve2")} == {"unknown"}
    assert all(view.sample(g.vmid) is None for g in big.guests_on("pve2"))


def test_a_migration_s_extra_load_is_added_to_both_ends(big: Cluster) -> None:
    from pvesim.cluster import MigrationWindow

    t = refresh_instant(big.spec.start) + 30.0
    before = {n: live_view(big, t).nodes[n] for n in ("pve1", "pve2")}
    big.migration_windows.append(MigrationWindow(1000, "pve1", "pve2", t - 5.0, t + 60.0, 4e9))
    big.touch()
    after = live_view(big, t).nodes
    for name in ("pve1", "pve2"):  # (cpu may be capped at 1: the load average is not)
        assert after[name].loadavg == pytest.approx(before[name].loadavg + MIGRATION_CPU * 1.1)
    assert after["pve2"].mem > before["pve2"].mem
    assert after["pve1"].netout > before["pve1"].netout


def test_rrd_series_are_made_of_the_same_samples(big: Cluster) -> None:
    now = big.spec.start + 5000.0
    guest = big.guests[1003]
    step, _ = buckets(big.version, "week", now)
    items = guest_series(big, guest, "week", "MAX", now)
    for item in items[-5:]:
        points = [t for t in _instants(item["time"], step) if t <= now]
        assert item["cpu"] == max(guest_sample(guest, t).cpu for t in points)
    node = big.nodes[guest.node]
    items = node_series(big, node, "week", "AVERAGE", now)
    for item in items[-3:]:
        points = [t for t in _instants(item["time"], step) if t <= now]
        expected = sum(node_sample(big, node, t).cpu for t in points) / len(points)
        assert item["cpu"] == expected


def test_the_view_covers_every_guest_stopped_ones_too() -> None:
    spec = load_scenario("small")
    cluster = Cluster(spec, VirtualClock(spec.start, 0.0))
    table = cluster_table(cluster)
    assert [g.vmid for g in table.by_vmid] == sorted(cluster.guests)
    view = live_view(cluster, spec.start)
    assert set(view.guests) == set(cluster.guests)
    stopped = [g for g in cluster.guests.values() if g.status != "running"]
    assert stopped and all(view.guests[g.vmid][0] == "stopped" for g in stopped)


# --- through the API --------------------------------------------------------------------------


def test_every_endpoint_shows_a_guest_s_figures_identically(make_sim) -> None:
    sim = make_sim("small")
    pve = token_client(sim)
    Control(sim).advance(3 * 3600 + 7)  # a cold window: nothing cached yet
    resources = pve.cluster.resources.get()
    nodes = {r["node"]: r for r in resources if r["type"] == "node"}
    guests = [r for r in resources if r["type"] in ("qemu", "lxc") and r["status"] == "running"]
    assert guests
    for entry in guests:
        api = pve.nodes(entry["node"])(entry["type"])
        listed = next(g for g in api.get() if g["vmid"] == entry["vmid"])
        current = api(entry["vmid"]).status.current.get()
        for key in ("cpu", "mem", "memhost", "netin", "netout", "diskread", "diskwrite"):
            assert listed[key] == entry[key] == current[key], (entry["id"], key)
    for name, node in nodes.items():
        status = pve.nodes(name).status.get()
        assert status["cpu"] == node["cpu"]
        assert status["memory"]["used"] == node["mem"]
