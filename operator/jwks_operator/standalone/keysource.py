"""Where ``jwks-operator sign`` finds a keyset's active key: a state directory or a Secret.

Both read the same ``keys.json`` and go through ``core.state.state_from_json``, which
re-derives every kid from its private key: a token is only ever signed by a key whose kid
is exactly the one published. The Kubernetes path uses the user's kubeconfig (and the
user's RBAC: reading the JwksKeySet for its ``secretName``, then the Secret).
"""

import asyncio
import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import aiohttp

from jwks_operator.core.contract import API_VERSION, PLURAL, SECRET_KEYS
from jwks_operator.core.keys import KeyMaterial
from jwks_operator.core.state import CorruptStateError, state_from_json
from jwks_operator.standalone.statedir import StateDirError, check_state_dir
from jwks_operator.standalone.status import keyset_status, overdue_warning
from jwks_operator.store.localdir import private_path, public_path

if TYPE_CHECKING:
    from jwks_operator.kube.client import EndpointProvider

KUBE_TIMEOUT: Final = 15


class KeySourceError(Exception):
    """The key could not be obtained; ``usage`` is True when the user named something wrong."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def active_key(keys_json: str | bytes, where: str) -> KeyMaterial:
    try:
        state = state_from_json(keys_json)
    except CorruptStateError as error:
        raise KeySourceError(f"{where}: {error}") from None
    if state.active is None:
        raise KeySourceError(f"{where}: no active key yet (is the keyset reconciled?)")
    return state.active.material


@dataclass(frozen=True)
class StateDirKey:
    material: KeyMaterial
    warning: str | None
    """Set when the state is overdue (no instance is rotating it): ``sign`` prints it."""


def key_from_state_dir(
    state_dir: Path, namespace: str, name: str, now: datetime | None = None
) -> StateDirKey:
    """The active key, after the same directory checks as ``standalone`` (0700, owner, 0600)."""
    try:
        check_state_dir(state_dir)
    except StateDirError as error:
        raise KeySourceError(str(error), usage=True) from None
    path = private_path(state_dir, namespace, name)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        known = sorted(
            candidate.name.removesuffix(".keys.json").replace("_", "/", 1)
            for candidate in state_dir.glob("*_*.keys.json")
        )
        hint = f" (it holds: {', '.join(known)})" if known else " (it holds no keyset)"
        raise KeySourceError(
            f"no keyset {namespace}/{name} in state directory {state_dir}{hint}", usage=True
        ) from None
    except PermissionError:
        raise KeySourceError(f"{path}: permission denied") from None
    material = active_key(text, str(path))
    try:
        public_record: bytes | None = public_path(state_dir, namespace, name).read_bytes()
    except OSError:
        public_record = None
    moment = now or datetime.now(UTC)
    status = keyset_status(f"{namespace}/{name}", text, public_record, moment)
    return StateDirKey(material, overdue_warning(status, moment))


def key_from_kubernetes(
    namespace: str, name: str, context: str | None = None, kubeconfig: str | None = None
) -> KeyMaterial:
    """Read the keyset's Secret with the user's credentials (``kube.config.ORDER``) through
    the project's one API client (``kube.client``), with its timeouts and retry policy."""
    from jwks_operator.kube.config import KubeConfigError, endpoint_provider, load_credentials

    try:
        credentials = load_credentials(kubeconfig, context)
    except KubeConfigError as error:
        raise KeySourceError(str(error), usage=True) from None
    provider = endpoint_provider(kubeconfig, context, first=credentials)
    return asyncio.run(_read_active_key(provider, namespace, name))


async def _read_active_key(provider: "EndpointProvider", namespace: str, name: str) -> KeyMaterial:
    from jwks_operator.kube.client import KubeApiError, KubeClient, object_path

    client = KubeClient(provider, connections=2, user_agent="jwks-operator-sign")
    where = f"JwksKeySet {namespace}/{name}"
    try:
        async with asyncio.timeout(KUBE_TIMEOUT):
            keyset = await client.get(object_path(API_VERSION, PLURAL, namespace, name))
            if keyset is None:
                raise KeySourceError(f"{where} not found", usage=True)
            spec = keyset.get("spec") or {}
            secret_name = spec.get("secretName")
            if not isinstance(secret_name, str) or not secret_name:
                secret_name = f"{name}-signing"
            where = f"Secret {namespace}/{secret_name}"
            secret = await client.get(object_path("v1", "secrets", namespace, secret_name))
            if secret is None:
                raise KeySourceError(f"{where} not found", usage=True)
    except KubeApiError as error:
        if error.status in (401, 403):
            raise KeySourceError(f"{where}: access denied ({error.status})") from None
        raise KeySourceError(f"{where}: API error {error.status} {error.reason}") from None
    except (OSError, aiohttp.ClientError, TimeoutError) as error:
        raise KeySourceError(f"cannot reach the API server: {error.__class__.__name__}") from None
    finally:
        await client.close()
    encoded = (secret.get("data") or {}).get(SECRET_KEYS)
    if not encoded:
        raise KeySourceError(f"{where} has no {SECRET_KEYS}")
    try:
        text = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeySourceError(f"{where}: {SECRET_KEYS} is not base64") from None
    return active_key(text, f"{where} {SECRET_KEYS}")
