"""GET /_sim/requests counts PVE API requests per route template; DELETE starts over."""

from __future__ import annotations

import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from tests.conftest import Control


def test_counts_each_api_request_under_its_route_template(pve: ProxmoxAPI, control: Control):
    control.delete("requests")
    pve.cluster.resources.get()
    pve.cluster.resources.get(type="vm")
    pve.nodes("pve1").status.get()
    pve.nodes("pve2").status.get()
    pve.nodes("pve2").qemu(102).config.get()
    counted = control.get("requests")
    assert counted["routes"] == {
        "GET /cluster/resources": 2,
        "GET /nodes/{node}/status": 2,
        "GET /nodes/{node}/qemu/{vmid}/config": 1,
    }
    assert counted["total"] == 5


def test_control_calls_are_not_counted(control: Control):
    control.delete("requests")
    control.get("info")
    control.get("events")
    control.advance(1)
    assert control.get("requests") == {"total": 0, "routes": {}}


def test_refused_requests_count_too(pve: ProxmoxAPI, control: Control):
    control.delete("requests")
    with pytest.raises(ResourceException) as refused:
        pve.nodes("pve1").qemu(100).migrate.post(target="pve1", online=1)
    assert refused.value.status_code == 400
    assert control.get("requests")["routes"] == {"POST /nodes/{node}/qemu/{vmid}/migrate": 1}


def test_delete_resets_the_counts(pve: ProxmoxAPI, control: Control):
    pve.version.get()
    assert control.get("requests")["total"] >= 1
    control.delete("requests")
    assert control.get("requests")["total"] == 0
