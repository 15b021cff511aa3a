"""Benchmark of one steady-state ingest cycle: `tasks.ingest.collect`, inventory to DuckDB.

Run with `.venv/bin/python bench/ingest.py` (or `make bench-ingest`). For clusters of 100, 1,000
and 5,000 guests (the simulator's large scenarios, about 50 guests per node) it runs one warm-up
cycle, which also reads and caches every guest's config, and then several measured cycles.
Before each cycle the paused simulated clock moves on a minute, so every cycle reads fresh
figures (no response cache), as a scheduled ingest would. A cycle is what the ingest flow runs
each time, `tasks.ingest.collect`:

1. the cached guest configs read from the store, then `Gateway.inventory()` over verified TLS
   (proxmoxer, token auth);
2. node and guest samples, rules seen and refreshed configs written to a DuckDB file in a
   temporary directory (removed at the end), without the cross-process Prefect writer slot.

It prints, per size, the API calls one cycle makes (counted by the simulator's `/_sim/requests`
and by the gateway), the sample rows it writes and the median wall time of a cycle. Targets:
the same number of calls at every size; under 2 s per cycle at 5,000 guests, DuckDB write
included. Client and simulator share this process (and the GIL), so the times include the
simulated server's work. Then the machine it ran on, with the load average.
"""

from __future__ import annotations

import argparse
import contextlib
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
from bench.pvesim import nodes_for, start_sim  # noqa: E402
from pvesim import Simulator  # noqa: E402
from tasks.ingest import collect  # noqa: E402
from tasks.pve import Gateway, PveEndpoint  # noqa: E402

SIZES = (100, 1_000, 5_000)
CYCLES = 5
TARGET_GUESTS, TARGET_SECONDS = 5_000, 2.0


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
    cycle_s: float
    rows: int  # sample rows written per cycle


def measure(guests: int, cycles: int, workdir: Path) -> Result:
    nodes = nodes_for(guests)
    sim = start_sim(nodes, guests, speed=0.0)
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
        # the warm-up reads every guest's config; after it, no config is due for hours
        collect(gateway, store, max_reads=guests, slot=contextlib.nullcontext)
        cycle_s: list[float] = []
        calls: set[int] = set()
        gateway_calls: set[int] = set()
        rows = 0
        for _ in range(cycles):
            control.call("POST", "clock", advance=60)
            control.call("DELETE", "requests")
            t0 = time.perf_counter()
            result = collect(gateway, store, slot=contextlib.nullcontext)
            cycle_s.append(time.perf_counter() - t0)
            if result.configs_read:
                raise SystemExit(f"{guests} guests: {result.configs_read} configs read again")
            rows = result.node_rows + result.guest_rows
            calls.add(int(control.call("GET", "requests")["total"]))
            gateway_calls.add(result.calls)
        if len(calls) != 1 or calls != gateway_calls:
            raise SystemExit(f"{guests} guests: calls per cycle varied: {calls} / {gateway_calls}")
        return Result(
            guests=guests,
            nodes=nodes,
            calls=calls.pop(),
            gateway_calls=gateway_calls.pop(),
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
    print(f"One ingest cycle (tasks.ingest.collect), median of {args.cycles} cycles")
    print(f"  {'guests':>7} {'nodes':>6} {'calls':>6} {'rows':>6} {'cycle':>8}")
    for r in results:
        print(f"  {r.guests:>7,} {r.nodes:>6} {r.calls:>6} {r.rows:>6,} {r.cycle_s * 1000:>6.0f}ms")
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
