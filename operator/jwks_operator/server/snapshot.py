"""The served state: an immutable snapshot of keyset entries, and the store that swaps it.

Readers (the request handler) take ``store.snapshot`` and use it without locks: a snapshot
is never mutated; a change builds a new one (copying the entry table, rebuilding only the
changed entry) and publishes it with one attribute assignment. An entry is built from a
ConfigMap's data by ``servable`` (what may be served) and ``representation`` (the bytes,
gzip and ETags), once per change, so a request costs a lookup.
A refused document is logged without key material, counted, and the previous good entry is
kept (or, for a keyset never seen good, an entry that answers 503).

Public API (also used by standalone mode):

``SnapshotStore(*, build_verifier=verification.build_verifier, metrics=None, clock=time.time)``
    ``.snapshot -> Snapshot``; ``.apply(namespace, name, data, annotations, *,
    modified=None) -> ApplyResult``; ``.remove(namespace, name) -> bool``;
    ``.mark_ready()``; ``.batch()`` (context manager: many applies/removes, one swap).
    Thread-safe: writers serialise on a lock, so callers may run applies in
    ``asyncio.to_thread`` while the event loop keeps reading.
``Snapshot``: ``entries`` (``(namespace, name) -> KeySetEntry``), ``ready``,
    ``generation``, ``updated_at``, ``total_bytes``.
``KeySetEntry``: ``jwks`` / ``openid`` (``Document`` or None), ``unavailable`` (why a
    keyset has no servable JWKS), ``next_change`` (epoch seconds or None), ``verifier``,
    ``verification`` (raw ``verification.json``), ``refused`` (latest ``Refusal`` or None).
"""

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from jwks_operator.core.contract import (
    CONFIGMAP_JWKS,
    CONFIGMAP_OPENID,
    CONFIGMAP_VERIFICATION,
    NEXT_CHANGE_ANNOTATION,
)
from jwks_operator.server.metrics import Metrics, SnapshotFigures
from jwks_operator.server.representation import Document
from jwks_operator.server.servable import (
    Refusal,
    RefusedDocument,
    next_change,
    servable_jwks,
    servable_openid,
)
from jwks_operator.verification import build_verifier as build_token_verifier

logger = logging.getLogger(__name__)

KeySetKey = tuple[str, str]

UNAVAILABLE_NO_KEYS = "the keyset has no published keys yet"
UNAVAILABLE_REFUSED = "the keyset's published JWKS was refused by the server's guard"


class VerifierBuilder(Protocol):
    """Builds what ``/verify`` checks tokens with, once per change (in a worker thread)."""

    def __call__(self, jwks: Mapping[str, Any], verification_json: str | None, /) -> object: ...


@dataclass(frozen=True, slots=True)
class KeySetEntry:
    namespace: str
    name: str
    jwks: Document | None
    openid: Document | None
    unavailable: str | None
    key_count: int
    next_change: float | None
    verification: str | None
    verifier: object | None
    fingerprint: bytes
    refused: Refusal | None = None

    @property
    def size(self) -> int:
        return (self.jwks.size if self.jwks else 0) + (self.openid.size if self.openid else 0)


@dataclass(frozen=True, slots=True)
class Snapshot:
    entries: Mapping[KeySetKey, KeySetEntry]
    ready: bool = False
    generation: int = 0
    updated_at: float = 0.0
    total_bytes: int = 0


class ApplyResult(StrEnum):
    ADDED = "added"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


def fingerprint(data: Mapping[str, str], annotations: Mapping[str, str]) -> bytes:
    """Identity of everything an entry is built from, to skip rebuilding unchanged input."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (
        data.get(CONFIGMAP_JWKS),
        data.get(CONFIGMAP_OPENID),
        data.get(CONFIGMAP_VERIFICATION),
        annotations.get(NEXT_CHANGE_ANNOTATION),
    ):
        encoded = b"\xff" if part is None else part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return digest.digest()


def build_entry(
    namespace: str,
    name: str,
    data: Mapping[str, str],
    annotations: Mapping[str, str],
    *,
    modified: float,
    build_verifier: VerifierBuilder | None = None,
    print_: bytes | None = None,
    previous: KeySetEntry | None = None,
) -> KeySetEntry:
    """Guard and pre-encode one keyset's documents; raise RefusedDocument if unsafe."""
    raw_jwks = data.get(CONFIGMAP_JWKS)
    jwks_doc: Document | None = None
    unavailable: str | None = UNAVAILABLE_NO_KEYS
    key_count = 0
    parsed: dict[str, Any] | None = None
    if raw_jwks is not None:
        parsed, text = servable_jwks(raw_jwks, namespace, name)
        key_count = len(parsed["keys"])
        if key_count:
            jwks_doc = Document.encode(text, modified, previous.jwks if previous else None)
            unavailable = None
    openid_doc = None
    raw_openid = data.get(CONFIGMAP_OPENID)
    if raw_openid is not None:
        openid_doc = Document.encode(
            servable_openid(raw_openid), modified, previous.openid if previous else None
        )
    verification = data.get(CONFIGMAP_VERIFICATION)
    verifier: object | None = None
    if build_verifier is not None and parsed is not None:
        try:
            verifier = build_verifier(parsed, verification)
        except Exception as error:  # a verifier bug must not stop the JWKS being served
            logger.warning(
                "keyset %s/%s: building its verifier failed (%s)",
                namespace,
                name,
                error.__class__.__name__,
            )
    return KeySetEntry(
        namespace=namespace,
        name=name,
        jwks=jwks_doc,
        openid=openid_doc,
        unavailable=unavailable,
        key_count=key_count,
        next_change=next_change(namespace, name, annotations),
        verification=verification,
        verifier=verifier,
        fingerprint=print_ if print_ is not None else fingerprint(data, annotations),
    )


class StoreBatch:
    """Changes collected under the store's lock and published as one snapshot."""

    def __init__(self, store: "SnapshotStore", base: Snapshot) -> None:
        self._store = store
        self._base = base
        self._entries: dict[KeySetKey, KeySetEntry] | None = None
        self._bytes = base.total_bytes

    @property
    def changed(self) -> bool:
        return self._entries is not None

    def _writable(self) -> dict[KeySetKey, KeySetEntry]:
        if self._entries is None:
            self._entries = dict(self._base.entries)
        return self._entries

    def _current(self) -> Mapping[KeySetKey, KeySetEntry]:
        return self._entries if self._entries is not None else self._base.entries

    def apply(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str],
        *,
        modified: float | None = None,
    ) -> ApplyResult:
        key = (namespace, name)
        previous = self._current().get(key)
        print_ = fingerprint(data, annotations)
        if previous is not None and previous.fingerprint == print_:
            return ApplyResult.UNCHANGED
        now = self._store.clock()
        try:
            entry = build_entry(
                namespace,
                name,
                data,
                annotations,
                modified=now if modified is None else modified,
                build_verifier=self._store.build_verifier,
                print_=print_,
                previous=previous,
            )
        except RefusedDocument as error:
            # The message names members, never values: safe to log.
            logger.warning("refused ConfigMap content for keyset %s/%s: %s", namespace, name, error)
            self._store.metrics.count_refused(error.reason)
            if previous is not None and previous.jwks is not None:
                kept = replace(previous, fingerprint=print_, refused=error.reason)
            else:
                kept = _unavailable_entry(namespace, name, now, print_, error.reason)
            self._put(key, previous, kept)
            return ApplyResult.REFUSED
        self._put(key, previous, entry)
        return ApplyResult.ADDED if previous is None else ApplyResult.CHANGED

    def remove(self, namespace: str, name: str) -> bool:
        key = (namespace, name)
        previous = self._current().get(key)
        if previous is None:
            return False
        del self._writable()[key]
        self._bytes -= previous.size
        return True

    def _put(self, key: KeySetKey, previous: KeySetEntry | None, entry: KeySetEntry) -> None:
        self._writable()[key] = entry
        self._bytes += entry.size - (previous.size if previous else 0)

    def result(self, ready: bool, now: float) -> Snapshot:
        assert self._entries is not None
        return Snapshot(
            entries=MappingProxyType(self._entries),
            ready=ready,
            generation=self._base.generation + 1,
            updated_at=now,
            total_bytes=self._bytes,
        )


def _unavailable_entry(
    namespace: str, name: str, now: float, print_: bytes, reason: Refusal
) -> KeySetEntry:
    return KeySetEntry(
        namespace=namespace,
        name=name,
        jwks=None,
        openid=None,
        unavailable=UNAVAILABLE_REFUSED,
        key_count=0,
        next_change=None,
        verification=None,
        verifier=None,
        fingerprint=print_,
        refused=reason,
    )


class SnapshotStore:
    """Owner of the current snapshot; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        build_verifier: VerifierBuilder | None = build_token_verifier,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.build_verifier = build_verifier
        self.metrics = metrics if metrics is not None else Metrics()
        self.clock = clock
        self._lock = threading.Lock()
        self.snapshot = Snapshot(entries=MappingProxyType({}), updated_at=clock())
        self.metrics.observe_snapshot(self.figures)

    def figures(self) -> SnapshotFigures:
        """What the snapshot gauges of ``/metrics`` show, read at scrape time."""
        snapshot = self.snapshot
        return SnapshotFigures(
            keysets=len(snapshot.entries),
            bytes=snapshot.total_bytes,
            refused=sum(1 for entry in snapshot.entries.values() if entry.refused),
            updated_at=snapshot.updated_at,
            ready=snapshot.ready,
        )

    @contextmanager
    def batch(self) -> Iterator[StoreBatch]:
        """Apply many changes and publish them together (one copy of the entry table)."""
        with self._lock:
            batch = StoreBatch(self, self.snapshot)
            yield batch
            if batch.changed:
                self.snapshot = batch.result(self.snapshot.ready, self.clock())

    def apply(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str],
        *,
        modified: float | None = None,
    ) -> ApplyResult:
        """Build the keyset's entry from its ConfigMap data and publish it if it changed."""
        with self.batch() as batch:
            return batch.apply(namespace, name, data, annotations, modified=modified)

    def remove(self, namespace: str, name: str) -> bool:
        with self.batch() as batch:
            return batch.remove(namespace, name)

    def mark_ready(self) -> None:
        """The first full load is in: unknown keysets are now 404 rather than 503."""
        with self._lock:
            if not self.snapshot.ready:
                self.snapshot = replace(self.snapshot, ready=True)

    def get(self, namespace: str, name: str) -> KeySetEntry | None:
        return self.snapshot.entries.get((namespace, name))
