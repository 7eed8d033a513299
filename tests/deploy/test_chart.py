"""The Helm chart, through the real helm: lint, render over a matrix of values, validate every
object against the Kubernetes schemas, and check what a platform engineer relies on."""

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from jwks_operator.cli import build_parser
from jwks_operator.kube.client import DEFAULT_BURST, DEFAULT_QPS
from tests.deploy.support import (
    CHART,
    CRD_DIR,
    K8S_VERSION,
    RELEASE,
    RELEASE_NAMESPACE,
    VALUES_DIR,
    crd_schema_validator,
    find,
    helm,
    load_yaml_documents,
    one,
    render,
    values_file,
)

MATRIX = [
    "defaults",
    "namespaced",
    "exposed",
    "public",
    "no-crds",
    "peering",
    "peering-namespaced",
    "tls",
    "shard",
    "limits",
]
FULLNAME = f"{RELEASE}-jwks-operator"
OPERATOR = f"{FULLNAME}-operator"
SERVER = f"{FULLNAME}-server"
UID = 10001


@pytest.fixture(autouse=True)
def _helm(helm_path: Path) -> None:
    """Every test here drives the real helm (fetched once per session)."""


def test_matrix_files_exist() -> None:
    assert {p.stem for p in VALUES_DIR.glob("*.yaml")} == set(MATRIX)


@pytest.mark.parametrize("values", MATRIX)
def test_helm_lint_strict(values: str) -> None:
    result = helm("lint", "--strict", str(CHART), "--values", str(values_file(values)))
    assert "0 chart(s) failed" in result.stdout


# A wrong value fails at install time, naming the value and what is wrong with it.
BAD_VALUES = {
    "misspelt-key": ["/server", "additional properties 'replica' not allowed"],
    "wrong-type": ["/operator/replicas", "want integer"],
    "zero-replicas": ["/operator/replicas", "minimum"],
    "bad-namespace": ["/watchNamespaces/0", "does not match pattern"],
    "bad-default-keyset": ["/server/defaultKeyset", "does not match pattern"],
    "bad-pull-policy": ["/image/pullPolicy", "'Always', 'IfNotPresent', 'Never'"],
    "bad-path-type": ["/server/ingress/hosts/0/paths/0/pathType", "value must be one of"],
}


def test_every_bad_values_file_is_tested() -> None:
    assert {p.stem for p in (VALUES_DIR / "bad").glob("*.yaml")} == set(BAD_VALUES)


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_bad_values_fail_on_the_schema(name: str) -> None:
    path = VALUES_DIR / "bad" / f"{name}.yaml"
    result = helm("template", RELEASE, str(CHART), "--values", str(path), check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    for fragment in BAD_VALUES[name]:
        assert fragment in result.stderr, result.stderr
    lint = helm("lint", "--strict", str(CHART), "--values", str(path), check=False)
    assert lint.returncode != 0


def _peering_crd_validators() -> dict[str, Any]:
    validators = {}
    for name in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        (crd,) = load_yaml_documents(CRD_DIR / f"{name}.yaml")
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        validators[crd["spec"]["names"]["kind"]] = crd_schema_validator(schema)
    return validators


@pytest.mark.parametrize("values", MATRIX)
def test_every_rendered_object_is_valid_kubernetes(values: str) -> None:
    peering = _peering_crd_validators()
    kinds = set()
    for doc in render(values):
        kinds.add(doc["kind"])
        if doc["kind"] in ("ServiceMonitor", "Certificate"):
            # Prometheus Operator's and cert-manager's CRDs are not among kubernetes-validate's
            # built-in schemas; their fields are checked in test_exposed_server and
            # test_server_tls below.
            continue
        if doc["kind"] in peering:
            assert doc["apiVersion"] == "kopf.dev/v1"
            assert list(peering[doc["kind"]].iter_errors(doc)) == []
            continue
        # CustomResourceDefinitions are validated against apiextensions.k8s.io/v1 here.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert {"Deployment", "Service", "ServiceAccount"} <= kinds


def _kind_names(docs: tuple[dict[str, Any], ...]) -> set[tuple[str, str, str | None]]:
    return {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs}


def test_what_the_chart_renders_by_default() -> None:
    ns = RELEASE_NAMESPACE
    assert _kind_names(render("defaults")) == {
        ("CustomResourceDefinition", "jwkskeysets.jwks.dev", None),
        ("ServiceAccount", OPERATOR, ns),
        ("ServiceAccount", SERVER, ns),
        ("ClusterRole", OPERATOR, None),
        ("ClusterRoleBinding", OPERATOR, None),
        ("ClusterRole", SERVER, None),
        ("ClusterRoleBinding", SERVER, None),
        ("Deployment", OPERATOR, ns),
        ("Deployment", SERVER, ns),
        ("Service", SERVER, ns),
        ("PodDisruptionBudget", SERVER, ns),
    }


def _workloads(values: str) -> list[dict[str, Any]]:
    docs = render(values)
    return find(docs, "Deployment") + find(docs, "StatefulSet")


def _workload(values: str, name: str) -> dict[str, Any]:
    (found,) = [w for w in _workloads(values) if w["metadata"]["name"] == name]
    return found


def _containers(values: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Workload name -> (pod spec, its single container)."""
    result = {}
    for deployment in _workloads(values):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        result[deployment["metadata"]["name"]] = (pod, container)
    return result


@pytest.mark.parametrize("values", MATRIX)
def test_pods_are_locked_down(values: str) -> None:
    containers = _containers(values)
    assert set(containers) == {OPERATOR, SERVER}
    for name, (pod, container) in containers.items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == UID
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == UID
        assert security.get("privileged", False) is False
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, (name, bound)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, (name, probe)
        # Both processes need the API; the token is mounted per pod, never by the account.
        assert pod["automountServiceAccountToken"] is True
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert set(mounts) - {"/tmp"} <= ({"/etc/jwks-operator/tls"} if name == SERVER else set())
        assert all(m.get("readOnly") for path, m in mounts.items() if path != "/tmp")
        assert container["image"] == "ghcr.io/jwks-operator/jwks-operator:0.1.0"
    for account in find(render(values), "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def _args(values: str, name: str) -> list[str]:
    args: list[str] = _containers(values)[name][1]["args"]
    return args


def test_operator_defaults_to_one_standalone_replica_watching_everything() -> None:
    deployment = one(render("defaults"), "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two at once
    assert _args("defaults", OPERATOR) == [
        "run",
        "--all-namespaces",
        "--standalone",
        "--liveness",
        "http://0.0.0.0:8081/healthz",
    ]
    container = _containers("defaults")[OPERATOR][1]
    assert container["ports"] == [{"name": "health", "containerPort": 8081, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_operator_with_replicas_uses_kopf_peering_with_distinct_priorities() -> None:
    """Kopf pauses every replica when two share a priority, so each pod gets its own: the
    StatefulSet's pod index, through the Downward API."""
    assert not find(render("peering"), "Deployment", OPERATOR)
    workload = one(render("peering"), "StatefulSet", OPERATOR)
    assert workload["spec"]["replicas"] == 3
    assert workload["spec"]["podManagementPolicy"] == "Parallel"
    assert _args("peering", OPERATOR) == [
        "run",
        "--all-namespaces",
        "--peering",
        RELEASE,
        "--priority",
        "$(POD_INDEX)",
        "--liveness",
        "http://0.0.0.0:8081/healthz",
    ]
    (env,) = _containers("peering")[OPERATOR][1]["env"]
    assert env == {
        "name": "POD_INDEX",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
    }
    assert "--peering" not in _args("defaults", OPERATOR)
    args = _args("peering-namespaced", OPERATOR)
    assert args[:6] == ["run", "--namespace", "identity", "--peering", "jwks-peers", "--priority"]


def test_peering_objects_are_created_after_their_crd() -> None:
    assert not find(render("defaults"), "ClusterKopfPeering")
    assert not find(render("defaults"), "KopfPeering")
    peering = one(render("peering"), "ClusterKopfPeering")
    assert peering["metadata"]["name"] == RELEASE
    hook = peering["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "post-install,post-upgrade"
    assert hook["helm.sh/hook-delete-policy"] == "before-hook-creation"
    namespaced = one(render("peering-namespaced"), "KopfPeering")
    assert (namespaced["metadata"]["name"], namespaced["metadata"]["namespace"]) == (
        "jwks-peers",
        "identity",
    )
    assert not find(render("peering-namespaced"), "ClusterKopfPeering")


def test_server_defaults() -> None:
    deployment = one(render("defaults"), "Deployment", SERVER)
    assert deployment["spec"]["replicas"] == 2
    assert _args("defaults", SERVER) == [
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--all-namespaces",
        "--max-age",
        "300",
    ]
    container = _containers("defaults")[SERVER][1]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = one(render("defaults"), "Service", SERVER)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    operator_labels = one(render("defaults"), "Deployment", OPERATOR)["spec"]["template"]
    assert not service["spec"]["selector"].items() <= operator_labels["metadata"]["labels"].items()
    pdb = one(render("defaults"), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_watch_namespaces_reach_both_processes() -> None:
    expected = ["--namespace", "identity", "--namespace", "payments"]
    operator = _args("namespaced", OPERATOR)
    server = _args("namespaced", SERVER)
    assert operator[1:5] == expected and "--all-namespaces" not in operator
    assert server[5:9] == expected and "--all-namespaces" not in server
    assert server[9:11] == ["--default-keyset", "identity/login"]


def test_exposed_server() -> None:
    docs = render("exposed")
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "keys-example-com-tls", "hosts": ["keys.example.com"]}
    ]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "keys.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": SERVER, "port": {"name": "http"}}
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": SERVER,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert "replicas" not in one(docs, "Deployment", SERVER)["spec"]  # the HPA owns it
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    service = one(docs, "Service", SERVER)
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert one(docs, "PodDisruptionBudget")


def test_a_public_ingress_without_verify_routes_only_the_listed_documents(
    tmp_path: Path,
) -> None:
    """docs/security.md: exposing the server publicly without the gateway endpoint."""
    ingress = one(render("public"), "Ingress")
    (rule,) = ingress["spec"]["rules"]
    paths = [(p["path"], p["pathType"]) for p in rule["http"]["paths"]]
    assert paths == [
        (f"/{keyset}/.well-known/{document}", "Exact")
        for keyset in ("identity/auth", "payments/api")
        for document in ("jwks.json", "openid-configuration")
    ]
    assert not [path for path, _ in paths if "verify" in path]
    # The default routes what the hosts list (verify included), as before.
    assert [
        p["path"] for p in one(render("exposed"), "Ingress")["spec"]["rules"][0]["http"]["paths"]
    ] == ["/"]
    values = tmp_path / "public-without-keysets.yaml"
    values.write_text("server: {ingress: {enabled: true, verify: false}}\n")
    result = helm("template", RELEASE, str(CHART), "--values", str(values), check=False)
    assert result.returncode != 0 and "server.ingress.keysets" in result.stderr


def test_server_tls() -> None:
    """https from a cert-manager Certificate: the args, the mount, the probes, the monitor."""
    docs = render("tls")
    secret = f"{SERVER}-tls"
    certificate = one(docs, "Certificate", SERVER)
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["spec"]["secretName"] == secret
    assert certificate["spec"]["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer"}
    assert f"{SERVER}.{RELEASE_NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    assert "keys.example.com" in certificate["spec"]["dnsNames"]
    pod = one(docs, "Deployment", SERVER)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    cert = args[args.index("--tls-cert-file") + 1]
    key = args[args.index("--tls-key-file") + 1]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    assert "subPath" not in mount  # a subPath mount would never see a renewal
    assert cert == mount["mountPath"] + "/tls.crt" and key == mount["mountPath"] + "/tls.key"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == secret
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": secret, "key": "ca.crt"}
    assert one(docs, "Service", SERVER)["spec"]["ports"][0]["appProtocol"] == "https"
    # Without TLS: no Certificate, plain probes, no TLS flags.
    plain = render("defaults")
    assert not find(plain, "Certificate")
    (plain_container,) = one(plain, "Deployment", SERVER)["spec"]["template"]["spec"]["containers"]
    assert "--tls-cert-file" not in plain_container["args"]
    assert "scheme" not in plain_container["readinessProbe"]["httpGet"]  # HTTP


def test_network_policies() -> None:
    assert not find(render("defaults"), "NetworkPolicy")
    policies = {p["metadata"]["name"]: p["spec"] for p in find(render("exposed"), "NetworkPolicy")}
    operator, server = policies[OPERATOR], policies[SERVER]
    assert operator["ingress"] == []  # nothing may call the operator (kubelet probes excepted)
    (allowed,) = server["ingress"]
    assert allowed["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert allowed["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    for spec in (operator, server):
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        dns, api = spec["egress"]
        assert {p["port"] for p in dns["ports"]} == {53}
        assert [peer["ipBlock"]["cidr"] for peer in api["to"]] == ["10.96.0.1/32", "172.18.0.2/32"]


def test_pdb_only_with_more_than_one_server() -> None:
    result = helm("template", RELEASE, str(CHART), "--set", "server.replicas=1")
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert "PodDisruptionBudget" not in kinds


def _strip_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    crd = copy.deepcopy(crd)
    crd["metadata"].pop("annotations", None)
    crd["metadata"].pop("labels", None)
    return crd


def test_crds_toggle_and_keep() -> None:
    default_crds = find(render("defaults"), "CustomResourceDefinition")
    assert [c["metadata"]["name"] for c in default_crds] == ["jwkskeysets.jwks.dev"]
    assert default_crds[0]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    peering_crds = find(render("peering"), "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in peering_crds} == {
        "jwkskeysets.jwks.dev",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    }
    assert all("annotations" not in c["metadata"] for c in peering_crds)  # crds.keep: false
    assert not find(render("no-crds"), "CustomResourceDefinition")
    # The template's fromYaml/toYaml round trip must not change a single schema detail.
    for crd in peering_crds:
        (source,) = load_yaml_documents(CRD_DIR / f"{crd['metadata']['name']}.yaml")
        assert _strip_chart_metadata(crd) == _strip_chart_metadata(source)


def test_notes_say_how_to_reach_the_endpoint() -> None:
    result = helm(
        "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", RELEASE_NAMESPACE
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    url = f"http://{SERVER}.{RELEASE_NAMESPACE}.svc/default/auth/.well-known/jwks.json"
    assert url in notes
    assert "kubectl apply -f -" in notes and "kind: JwksKeySet" in notes
    assert f"port-forward svc/{SERVER} 8080:80" in notes


def _leaf_paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        return [
            p for k, v in value.items() for p in _leaf_paths(v, f"{prefix}.{k}" if prefix else k)
        ]
    return [prefix]


def test_every_value_is_in_the_schema_and_the_readme_table() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    free_objects = []
    for path in _leaf_paths(values):
        node = schema
        for part in path.split("."):
            if "properties" not in node:
                free_objects.append(path)  # a pass-through object (securityContext, resources)
                break
            assert part in node["properties"], f"{path} is not declared in values.schema.json"
            node = node["properties"][part]
        documented = path
        while documented not in readme and "." in documented:
            documented = documented.rsplit(".", 1)[0]  # nested maps are documented whole
        assert f"`{documented}`" in readme, f"{path} is not in the README's values table"
    # Pass-through objects: the security contexts (Kubernetes' own shape) and resource maps.
    assert all(
        p.startswith(("podSecurityContext.", "securityContext.")) or ".resources." in p
        for p in free_objects
    ), free_objects


@pytest.mark.parametrize("values", MATRIX)
def test_rendered_command_lines_are_accepted_by_the_real_cli(values: str) -> None:
    """The chart's args go through the same argparse parser the container runs."""
    parser = build_parser()
    # The kubelet expands $(VAR) from the container's env: the pod index of a StatefulSet pod.
    operator = parser.parse_args([a.replace("$(POD_INDEX)", "2") for a in _args(values, OPERATOR)])
    server = parser.parse_args(_args(values, SERVER))
    assert (operator.command, server.command) == ("run", "serve")
    watched = yaml.safe_load(values_file(values).read_text()).get("watchNamespaces") or []
    assert operator.namespace == watched and server.namespace == (watched or None)
    assert operator.all_namespaces == server.all_namespaces == (not watched)
    peering = _workload(values, OPERATOR)["spec"]["replicas"] > 1
    assert bool(operator.peering) == peering and operator.standalone == (not peering)
    assert operator.priority == (2 if peering else 0)
    assert operator.liveness == "http://0.0.0.0:8081/healthz"
    selector = yaml.safe_load(values_file(values).read_text()).get("operator", {})
    shard = selector.get("keysetSelector")
    assert str(operator.keyset_selector) == shard if shard else operator.keyset_selector is None
    assert (server.host, server.port, server.max_age) == ("0.0.0.0", 8080, 300)
    document = yaml.safe_load(values_file(values).read_text()) or {}
    for role, parsed in (("operator", operator), ("server", server)):
        limits = (document.get(role) or {}).get("kubeApi") or {}
        assert parsed.kube_api_qps == limits.get("qps", DEFAULT_QPS)
        assert parsed.kube_api_burst == limits.get("burst", DEFAULT_BURST)


def test_oldest_supported_kubernetes() -> None:
    """kubeVersion >=1.28 (CEL rules with fieldPath/reason, the pod-index label): the chart
    refuses 1.27 and renders objects valid for 1.28's schemas, peering included."""
    old = helm("template", RELEASE, str(CHART), "--kube-version", "1.27.9", check=False)
    assert old.returncode != 0 and "kubeVersion" in old.stderr
    rendered = helm(
        "template",
        RELEASE,
        str(CHART),
        "--kube-version",
        "1.28.0",
        "--values",
        str(values_file("peering")),
    ).stdout
    for doc in (d for d in yaml.safe_load_all(rendered) if d):
        if doc["kind"] not in ("ClusterKopfPeering", "KopfPeering"):
            kubernetes_validate.validate(doc, "1.28.0", strict=True)
