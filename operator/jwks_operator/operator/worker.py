"""One keyset's life in the operator: reconcile, report, sleep until the next change, repeat.

A Kopf daemon runs one ``KeySetWorker`` per JwksKeySet. Why a daemon and not timers or
change handlers: rotation is driven by *time* at second-scale precision (a keyset with
``interval: 20s`` must rotate within seconds of when it is due), yet most keysets change
once a month. A sleeping task per keyset wakes exactly when ``Outcome.next_change`` is
due (or after a capped safety resync), costs nothing in between, and is woken early by
the watch handlers (``wakeups``) when the spec, the rotate annotation, the Secret or the
ConfigMap change. All the decisions stay in ``reconcile`` and the core; this module only
chooses *when* to call it and turns its Outcome into status and Events.
"""

import asyncio
import copy
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from jwks_operator.core.contract import API_VERSION, KEYSET_LABEL, PLURAL, ROTATE_ANNOTATION
from jwks_operator.core.readiness import Facts
from jwks_operator.core.spec import SpecError, parse_spec
from jwks_operator.core.timefmt import format_time
from jwks_operator.kube.cache import ObjectCache
from jwks_operator.kube.client import KubeApiError, KubeClient, object_path
from jwks_operator.operator.status import ready_changed, render_status, status_patch
from jwks_operator.operator.wakeups import Waker, change_key, listed_kids
from jwks_operator.reconcile import Outcome, reconcile, refused
from jwks_operator.store.kubernetes import (
    CONFIGMAP,
    SECRET,
    KubernetesStore,
    Owner,
    release_stale,
)

EventPoster = Callable[[Mapping[str, Any], str, str, str], None]
"""(keyset body, type, reason, message): post a Kubernetes Event about the keyset."""

SLACK: Final = 0.05
"""Seconds added to a scheduled wake-up so that the plan sees the change as due."""
CONFLICT_RETRIES: Final = 3
CONCURRENCY: Final = 16
RESYNC_SPREAD: Final = 0.25
"""A resync sleeps between (1 - spread) and 1 times ``resync``: keysets started together
(every one of them, after a restart) do not all resync in the same second."""
MAX_BACKOFF: Final = 60.0
_MESSAGE_LIMIT: Final = 400


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """What every worker shares: the API client, the clock and the timing policy."""

    client: KubeClient
    cache: ObjectCache
    """The operator's Secrets and ConfigMaps (list+watch): what reconciles read."""
    post_event: EventPoster
    clock: Callable[[], datetime] = utc_now
    resync: float = 300.0
    """Longest sleep: a safety net for missed watch events, not the rotation mechanism."""
    not_ready_retry: float = 30.0
    """Re-check of a conflict or corrupt Secret that a watch may not report (foreign objects)."""
    reconciles: dict[str, int] = field(default_factory=dict)
    """Reconciliations per ``namespace/name``, for the probe and the tests' bookkeeping."""
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENCY))
    """Reconciliations in flight. Without a bound, fifty keysets created at once would
    interleave their key generation in the thread pool and all finish at the very end;
    with it they finish in turn (the median halves), and the loop keeps CPU to breathe."""


def describe(error: BaseException) -> str:
    """A one-line, bounded description of a failure; never a request body."""
    text = str(error) if isinstance(error, KubeApiError) else f"{type(error).__name__}: {error}"
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


class KeySetWorker:
    def __init__(
        self,
        runtime: Runtime,
        waker: Waker,
        body: Callable[[], Mapping[str, Any]],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.runtime = runtime
        self.waker = waker
        self._body = body
        self.logger = logger
        self.last_status: dict[str, Any] | None = None
        self.released_for: dict[str, str] | None = None
        self.key = f"{waker.namespace}/{waker.name}"

    async def run(self) -> None:
        reasons = ["daemon started"]
        failures = conflicts = 0
        # Until the cache has listed everything, "no Secret" might only mean "not yet
        # listed": a reconcile would try to create keys (refused with 409, but wasted).
        await self.runtime.cache.synced.wait()
        while not self.waker.stopping:
            delay: float | None
            due = "scheduled"
            try:
                delay = await self.reconcile_once(reasons)
                failures = conflicts = 0
                if delay is not None and delay >= self.runtime.resync * (1 - RESYNC_SPREAD):
                    due = "resync"
            except asyncio.CancelledError:
                raise
            except KubeApiError as error:
                if error.namespace_terminating:
                    # The namespace (and this keyset with it) is being deleted: repairing
                    # what its deletion removes would only be refused again.
                    self.logger.info("The namespace is being deleted; not repairing its objects")
                    reasons = await self.sleep(self.runtime.resync, "resync")
                    continue
                if (error.conflict or error.status == 404) and conflicts < CONFLICT_RETRIES:
                    # A concurrent write, or a cache behind the API (an update of an object
                    # just deleted is 404): read again, quietly, once the watch caught up.
                    conflicts += 1
                    self.logger.info(f"Write conflict, reconciling again: {describe(error)}")
                    reasons = ["write conflict"]
                    await asyncio.sleep(0.2 * conflicts)
                    continue
                failures += 1
                delay, due = await self.report_failure(error, failures), "retry"
            except Exception as error:
                failures += 1
                delay, due = await self.report_failure(error, failures), "retry"
            reasons = await self.sleep(delay, due)

    async def sleep(self, delay: float | None, due: str = "scheduled") -> list[str]:
        """Wait until due, or until a wake-up that is not a mere echo; return why."""
        loop = asyncio.get_running_loop()
        deadline = None if delay is None else loop.time() + delay
        while not self.waker.stopping:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            woken = await self.waker.wait(timeout)
            if self.waker.stopping:
                break
            if not woken:
                return [due]
            reasons = self.waker.take()
            if reasons:
                return reasons
        return []

    def snapshot(self) -> dict[str, Any]:
        """A private copy of the keyset as last seen by the watch (the body is live)."""
        return copy.deepcopy(dict(self._body()))

    async def reconcile_once(self, reasons: list[str]) -> float | None:
        runtime = self.runtime
        body = self.snapshot()
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        self.waker.seen = change_key(body)
        runtime.reconciles[self.key] = runtime.reconciles.get(self.key, 0) + 1
        try:
            spec = parse_spec(self.waker.name, body.get("spec"))
        except SpecError as error:
            outcome = refused(Facts(spec_error=str(error)))
            await self.report(body, outcome, generation, reasons)
            return runtime.resync
        self.waker.targets = {SECRET: spec.secret_name, CONFIGMAP: spec.config_map_name}
        if "status edited" in reasons:
            self.last_status = None  # someone else wrote status: believe the body, not us
        store = KubernetesStore(
            runtime.client,
            runtime.cache,
            namespace=self.waker.namespace,
            spec=spec,
            owner=Owner(self.waker.name, str(meta.get("uid") or self.waker.uid)),
            tracker=self.waker,
            listed=listed_kids(self.previous_status(body)),
        )
        rotate = (meta.get("annotations") or {}).get(ROTATE_ANNOTATION)
        async with runtime.slots:
            outcome = await reconcile(spec, store, clock=runtime.clock, rotate_request=rotate)
        if store.status_written is not None:
            self.last_status = store.status_written
        await self.report(body, outcome, generation, reasons)
        if store.migrated_from is not None:
            runtime.post_event(
                body,
                "Normal",
                "SecretRenamed",
                f"keys taken over from Secret {store.migrated_from} into {spec.secret_name}",
            )
        if outcome.ready.status and self.released_for != self.waker.targets:
            await self.release_old_names(body)
        if not outcome.ready.status:
            return runtime.not_ready_retry
        resync = runtime.resync * (1 - RESYNC_SPREAD * random.random())  # noqa: S311
        if outcome.next_change is None:
            return resync
        due = (outcome.next_change - runtime.clock()).total_seconds()
        return min(resync, max(SLACK, due + SLACK))

    def previous_status(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The status as last written by this worker, else as the watch last showed it."""
        return self.last_status if self.last_status is not None else body.get("status")

    async def report(
        self,
        body: Mapping[str, Any],
        outcome: Outcome,
        generation: int | None,
        reasons: list[str],
    ) -> None:
        """Events, status (what ``kubectl get`` shows), then one log line."""
        previous = self.previous_status(body)
        desired = render_status(
            outcome, generation=generation, previous=previous, now=self.runtime.clock()
        )
        # A keyset that stays not-ready repeats the same Warning on every retry: tell it
        # once per change of the Ready condition, not every 30 seconds. Events go first:
        # the changes they report are already written, and a failed status patch is
        # retried by a reconciliation that has nothing left to report.
        changed = ready_changed(desired, previous)
        if outcome.ready.status or changed:
            for event in outcome.events:
                self.runtime.post_event(body, event.type, event.reason, event.message)
        for notice in outcome.notices:
            if changed or notice.each_time:
                event = notice.event
                self.runtime.post_event(body, event.type, event.reason, event.message)
        await self.patch_status(desired, previous)
        trigger = ", ".join(reasons)
        if outcome.ready.status:
            self.logger.info(
                f"Reconciled (trigger: {trigger}): revision {outcome.revision}, "
                f"active {outcome.active_kid}, next {outcome.next_kid}, "
                f"next change {format_time(outcome.next_change) if outcome.next_change else '-'}"
                f"{', keys written' if outcome.wrote else ''}"
            )
        else:
            self.logger.warning(
                f"Reconciled (trigger: {trigger}): not ready, {outcome.ready.reason}: "
                f"{outcome.ready.message}"
            )

    async def release_old_names(self, body: Mapping[str, Any]) -> None:
        """Once per daemon and per rename: stop managing objects under names no longer used."""
        targets = dict(self.waker.targets)
        released = await release_stale(
            self.runtime.client,
            self.runtime.cache,
            namespace=self.waker.namespace,
            keyset=self.waker.name,
            keep=targets,
        )
        self.released_for = targets
        if released:
            message = (
                f"no longer managed after a rename (label {KEYSET_LABEL} removed, not deleted): "
                + ", ".join(released)
            )
            self.logger.info(message)
            self.runtime.post_event(body, "Normal", "Released", message)

    async def patch_status(
        self, desired: Mapping[str, Any], previous: Mapping[str, Any] | None
    ) -> None:
        patch = status_patch(desired, previous)
        if patch is None:
            return
        if "keys" in patch:
            self.waker.vouched(listed_kids(patch))  # before the write: its echo may come first
        path = object_path(API_VERSION, PLURAL, self.waker.namespace, self.waker.name, "status")
        response = await self.runtime.client.merge_patch(path, {"status": patch})
        status = response.get("status")
        self.last_status = dict(status) if isinstance(status, Mapping) else None

    async def report_failure(self, error: BaseException, failures: int) -> float:
        delay = min(MAX_BACKOFF, 2.0 ** (failures - 1))
        message = describe(error)
        if self.waker.stopping:
            return delay
        self.logger.warning(
            f"Reconciliation failed (attempt {failures}), retrying in {delay:g}s: {message}",
            # An API error says all there is; anything else is a bug worth its traceback.
            exc_info=not isinstance(error, KubeApiError)
            and self.logger.isEnabledFor(logging.DEBUG),
        )
        body = self.snapshot()
        outcome = refused(Facts(failure=message))
        for notice in outcome.notices:  # ReconcileFailed: posted for every failed attempt
            event = notice.event
            self.runtime.post_event(body, event.type, event.reason, event.message)
        try:
            previous = self.last_status if self.last_status is not None else body.get("status")
            desired = render_status(
                outcome,
                generation=(body.get("metadata") or {}).get("generation"),
                previous=previous,
                now=self.runtime.clock(),
            )
            await self.patch_status(desired, previous)
        except Exception as status_error:
            self.logger.debug(f"Could not record the failure in status: {describe(status_error)}")
        return delay
