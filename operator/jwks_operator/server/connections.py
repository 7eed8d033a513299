"""Bounds on slow and hostile clients that aiohttp has no setting for.

aiohttp bounds the request line, header sizes and count, idle keep-alive time, and the
queue of pipelined requests it has parsed but not answered. It has no limit on the number
of connections, no deadline for a request head that trickles in (a slowloris keeps a
connection forever by sending a byte now and then), and no deadline for a client that
stops reading its answers. ``GuardedServer`` adds exactly those, with aiohttp's public
API only: ``web.Server`` is the protocol factory the sites hand to ``create_server``, so
its ``__call__`` wraps each ``web.RequestHandler`` in a ``GuardedConnection``, an
``asyncio.Protocol`` that forwards every callback and watches three things:

- a connection owes a complete request head within ``header_timeout`` of opening, and of
  the first byte after the previous head (the request handler reports each complete head
  through ``head_received``); otherwise it is closed;
- a connection whose writes stay paused (the peer does not read) for ``send_timeout`` is
  aborted; so is one still closing (flushing to such a peer) after that long;
- beyond ``max_connections`` a new connection is aborted at once.

One tick a second (``sweep``) applies the deadlines: no timer per connection.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from jwks_operator.server.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client may make the server hold or wait for."""

    max_target: int = 2048
    max_header_line: int = 8190
    max_headers: int = 100
    max_body: int = 65536
    header_timeout: float = 10.0
    keepalive_timeout: float = 60.0
    send_timeout: float = 30.0
    max_connections: int = 10000
    shutdown_grace: float = 10.0


class _RefusalLog(logging.Logger):
    """aiohttp logs every request its parser refuses with a traceback at ERROR; a client
    can send those at will, so they are one DEBUG line here (the client got its 400)."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if self.isEnabledFor(logging.DEBUG):
            reason = exc_info.__class__.__name__ if isinstance(exc_info, BaseException) else ""
            self.debug("%s (%s)", str(msg) % args if args else msg, reason)


_REFUSAL_LOG = _RefusalLog("jwks_operator.server.refused")
_REFUSAL_LOG.parent = logging.getLogger("jwks_operator.server")


class GuardedServer(web.Server):
    """aiohttp's low-level server whose connections are ``GuardedConnection``s."""

    def __init__(self, handler: Any, *, limits: Limits, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(
            handler,
            keepalive_timeout=limits.keepalive_timeout,
            max_line_size=limits.max_header_line,
            max_field_size=limits.max_header_line,
            max_headers=limits.max_headers,
            logger=_REFUSAL_LOG,
            **kwargs,
        )
        self.limits = limits
        self.guarded: set[GuardedConnection] = set()
        self.closing = False
        self.now = 0.0
        """The loop's clock at the last tick (or start): deadlines are checked once a second."""
        self._metrics = metrics
        self._heads_pending = asyncio.Event()

    def __call__(self) -> "GuardedConnection":  # type: ignore[override]
        return GuardedConnection(self, super().__call__())

    def admit(self, connection: "GuardedConnection") -> bool:
        if self.closing or len(self.guarded) >= self.limits.max_connections:
            return False
        self.guarded.add(connection)
        self._metrics.open_connections = len(self.guarded)
        return True

    def discharge(self, connection: "GuardedConnection") -> None:
        self.guarded.discard(connection)
        self._metrics.open_connections = len(self.guarded)
        self.check_heads()

    def sweep(self, now: float) -> None:
        self.now = now
        for connection in list(self.guarded):
            connection.check(now)

    def begin_close(self) -> None:
        """Refuse new connections and close those between requests; see ``heads_drained``."""
        self.closing = True
        for connection in list(self.guarded):
            if connection.idle:
                connection.inner.force_close()
        self.check_heads()

    async def heads_drained(self) -> None:
        """Wait until no connection is part-way through a request head (the caller bounds
        the wait: ``limits.shutdown_grace``)."""
        self.check_heads()
        await self._heads_pending.wait()

    def check_heads(self) -> None:
        if self.closing and not any(c.partial for c in self.guarded):
            self._heads_pending.set()


class GuardedConnection(asyncio.Protocol):
    """One client connection: aiohttp's handler inside, the deadlines around it."""

    __slots__ = (
        "_admitted",
        "_closing_since",
        "_paused_since",
        "_transport",
        "deadline",
        "inner",
        "partial",
        "server",
    )

    def __init__(self, server: GuardedServer, inner: web.RequestHandler) -> None:
        self.server = server
        self.inner = inner
        self.deadline = 0.0
        """When the current request head is due (0: none is pending)."""
        self.partial = False
        """Bytes arrived since the last complete head (a request is part-way in)."""
        self._transport: asyncio.Transport | None = None
        self._paused_since = 0.0
        self._closing_since = 0.0
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self.server.admit(self):
            self._transport.abort()
            return
        self._admitted = True
        self.deadline = self.server.now + self.server.limits.header_timeout
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self.partial = False
            self.server.discharge(self)
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if not self.partial:
            self.partial = True
            if not self.deadline:
                self.deadline = self.server.now + self.server.limits.header_timeout
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self._admitted:
            return None
        return self.inner.eof_received()  # type: ignore[func-returns-value]

    def pause_writing(self) -> None:
        self._paused_since = self.server.now
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self._paused_since = 0.0
        self.inner.resume_writing()

    @property
    def idle(self) -> bool:
        """Between requests: no head part-way in, no answer stuck behind a slow reader.
        (Closing such a connection flushes what was already written.)"""
        return not self.partial and not self._paused_since

    def head_received(self) -> None:
        """Called by the request handler for every complete request head."""
        self.deadline = 0.0
        if self.partial:
            self.partial = False
            if self.server.closing:
                self.server.check_heads()

    def check(self, now: float) -> None:
        transport = self._transport
        if transport is None:
            return
        send_timeout = self.server.limits.send_timeout
        if transport.is_closing():
            # close() waits for a flush that a peer which stopped reading never allows.
            if not self._closing_since:
                self._closing_since = now
            elif now - self._closing_since > send_timeout:
                transport.abort()
        elif self._paused_since:
            if now - self._paused_since > send_timeout:
                transport.abort()
        elif self.deadline and now > self.deadline:
            transport.close()


def head_received(request: web.BaseRequest) -> None:
    """Tell the request's connection that a complete head arrived (see the module docstring)."""
    transport = request.transport
    if transport is not None:
        connection = transport.get_protocol()
        if isinstance(connection, GuardedConnection):
            connection.head_received()
