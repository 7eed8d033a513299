"""The shared reconcile sequence, against the reference in-memory store."""

import contextlib
import json
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jwks_operator.core.contract import CONFIGMAP_JWKS, CONFIGMAP_OPENID, SECRET_KEYS
from jwks_operator.core.spec import parse_spec
from jwks_operator.core.state import KeyState, state_from_json
from jwks_operator.reconcile import reconcile
from jwks_operator.store.base import WriteOutcome
from jwks_operator.store.memory import MemoryStore
from tests.unit.keyfactory import PooledKeyFactory

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = parse_spec(
    "auth",
    {
        "algorithm": "ES256",
        "issuer": "https://auth.example.com/identity/auth",
        "rotation": {"interval": "60s", "prePublish": "20s", "retireAfter": "30s"},
    },
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Crash(Exception):
    pass


class CrashingStore(MemoryStore):
    """Dies on the n-th write, before it happens: a process killed between two writes."""

    def __init__(self) -> None:
        super().__init__()
        self.crash_at: int | None = None
        self.attempts = 0

    def _maybe_crash(self) -> None:
        self.attempts += 1
        if self.crash_at is not None and self.attempts == self.crash_at:
            raise Crash

    async def write_private(self, data: Mapping[str, str]) -> WriteOutcome:
        self._maybe_crash()
        return await super().write_private(data)

    async def write_trust(self, keys: Sequence[Mapping[str, Any]]) -> None:
        self._maybe_crash()
        await super().write_trust(keys)

    async def write_public(
        self, data: Mapping[str, str], next_change: datetime | None
    ) -> WriteOutcome:
        self._maybe_crash()
        return await super().write_public(data, next_change)


def published_kids(store: MemoryStore) -> set[str]:
    assert store.public is not None
    return {key["kid"] for key in json.loads(store.public[CONFIGMAP_JWKS])["keys"]}


def private_kids(store: MemoryStore) -> set[str]:
    assert store.private is not None
    return {key.kid for key in state_from_json(store.private[SECRET_KEYS]).keys}


async def test_bootstrap_writes_private_then_public_then_marks() -> None:
    store, clock = MemoryStore(), Clock()
    outcome = await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    assert store.writes == ["private", "trust", "public", "private"]
    assert outcome.ready.status and outcome.ready.reason == "KeysPublished"
    assert outcome.active_kid and outcome.next_kid
    assert published_kids(store) == private_kids(store) == {outcome.active_kid, outcome.next_kid}
    discovery = json.loads(store.public[CONFIGMAP_OPENID]) if store.public else {}
    assert discovery["jwks_uri"] == "https://auth.example.com/identity/auth/.well-known/jwks.json"
    assert discovery["id_token_signing_alg_values_supported"] == ["ES256"]
    assert outcome.next_change == T0 + timedelta(seconds=60)
    assert store.next_change == outcome.next_change
    assert [e.reason for e in outcome.events] == ["Bootstrapped", "NextKeyCreated"]


async def test_steady_state_writes_nothing() -> None:
    store, clock = MemoryStore(), Clock()
    await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    store.writes.clear()
    clock.now += timedelta(seconds=10)
    outcome = await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    assert store.writes == []
    assert outcome.events == ()
    assert not outcome.wrote


async def test_edited_public_documents_are_repaired_with_an_event() -> None:
    store, clock = MemoryStore(), Clock()
    await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    good = dict(store.public or {})
    assert store.public is not None
    store.public[CONFIGMAP_JWKS] = '{"keys":[]}'
    outcome = await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    assert store.public == good
    assert outcome.events == ()
    (notice,) = outcome.notices
    assert notice.each_time
    assert (notice.event.type, notice.event.reason) == ("Warning", "PublicKeysRepaired")
    assert (outcome.ready.status, outcome.ready.reason) == (True, "PublicKeysRepaired")
    store.public = None
    outcome = await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    assert store.public == good
    assert "missing" in outcome.notices[0].event.message
    # Repaired, the next reconciliation is plain KeysPublished again.
    outcome = await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    assert (outcome.ready.reason, outcome.notices) == ("KeysPublished", ())


async def test_corrupt_private_state_is_refused_and_nothing_is_written() -> None:
    store, clock = MemoryStore(), Clock()
    await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    assert store.private is not None
    store.private[SECRET_KEYS] = "garbage"
    public_before = dict(store.public or {})
    store.writes.clear()
    outcome = await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    assert not outcome.ready.status
    assert outcome.ready.reason == "CorruptSecret"
    assert "not valid JSON" in outcome.ready.message
    assert store.writes == []
    assert store.public == public_before


async def test_lost_private_state_keeps_public_keys_and_makes_a_new_active_key() -> None:
    store, clock = MemoryStore(), Clock()
    first = await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    old = published_kids(store)
    store.private = None
    clock.now += timedelta(seconds=5)
    outcome = await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    reasons = [e.reason for e in outcome.events]
    assert reasons[:2] == ["SecretLost", "EmergencyKey"]
    assert outcome.active_kid not in old
    assert old <= published_kids(store)
    assert "public key(s) of a lost Secret stay published until" in outcome.ready.message
    orphans = [k for k in outcome.keys if k["state"] == "orphaned"]
    assert {k["kid"] for k in orphans} == old
    # They leave once retireAfter has passed.
    clock.now += timedelta(seconds=30)
    await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    assert not old & published_kids(store)
    assert first.active_kid not in published_kids(store)


async def test_name_conflict_is_refused_without_writes() -> None:
    class TakenStore(MemoryStore):
        async def read(self) -> Any:
            from jwks_operator.store.base import StoredDocuments

            return StoredDocuments(
                None, None, conflict="Secret auth-signing belongs to someone else"
            )

    store = TakenStore()
    outcome = await reconcile(SPEC, store, clock=Clock(), new_key=PooledKeyFactory())
    assert outcome.ready.reason == "NameConflict"
    assert store.writes == []


@pytest.mark.parametrize("seed", range(12))
async def test_crash_between_any_two_writes_converges_and_loses_nothing(seed: int) -> None:
    """Kill the reconcile at a random write, many times, through several rotations."""
    rng = random.Random(seed)
    store, clock, factory = CrashingStore(), Clock(), PooledKeyFactory()
    ever_active: dict[str, datetime] = {}
    ever_stored: set[str] = set()
    for _ in range(40):
        clock.now += timedelta(seconds=rng.choice([0, 1, 5, 20, 30, 60]))
        store.attempts = 0
        store.crash_at = rng.choice([None, 1, 2, 3, 4])
        with contextlib.suppress(Crash):
            await reconcile(SPEC, store, clock=clock, new_key=factory)
        if store.private is None:
            continue
        state = state_from_json(store.private[SECRET_KEYS])
        ever_stored |= {k.kid for k in state.keys}
        # Nothing is ever published before its private half is stored. (A crash may leave
        # a just-removed key published a little longer: the safe direction.)
        if store.public is not None:
            assert published_kids(store) <= ever_stored
        # The active key is always published, once the public half exists.
        if store.public is not None and state.active and state.active.published_at:
            assert state.active.kid in published_kids(store)
        for key in state.keys:
            if key.state is KeyState.ACTIVE:
                ever_active.setdefault(key.kid, clock.now)
    # Converge: one clean reconcile at the end leaves a consistent, published state.
    store.crash_at = None
    outcome = await reconcile(SPEC, store, clock=clock, new_key=factory)
    assert outcome.ready.status
    assert published_kids(store) == private_kids(store)
    assert len(ever_active) >= 2


class SigningWatcher(CrashingStore):
    """Checks, at every private write, that the key in signing.kid is already published."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = 0

    async def write_private(self, data: Mapping[str, str]) -> WriteOutcome:
        signing = data.get("signing.kid")
        if self.public is not None and signing is not None:
            previous = self.private.get("signing.kid") if self.private else None
            if signing != previous:
                self.checked += 1
                assert signing in published_kids(self), "signing key not yet published"
        return await super().write_private(data)


async def test_a_rotate_request_never_signs_with_an_unpublished_key() -> None:
    """A failed public write leaves an unpublished next key; a rotate request right after
    must publish it before it can become the signing key."""
    store, clock, factory = SigningWatcher(), Clock(), PooledKeyFactory()
    await reconcile(SPEC, store, clock=clock, new_key=factory)
    clock.now += timedelta(seconds=60)  # a rotation: a new next key is made...
    store.attempts, store.crash_at = 0, 3  # ...and the public write after it fails
    with contextlib.suppress(Crash):
        await reconcile(SPEC, store, clock=clock, new_key=factory)
    stored = state_from_json((store.private or {})[SECRET_KEYS])
    assert stored.next is not None and stored.next.published_at is None
    store.crash_at = None
    clock.now += timedelta(seconds=1)
    outcome = await reconcile(SPEC, store, clock=clock, new_key=factory, rotate_request="now")
    assert outcome.active_kid == stored.next.kid
    assert store.checked >= 2
    assert "RotatedEarly" in [e.reason for e in outcome.events]


async def test_a_lost_secret_with_an_edited_configmap_trusts_no_public_key() -> None:
    store, clock = MemoryStore(), Clock()
    await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    old = published_kids(store)
    store.private = None
    assert store.public is not None
    store.public = {**store.public, CONFIGMAP_JWKS: store.public[CONFIGMAP_JWKS] + " "}
    outcome = await reconcile(SPEC, store, clock=clock, new_key=PooledKeyFactory())
    assert "edited by hand" in outcome.events[0].message
    assert not old & published_kids(store)
