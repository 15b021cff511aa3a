"""The Proxmox VE gateway: proxmoxer over verified TLS, PVE JSON in, engine types out.

    gateway = Gateway.connect(PveEndpoint(host=..., token_name=..., token_value=...))
    gateway.check_privileges()                  # PrivilegeError names what is missing
    inv = gateway.inventory(cached_configs)     # a constant few calls at any cluster size
    fresh = gateway.guest_configs(inv, new)     # per guest, bounded concurrency: cache these
    upid = gateway.start_migration(move)        # quorum checked; never started twice
    outcome = gateway.wait_task(upid, timeout=600)
    landed = gateway.verify(move.vmid, move.target)

Failures are `PveError`s whose class says what to do: retry later (`TransientError`), give up
on this request (`RefusedError`, `QuorumLostError`) or fix the settings (`AuthError`,
`PrivilegeError`, `TlsError`). No Prefect here, so it is tested and benchmarked alone.
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
