"""A verifier's-eye view of keysets while the operator rotates them (and is killed).

Polls each keyset's ConfigMap, *then* its Secret, as fast as it can, and checks on every
round the two promises a rotation must keep, whatever happens to the operator:

1. private before public: every kid in the JWKS is in the Secret read just after, unless
   it already left the key set legitimately (a retired key past its removal time);
2. no token breaks early: one token is signed with every key that was ever active (from
   ``signing.pem``, as a signing service would); while its kid is published the token
   verifies, and its kid leaves the JWKS only once ``retireAfter`` has passed since the
   key stopped signing (``retiredAt`` as recorded in ``keys.json``).

Used by tests/operator/test_kill_restart.py and bench/operator_bench.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from jwks_operator.core.contract import CONFIGMAP_JWKS, SECRET_KEYS, SECRET_SIGNING_KID
from jwks_operator.core.timefmt import parse_time
from tests.operator.harness import decode_secret, sign_token, verifies
from tests.support.cluster import EmulatedCluster


@dataclass
class KeySetTrack:
    name: str
    namespace: str
    retire_after: float
    tokens: dict[str, str] = field(default_factory=dict)
    retired_at: dict[str, float] = field(default_factory=dict)
    removes_at: dict[str, float] = field(default_factory=dict)
    published: set[str] = field(default_factory=set)


class RotationObserver:
    def __init__(self, cluster: EmulatedCluster, keysets: Iterable[tuple[str, str, float]]) -> None:
        """``keysets``: (namespace, name, retireAfter seconds) of keysets already Ready."""
        self.cluster = cluster
        self.tracks = [KeySetTrack(name, ns, retire) for ns, name, retire in keysets]
        self.violations: list[str] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rotation-observer", daemon=True)

    def __enter__(self) -> RotationObserver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def active_keys_seen(self) -> int:
        return sum(len(track.tokens) for track in self.tracks)

    def _run(self) -> None:
        while not self._stop.is_set():
            for track in self.tracks:
                try:
                    self._check(track)
                except Exception as error:  # a failed read is not a violation; a bug is
                    if not isinstance(error, OSError):
                        self.violations.append(f"{track.name}: observer error {error!r}")
            self.rounds += 1
            time.sleep(0.02)

    def _check(self, track: KeySetTrack) -> None:
        configmap = self.cluster.find("v1/configmaps", f"{track.name}-jwks", track.namespace)
        checked_at = time.time()
        secret = self.cluster.find("v1/secrets", f"{track.name}-signing", track.namespace)
        if configmap is None or secret is None:
            self.violations.append(f"{track.name}: Secret or ConfigMap missing")
            return
        jwks = json.loads(configmap["data"][CONFIGMAP_JWKS])
        published = [key["kid"] for key in jwks["keys"]]
        data = decode_secret(secret)
        stored = json.loads(data[SECRET_KEYS])["keys"]
        for key in stored:
            if key["state"] == "retired":
                track.retired_at[key["kid"]] = parse_time(key["retiredAt"]).timestamp()
                track.removes_at[key["kid"]] = parse_time(key["removesAt"]).timestamp()
        stored_kids = {key["kid"] for key in stored}
        now = time.time()
        for kid in published:
            gone_legitimately = kid in track.removes_at and track.removes_at[kid] <= now
            if kid not in stored_kids and not gone_legitimately:
                self.violations.append(f"{track.name}: {kid} published but not stored")
        track.published |= set(published)

        active = data[SECRET_SIGNING_KID]
        if active not in track.tokens:
            track.tokens[active] = sign_token(data)[1]
        for kid, token in track.tokens.items():
            if kid in published:
                if not verifies(token, jwks):
                    self.violations.append(f"{track.name}: token of {kid} does not verify")
            elif kid not in track.retired_at:
                self.violations.append(f"{track.name}: {kid} unpublished while not retired")
            elif checked_at < track.retired_at[kid] + track.retire_after:
                self.violations.append(f"{track.name}: {kid} unpublished before retireAfter")
