"""The keyset and ConfigMap source in process: pagination, trust, relabelling, watch errors.

The end-to-end tests drive the real command; these reach the parts a command line cannot
set (page size, backoff) and the event handling rules, against the same emulated API.
"""

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from jwks_operator.core.contract import KEYSET_LABEL, KEYSET_UID_ANNOTATION
from jwks_operator.server.kube import (
    CONFIGMAPS,
    KEYSETS,
    SELECTOR,
    ApiError,
    ConfigMapSource,
    KubeConfigError,
    KubeConnection,
    SourceSettings,
    _WatchExpired,
    load_connection,
)
from jwks_operator.server.snapshot import SnapshotStore
from tests.server.support import configmap, configmap_data, keyset_body, public_jwk, publish
from tests.support.cluster import EmulatedCluster

FAST = SourceSettings(backoff_initial=0.05, backoff_max=0.2, relist_delay=0.01, page_size=2)


@pytest.fixture
async def running(cluster: EmulatedCluster) -> AsyncIterator[tuple[ConfigMapSource, SnapshotStore]]:
    store = SnapshotStore()
    source = ConfigMapSource(store, load_connection(str(cluster.kubeconfig)), settings=FAST)
    task = asyncio.create_task(source.run())
    yield source, store
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def until(condition: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_paginated_first_list_then_ready(
    cluster: EmulatedCluster, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    for index in range(5):
        await asyncio.to_thread(
            publish, cluster, f"k{index}", configmap_data(public_jwk(ec_private))
        )
    await asyncio.to_thread(cluster.create, configmap("plain", None, {"jwks.json": "{}"}))
    store = SnapshotStore()
    source = ConfigMapSource(store, load_connection(str(cluster.kubeconfig)), settings=FAST)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.ready.wait(), 10)
        assert store.snapshot.ready
        assert sorted(name for _, name in store.snapshot.entries) == [f"k{i}" for i in range(5)]
        lists = [r for r in await asyncio.to_thread(cluster.request_log) if r.verb == "list"]
        maps = [r for r in lists if r.resource == "configmaps"]
        assert len(maps) >= 3  # five objects in pages of two
        assert all(r.query.get("labelSelector") == SELECTOR for r in maps)
        assert len([r for r in lists if r.resource == "jwkskeysets"]) >= 3
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_configmaps_not_managed_by_the_operator_are_not_served(
    cluster: EmulatedCluster,
    running: tuple[ConfigMapSource, SnapshotStore],
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    source, store = running
    await asyncio.wait_for(source.ready.wait(), 10)
    await asyncio.to_thread(cluster.create, keyset_body("victim"))
    foreign = configmap("victim-jwks", "victim", configmap_data(public_jwk(ec_private)))
    foreign["metadata"]["labels"] = {KEYSET_LABEL: "victim"}  # no managed-by label
    await asyncio.to_thread(cluster.create, foreign)
    await asyncio.to_thread(publish, cluster, "marker", configmap_data(public_jwk(ec_private)))
    await until(lambda: store.get("default", "marker") is not None)
    assert store.get("default", "victim") is None


async def test_a_relist_removes_what_vanished_while_disconnected(
    cluster: EmulatedCluster,
    running: tuple[ConfigMapSource, SnapshotStore],
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    _, store = running
    await asyncio.to_thread(publish, cluster, "gone", configmap_data(public_jwk(ec_private)))
    await until(lambda: store.get("default", "gone") is not None)
    # Break the watch and fail the re-lists for a while; delete meanwhile.
    await asyncio.to_thread(cluster.fail_next, 503, 2, verb="list", plural="configmaps")
    await asyncio.to_thread(cluster.fail_next, 503, 2, verb="watch", plural="configmaps")
    await asyncio.to_thread(cluster.drop_watches, abort=True)
    await asyncio.to_thread(cluster.delete, "configmaps", "gone-jwks", "default")
    await until(lambda: store.get("default", "gone") is None)
    assert store.metrics.watch_restarts.get("error", 0) >= 1


def _event(kind: str, obj: object) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode()


def test_watch_events(ec_private: ec.EllipticCurvePrivateKey) -> None:
    store = SnapshotStore()
    source = ConfigMapSource(store, load_connection_stub(), settings=FAST)
    jwk = public_jwk(ec_private)
    keyset = {
        "metadata": {"namespace": "default", "name": "k", "uid": "u-1"},
        "spec": {"configMapName": "cm"},
        "status": {"keys": [{"kid": jwk["kid"]}]},
    }
    obj = configmap("cm", "k", configmap_data(jwk), annotations={KEYSET_UID_ANNOTATION: "u-1"})
    obj["metadata"]["managedFields"] = [{"time": "2026-01-02T03:04:05Z"}]
    source._handle_event_line(KEYSETS, _event("ADDED", keyset))
    source._handle_event_line(CONFIGMAPS, _event("ADDED", obj))
    entry = store.get("default", "k")
    assert entry is not None and entry.jwks is not None
    assert entry.jwks.last_modified == "Fri, 02 Jan 2026 03:04:05 GMT"  # the same on replicas
    source._handle_event_line(CONFIGMAPS, b'{"type": "BOOKMARK", "object": {"metadata": {}}}')
    source._handle_event_line(CONFIGMAPS, _event("DELETED", obj))
    assert store.get("default", "k") is None
    source._handle_event_line(CONFIGMAPS, _event("ADDED", obj))
    assert store.get("default", "k") is not None
    source._handle_event_line(KEYSETS, _event("DELETED", keyset))
    assert store.get("default", "k") is None  # no keyset, nothing served
    with pytest.raises(_WatchExpired):
        source._handle_event_line(
            CONFIGMAPS, b'{"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}'
        )
    with pytest.raises(ApiError):
        source._handle_event_line(KEYSETS, b'{"type": "ERROR", "object": {"code": 500}}')


def load_connection_stub() -> KubeConnection:
    """A connection is only used for HTTP; event handling never touches it."""
    return KubeConnection("http://127.0.0.1:9", None, None, None)


async def test_a_watch_from_a_compacted_version_ends_as_expired(
    cluster: EmulatedCluster, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    """410 Gone (as an ERROR event) ends the watch as "expired", which makes run() re-list."""
    await asyncio.to_thread(publish, cluster, "old", configmap_data(public_jwk(ec_private)))
    stale = str(await asyncio.to_thread(cluster.resource_version))
    await asyncio.to_thread(
        cluster.patch, "configmaps", "old-jwks", {"data": {"x": "1"}}, "default"
    )
    await asyncio.to_thread(cluster.compact)
    source = ConfigMapSource(
        SnapshotStore(), load_connection(str(cluster.kubeconfig)), settings=FAST
    )
    async with aiohttp.ClientSession() as session:
        reason = await asyncio.wait_for(source._watch(session, CONFIGMAPS, None, stale), 10)
    assert reason == "expired"


def test_kubeconfig_with_tls_and_token(tmp_path: Path) -> None:
    """An https cluster: CA verification on (or off when asked), the user's bearer token."""
    ca_pem = _self_signed_ca()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "secure",
                "cluster": {
                    "server": "https://kube.example:6443",
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            },
            {
                "name": "insecure",
                "cluster": {
                    "server": "https://kube.example:6443",
                    "insecure-skip-tls-verify": True,
                },
            },
        ],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [
            {"name": "secure", "context": {"cluster": "secure", "user": "u"}},
            {"name": "insecure", "context": {"cluster": "insecure", "user": "u"}},
        ],
        "current-context": "secure",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    secure = load_connection(str(path))
    assert secure.server == "https://kube.example:6443"
    assert secure.ssl_context is not None
    assert secure.ssl_context.verify_mode == ssl.CERT_REQUIRED and secure.ssl_context.check_hostname
    assert secure.auth_headers() == {"authorization": "Bearer t0ken"}
    insecure = load_connection(str(path), context="insecure")
    assert insecure.ssl_context is not None and insecure.ssl_context.verify_mode == ssl.CERT_NONE


def test_no_kubeconfig_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KubeConfigError, match="no kubeconfig found"):
        load_connection()
    (tmp_path / "broken").write_text("clusters: [")
    with pytest.raises(KubeConfigError):
        load_connection(str(tmp_path / "broken"))


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
