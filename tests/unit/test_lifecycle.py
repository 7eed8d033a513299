"""Scenario tests of the planner; the invariants over random histories are in
test_lifecycle_properties.py."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jwks_operator.core.lifecycle import Plan, next_change, plan
from jwks_operator.core.spec import KeySetSpec, parse_spec
from jwks_operator.core.state import KeySetState, KeyState
from tests.unit.keyfactory import PooledKeyFactory

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_spec(**overrides: Any) -> KeySetSpec:
    raw: dict[str, Any] = {
        "algorithm": "ES256",
        "rotation": {"interval": "60s", "prePublish": "20s", "retireAfter": "30s"},
    }
    raw.update(overrides)
    return parse_spec("auth", raw)


class Harness:
    """Runs the planner the way reconcile does: plan, then mark the JWKS as published."""

    def __init__(self, spec: KeySetSpec) -> None:
        self.spec = spec
        self.state = KeySetState()
        self.factory = PooledKeyFactory()
        self.last: Plan | None = None

    def step(self, at: datetime, rotate: str | None = None, spec: KeySetSpec | None = None) -> Plan:
        self.spec = spec or self.spec
        result = plan(self.spec, self.state, at, new_key=self.factory, rotate_request=rotate)
        kids = frozenset(key["kid"] for key in result.jwks["keys"])
        self.state = result.state.mark_published(kids, at)
        self.last = result
        return result

    def reasons(self) -> list[str]:
        assert self.last is not None
        return [event.reason for event in self.last.events]

    def kids(self) -> list[str]:
        assert self.last is not None
        return [key["kid"] for key in self.last.jwks["keys"]]


def test_bootstrap_makes_an_active_and_a_next_key_and_warns() -> None:
    h = Harness(make_spec())
    result = h.step(T0)
    assert [k.state for k in result.state.keys] == [KeyState.ACTIVE, KeyState.NEXT]
    assert h.reasons() == ["Bootstrapped", "NextKeyCreated"]
    assert result.events[0].type == "Warning"
    assert h.kids() == [result.state.keys[0].kid, result.state.keys[1].kid]
    assert next_change(h.spec, h.state) == T0 + timedelta(seconds=60)


def test_planning_twice_at_the_same_instant_changes_nothing() -> None:
    h = Harness(make_spec())
    h.step(T0)
    before = h.state
    again = plan(h.spec, before, T0, new_key=h.factory)
    assert again.state == before
    assert again.events == ()
    assert not again.changed


def test_full_cycle_rotate_retire_remove() -> None:
    h = Harness(make_spec())
    first = h.step(T0).state
    active1, next1 = first.active, first.next
    assert active1 and next1
    assert h.step(T0 + timedelta(seconds=59)).events == ()
    h.step(T0 + timedelta(seconds=60))
    assert h.reasons() == ["Rotated", "NextKeyCreated"]
    assert h.state.active and h.state.active.kid == next1.kid
    retired = h.state.find(active1.kid)
    assert retired and retired.state is KeyState.RETIRED
    assert h.kids()[:2] == [next1.kid, h.state.next.kid if h.state.next else ""]
    assert h.kids()[2] == active1.kid
    h.step(T0 + timedelta(seconds=89))
    assert active1.kid in h.kids()
    h.step(T0 + timedelta(seconds=90))
    assert h.reasons() == ["KeyRemoved"]
    assert active1.kid not in h.kids()


def test_rotation_waits_for_pre_publication_of_the_next_key() -> None:
    h = Harness(make_spec())
    h.step(T0)
    # The next key is published late (say the ConfigMap write kept failing).
    h.state = KeySetState(
        keys=tuple(
            k
            if k.state is KeyState.ACTIVE
            else type(k)(**{**k.__dict__, "published_at": T0 + timedelta(seconds=50)})
            for k in h.state.keys
        ),
        revision=h.state.revision,
    )
    assert next_change(h.spec, h.state) == T0 + timedelta(seconds=70)
    assert h.step(T0 + timedelta(seconds=65)).events == ()
    h.step(T0 + timedelta(seconds=70))
    assert h.reasons()[0] == "Rotated"


def test_unpublished_next_key_never_activates_on_schedule() -> None:
    h = Harness(make_spec())
    result = plan(h.spec, KeySetState(), T0, new_key=h.factory)
    # Never marked published: no activation, however late it gets.
    later = plan(h.spec, result.state, T0 + timedelta(days=1), new_key=h.factory)
    assert [e.reason for e in later.events] == []
    assert later.next_change is None


def test_manual_rotation_once_per_value() -> None:
    h = Harness(make_spec())
    h.step(T0)
    h.step(T0 + timedelta(seconds=30), rotate="r1")
    assert h.reasons() == ["ManualRotation", "NextKeyCreated"]
    h.step(T0 + timedelta(seconds=31), rotate="r1")
    assert h.reasons() == []
    # Too early for the new next key: rotates anyway, with a warning naming the risk.
    h.step(T0 + timedelta(seconds=35), rotate="r2")
    assert h.reasons() == ["RotatedEarly", "NextKeyCreated"]
    assert h.last and h.last.events[0].type == "Warning"
    assert "published less than prePublish ago" in h.last.events[0].message


def test_revoking_the_active_key_promotes_next_at_once() -> None:
    h = Harness(make_spec())
    first = h.step(T0).state
    assert first.active and first.next
    spec = make_spec(revokedKeys=[first.active.kid])
    h.step(T0 + timedelta(seconds=5), spec=spec)
    assert h.reasons() == ["ActiveKeyRevoked", "NextKeyCreated"]
    assert h.state.active and h.state.active.kid == first.next.kid
    assert first.active.kid not in h.kids()
    assert first.active.kid in h.state.revoked
    # Reported once only.
    h.step(T0 + timedelta(seconds=6))
    assert h.reasons() == []


def test_revoking_active_and_next_makes_an_emergency_key() -> None:
    h = Harness(make_spec())
    first = h.step(T0).state
    assert first.active and first.next
    h.step(
        T0 + timedelta(seconds=5), spec=make_spec(revokedKeys=[first.active.kid, first.next.kid])
    )
    assert sorted(h.reasons()) == sorted(["KeyRevoked", "EmergencyKey", "NextKeyCreated"])
    assert set(h.kids()).isdisjoint({first.active.kid, first.next.kid})


def test_revoking_a_retired_key_withdraws_it() -> None:
    h = Harness(make_spec())
    first = h.step(T0).state
    assert first.active
    h.step(T0 + timedelta(seconds=60))
    h.step(T0 + timedelta(seconds=61), spec=make_spec(revokedKeys=[first.active.kid]))
    assert h.reasons() == ["KeyRevoked"]
    assert first.active.kid not in h.kids()


def test_unknown_revoked_kid_is_reported_not_an_error() -> None:
    h = Harness(make_spec(revokedKeys=["nope"]))
    h.step(T0)
    assert "RevokedKeyUnknown" in h.reasons()
    h.step(T0 + timedelta(seconds=1))
    assert h.reasons() == []


def test_algorithm_change_replaces_the_unused_next_key_and_retires_old_ones_normally() -> None:
    h = Harness(make_spec())
    first = h.step(T0).state
    assert first.active and first.next
    h.step(T0 + timedelta(seconds=10), spec=make_spec(algorithm="EdDSA"))
    assert h.reasons() == ["NextKeyReplaced", "NextKeyCreated"]
    assert h.state.next and h.state.next.material.algorithm == "EdDSA"
    # The active ES256 key keeps signing until the new key is pre-published and due.
    assert h.state.active and h.state.active.kid == first.active.kid
    h.step(T0 + timedelta(seconds=60))
    assert h.reasons() == ["Rotated", "NextKeyCreated"]
    assert h.state.active and h.state.active.material.algorithm == "EdDSA"
    assert first.active.kid in h.kids()  # retired, still published for retireAfter


def test_longer_retire_after_keeps_retired_keys_longer_but_shorter_never_cuts() -> None:
    h = Harness(make_spec())
    first = h.step(T0).state
    assert first.active
    h.step(T0 + timedelta(seconds=60))
    longer = make_spec(rotation={"interval": "60s", "prePublish": "20s", "retireAfter": "50s"})
    h.step(T0 + timedelta(seconds=70), spec=longer)
    h.step(T0 + timedelta(seconds=100))
    assert first.active.kid in h.kids()
    shorter = make_spec(rotation={"interval": "60s", "prePublish": "20s", "retireAfter": "1s"})
    h.step(T0 + timedelta(seconds=101), spec=shorter)
    assert first.active.kid in h.kids()
    h.step(T0 + timedelta(seconds=110))
    assert first.active.kid not in h.kids()


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(make_spec(), KeySetState(), datetime(2026, 1, 1), new_key=PooledKeyFactory())


def test_long_outage_rotates_once_then_waits_for_pre_publication() -> None:
    h = Harness(make_spec())
    first = h.step(T0).state
    assert first.next
    h.step(T0 + timedelta(hours=5))
    # The old active key retired; the published next key took over; the brand-new next
    # key must now be published for prePublish before anything else happens.
    assert h.reasons() == ["Rotated", "NextKeyCreated"]
    assert h.state.active and h.state.active.kid == first.next.kid
    assert next_change(h.spec, h.state) == T0 + timedelta(hours=5, seconds=30)
