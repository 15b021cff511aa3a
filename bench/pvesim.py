"""Benchmark of the simulated PVE API: GET /cluster/resources through proxmoxer over verified TLS.

Run with `.venv/bin/python bench/pvesim.py` (or `make bench`). It prints:

1. latency (median, p90) of GET /cluster/resources for clusters of several sizes, in two
   variants: *cold* (the paused clock is advanced 10 s before each call, so the per-refresh
   cache is invalid and the body is rebuilt) and *warm* (a second call in the same refresh
   window, served from the cache);
2. throughput of /cluster/resources?type=vm with many concurrent keep-alive clients, the clock
   running at speed 1 so the cache refreshes naturally;
3. the machine it ran on.

Clients and simulator share this process (as in the tests), so client-side work such as JSON
decoding competes with the server for the GIL; the numbers are end to end, as a caller sees them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# This file is named like the package it measures: drop its own folder from the import path so
# `import pvesim` finds the package, not this script.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from proxmoxer import ProxmoxAPI  # noqa: E402

from bench.machine import print_machine  # noqa: E402
from pvesim import SimConfig, Simulator  # noqa: E402
from pvesim.scenario import generate_large  # noqa: E402

HOST = "127.0.0.1"
WARMUP = 3
REFRESH = 10.0  # the simulator's refresh window (pvestatd's loop)
TARGET_GUESTS, TARGET_MS = 5000, 100.0  # cold median goal at 5,000 guests


def nodes_for(guests: int) -> int:
    """A plausible node count: about 50 guests per node, at least 4 (100 -> 4, 5000 -> 100)."""
    return max(4, guests // 50)


def start_sim(nodes: int, guests: int, speed: float) -> Simulator:
    spec = generate_large(nodes, guests)
    config = SimConfig(scenario=spec, host=HOST, speed=speed, auth_failure_delay=0.0)
    return Simulator(config).start()


def client(sim: Simulator, timeout: float = 30.0) -> ProxmoxAPI:
    return ProxmoxAPI(
        sim.host,
        user=sim.token.user,
        token_name=sim.token.tokenid,
        token_value=sim.token_secret,
        verify_ssl=str(sim.ca_file),
        timeout=timeout,
    )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (q in [0, 100]), interpolating linearly between ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- 1. latency ---------------------------------------------------------------------------------
@dataclass
class LatencyRow:
    guests: int
    nodes: int
    items: int
    cold: list[float]
    warm: list[float]


def measure_latency(guests: int, calls: int) -> LatencyRow:
    nodes = nodes_for(guests)
    sim = start_sim(nodes, guests, speed=0.0)
    try:
        pve = client(sim)
        items = 0
        for _ in range(WARMUP):
            sim.clock.advance(REFRESH)
            items = len(pve.cluster.resources.get())
            pve.cluster.resources.get()
        cold: list[float] = []
        warm: list[float] = []
        for _ in range(calls):
            sim.clock.advance(REFRESH)  # a new refresh window: the cached body is stale
            t0 = time.perf_counter()
            pve.cluster.resources.get()
            t1 = time.perf_counter()
            pve.cluster.resources.get()  # same window: served from the cache
            t2 = time.perf_counter()
            cold.append(t1 - t0)
            warm.append(t2 - t1)
        return LatencyRow(guests, nodes, items, cold, warm)
    finally:
        sim.stop()


# -- 2. throughput ------------------------------------------------------------------------------
@dataclass
class ThroughputResult:
    guests: int
    nodes: int
    clients: int
    ok: int
    errors: int
    elapsed: float
    latencies: list[float]
    first_error: str | None


def measure_throughput(
    guests: int, clients: int, per_client: int, max_seconds: float
) -> ThroughputResult:
    nodes = nodes_for(guests)
    sim = start_sim(nodes, guests, speed=1.0)
    try:
        pves = [client(sim) for _ in range(clients)]
        pves[0].cluster.resources.get(type="vm")  # warm-up: build the first body
        barrier = threading.Barrier(clients + 1)
        lock = threading.Lock()
        latencies: list[float] = []
        errors: list[str] = []
        deadline = [0.0]

        def worker(pve: ProxmoxAPI) -> None:
            mine: list[float] = []
            failed: list[str] = []
            barrier.wait()
            for _ in range(per_client):
                if time.perf_counter() >= deadline[0]:
                    break
                t0 = time.perf_counter()
                try:
                    pve.cluster.resources.get(type="vm")
                except Exception as exc:
                    failed.append(f"{type(exc).__name__}: {exc}")
                else:
                    mine.append(time.perf_counter() - t0)
            with lock:
                latencies.extend(mine)
                errors.extend(failed)

        threads = [
            threading.Thread(target=worker, args=(p,), name=f"bench-client-{i}", daemon=True)
            for i, p in enumerate(pves)
        ]
        for t in threads:
            t.start()
        start = time.perf_counter()
        deadline[0] = start + max_seconds
        barrier.wait()
        for t in threads:
            t.join(timeout=max_seconds + 60.0)
        elapsed = time.perf_counter() - start
        return ThroughputResult(
            guests,
            nodes,
            clients,
            len(latencies),
            len(errors),
            elapsed,
            latencies,
            errors[0] if errors else None,
        )
    finally:
        sim.stop()


# -- output -------------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--guests",
        default="100,1000,5000",
        help="comma-separated cluster sizes for the latency runs (default: %(default)s)",
    )
    p.add_argument("--calls", type=int, default=30, help="timed calls per size (default: 30)")
    p.add_argument(
        "--clients", type=int, default=32, help="concurrent clients for throughput (default: 32)"
    )
    p.add_argument(
        "--throughput-guests",
        type=int,
        default=1000,
        help="cluster size for the throughput run (default: %(default)s)",
    )
    p.add_argument(
        "--requests",
        type=int,
        default=20,
        help="requests per client in the throughput run (default: %(default)s)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="time limit of the throughput run (default: %(default)s)",
    )
    p.add_argument("--no-throughput", action="store_true", help="skip the throughput run")
    args = p.parse_args(argv)
    try:
        args.sizes = [int(x) for x in args.guests.split(",") if x.strip()]
    except ValueError:
        p.error(f"--guests takes comma-separated integers, got {args.guests!r}")
    if not args.sizes or min(args.sizes) < 0 or args.calls < 1 or args.clients < 1:
        p.error("--guests, --calls and --clients must be positive")
    return args


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("pvesim benchmark: GET /cluster/resources via proxmoxer, verified TLS, 127.0.0.1")
    print()

    rows: list[list[str]] = []
    target: float | None = None
    for guests in args.sizes:
        progress(f"latency, {guests} guests on {nodes_for(guests)} nodes")
        r = measure_latency(guests, args.calls)
        if guests == TARGET_GUESTS:
            target = statistics.median(r.cold)
        rows.append(
            [
                f"{r.guests}",
                f"{r.nodes}",
                f"{r.items}",
                ms(statistics.median(r.cold)),
                ms(percentile(r.cold, 90)),
                ms(statistics.median(r.warm)),
                ms(percentile(r.warm, 90)),
            ]
        )
    print(f"1. latency of GET /cluster/resources, {args.calls} calls per size after warm-up (ms)")
    print("   cold = cache invalidated (clock +10 s before each call); warm = same window")
    print(
        table(
            ["guests", "nodes", "items", "cold p50", "cold p90", "warm p50", "warm p90"],
            rows,
        )
    )
    if target is not None:
        verdict = "met" if target * 1000 < TARGET_MS else "NOT met"
        print(
            f"   target cold p50 < {TARGET_MS:g} ms at {TARGET_GUESTS} guests: {verdict} "
            f"({target * 1000:.1f} ms)"
        )
    print()

    if not args.no_throughput:
        progress(f"throughput, {args.throughput_guests} guests, {args.clients} clients")
        t = measure_throughput(
            args.throughput_guests, args.clients, args.requests, args.max_seconds
        )
        rate = t.ok / t.elapsed if t.elapsed > 0 else float("nan")
        print(
            f"2. throughput of GET /cluster/resources?type=vm, {t.clients} clients x "
            f"<= {args.requests} requests, <= {args.max_seconds:g} s, clock at speed 1"
        )
        print(
            table(
                ["guests", "nodes", "clients", "ok", "errors", "s", "req/s", "p50 ms", "p90 ms"],
                [
                    [
                        f"{t.guests}",
                        f"{t.nodes}",
                        f"{t.clients}",
                        f"{t.ok}",
                        f"{t.errors}",
                        f"{t.elapsed:.2f}",
                        f"{rate:.1f}",
                        ms(statistics.median(t.latencies)) if t.latencies else "-",
                        ms(percentile(t.latencies, 90)) if t.latencies else "-",
                    ]
                ],
            )
        )
        if t.first_error:
            print(f"   first error: {t.first_error}")
        print()

    print_machine("3. machine", indent="   ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
