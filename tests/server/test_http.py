"""Every line of the HTTP behaviour list of the server issue, over real sockets.

The server runs in the test's event loop on a free port; requests are raw bytes, so that
the exact headers (and their absence) are what is asserted.
"""

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jwks_operator.core.contract import NEXT_CHANGE_ANNOTATION
from jwks_operator.core.timefmt import format_time
from jwks_operator.server.connections import Limits
from jwks_operator.server.runner import JwksServer
from jwks_operator.server.snapshot import KeySetEntry, SnapshotStore
from tests.server.conftest import MakeServer
from tests.server.support import (
    RawResponse,
    assert_no_private_material,
    configmap_data,
    exchange,
    jwks_text,
    private_members,
    public_jwk,
    read_response,
    request,
    rest_after_close,
)

JWKS_PATH = "/identity/auth/.well-known/jwks.json"
OPENID_PATH = "/identity/auth/.well-known/openid-configuration"
ISSUER = "https://auth.example.com/identity/auth"


def ready_store(
    jwk: Mapping[str, str], *, issuer: str | None = ISSUER, **annotations: str
) -> SnapshotStore:
    store = SnapshotStore()
    store.apply("identity", "auth", configmap_data(jwk, issuer=issuer), annotations)
    store.mark_ready()
    return store


@pytest.fixture
async def server(make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey) -> JwksServer:
    return await make_server(
        ready_store(public_jwk(ec_private)), default_keyset=("identity", "auth")
    )


def assert_error(answer: RawResponse, status: int, code: str) -> None:
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json()["error"] == code
    assert "location" not in answer.headers


# -- GET: the document and its headers ------------------------------------------------


async def test_get_jwks_headers(server: JwksServer, ec_private: ec.EllipticCurvePrivateKey) -> None:
    answer = await request(server.port, "GET", JWKS_PATH)
    assert answer.status == 200
    assert answer.json() == {"keys": [public_jwk(ec_private)]}
    headers = answer.headers
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "public, max-age=300"
    assert headers["etag"].startswith('"') and not headers["etag"].startswith("W/")
    assert parsedate_to_datetime(headers["last-modified"]).tzinfo is not None
    assert headers["access-control-allow-origin"] == "*"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["vary"] == "Accept, Accept-Encoding"
    assert int(headers["content-length"]) == len(answer.body)
    assert abs(parsedate_to_datetime(headers["date"]).timestamp() - time.time()) < 5
    assert "content-encoding" not in headers


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/jwk-set+json", "application/jwk-set+json"),
        ("application/jwk-set+json; charset=utf-8", "application/jwk-set+json"),
        ("application/jwk-set+json, application/json;q=0.5", "application/jwk-set+json"),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        ("application/json, application/jwk-set+json;q=0.5", "application/json"),
        ("application/jwk-set+json;q=0", "application/json"),
        ("text/html", "application/json"),
    ],
)
async def test_content_type_negotiation(server: JwksServer, accept: str, content_type: str) -> None:
    answer = await request(server.port, "GET", JWKS_PATH, {"Accept": accept})
    assert answer.status == 200
    assert answer.headers["content-type"] == content_type


async def test_max_age_is_capped_by_the_next_change(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=125)
    overdue = datetime.now(UTC) - timedelta(seconds=30)
    store = ready_store(public_jwk(ec_private), **{NEXT_CHANGE_ANNOTATION: format_time(soon)})
    store.apply(
        "identity",
        "late",
        configmap_data(public_jwk(ec_private)),
        {NEXT_CHANGE_ANNOTATION: format_time(overdue)},
    )
    server = await make_server(store, max_age=300)
    answer = await request(server.port, "GET", JWKS_PATH)
    max_age = int(answer.headers["cache-control"].removeprefix("public, max-age="))
    assert 115 <= max_age <= 125
    late = await request(server.port, "GET", "/identity/late/.well-known/jwks.json")
    assert late.headers["cache-control"] == "public, max-age=60"


async def test_configured_max_age(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    server = await make_server(ready_store(public_jwk(ec_private)), max_age=3600)
    answer = await request(server.port, "GET", JWKS_PATH)
    assert answer.headers["cache-control"] == "public, max-age=3600"


# -- conditional requests, HEAD, gzip, OPTIONS -------------------------------------------


async def test_if_none_match_gives_304_without_body(server: JwksServer) -> None:
    first = await request(server.port, "GET", JWKS_PATH)
    etag = first.headers["etag"]
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        answer = await request(server.port, "GET", JWKS_PATH, {"If-None-Match": value})
        assert answer.status == 304, value
        assert answer.body == b""
        assert "content-length" not in answer.headers
        assert answer.headers["etag"] == etag
        assert answer.headers["cache-control"] == first.headers["cache-control"]
        assert answer.headers["vary"] == "Accept, Accept-Encoding"
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "content-type" not in answer.headers and "last-modified" not in answer.headers
    stale = await request(server.port, "GET", JWKS_PATH, {"If-None-Match": '"stale"'})
    assert stale.status == 200 and stale.body == first.body


async def test_if_none_match_with_the_gzip_etag(server: JwksServer) -> None:
    zipped = await request(server.port, "GET", JWKS_PATH, {"Accept-Encoding": "gzip"})
    etag = zipped.headers["etag"]
    again = await request(
        server.port, "GET", JWKS_PATH, {"Accept-Encoding": "gzip", "If-None-Match": etag}
    )
    assert again.status == 304 and again.headers["etag"] == etag


async def test_if_modified_since(server: JwksServer) -> None:
    first = await request(server.port, "GET", JWKS_PATH)
    same = await request(
        server.port, "GET", JWKS_PATH, {"If-Modified-Since": first.headers["last-modified"]}
    )
    assert same.status == 304 and same.body == b""
    older = formatdate(time.time() - 86400, usegmt=True)
    assert (
        await request(server.port, "GET", JWKS_PATH, {"If-Modified-Since": older})
    ).status == 200
    junk = await request(server.port, "GET", JWKS_PATH, {"If-Modified-Since": "yesterday"})
    assert junk.status == 200


async def test_head_gives_headers_only(server: JwksServer) -> None:
    full = await request(server.port, "GET", JWKS_PATH)
    # Read with a second request behind the HEAD: a stray body would corrupt the second.
    raw = (
        f"HEAD {JWKS_PATH} HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    head = await read_response(reader, head=True)
    after = await read_response(reader)
    writer.close()
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == full.headers["content-length"]
    assert head.headers["etag"] == full.headers["etag"]
    assert after.status == 200 and after.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "accept_encoding", ["gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.8", "*"]
)
async def test_gzip(server: JwksServer, accept_encoding: str) -> None:
    plain = await request(server.port, "GET", JWKS_PATH)
    zipped = await request(server.port, "GET", JWKS_PATH, {"Accept-Encoding": accept_encoding})
    assert zipped.headers["content-encoding"] == "gzip"
    assert gzip.decompress(zipped.body) == plain.body
    assert zipped.headers["etag"] != plain.headers["etag"]
    assert zipped.headers["vary"] == "Accept, Accept-Encoding"


@pytest.mark.parametrize("accept_encoding", ["identity", "gzip;q=0", "deflate", "*, gzip;q=0"])
async def test_no_gzip_when_not_accepted(server: JwksServer, accept_encoding: str) -> None:
    answer = await request(server.port, "GET", JWKS_PATH, {"Accept-Encoding": accept_encoding})
    assert "content-encoding" not in answer.headers
    assert json.loads(answer.body)["keys"]


async def test_options_is_a_cors_preflight(server: JwksServer) -> None:
    answer = await request(
        server.port,
        "OPTIONS",
        JWKS_PATH,
        {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match, x-trace",
        },
    )
    assert answer.status == 204 and answer.body == b""
    headers = answer.headers
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert headers["access-control-allow-headers"] == "if-none-match, x-trace"
    assert int(headers["access-control-max-age"]) > 0
    assert headers["allow"] == "GET, HEAD, OPTIONS"
    assert "content-length" not in headers


async def test_cross_origin_get_is_readable(server: JwksServer) -> None:
    answer = await request(server.port, "GET", JWKS_PATH, {"Origin": "https://app.example"})
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == "*"


# -- discovery and the default keyset ----------------------------------------------------


async def test_openid_configuration_with_an_issuer(server: JwksServer) -> None:
    answer = await request(server.port, "GET", OPENID_PATH)
    assert answer.status == 200
    assert answer.json()["issuer"] == ISSUER
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["vary"] == "Accept-Encoding"
    assert answer.headers["cache-control"].startswith("public, max-age=")
    assert answer.headers["access-control-allow-origin"] == "*"


async def test_openid_configuration_without_an_issuer_is_404(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    server = await make_server(ready_store(public_jwk(ec_private), issuer=None))
    assert (await request(server.port, "GET", JWKS_PATH)).status == 200
    assert_error(await request(server.port, "GET", OPENID_PATH), 404, "not_found")


async def test_default_keyset_routes(server: JwksServer) -> None:
    named = await request(server.port, "GET", JWKS_PATH)
    default = await request(server.port, "GET", "/.well-known/jwks.json")
    assert default.status == 200 and default.body == named.body
    assert default.headers["etag"] == named.headers["etag"]
    discovery = await request(server.port, "GET", "/.well-known/openid-configuration")
    assert discovery.status == 200 and discovery.json()["issuer"] == ISSUER


async def test_without_default_keyset_the_well_known_root_is_404(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    server = await make_server(ready_store(public_jwk(ec_private)))
    answer = await request(server.port, "GET", "/.well-known/jwks.json")
    assert_error(answer, 404, "not_found")
    assert "default" in answer.json()["message"]


# -- errors ----------------------------------------------------------------------------


async def test_unknown_keyset_is_404_json(server: JwksServer) -> None:
    answer = await request(server.port, "GET", "/identity/nope/.well-known/jwks.json")
    assert_error(answer, 404, "not_found")
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["x-content-type-options"] == "nosniff"


async def test_before_the_first_list_unknown_keysets_are_503(make_server: MakeServer) -> None:
    server = await make_server(SnapshotStore())
    answer = await request(server.port, "GET", JWKS_PATH)
    assert_error(answer, 503, "not_ready")
    assert answer.headers["retry-after"] == "1"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT"])
@pytest.mark.parametrize(
    "path", [JWKS_PATH, OPENID_PATH, "/.well-known/jwks.json", "/healthz", "/metrics"]
)
async def test_other_methods_are_405_with_allow(server: JwksServer, method: str, path: str) -> None:
    answer = await request(server.port, method, path)
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == "GET, HEAD, OPTIONS"


async def test_a_keyset_without_keys_is_503_no_store(make_server: MakeServer) -> None:
    store = SnapshotStore()
    store.apply("identity", "auth", {"jwks.json": '{"keys": []}'}, {})
    store.apply("identity", "bare", {}, {})
    store.mark_ready()
    server = await make_server(store)
    for path in (JWKS_PATH, "/identity/bare/.well-known/jwks.json"):
        answer = await request(server.port, "GET", path)
        assert_error(answer, 503, "unavailable")
        assert b'"keys"' not in answer.body
        assert "etag" not in answer.headers


@pytest.mark.parametrize(
    "path",
    [
        "/identity/auth/.well-known/jwks.json/",
        "/identity/auth/.well-known/",
        "/identity/auth",
        "/identity/auth/",
        "//identity/auth/.well-known/jwks.json",
        "/identity//auth/.well-known/jwks.json",
        "/Identity/auth/.well-known/JWKS.json",
        "/.well-known/jwks.json/",
        "/",
        "/healthz/",
    ],
)
async def test_never_a_redirect(server: JwksServer, path: str) -> None:
    answer = await request(server.port, "GET", path)
    assert answer.status == 404
    assert "location" not in answer.headers


# -- hostile input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/identity/../identity/auth/.well-known/jwks.json", 404),
        ("/identity/auth/../auth/.well-known/jwks.json", 404),
        ("/../../etc/passwd", 404),
        ("/identity/%2e%2e/.well-known/jwks.json", 404),
        ("/identity%2Fauth/.well-known/jwks.json", 404),
        ("/identity/auth%2F..%2F/.well-known/jwks.json", 404),
        ("/identity/%252e%252e/.well-known/jwks.json", 404),
        ("/identity/auth%00/.well-known/jwks.json", 404),
        ("/identity/auth/.well-known/jwks.json%00", 404),
        ("/identity/%zz/.well-known/jwks.json", 400),
        ("/identity/auth%/.well-known/jwks.json", 400),
        ("/identity/auth/.well-known/jwks.json?x=../../secret", 200),
    ],
)
async def test_traversal_and_encoding_tricks(server: JwksServer, path: str, status: int) -> None:
    answer = await request(server.port, "GET", path)
    assert answer.status == status
    assert b"Traceback" not in answer.body


async def test_percent_encoded_equivalent_path_is_the_same_resource(server: JwksServer) -> None:
    plain = await request(server.port, "GET", JWKS_PATH)
    encoded = await request(server.port, "GET", "/%69dentity/auth/%2Ewell-known/jwks%2Ejson")
    assert encoded.status == 200 and encoded.body == plain.body


# What aiohttp's parser refuses it answers itself (text/plain); what it accepts and we
# refuse (target length, fragments, request bodies) is our JSON. Either way: one 4xx and a
# closed connection, never a 5xx, never a second response.
OURS = "ours"
PARSER = "parser"


@pytest.mark.parametrize(
    ("raw", "status", "by"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, OURS),
        (b"GET /" + b"a" * 20000, 400, PARSER),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 400, PARSER),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 20000, 400, PARSER),
        (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-H: v\r\n" * 150 + b"\r\n", 400, PARSER),
        (b"GET / HTTP/1.1\r\nHost: t\r\n Folded: v\r\n\r\n", 400, PARSER),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-A : v\r\n\r\n", 400, PARSER),
        (b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400, PARSER),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", 400, PARSER),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, PARSER),
        (b"GET / HTTP/1.1\r\n\r\n", 400, PARSER),
        (b"GET / HTTP/1.1\nHost: t\n\n", 400, PARSER),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, PARSER),
        (b"GET / FTP/1.0\r\n\r\n", 400, PARSER),
        (b"G\xffT / HTTP/1.1\r\nHost: t\r\n\r\n", 400, PARSER),
        (b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n", 400, PARSER),
        (b"GET /\x7f HTTP/1.1\r\nHost: t\r\n\r\n", 400, PARSER),
        (b"GET /a#frag HTTP/1.1\r\nHost: t\r\n\r\n", 400, OURS),
        (b"GET relative HTTP/1.1\r\nHost: t\r\n\r\n", 400, PARSER),
        (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, PARSER),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400, PARSER),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, OURS),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            PARSER,
        ),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400, PARSER),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 1\r\n\r\n", 400, PARSER),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            400,
            PARSER,
        ),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n", 413, OURS),
    ],
)
async def test_malformed_requests_get_one_4xx_and_a_closed_connection(
    server: JwksServer, raw: bytes, status: int, by: str
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    answer = await asyncio.wait_for(read_response(reader), 5)
    assert answer.status == status
    assert b"Traceback" not in answer.body
    if by == OURS:
        assert answer.headers["connection"] == "close"
        assert answer.json()["error"]
    # Nothing after the one answer: the connection is closed, no second response.
    assert await rest_after_close(reader) == b""
    writer.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n",  # aiohttp reads the target as " /"
        b"GET / HTTP/2.0\r\nHost: t\r\n\r\n",  # and this as a version it answers in kind
    ],
)
async def test_odd_request_lines_aiohttp_accepts_are_still_safe(
    server: JwksServer, raw: bytes
) -> None:
    """Heads the old strict parser refused and aiohttp reads: a 404, one answer only."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    answer = await asyncio.wait_for(read_response(reader), 5)
    assert answer.status == 404 and answer.json()["error"] == "not_found"
    with contextlib.suppress(TimeoutError):  # kept alive, and nothing more was sent
        assert await asyncio.wait_for(reader.read(), 1) == b""
    writer.close()


async def test_a_slow_client_is_timed_out(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    server = await make_server(
        ready_store(public_jwk(ec_private)), limits=Limits(header_timeout=0.5)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHo")  # ... and never the rest
    started = time.monotonic()
    assert await rest_after_close(reader) == b""  # closed, without an answer
    assert time.monotonic() - started < 3
    # One byte every 0.2 s does not keep a head alive either.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    trickle = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100
    started = time.monotonic()
    closed = False
    for byte in trickle:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            closed = True
        await asyncio.sleep(0.2)
        if closed or reader.at_eof():
            break
    assert reader.at_eof() or closed
    assert await rest_after_close(reader) == b""
    assert time.monotonic() - started < 5  # 100 bytes would have taken 20 s
    # A connection that never sends anything is closed too, silently.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await rest_after_close(reader) == b""
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    server = await make_server(
        ready_store(public_jwk(ec_private)), limits=Limits(keepalive_timeout=0.5)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await read_response(reader)).status == 200
    assert await rest_after_close(reader) == b""
    writer.close()


async def test_a_client_that_does_not_read_cannot_grow_the_buffer(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    server = await make_server(ready_store(public_jwk(ec_private)), limits=Limits(send_timeout=0.5))
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    one = f"GET {JWKS_PATH} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    try:
        for _ in range(400):  # pipeline ~400 MB of answers without reading any
            writer.write(one * 1000)
            await asyncio.wait_for(writer.drain(), 2)
    except (ConnectionError, TimeoutError):
        pass
    # The server stopped reading, then dropped the connection after the send timeout (0.5 s,
    # checked once a second); without that bound it would hold it for ever.
    for _ in range(100):
        if not server.connections:
            break
        await asyncio.sleep(0.1)
    assert not server.connections
    writer.close()


# -- connection handling ---------------------------------------------------------------


async def test_pipelined_requests_are_answered_in_order(server: JwksServer) -> None:
    raw = (
        f"GET {JWKS_PATH} HTTP/1.1\r\nHost: t\r\n\r\n"
        "GET /identity/nope/.well-known/jwks.json HTTP/1.1\r\nHost: t\r\n\r\n"
        "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    ).encode()
    answers = await exchange(server.port, raw, count=3)
    assert [a.status for a in answers] == [200, 404, 200]


async def test_request_split_across_packets(server: JwksServer) -> None:
    raw = f"GET {JWKS_PATH} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    answers = await exchange(server.port, [raw[:5], raw[5:20], raw[20:-1], raw[-1:]])
    assert answers[0].status == 200


async def test_a_request_body_is_skipped_and_the_connection_reused(server: JwksServer) -> None:
    raw = (
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    answers = await exchange(server.port, [raw[:60], raw[60:]], count=2)
    assert [a.status for a in answers] == [405, 200]


@pytest.mark.parametrize(
    ("raw", "closes"),
    [
        (b"GET /healthz HTTP/1.0\r\n\r\n", True),
        (b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", True),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", False),
    ],
)
async def test_connection_persistence(server: JwksServer, raw: bytes, closes: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    answer = await read_response(reader)
    assert answer.status == 200
    if closes:
        if b"HTTP/1.1" in raw:  # HTTP/1.0 closes by default: aiohttp does not say it
            assert answer.headers["connection"] == "close"
        assert await rest_after_close(reader) == b""
    else:
        writer.write(raw)
        assert (await read_response(reader)).status == 200
    writer.close()


async def test_absolute_form_target(server: JwksServer) -> None:
    answer = await request(server.port, "GET", f"http://jwks.example{JWKS_PATH}")
    assert answer.status == 200


async def test_options_asterisk(server: JwksServer) -> None:
    answer = await request(server.port, "OPTIONS", "*")
    assert answer.status == 204 and answer.headers["allow"] == "GET, HEAD, OPTIONS"


# -- health, readiness, metrics --------------------------------------------------------


async def test_healthz_and_readyz(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    store = SnapshotStore()
    server = await make_server(store)
    assert (await request(server.port, "GET", "/healthz")).status == 200
    not_ready = await request(server.port, "GET", "/readyz")
    assert not_ready.status == 503 and not_ready.headers["cache-control"] == "no-store"
    store.mark_ready()
    assert (await request(server.port, "GET", "/readyz")).status == 200
    assert (await request(server.port, "HEAD", "/readyz")).body == b""


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    wanted = name
    if labels:
        wanted += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {wanted} in:\n{text}")


async def test_metrics(server: JwksServer) -> None:
    store = server.store
    await request(server.port, "GET", JWKS_PATH)
    await request(server.port, "GET", "/identity/nope/.well-known/jwks.json")
    store.apply("identity", "auth", {"jwks.json": "{bad json"}, {})
    store.metrics.count_watch_restart("expired")
    answer = await request(server.port, "GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.body.decode()
    assert metric_value(text, "jwks_http_requests_total", {"route": "jwks", "status": "200"}) == 1
    assert metric_value(text, "jwks_http_requests_total", {"route": "jwks", "status": "404"}) == 1
    assert metric_value(text, "jwks_snapshot_keysets") == 1
    assert metric_value(text, "jwks_snapshot_bytes") > 100
    assert metric_value(text, "jwks_configmaps_refused_total", {"reason": "invalid_json"}) == 1
    assert metric_value(text, "jwks_keysets_refused") == 1
    assert metric_value(text, "jwks_watch_restarts_total", {"reason": "expired"}) == 1
    assert 0 <= metric_value(text, "jwks_seconds_since_last_update") < 60
    assert metric_value(text, "jwks_last_update_timestamp_seconds") > 1.7e9
    assert metric_value(text, "jwks_ready") == 1
    assert metric_value(text, "jwks_open_connections") >= 1
    # prometheus_client's own collectors come along.
    assert metric_value(text, "process_resident_memory_bytes") > 1e6
    assert "python_info{" in text
    for line in text.splitlines():  # every sample line is well-formed text exposition
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


async def test_metrics_on_a_separate_port(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    server = await make_server(ready_store(public_jwk(ec_private)), metrics_port=0)
    main, metrics = server.ports
    assert (await request(main, "GET", "/metrics")).status == 404
    assert (await request(main, "GET", JWKS_PATH)).status == 200
    assert (await request(metrics, "GET", "/metrics")).status == 200
    assert (await request(metrics, "GET", "/readyz")).status == 200
    assert (await request(metrics, "GET", JWKS_PATH)).status == 404


# -- the /verify hook ------------------------------------------------------------------


async def test_verify_is_404_json_when_verification_is_off(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    server = await make_server(
        ready_store(public_jwk(ec_private)), server_options={"verify_handler": None}
    )
    answer = await request(server.port, "POST", "/identity/auth/verify")
    assert_error(answer, 404, "not_found")


async def test_verify_hook_receives_the_entry_and_request(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    seen: list[tuple[KeySetEntry, str, dict[str, str], str]] = []

    def handler(
        entry: KeySetEntry, method: str, headers: Mapping[str, str], query: str
    ) -> tuple[int, Sequence[tuple[str, str]], bytes]:
        seen.append((entry, method, dict(headers), query))
        return (
            401,
            [("WWW-Authenticate", 'Bearer error="invalid_token"'), ("X-Bad", "a\r\nb")],
            b"{}",
        )

    server = await make_server(
        ready_store(public_jwk(ec_private)), server_options={"verify_handler": handler}
    )
    answer = await request(
        server.port, "PUT", "/identity/auth/verify?aud=a%20b&x", {"Authorization": "Bearer t"}
    )
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "x-bad" not in answer.headers  # an unsafe header is dropped, not sent
    assert answer.headers["cache-control"] == "no-store"
    entry, method, headers, query = seen[0]
    assert (entry.namespace, entry.name, method, query) == (
        "identity",
        "auth",
        "PUT",
        "aud=a%20b&x",
    )
    assert headers["authorization"] == "Bearer t"
    unknown = await request(server.port, "GET", "/identity/nope/verify")
    assert_error(unknown, 404, "not_found")
    assert len(seen) == 1


async def test_a_failing_verify_hook_is_a_bare_500(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    def handler(
        entry: KeySetEntry, method: str, headers: Mapping[str, str], query: str
    ) -> tuple[int, Sequence[tuple[str, str]], bytes]:
        raise RuntimeError("secret detail")

    server = await make_server(
        ready_store(public_jwk(ec_private)), server_options={"verify_handler": handler}
    )
    answer = await request(server.port, "GET", "/identity/auth/verify")
    assert answer.status == 500
    assert b"secret detail" not in answer.body and b"Traceback" not in answer.body
    assert (await request(server.port, "GET", JWKS_PATH)).status == 200


# -- graceful shutdown -----------------------------------------------------------------


async def test_shutdown_finishes_in_flight_requests_and_stops_accepting(server: JwksServer) -> None:
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", server.port)
    busy_writer.write(f"GET {JWKS_PATH} HTTP/1.1\r\nHost: t\r\n".encode())  # not finished yet
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
    idle_writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await read_response(idle_reader)).status == 200
    await asyncio.sleep(0.05)
    shutdown = asyncio.create_task(server.shutdown())
    await asyncio.sleep(0.1)
    # The idle keep-alive connection is closed at once; new connections are refused.
    assert await rest_after_close(idle_reader) == b""
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.port)
    assert not shutdown.done()
    busy_writer.write(b"\r\n")  # the in-flight request completes ...
    answer = await asyncio.wait_for(read_response(busy_reader), 5)
    assert answer.status == 200 and answer.json()["keys"]  # ... and is answered in full
    assert answer.headers["connection"] == "close"
    await asyncio.wait_for(shutdown, 5)
    busy_writer.close()
    idle_writer.close()


async def test_readyz_fails_while_shutting_down(server: JwksServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: t\r\n")
    await asyncio.sleep(0.05)
    shutdown = asyncio.create_task(server.shutdown())
    await asyncio.sleep(0.05)
    writer.write(b"\r\n")
    assert (await asyncio.wait_for(read_response(reader), 5)).status == 503
    await asyncio.wait_for(shutdown, 5)
    writer.close()


# -- never a private member ------------------------------------------------------------


async def test_no_response_ever_holds_a_private_member(
    make_server: MakeServer,
    rsa_private: rsa.RSAPrivateKey,
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    """Every route, method and variant, over keysets whose ConfigMaps tried to leak keys."""
    secret_rsa = {**public_jwk(rsa_private), **private_members(rsa_private)}
    secret_ec = {**public_jwk(ec_private), **private_members(ec_private)}
    store = SnapshotStore()
    store.apply("identity", "auth", configmap_data(public_jwk(ec_private), issuer=ISSUER), {})
    leaks = {
        "auth": jwks_text(public_jwk(ec_private), secret_rsa),  # refused: the old body stays
        "fresh": jwks_text(secret_ec),  # refused with nothing before: 503
        "hmac": jwks_text({"kty": "oct", "kid": "h", "k": "c2VjcmV0c2VjcmV0"}),
        "nested": json.dumps({"keys": [public_jwk(ec_private)], "extra": {"keys": [secret_ec]}}),
    }
    for name, text in leaks.items():
        store.apply("identity", name, {"jwks.json": text, "openid-configuration": "{}"}, {})
    store.mark_ready()
    server = await make_server(store, default_keyset=("identity", "fresh"))
    secrets = [
        v.encode()
        for v in (*private_members(rsa_private).values(), *private_members(ec_private).values())
    ]
    paths = [
        "/metrics",
        "/healthz",
        "/readyz",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ]
    for name in (*leaks, "missing"):
        paths += [
            f"/identity/{name}/.well-known/jwks.json",
            f"/identity/{name}/.well-known/openid-configuration",
        ]
    variants: list[dict[str, str]] = [
        {},
        {"Accept-Encoding": "gzip"},
        {"Accept": "application/jwk-set+json"},
        {"If-None-Match": "*"},
    ]
    for path in paths:
        for method in ("GET", "HEAD", "OPTIONS", "POST"):
            for headers in variants:
                answer = await request(server.port, method, path, headers)
                assert answer.status < 500 or answer.status == 503, (path, method, answer.status)
                body = answer.body
                if answer.headers.get("content-encoding") == "gzip" and body:
                    body = gzip.decompress(body)
                assert_no_private_material(body)
                for secret in secrets:
                    assert secret[:12] not in body


async def test_expect_continue_is_answered_without_waiting_for_the_body(
    server: JwksServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
    )
    answer = await asyncio.wait_for(read_response(reader), 5)
    assert answer.status == 405 and answer.headers["connection"] == "close"
    assert await rest_after_close(reader) == b""
    writer.close()


async def test_connections_over_the_limit_are_closed(
    make_server: MakeServer, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    server = await make_server(
        ready_store(public_jwk(ec_private)), limits=Limits(max_connections=2)
    )
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
    await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    for held_reader, held_writer in held:  # the first two still work
        held_writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await read_response(held_reader)).status == 200
        held_writer.close()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (f"GET {JWKS_PATH} HTTP/1.1\r\nHost: t\r\n\r\n".encode(), 200),
        (b"GET /healthz HTTP/1.1\r\nHost: t\nX: y\r\n\r\n", 400),
    ],
)
async def test_a_request_trickled_byte_by_byte(server: JwksServer, raw: bytes, status: int) -> None:
    """Every CR/LF boundary falls between two packets; a bare LF is still caught."""
    if status == 400:  # stop at the bare LF: the server answers and closes right there
        raw = raw[: raw.index(b"t\n") + 2]
    answers = await exchange(server.port, [raw[i : i + 1] for i in range(len(raw))])
    assert answers[0].status == status
