"""Which required privileges an `/access/permissions` answer lacks (facts §5)."""

from __future__ import annotations

from tasks.pve.privileges import missing

ALL = {"Sys.Audit": 1, "VM.Audit": 1, "VM.Migrate": 1, "Datastore.Audit": 1}


def test_everything_on_the_root_covers_every_path():
    assert missing({"/": ALL}) == []


def test_grants_on_each_subtree_are_enough():
    granted = {
        "/": {"Sys.Audit": 1},
        "/vms": {"VM.Audit": 1, "VM.Migrate": 1},
        "/storage": {"Datastore.Audit": 1},
    }
    assert missing(granted) == []


def test_a_grant_on_one_guest_does_not_cover_all_guests():
    granted = {"/": {"Sys.Audit": 1, "Datastore.Audit": 1}, "/vms/100": ALL}
    assert missing(granted) == ["VM.Audit on /vms", "VM.Migrate on /vms"]


def test_a_similar_looking_path_is_not_a_parent():
    granted = {"/": {"Sys.Audit": 1, "VM.Audit": 1, "Datastore.Audit": 1}, "/vmsx": ALL}
    assert missing(granted) == ["VM.Migrate on /vms"]


def test_nothing_granted_lacks_all_four():
    assert missing({}) == [
        "Sys.Audit on /",
        "VM.Audit on /vms",
        "VM.Migrate on /vms",
        "Datastore.Audit on /storage",
    ]
