"""Verification counters, rendered as Prometheus text for the server's ``/metrics``.

One dict increment per request on the event loop, formatting only at scrape time (the
same trade as the server's own counters). Labels are the closed sets of results and
reason codes, so a hostile token cannot create new series.
"""

from typing import Final

_counts: dict[tuple[str, str], int] = {}

METRIC: Final = "jwks_verifications_total"


def count(result: str, reason: str) -> None:
    key = (result, reason)
    _counts[key] = _counts.get(key, 0) + 1


def snapshot() -> dict[tuple[str, str], int]:
    """A copy of the counters, for tests and the benchmark."""
    return dict(_counts)


def metrics_text() -> str:
    lines = [
        f"# HELP {METRIC} Gateway token verifications by result and reason.",
        f"# TYPE {METRIC} counter",
    ]
    for (result, reason), value in sorted(_counts.items()):
        lines.append(f'{METRIC}{{result="{result}",reason="{reason}"}} {value}')
    return "\n".join(lines) + "\n"
