"""``/metrics``: the server's Prometheus families, exposed through ``prometheus_client``.

Each ``Metrics`` has its own registry (two servers in one process, as in the tests, never
share counts), with the process and platform collectors of the library beside ours.

Families (all prefixed ``jwks_``; the names are documented in docs/server.md):
- ``http_requests_total{route,status}``: every answered request.
- ``snapshot_keysets``, ``snapshot_bytes``: entries and pre-encoded bytes held.
- ``configmaps_refused_total{reason}``: documents the guard refused (previous body kept).
- ``keysets_refused``: keysets whose latest ConfigMap content is refused right now.
- ``untrusted_total{reason}``: keys and ConfigMaps left out because no keyset vouches
  for them (``unlisted``, ``thumbprint``, ``malformed``, ``unbound``; see server/trust.py).
- ``watch_restarts_total{reason}``: re-lists of the Kubernetes source.
- ``last_update_timestamp_seconds``, ``seconds_since_last_update``: last snapshot change.
- ``ready``, ``open_connections``.
- ``verifications_total{result,reason}``: the ``/verify`` endpoint's verdicts (counted by
  the verification package, read at scrape time).

Request counting stays one dict lookup and one counter increment: the labelled child of
each (route, status) is created once and kept. The snapshot gauges are read from the
store at scrape time (``observe_snapshot``), so the store never pushes numbers here and
this module imports nothing from the rest of the server.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jwks_operator.verification import metrics as verification_metrics

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which ``generate_latest`` writes."""

# ``*_created`` series double every counter for a value nobody alerts on.
disable_created_metrics()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class SnapshotFigures:
    """The numbers the snapshot gauges show, as the store reports them at scrape time."""

    keysets: int = 0
    bytes: int = 0
    refused: int = 0
    updated_at: float = 0.0
    ready: bool = False


class _SnapshotCollector(Collector):
    def __init__(self, metrics: "Metrics") -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        figures = self._metrics.read_snapshot()
        now = time.time()
        yield _gauge("snapshot_keysets", "Keysets in the served snapshot.", figures.keysets)
        yield _gauge("snapshot_bytes", "Pre-encoded response bytes held.", figures.bytes)
        yield _gauge("keysets_refused", "Keysets whose latest content is refused.", figures.refused)
        yield _gauge("last_update_timestamp_seconds", "Last snapshot change.", figures.updated_at)
        yield _gauge(
            "seconds_since_last_update",
            "Age of the last snapshot change.",
            max(0.0, now - figures.updated_at),
        )
        yield _gauge("ready", "1 once the first full list has been loaded.", int(figures.ready))
        yield _gauge("open_connections", "Open client connections.", self._metrics.open_connections)


class _VerificationCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "jwks_verifications",
            "Gateway token verifications by result and reason.",
            labels=["result", "reason"],
        )
        for (result, reason), value in sorted(verification_metrics.snapshot().items()):
            family.add_metric([result, reason], value)
        yield family


def _counts(counter: Counter, label: str) -> dict[str, int]:
    return {
        sample.labels[label]: int(sample.value)
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"jwks_{name}", help_text, value=value)


class Metrics:
    """The families of one server; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "jwks_http_requests",
            "HTTP requests answered.",
            ["route", "status"],
            registry=self.registry,
        )
        self._refused = Counter(
            "jwks_configmaps_refused",
            "ConfigMap documents refused by the guard (the previous good body is kept).",
            ["reason"],
            registry=self.registry,
        )
        self._untrusted = Counter(
            "jwks_untrusted",
            "Keys and ConfigMaps not served because no keyset's status vouches for them.",
            ["reason"],
            registry=self.registry,
        )
        self._watch_restarts = Counter(
            "jwks_watch_restarts",
            "Re-lists of the ConfigMap watch.",
            ["reason"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, int], Callable[[], None]] = {}
        self.open_connections = 0
        self.read_snapshot: Callable[[], SnapshotFigures] = SnapshotFigures
        self.registry.register(_SnapshotCollector(self))
        self.registry.register(_VerificationCollector())
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def count_request(self, route: str, status: int) -> None:
        increment = self._children.get((route, status))
        if increment is None:
            # Bounded: routes are a closed set and statuses are the server's own.
            increment = self._children[(route, status)] = self._requests.labels(
                route, str(status)
            ).inc
        increment()

    def count_refused(self, reason: str) -> None:
        self._refused.labels(reason).inc()

    def count_untrusted(self, reason: str) -> None:
        self._untrusted.labels(reason).inc()

    def count_watch_restart(self, reason: str) -> None:
        self._watch_restarts.labels(reason).inc()

    def observe_snapshot(self, read: Callable[[], SnapshotFigures]) -> None:
        """Where the snapshot gauges come from (the store registers itself)."""
        self.read_snapshot = read

    @property
    def refused(self) -> dict[str, int]:
        """Refusals so far by reason (what ``jwks_configmaps_refused_total`` shows)."""
        return _counts(self._refused, "reason")

    @property
    def untrusted(self) -> dict[str, int]:
        """Untrusted keys and ConfigMaps so far by reason (``jwks_untrusted_total``)."""
        return _counts(self._untrusted, "reason")

    @property
    def watch_restarts(self) -> dict[str, int]:
        """Re-lists so far by reason (what ``jwks_watch_restarts_total`` shows)."""
        return _counts(self._watch_restarts, "reason")

    def render(self) -> bytes:
        return generate_latest(self.registry)
