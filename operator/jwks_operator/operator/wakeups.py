"""Waking a keyset's daemon early: on a spec or annotation change, or on drift of its objects.

Each JwksKeySet has one daemon that reconciles and then sleeps until its next scheduled
change. Watch events must wake it when something it depends on changed, and must *not*
wake it for the echoes of its own writes, or every reconciliation would cause another one
(and "exactly once per change" would be false). So:

- a JwksKeySet event wakes the daemon only when its generation, spec or
  ``jwks.dev/rotate`` annotation differs from what the last reconciliation used, or when
  ``status.keys`` lists a set of kids the daemon never wrote (what servers trust; other
  status changes and Kopf's finalizer bookkeeping do not);
- a Secret/ConfigMap event wakes it only for the keyset's current target names, and only
  when the object's resourceVersion is not one the store read or wrote itself; a
  ConfigMap labelled for the keyset under another name wakes it once per version (it
  reports such ConfigMaps: the server never serves them). A
  deletion always wakes it. The check is repeated when the daemon wakes up, because an
  event can overtake the read that makes its version known (at startup, typically).
"""

import asyncio
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jwks_operator.core.contract import KEYSET_LABEL, ROTATE_ANNOTATION
from jwks_operator.store.kubernetes import CONFIGMAP

_KNOWN_VERSIONS: Final = 32
"""How many recent versions (and vouched kid sets) each waker remembers per object: a
reconcile writes an object at most twice, so this spans many reconciles of echoes."""


def _remember(recent: list[Any], item: Any) -> None:
    """Append to a short bounded list. A list, not a ``deque(maxlen=...)``: a deque costs
    a 64-slot block (over 500 bytes) even when nearly empty, and there are four per
    keyset; at 10,000 keysets that was 20 MiB."""
    if item not in recent:
        recent.append(item)
        if len(recent) > _KNOWN_VERSIONS:
            del recent[0]


def change_key(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What, in a JwksKeySet, calls for a new reconciliation when it changes."""
    meta = body.get("metadata") or {}
    spec = json.dumps(body.get("spec") or {}, sort_keys=True, default=str)
    return (
        meta.get("generation"),
        hashlib.sha256(spec.encode()).hexdigest(),
        (meta.get("annotations") or {}).get(ROTATE_ANNOTATION),
    )


def listed_kids(status: Mapping[str, Any] | None) -> frozenset[str]:
    """The kids a keyset's ``status.keys`` lists: the keys servers may serve."""
    entries = (status or {}).get("keys")
    if not isinstance(entries, list):
        return frozenset()
    return frozenset(
        str(entry["kid"]) for entry in entries if isinstance(entry, Mapping) and "kid" in entry
    )


@dataclass(frozen=True)
class _Pending:
    reason: str
    kind: str | None = None
    name: str | None = None
    version: str | None = None  # None: always relevant (deletions, spec changes)


class Waker:
    """The wake-up line of one keyset's daemon; also the store's ``Tracker``."""

    def __init__(self, namespace: str, name: str, uid: str) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.seen: tuple[Any, ...] | None = None
        self.targets: dict[str, str] = {}
        self._claims: list[tuple[str, str]] = []
        self._vouched: list[frozenset[str]] = []
        """The kid sets this daemon wrote to ``status.keys`` (recorded before each write)."""
        self._event = asyncio.Event()
        self._pending: list[_Pending] = []
        self._known: dict[tuple[str, str], list[str]] = {}
        self.stopping = False
        self.owned = True
        """Whether this process reconciles the keyset (its labels match ``--keyset-selector``)."""
        self.departed = False
        """The keyset left the watch (deleted, or relabelled into another shard's selector)."""

    # -- the store's Tracker protocol
    def observed(self, kind: str, name: str, resource_version: str) -> None:
        _remember(self._known.setdefault((kind, name), []), resource_version)

    def _known_version(self, kind: str, name: str, version: str) -> bool:
        return version in self._known.get((kind, name), ())

    def vouched(self, kids: frozenset[str]) -> None:
        """``status.keys`` is about to list exactly ``kids`` (written by this daemon)."""
        _remember(self._vouched, kids)

    # -- watch events
    def keyset_event(self, body: Mapping[str, Any]) -> bool:
        if self.seen is None:
            return False
        if change_key(body) != self.seen:
            self._wake(_Pending("keyset changed"))
            return True
        status = body.get("status")
        if (
            self._vouched
            and isinstance(status, Mapping)
            and status
            and listed_kids(status) not in self._vouched
        ):
            # status.keys is what servers trust: rewrite it when someone else changed it. A
            # late event of our own carries a kid set we wrote, and the daemon never writes
            # an empty one, so a wiped list wakes it. An event with no status at all is the
            # keyset as created, before our first write (a late ADDED event); a status
            # removed as a whole is rewritten at the next resync, and until then servers
            # serve none of its keys (they fail closed).
            self._wake(_Pending("status edited"))
            return True
        return False

    def object_event(self, kind: str, name: str, event_type: str | None, version: str) -> bool:
        if self.targets.get(kind) != name:
            return self._claim_event(kind, name, event_type, version)
        if event_type == "DELETED":
            self._wake(_Pending(f"{kind} {name} deleted"))
            return True
        if version and self._known_version(kind, name, version):
            return False
        self._wake(_Pending(f"{kind} {name} changed", kind, name, version))
        return True

    def _claim_event(self, kind: str, name: str, event_type: str | None, version: str) -> bool:
        """Another ConfigMap labelled for this keyset (planted or relabelled): the daemon
        reports it (``UntrustedConfigMap``) and reports it gone; each version wakes once."""
        if kind != CONFIGMAP or not self.targets or (name, version) in self._claims:
            return False
        _remember(self._claims, (name, version))
        gone = " deleted" if event_type == "DELETED" else ""
        self._wake(_Pending(f"{kind} {name} claims the keyset{gone}"))
        return True

    def poke(self, reason: str) -> None:
        self._wake(_Pending(reason))

    def stop(self) -> None:
        self.stopping = True
        self._event.set()

    def depart(self) -> None:
        """Stop for good: the keyset is no longer this process's to reconcile."""
        self.departed = True
        self.stop()

    def _wake(self, pending: _Pending) -> None:
        self._pending.append(pending)
        self._event.set()

    # -- the daemon's side
    def take(self) -> list[str]:
        """The reasons to reconcile now, minus echoes that became known meanwhile."""
        reasons: list[str] = []
        for item in self._pending:
            stale = (
                item.kind is not None
                and item.name is not None
                and item.version
                and self._known_version(item.kind, item.name, item.version)
            )
            if not stale and item.reason not in reasons:
                reasons.append(item.reason)
        self._pending.clear()
        if not self.stopping:
            self._event.clear()
        return reasons

    async def wait(self, seconds: float | None) -> bool:
        """Sleep until woken (True) or until ``seconds`` have passed (False)."""
        if seconds is not None and seconds <= 0:
            return self._event.is_set()
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class Wakers:
    """Every running daemon's waker, by (namespace, keyset name)."""

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, str], Waker] = {}

    def register(self, namespace: str, name: str, uid: str) -> Waker:
        waker = Waker(namespace, name, uid)
        self._by_name[(namespace, name)] = waker
        return waker

    def unregister(self, waker: Waker) -> None:
        if self._by_name.get((waker.namespace, waker.name)) is waker:
            del self._by_name[(waker.namespace, waker.name)]

    def get(self, namespace: str, name: str) -> Waker | None:
        return self._by_name.get((namespace, name))

    def object_changed(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        """A change of one of the operator's Secrets or ConfigMaps (the cache's listener):
        offered to the daemon of the keyset its label names, if that keyset runs here."""
        meta = obj.get("metadata") or {}
        keyset = (meta.get("labels") or {}).get(KEYSET_LABEL)
        waker = self.get(str(meta.get("namespace") or ""), keyset) if keyset else None
        if waker is not None:
            name = str(meta.get("name") or "")
            waker.object_event(kind, name, event_type, str(meta.get("resourceVersion") or ""))

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[Waker]:
        return iter(list(self._by_name.values()))
