"""A Kubernetes API emulator faithful enough for Kopf, the ``kubernetes`` client and aiohttp.

Why this exists: no real cluster can run on the test machines, and plain KMock 0.8 misses
the semantics that an operator depends on (see /work/shared/notes/kmock.md): without
resourceVersions Kopf re-runs handlers and hits 409s; without watch resumption every
reconnect replays all objects; its request log is re-filtered on every request and grows
slow. ``ApiEmulator`` keeps KMock's discovery, resource registry and error conventions
but serves every request itself, from an in-memory store with an event history.
Because it uses KMock's private modules, ``kmock==0.8`` is pinned.

Provided (each has a test in tests/e2e/test_emulator.py):

- metadata: ``uid``, ``resourceVersion`` (one global counter, as a string, bumped only by
  real changes: a no-op write returns the object unchanged and emits no event),
  ``creationTimestamp``, ``generation`` (bumped when anything outside metadata and, with
  a status subresource, outside status changes; absent on ConfigMaps, Secrets, Events,
  Namespaces and other kinds that have none in a real cluster), ``generateName``.
- create returns 201; a duplicate name 409 AlreadyExists; a resourceVersion in a create 400.
- get, list, watch, create, update (PUT), patch, delete, deletecollection; the discovery
  verbs of each resource are enforced (405 otherwise).
- optimistic concurrency: a PUT or a patch whose result carries a stale
  ``metadata.resourceVersion`` gets 409 Conflict; delete preconditions (uid, rv) too;
  a PUT of a custom resource without a resourceVersion is 422 (built-ins allow it).
- patches: JSON Patch (RFC 6902: add remove replace move copy test; a failed ``test`` or
  a bad path is 422), JSON merge patch (RFC 7386), strategic merge patch for built-in
  kinds treated as a merge patch (maps merge, lists are replaced whole, ``$patch``-style
  directives are rejected with 400); strategic merge on a custom resource is 415, as on a
  real server; server-side apply (``apply-patch+yaml``) is 415 (not emulated).
- status subresource: writes to ``/status`` change only ``.status``; writes to the main
  resource keep the stored ``.status``; a create drops ``.status``.
- watch (``watch=true|True|1``): from no resourceVersion (or ``0``) it starts with ADDED
  for current objects; from a resourceVersion it replays only later events from a bounded
  history (``history_size``, default 1000; ``compact()`` drops it) and answers an older
  one with an ERROR event carrying 410 Gone; ``timeoutSeconds`` ends the stream;
  ``allowWatchBookmarks`` gets periodic BOOKMARKs; ``sendInitialEvents`` ends the
  initial ADDEDs with the ``k8s.io/initial-events-end`` bookmark. With selectors, an
  object that starts or stops matching is seen as ADDED or DELETED, as on a real server.
- selectors on list, watch and deletecollection: labelSelector with ``=``, ``==``,
  ``!=``, ``key``, ``!key``, ``in (...)``, ``notin (...)``; fieldSelector
  ``metadata.name`` / ``metadata.namespace`` (plus the Event and Secret fields a real
  server supports); anything else is 400, as on a real server.
- list pagination with ``limit`` and ``continue``; list items of built-in kinds carry no
  kind/apiVersion (as on a real server), custom-resource items do.
- finalizers: DELETE of an object with finalizers sets ``deletionTimestamp`` (MODIFIED);
  it is removed (DELETED, with a new resourceVersion) when its finalizers become empty;
  no new finalizer can be added once it is being deleted (422).
- garbage collection by ``ownerReferences`` uid when an owner is really removed
  (synchronously; ``propagationPolicy: Orphan`` strips the references instead; an owner
  still present keeps a dependent alive). Deleting a Namespace deletes its objects.
- validation that real servers do for every kind: DNS-1123 names, label keys and values,
  string-only labels/annotations, ownerReference fields, Secret ``stringData`` folded into
  base64 ``data``, Secret/ConfigMap value types and the 1 MiB size limit.
- CustomResourceDefinition objects register their resources (so applying the real CRD
  manifests works), and their removal deletes the custom objects.
- a bearer token check (401), a bounded request log, ``api_calls`` for RBAC checks,
  ``drop_watches()``, ``fail_next()`` fault injection, ``internal_errors`` for emulator bugs.

Not provided (covered by unit tests, manifest validation, and the real-cluster suite):
OpenAPI schema validation, defaulting, pruning, CEL rules, printer columns, admission
webhooks, RBAC enforcement (calls are only recorded), Table output for kubectl, server-side
apply and managedFields, real strategic-merge list semantics (merge keys), dryRun beyond
"do not store", ``resourceVersion``/``resourceVersionMatch`` on GET and LIST (always the
latest state; pagination pages are not a snapshot), foreground deletion (treated as
background), grace periods, namespace lifecycle (the namespace goes at once; missing
namespaces are accepted unless ``require_namespaces``), cross-namespace ownerReference
rules, the collection of dependents whose owner never existed, subresources other than
``status``, ``shardSelector``, and asynchronous timing (GC and deletion are immediate).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import copy
import dataclasses
import datetime
import importlib.resources
import json
import re
import secrets
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import aiohttp.web
import attrs
import kmock

JsonObj = dict[str, Any]

HARNESS_USER_AGENT: Final = "jwks-tests-harness"
"""Requests with this User-Agent are the test's own: not in ``api_calls``, never faulted."""

TRUE_VALUES: Final = frozenset({"true", "True", "1"})
MAX_DATA_BYTES: Final = 1024 * 1024
MAX_REQUEST_BYTES: Final = 3 * 1024 * 1024

# Kinds whose objects have no metadata.generation on a real server.
NO_GENERATION: Final = frozenset(
    {
        ("", "configmaps"),
        ("", "secrets"),
        ("", "events"),
        ("", "namespaces"),
        ("", "serviceaccounts"),
        ("", "endpoints"),
        ("", "services"),
        ("events.k8s.io", "events"),
        ("coordination.k8s.io", "leases"),
    }
)

# Field selectors a real server accepts beyond metadata.name / metadata.namespace.
EXTRA_FIELDS: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    ("", "events"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    ("", "secrets"): frozenset({"type"}),
    ("", "namespaces"): frozenset({"status.phase"}),
}

CRD_RESOURCE: Final = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_GENERATE_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"


def resource(group: str, version: str, plural: str | None = None) -> kmock.resource:
    """Build a KMock resource key by keywords: its positional form guesses and misreads."""
    return kmock.resource(group=group, version=version, plural=plural)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """An error the API answers with a ``Status`` body, as a real server does."""

    def __init__(
        self, code: int, reason: str, message: str, details: JsonObj | None = None
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> JsonObj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


# --------------------------------------------------------------------------------------
# Records for tests


@dataclasses.dataclass(frozen=True, order=True)
class ApiCall:
    """One distinct API call, in RBAC terms: what a Role must allow for it to succeed."""

    verb: str
    group: str
    resource: str
    subresource: str  # "" when none
    namespace: str  # "" when cluster-wide


@dataclasses.dataclass
class RequestRecord:
    """One served request (kept in a bounded log)."""

    at: float
    method: str
    path: str
    query: Mapping[str, str]
    user_agent: str
    verb: str | None = None
    group: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    status: int = 0


@dataclasses.dataclass
class _Fault:
    code: int
    remaining: int
    verb: str | None
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    message: str


@dataclasses.dataclass(frozen=True)
class _Event:
    rv: int
    res: kmock.resource
    type: str
    obj: JsonObj
    prev: JsonObj | None


# --------------------------------------------------------------------------------------
# Selectors


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    """A parsed ``labelSelector`` query: equality-based and set-based requirements."""

    requirements: tuple[tuple[str, str, frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        reqs: list[tuple[str, str, frozenset[str]]] = []
        for part in _split_selector(text):
            reqs.append(_parse_label_requirement(part))
        return cls(tuple(reqs))

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, op, values in self.requirements:
            present = key in labels
            value = labels.get(key)
            ok = {
                "exists": present,
                "!exists": not present,
                "=": present and value in values,
                "!=": not present or value not in values,
                "in": present and value in values,
                "notin": not present or value not in values,
            }[op]
            if not ok:
                return False
        return True


def _split_selector(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


_SET_REQ = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_REQ = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_EXISTS_REQ = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


def _parse_label_requirement(part: str) -> tuple[str, str, frozenset[str]]:
    if match := _SET_REQ.match(part):
        values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
        _check_label_key(match["key"], bad_request)
        return match["key"], match["op"], values
    if match := _EQ_REQ.match(part):
        op = "!=" if match["op"] == "!=" else "="
        _check_label_key(match["key"], bad_request)
        return match["key"], op, frozenset({match["value"]})
    if match := _EXISTS_REQ.match(part):
        _check_label_key(match["key"], bad_request)
        return match["key"], "!exists" if match["neg"] else "exists", frozenset()
    raise bad_request(f"unable to parse requirement: {part!r}")


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    """A parsed ``fieldSelector``: only the fields a real server supports for the kind."""

    requirements: tuple[tuple[str, bool, str], ...] = ()

    @classmethod
    def parse(cls, text: str, allowed: frozenset[str]) -> FieldSelector:
        reqs: list[tuple[str, bool, str]] = []
        for part in _split_selector(text):
            match = re.match(r"^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$", part)
            if match is None:
                raise bad_request(f"invalid selector: {part!r}")
            field, op, value = match.groups()
            if field not in allowed:
                raise bad_request(f'field label not supported: "{field}"')
            reqs.append((field, op != "!=", value.strip()))
        return cls(tuple(reqs))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for field, equal, value in self.requirements:
            actual: Any = obj
            for step in field.split("."):
                actual = actual.get(step) if isinstance(actual, Mapping) else None
            actual_text = "" if actual is None else str(actual)
            if (actual_text == value) != equal:
                return False
        return True


# --------------------------------------------------------------------------------------
# Patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JsonObj = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _has_directives(patch: Any) -> bool:
    if isinstance(patch, dict):
        return any(
            (isinstance(k, str) and k.startswith("$")) or _has_directives(v)
            for k, v in patch.items()
        )
    if isinstance(patch, list):
        return any(_has_directives(item) for item in patch)
    return False


class _PatchError(Exception):
    pass


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise _PatchError(f"invalid JSON pointer: {path!r}")
    if not path:
        return []
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _PatchError(f"invalid array index: {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not for_add):
        raise _PatchError(f"array index out of range: {index}")
    return index


def _walk(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise _PatchError(f"missing path element: {token!r}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise _PatchError(f"cannot descend into a scalar at {token!r}")
    return node


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1])
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], for_add=True), value)
    else:
        raise _PatchError("cannot add to a scalar")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise _PatchError("cannot remove the whole document")
    parent = _walk(doc, tokens[:-1])
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise _PatchError(f"missing path element: {tokens[-1]!r}")
        return doc, parent.pop(tokens[-1])
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, tokens[-1], for_add=False))
    raise _PatchError("cannot remove from a scalar")


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 on a copy of ``doc``; any failure raises (the API answers 422)."""
    if not isinstance(ops, list):
        raise _PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _PatchError(f"malformed operation: {op!r}")
        name, path = op["op"], _pointer(op["path"])
        if name in {"add", "replace", "test"} and "value" not in op:
            raise _PatchError(f"{name} needs a value")
        if name == "test":
            if not _json_equal(_walk(doc, path), op["value"]):
                raise _PatchError(f"testing value {op['path']} failed: test failed")
        elif name == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif name == "remove":
            doc, _ = _remove(doc, path)
        elif name == "replace":
            if path:
                doc, _ = _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif name in {"move", "copy"}:
            source = _pointer(op.get("from"))
            if name == "move":
                doc, value = _remove(doc, source)
            else:
                value = copy.deepcopy(_walk(doc, source))
            doc = _add(doc, path, value)
        else:
            raise _PatchError(f"unknown operation: {name!r}")
    return doc


# --------------------------------------------------------------------------------------
# Validation that every real API server does, whatever the kind


def _check_label_key(key: str, error: Callable[[str], ApiError] = invalid) -> None:
    prefix, _, name = key.rpartition("/")
    ok = bool(name) and len(name) <= 63 and _QUALIFIED_NAME.match(name) is not None
    if prefix:
        ok = ok and len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix) is not None
    if not ok:
        raise error(f"metadata key {key!r}: must be a qualified name (an optional DNS prefix/)")


def _validate_metadata(meta: JsonObj, *, namespace_like: bool) -> None:
    name = meta.get("name", "")
    pattern = _DNS_LABEL if namespace_like else _DNS_SUBDOMAIN
    limit = 63 if namespace_like else 253
    if not isinstance(name, str) or len(name) > limit or not pattern.match(name):
        raise invalid(f"metadata.name: Invalid value: {name!r}: must be a lowercase RFC 1123 name")
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if values is None:
            continue
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise bad_request(f"metadata.{field}: must be a map of string to string")
        for key, value in values.items():
            _check_label_key(key)
            if field == "labels" and (len(value) > 63 or not _LABEL_VALUE.match(value)):
                raise invalid(f"metadata.labels: Invalid value: {value!r}: not a label value")
    annotations = meta.get("annotations") or {}
    if sum(len(k) + len(v) for k, v in annotations.items()) > 256 * 1024:
        raise invalid("metadata.annotations: Too long: must have at most 262144 bytes")
    finalizers = meta.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        raise bad_request("metadata.finalizers: must be a list of strings")
    for ref in meta.get("ownerReferences") or []:
        if not isinstance(ref, dict) or not all(
            isinstance(ref.get(k), str) and ref.get(k)
            for k in ("apiVersion", "kind", "name", "uid")
        ):
            raise invalid(
                f"metadata.ownerReferences: apiVersion, kind, name, uid required: {ref!r}"
            )


def _normalize_kind_specific(plural: str, group: str, obj: JsonObj) -> None:
    """Secrets and ConfigMaps: the conversions and limits of the real types."""
    if group != "" or plural not in {"secrets", "configmaps"}:
        return
    data = obj.get("data")
    if data is not None and (
        not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values())
    ):
        raise bad_request(f"{plural} data: must be a map of string to string")
    if plural == "secrets":
        string_data = obj.pop("stringData", None)
        if string_data:
            if not all(isinstance(v, str) for v in string_data.values()):
                raise bad_request("stringData: must be a map of string to string")
            data = dict(data or {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(value.encode()).decode()
            obj["data"] = data
        total = 0
        for key, value in (obj.get("data") or {}).items():
            try:
                total += len(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                raise bad_request(f"data[{key}]: illegal base64 data") from None
    else:
        binary = obj.get("binaryData") or {}
        total = sum(len(k) + len(v) for k, v in (data or {}).items()) + sum(
            len(k) + len(v) * 3 // 4 for k, v in binary.items()
        )
    if total > MAX_DATA_BYTES:
        raise invalid(f"{plural}: Too long: must have at most {MAX_DATA_BYTES} bytes")


def _without(obj: Mapping[str, Any], *keys: str) -> JsonObj:
    return {k: v for k, v in obj.items() if k not in keys}


def _clean_metadata(meta: JsonObj) -> None:
    # Empty maps and lists are omitted by a real server's serialisation.
    for key in ("labels", "annotations", "finalizers", "ownerReferences"):
        if key in meta and not meta[key]:
            del meta[key]


# --------------------------------------------------------------------------------------
# Watchers


_END: Final = b"end"
_ABORT: Final = b"abort"


@dataclasses.dataclass(frozen=True)
class _Filter:
    """Which objects a list or watch sees: resource, namespace and selectors."""

    res: kmock.resource
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector

    def accepts(self, obj: JsonObj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels") or {}) and self.fields.matches(obj)

    def translate(self, event: _Event) -> bytes | None:
        """The event as this watcher sees it: objects entering or leaving its selection."""
        now, before = self.accepts(event.obj), self.accepts(event.prev)
        kind: str | None
        if event.type == "MODIFIED":
            kind = {
                (True, True): "MODIFIED",
                (True, False): "ADDED",
                (False, True): "DELETED",
            }.get((now, before))
        else:
            kind = event.type if now else None
        return None if kind is None else _line(kind, event.obj)


@dataclasses.dataclass(eq=False)
class _Watcher:
    filter: _Filter
    queue: asyncio.Queue[bytes] = dataclasses.field(default_factory=asyncio.Queue)


def _line(kind: str, obj: JsonObj) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


@dataclasses.dataclass(frozen=True)
class _Route:
    res: kmock.resource
    info: kmock.ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str | None


# --------------------------------------------------------------------------------------
# The emulator


@attrs.define(kw_only=True)
class ApiEmulator(kmock.KubernetesEmulator):
    """KMock's emulator with the API semantics listed in the module docstring.

    All state lives in one event loop; every mutation runs without an ``await`` in the
    middle, so it is atomic without locks. Call the methods from that loop only (the
    ``EmulatedCluster`` fixture offers ``call()`` for other threads).
    """

    history_size: int = 1000
    request_log_size: int = 2000
    bookmark_interval: float = 30.0
    require_namespaces: bool = False
    token: str | None = None

    _store: dict[kmock.resource, dict[tuple[str | None, str], JsonObj]] = attrs.field(
        factory=lambda: collections.defaultdict(dict), init=False
    )
    _uids: dict[str, tuple[kmock.resource, str | None, str]] = attrs.field(factory=dict, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _history: collections.deque[_Event] = attrs.field(init=False)
    _history_floor: int = attrs.field(default=0, init=False)
    _watchers: set[_Watcher] = attrs.field(factory=set, init=False)
    _faults: list[_Fault] = attrs.field(factory=list, init=False)
    _request_log: collections.deque[RequestRecord] = attrs.field(init=False)
    _api_calls: set[ApiCall] = attrs.field(factory=set, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)
    _orphaning: set[str] = attrs.field(factory=set, init=False)
    internal_errors: list[str] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._history = collections.deque(maxlen=max(1, self.history_size))
        self._request_log = collections.deque(maxlen=max(1, self.request_log_size))

    # ---------------------------------------------------------------- configuration

    def register_custom_resource(
        self,
        group: str,
        version: str,
        plural: str,
        *,
        kind: str,
        namespaced: bool,
        subresources: Iterable[str] = (),
        shortnames: Iterable[str] = (),
        singular: str | None = None,
        categories: Iterable[str] = (),
        verbs: Iterable[str] = (
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ),
    ) -> None:
        """Serve a custom resource in discovery and mark it custom (no strategic merge)."""
        res = resource(group, version, plural)
        self.resources[res] = kmock.ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            singular=singular or kind.lower(),
            verbs=set(verbs),
            shortnames=set(shortnames),
            categories=set(categories),
            subresources=set(subresources),
        )
        self._custom.add(res)

    def ensure_namespace(self, name: str) -> None:
        res = resource("", "v1", "namespaces")
        if (None, name) not in self._store[res]:
            self.create_object(res, None, {"metadata": {"name": name}})

    # ---------------------------------------------------------------- test controls

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def api_calls(self) -> set[ApiCall]:
        """Distinct calls by anything but the test harness, for RBAC assertions."""
        return set(self._api_calls)

    @property
    def request_log(self) -> list[RequestRecord]:
        return list(self._request_log)

    @property
    def watch_count(self) -> int:
        return len(self._watchers)

    def objects_of(self, res: kmock.resource) -> list[JsonObj]:
        return [copy.deepcopy(obj) for obj in self._store[res].values()]

    def drop_watches(self, *, abort: bool = False) -> int:
        """End every open watch (EOF, as on a server timeout) or abort its connection."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(_ABORT if abort else _END)
        return len(self._watchers)

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: older watches get 410."""
        self._history.clear()
        self._history_floor = self._rv

    def fail_next(
        self,
        code: int = 500,
        count: int = 1,
        *,
        verb: str | None = None,
        plural: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        message: str = "injected failure",
    ) -> None:
        """Answer the next ``count`` matching API requests with ``code`` instead."""
        self._faults.append(
            _Fault(code, count, verb, plural, namespace, name, subresource, message)
        )

    # ---------------------------------------------------------------- HTTP entry point

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # A real API server takes bodies up to 3 MiB (aiohttp's default stops at 1 MiB).
        raw_request = raw_request.clone(client_max_size=MAX_REQUEST_BYTES)
        body = await raw_request.read()
        record = RequestRecord(
            at=time.monotonic(),
            method=raw_request.method,
            path=raw_request.path,
            query=dict(raw_request.query),
            user_agent=raw_request.headers.get("User-Agent", ""),
        )
        self._request_log.append(record)
        try:
            response = await self._serve(raw_request, body, record)
        except ApiError as exc:
            response = _json_response(exc.status(), exc.code)
        except Exception as exc:  # an emulator bug: make it loud, keep serving
            self.internal_errors.append(traceback.format_exc())
            response = _json_response(ApiError(500, "InternalError", repr(exc)).status(), 500)
        record.status = response.status
        return response

    async def _serve(
        self, raw: aiohttp.web.BaseRequest, body: bytes, record: RequestRecord
    ) -> aiohttp.web.StreamResponse:
        path = raw.path.rstrip("/") or "/"
        if path in {"/healthz", "/livez", "/readyz"}:
            return aiohttp.web.Response(text="ok")
        if path == "/version":
            return _json_response(await self._serve_server_version(kmock.Request()))
        if self.token is not None and raw.headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        discovery = await self._discovery(path)
        if discovery is not None:
            return _json_response(discovery)

        route = self._route(path)
        verb = self._verb(raw.method, route, raw.query)
        record.verb, record.group, record.resource = verb, route.res.group, route.res.plural
        record.subresource, record.namespace, record.name = (
            route.subresource,
            route.namespace,
            route.name,
        )
        harness = record.user_agent.startswith(HARNESS_USER_AGENT)
        if not harness:
            self._api_calls.add(
                ApiCall(
                    verb,
                    route.res.group or "",
                    route.res.plural or "",
                    route.subresource or "",
                    route.namespace or "",
                )
            )
            self._inject_fault(verb, route)
        if route.info.verbs and verb not in route.info.verbs and route.subresource is None:
            raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported on this resource")

        params = raw.query
        dry_run = "dryRun" in params
        if verb == "watch":
            return await self._serve_watch_stream(raw, route, params)
        if verb == "list":
            return _json_response(self.list_objects(route.res, route.namespace, params))
        data = _parse_body(body) if body else None
        options = data if isinstance(data, dict) else {}
        if verb == "deletecollection":
            deleted = self.delete_objects(route.res, route.namespace, params, options)
            return _json_response(deleted)
        if verb == "create":
            created = self.create_object(route.res, route.namespace, data, dry_run=dry_run)
            return _json_response(created, 201)
        name, namespace, sub = _name(route), route.namespace, route.subresource
        if verb == "get":
            return _json_response(self.read_object(route.res, namespace, name))
        if verb == "update":
            replaced = self.replace_object(route.res, namespace, name, data, sub, dry_run)
            return _json_response(replaced)
        if verb == "patch":
            content_type = raw.headers.get("Content-Type", "")
            patched = self.patch_object(
                route.res, namespace, name, data, content_type, sub, dry_run
            )
            return _json_response(patched)
        return _json_response(self.delete_object(route.res, namespace, name, options, dry_run))

    async def _discovery(self, path: str) -> Any:
        parts = path.strip("/").split("/") if path != "/" else []
        if not parts:
            return await self._serve_root(kmock.Request())
        if parts == ["api"]:
            return await self._serve_api(kmock.Request())
        if parts == ["apis"]:
            return await self._serve_apis(kmock.Request())
        if parts == ["api", "v1"]:
            return await self._serve_version(kmock.Request(resource=resource("", "v1")))
        if parts[0] == "apis" and len(parts) == 2:
            try:
                return await self._serve_group(
                    kmock.Request(resource=kmock.resource(group=parts[1]))
                )
            except kmock.KubernetesError as exc:
                raise ApiError(
                    404, "NotFound", "the server could not find the requested resource"
                ) from exc
        if parts[0] == "apis" and len(parts) == 3:
            try:
                return await self._serve_version(
                    kmock.Request(resource=resource(parts[1], parts[2]))
                )
            except kmock.KubernetesError as exc:
                raise ApiError(
                    404, "NotFound", "the server could not find the requested resource"
                ) from exc
        return None

    def _route(self, path: str) -> _Route:
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _no_such_path()
        namespace: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and resource(group, version, rest[2]) in self.resources
        ):
            namespace, rest = rest[1], rest[2:]
        res = resource(group, version, rest[0])
        if res not in self.resources:
            raise _no_such_path()
        info = self.resources[res]
        name = rest[1] if len(rest) > 1 else None
        subresource = "/".join(rest[2:]) or None
        if (namespace is not None and not info.namespaced) or (
            info.namespaced and namespace is None and name is not None
        ):
            raise _no_such_path()
        if subresource is not None and (
            subresource != "status" or "status" not in info.subresources
        ):
            raise ApiError(
                404, "NotFound", f"subresource {subresource!r} is not emulated or absent"
            )
        return _Route(res, info, namespace, name, subresource)

    @staticmethod
    def _verb(method: str, route: _Route, query: Mapping[str, str]) -> str:
        watch = query.get("watch") in TRUE_VALUES
        if method == "GET":
            if watch:
                return "watch"
            return "list" if route.name is None else "get"
        if route.name is None:
            if method == "POST":
                if route.info.namespaced and route.namespace is None:
                    raise ApiError(405, "MethodNotAllowed", "create needs a namespace in the URL")
                return "create"
            if method == "DELETE":
                return "deletecollection"
        else:
            verb = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
            if verb is not None:
                return verb
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed here")

    def _inject_fault(self, verb: str, route: _Route) -> None:
        for fault in self._faults:
            if fault.remaining <= 0:
                continue
            if (
                (fault.verb is None or fault.verb == verb)
                and (fault.plural is None or fault.plural == route.res.plural)
                and (fault.namespace is None or fault.namespace == route.namespace)
                and (fault.name is None or fault.name == route.name)
                and (fault.subresource is None or fault.subresource == route.subresource)
            ):
                fault.remaining -= 1
                reason = {
                    403: "Forbidden",
                    404: "NotFound",
                    409: "Conflict",
                    429: "TooManyRequests",
                }
                raise ApiError(fault.code, reason.get(fault.code, "InternalError"), fault.message)

    # ---------------------------------------------------------------- helpers

    def _info(self, res: kmock.resource) -> kmock.ResourceInfo:
        if res not in self.resources:
            raise ApiError(404, "NotFound", f"resource {res!r} is not served")
        return self.resources[res]

    def _label(self, res: kmock.resource) -> str:
        return f"{res.plural}.{res.group}" if res.group else str(res.plural)

    def _not_found(self, res: kmock.resource, name: str) -> ApiError:
        return ApiError(
            404,
            "NotFound",
            f'{self._label(res)} "{name}" not found',
            {"name": name, "group": res.group, "kind": res.plural},
        )

    def _conflict(self, res: kmock.resource, name: str) -> ApiError:
        return ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {self._label(res)} "{name}": the object has been'
            " modified; please apply your changes to the latest version and try again",
            {"name": name, "group": res.group, "kind": res.plural},
        )

    def _current(self, res: kmock.resource, namespace: str | None, name: str) -> JsonObj:
        obj = self._store[res].get((namespace, name))
        if obj is None:
            raise self._not_found(res, name)
        return obj

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, res: kmock.resource, kind: str, obj: JsonObj, prev: JsonObj | None) -> None:
        event = _Event(int(obj["metadata"]["resourceVersion"]), res, kind, obj, prev)
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._history_floor = self._history[0].rv
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.filter.res == res:
                line = watcher.filter.translate(event)
                if line is not None:
                    watcher.queue.put_nowait(line)

    def _tracks_generation(self, res: kmock.resource) -> bool:
        return (res.group or "", res.plural or "") not in NO_GENERATION

    def _api_version(self, res: kmock.resource) -> str:
        return f"{res.group}/{res.version}" if res.group else str(res.version)

    # ---------------------------------------------------------------- operations

    def read_object(self, res: kmock.resource, namespace: str | None, name: str) -> JsonObj:
        return self._current(res, namespace, name)

    def list_objects(
        self, res: kmock.resource, namespace: str | None, params: Mapping[str, str]
    ) -> JsonObj:
        info = self._info(res)
        items = self._select(res, namespace, params)
        limit = int(params.get("limit") or 0)
        token = params.get("continue")
        if token:
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(token.encode())))
            except (ValueError, binascii.Error):
                raise ApiError(410, "Expired", "invalid continue token") from None
            items = [o for o in items if _sort_key(o) > after]
        meta: JsonObj = {"resourceVersion": str(self._rv)}
        if limit > 0 and len(items) > limit:
            items, rest = items[:limit], len(items) - limit
            last = _sort_key(items[-1])
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(last).encode()).decode()
            meta["remainingItemCount"] = rest
        if res not in self._custom:
            items = [_without(o, "kind", "apiVersion") for o in items]
        return {
            "kind": f"{info.kind}List",
            "apiVersion": self._api_version(res),
            "metadata": meta,
            "items": items,
        }

    def _selectors(
        self, res: kmock.resource, params: Mapping[str, str]
    ) -> tuple[LabelSelector, FieldSelector]:
        labels = LabelSelector.parse(params.get("labelSelector", ""))
        allowed = frozenset({"metadata.name", "metadata.namespace"}) | EXTRA_FIELDS.get(
            (res.group or "", res.plural or ""), frozenset()
        )
        fields = FieldSelector.parse(params.get("fieldSelector", ""), allowed)
        return labels, fields

    def _select(
        self, res: kmock.resource, namespace: str | None, params: Mapping[str, str]
    ) -> list[JsonObj]:
        labels, fields = self._selectors(res, params)
        matching = _Filter(res, namespace, labels, fields)
        return sorted(
            (obj for obj in self._store[res].values() if matching.accepts(obj)), key=_sort_key
        )

    def create_object(
        self,
        res: kmock.resource,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
    ) -> JsonObj:
        info = self._info(res)
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise bad_request("the body must be a JSON object with a metadata object")
        obj = copy.deepcopy(body)
        meta: JsonObj = obj.setdefault("metadata", {})
        api_version = self._api_version(res)
        if obj.setdefault("apiVersion", api_version) != api_version:
            raise bad_request(f"apiVersion {obj['apiVersion']!r} does not match {api_version!r}")
        if obj.setdefault("kind", info.kind) != info.kind:
            raise bad_request(f"kind {obj['kind']!r} does not match {info.kind!r}")
        if info.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent"
                    " on the request"
                )
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise bad_request("a namespaced object needs a namespace")
            meta["namespace"] = namespace
            if (
                self.require_namespaces
                and (None, namespace) not in self._store[resource("", "v1", "namespaces")]
            ):
                raise self._not_found(resource("", "v1", "namespaces"), namespace)
        else:
            meta.pop("namespace", None)
            namespace = None
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix or not isinstance(prefix, str):
                raise invalid("metadata.name: Required value: name or generateName is required")
            while True:
                suffix = "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
                if (namespace, prefix + suffix) not in self._store[res]:
                    meta["name"] = prefix + suffix
                    break
        name = meta["name"]
        _validate_metadata(meta, namespace_like=res.plural == "namespaces" and not res.group)
        _normalize_kind_specific(res.plural or "", res.group or "", obj)
        if (namespace, name) in self._store[res]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{self._label(res)} "{name}" already exists',
                {"name": name, "group": res.group, "kind": res.plural},
            )
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation", "uid"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if self._tracks_generation(res):
            meta["generation"] = 1
        if "status" in info.subresources:
            obj.pop("status", None)
        if res == resource("", "v1", "namespaces"):
            obj["status"] = {"phase": "Active"}
        _clean_metadata(meta)
        if dry_run:
            return obj
        meta["resourceVersion"] = self._next_rv()
        if (res.group, res.version, res.plural) == CRD_RESOURCE:
            obj["status"] = self._register_crd(obj)
        self._store[res][(namespace, name)] = obj
        self._uids[meta["uid"]] = (res, namespace, name)
        self._emit(res, "ADDED", obj, None)
        return obj

    def replace_object(
        self,
        res: kmock.resource,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JsonObj:
        current = self._current(res, namespace, name)
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise bad_request("the body must be a JSON object with a metadata object")
        meta = body.get("metadata", {})
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL"
                f" ({name})"
            )
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise bad_request("the namespace of the object does not match the URL")
        stale = meta.get("resourceVersion")
        if not stale and res in self._custom:
            raise invalid(
                "metadata.resourceVersion: Invalid value: must be specified for an update"
            )
        if stale and stale != current["metadata"]["resourceVersion"]:
            raise self._conflict(res, name)
        return self._write(res, current, copy.deepcopy(body), subresource, dry_run)

    def patch_object(
        self,
        res: kmock.resource,
        namespace: str | None,
        name: str,
        body: Any,
        content_type: str,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JsonObj:
        current = self._current(res, namespace, name)
        kind = content_type.split(";")[0].strip().lower()
        if kind == "application/json-patch+json":
            try:
                patched = json_patch(current, body)
            except _PatchError as exc:
                raise ApiError(422, "Invalid", str(exc)) from None
        elif kind == "application/merge-patch+json":
            if not isinstance(body, dict):
                raise bad_request("a merge patch must be a JSON object")
            patched = merge_patch(current, body)
        elif kind == "application/strategic-merge-patch+json":
            if res in self._custom:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types"
                    " include: application/json-patch+json, application/merge-patch+json,"
                    " application/apply-patch+yaml",
                )
            if not isinstance(body, dict):
                raise bad_request("a strategic merge patch must be a JSON object")
            if _has_directives(body):
                raise bad_request("strategic merge directives ($patch, ...) are not emulated")
            patched = merge_patch(current, body)
        else:
            raise ApiError(
                415, "UnsupportedMediaType", f"patch type {kind!r} is not supported (or emulated)"
            )
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise invalid("the patched object must be a JSON object with metadata")
        new_rv = patched["metadata"].get("resourceVersion")
        if new_rv is not None and new_rv != current["metadata"]["resourceVersion"]:
            raise self._conflict(res, name)
        return self._write(res, current, patched, subresource, dry_run)

    def _write(
        self,
        res: kmock.resource,
        current: JsonObj,
        proposed: JsonObj,
        subresource: str | None,
        dry_run: bool,
    ) -> JsonObj:
        """Turn a proposed full object into the stored one: keep what the server owns."""
        info = self._info(res)
        old_meta = current["metadata"]
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in proposed:
                new["status"] = proposed["status"]
            else:
                new.pop("status", None)
        else:
            new = proposed
            new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
            if "status" in info.subresources:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
        meta: JsonObj = new.setdefault("metadata", {})
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        _validate_metadata(meta, namespace_like=res.plural == "namespaces" and not res.group)
        _normalize_kind_specific(res.plural or "", res.group or "", new)
        _clean_metadata(meta)
        if "deletionTimestamp" in old_meta:
            added = set(meta.get("finalizers", [])) - set(old_meta.get("finalizers", []))
            if added:
                raise invalid(
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the"
                    " object is being deleted"
                )
        if _json_equal(new, current):
            return current
        if self._tracks_generation(res):
            ignored = ("metadata", "status") if "status" in info.subresources else ("metadata",)
            if not _json_equal(_without(new, *ignored), _without(current, *ignored)):
                meta["generation"] = int(old_meta.get("generation", 0)) + 1
        if dry_run:
            return new
        meta["resourceVersion"] = self._next_rv()
        slot = (meta.get("namespace"), meta["name"])
        if "deletionTimestamp" in meta and not meta.get("finalizers"):
            self._finish_removal(res, slot, new, current)
            return new
        if (res.group, res.version, res.plural) == CRD_RESOURCE:
            new["status"] = self._register_crd(new)
        self._store[res][slot] = new
        self._emit(res, "MODIFIED", new, current)
        return new

    def delete_object(
        self,
        res: kmock.resource,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> JsonObj:
        current = self._current(res, namespace, name)
        options = options or {}
        preconditions = options.get("preconditions") or {}
        meta = current["metadata"]
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in"
                f" object meta: {meta['uid']}",
            )
        if preconditions.get("resourceVersion") and (
            preconditions["resourceVersion"] != meta["resourceVersion"]
        ):
            raise self._conflict(res, name)
        orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents")
        if dry_run:
            return current
        if orphan:
            self._orphaning.add(meta["uid"])
        if meta.get("finalizers"):
            if "deletionTimestamp" in meta:
                return current
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = self._next_rv()
            self._store[res][(namespace, name)] = new
            self._emit(res, "MODIFIED", new, current)
            return new
        final = copy.deepcopy(current)
        final["metadata"]["resourceVersion"] = self._next_rv()
        self._finish_removal(res, (namespace, name), final, current)
        return final

    def delete_objects(
        self,
        res: kmock.resource,
        namespace: str | None,
        params: Mapping[str, str],
        options: Mapping[str, Any] | None = None,
    ) -> JsonObj:
        info = self._info(res)
        deleted = [
            self.delete_object(
                res, obj["metadata"].get("namespace"), obj["metadata"]["name"], options
            )
            for obj in self._select(res, namespace, params)
        ]
        return {
            "kind": f"{info.kind}List",
            "apiVersion": self._api_version(res),
            "metadata": {"resourceVersion": str(self._rv)},
            "items": deleted,
        }

    def _finish_removal(
        self,
        res: kmock.resource,
        key: tuple[str | None, str],
        final: JsonObj,
        previous: JsonObj,
    ) -> None:
        """Remove for real: DELETED event, then namespace contents, CRD objects, dependents."""
        del self._store[res][key]
        uid = final["metadata"]["uid"]
        self._uids.pop(uid, None)
        self._emit(res, "DELETED", final, previous)
        if res == resource("", "v1", "namespaces"):
            for other, objects in list(self._store.items()):
                for (namespace, name), _obj in list(objects.items()):
                    if namespace == key[1] and (namespace, name) in self._store[other]:
                        self.delete_object(other, namespace, name)
        if (res.group, res.version, res.plural) == CRD_RESOURCE:
            self._unregister_crd(final)
        self._collect_dependents(uid, orphan=uid in self._orphaning)
        self._orphaning.discard(uid)

    def _collect_dependents(self, owner_uid: str, *, orphan: bool) -> None:
        for res, objects in list(self._store.items()):
            for key, obj in list(objects.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == owner_uid for ref in refs):
                    continue
                others = [r for r in refs if r.get("uid") != owner_uid]
                if key not in self._store[res]:
                    continue  # already removed by an earlier cascade
                if orphan or any(r.get("uid") in self._uids for r in others):
                    patched = copy.deepcopy(obj)
                    patched["metadata"]["ownerReferences"] = others
                    self._write(res, obj, patched, None, False)
                else:
                    self.delete_object(res, key[0], key[1])

    # ---------------------------------------------------------------- CRDs

    def _register_crd(self, crd: JsonObj) -> JsonObj:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
        if not (group and plural and kind and spec.get("versions")):
            raise invalid("spec.group, spec.names.plural, spec.names.kind, spec.versions required")
        stored = []
        for version in spec["versions"]:
            if version.get("storage"):
                stored.append(version["name"])
            if not version.get("served", True):
                continue
            self.register_custom_resource(
                group,
                version["name"],
                plural,
                kind=kind,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                subresources=(version.get("subresources") or {}).keys(),
                shortnames=names.get("shortNames") or (),
                singular=names.get("singular"),
                categories=names.get("categories") or (),
            )
        now = now_rfc3339()
        return {
            "acceptedNames": names,
            "storedVersions": stored,
            "conditions": [
                {"type": t, "status": "True", "reason": r, "lastTransitionTime": now, "message": ""}
                for t, r in (
                    ("NamesAccepted", "NoConflicts"),
                    ("Established", "InitialNamesAccepted"),
                )
            ],
        }

    def _unregister_crd(self, crd: JsonObj) -> None:
        spec = crd.get("spec") or {}
        plural = (spec.get("names") or {}).get("plural")
        for version in spec.get("versions") or []:
            res = resource(spec.get("group", ""), version.get("name", ""), plural)
            for (_namespace, _name), obj in list(self._store[res].items()):
                final = copy.deepcopy(obj)
                final["metadata"]["resourceVersion"] = self._next_rv()
                self._finish_removal(res, (_namespace, _name), final, obj)
            self._custom.discard(res)
            if res in self.resources:
                del self.resources[res]

    # ---------------------------------------------------------------- watching

    async def _serve_watch_stream(
        self, raw: aiohttp.web.BaseRequest, route: _Route, params: Mapping[str, str]
    ) -> aiohttp.web.StreamResponse:
        query = dict(params)
        if route.name is not None:
            name_filter = f"metadata.name={route.name}"
            query["fieldSelector"] = ",".join(
                filter(None, [query.get("fieldSelector"), name_filter])
            )
        labels, fields = self._selectors(route.res, query)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        bookmarks = query.get("allowWatchBookmarks") in TRUE_VALUES
        send_initial = query.get("sendInitialEvents") in TRUE_VALUES
        since = query.get("resourceVersion") or ""
        watcher = _Watcher(_Filter(route.res, route.namespace, labels, fields))

        # No await from here to the registration: nothing can slip between replay and live.
        lines: list[bytes] = []
        if since in {"", "0"} or send_initial:
            for obj in self._select(route.res, route.namespace, query):
                lines.append(_line("ADDED", obj))
            if send_initial and bookmarks:
                lines.append(self._bookmark(route, initial_end=True))
        else:
            try:
                start = int(since)
            except ValueError:
                raise bad_request(f"invalid resourceVersion: {since!r}") from None
            if start < self._history_floor:
                gone = ApiError(
                    410,
                    "Expired",
                    f"too old resource version: {start} ({self._history_floor})",
                )
                lines.append(_line("ERROR", gone.status()))
                watcher.queue.put_nowait(_END)
            else:
                for event in self._history:
                    if event.rv > start and event.res == route.res:
                        line = watcher.filter.translate(event)
                        if line is not None:
                            lines.append(line)
        self._watchers.add(watcher)

        response = aiohttp.web.StreamResponse(
            status=200, headers={"Content-Type": "application/json"}
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        try:
            await response.prepare(raw)
            for line in lines:
                await response.write(line)
            while True:
                waits = [self.bookmark_interval if bookmarks else None]
                if deadline is not None:
                    waits.append(max(0.0, deadline - loop.time()))
                wait = min((w for w in waits if w is not None), default=None)
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if deadline is not None and loop.time() >= deadline:
                        break
                    await response.write(self._bookmark(route))
                    continue
                if item is _END:
                    break
                if item is _ABORT:
                    if raw.transport is not None:
                        raw.transport.abort()
                    return response
                await response.write(item)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away; nothing to tell it
        finally:
            self._watchers.discard(watcher)
        return response

    def _bookmark(self, route: _Route, *, initial_end: bool = False) -> bytes:
        meta: JsonObj = {"resourceVersion": str(self._rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {
            "kind": route.info.kind,
            "apiVersion": self._api_version(route.res),
            "metadata": meta,
        }
        return _line("BOOKMARK", obj)


def _name(route: _Route) -> str:
    assert route.name is not None
    return route.name


def _sort_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (meta.get("namespace") or "", meta.get("name") or "")


def _parse_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise bad_request(
            "the request body is not valid JSON (YAML bodies are not emulated)"
        ) from None


def _no_such_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


_REASONS: Final = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 429: "TooManyRequests"}


def _json_response(payload: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        body=json.dumps(payload, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


# --------------------------------------------------------------------------------------
# The cluster this project's tests need


JWKS_KEYSETS: Final = resource("jwks.dev", "v1alpha1", "jwkskeysets")
KOPF_PEERINGS: Final = resource("kopf.dev", "v1", "kopfpeerings")
CLUSTER_KOPF_PEERINGS: Final = resource("kopf.dev", "v1", "clusterkopfpeerings")


def build_emulator(**options: Any) -> ApiEmulator:
    """An emulator with the built-in kinds, JwksKeySet, Kopf's peerings and two namespaces."""
    emulator = ApiEmulator(**options)
    bundle = importlib.resources.files("kmock._internal") / "resources.json.gz"
    with importlib.resources.as_file(bundle) as path:  # load_bundled() warns on 3.11+
        emulator.resources.load_path(path)
    emulator.register_custom_resource(
        "jwks.dev",
        "v1alpha1",
        "jwkskeysets",
        kind="JwksKeySet",
        namespaced=True,
        subresources={"status"},
        shortnames={"jwks", "keyset"},
        singular="jwkskeyset",
        verbs={"list", "watch", "get", "create", "patch", "update", "delete", "deletecollection"},
    )
    emulator.register_custom_resource(
        "kopf.dev", "v1", "kopfpeerings", kind="KopfPeering", namespaced=True
    )
    emulator.register_custom_resource(
        "kopf.dev", "v1", "clusterkopfpeerings", kind="ClusterKopfPeering", namespaced=False
    )
    for namespace in ("default", "kube-system"):
        emulator.ensure_namespace(namespace)
    return emulator
