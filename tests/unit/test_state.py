import json
from datetime import UTC, datetime, timedelta

import pytest

from jwks_operator.core.lifecycle import plan
from jwks_operator.core.secretdata import secret_data
from jwks_operator.core.spec import parse_spec
from jwks_operator.core.state import CorruptStateError, KeySetState, state_from_json, state_to_json
from tests.unit.keyfactory import PooledKeyFactory

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = parse_spec(
    "a",
    {
        "algorithm": "ES256",
        "rotation": {"interval": "20s", "prePublish": "5s", "retireAfter": "10s"},
    },
)


def rotated_state() -> KeySetState:
    factory = PooledKeyFactory()
    state = KeySetState()
    now = NOW
    for _ in range(3):
        result = plan(SPEC, state, now, new_key=factory)
        state = result.state.mark_published(frozenset(k["kid"] for k in result.jwks["keys"]), now)
        now += timedelta(seconds=20)
    return state


def test_round_trip_keeps_everything() -> None:
    state = rotated_state()
    assert len(state.keys) == 3
    assert state_from_json(state_to_json(state)) == state


def test_secret_data_holds_the_active_key_in_mountable_forms() -> None:
    state = rotated_state()
    data = secret_data(state)
    assert state.active is not None
    assert data["signing.kid"] == state.active.kid
    assert data["signing.pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert json.loads(data["signing.jwk"])["d"] == state.active.material.private_jwk["d"]


def edit(state: KeySetState, change: object) -> str:
    document = json.loads(state_to_json(state))
    change(document)  # type: ignore[operator]
    return json.dumps(document)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=2), "version 1"),
        (lambda d: d.update(keys="x"), '"keys" list'),
        (lambda d: d["keys"][0].update(kid="forged"), "thumbprint"),
        (lambda d: d["keys"][0]["privateJwk"].update(d="AAAA"), "keys\\[0\\]"),
        (lambda d: d["keys"][0].update(state="dormant"), "malformed"),
        (lambda d: d["keys"][0].update(createdAt="yesterday"), "malformed"),
        (lambda d: d["keys"].append(d["keys"][0]), "same kid twice"),
        (
            lambda d: [
                k.update(state="active", activatedAt="2026-01-01T00:00:00Z") for k in d["keys"]
            ],
            "more than one active",
        ),
        (lambda d: d.update(revoked="all"), "bookkeeping"),
        (lambda d: d["keys"][0].pop("privateJwk"), "malformed"),
    ],
)
def test_corruption_is_refused_with_a_reason(change: object, message: str) -> None:
    state = rotated_state()
    text = edit(state, change)
    with pytest.raises(CorruptStateError, match=message) as caught:
        state_from_json(text)
    for key in state.keys:
        assert key.material.private_jwk["d"] not in str(caught.value)


@pytest.mark.parametrize("text", ["", "garbage", "[]", "null", b"\xff\xfe"])
def test_garbage_is_refused(text: str | bytes) -> None:
    with pytest.raises(CorruptStateError):
        state_from_json(text)
