"""Watching a running standalone instance from outside, and checking the lifecycle invariants.

The observer polls two things a user can see: the JWKS over HTTP and the state file on disk
(written atomically, so every read is a whole, committed state). It keeps what it saw and
checks, at the end, the design's invariants across every restart:

1. every committed state has exactly one active key, and it is in the JWKS served then;
2. a key signs only after it was published for ``prePublish`` (the bootstrap key excepted);
3. a key that signed stays in every JWKS served until ``retireAfter`` after it stopped
   signing, and a token it signed verifies (PyJWT) against each of those JWKS;
4. the JWKS holds public members only, no duplicate kid, and kid = RFC 7638 thumbprint.
"""

from __future__ import annotations

import json
import time
import urllib.error
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt

from jwks_operator.core.keys import KeyMaterial
from jwks_operator.core.state import CorruptStateError, KeySetState, KeyState
from jwks_operator.core.tokens import sign_token
from tests.standalone.support import check_public_jwks, http_get, read_state

READ_MARGIN = 0.5
"""Seconds by which a key seen active may have been retired before the read (the reconcile
that retires it takes ``now`` before writing); only used when its ``retiredAt`` was never seen."""


@dataclass
class JwksSighting:
    started: float
    finished: float
    document: dict[str, Any]
    active_after: str | None


@dataclass
class KeyHistory:
    material: KeyMaterial
    token: str
    first_active_seen: float
    last_active_seen: float
    retired_at: float | None = None


@dataclass
class LifecycleObserver:
    state_dir: Path
    pre_publish: timedelta
    retire_after: timedelta
    namespace: str = "default"
    name: str = "demo"
    sightings: list[JwksSighting] = field(default_factory=list)
    keys: dict[str, KeyHistory] = field(default_factory=dict)
    states: list[KeySetState] = field(default_factory=list)
    failed_fetches: int = 0

    def read_state(self) -> KeySetState | None:
        try:
            state = read_state(self.state_dir, self.namespace, self.name)
        except FileNotFoundError:
            return None
        except CorruptStateError as error:  # would mean a torn write: the worst outcome
            raise AssertionError(f"state file is not a whole, valid state: {error}") from None
        now = time.time()
        active = state.active
        assert active is not None, "a committed state without an active key"
        history = self.keys.get(active.kid)
        if history is None:
            token = sign_token(active.material, {"sub": "observer", "exp": int(now) + 3600})
            self.keys[active.kid] = KeyHistory(active.material, token, now, now)
        else:
            history.last_active_seen = now
        for key in state.with_state(KeyState.RETIRED):
            if key.kid in self.keys and key.retired_at is not None:
                self.keys[key.kid].retired_at = key.retired_at.timestamp()
        if not self.states or self.states[-1] != state:
            self.states.append(state)
        return state

    def observe(self, url: str) -> bool:
        """One HTTP fetch (if the server is up) followed by one state read."""
        started = time.time()
        try:
            status, _, body = http_get(url)
        except (urllib.error.URLError, OSError):
            self.failed_fetches += 1
            self.read_state()
            return False
        finished = time.time()
        state = self.read_state()
        if status != 200:
            self.failed_fetches += 1
            return False
        document = json.loads(body)
        check_public_jwks(document)
        active = state.active.kid if state is not None and state.active is not None else None
        self.sightings.append(JwksSighting(started, finished, document, active))
        return True

    def removal_floor(self, history: KeyHistory) -> float:
        """The earliest moment the key may leave the JWKS."""
        retire_after = self.retire_after.total_seconds()
        if history.retired_at is not None:
            return history.retired_at + retire_after
        return history.last_active_seen - READ_MARGIN + retire_after

    def check(self) -> dict[str, int]:
        """Assert every invariant over everything seen; return counts for the report."""
        required_checks = 0
        for sighting in self.sightings:
            kids = {key["kid"]: key for key in sighting.document["keys"]}
            if sighting.active_after is not None:
                assert sighting.active_after in kids, "the active key was not in the JWKS"
            for kid, history in self.keys.items():
                if history.first_active_seen > sighting.started:
                    continue  # not yet known to be active when this JWKS was fetched
                if sighting.finished >= self.removal_floor(history):
                    continue
                assert kid in kids, (
                    f"key {kid} left the JWKS before retireAfter had passed since it "
                    "stopped signing"
                )
                public = jwt.PyJWK(kids[kid])
                claims = jwt.decode(history.token, public.key, algorithms=[kids[kid]["alg"]])
                assert claims["sub"] == "observer"
                required_checks += 1
        # A key made active directly (activatedAt == createdAt) skipped pre-publication:
        # only the bootstrap key may do that (an emergency key would be a lost next key).
        direct = set()
        for state in self.states:
            for key in state.keys:
                if key.activated_at is None:
                    continue
                if key.activated_at == key.created_at:
                    direct.add(key.kid)
                    continue
                assert key.published_at is not None, f"{key.kid} signs but was never published"
                assert key.activated_at - key.published_at >= self.pre_publish, (
                    f"{key.kid} signed after only {key.activated_at - key.published_at} "
                    "of pre-publication"
                )
        assert len(direct) <= 1, f"keys that signed without pre-publication: {sorted(direct)}"
        return {
            "jwks_fetches": len(self.sightings),
            "failed_fetches": self.failed_fetches,
            "keys_active": len(self.keys),
            "retention_checks": required_checks,
            "states": len(self.states),
        }
