"""A strict HTTP/1.1 request-head parser, for a server that only ever answers small GETs.

aiohttp's request objects cost more CPU than the whole answer (see bench/README.md), so the
server parses heads itself. Being an origin server for read-only documents lets it be
strict instead of clever: anything ambiguous (obs-fold, whitespace before a colon, control
characters, bare LF, duplicate Host or Content-Length, Transfer-Encoding on a request) is a
4xx and a closed connection, which is what keeps request smuggling and parser differentials
out. Request bodies are only ever skipped (Content-Length, bounded), never read.
"""

from dataclasses import dataclass
from typing import Final

TOKEN_CHARS: Final = (
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
TARGET_CHARS: Final = bytes(range(0x21, 0x7F))
FIELD_CHARS: Final = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_SINGLETONS: Final = frozenset({b"host", b"content-length"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client may make the server hold or wait for."""

    max_target: int = 2048
    max_head: int = 16384
    max_header_line: int = 8192
    max_headers: int = 100
    max_body: int = 65536
    header_timeout: float = 10.0
    keepalive_timeout: float = 60.0
    send_timeout: float = 30.0
    max_connections: int = 10000
    shutdown_grace: float = 10.0


class HttpError(Exception):
    """A request the server refuses before routing; always answered and then closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    method: bytes
    path: bytes
    query: bytes
    http10: bool
    headers: dict[bytes, bytes]
    keep_alive: bool
    body_length: int
    expect_continue: bool


def bad_request(message: str) -> HttpError:
    return HttpError(400, "bad_request", message)


def parse_head(head: bytes, limits: Limits) -> Request:
    """Parse a request head (without its final blank line); raise HttpError if refused."""
    line_end = head.find(b"\r\n")
    request_line = head if line_end < 0 else head[:line_end]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise bad_request("malformed request line")
    method, target, version = parts
    if not method or len(method) > 32 or method.translate(None, TOKEN_CHARS):
        raise bad_request("malformed method")
    if version == b"HTTP/1.1":
        http10 = False
    elif version == b"HTTP/1.0":
        http10 = True
    else:
        raise bad_request("only HTTP/1.0 and HTTP/1.1 are served")
    if len(target) > limits.max_target:
        raise HttpError(414, "uri_too_long", "request target too long")
    if not target or target.translate(None, TARGET_CHARS) or b"#" in target:
        raise bad_request("malformed request target")
    headers: dict[bytes, bytes] = {}
    if line_end >= 0:
        lines = head[line_end + 2 :].split(b"\r\n")
        if len(lines) > limits.max_headers:
            raise HttpError(431, "headers_too_large", "too many header fields")
        for line in lines:
            if len(line) > limits.max_header_line:
                raise HttpError(431, "headers_too_large", "header field too long")
            name, colon, value = line.partition(b":")
            if not colon or not name or name.translate(None, TOKEN_CHARS):
                raise bad_request("malformed header field")
            value = value.strip(b" \t")
            if value.translate(None, FIELD_CHARS):
                raise bad_request("invalid character in a header value")
            name = name.lower()
            known = headers.get(name)
            if known is None:
                headers[name] = value
            elif name in _SINGLETONS:
                raise bad_request(f"repeated {name.decode()} header")
            else:
                headers[name] = known + b", " + value
    if not http10 and b"host" not in headers:
        raise bad_request("HTTP/1.1 request without Host")
    if b"transfer-encoding" in headers:
        raise HttpError(411, "length_required", "request bodies need a Content-Length")
    body_length = 0
    raw_length = headers.get(b"content-length")
    if raw_length is not None:
        if not raw_length.isdigit() or len(raw_length) > 18:
            raise bad_request("malformed Content-Length")
        body_length = int(raw_length)
        if body_length > limits.max_body:
            raise HttpError(413, "payload_too_large", "request body too large")
    connection = headers.get(b"connection")
    if connection is None:
        keep_alive = not http10
    else:
        tokens = {token.strip() for token in connection.lower().split(b",")}
        keep_alive = b"keep-alive" in tokens if http10 else b"close" not in tokens
    path, query = _split_target(method, target)
    return Request(
        method=method,
        path=path,
        query=query,
        http10=http10,
        headers=headers,
        keep_alive=keep_alive,
        body_length=body_length,
        expect_continue=body_length > 0 and b"expect" in headers,
    )


def _split_target(method: bytes, target: bytes) -> tuple[bytes, bytes]:
    if target[0] != 0x2F:  # not origin-form
        if target == b"*":
            if method != b"OPTIONS":
                raise bad_request("asterisk target is for OPTIONS only")
            return b"*", b""
        lowered = target[:8].lower()
        if lowered.startswith((b"http://", b"https://")):
            # absolute-form (sent to proxies): the authority is not ours to check.
            rest = target[target.index(b"//") + 2 :]
            slash = rest.find(b"/")
            target = rest[slash:] if slash >= 0 else b"/"
            if target[0] != 0x2F:
                target = b"/"
        else:
            raise bad_request("malformed request target")
    path, _, query = target.partition(b"?")
    return path, query
