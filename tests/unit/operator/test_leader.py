"""The leader-election rules (mnist_operator.leader) as pure functions; the Lease itself is exercised
against a real API server in tests/k8s/test_leader_election.py."""

from datetime import UTC, datetime

from mnist_operator.leader import Sighting, claimed, may_take, micro_time, new_identity, sighting

NOW = datetime(2026, 12, 4, 5, 6, 7, 123456, tzinfo=UTC)


def lease(holder: str | None, renew_time: str | None = "2026-12-04T05:06:00.000000Z") -> dict[str, object]:
    return {"spec": {"holderIdentity": holder, "renewTime": renew_time, "leaseDurationSeconds": 15}}


def test_micro_time_is_what_the_api_server_stores() -> None:
    assert micro_time(NOW) == "2026-12-04T05:06:07.123456Z"


def test_identities_name_the_pod_and_differ_per_process() -> None:
    first, second = new_identity("op-7d9c-xk2lp"), new_identity("op-7d9c-xk2lp")
    assert first.startswith("op-7d9c-xk2lp_") and first != second


def test_a_sighting_keeps_its_time_while_the_lease_does_not_change() -> None:
    seen = sighting(lease("a"), None, now=100.0)
    assert sighting(lease("a"), seen, now=130.0).seen_at == 100.0
    assert sighting(lease("a", "2026-12-04T05:06:05.000000Z"), seen, now=130.0).seen_at == 130.0
    assert sighting(lease("b"), seen, now=130.0) == Sighting("b", "2026-12-04T05:06:00.000000Z", 130.0)


def test_a_standby_takes_only_a_free_lease_or_one_silent_for_a_whole_duration_it_watched() -> None:
    assert may_take(Sighting(None, None, 100.0), "me", 15, now=100.0)
    assert may_take(Sighting("me", "t", 100.0), "me", 15, now=100.0)
    assert not may_take(Sighting("other", "t", 100.0), "me", 15, now=114.9)
    assert may_take(Sighting("other", "t", 100.0), "me", 15, now=115.0)


def test_an_unreadable_lease_restarts_the_standbys_count() -> None:
    # After a failed read the standby has no sighting: the next read starts the clock again, so the
    # leader, cut off for as long, gets a whole duration to renew.
    seen = sighting(lease("other"), None, now=200.0)
    assert not may_take(seen, "me", 15, now=200.0)


def test_claiming_a_free_lease_starts_its_count_of_transitions() -> None:
    spec = claimed(None, "me", 15, NOW)
    assert spec == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-12-04T05:06:07.123456Z",
        "renewTime": "2026-12-04T05:06:07.123456Z",
        "leaseTransitions": 0,
    }


def test_renewing_keeps_the_acquire_time_and_taking_over_counts_a_transition() -> None:
    held = {"spec": {**claimed(None, "me", 15, NOW), "acquireTime": "earlier"}}
    renewed = claimed(held, "me", 15, NOW)
    assert renewed["acquireTime"] == "earlier" and renewed["leaseTransitions"] == 0
    taken = claimed(held, "you", 15, NOW)
    assert taken["holderIdentity"] == "you" and taken["leaseTransitions"] == 1
    assert taken["acquireTime"] == micro_time(NOW)
    released = {"spec": {**held["spec"], "holderIdentity": None}}
    assert claimed(released, "you", 15, NOW)["leaseTransitions"] == 0  # a free Lease is no transition
