"""Strict decoding of a JWS compact serialisation (``header.payload.signature``): the gate.

Deliberately the project's own, in front of jwcrypto (which verifies the signature): every
lenient corner of base64 and JSON is a place where two parsers can disagree about what a
token says, so this decoder accepts one spelling only: compact serialisation (jwcrypto also
parses the JSON forms), the base64url alphabet without padding, canonical trailing bits in
the signature, UTF-8 JSON objects without duplicate names, NaN or Infinity, and with
bounded size and nesting. ``tests/verification/test_gate_vs_jwcrypto.py`` lists everything
jwcrypto would accept that this refuses.
"""

import binascii
import json
from collections.abc import Callable, Iterable
from typing import Any, Final

MAX_TOKEN_CHARS: Final = 8192
MAX_HEADER_CHARS: Final = 1024
MAX_DEPTH: Final = 8

_STANDARD = bytes.maketrans(b"-_", b"+/")
_TOKEN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
"""What a compact JWS is spelled with; deleting these from the token must leave nothing."""


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
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
"""The C scanner behind ``_DECODER.decode``: a document that starts at its first character
and ends at its last (what every signer writes) needs neither of decode's two whitespace
regex passes; anything else goes through ``decode`` itself, so the accepted set is the same."""
_PADDING = ("", "===", "==", "=")
_CANONICAL_LAST = (None, None, frozenset("AQgw"), frozenset("AEIMQUYcgkosw048"))
"""Per length mod 4, the final characters whose unused low bits are zero (4 bits unused
after 2 characters, 2 after 3). Any other final character is a second spelling of the
same bytes; a whole-group length has no unused bits, and length 1 mod 4 never decodes."""


def split_token(token: str) -> tuple[str, str, str]:
    """The three segments; the caller has already checked the overall size."""
    # Three base64url parts, the first two non-empty: the signature part may be empty so
    # that ``alg: none`` tokens get their own clear refusal. (A regex says the same at
    # twice the cost on a 700-character token.)
    parts = token.split(".")
    if (
        len(parts) != 3
        or not parts[0]
        or not parts[1]
        or not token.isascii()
        or token.encode("ascii").translate(None, _TOKEN_BYTES)
    ):
        if token.count(".") == 4:
            raise MalformedTokenError("encrypted tokens (JWE) are not accepted")
        raise MalformedTokenError("not a JWS compact token (three base64url parts)")
    return parts[0], parts[1], parts[2]


def decode_segment(segment: str) -> bytes:
    """base64url without padding -> bytes; the caller has checked the alphabet already."""
    padded = (segment + _PADDING[len(segment) % 4]).encode("ascii").translate(_STANDARD)
    try:
        return binascii.a2b_base64(padded, strict_mode=True)
    except (binascii.Error, ValueError):
        raise MalformedTokenError("a token part is not base64url") from None


def decode_signature(segment: str) -> bytes:
    """Decode, and refuse non-canonical spellings that would make one signature many tokens."""
    raw = decode_segment(segment)
    # Same test as re-encoding and comparing, without the round trip: strict decoding
    # leaves only the unused bits of the last character free.
    last = _CANONICAL_LAST[len(segment) % 4]
    if last is not None and segment[-1] not in last:
        raise MalformedTokenError("signature is not canonical base64url")
    return raw


def decode_object(segment: str, what: str) -> dict[str, Any]:
    """A base64url JSON object, bounded in nesting; MalformedTokenError otherwise."""
    try:
        text = decode_segment(segment).decode("utf-8")
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
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
