"""The Proxmox VE gateway: proxmoxer over verified TLS, PVE JSON in, engine types out.

No Prefect here, so it can be tested and benchmarked alone against the simulator.
"""

from tasks.pve.endpoint import DEFAULT_TIMEOUT, PveEndpoint
from tasks.pve.errors import (
    AuthError,
    PrivilegeError,
    PveError,
    QuorumLostError,
    RefusedError,
    TlsError,
    TransientError,
)
from tasks.pve.gateway import Gateway
from tasks.pve.inventory import GuestConfig, Inventory
from tasks.pve.migration import GuestLocation, migrate_params
from tasks.pve.privileges import REQUIRED
from tasks.pve.retry import RetryPolicy
from tasks.pve.upid import Upid, parse_upid
from tasks.pve.waiting import TaskOutcome

__all__ = [
    "DEFAULT_TIMEOUT",
    "REQUIRED",
    "AuthError",
    "Gateway",
    "GuestConfig",
    "GuestLocation",
    "Inventory",
    "PrivilegeError",
    "PveEndpoint",
    "PveError",
    "QuorumLostError",
    "RefusedError",
    "RetryPolicy",
    "TaskOutcome",
    "TlsError",
    "TransientError",
    "Upid",
    "migrate_params",
    "parse_upid",
]
