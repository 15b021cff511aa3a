"""Back-off: bounded, exponential, jittered; transient failures retried, others not."""

from __future__ import annotations

import random

import pytest

from tasks.pve import RefusedError, RetryPolicy, TransientError


def test_delays_double_up_to_the_cap_and_stay_within_the_jitter():
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=0.25)
    rng = random.Random(1)
    for retry, nominal in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)):
        for _ in range(50):
            assert nominal * 0.75 <= policy.delay(retry, rng) <= nominal * 1.25


def test_jitter_spreads_the_delays_of_simultaneous_failures():
    policy = RetryPolicy(base_delay=1.0, jitter=0.5)
    rng = random.Random(2)
    assert len({round(policy.delay(1, rng), 6) for _ in range(20)}) > 10


def test_a_transient_failure_is_retried_until_it_passes():
    slept: list[float] = []
    policy = RetryPolicy(attempts=4, base_delay=0.01, sleep=slept.append)
    outcomes = [TransientError(503, "busy", "/x"), TransientError(None, "timeout", "/x"), "ok"]

    def call() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert policy.run(call) == "ok"
    assert len(slept) == 2


def test_gives_up_after_the_last_attempt_with_the_last_failure():
    calls: list[int] = []
    policy = RetryPolicy(attempts=3, base_delay=0.0, sleep=lambda _: None)

    def call() -> None:
        calls.append(1)
        raise TransientError(595, f"No route to host #{len(calls)}", "/nodes/pve2/status")

    with pytest.raises(TransientError, match="#3"):
        policy.run(call)
    assert len(calls) == 3


def test_a_refusal_is_never_retried():
    calls: list[int] = []
    policy = RetryPolicy(attempts=4, base_delay=0.0, sleep=lambda _: None)

    def call() -> None:
        calls.append(1)
        raise RefusedError(500, "VM is locked (backup)", "/nodes/pve1/qemu/100/migrate")

    with pytest.raises(RefusedError):
        policy.run(call)
    assert calls == [1]


@pytest.mark.parametrize(
    ("field", "value"), [("attempts", 0), ("base_delay", -1.0), ("jitter", 1.5)]
)
def test_a_policy_that_makes_no_sense_is_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"RetryPolicy.{field} must be"):
        RetryPolicy(**{field: value})
