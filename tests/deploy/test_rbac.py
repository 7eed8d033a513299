"""RBAC honesty: the chart grants each process exactly what permissions.py declares.

Every (namespace, apiGroup, resource, verb) the rendered RBAC gives each ServiceAccount is
computed from the Roles, ClusterRoles and their bindings, then compared both ways with the
declaration: nothing declared is missing (the process would fail), nothing beyond it is
granted (least privilege). The operator's emulator tests check the same declaration against
the requests the code really makes.
"""

from pathlib import Path
from typing import Any

import pytest

from jwks_operator import permissions
from tests.deploy.support import RELEASE, RELEASE_NAMESPACE, find, render

Grant = tuple[str, str, str, str]  # (namespace or "*", apiGroup, resource, verb)
OPERATOR_SA = f"{RELEASE}-jwks-operator-operator"
SERVER_SA = f"{RELEASE}-jwks-operator-server"
KNOWN_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

CONFIGS = {
    # values file: (peering, watched namespaces or None for all)
    "defaults": (False, None),
    "namespaced": (False, ["identity", "payments"]),
    "peering": (True, None),
    "peering-namespaced": (True, ["identity"]),
}


@pytest.fixture(autouse=True)
def _helm(helm_path: Path) -> None:
    """Rendering drives the real helm."""


def _expand(rules: list[dict[str, Any]], namespace: str) -> set[Grant]:
    return {
        (namespace, group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def granted(docs: tuple[dict[str, Any], ...], account: str) -> set[Grant]:
    cluster_roles = {r["metadata"]["name"]: r for r in find(docs, "ClusterRole")}
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in find(docs, "Role")}
    result: set[Grant] = set()
    for binding in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
        subjects = binding.get("subjects", [])
        if not any(
            s["kind"] == "ServiceAccount"
            and s["name"] == account
            and s["namespace"] == RELEASE_NAMESPACE
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace", "*")
        if binding["kind"] == "ClusterRoleBinding":
            assert ref["kind"] == "ClusterRole"
        if ref["kind"] == "ClusterRole":
            result |= _expand(cluster_roles[ref["name"]]["rules"], scope)
        else:
            result |= _expand(roles[(scope, ref["name"])]["rules"], scope)
    return result


def declared(
    declaration: tuple[permissions.Permission, ...], peering: bool, namespaces: list[str] | None
) -> set[Grant]:
    result: set[Grant] = set()
    wanted = permissions.required(declaration, peering=peering, clusterwide=namespaces is None)
    for permission in wanted:
        scopes = ["*"] if permission.cluster_scoped or namespaces is None else namespaces
        for scope in scopes:
            for verb in permission.verbs:
                result.add((scope, permission.api_group, permission.resource, verb))
    return result


@pytest.mark.parametrize("values", list(CONFIGS))
def test_operator_is_granted_exactly_what_it_declares(values: str) -> None:
    peering, namespaces = CONFIGS[values]
    have = granted(render(values), OPERATOR_SA)
    want = declared(permissions.OPERATOR, peering, namespaces)
    assert want - have == set(), "declared but not granted"
    assert have - want == set(), "granted but not declared"


@pytest.mark.parametrize("values", list(CONFIGS))
def test_server_is_granted_exactly_what_it_declares(values: str) -> None:
    peering, namespaces = CONFIGS[values]
    have = granted(render(values), SERVER_SA)
    assert have == declared(permissions.SERVER, peering, namespaces)


@pytest.mark.parametrize("values", list(CONFIGS))
def test_server_reads_configmaps_and_keysets_only_and_never_secrets(values: str) -> None:
    have = granted(render(values), SERVER_SA)
    assert have, "the server must be able to watch ConfigMaps and JwksKeySets"
    assert {(group, resource) for _, group, resource, _ in have} == {
        ("", "configmaps"),
        ("jwks.dev", "jwkskeysets"),
    }
    assert {verb for *_, verb in have} == {"get", "list", "watch"}
    # Never a Secret (no private key can leak), never status (it cannot vouch for a key).
    assert not [g for g in have if g[2] == "secrets" or g[2].endswith("/status")]


def test_namespaced_install_gives_no_cluster_wide_access_to_data() -> None:
    have = granted(render("namespaced"), OPERATOR_SA)
    cluster_wide = {(group, resource) for scope, group, resource, _ in have if scope == "*"}
    assert cluster_wide == {
        ("", "namespaces"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
    }
    assert {verb for scope, *_, verb in have if scope == "*"} == {"list", "watch"}
    secrets_scopes = {scope for scope, _, resource, _ in have if resource == "secrets"}
    assert secrets_scopes == {"identity", "payments"}


@pytest.mark.parametrize("values", list(CONFIGS))
def test_no_wildcards_no_deletes_no_escalation(values: str) -> None:
    docs = render(values)
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)
            assert not set(rule["verbs"]) & {
                "delete",
                "deletecollection",
                "escalate",
                "bind",
                "impersonate",
            }
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule


def test_declaration_is_well_formed() -> None:
    for permission in permissions.OPERATOR + permissions.SERVER:
        assert set(permission.verbs) <= KNOWN_VERBS, permission
        assert len(permission.why) > 20
    assert {p.resource for p in permissions.SERVER} == {"configmaps", "jwkskeysets"}
    keys = [(p.api_group, p.resource) for p in permissions.OPERATOR]
    assert len(keys) == len(set(keys))


def test_peering_grants_only_with_peering_and_in_the_matching_scope() -> None:
    def resources(peering: bool, clusterwide: bool) -> set[str]:
        return {
            p.resource
            for p in permissions.required(
                permissions.OPERATOR, peering=peering, clusterwide=clusterwide
            )
        }

    assert not resources(False, True) & {"kopfpeerings", "clusterkopfpeerings"}
    assert not resources(False, False) & {"kopfpeerings", "clusterkopfpeerings"}
    assert resources(True, True) & {"kopfpeerings", "clusterkopfpeerings"} == {
        "clusterkopfpeerings"
    }
    assert resources(True, False) & {"kopfpeerings", "clusterkopfpeerings"} == {"kopfpeerings"}
