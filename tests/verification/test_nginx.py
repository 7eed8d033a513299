"""A real nginx with ``auth_request`` in front of an upstream, asking our /verify endpoint.

The configuration is the one docs/gateways.md gives for plain nginx: a valid token reaches
the upstream with the identity headers nginx copied from our answer (and only those: a
client's forged X-Auth-* headers are replaced); an expired, forged or ``alg: none`` token
is a 401 from nginx carrying our RFC 6750 challenge, and never reaches the upstream.
"""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.verification.helpers import b64, material, policy_json, segment, token
from tests.verification.live import NAME, NAMESPACE, configmap_data, live_claims, running_server
from tests.verification.nginx import find_nginx, running_nginx

NGINX, WHY_NOT = find_nginx()
pytestmark = pytest.mark.skipif(NGINX is None, reason=WHY_NOT)

KEY = material("RS256")
POLICY = policy_json("RS256", claimHeaders={"email": "X-Auth-Email"})

# The plain-nginx configuration of docs/gateways.md, verbatim (tests/clients/test_docs.py
# checks the docs hold this file); the test only points it at its own server and upstream.
DOCUMENTED = (Path(__file__).parent / "nginx-auth-request.conf").read_text()
SESSION_LOCATIONS = """
location /session/ {
    auth_request /_verify_cookie;
    auth_request_set $auth_subject $upstream_http_x_auth_subject;
    proxy_set_header X-Auth-Subject $auth_subject;
    proxy_pass http://backend;
}
location = /_verify_cookie {
    internal;
    proxy_pass http://127.0.0.1:8080/identity/auth/verify?cookie=session&audience=web;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
}
"""


def locations(upstream: int, verifier: int) -> str:
    text = DOCUMENTED + SESSION_LOCATIONS
    assert f"/{NAMESPACE}/{NAME}/verify" in text
    return text.replace("http://backend", f"http://127.0.0.1:{upstream}").replace(
        "127.0.0.1:8080", f"127.0.0.1:{verifier}"
    )


class Upstream:
    """An aiohttp app that echoes the raw headers it received and counts its requests."""

    def __init__(self) -> None:
        self.hits = 0
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.echo)

    async def echo(self, request: web.Request) -> web.Response:
        self.hits += 1
        raw = [
            [name.decode("latin-1"), value.decode("latin-1")] for name, value in request.raw_headers
        ]
        return web.json_response({"path": request.path_qs, "headers": raw})


class Gateway:
    def __init__(self, base: str, session: aiohttp.ClientSession, upstream: Upstream) -> None:
        self.base = base
        self.session = session
        self.upstream = upstream

    async def get(
        self, jwt: str | None = None, path: str = "/api/items", **headers: str
    ) -> tuple[int, dict[str, str], Any]:
        sent = {name.replace("_", "-"): value for name, value in headers.items()}
        if jwt is not None:
            sent["Authorization"] = f"Bearer {jwt}"
        async with self.session.get(self.base + path, headers=sent) as response:
            body = await response.read()
            parsed = json.loads(body) if response.content_type == "application/json" else None
            return response.status, dict(response.headers), parsed


def received(echo: Any, name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    assert NGINX is not None
    upstream = Upstream()
    runner = web.AppRunner(upstream.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream_port = runner.addresses[0][1]
    keysets = {(NAMESPACE, NAME): configmap_data([KEY], POLICY)}
    try:
        async with running_server(keysets) as (server, _):
            config = locations(upstream_port, server.port)
            with running_nginx(NGINX, tmp_path, config) as port:
                async with aiohttp.ClientSession() as session:
                    yield Gateway(f"http://127.0.0.1:{port}", session, upstream)
    finally:
        await runner.cleanup()


async def test_a_valid_token_reaches_the_upstream_with_identity_headers(gateway: Gateway) -> None:
    jwt = token(KEY, live_claims(email="alice@example.com"))
    status, _, echo = await gateway.get(jwt)
    assert status == 200, echo
    assert echo["path"] == "/api/items"
    assert received(echo, "X-Auth-Subject") == ["alice"]
    assert received(echo, "X-Auth-Kid") == [KEY.kid]
    assert received(echo, "X-Auth-Email") == ["alice@example.com"]
    assert received(echo, "X-Auth-Issuer") == [live_claims()["iss"]]


async def test_forged_identity_headers_from_the_client_are_replaced(gateway: Gateway) -> None:
    jwt = token(KEY, live_claims(sub="alice"))
    status, _, echo = await gateway.get(
        jwt, X_Auth_Subject="admin", X_Auth_Email="root@example.com"
    )
    assert status == 200
    assert received(echo, "X-Auth-Subject") == ["alice"]
    assert received(echo, "X-Auth-Email") == []  # claim absent: header removed, not passed on


async def test_utf8_identities_reach_the_upstream_intact(gateway: Gateway) -> None:
    status, _, echo = await gateway.get(token(KEY, live_claims(sub="Zoë")))
    assert status == 200
    [value] = received(echo, "X-Auth-Subject")
    assert value.encode("latin-1").decode("utf-8") == "Zoë"


async def test_expired_forged_and_unsigned_tokens_get_401_from_nginx(gateway: Gateway) -> None:
    other = material("RS256", 1)
    unsigned = f"{segment({'alg': 'none', 'kid': KEY.kid})}.{segment(live_claims())}."
    rejected = {
        "expired": token(KEY, live_claims(exp=1_000_000)),
        "forged": token(other, live_claims(), kid=KEY.kid),
        "alg none": unsigned,
        "hmac confusion": f"{segment({'alg': 'HS256', 'kid': KEY.kid})}."
        f"{segment(live_claims())}.{b64(b'x' * 32)}",
        "wrong audience": token(KEY, live_claims(aud="billing")),
        "crlf in sub": token(KEY, live_claims(sub="alice\r\nX-Admin: 1")),
    }
    for what, jwt in rejected.items():
        status, headers, _ = await gateway.get(jwt)
        assert status == 401, what
        assert headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"'), what
    status, headers, _ = await gateway.get(None)
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert gateway.upstream.hits == 0


async def test_a_malformed_header_never_reaches_the_upstream(gateway: Gateway) -> None:
    """Our 400 is turned into a 500 by auth_request (it passes only 2xx, 401 and 403)."""
    status, _, _ = await gateway.get(None, Authorization="Bearer a b")
    assert status == 500
    assert gateway.upstream.hits == 0


async def test_a_session_cookie_can_carry_the_token(gateway: Gateway) -> None:
    jwt = token(KEY, live_claims(sub="carol", aud="web"))
    status, _, echo = await gateway.get(None, path="/session/home", Cookie=f"session={jwt}")
    assert status == 200
    assert received(echo, "X-Auth-Subject") == ["carol"]
    status, _, _ = await gateway.get(None, path="/session/home", Cookie="session=nope")
    assert status == 401
