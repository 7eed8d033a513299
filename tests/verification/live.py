"""A real JWKS server (which calls the verification package directly) on a free loopback port.

It is fed through ``SnapshotStore.apply`` exactly as the Kubernetes watch feeds it (the
ConfigMap's data keys), so the tests exercise the snapshot's verifier slot and the HTTP
code a gateway really talks to.
"""

import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from jwks_operator.core.contract import CONFIGMAP_JWKS, CONFIGMAP_VERIFICATION
from jwks_operator.core.keys import KeyMaterial
from jwks_operator.server.runner import JwksServer, ServerSettings
from jwks_operator.server.snapshot import SnapshotStore
from tests.verification.helpers import ISSUER, jwks

NAMESPACE = "identity"
NAME = "auth"


def configmap_data(keys: list[KeyMaterial], policy: str | None) -> dict[str, str]:
    data = {CONFIGMAP_JWKS: json.dumps(jwks(*keys))}
    if policy is not None:
        data[CONFIGMAP_VERIFICATION] = policy
    return data


def live_claims(**changes: Any) -> dict[str, Any]:
    """Claims valid at the real current time (the server reads the real clock)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": "api",
        "iat": now - 5,
        "exp": now + 300,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


@asynccontextmanager
async def running_server(
    keysets: Mapping[tuple[str, str], Mapping[str, str]],
) -> AsyncIterator[tuple[JwksServer, SnapshotStore]]:
    store = SnapshotStore()
    for (namespace, name), data in keysets.items():
        store.apply(namespace, name, data, {})
    store.mark_ready()
    server = JwksServer(store, ServerSettings(host="127.0.0.1", port=0))
    await server.start()
    try:
        yield server, store
    finally:
        await server.shutdown()
