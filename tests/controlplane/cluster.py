"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

Test tooling, not product code. The binaries come from ``tests/controlplane/build.sh`` (built
once from their Go modules, cached outside the clone). This module generates a CA and the
certificates, starts the three processes with real authentication (client certificates for
the admin and the controller manager, ServiceAccount tokens for everyone else), RBAC, the
default admission plugins plus ``OwnerReferencesPermissionEnforcement`` (what hardened
clusters add), and API priority and fairness, then writes an admin kubeconfig.

There is no kubelet and no scheduler: Deployments get ReplicaSets and Pods (so Pod Security
admission judges the chart's pods), but nothing runs in them. The operator and the server
run as local processes, authenticated as the chart's ServiceAccounts with tokens from the
TokenRequest API (``service_account_kubeconfig``), so the chart's real RBAC is what
authorizes them.

Command line (what ``make cluster-up`` / ``make cluster-down`` call)::

    python -m tests.controlplane.cluster up   [--dir DIR]   # prints KUBECONFIG=... last
    python -m tests.controlplane.cluster down [--dir DIR]

Everything a run owns lives in DIR (default ``$TMPDIR/jwks-operator-cluster``): certificates,
etcd's data, logs (``*.log``), ``pids.json``. ``down`` stops the processes by those PIDs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

HERE: Final = Path(__file__).resolve().parent
BUILD_SCRIPT: Final = HERE / "build.sh"
DEFAULT_DIR: Final = Path(tempfile.gettempdir()) / "jwks-operator-cluster"
SERVICE_CIDR: Final = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
# How often the API server compacts etcd: short, so that a watch resumed from an old
# resourceVersion meets 410 Gone within a test (the default is 5 minutes).
COMPACTION_INTERVAL: Final = "20s"
PROCESSES: Final = ("etcd", "kube-apiserver", "kube-controller-manager")
RESTART_GRACE: Final = 10.0
"""Seconds after a restarted process is ready that still count as its outage."""


def binaries_dir() -> Path:
    """Build the control plane (or find the cached build): the folder of the three binaries."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- certificates ---------------------------------------------------------------------


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Pki:
    """A throwaway CA and the certificates the control plane and its clients present."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @classmethod
    def create(cls) -> Pki:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("jwks-operator-test-ca"))
            .issuer_name(_name("jwks-operator-test-ca"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        server_names: Sequence[str] = (),
    ) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for a client (no names) or a server (DNS/IP names)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        usages = [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        if server_names:
            sans: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    sans.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            usages.append(x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def kubeconfig_document(
    server: str, ca_pem: bytes, user: Mapping[str, Any], name: str = "jwks-test"
) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one context (current)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": dict(user)}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


# --- the running control plane ---------------------------------------------------------


@dataclass
class ControlPlane:
    """A started control plane (or one found again from its folder by ``attach``)."""

    directory: Path
    server: str
    etcd_url: str
    pids: dict[str, int] = field(default_factory=dict)
    binaries: Path | None = None
    outages: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) wall-clock times of each kill-to-ready-again of a process, plus a grace
    period: while kube-apiserver starts, its RBAC authorizer has not synced yet and denies
    requests with 403, which clients must (and ours do) treat as a reason to retry."""
    down_since: float = 0.0

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def env(self) -> dict[str, str]:
        """The environment of a kubectl or helm that acts as the cluster admin."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    # process control, used by the fault tests --------------------------------------

    def kill(self, process: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one of the three processes (kill -9 by default)."""
        pid = self.pids[process]
        self.down_since = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if sig == signal.SIGKILL:
            _reap(pid)

    def restart(self, process: str) -> None:
        """Start ``process`` again with the arguments it was first started with."""
        argv = json.loads((self.directory / f"{process}.argv.json").read_text())
        self.pids[process] = _spawn(argv, self.directory / f"{process}.log")
        self._save_pids()
        if process == "kube-apiserver":
            wait_ready(self)
        elif process == "etcd":
            _wait_etcd(self.etcd_url)
            wait_ready(self)
        self.outages.append((self.down_since or time.time(), time.time() + RESTART_GRACE))

    def _save_pids(self) -> None:
        state = {
            "server": self.server,
            "etcd_url": self.etcd_url,
            "pids": self.pids,
            "binaries": str(self.binaries or ""),
        }
        _write(self.directory / "pids.json", json.dumps(state))

    @classmethod
    def attach(cls, directory: Path) -> ControlPlane:
        state = json.loads((directory / "pids.json").read_text())
        binaries = Path(state["binaries"]) if state.get("binaries") else None
        return cls(directory, state["server"], state["etcd_url"], dict(state["pids"]), binaries)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s, every process by its PID, newest first."""
        for process in reversed(PROCESSES):
            pid = self.pids.get(process)
            if not pid:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self.pids.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "pids.json").unlink()

    # clients --------------------------------------------------------------------------

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        built = self.binaries / "kubectl" if self.binaries else None
        binary = str(built) if built and built.exists() else shutil.which("kubectl") or "kubectl"
        result = subprocess.run(
            [binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env=self.env(),
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def service_account_kubeconfig(
        self, namespace: str, account: str, path: Path, duration: str = "2h"
    ) -> Path:
        """A kubeconfig that authenticates as ``namespace/account`` with a bound token.

        The token comes from the TokenRequest API (``kubectl create token``), the same kind
        of token the kubelet projects into a pod, and is referenced through ``tokenFile``
        so a test can rotate it on disk the way the kubelet does.
        """
        token = self.kubectl(
            "-n", namespace, "create", "token", account, f"--duration={duration}"
        ).stdout.strip()
        token_file = _write(path.with_suffix(".token"), token)
        document = kubeconfig_document(
            self.server, self.ca_file.read_bytes(), {"tokenFile": str(token_file)}
        )
        _write(path, yaml.safe_dump(document))
        return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _reap(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child (found again by attach): nothing to reap
        if done == pid:
            return
        time.sleep(0.05)


def _spawn(argv: Sequence[str], log: Path) -> int:
    """Start a process in its own session (so a test's Ctrl-C does not reach it)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process.pid


def _wait_etcd(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError, urllib.error.URLError, ValueError),
            urllib.request.urlopen(f"{url}/health", timeout=2) as response,
        ):
            if json.loads(response.read()).get("health") == "true":
                return
        time.sleep(0.2)
    raise RuntimeError(f"etcd at {url} did not become healthy in {timeout:.0f} s")


def admin_ssl_context(plane: ControlPlane) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    context.load_cert_chain(plane.directory / "admin.crt", plane.directory / "admin.key")
    return context


def wait_ready(plane: ControlPlane, timeout: float = 120) -> None:
    """Until ``/readyz`` answers ok (every post-start hook done: RBAC bootstrap, APF...)."""
    context = admin_ssl_context(plane)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"{plane.server}/readyz", timeout=5, context=context
            ) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            last = f"{error.code} {error.read()[-300:]!r}"
        except OSError as error:
            last = str(error)
        time.sleep(0.3)
    raise RuntimeError(f"kube-apiserver at {plane.server} not ready in {timeout:.0f} s: {last}")


def start(directory: Path, binaries: Path | None = None) -> ControlPlane:
    """Start etcd, kube-apiserver and kube-controller-manager; return when ready."""
    binaries = binaries or binaries_dir()
    if directory.exists():
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError):
            ControlPlane.attach(directory).stop()
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    pki = Pki.create()
    ca = _write(directory / "ca.crt", pki.ca_pem, 0o644)
    server_cert, server_key = pki.issue(
        "kube-apiserver",
        server_names=[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
        ],
    )
    _write(directory / "apiserver.crt", server_cert)
    _write(directory / "apiserver.key", server_key)
    admin_cert, admin_key = pki.issue("jwks-test-admin", organization="system:masters")
    _write(directory / "admin.crt", admin_cert)
    _write(directory / "admin.key", admin_key)
    cm_cert, cm_key = pki.issue("system:kube-controller-manager")
    _write(directory / "controller-manager.crt", cm_cert)
    _write(directory / "controller-manager.key", cm_key)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(directory / "sa.key", _pem_key(sa_key))
    _write(
        directory / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )

    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    server = f"https://127.0.0.1:{api_port}"
    plane = ControlPlane(directory, server, etcd_url, binaries=binaries)

    argvs: dict[str, list[str]] = {
        "etcd": [
            str(binaries / "etcd"),
            "--name=jwks-test",
            f"--data-dir={directory / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=jwks-test=http://127.0.0.1:{peer_port}",
            "--listen-metrics-urls=",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={directory / 'apiserver-certs'}",
            f"--tls-cert-file={directory / 'apiserver.crt'}",
            f"--tls-private-key-file={directory / 'apiserver.key'}",
            f"--client-ca-file={ca}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={directory / 'sa.pub'}",
            f"--service-account-signing-key-file={directory / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            f"--etcd-compaction-interval={COMPACTION_INTERVAL}",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ],
    }
    for process in ("etcd", "kube-apiserver"):
        _write(directory / f"{process}.argv.json", json.dumps(argvs[process]))
    try:
        plane.pids["etcd"] = _spawn(argvs["etcd"], directory / "etcd.log")
        plane._save_pids()
        _wait_etcd(etcd_url)
        plane.pids["kube-apiserver"] = _spawn(
            argvs["kube-apiserver"], directory / "kube-apiserver.log"
        )
        plane._save_pids()
        _write(
            plane.kubeconfig,
            yaml.safe_dump(
                kubeconfig_document(
                    server,
                    pki.ca_pem,
                    {
                        "client-certificate": str(directory / "admin.crt"),
                        "client-key": str(directory / "admin.key"),
                    },
                )
            ),
        )
        wait_ready(plane)
        cm_kubeconfig = _write(
            directory / "controller-manager.kubeconfig",
            yaml.safe_dump(
                kubeconfig_document(
                    server,
                    pki.ca_pem,
                    {
                        "client-certificate": str(directory / "controller-manager.crt"),
                        "client-key": str(directory / "controller-manager.key"),
                    },
                )
            ),
        )
        argvs["kube-controller-manager"] = [
            str(binaries / "kube-controller-manager"),
            f"--kubeconfig={cm_kubeconfig}",
            f"--authentication-kubeconfig={cm_kubeconfig}",
            f"--authorization-kubeconfig={cm_kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={directory / 'controller-manager-certs'}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={directory / 'sa.key'}",
            f"--root-ca-file={ca}",
            "--leader-elect=false",
            # Garbage collection and namespace deletion are what the tests need; the node,
            # volume and cloud controllers have no nodes to manage.
            "--controllers=*,-nodeipam,-nodelifecycle,-ttl,-persistentvolume-binder,"
            "-attachdetach,-persistentvolume-expander,-ephemeral-volume,-pvc-protection,"
            "-pv-protection,-service-lb-controller,-node-route-controller,-cloud-node-lifecycle",
            "--concurrent-gc-syncs=5",
            "--profiling=false",
            "--v=1",
        ]
        _write(
            directory / "kube-controller-manager.argv.json",
            json.dumps(argvs["kube-controller-manager"]),
        )
        plane.pids["kube-controller-manager"] = _spawn(
            argvs["kube-controller-manager"], directory / "kube-controller-manager.log"
        )
        plane._save_pids()
        _wait_default_service_account(plane)
    except BaseException:
        plane.stop()
        raise
    return plane


def _wait_default_service_account(plane: ControlPlane, timeout: float = 90) -> None:
    """The controller manager is working once it created ``default/default``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = plane.kubectl(
            "-n", "default", "get", "serviceaccount", "default", "-o", "name", check=False
        )
        if result.returncode == 0:
            return
        time.sleep(0.5)
    log = (plane.directory / "kube-controller-manager.log").read_text()[-2000:]
    raise RuntimeError(f"kube-controller-manager made no default ServiceAccount:\n{log}")


@contextlib.contextmanager
def running(directory: Path) -> Iterator[ControlPlane]:
    plane = start(directory)
    try:
        yield plane
    finally:
        plane.stop()


def version(binaries: Path) -> str:
    out = subprocess.run(
        [str(binaries / "kube-apiserver"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.controlplane.cluster")
    parser.add_argument("action", choices=("up", "down", "build"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    args = parser.parse_args(argv)
    if args.action == "build":
        print(binaries_dir())
        return 0
    if args.action == "down":
        try:
            plane = ControlPlane.attach(args.dir)
        except FileNotFoundError:
            print(f"no control plane recorded in {args.dir}", file=sys.stderr)
            return 0
        plane.stop()
        print(f"stopped the control plane of {args.dir}")
        return 0
    binaries = binaries_dir()
    plane = start(args.dir, binaries)
    print(version(binaries), file=sys.stderr)
    print(f"API server {plane.server}, logs in {args.dir}", file=sys.stderr)
    print(f"KUBECONFIG={plane.kubeconfig}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
