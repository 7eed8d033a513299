"""The operator against the real API server, as the chart's ServiceAccount.

Each scenario is one a user meets: revocation, hand edits and deletions of the operator's
objects (drift), renamed targets, and a namespace deleted with its keysets in it. The
conftest fails any test during which a workload logged a 403.
"""

import json
import time
from typing import Any

import pytest

from jwks_operator.core import contract
from tests.e2e_cluster import kube

pytestmark = pytest.mark.usefixtures("workloads")
NS = kube.KEYS_NAMESPACE
LONG = {"interval": "1h", "prePublish": "2s", "retireAfter": "1h"}


def create(name: str, namespace: str = NS, **spec: Any) -> dict[str, Any]:
    spec.setdefault("algorithm", "ES256")
    spec.setdefault("rotation", LONG)
    kube.apply(kube.keyset_doc(namespace, name, **spec))
    return kube.wait_for(f"{name} Ready", lambda: kube.ready(namespace, name))


def published_kids(name: str, namespace: str = NS) -> list[str]:
    config_map = kube.kubectl_json("-n", namespace, "get", "configmap", name)
    return [key["kid"] for key in json.loads(config_map["data"][contract.CONFIGMAP_JWKS])["keys"]]


def stored_kids(name: str, namespace: str = NS) -> list[str]:
    data = kube.secret_data(namespace, name)
    return [key["kid"] for key in json.loads(data[contract.SECRET_KEYS])["keys"]]


def event_reasons(name: str, namespace: str = NS) -> list[str]:
    events = kube.kubectl_json(
        "-n", namespace, "get", "events", "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return [event["reason"] for event in events]


def patch_spec(name: str, spec: dict[str, Any]) -> None:
    body = json.dumps({"spec": spec})
    kube.kubectl("-n", NS, "patch", "jwks", name, "--type=merge", "-p", body)


def ready_at(name: str, generation: int, what: str) -> dict[str, Any]:
    """The keyset once Ready for ``generation`` (the operator has acted on that spec)."""
    return kube.wait_for(
        what,
        lambda: (o := kube.ready(NS, name)) and o["metadata"]["generation"] == generation and o,
    )


def condition_reason(obj: dict[str, Any], kind: str = "Ready") -> str:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition["type"] == kind:
            return str(condition["reason"])
    return ""


def test_kubectl_wait_for_ready_as_the_readme_says() -> None:
    doc = kube.example("keyset-es256-short.yaml", NS)
    doc["metadata"]["name"] = "readme"
    kube.apply(doc)
    out = kube.kubectl(
        "-n", NS, "wait", "jwks/readme", "--for=condition=Ready", "--timeout=60s", timeout=90
    )
    assert "condition met" in out
    printed = kube.kubectl("-n", NS, "get", "jwks", "readme")
    assert "True" in printed and "ES256" in printed


def test_revoking_next_then_active_withdraws_them_at_once() -> None:
    status = create("revoke")["status"]
    patch_spec("revoke", {"revokedKeys": [status["nextKid"]]})
    revised = ready_at("revoke", 2, "the next key replaced")["status"]
    assert revised["activeKid"] == status["activeKid"]
    assert status["nextKid"] not in published_kids("revoke-jwks")
    assert status["nextKid"] not in stored_kids("revoke-signing")

    patch_spec("revoke", {"revokedKeys": [status["nextKid"], status["activeKid"]]})
    final = ready_at("revoke", 3, "a new active key")["status"]
    assert final["activeKid"] not in (status["activeKid"], status["nextKid"])
    assert status["activeKid"] not in published_kids("revoke-jwks")
    signing = kube.secret_data(NS, "revoke-signing")[contract.SECRET_SIGNING_KID].strip()
    assert signing == final["activeKid"]
    kube.wait_for("the revocation events", lambda: "ActiveKeyRevoked" in event_reasons("revoke"))
    assert "KeyRevoked" in event_reasons("revoke")


def test_deleted_and_edited_configmap_is_repaired() -> None:
    create("drift-cm")
    kids = published_kids("drift-cm-jwks")
    kube.kubectl("-n", NS, "delete", "configmap", "drift-cm-jwks")
    kube.wait_for(
        "the ConfigMap rebuilt",
        lambda: kube.exists(NS, "configmap", "drift-cm-jwks") and published_kids("drift-cm-jwks"),
    )
    assert published_kids("drift-cm-jwks") == kids
    kube.kubectl(
        "-n",
        NS,
        "patch",
        "configmap",
        "drift-cm-jwks",
        "--type=merge",
        "-p",
        json.dumps({"data": {contract.CONFIGMAP_JWKS: '{"keys":[]}', "extra": "x"}}),
    )
    kube.wait_for("the ConfigMap repaired", lambda: published_kids("drift-cm-jwks") == kids)
    data = kube.kubectl_json("-n", NS, "get", "configmap", "drift-cm-jwks")["data"]
    assert "extra" not in data
    kube.wait_for("the repair event", lambda: "PublicKeysRepaired" in event_reasons("drift-cm"))


def test_deleted_secret_keeps_the_published_keys_and_makes_a_new_active_key() -> None:
    before = create("drift-secret")["status"]
    kube.kubectl("-n", NS, "delete", "secret", "drift-secret-signing")
    after = kube.wait_for(
        "a new active key",
        lambda: (
            (s := kube.keyset(NS, "drift-secret").get("status", {})).get("activeKid")
            not in (None, before["activeKid"])
            and kube.exists(NS, "secret", "drift-secret-signing")
            and s
        ),
    )
    published = published_kids("drift-secret-jwks")
    assert {before["activeKid"], before["nextKid"], after["activeKid"]} <= set(published)
    kube.wait_for("the SecretLost warning", lambda: "SecretLost" in event_reasons("drift-secret"))


def test_renamed_targets_keep_the_keys_and_release_the_old_objects() -> None:
    before = create("renamed")["status"]
    patch_spec("renamed", {"secretName": "renamed-v2", "configMapName": "renamed-v2"})
    after = ready_at("renamed", 2, "Ready after the rename")["status"]
    assert (after["activeKid"], after["nextKid"]) == (before["activeKid"], before["nextKid"])
    assert stored_kids("renamed-v2") == stored_kids("renamed-signing")
    kube.wait_for("the Released event", lambda: "Released" in event_reasons("renamed"))
    for kind, name in (("secret", "renamed-signing"), ("configmap", "renamed-jwks")):
        old = kube.kubectl_json("-n", NS, "get", kind, name)["metadata"]
        assert contract.KEYSET_LABEL not in old.get("labels", {})
        assert old["annotations"]["jwks.dev/released-from"] == "renamed"


def test_deleting_the_namespace_deletes_its_keysets_and_their_objects() -> None:
    namespace = "doomed"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    create("retained", namespace=namespace)
    create("deleted", namespace=namespace, deletionPolicy="Delete")
    started = time.monotonic()
    kube.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s", timeout=150)
    assert not kube.kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name")
    # The namespace controller finished: the keysets' finalizers were released by the
    # operator (or the namespace would hang in Terminating), and everything is gone.
    assert time.monotonic() - started < 120
