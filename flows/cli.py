"""The `proxflow` command line."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
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
) -> None:
    """Start the simulated cluster, connect over verified TLS and show the cluster."""
    from proxmoxer import ProxmoxAPI

    from flows.cluster_summary import summarize, summary_table

    simulator = _start_sim(scenario, 0, 60.0, None, None, None, None)
    try:
        console.print(
            f"Started the simulated cluster [bold]{simulator.spec.name}[/bold] at {simulator.url}"
        )
        console.print(f"Verifying its TLS certificate against the CA in {simulator.ca_file}")
        pve = ProxmoxAPI(
            simulator.host,
            user=simulator.token.user,
            token_name=simulator.token.tokenid,
            token_value=simulator.token_secret,
            verify_ssl=str(simulator.ca_file),
            timeout=30,
        )
        version = pve.version.get()
        resources = pve.cluster.resources.get()
        title = f"Cluster '{simulator.spec.cluster_name}' (PVE {version['version']})"
        console.print(summary_table(summarize(resources), title))
    finally:
        simulator.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
