"""Where each standalone keyset stands, read from the state directory: never key material.

``jwks-operator status --state-dir DIR`` prints it (a table, or ``-o json``); an HTTP
status route can serve :func:`status_document` of :func:`read_status` as it is. The
summary is a pure function of one keyset's two files (``keys.json`` and the public
record) and the time, so it can be checked without a process: it takes from the state
only kids, states and lifecycle times, and from the public record only ``nextChange``.

``overdue`` says that the next scheduled change (a rotation, a next key, a removal) was
due and has not happened: the state belongs to an instance that is not running, and the
active key may be signing past its interval. ``sign`` warns about the same condition.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from jwks_operator.core.state import CorruptStateError, KeySetState, state_from_json
from jwks_operator.core.timefmt import format_time, parse_time
from jwks_operator.store.localdir import PRIVATE_SUFFIX, private_path, public_path

_EVENT_OF: Final = {
    "createdAt": "created",
    "publishedAt": "published",
    "activatedAt": "activated",
    "retiredAt": "retired",
}


@dataclass(frozen=True)
class KeyLine:
    kid: str
    state: str


@dataclass(frozen=True)
class KeySetStatus:
    keyset: str
    active_kid: str | None
    next_kid: str | None
    keys: tuple[KeyLine, ...]
    next_change: datetime | None
    overdue: bool
    last_change: tuple[datetime, str] | None
    """The latest recorded lifecycle step: its time and ``"<what> <kid>"``."""
    problem: str | None = None
    """Why the state could not be read (then every other field is empty)."""


def summarize(
    keyset: str, state: KeySetState, next_change: datetime | None, now: datetime
) -> KeySetStatus:
    """The status of one keyset from its parsed state (pure)."""
    steps: list[tuple[datetime, str]] = []
    for key in state.keys:
        times = {
            "createdAt": key.created_at,
            "publishedAt": key.published_at,
            "activatedAt": key.activated_at,
            "retiredAt": key.retired_at,
        }
        steps += [(when, f"{_EVENT_OF[name]} {key.kid}") for name, when in times.items() if when]
    return KeySetStatus(
        keyset=keyset,
        active_kid=state.active.kid if state.active else None,
        next_kid=state.next.kid if state.next else None,
        keys=tuple(KeyLine(key.kid, str(key.state)) for key in state.keys),
        next_change=next_change,
        overdue=next_change is not None and next_change < now,
        last_change=max(steps, key=lambda step: step[0]) if steps else None,
    )


def next_change_of(public_record: bytes | None) -> datetime | None:
    """``nextChange`` of a public record (``None`` when absent or unreadable)."""
    if not public_record:
        return None
    try:
        value = json.loads(public_record).get("nextChange")
        return parse_time(value) if isinstance(value, str) else None
    except (ValueError, AttributeError):
        return None


def keyset_status(
    keyset: str, keys_json: bytes, public_record: bytes | None, now: datetime
) -> KeySetStatus:
    """The status of one keyset from the bytes of its two files (pure)."""
    try:
        state = state_from_json(keys_json)
    except CorruptStateError as error:
        return KeySetStatus(keyset, None, None, (), None, False, None, problem=str(error))
    return summarize(keyset, state, next_change_of(public_record), now)


def read_keyset_status(state_dir: Path, namespace: str, name: str, now: datetime) -> KeySetStatus:
    """One keyset's status from its two files in an already checked state directory."""
    keyset = f"{namespace}/{name}"
    try:
        keys_json = private_path(state_dir, namespace, name).read_bytes()
    except OSError as error:
        return KeySetStatus(keyset, None, None, (), None, False, None, problem=str(error.strerror))
    try:
        public_record: bytes | None = public_path(state_dir, namespace, name).read_bytes()
    except OSError:
        public_record = None
    return keyset_status(keyset, keys_json, public_record, now)


def read_status(state_dir: Path, now: datetime) -> list[KeySetStatus]:
    """Every keyset in an already checked state directory, sorted by ``namespace/name``."""
    statuses = []
    for path in sorted(state_dir.glob(f"*_*{PRIVATE_SUFFIX}")):
        namespace, _, name = path.name.removesuffix(PRIVATE_SUFFIX).partition("_")
        statuses.append(read_keyset_status(state_dir, namespace, name, now))
    return statuses


def status_document(statuses: list[KeySetStatus]) -> dict[str, Any]:
    """The JSON form (``status -o json``, and what a status route serves)."""
    return {
        "keysets": [
            {
                "keyset": status.keyset,
                "activeKid": status.active_kid,
                "nextKid": status.next_kid,
                "nextChange": format_time(status.next_change) if status.next_change else None,
                "overdue": status.overdue,
                "lastChange": (
                    {"time": format_time(status.last_change[0]), "what": status.last_change[1]}
                    if status.last_change
                    else None
                ),
                "keys": [{"kid": key.kid, "state": key.state} for key in status.keys],
                **({"problem": status.problem} if status.problem else {}),
            }
            for status in statuses
        ]
    }


def overdue_warning(status: KeySetStatus, now: datetime) -> str | None:
    """The warning ``sign`` prints when it signs from state nobody is rotating."""
    if not status.overdue or status.next_change is None:
        return None
    late = int((now - status.next_change).total_seconds())
    return (
        f"{status.keyset}: its next scheduled change was due at "
        f"{format_time(status.next_change)} ({late}s ago) and has not happened, so no "
        f"jwks-operator standalone is running on this state; the active key "
        f"{status.active_kid} may be past its rotation interval"
    )
