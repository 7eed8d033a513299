"""One reconciliation of one keyset: read, plan, write private, write public, report.

Shared by the Kubernetes operator (a Kopf handler calls it) and standalone mode (a
timer calls it), so both follow exactly the same crash-safe sequence:

1. read what the store holds; refuse corrupt or foreign state (no writes at all);
2. make the keys the plan needs (off the event loop), then plan (pure) at a fresh ``now``;
3. write the private half (Secret / state file): every key is safe before it is public;
4. write the public half (ConfigMap / published file) from the same state;
5. settle the times the plan recorded to when the write was confirmed, mark newly
   published keys, and write the private half again if that changed.

A crash between any two steps leaves a state that step 1 accepts on restart: at worst a
key is re-published, or its pre-publication starts a little later (the safe direction).
"""

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from jwks_operator.core.contract import CONFIGMAP_JWKS
from jwks_operator.core.guard import UnsafeJwksError, parse_public_jwks
from jwks_operator.core.keys import KeyMaterial, generate_key
from jwks_operator.core.lifecycle import (
    KeyFactory,
    LifecycleEvent,
    Plan,
    activation_due,
    next_change,
    plan,
    public_jwks,
)
from jwks_operator.core.publication import configmap_data
from jwks_operator.core.readiness import Facts, verdicts
from jwks_operator.core.report import key_summaries
from jwks_operator.core.secretdata import secret_data
from jwks_operator.core.spec import KeySetSpec
from jwks_operator.core.state import (
    CorruptStateError,
    KeySetState,
    KeyState,
    OrphanKey,
    state_from_json,
)
from jwks_operator.core.timefmt import format_time
from jwks_operator.store.base import KeySetStore, WriteOutcome


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Notice:
    event: LifecycleEvent
    each_time: bool
    """Post it on every reconciliation, not only when the Ready condition changes."""


@dataclass(frozen=True)
class Outcome:
    """What happened, in the terms status and events need; never holds key material."""

    ready: Condition
    rotating: Condition
    events: tuple[LifecycleEvent, ...] = ()
    active_kid: str | None = None
    next_kid: str | None = None
    next_change: datetime | None = None
    next_rotation: datetime | None = None
    revision: int | None = None
    keys: list[dict[str, Any]] = field(default_factory=list)
    wrote: bool = False
    notices: tuple[Notice, ...] = ()
    """The Warning Events of the Ready chain (``readiness``), first the condition's."""


def _ready(facts: Facts) -> tuple[Condition, tuple[Notice, ...]]:
    found = verdicts(facts)
    first = found[0]
    notices = tuple(
        Notice(LifecycleEvent("Warning", v.reason, v.message), v.each_time)
        for v in found
        if v.warning
    )
    return Condition("Ready", first.ready, first.reason, first.message), notices


def refused(facts: Facts) -> Outcome:
    """An outcome for a keyset that could not be reconciled: the last good JWKS stays."""
    ready, notices = _ready(facts)
    assert not ready.status, ready
    return Outcome(
        ready=ready,
        rotating=Condition("Rotating", False, ready.reason, "not reconciled"),
        notices=notices,
    )


async def reconcile(
    spec: KeySetSpec,
    store: KeySetStore,
    *,
    clock: Callable[[], datetime],
    rotate_request: str | None = None,
    new_key: KeyFactory = generate_key,
) -> Outcome:
    stored = await store.read()
    if stored.conflict is not None:
        return refused(Facts(conflict=stored.conflict))
    events: list[LifecycleEvent] = []
    now = clock()
    if stored.private_state is None:
        trusted = stored.public_data if stored.public_intact else None
        state, recovered = _recover_public_keys(spec, trusted, now)
        if stored.public_data and not stored.public_intact:
            events.append(
                LifecycleEvent(
                    "Warning",
                    "SecretLost",
                    f"private key state {spec.secret_name} is gone and {spec.config_map_name} "
                    "was edited by hand, so its public keys are not trusted and not kept; a new "
                    "active key is generated",
                )
            )
        if recovered:
            events.append(
                LifecycleEvent(
                    "Warning",
                    "SecretLost",
                    f"private key state {spec.secret_name} is gone; {recovered} public key(s) "
                    f"stay published until {format_time(now + spec.retire_after)} and a new "
                    "active key is generated",
                )
            )
    else:
        try:
            state = await asyncio.to_thread(state_from_json, stored.private_state)
        except CorruptStateError as error:
            return refused(
                Facts(
                    corrupt_secret=f"{spec.secret_name}: {error}; keys are neither regenerated "
                    "nor unpublished until it is repaired or deleted"
                )
            )

    state, now = await _catch_up_publication(spec, store, state, clock, now)
    baseline = state if stored.private_state is not None else KeySetState()
    result, now = await _plan_with_keys_made(spec, state, clock, new_key, rotate_request)
    events.extend(result.events)
    wrote = await store.write_private(await asyncio.to_thread(secret_data, result.state))
    # What the planner decided at ``now`` is visible only now that the write is confirmed:
    # stamp it with this later time (a key retires when signing.pem stopped holding it).
    settled = result.state.settled(baseline, clock() - now)
    state, public_outcome = await _publish(
        spec, store, settled, result.jwks, clock, stored_as=result.state
    )
    repaired = None
    if stored.private_state is not None and public_outcome is not WriteOutcome.UNCHANGED:
        damaged = stored.public_data is None or not stored.public_intact
        if damaged and not result.events:
            repaired = (
                f"{spec.config_map_name} was "
                f"{'missing' if stored.public_data is None else 'edited'}; "
                "rebuilt from the private key state"
            )
    facts = Facts(repaired=repaired, untrusted_configmaps=stored.untrusted_configmaps)
    return _outcome(spec, state, tuple(events), wrote is not WriteOutcome.UNCHANGED, facts)


async def _publish(
    spec: KeySetSpec,
    store: KeySetStore,
    state: KeySetState,
    jwks: dict[str, Any],
    clock: Callable[[], datetime],
    *,
    stored_as: KeySetState | None = None,
) -> tuple[KeySetState, WriteOutcome]:
    """Write the public half of ``state`` (already stored), then record its publication.

    The trust list (the kids a server may serve: the keyset's ``status.keys`` on a
    cluster) is written before the JWKS, so a new key is never in a ConfigMap that no
    status vouches for; the key is *servable* once both writes are confirmed, and its
    pre-publication is measured from then. ``stored_as`` is what the private half holds
    when it differs from ``state`` (times settled after the write): it is written again.
    The next-change annotation is computed as if the marking had already happened: it is
    at most a few milliseconds early, which only makes caches expire sooner.
    """
    kids = frozenset(key["kid"] for key in jwks["keys"])
    await store.write_trust(key_summaries(spec, state))
    outcome = await store.write_public(
        configmap_data(spec, jwks), next_change(spec, state.mark_published(kids, clock()))
    )
    marked = state.mark_published(kids, clock())
    if marked != (stored_as if stored_as is not None else state):
        await store.write_private(await asyncio.to_thread(secret_data, marked))
    return marked, outcome


async def _plan_with_keys_made(
    spec: KeySetSpec,
    state: KeySetState,
    clock: Callable[[], datetime],
    new_key: KeyFactory,
    rotate_request: str | None,
) -> tuple[Plan, datetime]:
    """Plan with every new key generated *before* the clock is read for the decision.

    Generating inside the plan (RSA-4096 takes about 0.4 s, more under load) would put
    the generation between "decided" and "written": the old key would keep signing for
    that long after the time recorded as its retirement. So the plan is tried with the
    keys made so far; when it needs one more, the key is made (off the event loop) and
    the plan is made again from a fresh reading of the clock. Planning is pure, so a
    retry is free of side effects; a key made for a plan that no longer needs it is
    simply never stored.
    """
    pool: list[KeyMaterial] = []
    while True:
        now = clock()
        try:
            made = plan(spec, state, now, new_key=_Pool(pool), rotate_request=rotate_request)
            return made, now
        except _NeedKey:
            pool.append(await asyncio.to_thread(new_key, spec.algorithm, spec.key_size))


class _NeedKey(Exception):
    """The plan needs one more key than has been made."""


class _Pool:
    """A key factory handing out keys already made, in order; raises when it runs out."""

    def __init__(self, keys: list[KeyMaterial]) -> None:
        self._keys = iter(keys)

    def __call__(self, algorithm: str, key_size: int | None) -> KeyMaterial:
        material = next(self._keys, None)
        if material is None or material.params != (algorithm, key_size):
            raise _NeedKey
        return material


async def _catch_up_publication(
    spec: KeySetSpec,
    store: KeySetStore,
    state: KeySetState,
    clock: Callable[[], datetime],
    now: datetime,
) -> tuple[KeySetState, datetime]:
    """Publish keys a previous run stored but never published, before planning.

    Only a crash or a failed public write leaves such keys. Publishing them first means
    the planner never sees an unpublished next key, so no request can promote a key into
    ``signing.pem`` before any verifier could know it. Skipped while a revocation is
    pending, so that a revoked key is not published again on its way out.
    """
    pending = [key.kid for key in state.keys if key.published_at is None]
    stored_kids = {key.kid for key in state.keys} | {orphan.kid for orphan in state.orphans}
    if not pending or spec.revoked_keys & stored_kids:
        return state, now
    state, _ = await _publish(spec, store, state, public_jwks(state), clock)
    return state, clock()


def _recover_public_keys(
    spec: KeySetSpec, public_data: Mapping[str, str] | None, now: datetime
) -> tuple[KeySetState, int]:
    """After a lost Secret: keep serving the public keys verifiers may still need."""
    if not public_data or CONFIGMAP_JWKS not in public_data:
        return KeySetState(), 0
    try:
        jwks = parse_public_jwks(public_data[CONFIGMAP_JWKS])
    except UnsafeJwksError:
        return KeySetState(), 0
    orphans = tuple(
        OrphanKey(public_jwk=dict(jwk), removes_at=now + spec.retire_after)
        for jwk in jwks["keys"]
        if jwk["kid"] not in spec.revoked_keys
    )
    return KeySetState(orphans=orphans), len(orphans)


def _outcome(
    spec: KeySetSpec,
    state: KeySetState,
    events: tuple[LifecycleEvent, ...],
    wrote: bool,
    facts: Facts,
) -> Outcome:
    active, upcoming = state.active, state.next
    rotation = activation_due(spec, state)
    draining = [key.kid for key in state.keys if key.state is KeyState.RETIRED]
    draining += [orphan.kid for orphan in state.orphans]
    ready_message = f"active key {active.kid if active else '-'}"
    if upcoming is not None:
        ready_message += f", next key {upcoming.kid}"
        if rotation:
            ready_message += f" activates at {format_time(rotation)}"
    if state.orphans:
        ready_message += (
            f"; {len(state.orphans)} public key(s) of a lost Secret stay published until "
            f"{format_time(max(orphan.removes_at for orphan in state.orphans))}"
        )
    rotating = Condition(
        "Rotating",
        bool(draining),
        "Draining" if draining else "Steady",
        (
            f"{len(draining)} key(s) no longer signing stay published: {', '.join(draining)}"
            if draining
            else "no retired key is published"
        ),
    )
    ready, notices = _ready(replace(facts, summary=ready_message))
    return Outcome(
        ready=ready,
        notices=notices,
        rotating=rotating,
        events=events,
        active_kid=active.kid if active else None,
        next_kid=upcoming.kid if upcoming else None,
        next_change=next_change(spec, state),
        next_rotation=rotation,
        revision=state.revision,
        keys=key_summaries(spec, state),
        wrote=wrote,
    )
