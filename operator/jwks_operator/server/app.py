"""What the server answers: one aiohttp request handler over the snapshot.

aiohttp parses the request and writes the response; this module decides the answer. A
document response is a lookup in the snapshot plus, at most once per second per variant,
building its header dict (its Date and max-age change with the second); the body is the
pre-encoded bytes of the entry. Any exception below is logged and answered with a bare
JSON 500, never with its text.

``Responder(store, *, max_age, default_keyset, verify_handler, serve_keysets,
serve_metrics, limits)``: ``await responder.handle(request)`` is the ``web.Server``
handler; ``responder.shutting_down`` makes ``/readyz`` 503 and every answer close its
connection.
"""

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from jwks_operator.server import representation, routing
from jwks_operator.server.connections import Limits, head_received
from jwks_operator.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from jwks_operator.server.routing import MalformedTarget, Route, Router
from jwks_operator.server.snapshot import KeySetEntry, SnapshotStore
from jwks_operator.verification import handle_verify

logger = logging.getLogger(__name__)

VerifyResponse = tuple[int, Sequence[tuple[str, str]], bytes]


class VerifyHandler(Protocol):
    """The ``/verify`` contract (``jwks_operator.verification.handle_verify``).

    Called synchronously on the event loop with the keyset's entry, the method, the
    request headers (lower-case names, latin-1 views of the wire bytes, repeated headers
    joined with ", ") and the raw query. The returned headers must not include
    Content-Length, Date or Connection; an unsafe one is dropped and logged.
    """

    def __call__(
        self, entry: KeySetEntry, method: str, headers: Mapping[str, str], query: str, /
    ) -> VerifyResponse: ...


ALLOW: Final = "GET, HEAD, OPTIONS"
PREFLIGHT_MAX_AGE: Final = "86400"
_METHODS_SERVED: Final = frozenset({"GET", "HEAD"})
SERVER: Final = "jwks-operator"
"""Instead of aiohttp's default, which names the Python and aiohttp versions."""
_COMMON: Final = {
    "Access-Control-Allow-Origin": "*",
    "X-Content-Type-Options": "nosniff",
    "Server": SERVER,
}
_NO_STORE: Final = {**_COMMON, "Cache-Control": "no-store"}
_VARY_JWKS: Final = "Accept, Accept-Encoding"
_VARY_ENCODING: Final = "Accept-Encoding"
_FORBIDDEN_VERIFY_HEADERS: Final = frozenset(
    {"content-length", "date", "connection", "transfer-encoding"}
)
_TOKEN_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_TOKEN_LIST_CHARS: Final = _TOKEN_CHARS | frozenset(", \t")


def _json_body(payload: Mapping[str, str]) -> bytes:
    return json.dumps(payload).encode()


class _LatinHeaders(Mapping[str, str]):
    """Request headers as the verify contract has them, converted on lookup: the handler
    reads one or two of the dozen a gateway forwards. aiohttp decodes values as UTF-8 with
    surrogate escapes; the contract's strings are latin-1 views of the same bytes."""

    __slots__ = ("_raw",)

    def __init__(self, raw: CIMultiDictProxy[str]) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> str:
        values = self._raw.getall(name)
        value = values[0] if len(values) == 1 else ", ".join(values)
        if value.isascii():
            return value
        return value.encode("utf-8", "surrogateescape").decode("latin-1")

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name.lower() for name in self._raw))

    def __len__(self) -> int:
        return len(set(name.lower() for name in self._raw))


def _verify_header(name: str, value: str) -> tuple[str, str] | None:
    """The header as aiohttp should send it (real text; aiohttp encodes UTF-8), or None."""
    if (
        not name
        or name.lower() in _FORBIDDEN_VERIFY_HEADERS
        or not _TOKEN_CHARS.issuperset(name)
        or any((ch < " " and ch != "\t") or ch == "\x7f" for ch in value)
    ):
        return None
    if value.isascii():
        return name, value
    try:  # the contract's latin-1 view of UTF-8 bytes, back to the text aiohttp will encode
        return name, value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


StatusSource = Callable[[str, str], Mapping[str, Any] | None]
"""``source(namespace, name)``: the keyset's status document (never key material), or None
for a keyset it does not know. Called on the event loop: a lookup, no I/O."""


class Responder:
    """Answers requests for one listener; see the module docstring."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        max_age: int = 300,
        default_keyset: tuple[str, str] | None = None,
        verify_handler: VerifyHandler | None = handle_verify,
        serve_keysets: bool = True,
        serve_metrics: bool = True,
        limits: Limits | None = None,
        status_source: StatusSource | None = None,
    ) -> None:
        self.store = store
        self.status_source = status_source
        self.max_age = max_age
        self.verify_handler = verify_handler
        self.limits = limits or Limits()
        self.router = Router(
            default_keyset=default_keyset,
            serve_keysets=serve_keysets,
            serve_metrics=serve_metrics,
            serve_status=status_source is not None and serve_keysets,
        )
        self.metrics = store.metrics
        self.shutting_down = False
        self._headers: dict[tuple[object, ...], tuple[KeySetEntry, int, dict[str, str]]] = {}
        self._second = -1
        self._gzip: dict[str, bool] = {}
        self._jwk_set: dict[str, bool] = {}
        self._verify_headers: dict[tuple[str, str], tuple[str, str] | None] = {}
        """Checked verify-handler headers: most repeat on every answer (issuer, kid,
        Cache-Control, a user's subject), and the check is most of the glue's cost."""

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        head_received(request)
        label = "other"
        try:
            if request.body_exists:
                refused = self._refuse_body(request)
                if refused is not None:
                    return await self._answer_and_close(request, label, refused)
            raw = request.raw_path
            if len(raw) > self.limits.max_target:
                refused = _error(414, "uri_too_long", "request target too long")
                return await self._answer_and_close(request, label, refused)
            path, query = routing.split_target(raw)
            route = self.router.resolve(path)
            label = route.label
            response = self._dispatch(route, request, query)
            if request.body_exists and "Expect" in request.headers:
                # The body has not been sent and will not be: do not wait for it.
                return await self._answer_and_close(request, label, response)
        except MalformedTarget as error:
            refused = _error(400, "bad_request", str(error))
            return await self._answer_and_close(request, label, refused)
        except Exception:
            logger.exception("internal error answering a request")
            response = _error(500, "internal_error", "internal error")
        self.metrics.count_request(label, response.status)
        if self.shutting_down:
            response.force_close()
        return response

    def _refuse_body(self, request: web.BaseRequest) -> web.Response | None:
        """Bodies are never read: aiohttp skips a small one (and keeps the connection); a
        large or chunked one is refused."""
        if "Transfer-Encoding" in request.headers:
            return _error(411, "length_required", "request bodies need a Content-Length")
        if (request.content_length or 0) > self.limits.max_body:
            return _error(413, "payload_too_large", "request body too large")
        return None

    async def _answer_and_close(
        self, request: web.BaseRequest, label: str, response: web.Response
    ) -> web.Response:
        """Write the answer and close at once: aiohttp would otherwise linger for up to
        10 s reading a body that is refused, or was never going to be sent."""
        self.metrics.count_request(label, response.status)
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()
        return response

    def _dispatch(self, route: Route, request: web.BaseRequest, query: str) -> web.Response:
        kind = route.kind
        method = request.method
        if kind == routing.VERIFY or kind == routing.VERIFY_PREFIX:
            return self._verify(route, request, query)
        if kind == routing.NOT_FOUND:
            return _error(404, "not_found", route.message)
        if method not in _METHODS_SERVED:
            if method == "OPTIONS":
                return _preflight(request.headers.get("Access-Control-Request-Headers"))
            response = _error(405, "method_not_allowed", f"{method} is not allowed here")
            response.headers["Allow"] = ALLOW
            return response
        if kind == routing.JWKS or kind == routing.OPENID:
            return self._document(route, request)
        if kind == routing.STATUS:
            return self._status(route)
        if kind == routing.HEALTHZ:
            return _simple(200, b'{"status":"ok"}')
        if kind == routing.READYZ:
            if self.store.snapshot.ready and not self.shutting_down:
                return _simple(200, b'{"status":"ready"}')
            return _simple(503, b'{"status":"not ready"}')
        if kind == routing.METRICS:
            return _simple(200, self.metrics.render(), METRICS_CONTENT_TYPE)
        # The asterisk target (OPTIONS *) reaches here only with another method.
        return _error(404, "not_found", "no such route")

    def _status(self, route: Route) -> web.Response:
        """The status document: live data, so never cached by anyone (``no-store``)."""
        assert self.status_source is not None  # the router serves the route only then
        document = self.status_source(route.namespace, route.name)
        if document is None:
            return _error(404, "not_found", f"no keyset {route.namespace}/{route.name}")
        return _simple(200, json.dumps(document, separators=(",", ":")).encode())

    def _entry(self, route: Route) -> KeySetEntry | web.Response:
        snapshot = self.store.snapshot
        entry = snapshot.entries.get((route.namespace, route.name))
        if entry is not None:
            return entry
        if not snapshot.ready:
            response = _error(503, "not_ready", "the server has not loaded its keysets yet")
            response.headers["Retry-After"] = "1"
            return response
        return _error(404, "not_found", f"no keyset {route.namespace}/{route.name}")

    def _document(self, route: Route, request: web.BaseRequest) -> web.Response:
        entry = self._entry(route)
        if isinstance(entry, web.Response):
            return entry
        is_jwks = route.kind == routing.JWKS
        document = entry.jwks if is_jwks else entry.openid
        if document is None:
            if is_jwks:
                response = _error(503, "unavailable", entry.unavailable or "no servable JWKS")
                response.headers["Retry-After"] = "10"
                return response
            return _error(
                404,
                "not_found",
                f"keyset {route.namespace}/{route.name} has no issuer, so no discovery document",
            )
        headers = request.headers
        accept_encoding = headers.get("Accept-Encoding")
        gzip = accept_encoding is not None and self._accepts_gzip(accept_encoding)
        jwk_set = False
        if is_jwks:
            accept = headers.get("Accept")
            jwk_set = accept is not None and self._wants_jwk_set(accept)
        selected = document.gzip_etag if gzip else document.etag
        other = document.etag if gzip else document.gzip_etag
        matched: str | None = None
        if_none_match = headers.get("If-None-Match")
        if if_none_match is not None:
            if if_none_match == selected:  # what caches send: skip the parse
                matched = selected
            else:
                matched = representation.matching_etag(if_none_match, (selected, other))
        else:
            if_modified_since = headers.get("If-Modified-Since")
            if if_modified_since is not None and representation.not_modified_since(
                if_modified_since, document.modified
            ):
                matched = selected
        now = time.time()
        second = int(now)
        if self._second != second:
            self._headers.clear()
            self._second = second
        key = (route, gzip, jwk_set, matched)
        cached = self._headers.get(key)
        if cached is None or cached[0] is not entry:
            status = 200 if matched is None else 304
            cache_seconds = representation.max_age(self.max_age, entry.next_change, now)
            fields = {
                "Cache-Control": f"public, max-age={cache_seconds}",
                "ETag": matched or selected,
                "Vary": _VARY_JWKS if is_jwks else _VARY_ENCODING,
                **_COMMON,
            }
            if status == 200:
                # A 304 carries only what updates a stored response (RFC 9110 15.4.5).
                fields["Last-Modified"] = document.last_modified
                fields["Content-Type"] = (
                    representation.JWK_SET_JSON if jwk_set else representation.JSON
                )
                if gzip:
                    fields["Content-Encoding"] = "gzip"
            if len(self._headers) >= 8192:
                self._headers.clear()
            cached = self._headers[key] = (entry, status, fields)
        _, status, fields = cached
        if status == 304:
            return web.Response(status=304, headers=fields)
        return web.Response(body=document.gzip_body if gzip else document.body, headers=fields)

    def _accepts_gzip(self, value: str) -> bool:
        known = self._gzip.get(value)
        if known is None:
            known = representation.accepts_gzip(value)
            if len(self._gzip) >= 1024:
                self._gzip.clear()
            self._gzip[value] = known
        return known

    def _wants_jwk_set(self, value: str) -> bool:
        known = self._jwk_set.get(value)
        if known is None:
            known = representation.wants_jwk_set(value)
            if len(self._jwk_set) >= 1024:
                self._jwk_set.clear()
            self._jwk_set[value] = known
        return known

    def _verify(self, route: Route, request: web.BaseRequest, query: str) -> web.Response:
        if self.verify_handler is None:
            return _error(404, "not_found", "token verification is not available in this server")
        entry = self._entry(route)
        if isinstance(entry, web.Response):
            return entry
        if route.kind == routing.VERIFY_PREFIX:
            query = ""  # the client's own query, appended by Envoy: never policy overrides
        status, extra_headers, body = self.verify_handler(
            entry, request.method, _LatinHeaders(request.headers), query
        )
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"verify handler returned status {status!r}")
        fields: list[tuple[str, str]] = [("X-Content-Type-Options", "nosniff"), ("Server", SERVER)]
        has_cache_control = has_content_type = False
        checked = self._verify_headers
        for name, value in extra_headers:
            try:
                safe = checked[(name, value)]
            except KeyError:
                safe = _verify_header(name, value)
                if len(checked) >= 1024:
                    checked.clear()
                checked[(name, value)] = safe
            if safe is None:
                logger.warning("dropped unsafe header %r from the verify handler", name[:64])
                continue
            lowered = safe[0].lower()
            has_cache_control = has_cache_control or lowered == "cache-control"
            has_content_type = has_content_type or lowered == "content-type"
            fields.append(safe)
        if not has_cache_control:
            fields.append(("Cache-Control", "no-store"))
        if status in (204, 304):
            return web.Response(status=status, headers=CIMultiDict(fields))
        if not has_content_type:
            fields.append(("Content-Type", "application/json"))
        return web.Response(status=status, body=body, headers=CIMultiDict(fields))


def _simple(status: int, body: bytes, content_type: str = "application/json") -> web.Response:
    """An uncacheable response (errors, health, metrics)."""
    return web.Response(
        status=status, body=body, headers={**_NO_STORE, "Content-Type": content_type}
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return _simple(status, _json_body({"error": code, "message": message}))


def _preflight(request_headers: str | None) -> web.Response:
    """204 answer to OPTIONS: a CORS preflight when it is one, the Allow list anyway."""
    fields = {
        "Allow": ALLOW,
        "Access-Control-Allow-Methods": ALLOW,
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        "Vary": "Access-Control-Request-Headers",
        **_COMMON,
    }
    if (
        request_headers
        and len(request_headers) <= 1024
        and _TOKEN_LIST_CHARS.issuperset(request_headers)
    ):
        fields["Access-Control-Allow-Headers"] = request_headers
    return web.Response(status=204, headers=fields)
