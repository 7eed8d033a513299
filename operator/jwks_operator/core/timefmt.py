"""RFC 3339 timestamps in UTC: how every time is stored (Secret, ConfigMap, status, files).

One format everywhere means a timestamp written by the operator reads back identically in
the server, the standalone state and ``kubectl get -o yaml``; naive datetimes are refused
because a rotation computed in local time is a rotation at the wrong hour.
"""

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """``2026-11-28T13:25:36.123456Z`` (microseconds only when present)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: all project times are timezone-aware UTC")
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime; ValueError if it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {type(text).__name__}")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {text!r}")
    return moment.astimezone(UTC)
