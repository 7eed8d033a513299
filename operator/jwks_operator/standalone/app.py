"""Standalone mode assembled: config, state directory, one runner per keyset, the server.

The public documents flow exactly as in a cluster, only shorter: ``reconcile`` writes the
public record to the state directory, then hands the documents to the server's snapshot
store (the same ``apply`` the ConfigMap watch calls, with the same ``next-change``
annotation, so routes, headers, guard and cache lifetimes are identical) and, with
``--publish-dir``, to static files. The config file is re-read on SIGHUP and whenever its
mtime, size or inode changes (polled once a second: one ``stat``); a new config that does
not validate is refused with its problems logged, and the previous one keeps running.
"""

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from jwks_operator.core.contract import NEXT_CHANGE_ANNOTATION
from jwks_operator.core.guard import UnsafeJwksError
from jwks_operator.core.timefmt import format_time
from jwks_operator.server.runner import JwksServer, ServerSettings
from jwks_operator.server.snapshot import ApplyResult, SnapshotStore
from jwks_operator.server.tls import TlsError, TlsFiles
from jwks_operator.standalone.config import (
    ConfigError,
    KeySetConfig,
    KeySetId,
    StandaloneConfig,
    load_config,
)
from jwks_operator.standalone.publishdir import PublishDir
from jwks_operator.standalone.runner import KeySetRunner
from jwks_operator.store.localdir import LocalDirStore, PublicSink

logger = logging.getLogger("jwks_operator.standalone")

CONFIG_POLL_SECONDS: Final = 1.0
CONFIG_SETTLE_SECONDS: Final = 0.5


@dataclass(frozen=True)
class Options:
    config_path: Path
    state_dir: Path
    host: str
    port: int
    publish_dir: Path | None
    max_age: int
    default_keyset: KeySetId | None
    """Served at ``/.well-known/jwks.json``: the flag, else the config's only keyset."""
    default_keyset_required: bool = False
    """Given on the command line: a reloaded config must still define it."""
    tls: TlsFiles | None = None
    """Serve https from these PEM files (reloaded when they change)."""


class CannotListen(Exception):
    """The listener could not bind (port taken, no permission): nothing was written yet."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"{host}:{port}: {error}")
        self.host, self.port, self.error = host, port, error


def utc_now() -> datetime:
    return datetime.now(UTC)


class Standalone:
    """Owns the runners and the config; the HTTP server only ever reads ``snapshots``."""

    def __init__(
        self,
        options: Options,
        config: StandaloneConfig,
        snapshots: SnapshotStore,
        publish_dir: PublishDir | None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.options = options
        self.config = config
        self.snapshots = snapshots
        self.publish_dir = publish_dir
        self.clock = clock
        self.runners: dict[KeySetId, KeySetRunner] = {}
        self._config_signature = _signature(options.config_path)
        self._reload_lock = asyncio.Lock()

    # -- keysets ------------------------------------------------------------------------

    def _store_for(self, keyset: KeySetConfig) -> LocalDirStore:
        return LocalDirStore(
            self.options.state_dir,
            keyset.namespace,
            keyset.name,
            on_public=self._public_sink(keyset.namespace, keyset.name),
        )

    def _public_sink(self, namespace: str, name: str) -> PublicSink:
        async def publish(data: Mapping[str, str], next_change: datetime | None) -> bool:
            annotations = {NEXT_CHANGE_ANNOTATION: format_time(next_change)} if next_change else {}
            result = await asyncio.to_thread(
                self.snapshots.apply, namespace, name, data, annotations
            )
            if result is ApplyResult.REFUSED:
                # Never reached with our own writer; if it were, the keys must not count
                # as published (pre-publication would be measured from a JWKS nobody saw).
                raise UnsafeJwksError(f"{namespace}/{name}: the server refused the JWKS")
            changed = result is not ApplyResult.UNCHANGED
            if self.publish_dir is not None:
                wrote = await asyncio.to_thread(self.publish_dir.write, namespace, name, data)
                changed = changed or wrote
            return changed

        return publish

    def status_of(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ``/{ns}/{name}/status`` document of a configured keyset (a lookup)."""
        runner = self.runners.get((namespace, name))
        return runner.status if runner is not None else None

    def _start_runner(self, keyset: KeySetConfig) -> KeySetRunner:
        runner = KeySetRunner(
            keyset, self._store_for(keyset), self.clock, state_dir=self.options.state_dir
        )
        self.runners[keyset.id] = runner
        runner.start()
        return runner

    async def start(self) -> None:
        """Start every keyset and wait for its first reconcile, then declare the server ready."""
        for keyset in self.config.keysets.values():
            self._start_runner(keyset)
        await asyncio.gather(*(r.first_attempt.wait() for r in self.runners.values()))
        for key, runner in self.runners.items():
            if self.snapshots.get(*key) is None:
                # Not reconciled (e.g. corrupt state): 503 "no keys yet", not 404 "unknown".
                await asyncio.to_thread(self.snapshots.apply, *key, {}, {})
                logger.warning("%s: nothing published yet", runner.keyset.label)
        self.snapshots.mark_ready()

    async def stop(self) -> None:
        await asyncio.gather(*(runner.stop() for runner in self.runners.values()))

    async def apply_config(self, config: StandaloneConfig) -> None:
        old = self.config
        self.config = config
        for key in old.keysets.keys() - config.keysets.keys():
            await self._remove(old.keysets[key])
        for key, keyset in config.keysets.items():
            if key not in old.keysets:
                logger.info("%s: added to the config", keyset.label)
                self._start_runner(keyset)
            elif keyset != old.keysets[key]:
                logger.info("%s: spec changed, reconciling now", keyset.label)
                self.runners[key].update(keyset)

    async def _remove(self, keyset: KeySetConfig) -> None:
        runner = self.runners.pop(keyset.id)
        await runner.stop()
        await asyncio.to_thread(self.snapshots.remove, keyset.namespace, keyset.name)
        if self.publish_dir is not None:
            await asyncio.to_thread(self.publish_dir.remove, keyset.namespace, keyset.name)
        store = self._store_for(keyset)
        if keyset.spec.deletion_policy == "Delete":
            await asyncio.to_thread(store.delete)
            logger.info("%s: removed from the config; its keys were deleted", keyset.label)
        else:
            logger.info(
                "%s: removed from the config and no longer served; its keys are kept in %s "
                "(deletionPolicy Retain)",
                keyset.label,
                store.private_file,
            )

    # -- config reload ------------------------------------------------------------------

    async def reload(self, why: str) -> bool:
        """Re-read the config; True if it was applied, False if it was refused."""
        async with self._reload_lock:
            path = self.options.config_path
            self._config_signature = _signature(path)
            try:
                config = await asyncio.to_thread(load_config, path)
            except ConfigError as error:
                for problem in error.problems:
                    logger.error("config refused: %s", problem)
                logger.error(
                    "config %s refused (%s); still running the previous config (%d keyset(s))",
                    path,
                    why,
                    len(self.config.keysets),
                )
                return False
            required = self.options.default_keyset if self.options.default_keyset_required else None
            missing = default_keyset_problem(required, config)
            if missing is not None:
                logger.error("config refused: %s; still running the previous config", missing)
                return False
            if config == self.config:
                logger.info("config %s re-read (%s): unchanged", path, why)
                return True
            logger.info("config %s reloaded (%s)", path, why)
            await self.apply_config(config)
            return True

    async def watch_config(self) -> None:
        """Poll the config file's identity; cheap enough to do every second forever."""
        while True:
            await asyncio.sleep(CONFIG_POLL_SECONDS)
            seen = _signature(self.options.config_path)
            if seen == self._config_signature:
                continue
            # An editor may still be writing: a half-written file that happens to parse
            # could drop keysets, so reload only once the file has stood still a moment.
            await asyncio.sleep(CONFIG_SETTLE_SECONDS)
            if _signature(self.options.config_path) != seen:
                continue
            try:
                await self.reload("file changed")
            except Exception:  # the watcher must outlive any one bad reload
                logger.exception("config reload failed; still running the previous config")

    def install_signal_handlers(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[bool]] = set()

        def on_hup() -> None:
            task = asyncio.create_task(self.reload("SIGHUP"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)


def default_keyset_problem(default: KeySetId | None, config: StandaloneConfig) -> str | None:
    if default is None or default in config.keysets:
        return None
    return f"--default-keyset {default[0]}/{default[1]} is not defined in the config"


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


async def run(options: Options, config: StandaloneConfig, publish_dir: PublishDir | None) -> int:
    """Serve until SIGTERM/SIGINT; the state directory is already checked and locked.

    Order matters for a clean restart: listen first (so a busy port fails before any
    write), answer 503 until every keyset's first reconcile is in, and on the way out
    finish in-flight writes before the listener closes.
    """
    snapshots = SnapshotStore()
    settings = ServerSettings(
        host=options.host,
        port=options.port,
        max_age=options.max_age,
        default_keyset=options.default_keyset,
        tls=options.tls,
    )
    app = Standalone(options, config, snapshots, publish_dir)  # writes nothing until start()
    server = JwksServer(snapshots, settings, status_source=app.status_of)
    try:
        await server.start()
    except TlsError as error:  # the files changed since the command line was checked
        logger.error("%s", error)
        await server.shutdown()
        return 2
    except OSError as error:
        await server.shutdown()
        raise CannotListen(options.host, options.port, error) from None
    stop = asyncio.Event()
    app.install_signal_handlers(stop)
    try:
        await app.start()
        scheme = "https" if options.tls is not None else "http"
        base = f"{scheme}://{_url_host(options.host)}:{server.port}"
        for namespace, name in config.keysets:
            logger.info("serving %s/%s/%s/.well-known/jwks.json", base, namespace, name)
        if options.default_keyset is not None:
            logger.info("serving %s/.well-known/jwks.json (default keyset)", base)
        watcher = asyncio.create_task(app.watch_config(), name="config watch")
        try:
            await stop.wait()
        finally:
            watcher.cancel()
        logger.info("stopping: finishing in-flight writes")
        await app.stop()
    finally:
        await server.shutdown()
    return 0


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
