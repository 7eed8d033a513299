"""The socket side: an asyncio.Protocol per connection and the manager that polices them.

A Protocol with pre-assembled response bytes is what lets one Python process keep up with
a native web server (see bench/README.md): per request there is one ``data_received``, a
parse, a dict lookup and one ``transport.write``. Pipelined requests are answered in order
from the same buffer.

Slow or hostile clients are bounded without a timer per connection: one tick per second
(the manager's) closes connections whose request head is late (408), which sit idle past
the keep-alive timeout, or whose peer stopped reading (aborted). Writes past the
transport's high-water mark pause reading, so a client that pipelines without reading
cannot make the server buffer without limit.
"""

import asyncio
import logging
import re
from typing import cast

from jwks_operator.server import responses
from jwks_operator.server.app import Clock, Responder
from jwks_operator.server.http import HttpError, Limits, Request, parse_head
from jwks_operator.server.metrics import Metrics

logger = logging.getLogger(__name__)

_CRLF2 = b"\r\n\r\n"
_BARE_LF = re.compile(rb"(?<!\r)\n")
_MAX_CACHED_HEAD = 2048
_PARSED_CACHE_SIZE = 1024


class ConnectionManager:
    """Tracks open connections for the timeouts, the connection limit and graceful close."""

    def __init__(self, clock: Clock, limits: Limits, metrics: Metrics) -> None:
        self.clock = clock
        self.limits = limits
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self.parsed: dict[bytes, Request] = {}
        """Parsed heads by their bytes: clients repeat identical heads, parsing is the
        largest per-request cost, and a Request is immutable. Bounded; cleared when full."""
        self.drained = asyncio.Event()
        """Set once closing and every connection is gone."""
        self._metrics = metrics

    def added(self, connection: "HttpConnection") -> bool:
        if self.closing or len(self.connections) >= self.limits.max_connections:
            return False
        self.connections.add(connection)
        self._metrics.open_connections = len(self.connections)
        return True

    def removed(self, connection: "HttpConnection") -> None:
        self.connections.discard(connection)
        self._metrics.open_connections = len(self.connections)
        if self.closing and not self.connections:
            self.drained.set()

    def sweep(self) -> None:
        now = self.clock.monotonic
        for connection in list(self.connections):
            connection.check_timeouts(now)

    def begin_close(self) -> None:
        self.closing = True
        for connection in list(self.connections):
            connection.close_when_idle()
        if not self.connections:
            self.drained.set()


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "_buffer",
        "_closed",
        "_closing_since",
        "_discard",
        "_last_activity",
        "_manager",
        "_paused",
        "_paused_since",
        "_request_started",
        "_responder",
        "_scan_from",
        "_transport",
    )

    def __init__(self, manager: ConnectionManager, responder: Responder) -> None:
        self._manager = manager
        self._responder = responder
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._discard = 0
        self._closed = False
        self._paused = False
        self._paused_since = 0.0
        self._closing_since = 0.0
        self._scan_from = 0
        """How much of an incomplete head was already searched: a client trickling bytes
        must not make each new byte cost a rescan of everything before it."""
        now = manager.clock.monotonic
        # A new connection owes its first request head within the header timeout.
        self._request_started = now
        self._last_activity = now

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self._manager.added(self):
            self._closed = True
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._manager.removed(self)

    def eof_received(self) -> bool:
        # The peer will send nothing more; let pending responses flush, then close.
        return False

    def pause_writing(self) -> None:
        self._paused = True
        self._paused_since = self._manager.clock.monotonic
        if self._transport is not None and not self._closed:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self._paused_since = 0.0
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()
            if self._buffer:
                self._process(self._buffer)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        buffer = self._buffer + data if self._buffer else data
        self._buffer = b""
        self._process(buffer)

    # -- request handling -------------------------------------------------------------

    def _process(self, buffer: bytes) -> None:
        transport = self._transport
        assert transport is not None
        limits = self._manager.limits
        parsed = self._manager.parsed
        responder = self._responder
        self._buffer = b""
        while buffer:
            if self._discard:
                skipped = min(self._discard, len(buffer))
                self._discard -= skipped
                buffer = buffer[skipped:]
                self._scan_from = 0
                continue
            if buffer[:2] == b"\r\n":  # RFC 9112 2.2: ignore blank lines before a request
                buffer = buffer[2:]
                self._scan_from = 0
                continue
            end = buffer.find(_CRLF2, self._scan_from)
            if end < 0 or end > limits.max_head:
                self._incomplete(buffer, end)
                return
            self._scan_from = 0
            head = buffer[:end]
            buffer = buffer[end + 4 :]
            request = parsed.get(head)
            if request is None:
                try:
                    request = parse_head(head, limits)
                except HttpError as error:
                    self._refuse(error.status, error.code, error.message)
                    return
                if len(head) <= _MAX_CACHED_HEAD:
                    if len(parsed) >= _PARSED_CACHE_SIZE:
                        parsed.clear()
                    parsed[head] = request
            close = not request.keep_alive or self._manager.closing
            if request.body_length:
                if request.expect_continue:
                    close = True  # the body has not been sent; do not wait for it
                else:
                    self._discard = request.body_length
            transport.write(responder.respond(request, close))
            self._request_started = 0.0
            if close:
                self._close()
                return
            if self._paused:
                self._buffer = buffer
                return
        self._last_activity = self._manager.clock.monotonic
        if self._discard:
            self._request_started = self._last_activity

    def _incomplete(self, buffer: bytes, end: int) -> None:
        limits = self._manager.limits
        if end > limits.max_head or len(buffer) > limits.max_head:
            line_end = buffer.find(b"\r\n", 0, limits.max_head)
            if line_end < 0 or line_end > limits.max_target + 64:
                self._refuse(414, "uri_too_long", "request line too long")
            else:
                self._refuse(431, "headers_too_large", "request head too large")
            return
        if _BARE_LF.search(buffer, self._scan_from):
            self._refuse(400, "bad_request", "bare LF in the request head")
            return
        self._scan_from = max(0, len(buffer) - 3)
        self._buffer = buffer
        if not self._request_started:
            self._request_started = self._manager.clock.monotonic

    def _refuse(self, status: int, code: str, message: str) -> None:
        transport = self._transport
        assert transport is not None
        self._responder.metrics.count_request("other", status)
        transport.write(
            responses.error(
                status,
                code,
                message,
                head=False,
                date=self._responder.clock.date,
                connection=responses.CLOSE,
            )
        )
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._buffer = b""
        if self._transport is not None:
            self._transport.close()

    # -- policing (called by the manager) ---------------------------------------------

    def check_timeouts(self, now: float) -> None:
        transport = self._transport
        if transport is None:
            return
        limits = self._manager.limits
        if transport.is_closing():
            # close() waits for a flush that a peer which stopped reading never allows.
            if not self._closing_since:
                self._closing_since = now
            elif now - self._closing_since > limits.send_timeout:
                transport.abort()
            return
        if self._paused_since:
            if now - self._paused_since > limits.send_timeout:
                self._closed = True
                transport.abort()
            return
        if self._request_started:
            if now - self._request_started > limits.header_timeout:
                if self._buffer or self._discard:
                    self._refuse(408, "request_timeout", "request not received in time")
                else:
                    self._close()
        elif now - self._last_activity > limits.keepalive_timeout:
            self._close()

    def abort(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    def close_when_idle(self) -> None:
        """Graceful shutdown: close now if between requests, else after the next response."""
        if self._closed or self._transport is None:
            return
        if not self._buffer and not self._discard:
            self._close()
