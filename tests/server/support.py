"""Helpers for the server tests: keys made with ``cryptography`` alone, and a raw HTTP client.

The keys are built here, independently of ``jwks_operator.core``, so that a bug shared by
the operator's key code and the server cannot hide itself. The raw client speaks bytes over
a socket: the hostile-input tests need to send what no well-behaved client library would.
"""

import asyncio
import base64
import gzip
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jwks_operator.core.contract import (
    KEYSET_LABEL,
    KEYSET_UID_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PRIVATE_MEMBERS,
)
from jwks_operator.server.runner import JwksServer, ServerSettings, run_server
from jwks_operator.server.snapshot import SnapshotStore

if TYPE_CHECKING:
    from tests.support.cluster import EmulatedCluster


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _thumbprint(required: Mapping[str, str]) -> str:
    canonical = json.dumps(dict(sorted(required.items())), separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK of a private key, with its RFC 7638 thumbprint as kid."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        required = {"e": b64url(e), "kty": "RSA", "n": b64url(n)}
        alg = "RS256"
    else:
        point = key.public_key().public_numbers()
        required = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(point.x.to_bytes(32, "big")),
            "y": b64url(point.y.to_bytes(32, "big")),
        }
        alg = "ES256"
    return {**required, "kid": _thumbprint(required), "use": "sig", "alg": alg}


def private_members(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The secret members of a key's JWK (to plant them where they must be refused)."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        return {
            "d": b64url(numbers.d.to_bytes(256, "big")),
            "p": b64url(numbers.p.to_bytes(128, "big")),
            "q": b64url(numbers.q.to_bytes(128, "big")),
        }
    return {"d": b64url(key.private_numbers().private_value.to_bytes(32, "big"))}


def jwks_text(*keys: Mapping[str, Any]) -> str:
    return json.dumps({"keys": [dict(key) for key in keys]})


def configmap_data(
    *keys: Mapping[str, Any], issuer: str | None = None, jwks: str | None = None
) -> dict[str, str]:
    data = {"jwks.json": jwks if jwks is not None else jwks_text(*keys)}
    if issuer:
        data["openid-configuration"] = json.dumps(
            {"issuer": issuer, "jwks_uri": issuer + "/.well-known/jwks.json"}
        )
    return data


def assert_no_private_material(body: bytes) -> None:
    """Fail if a response body holds a JWK with any private member, at any depth."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    try:
        document = json.loads(body)
    except ValueError:
        return

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "kty" in node:
                leaked = PRIVATE_MEMBERS.intersection(node)
                assert not leaked, f"private member(s) {sorted(leaked)} in a served JWK"
                assert node["kty"] != "oct", "a symmetric key was served"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    raw_head: bytes = b""
    header_list: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> RawResponse:
    raw_head = await reader.readuntil(b"\r\n\r\n")
    lines = raw_head[:-4].decode("latin-1").split("\r\n")
    _, status, reason = [*lines[0].split(" ", 2), ""][:3]
    header_list = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        header_list.append((name.lower(), value.strip()))
    headers = dict(header_list)
    code = int(status)
    length = 0 if head or code in (204, 304) else int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RawResponse(code, reason, headers, body, raw_head, header_list)


async def rest_after_close(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing the connection, however it closed it.

    A server that closes a connection the client is still writing to may end it
    with a reset instead of a FIN (the kernel's answer to unread input); both are
    "closed by the server". Data that arrived before the reset is kept.
    """
    rest = b""
    async with asyncio.timeout(5):  # a server that never closes fails the test
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return rest
            if not chunk:
                return rest
            rest += chunk


async def exchange(
    port: int,
    data: bytes | Sequence[bytes],
    *,
    count: int = 1,
    head: bool = False,
) -> list[RawResponse]:
    """Send raw bytes (chunks with a short pause between them) and read ``count`` answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in [data] if isinstance(data, bytes) else data:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        return [await asyncio.wait_for(read_response(reader, head=head), 5.0) for _ in range(count)]
    finally:
        writer.close()


async def request(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    body: bytes = b"",
) -> RawResponse:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    (answer,) = await exchange(port, raw, head=method == "HEAD")
    return answer


class ThreadedServer:
    """A JwksServer in its own thread and event loop, for blocking clients (PyJWT, node)."""

    def __init__(self, store: SnapshotStore, **settings: Any) -> None:
        self.store = store
        self._settings = settings
        self._thread = threading.Thread(target=self._run, name="jwks-server", daemon=True)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.port = 0

    def __enter__(self) -> "ThreadedServer":
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the server did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        def started(server: JwksServer) -> None:
            self.port = server.port
            self._started.set()

        await run_server(
            self.store,
            ServerSettings(host="127.0.0.1", port=0, **self._settings),
            stop=self._stop,
            on_started=started,
        )


def configmap(
    name: str,
    keyset: str | None,
    data: Mapping[str, str],
    *,
    namespace: str = "default",
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A ConfigMap as the operator writes it (labelled for ``keyset``), or unlabelled."""
    labels = {KEYSET_LABEL: keyset, MANAGED_BY_LABEL: MANAGED_BY} if keyset else {}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": dict(annotations or {}),
        },
        "data": dict(data),
    }


def keyset_body(
    name: str, *, namespace: str = "default", spec: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "jwks.dev/v1alpha1",
        "kind": "JwksKeySet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec or {"algorithm": "ES256"}),
    }


def vouch(
    cluster: "EmulatedCluster", name: str, *kids: str, namespace: str = "default"
) -> dict[str, Any]:
    """Write ``status.keys`` of keyset ``name`` (status subresource), as the operator does."""
    entries = [{"kid": kid, "state": "active" if not i else "next"} for i, kid in enumerate(kids)]
    return cluster.patch(
        "jwkskeysets", name, {"status": {"keys": entries}}, namespace, subresource="status"
    )


def publish(
    cluster: "EmulatedCluster",
    name: str,
    data: Mapping[str, str],
    *,
    namespace: str = "default",
    kids: Sequence[str] | None = None,
    configmap_name: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What the operator publishes for keyset ``name``: the keyset, its status listing the
    kids of ``data`` (or ``kids``), and its ConfigMap bound to the keyset's UID. A keyset
    that exists already is reused; its ConfigMap is created or replaced. The keyset."""
    existing = cluster.find("jwkskeysets", name, namespace)
    keyset = existing or cluster.create(keyset_body(name, namespace=namespace))
    if kids is None:
        try:
            kids = [str(key["kid"]) for key in json.loads(data["jwks.json"])["keys"]]
        except (ValueError, KeyError, TypeError):
            kids = []
    keyset = vouch(cluster, name, *kids, namespace=namespace)
    bound = {KEYSET_UID_ANNOTATION: keyset["metadata"]["uid"], **(annotations or {})}
    body = configmap(
        configmap_name or f"{name}-jwks", name, data, namespace=namespace, annotations=bound
    )
    if cluster.find("configmaps", body["metadata"]["name"], namespace) is None:
        cluster.create(body)
    else:
        cluster.patch("configmaps", body["metadata"]["name"], {"data": dict(data)}, namespace)
    return keyset
