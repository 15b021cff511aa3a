"""pvesim: a simulated Proxmox VE cluster served over real HTTPS, for tests, demos and benches.

Nothing in the proxflow pipeline imports this package; the wiring starts it when no real
cluster is configured.
"""

from pvesim.scenario import ScenarioError, ScenarioSpec, generate_large, load_scenario
from pvesim.simulator import SimConfig, Simulator

__all__ = [
    "ScenarioError",
    "ScenarioSpec",
    "SimConfig",
    "Simulator",
    "generate_large",
    "load_scenario",
]
