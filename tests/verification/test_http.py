"""``/{ns}/{name}/verify`` over real HTTP, through the JWKS server's own protocol code."""

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from jwks_operator.server.snapshot import SnapshotStore
from tests.verification.helpers import b64, material, policy_json, segment, token
from tests.verification.live import NAME, NAMESPACE, configmap_data, live_claims, running_server

KEY = material("ES256")
RETIRED = material("ES256", 1)
REVOKED = material("ES256", 2)
POLICY = policy_json("ES256", claimHeaders={"email": "X-Auth-Email"})


class Live:
    def __init__(self, base: str, session: aiohttp.ClientSession, store: SnapshotStore) -> None:
        self.base = base
        self.session = session
        self.store = store
        self.raw: tuple[tuple[bytes, bytes], ...] = ()

    async def verify(
        self,
        jwt: str | None = None,
        method: str = "GET",
        query: str = "",
        path: str = "",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        sent = dict(headers or {})
        if jwt is not None:
            sent["Authorization"] = f"Bearer {jwt}"
        url = f"{self.base}{path or f'/{NAMESPACE}/{NAME}/verify'}{'?' + query if query else ''}"
        async with self.session.request(method, url, headers=sent) as response:
            self.raw = response.raw_headers
            return response.status, response.headers, await response.read()

    def publish(self, data: dict[str, str]) -> None:
        """What the watch does when the operator rewrites the ConfigMap."""
        self.store.apply(NAMESPACE, NAME, data, {})


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    keysets = {(NAMESPACE, NAME): configmap_data([KEY, RETIRED, REVOKED], POLICY)}
    async with running_server(keysets) as (server, store), aiohttp.ClientSession() as session:
        yield Live(f"http://127.0.0.1:{server.port}", session, store)


async def test_a_valid_token_is_200_with_identity_headers(live: Live) -> None:
    status, headers, body = await live.verify(token(KEY, live_claims(email="a@example.com")))
    assert status == 200 and body == b""
    assert headers["X-Auth-Subject"] == "alice"
    assert headers["X-Auth-Kid"] == KEY.kid
    assert headers["X-Auth-Email"] == "a@example.com"
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_any_method_is_verified(live: Live, method: str) -> None:
    assert (await live.verify(token(KEY, live_claims()), method))[0] == 200
    status, headers, _ = await live.verify(token(KEY, live_claims(exp=1)), method)
    assert status == 401 and "invalid_token" in headers["WWW-Authenticate"]


async def test_refusals_have_the_documented_statuses(live: Live) -> None:
    status, headers, body = await live.verify(token(KEY, live_claims(exp=1000)))
    assert status == 401
    assert headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="token expired"'
    )
    assert json.loads(body)["reason"] == "expired"
    status, headers, _ = await live.verify()
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    status, _, body = await live.verify(headers={"Authorization": "Bearer a b"})
    assert status == 400 and json.loads(body)["error"] == "invalid_request"
    status, _, body = await live.verify(token(KEY, live_claims()), query="leeway=forever")
    assert status == 400 and json.loads(body)["reason"] == "bad_override"


async def test_an_unknown_keyset_is_404(live: Live) -> None:
    status, _, body = await live.verify(token(KEY, live_claims()), path=f"/{NAMESPACE}/nope/verify")
    assert status == 404 and json.loads(body)["error"] == "not_found"


async def test_hostile_tokens_are_4xx_never_5xx(live: Live) -> None:
    header = {"alg": "none", "kid": KEY.kid}
    hostile = [
        f"{segment(header)}.{segment(live_claims())}.",
        "a" * 9000,
        token(KEY, live_claims(), kid="../../etc/passwd"),
        token(KEY, live_claims(sub="alice\r\nX-Admin: true")),
        token(KEY, b"[" * 2500 + b"]" * 2500),
        "x.y.z",
        b64(b"\xff" * 30) + ".." + b64(b"\x00"),
    ]
    for jwt in hostile:
        status, headers, _ = await live.verify(jwt)
        assert 400 <= status < 500, jwt[:40]
        assert "X-Admin" not in headers


async def test_a_claim_with_crlf_cannot_inject_a_header(live: Live) -> None:
    jwt = token(KEY, live_claims(email="a@example.com\r\nX-Admin: true"))
    status, headers, body = await live.verify(jwt)
    assert status == 401 and "X-Admin" not in headers
    assert json.loads(body)["reason"] == "unrepresentable_claim"


async def test_revocation_takes_effect_with_the_snapshot_swap(live: Live) -> None:
    retired_token = token(RETIRED, live_claims())
    revoked_token = token(REVOKED, live_claims())
    assert (await live.verify(revoked_token))[0] == 200
    # The operator publishes a JWKS without the revoked key; the retired one stays.
    live.publish(configmap_data([KEY, RETIRED], POLICY))
    status, _, body = await live.verify(revoked_token)
    assert status == 401 and json.loads(body)["reason"] == "unknown_kid"
    assert (await live.verify(retired_token))[0] == 200
    # The retired key leaves the JWKS too: its tokens stop verifying.
    live.publish(configmap_data([KEY], POLICY))
    assert (await live.verify(retired_token))[0] == 401
    assert (await live.verify(token(KEY, live_claims())))[0] == 200


async def test_a_policy_change_applies_with_the_snapshot_swap(live: Live) -> None:
    jwt = token(KEY, live_claims(aud="billing"))
    assert (await live.verify(jwt))[0] == 401
    live.publish(configmap_data([KEY], policy_json("ES256", audiences=["billing"])))
    assert (await live.verify(jwt))[0] == 200


async def test_a_broken_policy_is_503_and_the_jwks_is_still_served(live: Live) -> None:
    live.publish(configmap_data([KEY], policy_json("HS256")))
    status, _, body = await live.verify(token(KEY, live_claims()))
    assert status == 503
    assert "HS256" in json.loads(body)["error_description"]
    jwks_status, _, jwks_body = await live.verify(path=f"/{NAMESPACE}/{NAME}/.well-known/jwks.json")
    assert jwks_status == 200 and KEY.kid in jwks_body.decode()


async def test_verifications_appear_in_metrics(live: Live) -> None:
    await live.verify(token(KEY, live_claims()))
    await live.verify(token(KEY, live_claims(exp=1000)))
    async with live.session.get(f"{live.base}/metrics") as response:
        text = await response.text()
    # prometheus_client writes labels in name order
    assert 'jwks_verifications_total{reason="ok",result="valid"}' in text
    assert 'jwks_verifications_total{reason="expired",result="invalid_token"}' in text


async def test_utf8_identities_arrive_as_utf8(live: Live) -> None:
    status, _, _ = await live.verify(token(KEY, live_claims(sub="Zoë 山田")))
    assert status == 200
    raw = dict(live.raw)
    assert raw[b"X-Auth-Subject"].decode("utf-8") == "Zoë 山田"


async def test_envoy_style_paths_verify_with_the_keyset_policy_only(live: Live) -> None:
    """Envoy appends the client's path and query to path_prefix: the tail is not decoded and
    the query, being the client's, must not loosen the policy."""
    base = f"/{NAMESPACE}/{NAME}/verify"
    good = token(KEY, live_claims())
    for tail in ("/", "/api/items", "/a%2Fb/%zz/..%2e/", "/x?y"):
        status, _, _ = await live.verify(good, path=base + tail)
        assert status == 200, tail
    elsewhere = token(KEY, live_claims(aud="evil"))
    assert (await live.verify(elsewhere, query="audience=evil"))[0] == 200  # gateway URL
    status, _, body = await live.verify(elsewhere, path=base + "/api", query="audience=evil")
    assert status == 401 and json.loads(body)["reason"] == "wrong_audience"
    status, _, _ = await live.verify(good, path=f"/{NAMESPACE}/no-such/verify/api")
    assert status == 404
