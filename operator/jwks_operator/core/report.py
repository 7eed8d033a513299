"""Public summaries of a keyset's state, for status, logs and the standalone status page.

They carry kids, states and times, never key material: everything here may be shown to
anyone who can ``kubectl get`` the resource.
"""

from typing import Any

from jwks_operator.core.lifecycle import activation_due, publication_order, removal_due
from jwks_operator.core.spec import KeySetSpec
from jwks_operator.core.state import KeySetState, KeyState
from jwks_operator.core.timefmt import format_time


def key_summaries(spec: KeySetSpec, state: KeySetState) -> list[dict[str, Any]]:
    """One entry per published key, in JWKS order, with the times that matter for it."""
    due = activation_due(spec, state)
    summaries: list[dict[str, Any]] = []
    for key in publication_order(state):
        entry: dict[str, Any] = {
            "kid": key.kid,
            "state": key.state.value,
            "algorithm": key.material.algorithm,
            "createdAt": format_time(key.created_at),
        }
        if key.published_at is not None:
            entry["publishedAt"] = format_time(key.published_at)
        if key.state is KeyState.NEXT and due is not None:
            entry["activatesAt"] = format_time(due)
        if key.activated_at is not None:
            entry["activatedAt"] = format_time(key.activated_at)
        if key.state is KeyState.ACTIVE and due is not None:
            entry["retiresAt"] = format_time(due)
        if key.state is KeyState.RETIRED:
            entry["retiredAt"] = format_time(key.retired_at) if key.retired_at else None
            entry["removesAt"] = format_time(removal_due(spec, key))
        summaries.append(entry)
    for orphan in sorted(state.orphans, key=lambda o: o.kid):
        summaries.append(
            {
                "kid": orphan.kid,
                "state": "orphaned",
                "algorithm": orphan.public_jwk.get("alg"),
                "removesAt": format_time(orphan.removes_at),
            }
        )
    return summaries
