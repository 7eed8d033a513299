"""Driving ``jwks-operator run`` against the emulated cluster, and reading what it wrote.

Shared by the operator's end-to-end tests and ``bench/operator_bench.py``. The operator
is always the real CLI in a subprocess, connected through a kubeconfig file, as a user
runs it; this module only creates objects, reads them back and checks tokens.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt

from jwks_operator.core.contract import (
    CONFIGMAP_JWKS,
    PRIVATE_MEMBERS,
    SECRET_KEYS,
    SECRET_SIGNING_JWK,
    SECRET_SIGNING_KID,
    SECRET_SIGNING_PEM,
)
from tests.support.cluster import CliProcess, EmulatedCluster

KEYSETS: Final = "jwks.dev/v1alpha1/jwkskeysets"
JsonObj = dict[str, Any]


def manifest(
    name: str,
    namespace: str = "default",
    *,
    annotations: Mapping[str, str] | None = None,
    **spec: Any,
) -> JsonObj:
    metadata: JsonObj = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "jwks.dev/v1alpha1",
        "kind": "JwksKeySet",
        "metadata": metadata,
        "spec": spec,
    }


def rotation(interval: str, pre_publish: str, retire_after: str) -> JsonObj:
    return {"interval": interval, "prePublish": pre_publish, "retireAfter": retire_after}


def condition(obj: Mapping[str, Any] | None, kind: str = "Ready") -> JsonObj | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or ():
        if item.get("type") == kind:
            return dict(item)
    return None


def is_ready(obj: Mapping[str, Any] | None) -> bool:
    found = condition(obj)
    return found is not None and found.get("status") == "True"


def decode_secret(secret: Mapping[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def sign_token(secret_data: Mapping[str, str], **claims: Any) -> tuple[str, str]:
    """A JWT signed the way a signing service would: with the mounted signing.* files."""
    kid = secret_data[SECRET_SIGNING_KID]
    algorithm = json.loads(secret_data[SECRET_SIGNING_JWK]).get("alg")
    token = jwt.encode(
        {"sub": "tester", **claims},
        secret_data[SECRET_SIGNING_PEM],
        algorithm=algorithm,
        headers={"kid": kid},
    )
    return kid, token


def verifies(token: str, jwks: Mapping[str, Any]) -> bool:
    """Whether ``token`` verifies against the JWKS the way a verifier does (kid lookup)."""
    kid = jwt.get_unverified_header(token).get("kid")
    for jwk in jwks.get("keys", []):
        if jwk.get("kid") == kid:
            key = jwt.PyJWK(dict(jwk))
            try:
                jwt.decode(token, key.key, algorithms=[jwk["alg"]], options={"verify_aud": False})
            except jwt.InvalidTokenError:
                return False
            return True
    return False


def private_values(secret_data: Mapping[str, str]) -> set[str]:
    """Every secret string in a Secret: private JWK members and PEM bodies."""
    found: set[str] = set()
    state = json.loads(secret_data.get(SECRET_KEYS) or "{}")
    jwks = [entry.get("privateJwk") or {} for entry in state.get("keys", [])]
    if SECRET_SIGNING_JWK in secret_data:
        jwks.append(json.loads(secret_data[SECRET_SIGNING_JWK]))
    for jwk in jwks:
        for member in PRIVATE_MEMBERS:
            value = jwk.get(member)
            if isinstance(value, str) and len(value) >= 16:
                found.add(value)
    pem = secret_data.get(SECRET_SIGNING_PEM, "")
    for line in pem.splitlines():
        if line and not line.startswith("-----") and len(line) >= 32:
            found.add(line)
    return found


@dataclass
class OperatorUnderTest:
    """One ``jwks-operator run`` at a time (restartable) and helpers to read its results."""

    cluster: EmulatedCluster
    namespaces: tuple[str, ...] = ("default",)
    extra_args: tuple[str, ...] = ("--verbose",)
    processes: list[CliProcess] = field(default_factory=list)
    start_args: tuple[str, ...] = ("run", "--standalone")

    # ------------------------------------------------------------------ the process
    def start(self) -> CliProcess:
        args = list(self.start_args)
        if "--all-namespaces" not in self.extra_args:
            for namespace in self.namespaces:
                args += ["--namespace", namespace]
        process = self.cluster.run_cli(*args, *self.extra_args)
        self.processes.append(process)
        return process

    @property
    def process(self) -> CliProcess:
        return self.processes[-1]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.processes and self.process.running:
            self.process.terminate(timeout=15)

    def output(self) -> str:
        return "".join(process.output() for process in self.processes)

    def alive(self) -> None:
        """Fail at once, with its output, when the operator died (instead of timing out)."""
        if self.processes and not self.process.running:
            raise AssertionError(
                f"the operator exited ({self.process.returncode}):\n{self.output()[-4000:]}"
            )

    def reconciles(self, name: str, namespace: str = "default") -> int:
        """How many times the operator(s) reconciled this keyset (one log line each)."""
        pattern = re.compile(rf"\[{re.escape(namespace)}/{re.escape(name)}\] Reconciled \(")
        return len(pattern.findall(self.output()))

    def reconcile_triggers(self, name: str, namespace: str = "default") -> list[str]:
        pattern = re.compile(
            rf"\[{re.escape(namespace)}/{re.escape(name)}\] Reconciled \(trigger: ([^)]*)\)"
        )
        return pattern.findall(self.output())

    # ------------------------------------------------------------------ objects
    def create(self, body: Mapping[str, Any]) -> JsonObj:
        namespace = body["metadata"].get("namespace", "default")
        self.cluster.ensure_namespace(namespace)
        return self.cluster.create(body)

    def keyset(self, name: str, namespace: str = "default") -> JsonObj | None:
        return self.cluster.find(KEYSETS, name, namespace)

    def wait_keyset(
        self,
        name: str,
        check: Callable[[JsonObj], object],
        namespace: str = "default",
        timeout: float = 30.0,
    ) -> JsonObj:
        def checked(obj: JsonObj) -> object:
            self.alive()
            return check(obj)

        return self.cluster.wait_for_object(KEYSETS, name, namespace, checked, timeout=timeout)

    def wait_ready(
        self,
        name: str,
        namespace: str = "default",
        *,
        generation: int | None = None,
        timeout: float = 30.0,
    ) -> JsonObj:
        def check(obj: JsonObj) -> bool:
            found = condition(obj)
            return (
                found is not None
                and found.get("status") == "True"
                and (generation is None or found.get("observedGeneration") == generation)
            )

        return self.wait_keyset(name, check, namespace, timeout)

    def wait_condition(
        self,
        name: str,
        reason: str,
        namespace: str = "default",
        *,
        status: str = "False",
        timeout: float = 30.0,
    ) -> JsonObj:
        def check(obj: JsonObj) -> bool:
            found = condition(obj)
            return found is not None and (found.get("status"), found.get("reason")) == (
                status,
                reason,
            )

        return self.wait_keyset(name, check, namespace, timeout)

    def secret(self, name: str, namespace: str = "default") -> JsonObj | None:
        return self.cluster.find("v1/secrets", name, namespace)

    def secret_data(self, name: str, namespace: str = "default") -> dict[str, str]:
        secret = self.secret(name, namespace)
        assert secret is not None, f"no Secret {namespace}/{name}"
        return decode_secret(secret)

    def stored_keys(self, name: str, namespace: str = "default") -> list[JsonObj]:
        keys: list[JsonObj] = json.loads(self.secret_data(name, namespace)[SECRET_KEYS])["keys"]
        return keys

    def configmap(self, name: str, namespace: str = "default") -> JsonObj | None:
        return self.cluster.find("v1/configmaps", name, namespace)

    def jwks(self, name: str, namespace: str = "default") -> JsonObj:
        configmap = self.configmap(name, namespace)
        assert configmap is not None, f"no ConfigMap {namespace}/{name}"
        document: JsonObj = json.loads(configmap["data"][CONFIGMAP_JWKS])
        return document

    def kids(self, name: str, namespace: str = "default") -> list[str]:
        return [key["kid"] for key in self.jwks(name, namespace).get("keys", [])]

    def events(self, name: str, namespace: str = "default") -> list[JsonObj]:
        return self.cluster.events(namespace, involved_name=name)

    def event_reasons(self, name: str, namespace: str = "default") -> list[str]:
        return [event["reason"] for event in self.events(name, namespace)]

    def wait_event(
        self, name: str, reason: str, namespace: str = "default", timeout: float = 15.0
    ) -> JsonObj:
        def find() -> JsonObj | None:
            self.alive()
            return next((e for e in self.events(name, namespace) if e["reason"] == reason), None)

        return self.cluster.wait_for(find, timeout, message=f"event {reason} for {name}")

    def settle(self, name: str, namespace: str = "default", quiet: float = 1.0) -> int:
        """Wait until the keyset's reconcile count stops changing for ``quiet`` seconds."""
        count = self.reconciles(name, namespace)
        deadline = time.monotonic() + quiet
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.reconciles(name, namespace)
            if now != count:
                count, deadline = now, time.monotonic() + quiet
        return count


def contains_any(text: str, secrets: Iterable[str]) -> list[str]:
    return [secret[:12] + "..." for secret in secrets if secret in text]


def unpermitted_calls(cluster: EmulatedCluster, *, peering: bool = False) -> list[str]:
    """API calls the operator made that ``permissions.OPERATOR`` does not grant."""
    from jwks_operator.permissions import OPERATOR, required

    granted = {
        (p.api_group, p.resource, verb)
        for p in required(OPERATOR, peering=peering, clusterwide=False)
        for verb in p.verbs
    }
    missing = []
    for call in sorted(cluster.api_calls()):
        resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
        if (call.group, resource, call.verb) not in granted:
            missing.append(f"{call.verb} {call.group or 'core'}/{resource}")
    return missing
