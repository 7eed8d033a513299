"""Strict decoding of a JWS compact serialisation (``header.payload.signature``).

Every lenient corner of base64 and JSON is a place where two parsers can disagree about
what a token says, so this decoder accepts one spelling only: the base64url alphabet
without padding, canonical trailing bits in the signature, UTF-8 JSON objects without
duplicate names, NaN or Infinity, and with bounded size and nesting.
"""

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any, Final

MAX_TOKEN_CHARS: Final = 8192
MAX_HEADER_CHARS: Final = 1024
MAX_DEPTH: Final = 8

_STANDARD = bytes.maketrans(b"-_", b"+/")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
"""The signature part may be empty so that `alg: none` tokens get their own clear refusal."""


class MalformedTokenError(ValueError):
    """Not a well-formed JWS compact token; the message is safe to show."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise MalformedTokenError("duplicate member name in JSON")
    return result


def _refuse_constant(name: str) -> Any:
    raise MalformedTokenError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)


def split_token(token: str) -> tuple[str, str, str]:
    """The three segments; the caller has already checked the overall size."""
    if not _TOKEN_RE.fullmatch(token):
        if token.count(".") == 4:
            raise MalformedTokenError("encrypted tokens (JWE) are not accepted")
        raise MalformedTokenError("not a JWS compact token (three base64url parts)")
    header, payload, signature = token.split(".")
    return header, payload, signature


def decode_segment(segment: str) -> bytes:
    """base64url without padding -> bytes; the caller has checked the alphabet already."""
    padded = (segment + "=" * (-len(segment) % 4)).encode("ascii").translate(_STANDARD)
    try:
        return binascii.a2b_base64(padded, strict_mode=True)
    except (binascii.Error, ValueError):
        raise MalformedTokenError("a token part is not base64url") from None


def decode_signature(segment: str) -> bytes:
    """Decode, and refuse non-canonical spellings that would make one signature many tokens."""
    raw = decode_segment(segment)
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != segment.encode("ascii"):
        raise MalformedTokenError("signature is not canonical base64url")
    return raw


def decode_object(segment: str, what: str) -> dict[str, Any]:
    """A base64url JSON object, bounded in nesting; MalformedTokenError otherwise."""
    try:
        text = decode_segment(segment).decode("utf-8")
        value = _DECODER.decode(text)
    except MalformedTokenError:
        raise
    except UnicodeDecodeError:
        raise MalformedTokenError(f"{what} is not UTF-8") from None
    except (ValueError, RecursionError):
        raise MalformedTokenError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedTokenError(f"{what} is not a JSON object")
    # Counting brackets is C-speed; only a document that nests at all is walked.
    if text.count("{") + text.count("[") > 1 and _depth(value, 1) > MAX_DEPTH:
        raise MalformedTokenError(f"{what} nests deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any, level: int) -> int:
    """How many containers deep ``value`` (a container at ``level``) goes, capped early."""
    children: Iterable[Any]
    if isinstance(value, dict):
        children = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return level - 1
    if level > MAX_DEPTH:
        return level
    deepest = level
    for child in children:
        deepest = max(deepest, _depth(child, level + 1))
        if deepest > MAX_DEPTH:
            break
    return deepest
