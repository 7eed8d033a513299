"""Invariants 2 and 3 through the whole reconcile, with a clock that moves while it works.

``test_lifecycle_properties`` drives the planner alone, at instants it chooses. Here the
shared ``reconcile`` runs against a store whose every write takes time, with a key factory
that takes time too (RSA-4096 takes about 0.4 s; under load, seconds), so that a time
recorded when something was *decided* and not when it became *visible* shows up as a key
that left the JWKS before ``retireAfter`` had passed since it last signed, or that signed
before it had been servable for ``prePublish``.

The model keeps its own record, from the writes themselves:
- a key stops signing when the private write that replaced ``signing.kid`` is confirmed
  (until then a signer re-reading ``signing.pem`` still gets it), and a new key may sign
  from the moment that write starts;
- a key is servable once both the trust list (status) and the JWKS holding it are
  confirmed, and it leaves the JWKS when the JWKS write without it starts.
"""

import asyncio
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from jwks_operator.core.contract import CONFIGMAP_JWKS, SECRET_KEYS, SECRET_SIGNING_KID
from jwks_operator.core.keys import KeyMaterial
from jwks_operator.core.spec import KeySetSpec, parse_spec
from jwks_operator.core.state import state_from_json
from jwks_operator.reconcile import Outcome, reconcile
from jwks_operator.store.base import WriteOutcome
from jwks_operator.store.memory import MemoryStore
from tests.operator.harness import sign_token, verifies
from tests.unit.keyfactory import PooledKeyFactory

EXCEPTIONS = {"Bootstrapped", "ActiveKeyRevoked", "EarlyActivation", "RotatedEarly", "EmergencyKey"}
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class SlowWorld:
    """The clock, and how long each piece of work takes (drawn per call)."""

    def __init__(self, rng: random.Random, slowest: float, *, only_switches: bool = False) -> None:
        self.clock = Clock()
        self.rng = rng
        self.slowest = slowest
        self.only_switches = only_switches
        """Only the writes that switch the signing key are slow (the worst case for 3)."""

    def work(self, switch: bool = False) -> tuple[datetime, datetime]:
        start = self.clock.now
        if switch or not self.only_switches:
            self.clock.now += timedelta(seconds=self.rng.uniform(0, self.slowest))
        return start, self.clock.now


class SlowFactory:
    def __init__(self, world: SlowWorld) -> None:
        self.world = world
        self.keys = PooledKeyFactory()

    def __call__(self, algorithm: str, key_size: int | None) -> KeyMaterial:
        self.world.work()
        return self.keys(algorithm, key_size)


class ObservedStore(MemoryStore):
    """A MemoryStore whose writes take time, recording when each effect became visible."""

    def __init__(self, world: SlowWorld) -> None:
        super().__init__()
        self.world = world
        self.stopped: dict[str, datetime] = {}
        self.signs_from: dict[str, datetime] = {}
        self.listed_at: dict[str, datetime] = {}
        self.jwks_at: dict[str, datetime] = {}
        self.left: list[tuple[str, datetime]] = []

    def landing(self, at: datetime) -> None:
        """A private write is about to land at ``at``: until then the old files are read."""

    def servable_since(self, kid: str) -> datetime | None:
        if kid not in self.listed_at or kid not in self.jwks_at:
            return None
        return max(self.listed_at[kid], self.jwks_at[kid])

    async def write_private(self, data: Mapping[str, str]) -> WriteOutcome:
        before = (self.private or {}).get(SECRET_SIGNING_KID)
        after = data.get(SECRET_SIGNING_KID)
        start, end = self.world.work(switch=after != before)
        self.landing(end)
        outcome = await super().write_private(data)
        if after != before:
            if before is not None:
                self.stopped.setdefault(before, end)
            if after is not None:
                self.signs_from.setdefault(after, start)
        return outcome

    async def write_trust(self, keys: Sequence[Mapping[str, Any]]) -> None:
        _, end = self.world.work()
        await super().write_trust(keys)
        for entry in keys:
            self.listed_at.setdefault(str(entry["kid"]), end)

    async def write_public(
        self, data: Mapping[str, str], next_change: datetime | None
    ) -> WriteOutcome:
        old = published(self.public)
        start, end = self.world.work()
        outcome = await super().write_public(data, next_change)
        new = published(self.public)
        self.left += [(kid, start) for kid in old - new]
        for kid in new - old:
            self.jwks_at.setdefault(kid, end)
        return outcome


def published(data: Mapping[str, str] | None) -> set[str]:
    if not data:
        return set()
    return {key["kid"] for key in json.loads(data[CONFIGMAP_JWKS])["keys"]}


@st.composite
def specs(draw: st.DrawFn) -> KeySetSpec:
    interval = draw(st.integers(min_value=2, max_value=120))
    pre_publish = draw(st.integers(min_value=1, max_value=interval - 1))
    retire_after = draw(st.integers(min_value=1, max_value=120))
    return parse_spec(
        "timing",
        {
            "algorithm": draw(st.sampled_from(["ES256", "EdDSA"])),
            "rotation": {
                "interval": f"{interval}s",
                "prePublish": f"{pre_publish}s",
                "retireAfter": f"{retire_after}s",
            },
        },
    )


class SlowReconciles(RuleBasedStateMachine):
    @initialize(
        spec=specs(),
        rng=st.randoms(use_true_random=False),
        slowest=st.sampled_from([0.0, 0.05, 0.4, 1.7, 3.0]),
    )
    def start(self, spec: KeySetSpec, rng: random.Random, slowest: float) -> None:
        self.spec = spec
        self.world = SlowWorld(rng, slowest)
        self.store = ObservedStore(self.world)
        self.factory = SlowFactory(self.world)
        self.revoked: set[str] = set()
        self.rotations = 0
        self.checked_left = 0
        self.outcome = self._reconcile()

    def _reconcile(self, rotate: str | None = None) -> Outcome:
        outcome = asyncio.run(
            reconcile(
                self.spec,
                self.store,
                clock=self.world.clock,
                new_key=self.factory,
                rotate_request=rotate,
            )
        )
        reasons = {event.reason for event in outcome.events}
        store = self.store
        # 3. A key leaves the JWKS no earlier than retireAfter after it last signed.
        for kid, left_at in store.left[self.checked_left :]:
            stopped = store.stopped.get(kid)
            if stopped is not None and kid not in self.revoked:
                assert left_at >= stopped + self.spec.retire_after, (
                    f"{kid} left {left_at - stopped} after it stopped signing"
                )
        self.checked_left = len(store.left)
        # 2. A key signs only once it has been servable for prePublish (or it is reported).
        active = outcome.active_kid
        if active is not None and active in store.signs_from and active not in self.seen_active:
            self.seen_active.add(active)
            since = store.servable_since(active)
            on_time = (
                since is not None and since + self.spec.pre_publish <= store.signs_from[active]
            )
            assert on_time or reasons & EXCEPTIONS, (reasons, since, store.signs_from[active])
        # Every recorded time is when its effect became visible, or later.
        assert store.private is not None
        for key in state_from_json(store.private[SECRET_KEYS]).keys:
            if key.retired_at is not None and key.kid in store.stopped:
                assert key.retired_at >= store.stopped[key.kid], key.kid
                assert key.removes_at is not None
                assert key.removes_at >= store.stopped[key.kid] + self.spec.retire_after
            if key.published_at is not None:
                since = store.servable_since(key.kid)
                assert since is not None and key.published_at >= since, key.kid
            if key.activated_at is not None and key.kid in store.signs_from:
                assert key.activated_at >= store.signs_from[key.kid], key.kid
        return outcome

    @property
    def seen_active(self) -> set[str]:
        if not hasattr(self, "_seen_active"):
            self._seen_active: set[str] = set()
        return self._seen_active

    @precondition(lambda self: hasattr(self, "spec"))
    @rule(seconds=st.floats(min_value=0, max_value=200))
    def time_passes(self, seconds: float) -> None:
        self.world.clock.now += timedelta(seconds=seconds)
        self.outcome = self._reconcile()

    @precondition(lambda self: hasattr(self, "spec"))
    @rule()
    def wake_when_due(self) -> None:
        """What the daemon does: sleep until next_change (plus its slack), reconcile."""
        due = self.outcome.next_change
        if due is not None and due > self.world.clock.now:
            self.world.clock.now = due + timedelta(seconds=0.05)
        self.outcome = self._reconcile()

    @precondition(lambda self: hasattr(self, "spec"))
    @rule()
    def rotate_request(self) -> None:
        self.rotations += 1
        self.outcome = self._reconcile(rotate=f"r{self.rotations}")

    @precondition(lambda self: hasattr(self, "spec"))
    @rule(which=st.sampled_from(["active", "next"]))
    def revoke(self, which: str) -> None:
        kid = self.outcome.active_kid if which == "active" else self.outcome.next_kid
        if kid is None:
            return
        self.revoked.add(kid)
        self.spec = replace(self.spec, revoked_keys=frozenset(self.revoked))
        self.outcome = self._reconcile()


SlowReconciles.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSlowReconciles = SlowReconciles.TestCase


class SigningStore(ObservedStore):
    """Also a signer that re-reads signing.pem: it signs a token at the last instant the
    old key is still in the Secret (just before each private write lands), and a verifier
    checks every token against each JWKS as it is written."""

    def __init__(self, world: SlowWorld, spec: KeySetSpec) -> None:
        super().__init__(world)
        self.spec = spec
        self.tokens: list[tuple[str, str, datetime]] = []  # (kid, token, signed at)
        self.verified: set[tuple[str, datetime]] = set()

    def sign(self, at: datetime) -> None:
        if self.private is None:
            return
        kid, token = sign_token(self.private)
        self.tokens.append((kid, token, at))

    def landing(self, at: datetime) -> None:
        self.sign(at)  # the last instant the old signing.pem is read

    async def write_public(
        self, data: Mapping[str, str], next_change: datetime | None
    ) -> WriteOutcome:
        outcome = await super().write_public(data, next_change)
        jwks = json.loads(data[CONFIGMAP_JWKS])
        for kid, token, signed_at in self.tokens:
            # Published until at least retireAfter after the token was signed.
            if self.world.clock.now < signed_at + self.spec.retire_after:
                assert verifies(token, jwks), f"token of {kid} signed at {signed_at} refused"
                self.verified.add((kid, signed_at))
        return outcome


async def test_tokens_signed_up_to_the_switch_verify_until_their_own_retire_after() -> None:
    spec = parse_spec(
        "signer",
        {
            "algorithm": "ES256",
            "rotation": {"interval": "6s", "prePublish": "2s", "retireAfter": "3s"},
        },
    )
    # The write that stops the old key signing is as slow as a busy API server makes it
    # (1.7 s measured under load), every other write instant: the removal then happens
    # exactly when the recorded retirement says, with no slack to hide an early stamp.
    world = SlowWorld(random.Random(7), 1.7, only_switches=True)
    store = SigningStore(world, spec)
    factory = SlowFactory(world)
    outcome = await reconcile(spec, store, clock=world.clock, new_key=factory)
    for _ in range(12):  # the daemon: wake at the next change, sign meanwhile, reconcile
        assert outcome.next_change is not None
        while world.clock.now < outcome.next_change:
            store.sign(world.clock.now)
            world.clock.now += timedelta(seconds=0.25)
        world.clock.now = outcome.next_change + timedelta(seconds=0.05)
        store.sign(world.clock.now)
        outcome = await reconcile(spec, store, clock=world.clock, new_key=factory)
    assert len(store.stopped) >= 5  # several keys stopped signing...
    for kid, stopped in store.stopped.items():  # ...and the last token of each was checked
        assert (kid, stopped) in store.verified, kid
