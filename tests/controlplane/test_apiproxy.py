"""The counting proxy of the scale bench, against a tiny fake API server on loopback.

The bench's figures (writes, per-keyset GETs/LISTs, 409s, Events lost, the peak rate) are
only as true as the proxy's records, and a proxy that buffered a watch would stall the
operator it measures: both are checked here, in about a second, without a control plane.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.controlplane.apiproxy import CountingProxy, Request, classify, peak_rate, tally


class FakeApi:
    """Answers a named GET, a LIST, a watch that streams one event per ``release``, a 409."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.query.get("watch") == "1":
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b'{"type":"ADDED"}\n')
            await self.release.wait()  # the client must see the first event before this
            await response.write(b'{"type":"MODIFIED"}\n')
            await response.write_eof()
            return response
        if request.method == "POST" and request.path.endswith("/events"):
            return web.json_response({"kind": "Status", "code": 409}, status=409)
        body = await request.read()
        return web.json_response({"path": request.path_qs, "body": body.decode()})


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[str, list[Request], FakeApi]]:
    fake = FakeApi()
    upstream = web.ServerRunner(web.Server(fake.handle))
    await upstream.setup()
    site = web.TCPSite(upstream, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    records: list[Request] = []
    proxy = CountingProxy(f"http://127.0.0.1:{port}", None, records.append)
    proxy_port = await proxy.start()
    try:
        yield f"http://127.0.0.1:{proxy_port}", records, fake
    finally:
        fake.release.set()
        await proxy.stop()
        await upstream.cleanup()


async def test_records_each_call_and_streams_a_watch(
    proxied: tuple[str, list[Request], FakeApi],
) -> None:
    base, records, fake = proxied
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{base}/api/v1/namespaces/ns/secrets/s1") as answer:
            assert (await answer.json())["path"] == "/api/v1/namespaces/ns/secrets/s1"
        async with client.get(f"{base}/api/v1/namespaces/ns/configmaps?labelSelector=a%3Db"):
            pass
        patch = f"{base}/apis/jwks.dev/v1alpha1/namespaces/ns/jwkskeysets/k/status"
        async with client.patch(patch, data=b'{"status":{}}') as answer:
            assert (await answer.json())["body"] == '{"status":{}}'
        async with client.post(f"{base}/api/v1/namespaces/ns/events", json={}) as answer:
            assert answer.status == 409
        async with client.get(f"{base}/apis/jwks.dev/v1alpha1/jwkskeysets?watch=1") as watch:
            first = await asyncio.wait_for(watch.content.readline(), timeout=5)
            assert first == b'{"type":"ADDED"}\n'
            fake.release.set()
            assert await watch.content.readline() == b'{"type":"MODIFIED"}\n'

    kinds = [(r.kind, r.resource, r.status) for r in records]
    assert kinds == [
        ("get", "secrets", 200),
        ("list", "configmaps", 200),
        ("patch", "jwkskeysets", 200),
        ("create", "events", 409),
        ("watch", "jwkskeysets", 200),
    ]
    figures = tally(records, keysets=2)
    assert figures["requests"] == 4  # the watch is not a call
    assert figures["watches_opened"] == 1
    assert figures["writes"] == 1  # the status patch; Events are counted apart
    assert (figures["events_posted"], figures["events_lost"]) == (0, 1)
    assert figures["status_409"] == 0  # the Event's 409 is an Event lost, not a write conflict
    assert (figures["gets_per_keyset"], figures["lists_per_keyset"]) == (0.5, 0.5)
    assert figures["by_call"]["patch jwkskeysets/status"] == 1


def test_classify_paths() -> None:
    assert classify("GET", "/api/v1/namespaces/ns", {}) == ("get", "namespaces", "", "ns", "")
    assert classify("GET", "/apis/jwks.dev/v1alpha1/jwkskeysets", {"watch": "true"}) == (
        "watch",
        "jwkskeysets",
        "",
        "",
        "",
    )
    assert classify("PUT", "/api/v1/namespaces/a/secrets/s", {}) == (
        "update",
        "secrets",
        "a",
        "s",
        "",
    )
    assert classify("GET", "/apis", {})[0] == "other"
    assert classify("GET", "/version", {})[0] == "other"


def test_peak_rate_counts_calls_per_second_not_watches() -> None:
    def at(moment: float, kind: str = "get") -> Request:
        return Request(moment, "GET", kind, "secrets", "ns", "s", "", 200, 0.001)

    records = [at(10.1), at(10.9), at(11.0), at(10.5, "watch"), at(12.2), at(12.3), at(12.9)]
    assert peak_rate(records) == 3
