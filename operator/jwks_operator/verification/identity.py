"""Identity headers for the upstream, built from verified claims without injection or confusion.

Stripping bad characters would be the usual sanitiser, but it changes identities:
``"ali\\u0000ce"`` would reach the backend as ``alice``. So a string claim that cannot be a
header value as-is (control characters, line breaks, surrounding blanks that HTTP parsers
trim, or over-long) makes the token unusable instead, and non-string claims are sent as
ASCII-only JSON, which has no such characters by construction. Every configured header is
always present on success (empty when its claim is absent), so a gateway copying it always
overwrites whatever the client sent under the same name.
"""

import json
import re
from collections.abc import Mapping
from typing import Any, Final

MAX_HEADER_VALUE: Final = 2048
SUBJECT_HEADER: Final = "X-Auth-Subject"
ISSUER_HEADER: Final = "X-Auth-Issuer"
KID_HEADER: Final = "X-Auth-Kid"

_UNSAFE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BLANKS: Final = frozenset(" \t")


class UnrepresentableClaimError(ValueError):
    """A claim that cannot travel as a header value without being altered."""


def header_value(claims: Mapping[str, Any], claim: str) -> str:
    value = claims.get(claim)
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
        # ASCII and printable is exactly "nothing _UNSAFE_RE matches" for ASCII text, at
        # C speed; only other text pays for the regex.
        if (
            (not (text.isascii() and text.isprintable()) and _UNSAFE_RE.search(text))
            or text[:1] in _BLANKS
            or text[-1:] in _BLANKS
        ):
            raise UnrepresentableClaimError(
                f"claim {claim} has control characters or surrounding blanks"
            )
    else:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_HEADER_VALUE:
        raise UnrepresentableClaimError(
            f"claim {claim} is longer than {MAX_HEADER_VALUE} characters"
        )
    return text


def identity_headers(
    claims: Mapping[str, Any],
    kid: str,
    mapping: tuple[tuple[str, str], ...],
) -> tuple[tuple[str, str], ...]:
    """(header, value) pairs: fixed ones first, then the policy's claim mapping."""
    headers = [
        (SUBJECT_HEADER, header_value(claims, "sub")),
        (ISSUER_HEADER, header_value(claims, "iss")),
        (KID_HEADER, kid),
    ]
    for claim, header in mapping:
        headers.append((header, header_value(claims, claim)))
    return tuple(headers)
