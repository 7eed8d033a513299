"""Rendering an Outcome as .status: Kubernetes condition conventions, no key material."""

import json
from datetime import UTC, datetime, timedelta

from jwks_operator.core.contract import PRIVATE_MEMBERS
from jwks_operator.core.readiness import Facts
from jwks_operator.core.spec import parse_spec
from jwks_operator.operator.status import ready_changed, render_status, status_patch
from jwks_operator.reconcile import Outcome, reconcile, refused
from jwks_operator.store.memory import MemoryStore

NOW = datetime(2030, 1, 1, tzinfo=UTC)


async def ready_outcome() -> tuple[MemoryStore, Outcome]:
    store = MemoryStore()
    outcome = await reconcile(parse_spec("auth", {"algorithm": "ES256"}), store, clock=lambda: NOW)
    return store, outcome


async def test_ready_status_has_conditions_and_key_fields_without_material() -> None:
    store, outcome = await ready_outcome()
    status = render_status(outcome, generation=3, previous=None, now=NOW)

    ready, rotating = status["conditions"]
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "KeysPublished",
        "message": ready["message"],
        "lastTransitionTime": "2030-01-01T00:00:00Z",
        "observedGeneration": 3,
    }
    assert (rotating["type"], rotating["status"], rotating["reason"]) == (
        "Rotating",
        "False",
        "Steady",
    )
    assert status["observedGeneration"] == 3
    assert status["activeKid"] in ready["message"] and status["nextKid"] in ready["message"]
    assert status["nextRotationTime"] == "2030-01-31T00:00:00Z"
    assert status["revision"] == 1
    assert [k["state"] for k in status["keys"]] == ["active", "next"]
    assert all(None not in key.values() for key in status["keys"])

    text = json.dumps(status)
    assert store.private is not None
    state = json.loads(store.private["keys.json"])
    for key in state["keys"]:
        for member in PRIVATE_MEMBERS & key["privateJwk"].keys():
            assert key["privateJwk"][member] not in text


async def test_last_transition_time_moves_only_when_status_flips() -> None:
    _, outcome = await ready_outcome()
    first = render_status(outcome, generation=1, previous=None, now=NOW)
    later = NOW + timedelta(minutes=5)
    same = render_status(outcome, generation=2, previous=first, now=later)
    assert same["conditions"][0]["lastTransitionTime"] == "2030-01-01T00:00:00Z"
    assert same["conditions"][0]["observedGeneration"] == 2

    failed = render_status(
        refused(Facts(corrupt_secret="bad")), generation=2, previous=same, now=later
    )
    assert failed["conditions"][0]["lastTransitionTime"] == "2030-01-01T00:05:00Z"
    assert failed["conditions"][0]["status"] == "False"


async def test_not_ready_status_touches_conditions_only() -> None:
    _, outcome = await ready_outcome()
    good = render_status(outcome, generation=1, previous=None, now=NOW)
    bad = render_status(
        refused(Facts(spec_error="spec.algorithm: nope")), generation=2, previous=good, now=NOW
    )
    assert set(bad) == {"conditions", "observedGeneration"}
    patch = status_patch(bad, good)
    assert patch is not None and set(patch) == {"conditions", "observedGeneration"}
    assert bad["conditions"][0]["reason"] == "InvalidSpec"
    assert ready_changed(bad, good)


async def test_identical_status_needs_no_patch() -> None:
    _, outcome = await ready_outcome()
    status = render_status(outcome, generation=1, previous=None, now=NOW)
    again = render_status(outcome, generation=1, previous=status, now=NOW + timedelta(hours=1))
    assert status_patch(again, status) is None
    assert not ready_changed(again, status)
    # A field that disappears is removed by a null in the merge patch.
    assert status_patch({"nextKid": None}, {"nextKid": "x"}) == {"nextKid": None}
