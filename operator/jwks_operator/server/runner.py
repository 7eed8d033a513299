"""Running the HTTP server on aiohttp: listeners, the one-second tick, graceful shutdown.

Shared by ``jwks-operator serve`` (fed by the Kubernetes watch) and standalone mode (fed by
files): both build a ``SnapshotStore``, keep it current, and call ``run_server``.

``ServerSettings(host, port, metrics_port=None, max_age=300, default_keyset=None,
limits=Limits(), tls=None)``: what to listen on and how to answer; ``tls`` is a
``TlsFiles`` (https on every listener, reloaded when the files change).
``JwksServer(store, settings, *, verify_handler=handle_verify, status_source=None)``
(``status_source``: standalone's ``/{ns}/{name}/status`` route): ``await start()`` binds
(port 0 picks a free port: see ``ports``), ``await shutdown()`` stops accepting, closes
idle connections, lets requests already received or half received finish (up to
``limits.shutdown_grace`` seconds) and closes the rest through aiohttp's runner.
``run_server(store, settings, *, stop=None, verify_handler=handle_verify,
on_started=None)``: start, wait for ``stop`` (default: SIGTERM or SIGINT), shut down.
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

from aiohttp import web

from jwks_operator.server.app import Responder, StatusSource, VerifyHandler
from jwks_operator.server.connections import GuardedServer, Limits
from jwks_operator.server.snapshot import SnapshotStore
from jwks_operator.server.tls import CertificateReloader, TlsFiles, load_context
from jwks_operator.verification import handle_verify

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
    tls: TlsFiles | None = None


class JwksServer:
    """The listeners of one process over one store; see the module docstring."""

    def __init__(
        self,
        store: SnapshotStore,
        settings: ServerSettings,
        *,
        verify_handler: VerifyHandler | None = handle_verify,
        status_source: StatusSource | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        limits = settings.limits
        separate_metrics = settings.metrics_port is not None
        self.responders = [
            Responder(
                store,
                max_age=settings.max_age,
                default_keyset=settings.default_keyset,
                verify_handler=verify_handler,
                serve_metrics=not separate_metrics,
                limits=limits,
                status_source=status_source,
            )
        ]
        if separate_metrics:
            self.responders.append(
                Responder(store, serve_keysets=False, serve_metrics=True, limits=limits)
            )
        self.reloader: CertificateReloader | None = None
        self._servers: list[GuardedServer] = []
        self._runners: list[web.ServerRunner] = []
        self._sites: list[web.TCPSite] = []
        self._tick: asyncio.Task[None] | None = None
        self.ports: list[int] = []
        """Bound ports, main first (then the metrics port, when separate)."""

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def connections(self) -> int:
        """Open client connections on every listener."""
        return sum(len(server.guarded) for server in self._servers)

    @property
    def closing(self) -> bool:
        return any(responder.shutting_down for responder in self.responders)

    async def start(self) -> None:
        """Bind every listener; raise TlsError for unusable TLS files, OSError for a port."""
        settings = self.settings
        context = None
        if settings.tls is not None:
            context = load_context(settings.tls)
            self.reloader = CertificateReloader(context, settings.tls)
        ports = [settings.port]
        if settings.metrics_port is not None:
            ports.append(settings.metrics_port)
        loop = asyncio.get_running_loop()
        for port, responder in zip(ports, self.responders, strict=True):
            server = GuardedServer(
                responder.handle,
                limits=settings.limits,
                metrics=self.store.metrics,
                access_log=None,
            )
            server.now = loop.time()
            runner = web.ServerRunner(
                server, handle_signals=False, shutdown_timeout=settings.limits.shutdown_grace
            )
            await runner.setup()
            site = web.TCPSite(
                runner, settings.host, port, ssl_context=context, backlog=1024, reuse_address=True
            )
            self._servers.append(server)
            self._runners.append(runner)
            await site.start()
            self._sites.append(site)
            bound = runner.addresses[-1]
            self.ports.append(int(bound[1]))
            scheme = "https" if context is not None else "http"
            logger.info("listening on %s:%d (%s)", settings.host, bound[1], scheme)
        settle_heap()
        self._tick = asyncio.create_task(self._ticking(), name="jwks-server-tick")

    async def _ticking(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            try:
                now = loop.time()
                for server in self._servers:
                    server.sweep(now)
                if self.reloader is not None:
                    self.reloader.check()
            except Exception:  # the tick must survive whatever one connection does
                logger.exception("server tick failed")

    async def shutdown(self) -> None:
        """Stop accepting, finish requests already (or half) received, close every connection."""
        if self.closing:
            return
        grace = self.settings.limits.shutdown_grace
        for responder in self.responders:
            responder.shutting_down = True
        for site in self._sites:
            await site.stop()
        for server in self._servers:
            server.begin_close()
        try:
            async with asyncio.timeout(grace):
                await asyncio.gather(*(server.heads_drained() for server in self._servers))
        except TimeoutError:
            logger.info("shutting down with a request head still incomplete")
        for runner in self._runners:
            await runner.cleanup()
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
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
    verify_handler: VerifyHandler | None = handle_verify,
    on_started: Callable[[JwksServer], None] | None = None,
) -> None:
    """Serve until ``stop`` is set (by default on SIGTERM/SIGINT), then shut down gracefully."""
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    server = JwksServer(store, settings, verify_handler=verify_handler)
    try:
        await server.start()
        if on_started is not None:
            on_started(server)
        await stop.wait()
    finally:
        await server.shutdown()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests and benches that need it up front)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
