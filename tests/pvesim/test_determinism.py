"""A seed reproduces a cluster byte for byte; live metrics move only at pvestatd's 10 s refresh.

Facts §0.11 and §7: `/cluster/resources` is refreshed about every 10 s.
"""

from __future__ import annotations

import pytest

from tests.conftest import Control, token_client
from tests.pvesim.api_support import raw

PATHS = [
    "/cluster/resources",
    "/nodes/pve1/rrddata?timeframe=hour",
    "/nodes/pve2/rrddata?timeframe=day&cf=MAX",
    "/nodes/pve1/qemu/100/rrddata?timeframe=hour",
    "/nodes/pve3/lxc/200/rrddata?timeframe=week",
    "/nodes/pve2/status",
    "/nodes/pve1/qemu",
]


def body(sim, path: str) -> bytes:
    r = raw(sim, "GET", path)
    assert r.status_code == 200, (path, r.status_code, r.reason)
    return r.content


def cpu_figures(pve) -> dict[str, float]:
    return {r["id"]: r["cpu"] for r in pve.cluster.resources.get() if "cpu" in r}


def test_two_simulators_with_the_same_seed_answer_byte_identically(make_sim):
    a, b = make_sim("small"), make_sim("small")
    for path in PATHS:
        assert body(a, path) == body(b, path), path


def test_they_still_agree_after_the_same_simulated_time_has_passed(make_sim):
    a, b = make_sim("small"), make_sim("small")
    Control(a).advance(3 * 3600 + 17)
    Control(b).advance(3 * 3600)
    Control(b).advance(17)
    for path in PATHS:
        assert body(a, path) == body(b, path), path


def test_the_same_seed_gives_the_same_credentials(make_sim):
    a, b = make_sim("small"), make_sim("small")
    assert a.token_secret == b.token_secret
    assert a.password == b.password


def test_a_different_seed_gives_different_metrics(make_sim):
    a, b = make_sim("small"), make_sim("small", seed=8)
    assert body(a, "/cluster/resources") != body(b, "/cluster/resources")
    assert body(a, PATHS[1]) != body(b, PATHS[1])
    assert cpu_figures(token_client(a)) != cpu_figures(token_client(b))
    assert a.token_secret != b.token_secret


def test_the_same_seed_at_different_times_differs(make_sim):
    a, b = make_sim("small"), make_sim("small")
    Control(b).advance(3600)
    assert body(a, "/cluster/resources") != body(b, "/cluster/resources")


def test_live_metrics_hold_still_between_10_second_refreshes(sim):
    control, pve = Control(sim), token_client(sim)
    first = body(sim, "/cluster/resources")
    figures = cpu_figures(pve)
    control.advance(3)
    assert body(sim, "/cluster/resources") == first
    control.advance(6)  # 9 s after a refresh: still the same broadcast
    assert body(sim, "/cluster/resources") == first
    assert cpu_figures(pve) == figures


def test_live_metrics_change_at_the_next_10_second_refresh(sim):
    control, pve = Control(sim), token_client(sim)
    before = cpu_figures(pve)
    control.advance(3)
    assert cpu_figures(pve) == before
    control.advance(10)
    after = cpu_figures(pve)
    assert after.keys() == before.keys()
    assert after != before
    assert sum(after[k] != before[k] for k in before) > len(before) // 2


@pytest.mark.parametrize(
    ("path", "pick"),
    [
        ("nodes/pve1/status", lambda s: (s["cpu"], s["memory"]["used"], s["loadavg"])),
        ("nodes/pve1/qemu/100/status/current", lambda s: (s["cpu"], s["mem"], s["netin"])),
        ("nodes/pve1/qemu", lambda vms: [(v["cpu"], v["mem"]) for v in vms]),
    ],
)
def test_per_node_and_per_guest_figures_follow_the_same_refresh(sim, path, pick):
    control, pve = Control(sim), token_client(sim)
    first = pick(pve(path).get())
    control.advance(4)
    assert pick(pve(path).get()) == first
    control.advance(10)
    assert pick(pve(path).get()) != first


def test_rrddata_changes_only_when_a_new_60_second_bucket_starts(sim):
    control, pve = Control(sim), token_client(sim)
    assert sim.clock.now() % 60 == 40  # the scenario starts 40 s into a minute
    first = pve.nodes("pve1").rrddata.get(timeframe="hour")
    control.advance(15)  # 55 s into the same minute
    assert pve.nodes("pve1").rrddata.get(timeframe="hour") == first
    control.advance(5)  # the next minute opens; its bucket holds only `time`, so it is left out
    assert pve.nodes("pve1").rrddata.get(timeframe="hour")[-1] == first[-1]
    control.advance(30)  # now the new bucket has data
    later = pve.nodes("pve1").rrddata.get(timeframe="hour")
    assert len(later) == len(first)
    assert later[-1]["time"] == first[-1]["time"] + 60
    assert later[:-1] == first[1:]
