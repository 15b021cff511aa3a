"""Benchmark of one steady-state ingest cycle: gateway inventory + DuckDB append of the samples.

Run with `.venv/bin/python bench/ingest.py` (or `make bench-ingest`). For clusters of 100, 1,000
and 5,000 guests (the simulator's `large:NODESxGUESTS` scenarios, about 50 guests per node) it
runs one warm-up cycle and then several measured cycles. Before each cycle the paused simulated
clock moves on a minute, so every cycle reads fresh figures (no response cache), as a scheduled
ingest would. A cycle is what the ingest flow does each time:

1. `Gateway.inventory()` over verified TLS (proxmoxer, token auth);
2. `Store.append_node_samples` and `Store.append_guest_samples` into a DuckDB file in a
   temporary directory (removed at the end).

It prints, per size, the API calls one cycle makes (counted by the simulator's `/_sim/requests`
and by the gateway) and the median wall time of the inventory, the store write and the whole
cycle. Targets: the same number of calls at every size; under 2 s per cycle at 5,000 guests,
DuckDB write included. Client and simulator share this process (and the GIL), so the times
include the simulated server's work. Then the machine it ran on, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on the import path; put the project root there
# instead, so `bench.*` modules import as a package (and bench/pvesim.py cannot shadow `pvesim`).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import requests  # noqa: E402

from analytics.store import Store  # noqa: E402
from bench.machine import print_machine  # noqa: E402
from pvesim import SimConfig, Simulator  # noqa: E402
from tasks.pve import Gateway, PveEndpoint  # noqa: E402

SIZES = (100, 1_000, 5_000)
CYCLES = 5
TARGET_GUESTS, TARGET_SECONDS = 5_000, 2.0


def nodes_for(guests: int) -> int:
    """About 50 guests per node, at least 4 (100 -> 4, 1,000 -> 20, 5,000 -> 100)."""
    return max(4, guests // 50)


class SimControl:
    """The few `/_sim` calls the benchmark needs (not counted as API calls by the simulator)."""

    def __init__(self, sim: Simulator) -> None:
        self.base = f"https://{sim.host}/_sim"
        self.verify = str(sim.ca_file)
        self.headers = {"Authorization": f"PVEAPIToken={sim.token_id}={sim.token_secret}"}

    def call(self, method: str, path: str, **body: Any) -> Any:
        r = requests.request(
            method,
            f"{self.base}/{path}",
            json=body or None,
            headers=self.headers,
            verify=self.verify,
            timeout=30,
        )
        r.raise_for_status()
        return r.json()["data"]


@dataclass
class Result:
    guests: int
    nodes: int
    calls: int  # API calls per cycle, as the simulator counted them
    gateway_calls: int  # the same, as the gateway counted them
    inventory_s: float
    store_s: float
    cycle_s: float
    rows: int  # sample rows appended per cycle


def measure(guests: int, cycles: int, workdir: Path) -> Result:
    nodes = nodes_for(guests)
    sim = Simulator(
        SimConfig(scenario=f"large:{nodes}x{guests}", speed=0.0, auth_failure_delay=0.0)
    ).start()
    try:
        control = SimControl(sim)
        endpoint = PveEndpoint(
            host=sim.config.host,
            port=sim.port,
            user=sim.token.user,
            token_name=sim.token.tokenid,
            token_value=sim.token_secret,
            verify=str(sim.ca_file),
        )
        gateway = Gateway.connect(endpoint)
        store = Store(workdir / f"ingest-{guests}.duckdb")
        store.migrate()
        inventory_s: list[float] = []
        store_s: list[float] = []
        cycle_s: list[float] = []
        calls: set[int] = set()
        gateway_calls: set[int] = set()
        rows = 0
        for i in range(cycles + 1):  # the first cycle warms up and is not counted
            control.call("POST", "clock", advance=60)
            control.call("DELETE", "requests")
            before = gateway.calls
            t0 = time.perf_counter()
            inv = gateway.inventory()
            t1 = time.perf_counter()
            rows = store.append_node_samples(inv.node_samples)
            rows += store.append_guest_samples(inv.guest_samples)
            t2 = time.perf_counter()
            if i == 0:
                continue
            inventory_s.append(t1 - t0)
            store_s.append(t2 - t1)
            cycle_s.append(t2 - t0)
            calls.add(int(control.call("GET", "requests")["total"]))
            gateway_calls.add(gateway.calls - before)
        if len(calls) != 1 or calls != gateway_calls:
            raise SystemExit(f"{guests} guests: calls per cycle varied: {calls} / {gateway_calls}")
        return Result(
            guests=guests,
            nodes=nodes,
            calls=calls.pop(),
            gateway_calls=gateway_calls.pop(),
            inventory_s=statistics.median(inventory_s),
            store_s=statistics.median(store_s),
            cycle_s=statistics.median(cycle_s),
            rows=rows,
        )
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=CYCLES, help="measured cycles per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="guest counts")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="proxflow-bench-ingest-") as tmp:
        for guests in args.sizes:
            results.append(measure(guests, args.cycles, Path(tmp)))
    print(f"One ingest cycle (inventory + DuckDB append), median of {args.cycles} cycles")
    print(
        f"  {'guests':>7} {'nodes':>6} {'calls':>6} {'rows':>6} "
        f"{'inventory':>10} {'store':>8} {'cycle':>8}"
    )
    for r in results:
        print(
            f"  {r.guests:>7,} {r.nodes:>6} {r.calls:>6} {r.rows:>6,} "
            f"{r.inventory_s * 1000:>8.0f}ms {r.store_s * 1000:>6.0f}ms {r.cycle_s * 1000:>6.0f}ms"
        )
    constant = len({r.calls for r in results}) == 1
    print(f"  calls per cycle constant in the number of guests: {'yes' if constant else 'NO'}")
    for r in results:
        if r.guests == TARGET_GUESTS:
            verdict = "met" if r.cycle_s < TARGET_SECONDS else "MISSED"
            print(
                f"  target < {TARGET_SECONDS:g} s per cycle at {TARGET_GUESTS:,} guests: "
                f"{verdict} ({r.cycle_s:.2f} s)"
            )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print_machine("machine", [("load average", load)])


if __name__ == "__main__":
    main()
