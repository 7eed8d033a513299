"""The lifecycle planner: the single place where rotation is decided.

``plan(spec, state, now, new_key=..., rotate_request=...)`` is a pure function. It
returns the next key state, the JWKS to publish, the events worth reporting and the time
at which something will next be due. Everything that touches the outside world (Secrets,
ConfigMaps, files, clocks, key generation) happens in the caller; keys are asked for
through the ``new_key`` factory so that tests can run thousands of plans cheaply.

States: ``next`` (published, not signing) -> ``active`` (signing) -> ``retired``
(published, not signing) -> gone. Revoked keys leave at once.

Invariants (each checked by tests/unit/test_lifecycle_properties.py at every step):

1. After any plan there is exactly one active key, and it is in the JWKS.
2. A key becomes active only once it has been *published* (``published_at``, set by the
   caller through ``KeySetState.mark_published`` after the JWKS write succeeded) for at
   least ``prePublish``. Exceptions, each reported by a Warning event: bootstrap
   (``Bootstrapped``), revocation of the active key (``ActiveKeyRevoked``), a rotate
   request that comes too early (``RotatedEarly``), and a keyset left with no key at all
   (``EmergencyKey``).
3. A key stays in the JWKS for at least ``retireAfter`` after it stops signing (the
   longer of the value in force when it retired and the current one).
4. The JWKS holds only public members, no ``oct`` key, no duplicate kid (guard.py).
5. Every kid is the RFC 7638 thumbprint of its key (keys.py).
6. Planning again at the same instant changes nothing and reports nothing.

Scheduling: the active key signs until ``max(activated_at + interval, next.published_at +
prePublish)``; that is, rotation waits for pre-publication rather than break invariant 2.
A new next key is made as soon as the previous one is promoted, so in steady state it is
published for a whole interval before it signs.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from jwks_operator.core.keys import KeyMaterial
from jwks_operator.core.publication import jwks_document
from jwks_operator.core.spec import KeySetSpec
from jwks_operator.core.state import KeySetState, KeyState, StoredKey
from jwks_operator.core.timefmt import format_time

KeyFactory = Callable[[str, int | None], KeyMaterial]
"""(algorithm, key_size) -> a new key. Real callers pass ``keys.generate_key``."""

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class LifecycleEvent:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    state: KeySetState
    jwks: dict[str, Any]
    events: tuple[LifecycleEvent, ...]
    next_change: datetime | None
    """When planning again will change something; None while a new key awaits publication
    (the caller publishes, calls ``mark_published`` and asks ``next_change`` again)."""

    @property
    def changed(self) -> bool:
        return bool(self.events)


class _Draft:
    """The planner's scratch space: the keys being edited and the events being told."""

    def __init__(self, spec: KeySetSpec, state: KeySetState, now: datetime, new_key: KeyFactory):
        self.spec = spec
        self.now = now
        self.new_key = new_key
        self.keys: list[StoredKey] = list(state.keys)
        self.orphans = list(state.orphans)
        self.revoked = set(state.revoked)
        self.last_rotate_request = state.last_rotate_request
        self.events: list[LifecycleEvent] = []

    def tell(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(LifecycleEvent(type_, reason, message))

    def find(self, state: KeyState) -> StoredKey | None:
        return next((key for key in self.keys if key.state is state), None)

    def swap(self, old: StoredKey, new: StoredKey | None) -> None:
        index = self.keys.index(old)
        if new is None:
            del self.keys[index]
        else:
            self.keys[index] = new

    def make(self, state: KeyState) -> StoredKey:
        material = self.new_key(self.spec.algorithm, self.spec.key_size)
        key = StoredKey(
            material=material,
            state=state,
            created_at=self.now,
            activated_at=self.now if state is KeyState.ACTIVE else None,
        )
        self.keys.append(key)
        return key

    def promote_next(self) -> StoredKey:
        """next -> active, active -> retired; returns the newly active key."""
        candidate = self.find(KeyState.NEXT)
        assert candidate is not None
        current = self.find(KeyState.ACTIVE)
        if current is not None:
            self.swap(
                current,
                replace(
                    current,
                    state=KeyState.RETIRED,
                    retired_at=self.now,
                    removes_at=self.now + self.spec.retire_after,
                ),
            )
        promoted = replace(candidate, state=KeyState.ACTIVE, activated_at=self.now)
        self.swap(candidate, promoted)
        return promoted


def activation_due(spec: KeySetSpec, state: KeySetState) -> datetime | None:
    """When the next key will be promoted; None while it is unpublished or absent."""
    active, upcoming = state.active, state.next
    if upcoming is None or upcoming.published_at is None:
        return None
    ready = upcoming.published_at + spec.pre_publish
    if active is None or active.activated_at is None:
        return ready
    return max(active.activated_at + spec.interval, ready)


def removal_due(spec: KeySetSpec, key: StoredKey) -> datetime:
    """A retired key's removal: never earlier than retireAfter, old or current, allows."""
    assert key.retired_at is not None and key.removes_at is not None
    return max(key.removes_at, key.retired_at + spec.retire_after)


def next_change(spec: KeySetSpec, state: KeySetState) -> datetime | None:
    """The earliest instant at which ``plan`` would change the state (without requests)."""
    moments = [removal_due(spec, key) for key in state.with_state(KeyState.RETIRED)]
    moments += [orphan.removes_at for orphan in state.orphans]
    due = activation_due(spec, state)
    if due is not None:
        moments.append(due)
    return min(moments) if moments else None


def publication_order(state: KeySetState) -> list[StoredKey]:
    """Active, next, then retired newest first: the JWKS order, also used by status."""
    order = [*state.with_state(KeyState.ACTIVE), *state.with_state(KeyState.NEXT)]
    order += sorted(
        state.with_state(KeyState.RETIRED),
        key=lambda key: (key.retired_at, key.kid),
        reverse=True,
    )
    return order


def public_jwks(state: KeySetState) -> dict[str, Any]:
    """The JWKS to serve: keys in publication order, then orphans (by kid)."""
    public = [key.material.public_jwk for key in publication_order(state)]
    public += [orphan.public_jwk for orphan in sorted(state.orphans, key=lambda o: o.kid)]
    return jwks_document(public)


def plan(
    spec: KeySetSpec,
    state: KeySetState,
    now: datetime,
    *,
    new_key: KeyFactory,
    rotate_request: str | None = None,
) -> Plan:
    """Decide the keyset's next state at ``now``. Pure: same inputs, same plan."""
    if now.tzinfo is None:
        raise ValueError("plan() needs a timezone-aware 'now'")
    draft = _Draft(spec, state, now, new_key)
    _revoke(draft, spec.revoked_keys)
    _drop_expired(draft)
    _replace_outdated_next(draft)
    _ensure_active(draft, state)
    _handle_rotate_request(draft, rotate_request)
    _rotate_on_schedule(draft)
    _ensure_next(draft)

    keys = tuple(draft.keys)
    new_state = KeySetState(
        keys=keys,
        orphans=tuple(draft.orphans),
        revoked=frozenset(draft.revoked),
        last_rotate_request=draft.last_rotate_request,
        revision=state.revision,
    )
    if new_state != state:
        new_state = replace(new_state, revision=state.revision + 1)
    return Plan(
        state=new_state,
        jwks=public_jwks(new_state),
        events=tuple(draft.events),
        next_change=next_change(spec, new_state),
    )


def _revoke(draft: _Draft, revoked_keys: frozenset[str]) -> None:
    """Withdraw revoked kids at once; each kid is reported once, known or not."""
    for kid in sorted(revoked_keys - draft.revoked):
        draft.revoked.add(kid)
        key = next((key for key in draft.keys if key.kid == kid), None)
        orphan = next((o for o in draft.orphans if o.kid == kid), None)
        if key is not None:
            draft.swap(key, None)
            if key.state is KeyState.ACTIVE:
                continue  # reported by _ensure_active, which must replace it
            draft.tell(
                "Warning", "KeyRevoked", f"{key.state.value} key {kid} revoked and withdrawn"
            )
        elif orphan is not None:
            draft.orphans.remove(orphan)
            draft.tell("Warning", "KeyRevoked", f"orphaned public key {kid} revoked and withdrawn")
        else:
            draft.tell(
                "Warning",
                "RevokedKeyUnknown",
                f"revokedKeys names {kid}, which this keyset does not hold",
            )


def _drop_expired(draft: _Draft) -> None:
    for key in list(draft.keys):
        if key.state is KeyState.RETIRED:
            due = removal_due(draft.spec, key)
            if due <= draft.now:
                draft.swap(key, None)
                draft.tell("Normal", "KeyRemoved", f"retired key {key.kid} left the JWKS")
            elif due != key.removes_at:
                draft.swap(key, replace(key, removes_at=due))
    for orphan in list(draft.orphans):
        if orphan.removes_at <= draft.now:
            draft.orphans.remove(orphan)
            draft.tell("Normal", "KeyRemoved", f"orphaned public key {orphan.kid} left the JWKS")


def _replace_outdated_next(draft: _Draft) -> None:
    """A next key made for an older algorithm/size never signed: swap it for a current one."""
    upcoming = draft.find(KeyState.NEXT)
    if upcoming is not None and upcoming.material.params != draft.spec.key_params:
        draft.swap(upcoming, None)
        draft.tell(
            "Normal",
            "NextKeyReplaced",
            f"next key {upcoming.kid} ({upcoming.material.algorithm}) never signed and was "
            f"replaced for the new key parameters ({draft.spec.algorithm})",
        )


def _ensure_active(draft: _Draft, before: KeySetState) -> None:
    if draft.find(KeyState.ACTIVE) is not None:
        return
    lost = before.active
    if draft.find(KeyState.NEXT) is not None:
        promoted = draft.promote_next()
        cause = f"active key {lost.kid} was revoked" if lost else "the keyset had no active key"
        draft.tell(
            "Warning",
            "ActiveKeyRevoked" if lost else "EarlyActivation",
            f"{cause}; next key {promoted.kid} signs from now without full pre-publication: "
            "verifiers holding an older JWKS may reject its tokens until they refresh",
        )
        return
    made = draft.make(KeyState.ACTIVE)
    if not before.keys and not before.revoked and not before.orphans and before.revision == 0:
        draft.tell(
            "Warning",
            "Bootstrapped",
            f"generated first active key {made.kid} ({draft.spec.algorithm}); it signs before "
            "pre-publication, as a new keyset must",
        )
    else:
        cause = f"active key {lost.kid} was revoked" if lost else "no usable key was left"
        draft.tell(
            "Warning",
            "EmergencyKey",
            f"{cause} and no next key was published; generated {made.kid}, which signs "
            "before pre-publication",
        )


def _handle_rotate_request(draft: _Draft, request: str | None) -> None:
    if request is None or request == draft.last_rotate_request:
        return
    draft.last_rotate_request = request
    upcoming = draft.find(KeyState.NEXT)
    if upcoming is None:
        draft.tell(
            "Normal", "RotationSkipped", "rotate request satisfied by the key promoted just now"
        )
        return
    ready = upcoming.published_at is not None and (
        upcoming.published_at + draft.spec.pre_publish <= draft.now
    )
    previous = draft.find(KeyState.ACTIVE)
    promoted = draft.promote_next()
    retired = f"; {previous.kid} retired" if previous else ""
    if ready:
        draft.tell(
            "Normal", "ManualRotation", f"rotate request: {promoted.kid} is now active{retired}"
        )
    else:
        draft.tell(
            "Warning",
            "RotatedEarly",
            f"rotate request: {promoted.kid} is now active{retired}, but it was published less "
            f"than prePublish ago: verifiers that cached the JWKS earlier may reject its tokens",
        )


def _rotate_on_schedule(draft: _Draft) -> None:
    snapshot = KeySetState(keys=tuple(draft.keys))
    due = activation_due(draft.spec, snapshot)
    if due is None or due > draft.now:
        return
    previous = draft.find(KeyState.ACTIVE)
    promoted = draft.promote_next()
    message = f"{promoted.kid} is now active"
    if previous is not None:
        until = format_time(draft.now + draft.spec.retire_after)
        message += f"; {previous.kid} retired, published until {until}"
    draft.tell("Normal", "Rotated", message)


def _ensure_next(draft: _Draft) -> None:
    if draft.find(KeyState.NEXT) is None:
        made = draft.make(KeyState.NEXT)
        draft.tell(
            "Normal", "NextKeyCreated", f"next key {made.kid} ({draft.spec.algorithm}) created"
        )
