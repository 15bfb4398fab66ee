"""Which steps share an environment Secret, when it is POSTed and when it may be deleted."""

from __future__ import annotations

import pytest

from k8s_step_operator.secret_batches import SecretBatches

KEY = ("ns", "run-1")


def _job(name: str) -> dict:
    return {"metadata": {"name": name, "uid": f"uid-{name}"}}


def _secret(name: str, size: int = 10) -> dict:
    return {"metadata": {"name": f"{name}-env"}, "stringData": {f"{name}.A": "x" * size}}


def test_a_lone_step_gets_its_own_secret_right_after_its_job() -> None:
    batches = SecretBatches()
    batch = batches.join(KEY, "a-env")
    assert batch.name == "a-env"
    assert batches.hand_in(batch, "sub-a", _job("a"), _secret("a")) is batch  # POST it now
    assert batches.sent(batch, created=True) == []
    assert batch.done.done()


def test_steps_created_while_a_secret_is_out_share_the_next_one() -> None:
    batches = SecretBatches()
    first = batches.join(KEY, "a-env")
    assert batches.hand_in(first, "a", _job("a"), _secret("a")) is first  # out
    second = batches.join(KEY, "b-env")
    assert second is not first and second.name == "b-env"
    assert batches.join(KEY, "c-env") is second  # c's pod names b-env
    assert batches.hand_in(second, "b", _job("b"), _secret("b")) is None  # waits: a's POST is out
    assert batches.hand_in(second, "c", _job("c"), _secret("c")) is None
    assert batches.sent(first, created=True) == [second]  # now the next one, with b and c
    assert [m.job["metadata"]["name"] for m in second.members] == ["b", "c"]
    assert batches.join(KEY, "d-env") is not second  # closed: d starts the one after


def test_a_closed_batch_waits_for_everyone_who_joined_and_a_failed_job_withdraws() -> None:
    batches = SecretBatches()
    batch = batches.join(KEY, "a-env")
    assert batches.join(KEY, "b-env") is batch
    assert batches.join(KEY, "c-env") is batch
    assert batches.hand_in(batch, "a", _job("a"), _secret("a")) is None  # closed, but b and c are still POSTing
    assert batches.join(KEY, "d-env") is not batch
    assert batches.withdraw(batch) is None  # b's Job was refused
    assert batches.hand_in(batch, "c", _job("c"), _secret("c")) is batch
    assert [m.sub for m in batch.members] == ["a", "c"]


def test_everyone_withdrawing_frees_the_key_for_the_next_batch() -> None:
    batches = SecretBatches()
    out = batches.join(KEY, "a-env")
    batches.hand_in(out, "a", _job("a"), _secret("a"))
    empty = batches.join(KEY, "b-env")
    batches.sent(out, created=True)
    assert batches.withdraw(empty) is None  # never had a member: nothing to POST
    nxt = batches.join(KEY, "c-env")
    assert nxt is empty  # still open: the next step uses it
    assert batches.hand_in(nxt, "c", _job("c"), _secret("c")) is nxt


def test_other_runs_and_namespaces_never_share() -> None:
    batches = SecretBatches()
    a = batches.join(("ns", "run-1"), "a-env")
    assert batches.join(("ns", "run-2"), "b-env") is not a
    assert batches.join(("other", "run-1"), "c-env") is not a


def test_a_full_batch_closes_by_count_and_by_bytes() -> None:
    batches = SecretBatches(max_members=2, max_bytes=100)
    out = batches.join(KEY, "a-env")
    batches.hand_in(out, "a", _job("a"), _secret("a"))
    full = batches.join(KEY, "b-env")
    batches.hand_in(full, "b", _job("b"), _secret("b"))
    batches.hand_in(full, "c", _job("c"), _secret("c"))
    assert batches.join(KEY, "d-env") is not full  # two members: closed, though a's POST is out
    big = batches.join(KEY, "e-env")
    batches.hand_in(big, "e", _job("e"), _secret("e", size=200))
    assert batches.join(KEY, "f-env") is not big


def test_the_secret_may_go_once_every_member_has_read_it() -> None:
    batches = SecretBatches()
    out = batches.join(KEY, "a-env")
    batches.hand_in(out, "a", _job("a"), _secret("a"))
    batches.sent(out, created=True)
    assert batches.release("a") is out
    assert batches.release("a") is None  # once

    shared = batches.join(KEY, "b-env")
    assert batches.join(KEY, "c-env") is shared
    batches.hand_in(shared, "b", _job("b"), _secret("b"))
    assert batches.release("b") is None  # not POSTed yet, and c has not handed in
    batches.hand_in(shared, "c", _job("c"), _secret("c"))
    assert batches.release("c") is None
    assert batches.sent(shared, created=True) == [shared]  # both read it meanwhile: delete it now


def test_a_refused_secret_is_never_deleted() -> None:
    batches = SecretBatches()
    out = batches.join(KEY, "a-env")
    batches.hand_in(out, "a", _job("a"), _secret("a"))
    assert batches.release("a") is None
    assert batches.sent(out, created=False) == []


def test_a_batch_keeps_a_reference_to_each_job_and_each_environment_only_until_sent() -> None:
    batches = SecretBatches()
    batch = batches.join(KEY, "a-env")
    created = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "a", "namespace": "ns", "uid": "uid-a", "labels": {"run": "r"}, "resourceVersion": "7",
                     "managedFields": [{"manager": "kube-controller-manager"}]},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "img"}]}}},
        "status": {"active": 1},
    }
    batches.hand_in(batch, "sub-a", created, _secret("a"))
    member = batch.members[0]
    assert member.job == {"apiVersion": "batch/v1", "kind": "Job",
                          "metadata": {"name": "a", "namespace": "ns", "uid": "uid-a", "labels": {"run": "r"}}}
    assert member.secret == _secret("a")  # what the POST sends
    batches.sent(batch, created=True)
    assert member.secret == {}
    assert batches.release("a") is batch  # released by its Job's name, as before


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lingering(quiet: float = 0.01, max_linger: float = 0.25, **limits: int) -> "tuple[SecretBatches, Clock]":
    clock = Clock()
    return SecretBatches(quiet=quiet, max_linger=max_linger, clock=clock, **limits), clock


def test_a_lone_step_lingers_a_quiet_spell_then_goes_alone() -> None:
    batches, clock = _lingering()
    batch = batches.join(KEY, "a-env")
    assert batches.hand_in(batch, "a", _job("a"), _secret("a")) is batch
    assert not batch.closed  # to linger, not yet to POST
    assert batches.linger_left(batch) == pytest.approx(0.01)
    clock.now += 0.004
    assert batches.linger_left(batch) == pytest.approx(0.006)
    clock.now += 0.006
    assert batches.linger_left(batch) == 0.0
    assert batches.close(batch) is batch and batch.closed
    assert batches.close(batch) is None  # handed out once
    assert batches.join(KEY, "b-env") is not batch


def test_steps_submitted_back_to_back_share_the_lingering_secret_until_its_bound() -> None:
    batches, clock = _lingering()
    batch = batches.join(KEY, "a-env")
    assert batches.hand_in(batch, "a", _job("a"), _secret("a")) is batch  # lingers from here (t=0)
    for name in "bcd":
        clock.now += 0.002
        assert batches.join(KEY, f"{name}-env") is batch  # the next submit, 2 ms later
        clock.now += 0.05  # its Job's POST: longer than a quiet spell, but someone is mid-POST
        assert batches.linger_left(batch) > 0
        assert batches.hand_in(batch, name, _job(name), _secret(name)) is None  # stays open
    clock.now += 0.002
    assert batches.join(KEY, "e-env") is batch  # t=0.158
    clock.now += 0.1  # t=0.258: past the bound while e is still POSTing its Job
    assert batches.linger_left(batch) == 0.0
    assert batches.close(batch) is None  # closed; e is in it and hands it out
    assert batches.join(KEY, "f-env") is not batch
    assert batches.hand_in(batch, "e", _job("e"), _secret("e")) is batch
    assert [m.sub for m in batch.members] == ["a", "b", "c", "d", "e"]


def test_a_lingering_batch_that_fills_up_goes_at_once_and_only_once() -> None:
    batches, _clock = _lingering(max_members=2)
    batch = batches.join(KEY, "a-env")
    assert batches.hand_in(batch, "a", _job("a"), _secret("a")) is batch  # lingers
    assert batches.join(KEY, "b-env") is batch
    assert batches.hand_in(batch, "b", _job("b"), _secret("b")) is batch  # full: POST now
    assert batch.closed and batches.linger_left(batch) == 0.0
    assert batches.close(batch) is None  # the linger's end hands out nothing more
