"""Prometheus text exposition, written by hand.

The request path increments one dict entry and nothing else, so counting costs no more
than a lookup; all formatting happens at scrape time. A client library would add a lock
and a dependency for what is a handful of counters on a single event loop.

Families (all prefixed ``jwks_``):
- ``http_requests_total{route,status}``: every answered request.
- ``snapshot_keysets``, ``snapshot_bytes``: entries and pre-encoded bytes held.
- ``configmaps_refused_total{reason}``: documents the guard refused (previous body kept).
- ``keysets_refused``: keysets whose latest ConfigMap content is refused right now.
- ``untrusted_total{reason}``: keys and ConfigMaps left out because no keyset vouches
  for them (``server.trust``): ``unlisted``, ``thumbprint``, ``malformed``, ``unbound``.
- ``watch_restarts_total{reason}``: re-lists of the Kubernetes source.
- ``last_update_timestamp_seconds``, ``seconds_since_last_update``: last snapshot change.
- ``ready``, ``open_connections``.
"""

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jwks_operator.server.snapshot import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Counters shared by the store, the source and the server; see the module docstring."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.refused: dict[str, int] = {}
        self.watch_restarts: dict[str, int] = {}
        self.untrusted: dict[str, int] = {}
        self.open_connections = 0
        self._collectors: list[Callable[[], str]] = []
        # The store counts refusals from worker threads; the request path stays lock-free.
        self._lock = threading.Lock()

    def count_request(self, route: str, status: int) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def count_refused(self, reason: str) -> None:
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1

    def count_untrusted(self, reason: str) -> None:
        with self._lock:
            self.untrusted[reason] = self.untrusted.get(reason, 0) + 1

    def count_watch_restart(self, reason: str) -> None:
        with self._lock:
            self.watch_restarts[reason] = self.watch_restarts.get(reason, 0) + 1

    def add_collector(self, collector: Callable[[], str]) -> None:
        """Append another component's Prometheus text to every scrape."""
        self._collectors.append(collector)

    def render(self, snapshot: "Snapshot", now: float | None = None) -> bytes:
        now = time.time() if now is None else now
        lines: list[str] = []
        _family(lines, "http_requests_total", "counter", "HTTP requests answered.")
        for (route, status), count in sorted(self.requests.items()):
            lines.append(f'jwks_http_requests_total{{route="{route}",status="{status}"}} {count}')
        _family(lines, "snapshot_keysets", "gauge", "Keysets in the served snapshot.")
        lines.append(f"jwks_snapshot_keysets {len(snapshot.entries)}")
        _family(lines, "snapshot_bytes", "gauge", "Pre-encoded response bytes held.")
        lines.append(f"jwks_snapshot_bytes {snapshot.total_bytes}")
        _family(
            lines,
            "configmaps_refused_total",
            "counter",
            "ConfigMap documents refused by the guard (the previous good body is kept).",
        )
        _labelled(lines, "jwks_configmaps_refused_total", "reason", self.refused.items())
        _family(lines, "keysets_refused", "gauge", "Keysets whose latest content is refused.")
        refused_now = sum(1 for entry in snapshot.entries.values() if entry.refused)
        lines.append(f"jwks_keysets_refused {refused_now}")
        _family(
            lines,
            "untrusted_total",
            "counter",
            "Keys and ConfigMaps not served because no keyset's status vouches for them.",
        )
        _labelled(lines, "jwks_untrusted_total", "reason", self.untrusted.items())
        _family(lines, "watch_restarts_total", "counter", "Re-lists of the ConfigMap watch.")
        _labelled(lines, "jwks_watch_restarts_total", "reason", self.watch_restarts.items())
        _family(lines, "last_update_timestamp_seconds", "gauge", "Last snapshot change.")
        lines.append(f"jwks_last_update_timestamp_seconds {snapshot.updated_at:.3f}")
        _family(lines, "seconds_since_last_update", "gauge", "Age of the last snapshot change.")
        lines.append(f"jwks_seconds_since_last_update {max(0.0, now - snapshot.updated_at):.3f}")
        _family(lines, "ready", "gauge", "1 once the first full list has been loaded.")
        lines.append(f"jwks_ready {int(snapshot.ready)}")
        _family(lines, "open_connections", "gauge", "Open client connections.")
        lines.append(f"jwks_open_connections {self.open_connections}")
        text = "\n".join(lines) + "\n"
        for collector in self._collectors:
            extra = collector()
            if extra:
                text += extra if extra.endswith("\n") else extra + "\n"
        return text.encode()


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP jwks_{name} {help_text}")
    lines.append(f"# TYPE jwks_{name} {kind}")


def _labelled(lines: list[str], metric: str, label: str, items: Iterable[tuple[str, int]]) -> None:
    for value, count in sorted(items):
        lines.append(f'{metric}{{{label}="{_escape(value)}"}} {count}')


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
