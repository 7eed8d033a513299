"""Kubernetes/Go-style durations (``90s``, ``15m``, ``1h30m``, ``720h``), both ways.

Users write durations the way every Kubernetes manifest does; the planner works with
``timedelta``. Days are deliberately not a unit: Go's ``time.ParseDuration`` has none,
and the CRD's pattern must accept exactly what this parser accepts.
"""

import json
import re
from datetime import timedelta

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
}
_PART = r"(?:[0-9]+(?:\.[0-9]+)?)(?:ms|s|m|h)"
DURATION_PATTERN = rf"^(?:{_PART})+$"
"""The same grammar as the CRD's OpenAPI pattern for duration fields."""
_DURATION_RE = re.compile(DURATION_PATTERN)
_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
MAX_DURATION = timedelta(days=3650)


class DurationError(ValueError):
    """Text that is not a duration this project accepts."""


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m`` style text; raise DurationError on anything else (signs included)."""
    if not isinstance(text, str) or len(text) > 64 or not _DURATION_RE.match(text):
        raise DurationError(f"{_quote(text)} is not a duration like 90s, 15m or 720h")
    total = timedelta()
    try:
        for number, unit in _PART_RE.findall(text):
            total += float(number) * _UNITS[unit]
    except OverflowError:
        total = MAX_DURATION + _UNITS["h"]
    if total > MAX_DURATION:
        raise DurationError(f"{_quote(text)} is longer than 10 years (87600h)")
    return total


def _quote(text: object) -> str:
    """Quote user input the way it appears in YAML/JSON, truncated so messages stay short."""
    shown = json.dumps(text) if isinstance(text, str) else type(text).__name__
    return shown if len(shown) <= 80 else shown[:77] + "..."


def format_duration(value: timedelta) -> str:
    """Render a timedelta as the shortest Go-style text that parses back to it (to the ms)."""
    millis = round(value.total_seconds() * 1000)
    if millis <= 0:
        return "0s"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if seconds:
        parts.append(f"{seconds}s")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)
