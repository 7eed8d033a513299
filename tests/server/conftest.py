"""Fixtures for the server tests: keys, and in-process servers on free ports."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jwks_operator.server.connections import Limits
from jwks_operator.server.runner import JwksServer, ServerSettings
from jwks_operator.server.snapshot import SnapshotStore
from tests.server.support import ec_key, rsa_key

MakeServer = Callable[..., Awaitable[JwksServer]]


@pytest.fixture(scope="session")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="session")
def ec_private() -> ec.EllipticCurvePrivateKey:
    return ec_key()


@pytest.fixture(scope="session")
def ec_private_2() -> ec.EllipticCurvePrivateKey:
    return ec_key()


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    """Start servers on 127.0.0.1:0 over a given (or new) store; all shut down after."""
    started: list[JwksServer] = []

    async def make(
        store: SnapshotStore | None = None,
        *,
        limits: Limits | None = None,
        server_options: dict[str, Any] | None = None,
        **settings: Any,
    ) -> JwksServer:
        """``server_options`` go to JwksServer (e.g. ``verify_handler``), the rest to settings."""
        server = JwksServer(
            store if store is not None else SnapshotStore(),
            ServerSettings(host="127.0.0.1", port=0, limits=limits or Limits(), **settings),
            **(server_options or {}),
        )
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.shutdown()
