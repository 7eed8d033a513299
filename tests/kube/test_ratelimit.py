"""The client-side rate limit: a token bucket whose turns are handed out in call order."""

import asyncio
from collections.abc import AsyncIterator

import aiohttp.web
import pytest

from jwks_operator.kube.client import Endpoint, KubeClient
from jwks_operator.kube.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_turn_per_token() -> None:
    clock = Clock()
    limiter = RateLimiter(10, 3, clock=clock)
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    waits = [limiter.reserve() for _ in range(3)]  # then a tenth of a second apart, in order
    assert waits == pytest.approx([0.1, 0.2, 0.3])
    clock.now += 10  # a quiet while refills the bucket, never beyond the burst
    assert [limiter.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.0])
    assert limiter.reserve() == pytest.approx(0.1)


def test_zero_means_no_limit() -> None:
    limiter = RateLimiter(0, 1)
    assert {limiter.reserve() for _ in range(1000)} == {0.0}
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(5, 0)


@pytest.fixture
async def api() -> AsyncIterator[str]:
    async def answer(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"kind": "ConfigMap"})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_every_request_of_the_client_takes_a_turn(api: str) -> None:
    async def provider(refresh: bool) -> Endpoint:
        return Endpoint(server=api)

    client = KubeClient(provider, qps=20, burst=2)
    client.limiter = RateLimiter(20, 2, clock=Clock())  # frozen: the turns are exact
    try:
        await asyncio.gather(*(client.get("/api/v1/namespaces/d/configmaps/x") for _ in range(6)))
    finally:
        await client.close()
    assert client.requests == 6
    # Two went at once; the other four waited their turns: 0.05 + 0.10 + 0.15 + 0.20 s.
    assert client.limiter.waited == pytest.approx(0.5)


def test_the_documented_defaults_are_the_codes() -> None:
    """One source of truth: the help text and the docs quote the constants."""
    from pathlib import Path

    from jwks_operator.kube.client import DEFAULT_BURST, DEFAULT_QPS

    root = Path(__file__).resolve().parents[2]
    assert f"defaults {DEFAULT_QPS:g}/{DEFAULT_BURST}" in (root / "docs/server.md").read_text()
    operator_doc = (root / "docs/operator.md").read_text()
    assert f"default {DEFAULT_QPS:g} per second, bursts of {DEFAULT_BURST}" in operator_doc
