"""The PVE REST surface of the simulator, one module per area of the API."""

from pvesim.api.routing import Router

router = Router()

# importing registers each module's routes on `router`
from pvesim.api import access, cluster, control, guests, ha, nodes, pools  # noqa: E402, F401

__all__ = ["router"]
