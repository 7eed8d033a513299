"""The Kubernetes API access each process needs, declared once, with the reason for each grant.

The Helm chart's Roles/ClusterRoles are written by hand for readability, and a test checks
that they grant exactly what is declared here (no more, no less); the operator's end-to-end
tests check the requests the emulator records against the same declaration. So this module
is the least-privilege contract: to use a new verb, declare it here first and say why.

Plain data, no imports from the rest of the package: the chart tests and docs read it too.
"""

from dataclasses import dataclass
from typing import Final, Literal

Needed = Literal["always", "peering-namespaced", "peering-clusterwide"]
"""When a grant is needed. Peering objects are touched only when several operator replicas
run with Kopf peering; a single replica runs ``--standalone`` and never reads them. With
``--all-namespaces`` Kopf uses the cluster-scoped ClusterKopfPeering, with ``--namespace``
the namespaced KopfPeering in each watched namespace."""


@dataclass(frozen=True)
class Permission:
    api_group: str  # "" is the core group
    resource: str  # plural, with "/subresource" where one applies
    verbs: tuple[str, ...]
    why: str
    cluster_scoped: bool = False  # the resource itself has no namespace (needs a ClusterRole)
    needed: Needed = "always"


OPERATOR: Final[tuple[Permission, ...]] = (
    Permission(
        "jwks.dev",
        "jwkskeysets",
        ("get", "list", "watch", "patch"),
        "Kopf lists and watches the keysets it serves, and patches them for its finalizer "
        "and its bookkeeping annotations; it never creates, replaces or deletes one.",
    ),
    Permission(
        "jwks.dev",
        "jwkskeysets/status",
        ("patch",),
        "The status (conditions, activeKid, keys, nextRotationTime) is a subresource, written "
        "by merge patch only (the operator's own writes and Kopf's progress bookkeeping); it "
        "is read through the main resource's watch.",
    ),
    Permission(
        "jwks.dev",
        "jwkskeysets/finalizers",
        ("update",),
        "With deletionPolicy Delete the Secret and ConfigMap carry an ownerReference with "
        "blockOwnerDeletion; clusters that enforce OwnerReferencesPermissionEnforcement "
        "(OpenShift) require update on the owner's finalizers to set it.",
    ),
    Permission(
        "",
        "secrets",
        ("get", "list", "watch", "create", "patch"),
        "The Secret <secretName> is the source of truth for the private keys: listed and "
        "watched (labels jwks.dev/keyset and managed-by only) into the operator's cache, "
        "which reconciles read and which notices deletion and tampering; get only when the "
        "cache lacks a target name (a new keyset, or someone else's object there); created "
        "once, then rewritten by merge patch. No update (the store never PUTs) and no delete: with "
        "deletionPolicy Delete the garbage collector removes it through the ownerReference, "
        "and Retain keeps it by definition.",
    ),
    Permission(
        "",
        "configmaps",
        ("get", "list", "watch", "create", "patch"),
        "The ConfigMap <configMapName> publishes the public JWKS: created, merge-patched on "
        "every lifecycle step, watched so that a deleted or hand-edited copy is rebuilt. No "
        "update or delete, for the same reasons as Secrets.",
    ),
    Permission(
        "",
        "events",
        ("create",),
        "Kopf posts Normal/Warning Events (bootstrap, rotation, revocation, repair, failures) "
        "through the core v1 API only (not events.k8s.io, which it never writes).",
    ),
    Permission(
        "",
        "namespaces",
        ("list", "watch"),
        "Kopf observes namespaces to resolve --namespace patterns and to notice namespaces "
        "coming and going; without it Kopf logs a warning and treats names as fixed.",
        cluster_scoped=True,
    ),
    Permission(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("list", "watch"),
        "Kopf scans CRDs to find the JwksKeySet resource and to notice it being installed "
        "or upgraded at run time; read-only.",
        cluster_scoped=True,
    ),
    Permission(
        "kopf.dev",
        "kopfpeerings",
        ("get", "list", "watch", "patch"),
        "Several replicas with --peering and --namespace: Kopf announces itself and sees the "
        "others in a KopfPeering per namespace. The chart creates that object, so no create.",
        needed="peering-namespaced",
    ),
    Permission(
        "kopf.dev",
        "clusterkopfpeerings",
        ("get", "list", "watch", "patch"),
        "Several replicas with --peering and --all-namespaces: the same, in the cluster-scoped "
        "ClusterKopfPeering the chart creates.",
        cluster_scoped=True,
        needed="peering-clusterwide",
    ),
)

SERVER: Final[tuple[Permission, ...]] = (
    Permission(
        "",
        "configmaps",
        ("get", "list", "watch"),
        "The JWKS server only reads the published public halves: it lists and watches the "
        "ConfigMaps labelled jwks.dev/keyset into its in-memory snapshot. It can never read "
        "a Secret, so a compromised server leaks no private key.",
    ),
    Permission(
        "jwks.dev",
        "jwkskeysets",
        ("get", "list", "watch"),
        "A ConfigMap is served for a keyset only when it is the one the keyset's spec names, "
        "carries its UID, and only with the keys its status lists (written through the "
        "status subresource): so the server reads the keysets, which hold no secret. "
        "Read-only: it cannot write status, so it cannot vouch for a key itself.",
    ),
)


def required(
    permissions: tuple[Permission, ...], *, peering: bool, clusterwide: bool
) -> tuple[Permission, ...]:
    """The subset a deployment needs: peering grants only with peering, in the matching scope."""
    wanted: set[Needed] = {"always"}
    if peering:
        wanted.add("peering-clusterwide" if clusterwide else "peering-namespaced")
    return tuple(permission for permission in permissions if permission.needed in wanted)
