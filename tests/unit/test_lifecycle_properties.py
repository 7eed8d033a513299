"""The invariants of DESIGN.md, checked at every step of random keyset histories.

The state machine drives the planner the way reconcile does (plan, publish, mark
published) through random time steps, rotate requests, revocations, spec changes and
failed publications, and keeps its *own* record of when each kid was first served and
when it stopped signing, so the invariants are checked against an independent model
rather than against the planner's bookkeeping.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jwks_operator.core.guard import check_public_jwks
from jwks_operator.core.keys import thumbprint
from jwks_operator.core.lifecycle import Plan, next_change, plan
from jwks_operator.core.spec import KeySetSpec, parse_spec
from jwks_operator.core.state import KeySetState, KeyState
from tests.unit.keyfactory import PooledKeyFactory

EXCEPTIONS = {"Bootstrapped", "ActiveKeyRevoked", "EarlyActivation", "RotatedEarly", "EmergencyKey"}
T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEPS_RUN = {"steps": 0, "plans": 0}


@st.composite
def specs(draw: st.DrawFn, algorithm: str | None = None) -> KeySetSpec:
    interval = draw(st.integers(min_value=2, max_value=600))
    pre_publish = draw(st.integers(min_value=1, max_value=interval - 1))
    retire_after = draw(st.integers(min_value=1, max_value=900))
    raw: dict[str, Any] = {
        "algorithm": algorithm or draw(st.sampled_from(["ES256", "EdDSA", "ES384", "RS256"])),
        "rotation": {
            "interval": f"{interval}s",
            "prePublish": f"{pre_publish}s",
            "retireAfter": f"{retire_after}s",
        },
    }
    return parse_spec("prop", raw)


class KeySetHistory(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.factory = PooledKeyFactory()
        self.state = KeySetState()
        self.now = T0
        self.rotations = 0
        self.revoked: set[str] = set()
        self.first_served: dict[str, datetime] = {}
        self.stopped: dict[str, tuple[datetime, timedelta]] = {}
        self.active_kid: str | None = None
        self.served: list[str] = []

    @initialize(spec=specs())
    def start(self, spec: KeySetSpec) -> None:
        self.spec = spec
        self._plan(publish=True)

    def _plan(self, publish: bool, rotate: str | None = None) -> Plan:
        STEPS_RUN["plans"] += 1
        result = plan(self.spec, self.state, self.now, new_key=self.factory, rotate_request=rotate)
        reasons = {event.reason for event in result.events}
        kids = [key["kid"] for key in result.jwks["keys"]]

        # 4. Only public members, no oct, no duplicate kids.
        check_public_jwks(result.jwks)
        # 5. kid is the RFC 7638 thumbprint.
        for key in result.jwks["keys"]:
            assert key["kid"] == thumbprint(key)
        # 1. Exactly one active key, and it is in the JWKS.
        actives = [key for key in result.state.keys if key.state is KeyState.ACTIVE]
        assert len(actives) == 1
        assert actives[0].kid in kids
        # 2. Activation only after prePublish of *serving*, unless reported.
        new_active = actives[0].kid
        if new_active != self.active_kid:
            served_since = self.first_served.get(new_active)
            on_time = served_since is not None and served_since + self.spec.pre_publish <= self.now
            assert on_time or reasons & EXCEPTIONS, (reasons, served_since, self.now)
            if not on_time:
                assert any(e.type == "Warning" and e.reason in EXCEPTIONS for e in result.events)
            if self.active_kid is not None and self.active_kid not in self.revoked:
                self.stopped[self.active_kid] = (self.now, self.spec.retire_after)
            self.active_kid = new_active
        # 6. Idempotent at the same instant.
        again = plan(self.spec, result.state, self.now, new_key=self.factory, rotate_request=rotate)
        assert again.state == result.state
        assert again.events == ()
        # Revoked keys are gone at once.
        assert not set(kids) & self.revoked

        self.state = result.state
        if publish:
            # 3. A key that stopped signing stays served for retireAfter (unless revoked).
            for kid, (stopped_at, retire_after) in self.stopped.items():
                if self.now < stopped_at + retire_after and kid not in self.revoked:
                    assert kid in kids, (kid, stopped_at, retire_after, self.now)
            for kid in kids:
                self.first_served.setdefault(kid, self.now)
            self.state = self.state.mark_published(frozenset(kids), self.now)
            self.served = kids
            self._check_next_change()
        return result

    def _check_next_change(self) -> None:
        due = next_change(self.spec, self.state)
        if due is None:
            return
        # Never in the past, and nothing happens before it.
        assert due > self.now
        probe = self.now + (due - self.now) / 2
        quiet = plan(self.spec, self.state, probe, new_key=self.factory)
        assert quiet.events == (), [e.reason for e in quiet.events]
        at_due = plan(self.spec, self.state, due, new_key=self.factory)
        assert at_due.events != ()

    @rule(seconds=st.integers(min_value=0, max_value=1200))
    def time_passes(self, seconds: int) -> None:
        STEPS_RUN["steps"] += 1
        self.now += timedelta(seconds=seconds)
        self._plan(publish=True)

    @rule()
    def jump_to_next_change(self) -> None:
        STEPS_RUN["steps"] += 1
        due = next_change(self.spec, self.state)
        if due is not None:
            self.now = due
        self._plan(publish=True)

    @rule(seconds=st.integers(min_value=0, max_value=120))
    def rotate_request(self, seconds: int) -> None:
        STEPS_RUN["steps"] += 1
        self.now += timedelta(seconds=seconds)
        self.rotations += 1
        self._plan(publish=True, rotate=f"r{self.rotations}")

    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        STEPS_RUN["steps"] += 1
        choices = [*self.served, "unknown-kid"]
        kid = data.draw(st.sampled_from(choices))
        self.revoked.add(kid)
        self.spec = replace(self.spec, revoked_keys=frozenset(self.revoked))
        self._plan(publish=True)

    @rule(data=st.data())
    def spec_changes(self, data: st.DataObject) -> None:
        STEPS_RUN["steps"] += 1
        new = data.draw(specs())
        self.spec = replace(new, revoked_keys=frozenset(self.revoked))
        self._plan(publish=True)

    @precondition(lambda self: hasattr(self, "spec"))
    @rule(seconds=st.integers(min_value=0, max_value=600))
    def publication_fails(self, seconds: int) -> None:
        """The private half was written but the JWKS write failed: nothing was served."""
        STEPS_RUN["steps"] += 1
        self.now += timedelta(seconds=seconds)
        self._plan(publish=False)

    @invariant()
    def one_active_key(self) -> None:
        if hasattr(self, "spec"):
            assert self.state.active is not None


KeySetHistory.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestKeySetHistory = KeySetHistory.TestCase
