"""A keyset's stored state and its ``keys.json`` form (the Secret's source of truth).

The state is what the planner reads and returns. Its serialised form carries the private
JWKs, so it only ever goes to a Secret or to a 0600 file. Parsing is strict and re-derives
every kid from its private key: a Secret edited by hand into something inconsistent must
be *refused* (and reported), never silently replaced by new keys, because regenerating
would break every token that is still outstanding.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from jwks_operator.core.guard import UnsafeJwksError, check_public_jwk
from jwks_operator.core.keys import KeyLoadError, KeyMaterial, load_material
from jwks_operator.core.timefmt import format_time, parse_time

STATE_FORMAT_VERSION: Final = 1


class KeyState(StrEnum):
    NEXT = "next"  # published, not yet signing
    ACTIVE = "active"  # signing (and published)
    RETIRED = "retired"  # published, no longer signing


class CorruptStateError(ValueError):
    """Stored state that cannot be trusted; the message never contains key material."""


@dataclass(frozen=True)
class StoredKey:
    """One key and its lifecycle timestamps (all aware UTC).

    ``published_at`` is set only once a JWKS holding the key has been written: activation
    is measured from it, so a publication that failed never counts as pre-publication.
    """

    material: KeyMaterial
    state: KeyState
    created_at: datetime
    published_at: datetime | None = None
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    removes_at: datetime | None = None

    @property
    def kid(self) -> str:
        return self.material.kid


@dataclass(frozen=True)
class OrphanKey:
    """A public key still being served whose private half was lost (a deleted Secret).

    Tokens it signed may be outstanding, so it stays in the JWKS until ``removes_at``
    rather than vanishing with the Secret; it can never sign again.
    """

    public_jwk: Mapping[str, Any]
    removes_at: datetime

    @property
    def kid(self) -> str:
        return str(self.public_jwk["kid"])


@dataclass(frozen=True)
class KeySetState:
    keys: tuple[StoredKey, ...] = ()
    orphans: tuple[OrphanKey, ...] = ()
    revoked: frozenset[str] = frozenset()
    """Every kid ever revoked: keeps a revoked key from being restored and reports it once."""
    last_rotate_request: str | None = None
    """The last ``jwks.dev/rotate`` value acted on, so each value rotates exactly once."""
    revision: int = 0
    """Bumped on every change of keys; shown in status so users can tell writes apart."""

    def with_state(self, state: KeyState) -> tuple[StoredKey, ...]:
        return tuple(key for key in self.keys if key.state is state)

    @property
    def active(self) -> StoredKey | None:
        return next((key for key in self.keys if key.state is KeyState.ACTIVE), None)

    @property
    def next(self) -> StoredKey | None:
        return next((key for key in self.keys if key.state is KeyState.NEXT), None)

    def find(self, kid: str) -> StoredKey | None:
        return next((key for key in self.keys if key.kid == kid), None)

    def mark_published(self, kids: frozenset[str], now: datetime) -> "KeySetState":
        """Record that a JWKS holding ``kids`` is now served: the start of pre-publication."""
        keys = tuple(
            replace(key, published_at=now) if key.published_at is None and key.kid in kids else key
            for key in self.keys
        )
        return self if keys == self.keys else replace(self, keys=keys)

    def settled(self, before: "KeySetState", delay: timedelta) -> "KeySetState":
        """Move every time the planner recorded (against ``before``) ``delay`` later.

        The planner stamps what it decides with the ``now`` it was given; the effect (a key
        that starts or stops signing, a key kept for its tokens) becomes visible only once
        the write carrying it is confirmed, ``delay`` later. Recorded times must be the
        visible ones or later, never earlier: a retirement stamped before the write that
        stopped the key signing would remove the key before ``retireAfter`` has passed
        for the last tokens it signed.
        """
        if delay <= timedelta(0):
            return self
        earlier = {key.kid: key for key in before.keys}
        known_orphans = {orphan.kid: orphan for orphan in before.orphans}

        def later(value: datetime | None, old: datetime | None) -> datetime | None:
            return value + delay if value is not None and value != old else value

        keys = []
        for key in self.keys:
            old = earlier.get(key.kid)
            keys.append(
                replace(
                    key,
                    created_at=key.created_at + delay if old is None else key.created_at,
                    activated_at=later(key.activated_at, old.activated_at if old else None),
                    retired_at=later(key.retired_at, old.retired_at if old else None),
                    removes_at=later(key.removes_at, old.removes_at if old else None),
                )
            )
        orphans = tuple(
            orphan
            if orphan.kid in known_orphans
            else replace(orphan, removes_at=orphan.removes_at + delay)
            for orphan in self.orphans
        )
        return replace(self, keys=tuple(keys), orphans=orphans)


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def state_to_json(state: KeySetState) -> str:
    """Serialise, private JWKs included: for Secrets and 0600 files only."""
    document = {
        "version": STATE_FORMAT_VERSION,
        "revision": state.revision,
        "revoked": sorted(state.revoked),
        "lastRotateRequest": state.last_rotate_request,
        "orphans": [
            {"publicJwk": dict(orphan.public_jwk), "removesAt": format_time(orphan.removes_at)}
            for orphan in state.orphans
        ],
        "keys": [
            {
                "kid": key.kid,
                "state": key.state.value,
                "algorithm": key.material.algorithm,
                "keySize": key.material.key_size,
                "createdAt": _time(key.created_at),
                "publishedAt": _time(key.published_at),
                "activatedAt": _time(key.activated_at),
                "retiredAt": _time(key.retired_at),
                "removesAt": _time(key.removes_at),
                "privateJwk": dict(key.material.private_jwk),
            }
            for key in state.keys
        ],
    }
    return json.dumps(document, indent=1, sort_keys=True)


def state_from_json(text: str | bytes) -> KeySetState:
    """Parse and verify ``keys.json``; raise CorruptStateError on anything inconsistent."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise CorruptStateError("keys.json is not valid JSON") from None
    if not isinstance(document, Mapping) or document.get("version") != STATE_FORMAT_VERSION:
        raise CorruptStateError(f"keys.json is not a version {STATE_FORMAT_VERSION} key state")
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list):
        raise CorruptStateError('keys.json has no "keys" list')
    keys = tuple(_parse_key(index, raw) for index, raw in enumerate(raw_keys))
    kids = [key.kid for key in keys]
    if len(set(kids)) != len(kids):
        raise CorruptStateError("keys.json holds the same kid twice")
    for state in (KeyState.ACTIVE, KeyState.NEXT):
        if sum(key.state is state for key in keys) > 1:
            raise CorruptStateError(f"keys.json holds more than one {state.value} key")
    revoked = document.get("revoked", [])
    rotate = document.get("lastRotateRequest")
    revision = document.get("revision", 0)
    if (
        not isinstance(revoked, list)
        or not all(isinstance(kid, str) for kid in revoked)
        or not (rotate is None or isinstance(rotate, str))
        or isinstance(revision, bool)
        or not isinstance(revision, int)
    ):
        raise CorruptStateError("keys.json has malformed bookkeeping fields")
    orphans = tuple(
        _parse_orphan(index, raw) for index, raw in enumerate(document.get("orphans", []))
    )
    if {orphan.kid for orphan in orphans} & set(kids):
        raise CorruptStateError("keys.json holds an orphan public key that is also a stored key")
    return KeySetState(
        keys=keys,
        orphans=orphans,
        revoked=frozenset(revoked),
        last_rotate_request=rotate,
        revision=revision,
    )


def _parse_orphan(index: int, raw: Any) -> OrphanKey:
    where = f"keys.json orphans[{index}]"
    try:
        public_jwk = dict(raw["publicJwk"])
        check_public_jwk(public_jwk, where)
        return OrphanKey(public_jwk=public_jwk, removes_at=parse_time(raw["removesAt"]))
    except UnsafeJwksError as error:
        raise CorruptStateError(str(error)) from None
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptStateError(f"{where} is malformed ({error.__class__.__name__})") from None


def _parse_key(index: int, raw: Any) -> StoredKey:
    where = f"keys.json keys[{index}]"
    if not isinstance(raw, Mapping):
        raise CorruptStateError(f"{where} is not an object")
    try:
        state = KeyState(raw["state"])
        key_size = raw.get("keySize")
        if key_size is not None and (isinstance(key_size, bool) or not isinstance(key_size, int)):
            raise ValueError("keySize")
        private_jwk = raw["privateJwk"]
        if not isinstance(private_jwk, Mapping):
            raise ValueError("privateJwk")
        material = load_material(private_jwk, raw["algorithm"], key_size)
        stored = StoredKey(
            material=material,
            state=state,
            created_at=parse_time(raw["createdAt"]),
            published_at=_optional_time(raw.get("publishedAt")),
            activated_at=_optional_time(raw.get("activatedAt")),
            retired_at=_optional_time(raw.get("retiredAt")),
            removes_at=_optional_time(raw.get("removesAt")),
        )
    except KeyLoadError as error:
        raise CorruptStateError(f"{where}: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptStateError(f"{where} is malformed ({error.__class__.__name__})") from None
    if raw.get("kid") != material.kid:
        raise CorruptStateError(f"{where}: kid does not match the key's RFC 7638 thumbprint")
    if state is KeyState.ACTIVE and stored.activated_at is None:
        raise CorruptStateError(f"{where}: active key without activatedAt")
    if state is KeyState.RETIRED and (stored.retired_at is None or stored.removes_at is None):
        raise CorruptStateError(f"{where}: retired key without retiredAt/removesAt")
    return stored


def _optional_time(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("timestamp")
    return parse_time(value)
