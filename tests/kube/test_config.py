"""Credentials in one order for every command, and one message for each failure."""

import base64
import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from jwks_operator.kube.config import IN_CLUSTER, KubeConfigError, load_credentials


def kubeconfig(path: Path, server: str, token: str, **cluster: Any) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server, **cluster}},
            {"name": "insecure", "cluster": {"server": server, "insecure-skip-tls-verify": True}},
        ],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [
            {"name": "main", "context": {"cluster": "c", "user": "u"}},
            {"name": "insecure", "context": {"cluster": "insecure", "user": "u"}},
        ],
        "current-context": "main",
    }
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No KUBECONFIG, no in-cluster variables, an empty home."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod's environment: the service host and the mounted token and CA."""
    from kubernetes.config import incluster_config

    mount = tmp_path / "serviceaccount"
    mount.mkdir()
    (mount / "token").write_text("pod-token")
    (mount / "ca.crt").write_bytes(_self_signed_ca())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(mount / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(mount / "ca.crt"))


def test_the_order_flag_env_in_cluster_home(
    tmp_path: Path, clean_env: Path, in_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".kube").mkdir()
    kubeconfig(clean_env / ".kube" / "config", "http://home:1", "home-token")
    # In a pod, the ServiceAccount wins over a stray ~/.kube/config.
    found = load_credentials()
    assert (found.source, found.server) == (IN_CLUSTER, "https://10.0.0.1:443")
    assert found.auth_headers()["authorization"].lower() == "bearer pod-token"
    # KUBECONFIG wins over in-cluster; --kubeconfig over KUBECONFIG.
    env_file = kubeconfig(tmp_path / "env", "http://env:1", "env-token")
    monkeypatch.setenv("KUBECONFIG", str(env_file))
    assert load_credentials().server == "http://env:1"
    flag_file = kubeconfig(tmp_path / "flag", "http://flag:1", "flag-token")
    found = load_credentials(str(flag_file))
    assert found.server == "http://flag:1"
    assert found.auth_headers() == {"authorization": "Bearer flag-token"}
    # --context means a kubeconfig: with nothing else, the home file, not in-cluster.
    monkeypatch.delenv("KUBECONFIG")
    assert load_credentials(context="insecure").server == "http://home:1"


def test_home_kubeconfig_last(clean_env: Path) -> None:
    (clean_env / ".kube").mkdir()
    kubeconfig(clean_env / ".kube" / "config", "http://home:1", "home-token")
    found = load_credentials()
    assert found.server == "http://home:1" and found.source == "~/.kube/config"


def test_tls_and_token(tmp_path: Path, clean_env: Path) -> None:
    path = kubeconfig(
        tmp_path / "kubeconfig",
        "https://kube.example:6443",
        "t0ken",
        **{"certificate-authority-data": base64.b64encode(_self_signed_ca()).decode()},
    )
    secure = load_credentials(str(path))
    context = secure.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    endpoint = secure.endpoint()
    assert endpoint.headers == {"authorization": "Bearer t0ken"}
    assert endpoint.server == "https://kube.example:6443"
    insecure = load_credentials(str(path), context="insecure").ssl_context()
    assert insecure is not None and insecure.verify_mode == ssl.CERT_NONE


def test_each_failure_has_a_message(tmp_path: Path, clean_env: Path) -> None:
    with pytest.raises(KubeConfigError, match=r"no Kubernetes credentials found \(looked for"):
        load_credentials()
    with pytest.raises(KubeConfigError, match="--context x needs a kubeconfig"):
        load_credentials(context="x")
    (tmp_path / "broken").write_text("clusters: [")
    with pytest.raises(KubeConfigError, match="cannot"):
        load_credentials(str(tmp_path / "broken"))
    path = kubeconfig(tmp_path / "k", "http://k:1", "t")
    with pytest.raises(KubeConfigError, match="nope"):
        load_credentials(str(path), context="nope")


def _self_signed_ca() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)
