"""The snapshot store: guarding, pre-encoding, keeping the last good entry, swapping."""

import gzip
import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jwks_operator.core.contract import NEXT_CHANGE_ANNOTATION
from jwks_operator.core.timefmt import format_time
from jwks_operator.server import representation
from jwks_operator.server.representation import Document
from jwks_operator.server.snapshot import (
    UNAVAILABLE_NO_KEYS,
    UNAVAILABLE_REFUSED,
    ApplyResult,
    SnapshotStore,
)
from tests.server.support import configmap_data, jwks_text, private_members, public_jwk


def test_document_is_pre_encoded_with_strong_distinct_etags() -> None:
    document = Document.encode('{"keys":[]}', modified=1_700_000_000.0)
    assert gzip.decompress(document.gzip_body) == document.body == b'{"keys":[]}'
    assert document.etag.startswith('"') and document.etag.endswith('"')
    assert not document.etag.startswith("W/")
    assert document.gzip_etag != document.etag
    assert document.last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"
    # Same bytes on every replica: deterministic gzip and ETag.
    again = Document.encode('{"keys":[]}', modified=1.0)
    assert (again.gzip_body, again.etag) == (document.gzip_body, document.etag)


def test_apply_serves_the_guarded_re_encoded_jwks(ec_private: ec.EllipticCurvePrivateKey) -> None:
    store = SnapshotStore()
    jwk = public_jwk(ec_private)
    assert store.apply("ns", "auth", configmap_data(jwk), {}) is ApplyResult.ADDED
    entry = store.get("ns", "auth")
    assert entry is not None and entry.jwks is not None
    assert json.loads(entry.jwks.body) == {"keys": [jwk]}
    assert b" " not in entry.jwks.body  # compact re-encoding, not the stored text
    assert entry.key_count == 1 and entry.unavailable is None
    assert store.snapshot.total_bytes == entry.size > 0


def test_duplicate_member_trick_cannot_bypass_the_guard(
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    """A JSON text another parser reads differently is served as what the guard checked."""
    jwk = json.dumps(public_jwk(ec_private))
    secret = json.dumps({**public_jwk(ec_private), **private_members(ec_private)})
    tricky = '{"keys":[' + secret + '],"keys":[' + jwk + "]}"
    store = SnapshotStore()
    store.apply("ns", "auth", {"jwks.json": tricky}, {})
    entry = store.get("ns", "auth")
    assert entry is not None and entry.jwks is not None
    assert b'"d"' not in entry.jwks.body
    assert json.loads(entry.jwks.body) == {"keys": [json.loads(jwk)]}


def test_unchanged_input_is_not_rebuilt(ec_private: ec.EllipticCurvePrivateKey) -> None:
    store = SnapshotStore()
    data = configmap_data(public_jwk(ec_private))
    store.apply("ns", "auth", data, {})
    before = store.snapshot
    assert store.apply("ns", "auth", dict(data), {}) is ApplyResult.UNCHANGED
    assert store.snapshot is before


def test_a_change_rebuilds_only_its_entry_and_swaps_a_new_snapshot(
    ec_private: ec.EllipticCurvePrivateKey, ec_private_2: ec.EllipticCurvePrivateKey
) -> None:
    store = SnapshotStore()
    store.apply("ns", "a", configmap_data(public_jwk(ec_private)), {})
    store.apply("ns", "b", configmap_data(public_jwk(ec_private)), {})
    old = store.snapshot
    old_b = old.entries[("ns", "b")]
    result = store.apply("ns", "a", configmap_data(public_jwk(ec_private_2)), {})
    assert result is ApplyResult.CHANGED
    new = store.snapshot
    assert new is not old and new.generation == old.generation + 1
    assert new.entries[("ns", "b")] is old_b
    assert old.entries[("ns", "a")].jwks != new.entries[("ns", "a")].jwks
    with pytest.raises(TypeError):
        new.entries[("ns", "c")] = old_b  # type: ignore[index]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("private_member", "private_member"),
        ("oct", "symmetric_key"),
        ("oct_with_secret", "private_member"),
        ("duplicate_kid", "duplicate_kid"),
        ("bad_json", "invalid_json"),
        ("no_keys_array", "invalid_jwks"),
        ("no_kid", "invalid_jwks"),
    ],
)
def test_refused_content_keeps_the_previous_good_entry(
    case: str, reason: str, rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    good = public_jwk(ec_private)
    bad: dict[str, str] = {
        "private_member": jwks_text({**public_jwk(rsa_private), **private_members(rsa_private)}),
        "oct": jwks_text({"kty": "oct", "kid": "s", "alg": "HS256"}),
        "oct_with_secret": jwks_text({"kty": "oct", "kid": "s", "k": "c2VjcmV0"}),
        "duplicate_kid": jwks_text(good, {**public_jwk(rsa_private), "kid": good["kid"]}),
        "bad_json": '{"keys": [',
        "no_keys_array": '{"key": []}',
        "no_kid": jwks_text({k: v for k, v in good.items() if k != "kid"}),
    }
    store = SnapshotStore()
    store.apply("ns", "auth", configmap_data(good), {})
    kept = store.get("ns", "auth")
    assert kept is not None
    assert store.apply("ns", "auth", {"jwks.json": bad[case]}, {}) is ApplyResult.REFUSED
    entry = store.get("ns", "auth")
    assert entry is not None and entry.jwks is kept.jwks
    assert entry.refused == reason
    assert store.metrics.refused == {reason: 1}
    # The same bad content again is not counted twice; good content clears the refusal.
    assert store.apply("ns", "auth", {"jwks.json": bad[case]}, {}) is ApplyResult.UNCHANGED
    assert store.metrics.refused == {reason: 1}
    store.apply("ns", "auth", configmap_data(good), {})
    entry = store.get("ns", "auth")
    assert entry is not None and entry.refused is None and entry.jwks is not None


def test_refusal_is_logged_without_key_material(
    rsa_private: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    secret = private_members(rsa_private)
    store = SnapshotStore()
    store.apply("ns", "auth", {"jwks.json": jwks_text({**public_jwk(rsa_private), **secret})}, {})
    assert "private member" in caplog.text
    for value in secret.values():
        assert value[:16] not in caplog.text


def test_refused_without_previous_entry_is_unavailable(rsa_private: rsa.RSAPrivateKey) -> None:
    store = SnapshotStore()
    bad = jwks_text({**public_jwk(rsa_private), **private_members(rsa_private)})
    assert store.apply("ns", "auth", {"jwks.json": bad}, {}) is ApplyResult.REFUSED
    entry = store.get("ns", "auth")
    assert entry is not None and entry.jwks is None
    assert entry.unavailable == UNAVAILABLE_REFUSED


def test_empty_or_missing_jwks_is_unavailable_not_refused() -> None:
    store = SnapshotStore()
    assert store.apply("ns", "empty", {"jwks.json": '{"keys": []}'}, {}) is ApplyResult.ADDED
    assert store.apply("ns", "none", {}, {}) is ApplyResult.ADDED
    for name in ("empty", "none"):
        entry = store.get("ns", name)
        assert entry is not None and entry.jwks is None
        assert entry.unavailable == UNAVAILABLE_NO_KEYS
    assert store.metrics.refused == {}


def test_invalid_openid_configuration_is_refused(ec_private: ec.EllipticCurvePrivateKey) -> None:
    store = SnapshotStore()
    data = configmap_data(public_jwk(ec_private), issuer="https://issuer.example")
    store.apply("ns", "auth", data, {})
    broken = {**data, "openid-configuration": "[1, 2"}
    assert store.apply("ns", "auth", broken, {}) is ApplyResult.REFUSED
    entry = store.get("ns", "auth")
    assert entry is not None and entry.openid is not None
    assert json.loads(entry.openid.body)["issuer"] == "https://issuer.example"
    assert store.metrics.refused == {"invalid_openid_configuration": 1}


def test_remove_and_ready() -> None:
    store = SnapshotStore()
    store.apply("ns", "auth", {}, {})
    assert not store.snapshot.ready
    store.mark_ready()
    assert store.snapshot.ready
    assert store.remove("ns", "auth") is True
    assert store.remove("ns", "auth") is False
    assert store.snapshot.entries == {} and store.snapshot.ready
    assert store.snapshot.total_bytes == 0


def test_batch_publishes_once(ec_private: ec.EllipticCurvePrivateKey) -> None:
    store = SnapshotStore()
    generation = store.snapshot.generation
    with store.batch() as batch:
        for index in range(50):
            batch.apply("ns", f"k{index}", configmap_data(public_jwk(ec_private)), {})
        batch.remove("ns", "k0")
        assert store.snapshot.generation == generation  # not visible until the end
    assert store.snapshot.generation == generation + 1
    assert len(store.snapshot.entries) == 49


def test_same_bytes_keep_their_last_modified(ec_private: ec.EllipticCurvePrivateKey) -> None:
    now = [1000.0]
    store = SnapshotStore(clock=lambda: now[0])
    data = configmap_data(public_jwk(ec_private))
    store.apply("ns", "auth", data, {})
    now[0] = 2000.0
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    store.apply("ns", "auth", data, {NEXT_CHANGE_ANNOTATION: format_time(later)})
    entry = store.get("ns", "auth")
    assert entry is not None and entry.jwks is not None
    assert entry.jwks.modified == 1000.0
    assert entry.next_change == later.timestamp()


def test_unparsable_next_change_is_ignored(ec_private: ec.EllipticCurvePrivateKey) -> None:
    store = SnapshotStore()
    store.apply(
        "ns", "auth", configmap_data(public_jwk(ec_private)), {NEXT_CHANGE_ANNOTATION: "soon"}
    )
    entry = store.get("ns", "auth")
    assert entry is not None and entry.next_change is None and entry.jwks is not None


@pytest.mark.parametrize(
    ("configured", "remaining", "expected"),
    [
        (300, None, 300),  # no scheduled change
        (300, 1000, 300),  # change far away: the configured value
        (300, 120, 120),  # capped at the next change
        (300, 10, 60),  # floor of 60 s
        (300, -50, 60),  # change overdue: still the floor, never 0
        (30, 10, 30),  # a configured value under the floor is honoured
        (0, 100, 0),
    ],
)
def test_max_age(configured: int, remaining: int | None, expected: int) -> None:
    now = 1_000_000.0
    next_change = None if remaining is None else now + remaining
    assert representation.max_age(configured, next_change, now) == expected


def test_verifier_is_built_once_per_change(ec_private: ec.EllipticCurvePrivateKey) -> None:
    calls: list[tuple[Mapping[str, Any], str | None]] = []

    def build(jwks: Mapping[str, Any], verification: str | None) -> object:
        calls.append((jwks, verification))
        return ("verifier", len(calls))

    store = SnapshotStore(build_verifier=build)
    data = {**configmap_data(public_jwk(ec_private)), "verification.json": '{"algorithm":"ES256"}'}
    store.apply("ns", "auth", data, {})
    store.apply("ns", "auth", data, {})
    entry = store.get("ns", "auth")
    assert entry is not None and entry.verifier == ("verifier", 1)
    assert len(calls) == 1
    assert calls[0] == ({"keys": [public_jwk(ec_private)]}, '{"algorithm":"ES256"}')


def test_failing_verifier_builder_does_not_stop_serving(
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    def build(jwks: Mapping[str, Any], verification: str | None) -> object:
        raise ValueError("unusable policy")

    store = SnapshotStore(build_verifier=build)
    store.apply("ns", "auth", configmap_data(public_jwk(ec_private)), {})
    entry = store.get("ns", "auth")
    assert entry is not None and entry.jwks is not None and entry.verifier is None


def test_concurrent_writers_lose_nothing(ec_private: ec.EllipticCurvePrivateKey) -> None:
    store = SnapshotStore()
    data = configmap_data(public_jwk(ec_private))

    def writer(prefix: str) -> None:
        for index in range(40):
            store.apply("ns", f"{prefix}-{index}", data, {})

    threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.snapshot.entries) == 160
    assert store.snapshot.total_bytes == sum(e.size for e in store.snapshot.entries.values())


@pytest.mark.parametrize("where", ["nested in a key", "beside the keys"])
def test_private_material_hidden_in_extension_members_is_refused(
    ec_private: ec.EllipticCurvePrivateKey, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """Key material hidden in extension members is a private member like any other."""
    secret = {**public_jwk(ec_private), **private_members(ec_private)}
    if where == "nested in a key":
        document: dict[str, Any] = {
            "keys": [{**public_jwk(ec_private), "x-note": {"backup": secret}}]
        }
    else:
        document = {"keys": [public_jwk(ec_private)], "extra": {"keys": [secret]}}
    store = SnapshotStore()
    assert store.apply("ns", "auth", {"jwks.json": json.dumps(document)}, {}) is ApplyResult.REFUSED
    assert store.metrics.refused == {"private_member": 1}
    assert secret["d"] not in caplog.text


def test_only_public_parameters_are_served(ec_private: ec.EllipticCurvePrivateKey) -> None:
    """Harmless extension members are dropped: only standard public parameters go out."""
    document = {"keys": [{**public_jwk(ec_private), "x-note": "hello"}], "extra": 1}
    store = SnapshotStore()
    store.apply("ns", "auth", {"jwks.json": json.dumps(document)}, {})
    entry = store.get("ns", "auth")
    assert entry is not None and entry.jwks is not None
    assert json.loads(entry.jwks.body) == {"keys": [public_jwk(ec_private)]}


def test_a_non_string_public_parameter_is_refused(ec_private: ec.EllipticCurvePrivateKey) -> None:
    bad = {**public_jwk(ec_private), "x": 12345}
    store = SnapshotStore()
    assert store.apply("ns", "auth", {"jwks.json": jwks_text(bad)}, {}) is ApplyResult.REFUSED
    assert store.metrics.refused == {"invalid_jwks": 1}


def test_discovery_embedding_a_private_key_is_refused(
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    secret = {**public_jwk(ec_private), **private_members(ec_private)}
    data = {
        **configmap_data(public_jwk(ec_private)),
        "openid-configuration": json.dumps({"issuer": "https://i", "jwks": {"keys": [secret]}}),
    }
    store = SnapshotStore()
    assert store.apply("ns", "auth", data, {}) is ApplyResult.REFUSED
    assert store.metrics.refused == {"private_member": 1}


def test_discovery_holding_a_pem_private_key_is_refused(
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    pem = ec_private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    data = {
        **configmap_data(public_jwk(ec_private)),
        "openid-configuration": json.dumps({"issuer": "https://i", "note": pem}),
    }
    store = SnapshotStore()
    assert store.apply("ns", "auth", data, {}) is ApplyResult.REFUSED
    assert store.metrics.refused == {"private_member": 1}


def test_new_bytes_are_always_newer_for_if_modified_since(
    ec_private: ec.EllipticCurvePrivateKey, ec_private_2: ec.EllipticCurvePrivateKey
) -> None:
    """Even when the source's write time does not move (or goes back), a change is newer."""
    store = SnapshotStore()
    store.apply("ns", "auth", configmap_data(public_jwk(ec_private)), {}, modified=5000.0)
    store.apply("ns", "auth", configmap_data(public_jwk(ec_private_2)), {}, modified=4000.0)
    entry = store.get("ns", "auth")
    assert entry is not None and entry.jwks is not None
    assert entry.jwks.modified == 5001.0
