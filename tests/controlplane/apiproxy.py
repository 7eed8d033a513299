"""A counting reverse proxy in front of the control plane's API server.

Test and bench tooling, not product code. A client under measurement (the operator) gets a
kubeconfig naming ``http://127.0.0.1:PORT`` with no credentials; the proxy forwards every
request to the real kube-apiserver over TLS with the proxy's own credentials (a client
certificate, or a bearer token such as a ServiceAccount's, so that API Priority and
Fairness classifies the requests as it would the client's own), streams
each response through as it arrives (a watch is one long chunked response: buffering it
would stall the client) and records one ``Request`` per request when the answer's status
is known. The records say what the client asked of the API, in the API's own terms (verb,
resource, get/list/watch), which a client's logs cannot be trusted to say.

Run as a process (so that its own CPU does not slow the measuring harness, and the other
way round)::

    python -m tests.controlplane.apiproxy --upstream URL --ca CA \
        (--cert CRT --key KEY | --token-file FILE) --log requests.jsonl [--port 0]

It prints ``listening on PORT`` once it accepts, and appends one JSON line per request to
the log (line-buffered, so a reader sees each request at once). ``RequestLog`` tails that
file; ``tally`` and ``peak_rate`` turn records into the figures a bench reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import ssl
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp
from aiohttp import web
from yarl import URL

WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that belong to one connection (RFC 9110 7.6.1), never forwarded."""
KINDS: Final = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Request:
    """One request the client made, as the API server understood it."""

    at: float
    """Wall-clock time the request arrived at the proxy."""
    method: str
    kind: str
    """get (one named object), list, watch, create, update, patch, delete, or other
    (discovery: /api, /apis, /version, health checks)."""
    resource: str
    """The plural (secrets, configmaps, jwkskeysets, events...); "" for discovery."""
    namespace: str
    name: str
    subresource: str
    status: int
    """The API server's status code; 502 when it could not be reached."""
    seconds: float
    """Time until the response's headers (for a watch: until the stream opened)."""

    @property
    def is_watch(self) -> bool:
        return self.kind == "watch"

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS

    def line(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_line(cls, text: str) -> Request:
        return cls(**json.loads(text))


def classify(method: str, path: str, query: Mapping[str, str]) -> tuple[str, str, str, str, str]:
    """(kind, resource, namespace, name, subresource) of an API request path.

    ``/api/v1/namespaces/ns/secrets/name``, ``/apis/group/version/namespaces/ns/plural/name/
    status``, ``/apis/group/version/plural`` (all namespaces), ``/api/v1/namespaces/ns``
    (the namespace object itself).
    """
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 3:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        rest = parts[3:]
    else:
        return "other", "", "", "", ""
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = "/".join(rest[2:])
    if method == "GET":
        if name:
            kind = "get"
        elif query.get("watch") in ("1", "true", "True"):
            kind = "watch"
        else:
            kind = "list"
    else:
        kind = KINDS.get(method, "other")
    return kind, resource, namespace, name, subresource


class CountingProxy:
    """Forward everything to ``upstream``; call ``record`` once per request."""

    def __init__(
        self,
        upstream: str,
        ssl_context: ssl.SSLContext | None,
        record: Callable[[Request], None],
        token: str | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.authorization = [("Authorization", f"Bearer {token}")] if token else []
        self.ssl_context = ssl_context
        self.record = record
        self._runner: web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_context or False, limit=0),
            # No read timeout: a watch stays open for minutes. The client times its calls.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=15),
            # Bytes pass through as the server sent them (gzip included), and only the
            # headers the client sent are forwarded.
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
        # handler_cancellation: when the client drops a watch, the upstream stream closes.
        server = web.Server(self._handle, handler_cancellation=True)
        self._runner = web.ServerRunner(server)
        await self._runner.setup()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        await web.SockSite(self._runner, listener).start()
        return int(listener.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        arrived = time.time()
        started = time.monotonic()
        kind, resource, namespace, name, subresource = classify(
            request.method, request.path, request.query
        )

        def record(status: int) -> None:
            self.record(
                Request(
                    at=arrived,
                    method=request.method,
                    kind=kind,
                    resource=resource,
                    namespace=namespace,
                    name=name,
                    subresource=subresource,
                    status=status,
                    seconds=round(time.monotonic() - started, 6),
                )
            )

        assert self._session is not None, "start() first"
        body = await request.read()
        headers = [
            (key, value)
            for key, value in request.headers.items()
            if key.lower() not in HOP_BY_HOP
            and key.lower() not in ("host", "content-length", "authorization")
        ] + self.authorization
        try:
            async with self._session.request(
                request.method,
                URL(self.upstream + request.raw_path, encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as answer:
                record(answer.status)
                response = web.StreamResponse(status=answer.status, reason=answer.reason)
                for key, value in answer.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        response.headers.add(key, value)
                await response.prepare(request)
                with contextlib.suppress(ConnectionResetError):
                    async for chunk in answer.content.iter_any():
                        await response.write(chunk)
                    await response.write_eof()
                return response
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            record(502)
            return web.json_response(
                {"kind": "Status", "status": "Failure", "message": f"proxy: {error}", "code": 502},
                status=502,
            )


class RequestLog:
    """Tail of a proxy's log file: every record so far, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[Request] = []
        self._offset = 0
        self._partial = ""

    def poll(self) -> list[Request]:
        """Read what was appended since the last call; return the new records."""
        if not self.path.exists():
            return []
        with self.path.open("r", encoding="utf-8") as stream:
            stream.seek(self._offset)
            text = stream.read()
            self._offset = stream.tell()
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()
        new = [Request.from_line(line) for line in lines if line]
        self.records.extend(new)
        return new

    def between(self, start: float, end: float = float("inf")) -> list[Request]:
        self.poll()
        return [r for r in self.records if start <= r.at < end]


def peak_rate(records: Iterable[Request]) -> int:
    """The most non-watch requests that arrived within one wall-clock second."""
    buckets = Counter(int(r.at) for r in records if not r.is_watch)
    return max(buckets.values(), default=0)


def tally(records: Iterable[Request], keysets: int = 0) -> dict[str, Any]:
    """The figures of a span of requests: counts by kind and resource, errors, Events.

    ``per_keyset`` divides the reads of the keysets' own objects (named GETs, LISTs) by
    ``keysets``: what grows with the fleet.
    """
    records = list(records)
    calls = [r for r in records if not r.is_watch]
    by_kind = Counter(r.kind for r in calls)
    by_call = Counter(
        f"{r.kind} {r.resource}{'/' + r.subresource if r.subresource else ''}".strip()
        for r in calls
    )
    events = [r for r in calls if r.resource == "events" and r.method == "POST"]
    latencies = [r.seconds for r in calls]
    result: dict[str, Any] = {
        "requests": len(calls),
        "watches_opened": sum(1 for r in records if r.is_watch),
        "writes": sum(1 for r in calls if r.is_write and r.resource != "events"),
        "gets": by_kind["get"],
        "lists": by_kind["list"],
        "status_409": sum(1 for r in calls if r.status == 409 and r.resource != "events"),
        "status_429": sum(1 for r in records if r.status == 429),
        "status_5xx": sum(1 for r in records if r.status >= 500),
        "events_posted": sum(1 for r in events if 200 <= r.status < 300),
        "events_lost": sum(1 for r in events if not 200 <= r.status < 300),
        "peak_per_s": peak_rate(calls),
        "median_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "by_call": dict(sorted(by_call.items())),
    }
    if keysets:
        result["gets_per_keyset"] = round(by_kind["get"] / keysets, 2)
        result["lists_per_keyset"] = round(by_kind["list"] / keysets, 2)
        result["requests_per_keyset"] = round(len(calls) / keysets, 2)
        result["writes_per_keyset"] = round(result["writes"] / keysets, 2)
    return result


def _client_context(ca: Path, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def _serve(args: argparse.Namespace, log: TextIO) -> None:
    def record(request: Request) -> None:
        log.write(request.line() + "\n")

    context = _client_context(args.ca, args.cert, args.key) if args.ca else None
    token = args.token_file.read_text().strip() if args.token_file else None
    proxy = CountingProxy(args.upstream, context, record, token)
    port = await proxy.start(port=args.port)
    print(f"listening on {port}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await proxy.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.controlplane.apiproxy")
    parser.add_argument("--upstream", required=True, help="https://127.0.0.1:PORT")
    parser.add_argument("--ca", type=Path, help="the API server's CA (omit for plain HTTP)")
    parser.add_argument("--cert", type=Path, help="client certificate to present upstream")
    parser.add_argument("--key", type=Path, help="its private key")
    parser.add_argument("--token-file", type=Path, help="a bearer token to present upstream")
    parser.add_argument("--port", type=int, default=0, help="listen port (default: any)")
    parser.add_argument("--log", type=Path, required=True, help="append one JSON line a request")
    args = parser.parse_args(argv)
    with args.log.open("a", encoding="utf-8", buffering=1) as log:
        asyncio.run(_serve(args, log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
