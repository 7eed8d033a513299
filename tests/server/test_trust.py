"""The server's trust decision on its own: which ConfigMap, which keys, and why not."""

import json
from typing import Any

from jwks_operator.core.contract import API_VERSION, KEYSET_UID_ANNOTATION, KIND
from jwks_operator.server.trust import PublishedMap, decide, keyset_record, published_map
from tests.server.support import configmap, configmap_data, ec_key, public_jwk, rsa_key

GOOD, NEXT, EVIL = public_jwk(ec_key()), public_jwk(ec_key()), public_jwk(rsa_key())


def keyset(*kids: str, uid: str = "uid-1", config_map: str | None = None) -> Any:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "default", "name": "auth", "uid": uid},
        "spec": {"configMapName": config_map} if config_map else {},
        "status": {"keys": [{"kid": kid} for kid in kids]},
    }
    record = keyset_record(obj)
    assert record is not None
    return record


def published(
    *keys: dict[str, Any],
    label: str = "auth",
    uid: str | None = None,
    owners: list[dict[str, Any]] | None = None,
) -> PublishedMap | None:
    annotations = {KEYSET_UID_ANNOTATION: uid} if uid else {}
    obj = configmap("auth-jwks", label, configmap_data(*keys), annotations=annotations)
    if owners:
        obj["metadata"]["ownerReferences"] = owners
    return published_map(obj, None)


def served_kids(decision: Any) -> list[str]:
    assert decision.data is not None
    return [key["kid"] for key in json.loads(decision.data["jwks.json"])["keys"]]


def test_the_bound_configmap_serves_exactly_the_listed_keys_in_order() -> None:
    decision = decide(keyset(GOOD["kid"], NEXT["kid"]), published(GOOD, NEXT, uid="uid-1"))
    assert served_kids(decision) == [GOOD["kid"], NEXT["kid"]]
    assert decision.refused == ()


def test_the_default_name_and_an_owner_reference_bind_too() -> None:
    owner = [{"apiVersion": API_VERSION, "kind": KIND, "name": "auth", "uid": "uid-1"}]
    decision = decide(keyset(GOOD["kid"]), published(GOOD, owners=owner))
    assert served_kids(decision) == [GOOD["kid"]]
    record = keyset(GOOD["kid"], config_map="custom")
    assert record.config_map_name == "custom"


def test_a_configmap_without_the_keysets_uid_or_label_is_not_served() -> None:
    assert decide(keyset(GOOD["kid"]), published(GOOD)).data is None
    assert decide(keyset(GOOD["kid"]), published(GOOD, uid="uid-2")).data is None
    relabelled = published(GOOD, label="billing", uid="uid-1")
    assert "labelled for keyset 'billing'" in str(decide(keyset(GOOD["kid"]), relabelled).problem)
    assert decide(None, published(GOOD, uid="uid-1")).data is None
    assert decide(keyset(GOOD["kid"]), None).data is None


def test_an_unlisted_key_is_refused() -> None:
    decision = decide(keyset(GOOD["kid"]), published(GOOD, EVIL, uid="uid-1"))
    assert served_kids(decision) == [GOOD["kid"]]
    assert [(r.kid, r.reason) for r in decision.refused] == [(EVIL["kid"], "unlisted")]


def test_material_swapped_under_a_listed_kid_is_refused() -> None:
    swapped = {**EVIL, "kid": GOOD["kid"]}
    decision = decide(keyset(GOOD["kid"], NEXT["kid"]), published(swapped, NEXT, uid="uid-1"))
    assert served_kids(decision) == [NEXT["kid"]]
    assert [(r.kid, r.reason) for r in decision.refused] == [(GOOD["kid"], "thumbprint")]


def test_a_listed_kid_missing_from_the_configmap_is_absent_not_invented() -> None:
    decision = decide(keyset(GOOD["kid"], NEXT["kid"]), published(GOOD, uid="uid-1"))
    assert served_kids(decision) == [GOOD["kid"]]
    assert [(r.kid, r.reason) for r in decision.refused] == [(NEXT["kid"], "absent")]


def test_a_wiped_status_serves_no_key() -> None:
    decision = decide(keyset(), published(GOOD, NEXT, uid="uid-1"))
    assert served_kids(decision) == []
    assert {r.reason for r in decision.refused} == {"unlisted"}


def test_a_document_the_guard_refuses_is_handed_on_whole() -> None:
    """Cleaning a leaky document here would hide the leak; the store's guard refuses it."""
    leaky = {**GOOD, "d": "c2VjcmV0"}
    decision = decide(keyset(GOOD["kid"]), published(leaky, uid="uid-1"))
    assert decision.data is not None and '"d"' in decision.data["jwks.json"]
