"""Running the HTTP server: listeners, the one-second tick, graceful shutdown on SIGTERM.

Shared by ``jwks-operator serve`` (fed by the Kubernetes watch) and standalone mode (fed by
files): both build a ``SnapshotStore``, keep it current, and call ``run_server``.

``ServerSettings(host, port, metrics_port=None, max_age=300, default_keyset=None,
limits=Limits())``: what to listen on and how to answer.
``JwksServer(store, settings, *, verify_handler=None)``: ``await start()`` binds (port 0
picks a free port: see ``ports``), ``await shutdown()`` stops accepting, lets in-flight
requests finish (up to ``limits.shutdown_grace`` seconds) and closes every connection.
``run_server(store, settings, *, stop=None, verify_handler=None, on_started=None)``: start,
wait for ``stop`` (default: SIGTERM or SIGINT), shut down gracefully, return.
``settle_heap()``: call after loading many keysets (start() and the first Kubernetes list
do) so that garbage collection does not pause requests for tens of milliseconds.
"""

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from jwks_operator.server.app import Clock, Responder
from jwks_operator.server.hooks import VerifyHandler
from jwks_operator.server.http import Limits
from jwks_operator.server.protocol import ConnectionManager, HttpConnection
from jwks_operator.server.snapshot import SnapshotStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    metrics_port: int | None = None
    """When set, /metrics moves to this port (which also answers /healthz and /readyz)."""
    max_age: int = 300
    default_keyset: tuple[str, str] | None = None
    limits: Limits = field(default_factory=Limits)


class JwksServer:
    """The listeners of one process over one store; see the module docstring."""

    def __init__(
        self,
        store: SnapshotStore,
        settings: ServerSettings,
        *,
        verify_handler: VerifyHandler | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = Clock()
        self.manager = ConnectionManager(self.clock, settings.limits, store.metrics)
        separate_metrics = settings.metrics_port is not None
        self.responders = [
            Responder(
                store,
                self.clock,
                max_age=settings.max_age,
                default_keyset=settings.default_keyset,
                verify_handler=verify_handler,
                serve_metrics=not separate_metrics,
            )
        ]
        if separate_metrics:
            self.responders.append(
                Responder(store, self.clock, serve_keysets=False, serve_metrics=True)
            )
        self._servers: list[asyncio.Server] = []
        self._tick: asyncio.TimerHandle | None = None
        self.ports: list[int] = []
        """Bound ports, main first (then the metrics port, when separate)."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ports = [self.settings.port]
        if self.settings.metrics_port is not None:
            ports.append(self.settings.metrics_port)
        for port, responder in zip(ports, self.responders, strict=True):
            server = await loop.create_server(
                lambda responder=responder: HttpConnection(self.manager, responder),  # type: ignore[misc]
                self.settings.host,
                port,
                backlog=1024,
                reuse_address=True,
            )
            self._servers.append(server)
            bound = server.sockets[0].getsockname()
            self.ports.append(int(bound[1]))
            logger.info("listening on %s:%d", self.settings.host, bound[1])
        settle_heap()
        self._schedule_tick()

    @property
    def port(self) -> int:
        return self.ports[0]

    def _schedule_tick(self) -> None:
        loop = asyncio.get_running_loop()
        # Tick just after each wall-clock second so Date headers change on the second.
        delay = 1.0 - (self.clock.now % 1.0) + 0.001
        self._tick = loop.call_later(delay, self._on_tick)

    def _on_tick(self) -> None:
        self.clock.tick()
        try:
            self.manager.sweep()
        except Exception:  # the tick must survive whatever one connection does
            logger.exception("connection sweep failed")
        self._schedule_tick()

    async def shutdown(self) -> None:
        """Stop accepting, finish in-flight requests, close every connection."""
        grace = self.settings.limits.shutdown_grace
        for responder in self.responders:
            responder.shutting_down = True
        for server in self._servers:
            server.close()
        self.manager.begin_close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.manager.drained.wait(), timeout=grace)
        for connection in list(self.manager.connections):
            connection.abort()
        if self._tick is not None:
            self._tick.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)
        logger.info("server stopped")


def settle_heap() -> None:
    """Move what exists now (imports, the loaded snapshot) out of the garbage collector's view.

    A full collection over a process holding 10,000 keysets takes ~40 ms (see
    bench/serve_scale_bench.py): a pause every in-flight request would wait for. Objects
    created per request die young; what is long-lived is loaded at start, so freezing it
    once keeps later full collections short. Snapshot entries have no reference cycles, so
    replaced ones are still freed by reference counting.
    """
    gc.collect()
    gc.freeze()


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the graceful path) instead of killing the loop."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)


async def run_server(
    store: SnapshotStore,
    settings: ServerSettings,
    *,
    stop: asyncio.Event | None = None,
    verify_handler: VerifyHandler | None = None,
    on_started: Callable[[JwksServer], None] | None = None,
) -> None:
    """Serve until ``stop`` is set (by default on SIGTERM/SIGINT), then shut down gracefully."""
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    server = JwksServer(store, settings, verify_handler=verify_handler)
    await server.start()
    if on_started is not None:
        on_started(server)
    try:
        await stop.wait()
    finally:
        await server.shutdown()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests and benches that need it up front)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
