"""The operator's API client under an overloaded API server: 429 and Retry-After.

A real aiohttp server plays the API server, so the client's real HTTP path is what runs.
(The real kube-apiserver's priority and fairness 429s are in tests/e2e_cluster.)
"""

import time
from collections.abc import AsyncIterator

import aiohttp.web
import pytest

from jwks_operator.kube.client import (
    RETRY_ATTEMPTS,
    Endpoint,
    KubeApiError,
    KubeClient,
    retry_delay,
)


def test_retry_delay_follows_the_servers_request_with_jitter() -> None:
    assert retry_delay(429, {"Retry-After": "2"}, 0) is not None
    for _ in range(50):
        delay = retry_delay(429, {"Retry-After": "2"}, 0)
        assert delay is not None and 2.0 <= delay <= 2.5
    assert retry_delay(429, {"Retry-After": "3600"}, 0) == pytest.approx(10.0, rel=0.25)
    assert retry_delay(429, {}, 0) is not None  # no header: exponential default
    assert retry_delay(503, {"Retry-After": "1"}, 0) is not None
    assert retry_delay(500, {}, 0) is None  # a 5xx without Retry-After is final
    assert retry_delay(409, {"Retry-After": "1"}, 0) is None
    assert retry_delay(429, {"Retry-After": "1"}, RETRY_ATTEMPTS - 1) is None  # give up


class FakeApi:
    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.answers = answers
        self.times: list[float] = []

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.times.append(time.monotonic())
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        body = '{"kind":"ConfigMap"}' if status == 200 else '{"reason":"TooManyRequests"}'
        return aiohttp.web.Response(
            status=status, text=body, headers=headers, content_type="application/json"
        )


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    runners: list[aiohttp.web.AppRunner] = []

    async def start(api: FakeApi) -> KubeClient:
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", api.handle)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]

        async def provider(refresh: bool) -> Endpoint:
            return Endpoint(server=f"http://127.0.0.1:{port}")

        return KubeClient(provider)

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_a_429_is_retried_after_its_retry_after(serve) -> None:  # type: ignore[no-untyped-def]
    api = FakeApi([(429, {"Retry-After": "1"}), (429, {"Retry-After": "1"})])
    client = await serve(api)
    try:
        assert await client.get("/api/v1/namespaces/a/configmaps/b") == {"kind": "ConfigMap"}
    finally:
        await client.close()
    assert len(api.times) == 3
    gaps = [b - a for a, b in zip(api.times, api.times[1:], strict=False)]
    assert all(1.0 <= gap < 2.0 for gap in gaps), gaps


async def test_a_5xx_without_retry_after_is_not_retried(serve) -> None:  # type: ignore[no-untyped-def]
    api = FakeApi([(500, {})])
    client = await serve(api)
    try:
        with pytest.raises(KubeApiError) as raised:
            await client.merge_patch("/api/v1/namespaces/a/configmaps/b", {"data": {}})
    finally:
        await client.close()
    assert raised.value.status == 500 and len(api.times) == 1


async def test_a_server_that_keeps_refusing_is_given_up_on(serve) -> None:  # type: ignore[no-untyped-def]
    api = FakeApi([(429, {"Retry-After": "0"})] * RETRY_ATTEMPTS)
    client = await serve(api)
    try:
        with pytest.raises(KubeApiError) as raised:
            await client.get("/api/v1/namespaces/a/configmaps/b")
    finally:
        await client.close()
    assert raised.value.status == 429 and len(api.times) == RETRY_ATTEMPTS


async def test_a_refusal_in_a_terminating_namespace_is_told_apart_from_rbac(serve) -> None:  # type: ignore[no-untyped-def]
    """What kube-apiserver's NamespaceLifecycle answers (seen in tests/e2e_cluster): a 403
    whose cause says the namespace is being deleted, recognisable even for a Secret write,
    whose message is withheld."""

    class Terminating(FakeApi):
        async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
            self.times.append(time.monotonic())
            body = {
                "kind": "Status",
                "status": "Failure",
                "reason": "Forbidden",
                "code": 403,
                "message": 'secrets "x" is forbidden: unable to create new content in '
                "namespace doomed because it is being terminated",
                "details": {
                    "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]
                },
            }
            return aiohttp.web.json_response(body, status=403)

    client = await serve(Terminating([]))
    plain = await serve(FakeApi([(403, {})]))  # a 403 without that cause: RBAC
    try:
        with pytest.raises(KubeApiError) as raised:
            await client.create("/api/v1/namespaces/doomed/secrets", {"kind": "Secret"})
        with pytest.raises(KubeApiError) as rbac:
            await plain.get("/api/v1/namespaces/doomed/secrets/x")
    finally:
        await client.close()
        await plain.close()
    assert raised.value.namespace_terminating
    assert "terminated" not in raised.value.message  # a Secret write: the message is withheld
    assert not rbac.value.namespace_terminating
