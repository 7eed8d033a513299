"""The HTTP representation of a served document: bytes, gzip, ETags, and the rules that pick one.

A request must cost a lookup, never JSON encoding, compression or hashing; so a
``Document`` holds both encodings and their strong ETags, computed once when the content
changes. ETags are the SHA-256 of the bytes and the gzip variant uses a fixed mtime, so
every replica gives the same ETag for the same content. The negotiation functions are pure
(header value in, decision out) so that the request handler only caches their answers.
"""

import base64
import gzip
import hashlib
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Final

JSON: Final = "application/json"
JWK_SET_JSON: Final = "application/jwk-set+json"
MIN_MAX_AGE: Final = 60


@dataclass(frozen=True, slots=True)
class Document:
    """One served document in both encodings; ETags are strong and differ per encoding."""

    body: bytes
    gzip_body: bytes
    etag: str
    gzip_etag: str
    modified: float
    """When these bytes were first served (or written, when the source knows): Last-Modified."""
    last_modified: str

    @classmethod
    def encode(cls, text: str, modified: float, previous: "Document | None" = None) -> "Document":
        """Pre-encode ``text``; an identical previous document is reused with its date."""
        body = text.encode()
        tag = base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode()
        etag = f'"{tag}"'
        if previous is not None:
            if previous.etag == etag:
                return previous
            # New bytes must look newer than the old ones to If-Modified-Since, whatever
            # clock or metadata the caller's time came from.
            modified = max(modified, int(previous.modified) + 1)
        # mtime=0: identical content gives identical bytes (and ETags) on every replica.
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        return cls(
            body=body,
            gzip_body=packed,
            etag=etag,
            gzip_etag=f'"{tag}-gz"',
            modified=modified,
            last_modified=formatdate(modified, usegmt=True),
        )

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzip_body)


def max_age(configured: int, next_change: float | None, now: float) -> int:
    """Seconds a cache may keep the document: never past the next change, floor 60 s."""
    if next_change is None:
        return configured
    floor = min(MIN_MAX_AGE, configured)
    return max(floor, min(configured, int(next_change - now)))


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value admits gzip (q > 0, directly or through ``*``)."""
    gzip_q: float | None = None
    star_q: float | None = None
    for item in accept_encoding.lower().split(","):
        coding, q = _media_and_q(item)
        if coding in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def wants_jwk_set(accept: str) -> bool:
    """Whether Accept asks for application/jwk-set+json over application/json."""
    jwk_set_q: float | None = None
    json_q = 0.0
    for item in accept.lower().split(","):
        media, q = _media_and_q(item)
        if media == JWK_SET_JSON:
            jwk_set_q = q if jwk_set_q is None else max(jwk_set_q, q)
        elif media in (JSON, "application/*", "*/*"):
            json_q = max(json_q, q)
    return jwk_set_q is not None and jwk_set_q > 0 and jwk_set_q >= json_q


def _media_and_q(item: str) -> tuple[str, float]:
    media, *params = item.split(";")
    q = 1.0
    for param in params:
        key, _, value = param.partition("=")
        if key.strip() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                q = 0.0
            if not 0.0 <= q <= 1.0:
                q = 0.0
    return media.strip(), q


def matching_etag(if_none_match: str, tags: tuple[str, str]) -> str | None:
    """The tag that If-None-Match names (weak comparison), or None; ``*`` names the first."""
    if if_none_match.strip() == "*":
        return tags[0]
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate in tags:
            return candidate
    return None


def not_modified_since(if_modified_since: str, modified: float) -> bool:
    try:
        since = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    return int(modified) <= since
