"""Response bytes, and the negotiation and caching rules that choose them.

Pure functions over pre-encoded documents: given a document, the variant a request
negotiated and the current second, they produce the full response bytes. The server caches
their output per second, so each distinct response is assembled at most once a second.
"""

import json
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from typing import Final

JSON: Final = b"application/json"
JWK_SET_JSON: Final = b"application/jwk-set+json"
MIN_MAX_AGE: Final = 60
ALLOW: Final = b"GET, HEAD, OPTIONS"
PREFLIGHT_MAX_AGE: Final = 86400

COMMON: Final = b"Access-Control-Allow-Origin: *\r\nX-Content-Type-Options: nosniff\r\n"
NO_STORE: Final = b"Cache-Control: no-store\r\n"
CLOSE: Final = b"Connection: close\r\n"
KEEP_ALIVE: Final = b"Connection: keep-alive\r\n"
VARY_JWKS: Final = b"Vary: Accept, Accept-Encoding\r\n"
VARY_ENCODING: Final = b"Vary: Accept-Encoding\r\n"


def status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES: Final = {code: status_line(code) for code in (200, 204, 304, 404, 405, 503)}


def http_date(moment: float) -> bytes:
    return formatdate(moment, usegmt=True).encode()


def max_age(configured: int, next_change: float | None, now: float) -> int:
    """Seconds a cache may keep the document: never past the next change, floor 60 s."""
    if next_change is None:
        return configured
    floor = min(MIN_MAX_AGE, configured)
    return max(floor, min(configured, int(next_change - now)))


def document(
    *,
    status: int,
    body: bytes,
    content_type: bytes,
    etag: str,
    last_modified: str,
    cache_seconds: int,
    vary: bytes,
    gzip: bool,
    head: bool,
    date: bytes,
    connection: bytes,
) -> bytes:
    """A 200 (body unless HEAD) or 304 (never a body) for a pre-encoded document."""
    parts = [
        _STATUS_LINES[status],
        b"Date: ",
        date,
        b"\r\nCache-Control: public, max-age=",
        str(cache_seconds).encode(),
        b"\r\nETag: ",
        etag.encode(),
        b"\r\n",
        vary,
        COMMON,
        connection,
    ]
    if status == 200:
        # A 304 carries only what updates a stored response (RFC 9110 15.4.5).
        parts += [b"Last-Modified: ", last_modified.encode(), b"\r\n"]
        parts += [b"Content-Type: ", content_type, b"\r\n"]
        if gzip:
            parts.append(b"Content-Encoding: gzip\r\n")
        parts += [b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n"]
        if not head:
            parts.append(body)
    else:
        parts.append(b"\r\n")
    return b"".join(parts)


def simple(
    status: int,
    body: bytes,
    *,
    content_type: bytes = JSON,
    head: bool,
    date: bytes,
    connection: bytes,
    extra: bytes = b"",
) -> bytes:
    """An uncacheable response (errors, health, metrics)."""
    return b"".join(
        (
            _STATUS_LINES.get(status) or status_line(status),
            b"Date: ",
            date,
            b"\r\n",
            NO_STORE,
            COMMON,
            extra,
            connection,
            b"Content-Type: ",
            content_type,
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n\r\n",
            b"" if head else body,
        )
    )


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": code, "message": message}).encode()


def error(
    status: int,
    code: str,
    message: str,
    *,
    head: bool,
    date: bytes,
    connection: bytes,
    extra: bytes = b"",
) -> bytes:
    return simple(
        status,
        error_body(code, message),
        head=head,
        date=date,
        connection=connection,
        extra=extra,
    )


def preflight(request_headers: bytes | None, *, date: bytes, connection: bytes) -> bytes:
    """204 answer to OPTIONS: a CORS preflight when it is one, the Allow list anyway."""
    parts = [
        _STATUS_LINES[204],
        b"Date: ",
        date,
        b"\r\nAllow: ",
        ALLOW,
        b"\r\nAccess-Control-Allow-Methods: ",
        ALLOW,
        b"\r\nAccess-Control-Max-Age: ",
        str(PREFLIGHT_MAX_AGE).encode(),
        b"\r\nVary: Access-Control-Request-Headers\r\n",
        COMMON,
        connection,
    ]
    if request_headers and _is_token_list(request_headers):
        parts += [b"Access-Control-Allow-Headers: ", request_headers, b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


_TOKEN_LIST_CHARS: Final = (
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ, \t"
)


def _is_token_list(value: bytes) -> bool:
    return len(value) <= 1024 and not value.translate(None, _TOKEN_LIST_CHARS)


def accepts_gzip(accept_encoding: bytes) -> bool:
    """Whether an Accept-Encoding value admits gzip (q > 0, directly or through ``*``)."""
    gzip_q: float | None = None
    star_q: float | None = None
    for item in accept_encoding.lower().split(b","):
        coding, q = _media_and_q(item)
        if coding in (b"gzip", b"x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == b"*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def wants_jwk_set(accept: bytes) -> bool:
    """Whether Accept asks for application/jwk-set+json over application/json."""
    jwk_set_q: float | None = None
    json_q = 0.0
    for item in accept.lower().split(b","):
        media, q = _media_and_q(item)
        if media == JWK_SET_JSON:
            jwk_set_q = q if jwk_set_q is None else max(jwk_set_q, q)
        elif media in (JSON, b"application/*", b"*/*"):
            json_q = max(json_q, q)
    return jwk_set_q is not None and jwk_set_q > 0 and jwk_set_q >= json_q


def _media_and_q(item: bytes) -> tuple[bytes, float]:
    media, *params = item.split(b";")
    q = 1.0
    for param in params:
        key, _, value = param.partition(b"=")
        if key.strip() == b"q":
            try:
                q = float(value.strip())
            except ValueError:
                q = 0.0
            if not 0.0 <= q <= 1.0:
                q = 0.0
    return media.strip(), q


def matching_etag(if_none_match: bytes, tags: tuple[str, str]) -> str | None:
    """The tag that If-None-Match names (weak comparison), or None; ``*`` names the first."""
    value = if_none_match.decode("latin-1")
    if value.strip() == "*":
        return tags[0]
    for candidate in value.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate in tags:
            return candidate
    return None


def not_modified_since(if_modified_since: bytes, modified: float) -> bool:
    try:
        since = parsedate_to_datetime(if_modified_since.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    return int(modified) <= since
