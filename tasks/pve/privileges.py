"""The privileges proxflow needs, checked against PVE's `/access/permissions` answer.

Checked at start so a missing grant is named at once, not discovered as a 403 in the middle
of a migration run. A privilege granted on a path covers the paths below it, as PVE's ACLs
propagate; a grant on a single guest or pool does not count, because balancing needs them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REQUIRED = (
    ("Sys.Audit", "/"),  # cluster status and resources, HA state, node time and history
    ("VM.Audit", "/vms"),  # guests, their configs and history
    ("VM.Migrate", "/vms"),  # moving them, and the migration pre-check
    ("Datastore.Audit", "/storage"),  # which storages are shared
)


def _covers(acl: str, path: str) -> bool:
    return acl == "/" or path == acl or path.startswith(acl.rstrip("/") + "/")


def missing(granted: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Each required privilege `granted` ({acl path: {privilege: 1}}) lacks, as "Priv on /path"."""
    return [
        f"{priv} on {path}"
        for priv, path in REQUIRED
        if not any(_covers(acl, path) and privs.get(priv) for acl, privs in granted.items())
    ]
