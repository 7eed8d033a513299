"""The operator end to end: create, sign and verify, rotate on schedule, rotate by hand,
revoke, change the algorithm, and reconcile exactly once per change.

The real ``jwks-operator run`` runs in a subprocess against the API emulator of
tests/support (resourceVersion and 409, generation, status subresource, watch resume,
label selectors, finalizers, ownerReference GC, generateName: see its docstring).

"Exactly once" is checked through the operator's own log: it writes one ``Reconciled``
line per reconciliation, and each scheduled reconciliation changes the key set, so in a
keyset's life the number of reconciliations equals its revision (bootstrap is revision 1).
"""

import json
import time
from typing import Any

import pytest

from jwks_operator.core.contract import (
    CONFIGMAP_JWKS,
    CONFIGMAP_OPENID,
    CONTENT_HASH_ANNOTATION,
    KEYSET_LABEL,
    MANAGED_BY_LABEL,
    NEXT_CHANGE_ANNOTATION,
    ROTATE_ANNOTATION,
    SECRET_KEYS,
    SECRET_SIGNING_KID,
    SECRET_SIGNING_PEM,
)
from jwks_operator.store.kubernetes import content_hash
from tests.operator.harness import (
    KEYSETS,
    OperatorUnderTest,
    condition,
    manifest,
    rotation,
    sign_token,
    verifies,
)

pytestmark = pytest.mark.timeout(120)


def test_create_publishes_active_and_next_and_tokens_verify(operator: OperatorUnderTest) -> None:
    issuer = "https://auth.example.com/identity/auth"
    operator.create(manifest("auth", "identity", algorithm="RS256", issuer=issuer))

    obj = operator.wait_ready("auth", "identity", generation=1)
    status = obj["status"]
    states = {key["kid"]: key["state"] for key in status["keys"]}
    assert sorted(states.values()) == ["active", "next"]
    assert states[status["activeKid"]] == "active" and states[status["nextKid"]] == "next"
    assert status["revision"] == 1 and status["observedGeneration"] == 1
    assert status["nextRotationTime"]
    assert condition(obj, "Rotating") == {
        "type": "Rotating",
        "status": "False",
        "reason": "Steady",
        "message": "no retired key is published",
        "lastTransitionTime": condition(obj, "Rotating")["lastTransitionTime"],  # type: ignore[index]
        "observedGeneration": 1,
    }

    secret = operator.secret("auth-signing", "identity")
    configmap = operator.configmap("auth-jwks", "identity")
    assert secret is not None and configmap is not None
    for managed in (secret, configmap):
        labels = managed["metadata"]["labels"]
        assert labels[MANAGED_BY_LABEL] == "jwks-operator" and labels[KEYSET_LABEL] == "auth"
        assert "ownerReferences" not in managed["metadata"]  # deletionPolicy Retain
    assert secret["type"] == "Opaque"
    assert configmap["metadata"]["annotations"][CONTENT_HASH_ANNOTATION] == content_hash(
        configmap["data"]
    )
    assert configmap["metadata"]["annotations"][NEXT_CHANGE_ANNOTATION]

    data = operator.secret_data("auth-signing", "identity")
    assert data[SECRET_SIGNING_KID] == status["activeKid"]
    assert data[SECRET_SIGNING_PEM].startswith("-----BEGIN PRIVATE KEY-----")
    jwks = operator.jwks("auth-jwks", "identity")
    assert [key["kid"] for key in jwks["keys"]] == [status["activeKid"], status["nextKid"]]

    kid, token = sign_token(data, aud="api")
    assert kid == status["activeKid"]
    assert verifies(token, jwks)

    discovery = json.loads(configmap["data"][CONFIGMAP_OPENID])
    assert discovery == {
        "issuer": issuer,
        "jwks_uri": issuer + "/.well-known/jwks.json",
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    reasons = operator.event_reasons("auth", "identity")
    assert "Bootstrapped" in reasons and "NextKeyCreated" in reasons
    assert operator.settle("auth", "identity") == 1


def test_second_scale_rotations_keep_every_token_verifiable(operator: OperatorUnderTest) -> None:
    """Three rotations at interval 4s; at every step every token of every key that was
    active verifies until retireAfter has passed since the key stopped signing, and every
    published kid has its private key stored."""
    retire_after = 2.0
    operator.create(
        manifest("spin", algorithm="ES256", rotation=rotation("4s", "1s", f"{retire_after:g}s"))
    )
    operator.wait_ready("spin")

    tokens: dict[str, str] = {}
    retired_at: dict[str, float] = {}
    checks = 0
    deadline = time.monotonic() + 40
    while len(tokens) < 4 and time.monotonic() < deadline:
        jwks = operator.jwks("spin-jwks")  # one read: the ConfigMap changes under us
        published = [key["kid"] for key in jwks["keys"]]
        checked_at = time.time()
        data = operator.secret_data("spin-signing")  # read after the ConfigMap
        stored = json.loads(data[SECRET_KEYS])["keys"]
        stored_kids = {key["kid"] for key in stored}
        for key in stored:
            if key["state"] == "retired":
                retired_at[key["kid"]] = _epoch(key["retiredAt"])
        # Private before public: a published kid is stored, unless it left since.
        for kid in published:
            assert kid in stored_kids or kid in retired_at, f"{kid} published without private key"
        if data[SECRET_SIGNING_KID] not in tokens:
            kid, token = sign_token(data)
            tokens[kid] = token
        for kid, token in tokens.items():
            if kid in published:
                assert verifies(token, jwks), f"token of {kid} no longer verifies"
            else:
                assert kid in retired_at, f"{kid} left the JWKS without being retired"
                assert checked_at >= retired_at[kid] + retire_after, f"{kid} left too early"
        checks += 1
        time.sleep(0.1)

    assert len(tokens) >= 4, f"only {len(tokens)} active keys seen in 40s"
    assert checks > 20
    status = operator.wait_ready("spin")["status"]
    assert operator.reconcile_triggers("spin").count("daemon started") == 1
    # One reconciliation per change of the key set, never a duplicate.
    assert operator.reconciles("spin") == status["revision"]


def test_rotate_annotation_rotates_once_per_value(operator: OperatorUnderTest) -> None:
    operator.create(manifest("manual", algorithm="ES256", rotation=rotation("1h", "1s", "1h")))
    before = operator.wait_ready("manual")["status"]
    time.sleep(1.2)  # let the next key be published for prePublish

    operator.cluster.patch(
        KEYSETS, "manual", {"metadata": {"annotations": {ROTATE_ANNOTATION: "1"}}}
    )
    after = operator.wait_keyset(
        "manual", lambda o: o["status"].get("activeKid") == before["nextKid"]
    )["status"]
    assert after["nextKid"] not in (before["activeKid"], before["nextKid"])
    operator.wait_event("manual", "ManualRotation")
    count = operator.settle("manual")

    # Other metadata changes, or the same value again, do not rotate.
    operator.cluster.patch(KEYSETS, "manual", {"metadata": {"annotations": {"note": "x"}}})
    operator.cluster.patch(KEYSETS, "manual", {"metadata": {"labels": {"team": "a"}}})
    assert operator.settle("manual") == count
    assert operator.keyset("manual")["status"]["activeKid"] == before["nextKid"]  # type: ignore[index]

    operator.cluster.patch(
        KEYSETS, "manual", {"metadata": {"annotations": {ROTATE_ANNOTATION: "2"}}}
    )
    operator.wait_keyset("manual", lambda o: o["status"].get("activeKid") == after["nextKid"])
    assert operator.settle("manual") == count + 1
    assert (
        operator.event_reasons("manual").count("ManualRotation")
        + operator.event_reasons("manual").count("RotatedEarly")
        == 2
    )


def test_revoked_keys_leave_jwks_and_secret_at_once(operator: OperatorUnderTest) -> None:
    operator.create(manifest("revoke", algorithm="ES256", rotation=rotation("1h", "1s", "1h")))
    status = operator.wait_ready("revoke")["status"]
    data = operator.secret_data("revoke-signing")
    _, old_token = sign_token(data)

    operator.cluster.patch(KEYSETS, "revoke", {"spec": {"revokedKeys": [status["nextKid"]]}})
    revised = operator.wait_ready("revoke", generation=2)["status"]
    assert revised["activeKid"] == status["activeKid"]
    assert revised["nextKid"] != status["nextKid"]
    assert status["nextKid"] not in operator.kids("revoke-jwks")
    assert status["nextKid"] not in {k["kid"] for k in operator.stored_keys("revoke-signing")}
    operator.wait_event("revoke", "KeyRevoked")

    # Revoking the active key: a new active key at once, reported as a Warning.
    operator.cluster.patch(
        KEYSETS, "revoke", {"spec": {"revokedKeys": [status["nextKid"], status["activeKid"]]}}
    )
    final = operator.wait_ready("revoke", generation=3)["status"]
    assert final["activeKid"] not in (status["activeKid"], status["nextKid"])
    assert status["activeKid"] not in operator.kids("revoke-jwks")
    assert not verifies(old_token, operator.jwks("revoke-jwks"))
    warning = operator.wait_event("revoke", "ActiveKeyRevoked")
    assert warning["type"] == "Warning"
    assert operator.settle("revoke") == 3


def test_algorithm_change_rotates_to_the_new_kind_of_key(operator: OperatorUnderTest) -> None:
    operator.create(manifest("algo", algorithm="ES256", rotation=rotation("3s", "1s", "2s")))
    first = operator.wait_ready("algo")["status"]

    operator.cluster.patch(KEYSETS, "algo", {"spec": {"algorithm": "RS256"}})
    changed = operator.wait_ready("algo", generation=2)["status"]
    algorithms = {key["kid"]: key["algorithm"] for key in changed["keys"]}
    assert algorithms[changed["nextKid"]] == "RS256"
    operator.wait_event("algo", "NextKeyReplaced")
    assert first["nextKid"] not in operator.kids("algo-jwks")  # never signed: withdrawn

    def rs256_active(obj: dict[str, Any]) -> bool:
        keys = {key["kid"]: key for key in obj["status"].get("keys", [])}
        active = keys.get(obj["status"].get("activeKid"), {})
        return bool(active.get("algorithm") == "RS256")

    operator.wait_keyset("algo", rs256_active, timeout=20)
    data = operator.secret_data("algo-signing")
    _, token = sign_token(data)
    assert verifies(token, operator.jwks("algo-jwks"))


def test_spec_change_reconciles_exactly_once(operator: OperatorUnderTest) -> None:
    operator.create(manifest("once", algorithm="ES256", rotation=rotation("1h", "1m", "1h")))
    operator.wait_ready("once")
    assert operator.settle("once") == 1

    operator.cluster.patch(KEYSETS, "once", {"spec": {"rotation": {"retireAfter": "2h"}}})
    operator.wait_ready("once", generation=2)
    assert operator.settle("once") == 2
    assert operator.reconcile_triggers("once") == ["daemon started", "keyset changed"]

    configmap = operator.configmap("once-jwks")
    assert configmap is not None
    operator.cluster.patch("v1/configmaps", "once-jwks", {"data": {CONFIGMAP_JWKS: '{"keys":[]}'}})
    operator.wait_event("once", "PublicKeysRepaired")
    assert operator.settle("once") == 3


def _epoch(text: str) -> float:
    from jwks_operator.core.timefmt import parse_time

    return parse_time(text).timestamp()
