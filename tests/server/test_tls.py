"""https: a generated CA, a certificate rotated on disk under a fetching client, bad files.

The CA and certificates are made here with ``cryptography``; the client trusts only that CA
(as a verifier in the cluster trusts cert-manager's issuer), and checks the host name.
"""

import asyncio
import datetime
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jwks_operator.server.snapshot import SnapshotStore
from jwks_operator.server.tls import CertificateReloader, TlsError, TlsFiles, load_context
from tests.server.conftest import MakeServer
from tests.server.support import configmap_data, public_jwk, read_response, rest_after_close

JWKS_PATH = "/identity/auth/.well-known/jwks.json"
REQUEST = f"GET {JWKS_PATH} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


@dataclass
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls) -> "Authority":
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, directory: Path, cert_name: str = "tls.crt", key_name: str = "tls.key") -> int:
        """A server certificate for localhost written as PEM files; returns its serial."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _replace(directory / key_name, key_pem)
        _replace(directory / cert_name, cert.public_bytes(serialization.Encoding.PEM))
        return serial


def _replace(path: Path, data: bytes) -> None:
    """Write beside, then rename over: how a mounted Secret's files change (atomically)."""
    scratch = path.with_name(path.name + ".new")
    scratch.write_bytes(data)
    os.replace(scratch, path)


def client_context(authority: Authority) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=authority.pem().decode())
    return context


def serial_of(writer: asyncio.StreamWriter) -> int:
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def authority() -> Authority:
    return Authority.create()


@pytest.fixture
def store(ec_private: ec.EllipticCurvePrivateKey) -> SnapshotStore:
    store = SnapshotStore()
    store.apply("identity", "auth", configmap_data(public_jwk(ec_private)), {})
    store.mark_ready()
    return store


async def fetch(port: int, context: ssl.SSLContext) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    try:
        writer.write(REQUEST)
        answer = await asyncio.wait_for(read_response(reader), 5)
        return answer.status, serial_of(writer)
    finally:
        writer.close()


async def test_https_with_a_generated_ca(
    make_server: MakeServer, authority: Authority, store: SnapshotStore, tmp_path: Path
) -> None:
    serial = authority.issue(tmp_path)
    files = TlsFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
    server = await make_server(store, tls=files)
    status, seen = await fetch(server.port, client_context(authority))
    assert (status, seen) == (200, serial)
    # A client that does not trust the CA is refused by the handshake.
    with pytest.raises(ssl.SSLCertVerificationError):
        await fetch(server.port, ssl.create_default_context())
    # Plain HTTP to the TLS port gets no HTTP answer.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(REQUEST)
    assert b"200 OK" not in await rest_after_close(reader)
    writer.close()


async def test_certificate_replaced_on_disk_while_a_client_keeps_fetching(
    make_server: MakeServer, authority: Authority, store: SnapshotStore, tmp_path: Path
) -> None:
    first = authority.issue(tmp_path)
    server = await make_server(store, tls=TlsFiles(tmp_path / "tls.crt", tmp_path / "tls.key"))
    context = client_context(authority)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
    )
    assert serial_of(writer) == first
    answers: list[int] = []
    stop = asyncio.Event()

    async def keep_fetching() -> None:
        while not stop.is_set():
            writer.write(REQUEST)
            answers.append((await asyncio.wait_for(read_response(reader), 5)).status)
            await asyncio.sleep(0.02)

    fetching = asyncio.create_task(keep_fetching())
    await asyncio.sleep(0.3)
    second = authority.issue(tmp_path)  # as cert-manager renews the Secret
    for _ in range(50):
        _, seen = await fetch(server.port, context)
        if seen == second:
            break
        await asyncio.sleep(0.1)
    assert seen == second, "new connections never got the new certificate"
    await asyncio.sleep(0.3)
    stop.set()
    await fetching
    # The connection opened before the change was never dropped and kept its session.
    assert len(answers) > 10 and set(answers) == {200}
    assert serial_of(writer) == first
    writer.close()


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> int:
    """A TLS handshake in memory; the serial of the certificate the server presented."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_side = server.wrap_bio(to_server, to_client, server_side=True)
    client_side = client.wrap_bio(to_client, to_server, server_hostname="localhost")
    for _ in range(10):
        done = 0
        for side in (client_side, server_side):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        if done == 2:
            der = client_side.getpeercert(binary_form=True)
            assert der is not None
            return x509.load_der_x509_certificate(der).serial_number
    raise AssertionError("the handshake did not complete")


def test_a_mismatched_pair_on_disk_keeps_the_previous_one(
    authority: Authority, tmp_path: Path
) -> None:
    first = authority.issue(tmp_path)
    files = TlsFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
    context = load_context(files)
    reloader = CertificateReloader(context, files)
    client = client_context(authority)
    assert handshake(context, client) == first
    authority.issue(tmp_path, cert_name="other.crt", key_name="other.key")
    for changed, source in ((files.cert_file, "other.crt"), (files.key_file, "other.key")):
        previous = changed.read_bytes()
        _replace(changed, (tmp_path / source).read_bytes())  # one file changed, not the other
        assert reloader.check() is False
        assert handshake(context, client) == first  # still the whole previous pair
        _replace(changed, previous)
        assert reloader.check() is True  # the restored pair loads again
    second = authority.issue(tmp_path)  # then both, consistently
    _replace(files.cert_file, (tmp_path / "tls.crt").read_bytes())  # a new inode for both
    assert reloader.check() is True
    assert handshake(context, client) == second


def test_load_context_names_the_problem(authority: Authority, tmp_path: Path) -> None:
    authority.issue(tmp_path)
    authority.issue(tmp_path, cert_name="other.crt", key_name="other.key")
    with pytest.raises(TlsError, match="does not match"):
        load_context(TlsFiles(tmp_path / "tls.crt", tmp_path / "other.key"))
    with pytest.raises(TlsError, match="does not exist"):
        load_context(TlsFiles(tmp_path / "missing.crt", tmp_path / "tls.key"))
    (tmp_path / "junk.key").write_text("not a key\n")
    with pytest.raises(TlsError, match="cannot be loaded"):
        load_context(TlsFiles(tmp_path / "tls.crt", tmp_path / "junk.key"))


@pytest.mark.parametrize("command", ["serve", "standalone"])
def test_a_wrong_key_file_is_refused_at_start_with_exit_2(
    command: str, authority: Authority, tmp_path: Path
) -> None:
    authority.issue(tmp_path)
    authority.issue(tmp_path, cert_name="other.crt", key_name="other.key")
    config = tmp_path / "keysets.yaml"
    config.write_text("apiVersion: jwks.dev/v1alpha1\nkind: JwksKeySet\nmetadata: {name: a}\n")
    extra = ["--config", str(config), "--state-dir", str(tmp_path / "state")]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jwks_operator",
            command,
            "--port",
            "0",
            "--tls-cert-file",
            str(tmp_path / "tls.crt"),
            "--tls-key-file",
            str(tmp_path / "other.key"),
            *(extra if command == "standalone" else []),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
    )
    assert result.returncode == 2, result.stderr
    assert "does not match the certificate" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was started
