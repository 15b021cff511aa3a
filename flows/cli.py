"""The `proxflow` command line."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console

if TYPE_CHECKING:
    from engine import ClusterSnapshot, Plan, Policy
    from flows.balance import BalanceOutcome, Planner
    from flows.runtime import Runtime
    from flows.settings import Settings
    from pvesim import Simulator

app = typer.Typer(
    name="proxflow",
    help="Trend-aware, rule-honouring load balancing for Proxmox VE clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _start_sim(
    scenario: str,
    port: int,
    speed: float,
    seed: int | None,
    pve_version: str | None,
    traces: Path | None,
    state_dir: Path | None,
) -> Simulator:
    from pvesim import ScenarioError, SimConfig, Simulator

    try:
        return Simulator(
            SimConfig(
                scenario=scenario,
                port=port,
                speed=speed,
                seed=seed,
                pve_version=pve_version,  # type: ignore[arg-type]  # checked by the caller
                traces_dir=traces,
                state_dir=state_dir,
            )
        ).start()
    except (ScenarioError, ValueError, FileNotFoundError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        err_console.print(f"[red]error:[/red] cannot listen on 127.0.0.1:{port}: {exc.strerror}")
        raise typer.Exit(2) from None


@app.command()
def sim(
    scenario: Annotated[str, typer.Option(help="demo, small, large:NxM, or a YAML file")] = "demo",
    port: Annotated[int, typer.Option(help="port on 127.0.0.1; 0 picks a free one")] = 8006,
    speed: Annotated[float, typer.Option(help="simulated seconds per real second")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="overrides the scenario's seed")] = None,
    pve_version: Annotated[
        str | None, typer.Option("--pve-version", help="9.1 or 8.4 (default: the scenario's)")
    ] = None,
    traces: Annotated[
        Path | None, typer.Option(help="folder with the utilisation traces for trace scenarios")
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="where to write the CA (default: a temporary folder)")
    ] = None,
) -> None:
    """Run the simulated Proxmox VE cluster in the foreground until Ctrl-C."""
    if pve_version not in (None, "9.1", "8.4"):
        err_console.print(
            f"[red]error:[/red] --pve-version must be 9.1 or 8.4, got {pve_version!r}"
        )
        raise typer.Exit(2)
    simulator = _start_sim(scenario, port, speed, seed, pve_version, traces, state_dir)
    spec = simulator.spec
    console.print(
        f"pvesim: scenario [bold]{spec.name}[/bold] (PVE {spec.pve_version}), "
        f"{len(spec.nodes)} nodes, {len(spec.guests)} guests, speed x{speed:g}"
    )
    console.print(f"  URL       {simulator.url}")
    console.print(f"  host      {simulator.host}   (proxmoxer host=...)")
    console.print(f"  token     {simulator.token_id}={simulator.token_secret}")
    console.print(f"  password  {simulator.config.username} / {simulator.password}")
    console.print(f"  CA file   {simulator.ca_file}")
    console.print(f"  control   https://{simulator.host}/_sim/info")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
        console.print("pvesim stopped")


@app.command()
def demo(
    scenario: Annotated[str, typer.Option(help="scenario to run the demo on")] = "demo",
    data_dir: Annotated[
        Path, typer.Option(help="where the demo keeps its history, models and report")
    ] = Path(".proxflow/demo"),
) -> None:
    """The whole product on a simulated cluster: history, forecasts, plan, migrations, report."""
    # the demo's Prefect database lives (and is reset) with the rest of its data
    os.environ["PREFECT_HOME"] = str((data_dir / "prefect").resolve())
    from flows.demo import run_demo

    with _failures():
        code = run_demo(console, data_dir.resolve(), scenario)
    raise typer.Exit(code)


# --- the pipeline --------------------------------------------------------------------------
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file (default: $PROXFLOW_CONFIG, else ./proxflow.yaml if present)",
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="execute without asking")]


@app.callback()
def _options(config: ConfigOption = None) -> None:
    """Settings come from one YAML file plus PROXFLOW_* environment variables."""
    _state["config"] = config


_state: dict[str, Path | None] = {"config": None}


def _settings() -> Settings:
    from flows.runtime import use_settings
    from flows.settings import ConfigError, load_settings

    try:
        settings = load_settings(_state["config"])
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    use_settings(settings)
    if settings.embedded:
        err_console.print(
            f"[dim]no cluster configured: using the simulated '{settings.simulator.scenario}' "
            "cluster started in this process[/dim]"
        )
    return settings


@contextmanager
def _failures() -> Iterator[None]:
    """Known failures become one clear line and exit code 1, not a traceback."""
    from analytics import StoreLockedError
    from tasks.pve import PveError

    try:
        yield
    except (PveError, StoreLockedError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@contextmanager
def _bars() -> Iterator[None]:
    from flows.progress import reporting
    from flows.progress_bars import RichReporter

    with RichReporter(console) as bars, reporting(bars):
        yield


def _runtime() -> Runtime:
    from flows.runtime import connect

    return connect(_settings())


@app.command()
def status() -> None:
    """Check the connection, privileges, quorum, history and models."""
    with _failures():
        rt = _runtime()
        gw = rt.gateway
        console.print(
            f"cluster     PVE {gw.version()} at {rt.settings.cluster.host or 'simulator'}"
        )
        missing = gw.missing_privileges()
        console.print(
            "privileges  "
            + ("all present" if not missing else f"[red]missing {', '.join(missing)}[/]")
        )
        console.print("quorum      " + ("ok" if gw.quorate() else "[red]lost: no migrations[/]"))
        _store_status(rt)


def _store_status(rt: Runtime) -> None:
    from tasks.forecast import saved_models

    if not rt.store.path.exists():
        console.print(f"history     none yet at {rt.store.path} (run `proxflow ingest`)")
        return
    held = rt.store.summary()
    console.print(
        f"history     {held.guest_samples} raw guest samples, newest {held.newest_sample}, "
        f"{held.migrations_ok} migrations recorded ({rt.store.path})"
    )
    models = saved_models(rt.settings.model_dir, rt.settings.forecast.horizon_minutes)
    if not models:
        console.print("models      none yet (run `proxflow train`)")
    for column, meta in models.items():
        scores = meta.get("validation_scores", {})
        console.print(
            f"model       {column}: saved {meta.get('saved_at', '?')}, "
            f"validation MAE {scores.get('mae', float('nan')):.4g}"
        )


def _observe_plain(rt: Runtime) -> tuple[ClusterSnapshot, Policy]:
    inv = rt.gateway.inventory()
    for problem in inv.problems:
        err_console.print(f"[yellow]warning:[/yellow] {problem}")
    return inv.snapshot(), rt.settings.balance_policy()


@app.command()
def nodes() -> None:
    """Nodes with their current and predicted load (read-only; no history needed)."""
    from flows.views import nodes_table

    with _failures():
        snapshot, policy = _observe_plain(_runtime())
        console.print(nodes_table(snapshot, policy))


@app.command()
def guests(
    node: Annotated[str | None, typer.Option(help="only the guests on this node")] = None,
) -> None:
    """Guests with their tags and the placement rules each one is in."""
    from flows.views import guests_table

    with _failures():
        snapshot, policy = _observe_plain(_runtime())
        console.print(guests_table(snapshot, node, policy))


@app.command()
def ingest(
    backfill: Annotated[
        bool | None, typer.Option("--backfill/--no-backfill", help="default: when empty")
    ] = None,
) -> None:
    """Read the cluster into the history once (backfilling it on first use)."""
    from flows.ingest import ingest as ingest_flow

    _settings()
    with _failures(), _bars():
        summary = ingest_flow(backfill=backfill)
    console.print(
        f"ingested {summary.nodes} nodes and {summary.guests} guests in {summary.api_calls} API "
        f"calls: {summary.guest_rows} new guest rows"
        + (f", {summary.backfilled_rows} backfilled" if summary.backfilled_rows else "")
    )
    for problem in summary.problems:
        err_console.print(f"[yellow]warning:[/yellow] {problem}")


@app.command()
def train() -> None:
    """Train the forecasters on the history; promote them only when they beat the baselines."""
    from flows.train import train as train_flow

    _settings()
    with _failures(), _bars():
        results = train_flow()
    for r in results:
        console.print(f"{r.column}: {r.detail}")


def _show_plan(plan: Plan) -> None:
    from flows.views import plan_tables

    for table in plan_tables(plan):
        console.print(table)


@app.command()
def plan(
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    planner: Annotated[str, typer.Option(help="greedy or exact")] = "greedy",
) -> None:
    """Show the explained plan without executing anything."""
    import json

    from flows.balance import balance as balance_flow
    from flows.views import plan_json

    if planner not in ("greedy", "exact"):
        err_console.print(f"[red]error:[/red] --planner must be greedy or exact, got {planner!r}")
        raise typer.Exit(2)
    _settings()
    with _failures():
        outcome = balance_flow(dry_run=True, planner=cast("Planner", planner))
    if as_json:
        typer.echo(json.dumps(plan_json(outcome.plan), indent=2, default=str))
    else:
        _show_plan(outcome.plan)


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        err_console.print("not a terminal: pass --yes to execute")
        return False
    return typer.confirm(question, default=False)


def _report_outcome(outcome: BalanceOutcome) -> None:
    from flows.views import results_table

    if outcome.results:
        console.print(results_table(outcome.results))
    elif outcome.why_not_executed:
        console.print(outcome.why_not_executed)
    if outcome.failed:
        raise typer.Exit(1)


@app.command()
def balance(yes: YesOption = False) -> None:
    """Plan, show the plan, and execute it (asks first unless --yes)."""
    from flows.balance import balance as balance_flow

    _settings()
    if not yes:
        with _failures():
            preview = balance_flow(dry_run=True)
        _show_plan(preview.plan)
        if not preview.plan.moves:
            console.print("nothing to do: the cluster is balanced and every rule holds")
            return
        if not _confirm(f"Execute {len(preview.plan.moves)} migration(s)?", yes):
            raise typer.Exit(0)
        console.print("planning again on fresh data, then executing")
    with _failures(), _bars():
        outcome = balance_flow(dry_run=False)
    _show_plan(outcome.plan)
    _report_outcome(outcome)


@app.command()
def evacuate(
    node: Annotated[str, typer.Argument(help="the node to empty")],
    yes: YesOption = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="plan only")] = False,
) -> None:
    """Move every movable guest off NODE, honouring every rule."""
    from flows.balance import evacuate as evacuate_flow

    _settings()
    with _failures():
        preview = evacuate_flow(node=node, dry_run=True)
    _show_plan(preview.plan)
    if dry_run or not preview.plan.moves:
        return
    if not _confirm(f"Move {len(preview.plan.moves)} guest(s) off {node}?", yes):
        raise typer.Exit(0)
    with _failures(), _bars():
        outcome = evacuate_flow(node=node, dry_run=False)
    _report_outcome(outcome)


@app.command()
def place(
    cores: Annotated[int, typer.Option(help="vCPUs of the new guest", min=1)],
    memory: Annotated[str, typer.Option(help="memory of the new guest, e.g. 8GiB")],
    tags: Annotated[str, typer.Option(help="its tags, e.g. 'plb_anti_affinity_web'")] = "",
) -> None:
    """Rank the nodes for a new guest of this size and these tags."""
    from engine.tags import split_tags
    from flows.place import place as place_flow
    from flows.views import placement_table

    _settings()
    with _failures():
        ranked = place_flow(cores=cores, memory=memory, tags=split_tags(tags) or None)
    console.print(placement_table(ranked))
    if not any(p.feasible for p in ranked):
        raise typer.Exit(1)


@app.command()
def capacity(
    html: Annotated[
        Path | None, typer.Option(help="also write the report as one HTML file")
    ] = None,
    days: Annotated[float, typer.Option(help="days of history to look at")] = 30.0,
) -> None:
    """Headroom now and at the horizon, days until CPU or memory runs out, N+1, movers."""
    from analytics.report import n_plus_one_verdict, table_rows
    from flows.capacity import capacity_report
    from flows.views import rows_table

    _settings()
    with _failures():
        outcome = capacity_report(html=str(html) if html else None, days=days)
    for section, rows in table_rows(outcome.report).items():
        if rows:
            console.print(rows_table(section, rows))
    for line in n_plus_one_verdict(outcome.report):
        console.print(line)
    if outcome.html_path:
        console.print(f"wrote {outcome.html_path}")


@app.command()
def setup(
    pool: Annotated[str, typer.Option(help="process work pool to create")] = "proxflow",
) -> None:
    """Create (or update) the concurrency limits, the kill switch and the work pool."""
    from flows.setup import setup as do_setup

    settings = _settings()
    with _failures():
        for line in do_setup(settings, pool):
            console.print(line)


@app.command(name="kill-switch")
def kill_switch(
    state: Annotated[str, typer.Argument(help="on (stop new migrations), off, or status")],
) -> None:
    """Stop new migrations at once (running ones finish), or allow them again."""
    from tasks.limits import PAUSE_VARIABLE, pause_reason, set_paused

    if state not in ("on", "off", "status"):
        err_console.print(f"[red]error:[/red] state must be on, off or status, got {state!r}")
        raise typer.Exit(2)
    if state != "status":
        set_paused(state == "on")
    reason = pause_reason()
    console.print(reason or f"migrations allowed ({PAUSE_VARIABLE} is false)")


def main() -> None:
    # quiet, offline-friendly Prefect defaults for a command line; the environment wins
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    app()


if __name__ == "__main__":
    main()
