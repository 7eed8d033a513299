"""What the server answers: one synchronous function from a parsed request to response bytes.

Answering synchronously (the snapshot is in memory, and a verifier is microseconds) means
no task, future or request object per request, and responses leave in request order for
free. Each distinct document response is assembled once per second (its Date and
max-age change with the second) and then reused as bytes; any exception below is logged
and answered with a bare 500, never with its text.
"""

import logging
import time
from collections.abc import Callable, Iterator, Mapping

from jwks_operator.server import responses, routing
from jwks_operator.server.hooks import VerifyHandler
from jwks_operator.server.http import TOKEN_CHARS, HttpError, Request
from jwks_operator.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from jwks_operator.server.routing import Route, Router
from jwks_operator.server.snapshot import KeySetEntry, SnapshotStore

logger = logging.getLogger(__name__)

_METHODS_SERVED = (b"GET", b"HEAD")
_FORBIDDEN_VERIFY_HEADERS = frozenset({"content-length", "date", "connection", "transfer-encoding"})
_VALUE_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))

_STATUS_LINES: dict[int, bytes] = {}


class _LatinHeaders(Mapping[str, str]):
    """The request headers as the verify hook's contract has them (latin-1 strings), decoded
    on lookup: the hook reads one or two of the dozen a gateway forwards."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Mapping[bytes, bytes]) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> str:
        try:
            key = name.encode("latin-1")
        except (AttributeError, UnicodeEncodeError):
            raise KeyError(name) from None
        return self._raw[key].decode("latin-1")

    def __iter__(self) -> Iterator[str]:
        return (name.decode("latin-1") for name in self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _verify_header_line(name: str, value: str) -> tuple[bytes, bool]:
    """(the header's wire line, whether it is Cache-Control); b"" for one never sent."""
    lowered = name.lower()
    raw_name = name.encode("latin-1", "replace")
    raw_value = value.encode("latin-1", "replace")
    if (
        lowered in _FORBIDDEN_VERIFY_HEADERS
        or not raw_name
        or raw_name.translate(None, TOKEN_CHARS)
        or raw_value.translate(None, _VALUE_CHARS)
    ):
        return b"", False
    return raw_name + b": " + raw_value + b"\r\n", lowered == "cache-control"


class Clock:
    """The current second, shared by every response built in it (Date, max-age, caches)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self.now = 0.0
        self.second = 0
        self.monotonic = 0.0
        self.date = b""
        self.tick()

    def tick(self) -> None:
        self.now = self._wall()
        self.monotonic = time.monotonic()
        second = int(self.now)
        if second != self.second:
            self.second = second
            self.date = responses.http_date(self.now)


class Responder:
    """Answers requests for one listener; see the module docstring."""

    def __init__(
        self,
        store: SnapshotStore,
        clock: Clock,
        *,
        max_age: int = 300,
        default_keyset: tuple[str, str] | None = None,
        verify_handler: VerifyHandler | None = None,
        serve_keysets: bool = True,
        serve_metrics: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_age = max_age
        self.verify_handler = verify_handler
        self.router = Router(
            default_keyset=default_keyset,
            serve_keysets=serve_keysets,
            serve_metrics=serve_metrics,
        )
        self.metrics = store.metrics
        self.shutting_down = False
        self._responses: dict[tuple[object, ...], tuple[KeySetEntry, bytes]] = {}
        self._second = -1
        self._gzip: dict[bytes, bool] = {}
        self._jwk_set: dict[bytes, bool] = {}
        self._verify_lines: dict[tuple[str, str], tuple[bytes, bool]] = {}
        """Checked verify-handler header lines: most repeat on every answer (issuer, kid,
        Cache-Control, a user's subject), and the check is most of the glue's cost."""

    def respond(self, request: Request, close: bool) -> bytes:
        """Full response bytes; ``close`` adds ``Connection: close``."""
        if close:
            connection = responses.CLOSE
        elif request.http10:
            connection = responses.KEEP_ALIVE
        else:
            connection = b""
        try:
            route = self.router.resolve(request.path)
            status, data = self._dispatch(route, request, connection)
        except HttpError as error:  # well framed, but not a path we can read
            self.metrics.count_request("other", error.status)
            return responses.error(
                error.status,
                error.code,
                error.message,
                head=request.method == b"HEAD",
                date=self.clock.date,
                connection=connection,
            )
        except Exception:
            logger.exception("internal error answering a request")
            status, label = 500, "other"
            data = responses.error(
                500,
                "internal_error",
                "internal error",
                head=request.method == b"HEAD",
                date=self.clock.date,
                connection=connection,
            )
            self.metrics.count_request(label, status)
            return data
        self.metrics.count_request(route.label, status)
        return data

    def _dispatch(self, route: Route, request: Request, connection: bytes) -> tuple[int, bytes]:
        kind = route.kind
        method = request.method
        if kind == routing.VERIFY or kind == routing.VERIFY_PREFIX:
            return self._verify(route, request, connection)
        head = method == b"HEAD"
        date = self.clock.date
        if kind == routing.NOT_FOUND:
            return 404, responses.error(
                404, "not_found", route.message, head=head, date=date, connection=connection
            )
        if method not in _METHODS_SERVED:
            if method == b"OPTIONS":
                allowed = request.headers.get(b"access-control-request-headers")
                return 204, responses.preflight(allowed, date=date, connection=connection)
            return 405, responses.error(
                405,
                "method_not_allowed",
                f"{method.decode('ascii')} is not allowed here",
                head=False,
                date=date,
                connection=connection,
                extra=b"Allow: " + responses.ALLOW + b"\r\n",
            )
        if kind == routing.JWKS or kind == routing.OPENID:
            return self._document(route, request, head, connection)
        if kind == routing.HEALTHZ:
            return 200, responses.simple(
                200, b'{"status":"ok"}', head=head, date=date, connection=connection
            )
        if kind == routing.READYZ:
            if self.store.snapshot.ready and not self.shutting_down:
                return 200, responses.simple(
                    200, b'{"status":"ready"}', head=head, date=date, connection=connection
                )
            return 503, responses.simple(
                503, b'{"status":"not ready"}', head=head, date=date, connection=connection
            )
        if kind == routing.METRICS:
            body = self.metrics.render(self.store.snapshot, self.clock.now)
            return 200, responses.simple(
                200,
                body,
                content_type=METRICS_CONTENT_TYPE.encode(),
                head=head,
                date=date,
                connection=connection,
            )
        # The asterisk target (OPTIONS *) reaches here only with another method.
        return 404, responses.error(
            404, "not_found", "no such route", head=head, date=date, connection=connection
        )

    def _entry(
        self, route: Route, head: bool, connection: bytes
    ) -> tuple[KeySetEntry | None, tuple[int, bytes] | None]:
        snapshot = self.store.snapshot
        entry = snapshot.entries.get((route.namespace, route.name))
        if entry is not None:
            return entry, None
        date = self.clock.date
        if not snapshot.ready:
            return None, (
                503,
                responses.error(
                    503,
                    "not_ready",
                    "the server has not loaded its keysets yet",
                    head=head,
                    date=date,
                    connection=connection,
                    extra=b"Retry-After: 1\r\n",
                ),
            )
        message = f"no keyset {route.namespace}/{route.name}"
        return None, (
            404,
            responses.error(404, "not_found", message, head=head, date=date, connection=connection),
        )

    def _document(
        self, route: Route, request: Request, head: bool, connection: bytes
    ) -> tuple[int, bytes]:
        entry, failure = self._entry(route, head, connection)
        if failure is not None:
            return failure
        assert entry is not None
        is_jwks = route.kind == routing.JWKS
        document = entry.jwks if is_jwks else entry.openid
        if document is None:
            date = self.clock.date
            if is_jwks:
                return 503, responses.error(
                    503,
                    "unavailable",
                    entry.unavailable or "no servable JWKS",
                    head=head,
                    date=date,
                    connection=connection,
                    extra=b"Retry-After: 10\r\n",
                )
            return 404, responses.error(
                404,
                "not_found",
                f"keyset {route.namespace}/{route.name} has no issuer, so no discovery document",
                head=head,
                date=date,
                connection=connection,
            )
        headers = request.headers
        accept_encoding = headers.get(b"accept-encoding")
        gzip = accept_encoding is not None and self._accepts_gzip(accept_encoding)
        jwk_set = False
        if is_jwks:
            accept = headers.get(b"accept")
            jwk_set = accept is not None and self._wants_jwk_set(accept)
        selected = document.gzip_etag if gzip else document.etag
        other = document.etag if gzip else document.gzip_etag
        matched: str | None = None
        if_none_match = headers.get(b"if-none-match")
        if if_none_match is not None:
            if if_none_match == selected.encode():  # what caches send: skip the parse
                matched = selected
            else:
                matched = responses.matching_etag(if_none_match, (selected, other))
        else:
            if_modified_since = headers.get(b"if-modified-since")
            if if_modified_since is not None and responses.not_modified_since(
                if_modified_since, document.modified
            ):
                matched = selected
        status = 200 if matched is None else 304
        if self._second != self.clock.second:
            self._responses.clear()
            self._second = self.clock.second
        key = (route, gzip, jwk_set, head, matched, connection)
        cached = self._responses.get(key)
        if cached is not None and cached[0] is entry:
            return status, cached[1]
        data = responses.document(
            status=status,
            body=document.gzip_body if gzip else document.body,
            content_type=responses.JWK_SET_JSON if jwk_set else responses.JSON,
            etag=matched or selected,
            last_modified=document.last_modified,
            cache_seconds=responses.max_age(self.max_age, entry.next_change, self.clock.now),
            vary=responses.VARY_JWKS if is_jwks else responses.VARY_ENCODING,
            gzip=gzip,
            head=head,
            date=self.clock.date,
            connection=connection,
        )
        if len(self._responses) >= 8192:
            self._responses.clear()
        self._responses[key] = (entry, data)
        return status, data

    def _accepts_gzip(self, value: bytes) -> bool:
        known = self._gzip.get(value)
        if known is None:
            known = responses.accepts_gzip(value)
            if len(self._gzip) >= 1024:
                self._gzip.clear()
            self._gzip[value] = known
        return known

    def _wants_jwk_set(self, value: bytes) -> bool:
        known = self._jwk_set.get(value)
        if known is None:
            known = responses.wants_jwk_set(value)
            if len(self._jwk_set) >= 1024:
                self._jwk_set.clear()
            self._jwk_set[value] = known
        return known

    def _verify(self, route: Route, request: Request, connection: bytes) -> tuple[int, bytes]:
        head = request.method == b"HEAD"
        date = self.clock.date
        if self.verify_handler is None:
            return 404, responses.error(
                404,
                "not_found",
                "token verification is not available in this server",
                head=head,
                date=date,
                connection=connection,
            )
        entry, failure = self._entry(route, head, connection)
        if failure is not None:
            return failure
        assert entry is not None
        headers = _LatinHeaders(request.headers)
        query = b"" if route.kind == routing.VERIFY_PREFIX else request.query
        status, extra_headers, body = self.verify_handler(
            entry, request.method.decode("ascii"), headers, query.decode("latin-1")
        )
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"verify handler returned status {status!r}")
        status_line = _STATUS_LINES.get(status)
        if status_line is None:  # at most 400 of them: the status was checked just above
            status_line = _STATUS_LINES[status] = responses.status_line(status)
        parts = [status_line, b"Date: ", date, b"\r\n"]
        has_cache_control = False
        checked = self._verify_lines
        for name, value in extra_headers:
            known = checked.get((name, value))
            if known is None:
                known = _verify_header_line(name, value)
                if len(checked) >= 1024:
                    checked.clear()
                checked[(name, value)] = known
            line, is_cache_control = known
            if not line:
                logger.warning("dropped unsafe header %r from the verify handler", name[:64])
                continue
            has_cache_control = has_cache_control or is_cache_control
            parts.append(line)
        if not has_cache_control:
            parts.append(responses.NO_STORE)
        parts += [b"X-Content-Type-Options: nosniff\r\n", connection]
        if status in (204, 304):  # no body, and no Content-Length either
            parts.append(b"\r\n")
        else:
            parts += [b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n"]
            if not head:
                parts.append(body)
        return status, b"".join(parts)
