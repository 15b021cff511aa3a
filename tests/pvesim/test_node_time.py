"""GET /nodes/{node}/time tells the virtual clock (facts §4: PVE's time/localtime/timezone)."""

from __future__ import annotations

import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from tests.conftest import Control

START = 1_795_000_000  # the small scenario's simulated epoch


def test_reports_the_simulated_epoch_in_utc(pve: ProxmoxAPI):
    assert pve.nodes("pve1").time.get() == {
        "time": START,
        "localtime": START,
        "timezone": "UTC",
    }


def test_follows_the_clock_when_it_is_advanced(pve: ProxmoxAPI, control: Control):
    control.advance(90.5)
    assert pve.nodes("pve3").time.get()["time"] == START + 90  # whole seconds, as PVE


def test_an_offline_node_answers_595(pve: ProxmoxAPI, control: Control):
    control.post("nodes/pve2/offline")
    with pytest.raises(ResourceException) as exc:
        pve.nodes("pve2").time.get()
    assert exc.value.status_code == 595
