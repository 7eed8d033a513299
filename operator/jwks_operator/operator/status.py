"""A reconcile Outcome rendered as the JwksKeySet's ``.status``, the way kubectl shows it.

Conditions follow the Kubernetes conventions (``status`` as the strings "True"/"False",
``lastTransitionTime`` that moves only when ``status`` flips, ``observedGeneration`` per
condition), because tools such as ``kubectl wait --for=condition=Ready`` and Argo CD read
them that way. Everything here comes from ``Outcome``, which never holds key material.

When a keyset cannot be reconciled (invalid spec, corrupt Secret, name conflict) only the
conditions change: the key fields keep describing the last good state, which is exactly
what is still published.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from jwks_operator.core.timefmt import format_time
from jwks_operator.reconcile import Condition, Outcome

KEY_FIELDS = ("activeKid", "nextKid", "nextRotationTime", "revision", "keys")


def render_condition(
    condition: Condition,
    *,
    generation: int | None,
    previous: Sequence[Mapping[str, Any]] | None,
    now: datetime,
) -> dict[str, Any]:
    status = "True" if condition.status else "False"
    before = next((c for c in previous or () if c.get("type") == condition.type), None)
    transition = (
        before["lastTransitionTime"]
        if before is not None
        and before.get("status") == status
        and before.get("lastTransitionTime")
        else format_time(now.replace(microsecond=0))
    )
    rendered: dict[str, Any] = {
        "type": condition.type,
        "status": status,
        "reason": condition.reason,
        "message": condition.message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        rendered["observedGeneration"] = generation
    return rendered


def render_status(
    outcome: Outcome,
    *,
    generation: int | None,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """The full status after a reconciliation; key fields only when the keyset is Ready."""
    earlier = list((previous or {}).get("conditions") or [])
    status: dict[str, Any] = {
        "conditions": [
            render_condition(c, generation=generation, previous=earlier, now=now)
            for c in (outcome.ready, outcome.rotating)
        ]
    }
    if generation is not None:
        status["observedGeneration"] = generation
    if outcome.ready.status:
        status["activeKid"] = outcome.active_kid
        status["nextKid"] = outcome.next_kid
        status["nextRotationTime"] = (
            format_time(outcome.next_rotation) if outcome.next_rotation else None
        )
        status["revision"] = outcome.revision
        status["keys"] = [
            {key: value for key, value in entry.items() if value is not None}
            for entry in outcome.keys
        ]
    return status


def status_patch(
    desired: Mapping[str, Any], current: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The merge patch turning ``current`` into ``desired`` (None when nothing differs).

    ``None`` values in ``desired`` remove a field; fields ``desired`` does not mention are
    left alone (so a not-ready status keeps the last good key fields).
    """
    current = current or {}
    patch = {key: value for key, value in desired.items() if current.get(key) != value}
    return patch or None


def ready_changed(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether the Ready condition (status, reason, message, generation) is news."""

    def ready(status: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
        for condition in (status or {}).get("conditions") or ():
            if condition.get("type") == "Ready":
                return (
                    condition.get("status"),
                    condition.get("reason"),
                    condition.get("message"),
                    condition.get("observedGeneration"),
                )
        return None

    return ready(desired) != ready(current)
