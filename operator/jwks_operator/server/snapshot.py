"""The served state: an immutable snapshot of pre-encoded documents, and the store that swaps it.

A request must cost a dictionary lookup and a write, never JSON encoding, compression or
hashing; so everything a response needs (plain and gzip bodies, strong ETags, the
Last-Modified date, the next scheduled change) is computed once, when a ConfigMap changes.
Readers take ``store.snapshot`` and use it without locks: a snapshot is never mutated, a
change builds a new one (copying the entry table, rebuilding only the changed entry) and
publishes it with one attribute assignment.

Every JWKS passes ``core.guard.parse_public_jwks`` before it can enter a snapshot, and what
is served is re-encoded from a projection of the parsed document (``keys`` only, and in
each key only the registered public parameters, as strings), so neither a JSON trick (a
duplicate ``keys`` member that another parser would read differently) nor key material
nested where the guard does not look can get past it.
A refused document is logged without key material, counted, and the previous good entry is
kept (or, for a keyset never seen good, an entry that answers 503).

Public API (also used by standalone mode):

``SnapshotStore(*, build_verifier=None, metrics=None, clock=time.time)``
    ``.snapshot -> Snapshot``; ``.apply(namespace, name, data, annotations, *,
    modified=None) -> ApplyResult``; ``.remove(namespace, name) -> bool``;
    ``.mark_ready()``; ``.batch()`` (context manager: many applies/removes, one swap).
    Thread-safe: writers serialise on a lock, so callers may run applies in
    ``asyncio.to_thread`` while the event loop keeps reading.
``Snapshot``: ``entries`` (``(namespace, name) -> KeySetEntry``), ``ready``,
    ``generation``, ``updated_at``, ``total_bytes``.
``KeySetEntry``: ``jwks`` / ``openid`` (``Document`` or None), ``unavailable`` (why a
    keyset has no servable JWKS), ``next_change`` (epoch seconds or None), ``verifier``,
    ``verification`` (raw ``verification.json``), ``refused`` (latest refusal or None).
``Document``: ``body``, ``gzip_body``, ``etag``, ``gzip_etag`` (quoted, strong),
    ``modified`` / ``last_modified`` (epoch / HTTP date of the first time these bytes
    were seen: re-applying identical content keeps them).
"""

import base64
import gzip
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from email.utils import formatdate
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from jwks_operator.core.contract import (
    CONFIGMAP_JWKS,
    CONFIGMAP_OPENID,
    CONFIGMAP_VERIFICATION,
    NEXT_CHANGE_ANNOTATION,
    PRIVATE_MEMBERS,
)
from jwks_operator.core.guard import (
    PRIVATE_PEM_MARKER,
    UnsafeJwksError,
    encode_public_jwks,
    parse_public_jwks,
)
from jwks_operator.core.timefmt import parse_time
from jwks_operator.server.hooks import VerifierBuilder
from jwks_operator.server.metrics import Metrics

logger = logging.getLogger(__name__)

KeySetKey = tuple[str, str]

UNAVAILABLE_NO_KEYS = "the keyset has no published keys yet"
UNAVAILABLE_REFUSED = "the keyset's published JWKS was refused by the server's guard"


@dataclass(frozen=True, slots=True)
class Document:
    """One served document in both encodings; ETags are strong and differ per encoding."""

    body: bytes
    gzip_body: bytes
    etag: str
    gzip_etag: str
    modified: float
    """When these bytes were first served (or written, when the source knows): Last-Modified."""
    last_modified: str

    @classmethod
    def encode(cls, text: str, modified: float, previous: "Document | None" = None) -> "Document":
        """Pre-encode ``text``; an identical previous document is reused with its date."""
        body = text.encode()
        tag = base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode()
        etag = f'"{tag}"'
        if previous is not None:
            if previous.etag == etag:
                return previous
            # New bytes must look newer than the old ones to If-Modified-Since, whatever
            # clock or metadata the caller's time came from.
            modified = max(modified, int(previous.modified) + 1)
        # mtime=0: identical content gives identical bytes (and ETags) on every replica.
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        return cls(
            body=body,
            gzip_body=packed,
            etag=etag,
            gzip_etag=f'"{tag}-gz"',
            modified=modified,
            last_modified=formatdate(modified, usegmt=True),
        )

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzip_body)


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
    refused: str | None = None

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


class RefusedDocument(ValueError):
    """A ConfigMap document that must not be served; ``reason`` is a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def refusal_reason(error: UnsafeJwksError) -> str:
    """A stable metric label for a guard refusal (the message itself may vary)."""
    text = str(error)
    if "private member" in text:
        return "private_member"
    if "(oct)" in text:
        return "symmetric_key"
    if "duplicate kid" in text:
        return "duplicate_kid"
    if "not valid JSON" in text:
        return "invalid_json"
    return "invalid_jwks"


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
        try:
            parsed = _public_projection(parse_public_jwks(raw_jwks), namespace, name)
            text = encode_public_jwks(parsed)
        except UnsafeJwksError as error:
            raise RefusedDocument(refusal_reason(error), str(error)) from None
        key_count = len(parsed["keys"])
        if key_count:
            jwks_doc = Document.encode(text, modified, previous.jwks if previous else None)
            unavailable = None
    openid_doc = None
    raw_openid = data.get(CONFIGMAP_OPENID)
    if raw_openid is not None:
        openid_doc = Document.encode(
            _reencode_object(raw_openid), modified, previous.openid if previous else None
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
        next_change=_next_change(namespace, name, annotations),
        verification=verification,
        verifier=verifier,
        fingerprint=print_ if print_ is not None else fingerprint(data, annotations),
    )


PUBLIC_JWK_MEMBERS = frozenset(
    {
        "kty",
        "use",
        "key_ops",
        "alg",
        "kid",
        "x5u",
        "x5c",
        "x5t",
        "x5t#S256",
        "crv",
        "x",
        "y",
        "n",
        "e",
    }
)
"""The registered public JWK parameters (RFC 7517, 7518, 8037): all a verifier needs."""


def _public_projection(document: Mapping[str, Any], namespace: str, name: str) -> dict[str, Any]:
    """Only ``keys``, and in each key only public parameters with string values.

    The guard checks the members it knows at the levels it knows; serving a projection
    means that nothing else (a nested object, an extra top-level member) can carry key
    material out, whatever it is called.
    """
    keys = []
    dropped: set[str] = set()
    for index, jwk in enumerate(document["keys"]):
        kept: dict[str, Any] = {}
        for member, value in jwk.items():
            if member not in PUBLIC_JWK_MEMBERS:
                dropped.add(member)
                continue
            if not isinstance(value, str) and not (
                isinstance(value, list) and all(isinstance(item, str) for item in value)
            ):
                raise UnsafeJwksError(f"keys[{index}]: member {member} is not a string")
            kept[member] = value
        keys.append(kept)
    dropped.update(member for member in document if member != "keys")
    if dropped:
        logger.warning(
            "keyset %s/%s: not serving non-standard JWKS member(s) %s",
            namespace,
            name,
            ", ".join(sorted(dropped)[:10]),
        )
    return {"keys": keys}


def _reencode_object(raw: str) -> str:
    try:
        document = json.loads(raw)
    except ValueError:
        raise RefusedDocument(
            "invalid_openid_configuration", "openid-configuration is not valid JSON"
        ) from None
    if not isinstance(document, dict):
        raise RefusedDocument(
            "invalid_openid_configuration", "openid-configuration is not a JSON object"
        )
    _refuse_embedded_private_keys(document)
    encoded = json.dumps(document, separators=(",", ":"))
    if PRIVATE_PEM_MARKER in encoded:
        raise RefusedDocument("private_member", "openid-configuration holds a PEM private key")
    return encoded


def _refuse_embedded_private_keys(node: Any) -> None:
    """Discovery metadata has no place for keys; an embedded private one is refused."""
    if isinstance(node, dict):
        if "kty" in node and (PRIVATE_MEMBERS.intersection(node) or node.get("kty") == "oct"):
            raise RefusedDocument(
                "private_member", "openid-configuration embeds a private or symmetric key"
            )
        for value in node.values():
            _refuse_embedded_private_keys(value)
    elif isinstance(node, list):
        for value in node:
            _refuse_embedded_private_keys(value)


def _next_change(namespace: str, name: str, annotations: Mapping[str, str]) -> float | None:
    raw = annotations.get(NEXT_CHANGE_ANNOTATION)
    if not raw:
        return None
    try:
        return parse_time(raw).timestamp()
    except ValueError:
        logger.warning(
            "keyset %s/%s: ignoring unparsable %s annotation",
            namespace,
            name,
            NEXT_CHANGE_ANNOTATION,
        )
        return None


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
    namespace: str, name: str, now: float, print_: bytes, reason: str
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
        build_verifier: VerifierBuilder | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.build_verifier = build_verifier
        self.metrics = metrics if metrics is not None else Metrics()
        self.clock = clock
        self._lock = threading.Lock()
        self.snapshot = Snapshot(entries=MappingProxyType({}), updated_at=clock())

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
