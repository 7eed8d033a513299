"""Drift, damage and refusal: what the operator does when its objects are touched by others.

Every scenario runs the real CLI against the API emulator (see tests/support/emulator.py
for the semantics it provides: watch events with label selectors, resourceVersions,
finalizers, ownerReference garbage collection).
"""

import base64
import json

import pytest

from jwks_operator.core.contract import CONFIGMAP_JWKS, SECRET_KEYS
from tests.operator.harness import KEYSETS, OperatorUnderTest, condition, manifest, rotation

pytestmark = pytest.mark.timeout(120)

LONG = rotation("1h", "1m", "1h")


def test_deleted_configmap_is_rebuilt_with_an_event(operator: OperatorUnderTest) -> None:
    operator.create(manifest("cm-gone", algorithm="ES256", rotation=LONG))
    operator.wait_ready("cm-gone")
    kids = operator.kids("cm-gone-jwks")
    count = operator.settle("cm-gone")

    operator.cluster.delete("v1/configmaps", "cm-gone-jwks")
    operator.cluster.wait_for_object("v1/configmaps", "cm-gone-jwks")
    assert operator.kids("cm-gone-jwks") == kids
    event = operator.wait_event("cm-gone", "PublicKeysRepaired")
    assert "missing" in event["message"]
    assert operator.settle("cm-gone") == count + 1


def test_hand_edited_configmap_is_rebuilt(operator: OperatorUnderTest) -> None:
    operator.create(manifest("cm-edit", algorithm="ES256", rotation=LONG))
    operator.wait_ready("cm-edit")
    kids = operator.kids("cm-edit-jwks")

    operator.cluster.patch(
        "v1/configmaps", "cm-edit-jwks", {"data": {CONFIGMAP_JWKS: '{"keys":[]}', "extra": "x"}}
    )
    operator.cluster.wait_for(lambda: operator.kids("cm-edit-jwks") == kids, 15)
    configmap = operator.configmap("cm-edit-jwks")
    assert configmap is not None and "extra" not in configmap["data"]
    event = operator.wait_event("cm-edit", "PublicKeysRepaired")
    assert "edited" in event["message"]


def test_deleted_secret_keeps_public_keys_and_makes_a_new_active_key(
    operator: OperatorUnderTest,
) -> None:
    operator.create(manifest("sec-gone", algorithm="ES256", rotation=LONG))
    before = operator.wait_ready("sec-gone")["status"]

    operator.cluster.delete("v1/secrets", "sec-gone-signing")
    warning = operator.wait_event("sec-gone", "SecretLost")
    assert warning["type"] == "Warning"
    after = operator.wait_keyset(
        "sec-gone", lambda o: o["status"].get("activeKid") not in (None, before["activeKid"])
    )["status"]

    states = {key["kid"]: key["state"] for key in after["keys"]}
    assert states[before["activeKid"]] == "orphaned"
    assert states[before["nextKid"]] == "orphaned"
    assert after["activeKid"] not in (before["activeKid"], before["nextKid"])
    published = operator.kids("sec-gone-jwks")
    assert {before["activeKid"], before["nextKid"], after["activeKid"]} <= set(published)
    assert condition(operator.keyset("sec-gone"), "Rotating")["status"] == "True"  # type: ignore[index]
    assert operator.secret("sec-gone-signing") is not None


def test_corrupt_secret_is_refused_and_the_last_jwks_stays(operator: OperatorUnderTest) -> None:
    operator.create(manifest("sec-bad", algorithm="ES256", rotation=LONG))
    operator.wait_ready("sec-bad")
    secret = operator.secret("sec-bad-signing")
    assert secret is not None
    good = secret["data"][SECRET_KEYS]
    jwks_before = operator.jwks("sec-bad-jwks")

    garbage = base64.b64encode(b'{"version": 1, "keys": [{"kid": "x"}]}').decode()
    operator.cluster.patch("v1/secrets", "sec-bad-signing", {"data": {SECRET_KEYS: garbage}})
    refused = operator.wait_condition("sec-bad", "CorruptSecret")
    assert "sec-bad-signing" in condition(refused)["message"]  # type: ignore[index]
    operator.wait_event("sec-bad", "CorruptSecret")
    operator.settle("sec-bad")

    assert operator.jwks("sec-bad-jwks") == jwks_before
    after = operator.secret("sec-bad-signing")
    assert after is not None and after["data"][SECRET_KEYS] == garbage  # no new keys
    assert refused["status"]["activeKid"] == jwks_before["keys"][0]["kid"]  # last good state

    operator.cluster.patch("v1/secrets", "sec-bad-signing", {"data": {SECRET_KEYS: good}})
    repaired = operator.wait_ready("sec-bad")
    assert [k["kid"] for k in repaired["status"]["keys"]] == [k["kid"] for k in jwks_before["keys"]]


def test_invalid_spec_writes_nothing_and_names_the_field(operator: OperatorUnderTest) -> None:
    operator.create(manifest("bad-spec", algorithm="HS256", keySize=1024))
    refused = operator.wait_condition("bad-spec", "InvalidSpec")
    message = condition(refused)["message"]  # type: ignore[index]
    assert "spec.algorithm" in message
    assert refused["status"]["observedGeneration"] == 1
    warning = operator.wait_event("bad-spec", "InvalidSpec")
    assert warning["type"] == "Warning"
    operator.settle("bad-spec")
    assert operator.secret("bad-spec-signing") is None
    assert operator.configmap("bad-spec-jwks") is None

    operator.cluster.patch(KEYSETS, "bad-spec", {"spec": {"algorithm": "ES256", "keySize": None}})
    operator.wait_ready("bad-spec", generation=2)
    assert operator.event_reasons("bad-spec").count("InvalidSpec") == 1


def test_foreign_objects_are_never_overwritten(operator: OperatorUnderTest) -> None:
    foreign = operator.cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "taken-signing", "namespace": "default"},
            "stringData": {"password": "hunter2"},
        }
    )
    operator.create(manifest("taken", algorithm="ES256", rotation=LONG))
    refused = operator.wait_condition("taken", "NameConflict")
    message = condition(refused)["message"]  # type: ignore[index]
    assert "Secret taken-signing already exists" in message and "spec.secretName" in message
    operator.settle("taken")
    untouched = operator.secret("taken-signing")
    assert untouched is not None
    assert untouched["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert operator.configmap("taken-jwks") is None

    # A second keyset pointing at another keyset's objects is refused the same way.
    operator.create(manifest("owner", algorithm="ES256", rotation=LONG))
    operator.wait_ready("owner")
    operator.create(
        manifest("intruder", algorithm="ES256", rotation=LONG, configMapName="owner-jwks")
    )
    intruder = operator.wait_condition("intruder", "NameConflict")
    assert "belongs to JwksKeySet 'owner'" in condition(intruder)["message"]  # type: ignore[index]
    assert operator.secret("intruder-signing") is None

    # Pointing it elsewhere resolves the conflict.
    operator.cluster.patch(KEYSETS, "taken", {"spec": {"secretName": "taken-2"}})
    operator.wait_ready("taken", generation=2)
    assert operator.secret("taken-2") is not None


def test_delete_policy_delete_removes_objects_with_the_keyset(operator: OperatorUnderTest) -> None:
    operator.create(
        manifest("ephemeral", algorithm="ES256", rotation=LONG, deletionPolicy="Delete")
    )
    obj = operator.wait_ready("ephemeral")
    for found in (operator.secret("ephemeral-signing"), operator.configmap("ephemeral-jwks")):
        assert found is not None
        references = found["metadata"]["ownerReferences"]
        assert [(r["kind"], r["name"], r["uid"]) for r in references] == [
            ("JwksKeySet", "ephemeral", obj["metadata"]["uid"])
        ]

    operator.cluster.delete(KEYSETS, "ephemeral")
    operator.cluster.wait_for_absence(KEYSETS, "ephemeral", timeout=15)
    operator.cluster.wait_for_absence("v1/secrets", "ephemeral-signing")
    operator.cluster.wait_for_absence("v1/configmaps", "ephemeral-jwks")


def test_delete_policy_retain_keeps_objects_and_a_new_keyset_adopts_them(
    operator: OperatorUnderTest,
) -> None:
    operator.create(manifest("durable", algorithm="ES256", rotation=LONG))
    first = operator.wait_ready("durable")["status"]
    stored = json.loads(operator.secret_data("durable-signing")[SECRET_KEYS])

    operator.cluster.delete(KEYSETS, "durable")
    operator.cluster.wait_for_absence(KEYSETS, "durable", timeout=15)
    assert operator.secret("durable-signing") is not None
    assert operator.configmap("durable-jwks") is not None

    operator.create(manifest("durable", algorithm="ES256", rotation=LONG))
    second = operator.wait_ready("durable")["status"]
    assert (second["activeKid"], second["nextKid"]) == (first["activeKid"], first["nextKid"])
    again = json.loads(operator.secret_data("durable-signing")[SECRET_KEYS])
    assert [k["kid"] for k in again["keys"]] == [k["kid"] for k in stored["keys"]]

    # Switching the policy to Delete adds the owner reference to the adopted objects.
    operator.cluster.patch(KEYSETS, "durable", {"spec": {"deletionPolicy": "Delete"}})
    operator.wait_ready("durable", generation=2)
    operator.cluster.wait_for(
        lambda: (operator.secret("durable-signing") or {})["metadata"].get("ownerReferences"),
        10,
    )


def test_renamed_targets_keep_the_keys_and_release_the_old_objects(
    operator: OperatorUnderTest,
) -> None:
    operator.create(manifest("renamed", algorithm="ES256", rotation=LONG))
    before = operator.wait_ready("renamed")["status"]
    kids = operator.kids("renamed-jwks")
    count = operator.settle("renamed")

    operator.cluster.patch(
        KEYSETS, "renamed", {"spec": {"secretName": "renamed-v2", "configMapName": "renamed-v2"}}
    )
    after = operator.wait_ready("renamed", generation=2)["status"]
    assert (after["activeKid"], after["nextKid"]) == (before["activeKid"], before["nextKid"])
    assert operator.kids("renamed-v2") == kids
    assert [k["kid"] for k in operator.stored_keys("renamed-v2")] == [
        k["kid"] for k in operator.stored_keys("renamed-signing")
    ]
    operator.wait_event("renamed", "SecretRenamed")
    released = operator.wait_event("renamed", "Released")
    assert "Secret renamed-signing" in released["message"]
    assert "ConfigMap renamed-jwks" in released["message"]
    for old in (operator.secret("renamed-signing"), operator.configmap("renamed-jwks")):
        assert old is not None
        assert "jwks.dev/keyset" not in old["metadata"]["labels"]
        assert old["metadata"]["annotations"]["jwks.dev/released-from"] == "renamed"
    assert operator.settle("renamed") == count + 1
    assert "SecretLost" not in operator.event_reasons("renamed")


def test_a_failed_api_call_is_reported_and_retried(operator: OperatorUnderTest) -> None:
    operator.create(manifest("flaky", algorithm="ES256", rotation=LONG))
    operator.wait_ready("flaky")
    kids = operator.kids("flaky-jwks")

    operator.cluster.fail_next(500, 1, verb="patch", plural="configmaps", name="flaky-jwks")
    operator.cluster.patch("v1/configmaps", "flaky-jwks", {"data": {CONFIGMAP_JWKS: "{}"}})
    warning = operator.wait_event("flaky", "ReconcileFailed")
    assert warning["type"] == "Warning" and "injected failure" in warning["message"]
    # Retried after a backoff of 1 s: repaired, Ready again.
    operator.cluster.wait_for(lambda: operator.kids("flaky-jwks") == kids, 15)
    recovered = operator.wait_ready("flaky")
    # Ready again, and the Ready chain says what this reconciliation did: it repaired.
    assert condition(recovered)["reason"] == "PublicKeysRepaired"  # type: ignore[index]
    operator.wait_event("flaky", "PublicKeysRepaired")
    assert operator.event_reasons("flaky").count("ReconcileFailed") == 1


def test_lost_watches_and_410_relists_cause_no_reconcile_and_drift_is_still_seen(
    operator: OperatorUnderTest,
) -> None:
    operator.create(manifest("relist", algorithm="ES256", rotation=LONG))
    operator.wait_ready("relist")
    count = operator.settle("relist")

    operator.cluster.compact()  # a watch resuming from an old resourceVersion gets 410 Gone
    assert operator.cluster.drop_watches(abort=True) > 0
    operator.cluster.wait_for(lambda: operator.cluster.watch_count() >= 4, 15)
    assert operator.settle("relist") == count  # the relist is no news

    operator.cluster.delete("v1/configmaps", "relist-jwks")
    operator.cluster.wait_for_object("v1/configmaps", "relist-jwks", timeout=15)
    assert operator.settle("relist") == count + 1
