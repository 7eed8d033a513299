"""Where ``jwks-operator sign`` finds a keyset's active key: a state directory or a Secret.

Both read the same ``keys.json`` and go through ``core.state.state_from_json``, which
re-derives every kid from its private key: a token is only ever signed by a key whose kid
is exactly the one published. The Kubernetes path uses the user's kubeconfig (and the
user's RBAC: reading the JwksKeySet for its ``secretName``, then the Secret).
"""

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from jwks_operator.core.contract import GROUP, PLURAL, SECRET_KEYS, VERSION
from jwks_operator.core.keys import KeyMaterial
from jwks_operator.core.state import CorruptStateError, state_from_json
from jwks_operator.standalone.statedir import StateDirError, check_state_dir
from jwks_operator.standalone.status import keyset_status, overdue_warning
from jwks_operator.store.localdir import private_path, public_path

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
    """Read the keyset's Secret through the kubeconfig (``--kubeconfig``, ``KUBECONFIG``,
    ~/.kube/config)."""
    import urllib3
    from kubernetes import client, config  # imported here: slow, and only --kube needs it
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    except (ConfigException, FileNotFoundError, TypeError) as error:
        raise KeySourceError(f"cannot load the kubeconfig: {error}", usage=True) from None
    except Exception as error:  # malformed YAML, bad base64 certificate data, ...
        raise KeySourceError(
            f"cannot load the kubeconfig ({error.__class__.__name__})", usage=True
        ) from None
    api_client = client.ApiClient()
    where = f"JwksKeySet {namespace}/{name}"
    try:
        keyset: Any = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=KUBE_TIMEOUT
        )
        spec = keyset.get("spec") or {}
        secret_name = spec.get("secretName")
        if not isinstance(secret_name, str) or not secret_name:
            secret_name = f"{name}-signing"
        where = f"Secret {namespace}/{secret_name}"
        secret = client.CoreV1Api(api_client).read_namespaced_secret(
            secret_name, namespace, _request_timeout=KUBE_TIMEOUT
        )
    except ApiException as error:
        if error.status == 404:
            raise KeySourceError(f"{where} not found", usage=True) from None
        if error.status in (401, 403):
            raise KeySourceError(f"{where}: access denied ({error.status})") from None
        raise KeySourceError(f"{where}: API error {error.status} {error.reason}") from None
    except (OSError, urllib3.exceptions.HTTPError) as error:
        raise KeySourceError(f"cannot reach the API server: {error.__class__.__name__}") from None
    finally:
        api_client.close()  # type: ignore[no-untyped-call]
    encoded = (secret.data or {}).get(SECRET_KEYS)
    if not encoded:
        raise KeySourceError(f"{where} has no {SECRET_KEYS}")
    try:
        text = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeySourceError(f"{where}: {SECRET_KEYS} is not base64") from None
    return active_key(text, f"{where} {SECRET_KEYS}")
