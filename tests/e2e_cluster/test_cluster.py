"""End-to-end on a real cluster, installed through the Helm chart.

This is where what the emulator cannot prove gets proven: the API server's schema
validation, defaulting and CEL rules, the status subresource, ownerReference garbage
collection, RBAC as the API server enforces it, the image's user, and the whole path from
`kubectl apply` to a token verified against the served JWKS.
"""

import json
import time
import urllib.request
import uuid
from typing import Any

import jwt
import pytest

from jwks_operator.core import contract
from tests.e2e_cluster import kube
from tests.e2e_cluster.conftest import Workloads

pytestmark = pytest.mark.usefixtures("installed", "workloads")
NS = kube.KEYS_NAMESPACE


def fetch(url: str) -> tuple[dict[str, str], Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(response.headers), json.loads(response.read())


def sign(namespace: str, secret: str) -> str:
    """A token signed the way a service that mounts the Secret signs: signing.pem + kid."""
    data = kube.secret_data(namespace, secret)
    now = int(time.time())
    return jwt.encode(
        {"sub": "e2e", "iat": now, "exp": now + 600},
        data[contract.SECRET_SIGNING_PEM],
        algorithm="ES256",
        headers={"kid": data[contract.SECRET_SIGNING_KID].strip()},
    )


def verify(base: str, namespace: str, name: str, token: str) -> dict[str, Any]:
    client = jwt.PyJWKClient(f"{base}/{namespace}/{name}/.well-known/jwks.json", cache_keys=False)
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["ES256"])
    return claims


def test_pods_run_as_the_unprivileged_image_user() -> None:
    """With pods: inside them. Without a kubelet: Pod Security admission at ``restricted``
    judges the pods the controllers create from the chart's templates (non-root, no
    privilege escalation, all capabilities dropped, seccomp), and their spec is read back."""
    if kube.target().pods_run:
        for deployment in (kube.OPERATOR, kube.SERVER):
            uid = kube.kubectl(
                "-n", kube.NAMESPACE, "exec", f"deploy/{deployment}", "--", "id", "-u"
            )
            assert uid.strip() == "10001"
            read_only = kube.kubectl(
                "-n",
                kube.NAMESPACE,
                "exec",
                f"deploy/{deployment}",
                "--",
                "python",
                "-c",
                "import os; print(os.statvfs('/').f_flag & os.ST_RDONLY)",
            )
            assert read_only.strip() == "1"
        return
    kube.kubectl(
        "label",
        "--overwrite",
        "namespace",
        kube.NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
    )
    # The ReplicaSets create the pods again, now under enforcement.
    kube.kubectl("-n", kube.NAMESPACE, "delete", "pods", "--all", "--wait=false")

    def admitted_pods() -> list[dict[str, Any]] | None:
        pods = kube.kubectl_json("-n", kube.NAMESPACE, "get", "pods")["items"]
        fresh = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        names = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in fresh}
        return fresh if {"operator", "server"} <= names else None

    pods = kube.wait_for("pods admitted under the restricted Pod Security level", admitted_pods)
    events = kube.kubectl("-n", kube.NAMESPACE, "get", "events", "-o", "json")
    assert "violates PodSecurity" not in events
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert (context.get("runAsUser") or spec["securityContext"]["runAsUser"]) == 10001


def test_api_server_enforces_the_crd_schema_and_cel_rules() -> None:
    bad_key_size = kube.example("keyset-minimal.yaml", NS, algorithm="ES256", keySize=2048)
    bad_key_size["metadata"]["name"] = "bad-keysize"
    out = kube.kubectl("apply", "-f", "-", stdin=json.dumps(bad_key_size), check=False)
    assert "keySize is only for RSA algorithms" in out
    bad_rotation = kube.example("keyset-minimal.yaml", NS, rotation={"interval": "1h"})
    bad_rotation["metadata"]["name"] = "bad-rotation"
    out = kube.kubectl("apply", "-f", "-", stdin=json.dumps(bad_rotation), check=False)
    # messageExpression names the values in force, the default prePublish included
    assert "prePublish (2h, the default when unset) must be shorter than interval (1h)" in out
    bad_enum = kube.example("keyset-minimal.yaml", NS, algorithm="HS256")
    bad_enum["metadata"]["name"] = "bad-enum"
    out = kube.kubectl("apply", "-f", "-", stdin=json.dumps(bad_enum), check=False)
    assert "Unsupported value" in out and "HS256" in out
    assert not kube.exists(NS, "jwkskeyset", "bad-keysize")


def test_defaults_are_applied_by_the_api_server() -> None:
    doc = kube.example("keyset-minimal.yaml", NS)
    doc["metadata"]["name"] = "defaults"
    kube.apply(doc)
    spec = kube.keyset(NS, "defaults")["spec"]
    assert spec["algorithm"] == "RS256"
    assert spec["rotation"] == {"interval": "720h", "prePublish": "2h", "retireAfter": "2h"}
    assert spec["deletionPolicy"] == "Retain"
    kube.wait_for("defaults Ready", lambda: kube.ready(NS, "defaults"))


def test_keyset_to_verified_token_and_manual_rotation(workloads: Workloads) -> None:
    doc = kube.example(
        "keyset-es256-short.yaml",
        NS,
        rotation={"interval": "1h", "prePublish": "20s", "retireAfter": "10m"},
    )
    kube.apply(doc)
    obj = kube.wait_for("demo Ready", lambda: kube.ready(NS, "demo"))
    status = obj["status"]
    assert status["activeKid"] and status["nextKid"]
    printed = kube.kubectl("-n", NS, "get", "jwks", "demo")
    assert "True" in printed and "ES256" in printed and status["activeKid"] in printed

    config_map = kube.kubectl_json("-n", NS, "get", "configmap", "demo-jwks")
    assert config_map["metadata"]["labels"][contract.KEYSET_LABEL] == "demo"
    published = json.loads(config_map["data"][contract.CONFIGMAP_JWKS])
    for key in published["keys"]:
        assert not contract.PRIVATE_MEMBERS & set(key)

    with workloads.server_url() as base:
        url = f"{base}/{NS}/demo/.well-known/jwks.json"
        served = kube.wait_for(
            "the server to serve both keys",
            lambda: (
                fetch(url)
                if {status["activeKid"], status["nextKid"]}
                <= {k["kid"] for k in fetch(url)[1]["keys"]}
                else None
            ),
        )
        headers, jwks = served
        assert headers["Cache-Control"].startswith("public, max-age=")
        assert headers.get("ETag")
        assert [k["kid"] for k in jwks["keys"]][:1] == [status["activeKid"]]

        old_token = sign(NS, "demo-signing")
        assert verify(base, NS, "demo", old_token)["sub"] == "e2e"

        # Manual rotation: the published next key takes over, the old one keeps verifying.
        kube.kubectl(
            "-n",
            NS,
            "annotate",
            "--overwrite",
            "jwkskeyset",
            "demo",
            f"{contract.ROTATE_ANNOTATION}={uuid.uuid4().hex}",
        )
        rotated = kube.wait_for(
            "manual rotation",
            lambda: (
                (s := kube.keyset(NS, "demo").get("status", {})).get("activeKid")
                == status["nextKid"]
                and s
            ),
        )
        assert rotated["activeKid"] == status["nextKid"]
        kube.wait_for(
            "the new signing key in the Secret",
            lambda: (
                kube.secret_data(NS, "demo-signing")[contract.SECRET_SIGNING_KID].strip()
                == rotated["activeKid"]
            ),
        )
        new_token = sign(NS, "demo-signing")
        assert jwt.get_unverified_header(new_token)["kid"] == rotated["activeKid"]
        kube.wait_for(
            "the served JWKS to hold the old and the new signing key",
            lambda: (
                {status["activeKid"], rotated["activeKid"]}
                <= {k["kid"] for k in fetch(url)[1]["keys"]}
            ),
        )
        assert verify(base, NS, "demo", new_token)["sub"] == "e2e"
        assert verify(base, NS, "demo", old_token)["sub"] == "e2e"  # retired, still served


def test_scheduled_rotation_in_seconds() -> None:
    doc = kube.example(
        "keyset-es256-short.yaml",
        NS,
        rotation={"interval": "20s", "prePublish": "5s", "retireAfter": "10s"},
    )
    doc["metadata"]["name"] = "fast"
    kube.apply(doc)
    first = kube.wait_for("fast Ready", lambda: kube.ready(NS, "fast"))["status"]["activeKid"]
    second = kube.wait_for(
        "a scheduled rotation",
        lambda: (kid := kube.keyset(NS, "fast")["status"].get("activeKid")) != first and kid,
        timeout=60,
    )
    assert second != first


def test_deletion_policy_delete_is_garbage_collected() -> None:
    doc = kube.example("keyset-minimal.yaml", NS, algorithm="ES256", deletionPolicy="Delete")
    doc["metadata"]["name"] = "ephemeral"
    kube.apply(doc)
    kube.wait_for("ephemeral Ready", lambda: kube.ready(NS, "ephemeral"))
    for kind, name in (("secret", "ephemeral-signing"), ("configmap", "ephemeral-jwks")):
        owners = kube.kubectl_json("-n", NS, "get", kind, name)["metadata"]["ownerReferences"]
        assert [o["kind"] for o in owners] == ["JwksKeySet"]
    kube.kubectl("-n", NS, "delete", "jwkskeyset", "ephemeral", "--wait", "--timeout=60s")
    kube.wait_for(
        "the garbage collector",
        lambda: (
            not kube.exists(NS, "secret", "ephemeral-signing")
            and not kube.exists(NS, "configmap", "ephemeral-jwks")
        ),
    )


def test_deletion_policy_retain_keeps_keys_for_a_recreated_keyset() -> None:
    doc = kube.example("keyset-minimal.yaml", NS, algorithm="ES256")
    doc["metadata"]["name"] = "kept"
    kube.apply(doc)
    active = kube.wait_for("kept Ready", lambda: kube.ready(NS, "kept"))["status"]["activeKid"]
    kube.kubectl("-n", NS, "delete", "jwkskeyset", "kept", "--wait", "--timeout=60s")
    time.sleep(3)  # give a garbage collector the chance it must not take
    assert kube.exists(NS, "secret", "kept-signing") and kube.exists(NS, "configmap", "kept-jwks")
    kube.apply(doc)
    readopted = kube.wait_for("kept Ready again", lambda: kube.ready(NS, "kept"))
    assert readopted["status"]["activeKid"] == active


def test_rbac_as_the_api_server_enforces_it() -> None:
    assert not kube.can_i(kube.SERVER, "get", "secrets", NS)
    assert not kube.can_i(kube.SERVER, "list", "secrets", NS)
    assert kube.can_i(kube.SERVER, "watch", "configmaps", NS)
    assert not kube.can_i(kube.SERVER, "create", "configmaps", NS)
    assert kube.can_i(kube.SERVER, "list", "jwkskeysets.jwks.dev", NS)
    assert not kube.can_i(kube.SERVER, "patch", "jwkskeysets.jwks.dev/status", NS)
    assert kube.can_i(kube.OPERATOR, "get", "secrets", NS)
    assert kube.can_i(kube.OPERATOR, "patch", "jwkskeysets.jwks.dev/status", NS)
    assert not kube.can_i(kube.OPERATOR, "delete", "secrets", NS)
    assert not kube.can_i(kube.OPERATOR, "create", "pods", NS)


def test_openid_configuration_is_served(workloads: Workloads) -> None:
    doc = kube.example("keyset-oidc.yaml", NS, algorithm="ES256")
    doc["spec"].pop("keySize")
    doc["spec"]["issuer"] = f"https://login.example.com/{NS}/login"
    kube.apply(doc)
    kube.wait_for("login Ready", lambda: kube.ready(NS, "login"))
    with workloads.server_url() as base:
        url = f"{base}/{NS}/login/.well-known/openid-configuration"
        _, document = kube.wait_for("discovery", lambda: fetch(url))
    assert document["issuer"] == f"https://login.example.com/{NS}/login"
    assert document["jwks_uri"] == f"https://login.example.com/{NS}/login/.well-known/jwks.json"
    assert document["id_token_signing_alg_values_supported"] == ["ES256"]
