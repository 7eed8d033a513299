"""One keyset's schedule: reconcile, then sleep until the planner's next change.

This is the standalone equivalent of the operator's per-keyset timer, and it runs the very
same ``reconcile`` (read -> plan -> write private -> write public -> mark published), so
a rotation happens at the same instant, with the same events, in both modes. A reconcile
is never cancelled half-way: stopping waits for the current one, so a keyset removed from
the config cannot have its files resurrected by a write still in flight.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from jwks_operator.core.guard import UnsafeJwksError
from jwks_operator.core.state import CorruptStateError
from jwks_operator.core.timefmt import format_time
from jwks_operator.logs import keyset_extra
from jwks_operator.reconcile import Outcome, reconcile
from jwks_operator.standalone.config import KeySetConfig
from jwks_operator.standalone.status import read_keyset_status, status_document
from jwks_operator.store.base import KeySetStore

logger = logging.getLogger("jwks_operator.standalone")

MAX_SLEEP: Final = 300.0
"""Re-check at least this often, so that a wall-clock jump is noticed within minutes."""
MIN_SLEEP: Final = 0.005
NOT_READY_RETRY: Final = 10.0
"""A keyset refused by reconcile (corrupt state file) is retried this often: it may be fixed."""
ERROR_BACKOFF: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class KeySetRunner:
    def __init__(
        self,
        keyset: KeySetConfig,
        store: KeySetStore,
        clock: Callable[[], datetime],
        state_dir: Path | None = None,
    ) -> None:
        self.keyset = keyset
        self.state_dir = state_dir
        """Where the store keeps the files: the status is read back from them."""
        self.store = store
        self.clock = clock
        self.last_outcome: Outcome | None = None
        self.status: dict[str, Any] | None = None
        """What ``/{ns}/{name}/status`` serves: the keyset's status document (kids, states,
        times: never key material), refreshed after every reconcile."""
        self._last_event: dict[str, str] | None = None
        self.first_attempt = asyncio.Event()
        """Set once the first reconcile has been tried, whatever its result."""
        self._wake = asyncio.Event()
        self._stopping = False
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"keyset {self.keyset.label}")

    def update(self, keyset: KeySetConfig) -> None:
        """A new spec (or rotate request) from a reloaded config: reconcile with it now."""
        self.keyset = keyset
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = await self._reconcile_once()
            self.first_attempt.set()
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _reconcile_once(self) -> float:
        """Run one reconcile; return how long to sleep before the next."""
        keyset = self.keyset
        try:
            outcome = await reconcile(
                keyset.spec, self.store, clock=self.clock, rotate_request=keyset.rotate_request
            )
        except Exception as error:
            delay = ERROR_BACKOFF[min(self._failures, len(ERROR_BACKOFF) - 1)]
            self._failures += 1
            logger.error(
                "%s: reconcile failed (%s); the last published keys stay served, retrying in %gs",
                keyset.label,
                describe_error(error),
                delay,
                extra=keyset_extra(keyset.label),
            )
            return delay
        self._failures = 0
        self.last_outcome = outcome
        log_outcome(keyset.label, outcome)
        await self._refresh_status(outcome)
        if not outcome.ready.status:
            return NOT_READY_RETRY
        if outcome.next_change is None:
            return MAX_SLEEP
        seconds = (outcome.next_change - self.clock()).total_seconds()
        return min(max(seconds, MIN_SLEEP), MAX_SLEEP)

    async def _refresh_status(self, outcome: Outcome) -> None:
        """Re-read this keyset's status from its files (off the loop) after a reconcile."""
        now = self.clock()
        if outcome.events:
            event = outcome.events[-1]
            self._last_event = {
                "time": format_time(now),
                "type": event.type,
                "reason": event.reason,
                "message": event.message,
            }
        if self.state_dir is None:
            return
        namespace, name = self.keyset.namespace, self.keyset.name
        status = await asyncio.to_thread(read_keyset_status, self.state_dir, namespace, name, now)
        (document,) = status_document([status])["keysets"]
        document["ready"] = {
            "status": outcome.ready.status,
            "reason": outcome.ready.reason,
            "message": outcome.ready.message,
        }
        document["lastEvent"] = self._last_event
        self.status = document


def log_outcome(label: str, outcome: Outcome) -> None:
    """One line per event (reason, kids in the message); then where the keyset stands."""
    for event in outcome.events:
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        extra = keyset_extra(label, event.reason)
        logger.log(level, "%s %s: %s", label, event.reason, event.message, extra=extra)
    for notice in outcome.notices if outcome.ready.status else ():  # e.g. PublicKeysRepaired
        extra = keyset_extra(label, notice.event.reason)
        logger.warning("%s %s: %s", label, notice.event.reason, notice.event.message, extra=extra)
    if not outcome.ready.status:
        logger.warning(
            "%s not ready (%s): %s",
            label,
            outcome.ready.reason,
            outcome.ready.message,
            extra=keyset_extra(label, outcome.ready.reason),
        )
    elif outcome.events or outcome.wrote:
        logger.info(
            "%s: active %s, next %s, %d key(s) published; next change at %s",
            label,
            outcome.active_kid,
            outcome.next_kid or "-",
            len(outcome.keys),
            format_time(outcome.next_change) if outcome.next_change else "-",
            extra=keyset_extra(label),
        )


def describe_error(error: BaseException) -> str:
    """A safe one-line description: messages only from errors known not to carry key data."""
    if isinstance(error, OSError):
        where = f" {error.filename}" if error.filename else ""
        return f"{error.__class__.__name__}{where}: {error.strerror or error}"
    if isinstance(error, UnsafeJwksError | CorruptStateError):
        return f"{error.__class__.__name__}: {error}"
    return error.__class__.__name__
