"""Parameter checking with PVE's 400 envelope and exact messages (facts §0.2, §1.2, §1.4)."""

from __future__ import annotations

import pytest
from proxmoxer import ResourceException

from tests.conftest import password_client, token_client
from tests.pvesim.api_support import raw, running_sim

UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"
MISSING = "property is missing and it is not optional"


@pytest.fixture(scope="module")
def shared_sim():
    """Refused requests change nothing, so the read-only checks share one simulator."""
    with running_sim() as sim:
        yield sim


@pytest.fixture(scope="module")
def pve(shared_sim):
    return token_client(shared_sim)


def errors_of(call) -> dict[str, str]:
    """Call, expect PVE's 400 and return its `errors` object."""
    with pytest.raises(ResourceException) as exc:
        call()
    assert exc.value.status_code == 400
    assert exc.value.content == "Parameter verification failed."
    assert isinstance(exc.value.errors, dict)
    return exc.value.errors


# -- the four kinds of refusal -----------------------------------------------------------------


def test_an_unknown_parameter_is_refused(pve):
    errors = errors_of(lambda: pve.nodes("pve1").status.get(verbose=1))
    assert errors == {"verbose": UNKNOWN}


def test_a_wrong_type_is_refused_with_the_type_named(pve):
    errors = errors_of(lambda: pve.nodes("pve1").tasks.get(limit="abc"))
    assert errors == {"limit": "type check ('integer') failed - got 'abc'"}


def test_a_non_numeric_vmid_in_the_path_is_a_type_error(pve):
    errors = errors_of(pve.nodes("pve1").qemu("abc").status.current.get)
    assert errors == {"vmid": "type check ('integer') failed - got 'abc'"}


def test_a_wrong_number_is_refused_with_the_number_type_named(pve):
    errors = errors_of(
        lambda: pve.nodes("pve3").lxc(200).migrate.post(target="pve1", restart=1, bwlimit="fast")
    )
    assert errors == {"bwlimit": "type check ('number') failed - got 'fast'"}


def test_an_enum_violation_lists_the_allowed_values(pve):
    errors = errors_of(lambda: pve.nodes("pve1").rrddata.get(timeframe="hour", cf="MIN"))
    assert errors == {"cf": "value 'MIN' does not have a value in the enumeration 'AVERAGE, MAX'"}


def test_the_timeframe_enumeration_includes_decade_for_nodes_in_pve_9(pve):
    errors = errors_of(lambda: pve.nodes("pve1").rrddata.get(timeframe="minute"))
    assert errors == {
        "timeframe": "value 'minute' does not have a value in the enumeration "
        "'hour, day, week, month, year, decade'"
    }


def test_guest_rrddata_has_no_decade_timeframe(pve):
    errors = errors_of(lambda: pve.nodes("pve1").qemu(100).rrddata.get(timeframe="decade"))
    assert errors == {
        "timeframe": "value 'decade' does not have a value in the enumeration "
        "'hour, day, week, month, year'"
    }


def test_a_missing_required_parameter_is_refused(pve):
    assert errors_of(pve.nodes("pve1").rrddata.get) == {"timeframe": MISSING}
    assert errors_of(pve.nodes("pve1").qemu(100).migrate.post) == {"target": MISSING}


def test_every_problem_is_reported_at_once(pve):
    errors = errors_of(lambda: pve.nodes("pve1").rrddata.get(cf="MIN", bogus="x"))
    assert errors == {
        "cf": "value 'MIN' does not have a value in the enumeration 'AVERAGE, MAX'",
        "bogus": UNKNOWN,
        "timeframe": MISSING,
    }


def test_an_integer_below_its_minimum_is_refused(pve):
    errors = errors_of(lambda: pve.nodes("pve1").tasks.get(limit=-1))
    assert errors == {"limit": "value must have a minimum value of 0"}


def test_an_enum_on_cluster_resources_type_is_checked(pve):
    errors = errors_of(lambda: pve.cluster.resources.get(type="qemu"))
    assert errors == {
        "type": "value 'qemu' does not have a value in the enumeration 'vm, storage, node, sdn'"
    }


def test_a_path_parameter_repeated_with_a_different_value_conflicts(shared_sim):
    r = raw(shared_sim, "GET", "/nodes/pve1/status", params={"node": "pve2"})
    assert r.status_code == 400
    assert r.json()["errors"] == {
        "node": "duplicate parameter (already defined in URI) with conflicting values!"
    }


def test_the_400_body_has_data_null_the_message_and_the_errors_object(shared_sim):
    r = raw(shared_sim, "GET", "/nodes/pve1/rrddata", params={"timeframe": "hour", "x": "1"})
    assert r.status_code == 400
    assert r.reason == "Parameter verification failed."
    assert r.json() == {
        "data": None,
        "message": "Parameter verification failed.\n",
        "errors": {"x": UNKNOWN},
    }


# -- booleans ------------------------------------------------------------------------------------


def test_python_true_is_refused_as_a_boolean(pve):
    errors = errors_of(lambda: pve.nodes("pve1").qemu(100).migrate.post(target="pve2", online=True))
    assert errors == {"online": "type check ('boolean') failed - got 'True'"}


def test_python_false_is_refused_too(pve):
    errors = errors_of(lambda: pve.nodes("pve1").tasks.get(errors=False))
    assert errors == {"errors": "type check ('boolean') failed - got 'False'"}


def test_a_ticket_client_sending_python_true_is_refused_the_same_way(shared_sim):
    api = password_client(shared_sim)
    errors = errors_of(lambda: api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=True))
    assert errors == {"online": "type check ('boolean') failed - got 'True'"}


def test_one_is_accepted_as_true(sim):
    upid = token_client(sim).nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert upid.startswith("UPID:pve1:") and ":qmigrate:100:" in upid


def test_zero_and_one_are_accepted_in_a_query_string(pve):
    assert pve.nodes("pve1").tasks.get(errors=0) == []
    assert pve.nodes("pve1").tasks.get(errors=1) == []


def test_a_json_body_may_use_true(sim):
    r = raw(sim, "POST", "/nodes/pve1/qemu/100/migrate", json={"target": "pve2", "online": True})
    assert r.status_code == 200
    assert r.json()["data"].startswith("UPID:pve1:")


def test_a_json_body_with_false_is_taken_as_offline(sim):
    r = raw(sim, "POST", "/nodes/pve1/qemu/100/migrate", json={"target": "pve2", "online": False})
    assert r.status_code == 500
    assert r.reason == "can't migrate running VM without --online"


def test_a_json_body_still_refuses_the_string_true(shared_sim):
    r = raw(
        shared_sim,
        "POST",
        "/nodes/pve1/qemu/100/migrate",
        json={"target": "pve2", "online": "True"},
    )
    assert r.status_code == 400
    assert r.json()["errors"] == {"online": "type check ('boolean') failed - got 'True'"}


def test_a_form_body_refuses_the_word_true(shared_sim):
    r = raw(
        shared_sim,
        "POST",
        "/nodes/pve1/qemu/100/migrate",
        data={"target": "pve2", "online": "true"},
    )
    assert r.status_code == 400
    assert r.json()["errors"] == {"online": "type check ('boolean') failed - got 'true'"}


# -- checks that depend on who asks or on the guest -----------------------------------------------


def test_migrating_to_the_local_node_is_a_parameter_error(pve):
    errors = errors_of(lambda: pve.nodes("pve1").qemu(100).migrate.post(target="pve1", online=1))
    assert errors == {"target": "target is local node."}


def test_a_dashed_parameter_is_passed_with_a_dict(sim):
    api = token_client(sim)
    upid = (
        api.nodes("pve1").qemu(105).migrate.post(target="pve2", online=1, **{"with-local-disks": 1})
    )
    assert ":qmigrate:105:" in upid


def test_qemu_takes_targetstorage_and_lxc_takes_target_storage(pve):
    errors = errors_of(
        lambda: (
            pve.nodes("pve3")
            .lxc(200)
            .migrate.post(target="pve1", restart=1, targetstorage="ceph-vm")
        )
    )
    assert errors == {"targetstorage": UNKNOWN}
    errors = errors_of(
        lambda: (
            pve.nodes("pve1")
            .qemu(100)
            .migrate.post(target="pve2", online=1, **{"target-storage": "ceph-vm"})
        )
    )
    assert errors == {"target-storage": UNKNOWN}
