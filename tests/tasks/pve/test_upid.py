"""UPIDs (facts §3.1): the node to poll and the task's type, id and start are in the text."""

from __future__ import annotations

import pytest

from tasks.pve import parse_upid


def test_splits_a_token_started_migration_upid():
    upid = parse_upid("UPID:pve1:000A1B2C:0123ABCD:6810F2A0:qmigrate:101:root@pam!lb:")
    assert upid.node == "pve1"
    assert upid.pid == 0x000A1B2C
    assert upid.pstart == 0x0123ABCD
    assert upid.starttime == 0x6810F2A0
    assert upid.type == "qmigrate"
    assert upid.vmid == 101
    assert upid.user == "root@pam!lb"


def test_accepts_a_nine_digit_process_start_and_a_task_without_an_id():
    upid = parse_upid("UPID:node-2:00000001:1ABCDEF01:6810F2A0:vzdump::root@pam:")
    assert upid.pstart == 0x1ABCDEF01
    assert upid.id == ""
    assert upid.vmid is None


@pytest.mark.parametrize(
    "text",
    [
        "UPID:pve1:000A1B2C:0123ABCD:6810F2A0:qmigrate:101:root@pam",  # no trailing colon
        "UPID:pve1:000A1B2C:0123ABCD:6810F2A0:qmigrate:101:root@pam::",  # ten segments
        "UPID:pve1:XYZ:0123ABCD:6810F2A0:qmigrate:101:root@pam:",  # pid not hex
        "TASK:pve1:000A1B2C:0123ABCD:6810F2A0:qmigrate:101:root@pam:",
        "",
    ],
    ids=["no trailing colon", "ten segments", "pid not hex", "wrong prefix", "empty"],
)
def test_refuses_a_malformed_upid_naming_it(text):
    with pytest.raises(ValueError, match="not a PVE task id") as refused:
        parse_upid(text)
    assert repr(text) in str(refused.value)
