"""Every field of a JwksKeySet ``spec`` and its limits, in one table.

This table is the single source of each field's type, pattern, length, size and range:
``scripts/generate_crds.py`` turns it into the CRD's OpenAPI schema, ``core.spec.parse_spec``
enforces exactly it, and the verifier reads the policy ``parse_spec`` produced from it. A
limit changed here changes all three; a property test generates values at and just past
every limit and checks that the CRD and ``parse_spec`` agree on each.

Patterns are anchored and written for both RE2 (the API server) and Python's ``re`` (used
with ``fullmatch``, so ``$`` never accepts a trailing newline): ``[0-9]``, never ``\\d``.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from jwks_operator.core.algorithms import ALGORITHM_NAMES, RSA_KEY_SIZES
from jwks_operator.core.durations import DURATION_PATTERN, MAX_DURATION

DURATION_MAX_LENGTH: Final = 64
"""parse_duration refuses longer text; also bounds the cost of the CRD's CEL rules."""


@dataclass(frozen=True)
class Text:
    """A string: ``min_length <= len <= max_length`` and, when given, ``pattern`` in full."""

    what: str
    max_length: int
    pattern: str | None = None
    min_length: int = 0
    default: str | None = None


@dataclass(frozen=True)
class Duration:
    """A Go-style duration text (``Text`` with the duration grammar), above zero (or, with
    ``zero_allowed``, at least zero), at most ``MAX_DURATION``."""

    default: timedelta | None = None
    zero_allowed: bool = False
    max_length: int = DURATION_MAX_LENGTH
    pattern: str = DURATION_PATTERN
    maximum: timedelta = MAX_DURATION


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (strings or integers, never a bool)."""

    values: tuple[str, ...] | tuple[int, ...]
    default: str | None = None


@dataclass(frozen=True)
class ListOf:
    """A list of at most ``max_items`` distinct ``item`` values (``x-kubernetes-list-type:
    set``: the API server refuses a repeated value, and so does parse_spec)."""

    item: Text
    max_items: int


@dataclass(frozen=True)
class MapOf:
    """An object of at most ``max_items`` ``key: value`` pairs."""

    key: Text
    value: Text
    max_items: int


@dataclass(frozen=True)
class Section:
    """An object with fixed fields; anything else is an unknown field."""

    fields: dict[str, "Field"] = field(default_factory=dict)


Field = Text | Duration | Choice | ListOf | MapOf | Section

NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""RFC 1123 subdomain, as Kubernetes requires of Secret and ConfigMap names."""
NAME_MAX: Final = 253
NAMESPACE_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""RFC 1123 label (at most 63 characters), as Kubernetes requires of namespace names."""
KID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,128}$"
HEADER_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9-]{0,63}$"
CLAIM_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}$"
URL_PATTERN: Final = r"^https?://[^/?#\s]+[^?#\s]*$"
"""Absolute http(s) URL without query or fragment (no '?' or '#' at all), no whitespace."""
PRINTABLE_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""No control characters: values that end up in logs, headers and comparisons."""
URL_MAX: Final = 2048
AUDIENCE_MAX: Final = 512
MAX_REVOKED: Final = 256
MAX_AUDIENCES: Final = 32
MAX_CLAIMS: Final = 32

DEFAULT_ALGORITHM: Final = "RS256"
DEFAULT_INTERVAL: Final = timedelta(hours=720)
DEFAULT_PRE_PUBLISH: Final = timedelta(hours=2)
DEFAULT_RETIRE_AFTER: Final = timedelta(hours=2)
DEFAULT_LEEWAY: Final = timedelta(seconds=60)
DEFAULT_DELETION_POLICY: Final = "Retain"

OBJECT_NAME: Final = Text(
    "Kubernetes object name (lowercase letters, digits, '-' and '.', at most 253 characters)",
    max_length=NAME_MAX,
    pattern=NAME_PATTERN,
)
URL: Final = Text(
    "absolute https:// or http:// URL without query or fragment", URL_MAX, URL_PATTERN
)
KID: Final = Text("kid (base64url, 1-128 characters)", 128, KID_PATTERN, min_length=1)
CLAIM: Final = Text("claim name (1-64 letters, digits, '_', '.', ':' or '-')", 64, CLAIM_PATTERN, 1)
HEADER: Final = Text("HTTP header name", 64, HEADER_PATTERN, min_length=1)
AUDIENCE: Final = Text(
    f"audience (1-{AUDIENCE_MAX} characters, no control characters)",
    AUDIENCE_MAX,
    PRINTABLE_PATTERN,
    min_length=1,
)

ROTATION: Final = Section(
    {
        "interval": Duration(DEFAULT_INTERVAL),
        "prePublish": Duration(DEFAULT_PRE_PUBLISH),
        "retireAfter": Duration(DEFAULT_RETIRE_AFTER),
    }
)
VERIFICATION: Final = Section(
    {
        "issuer": URL,
        "audiences": ListOf(AUDIENCE, MAX_AUDIENCES),
        "requiredClaims": ListOf(CLAIM, MAX_CLAIMS),
        # No leeway at all is a legitimate choice (clocks kept in sync), as in the overrides.
        "leeway": Duration(DEFAULT_LEEWAY, zero_allowed=True),
        "maxTokenAge": Duration(),
        "claimHeaders": MapOf(CLAIM, HEADER, MAX_CLAIMS),
    }
)
SPEC: Final = Section(
    {
        "algorithm": Choice(ALGORITHM_NAMES, DEFAULT_ALGORITHM),
        "keySize": Choice(RSA_KEY_SIZES),
        "rotation": ROTATION,
        "secretName": OBJECT_NAME,
        "configMapName": OBJECT_NAME,
        "issuer": URL,
        "jwksUri": URL,
        "revokedKeys": ListOf(KID, MAX_REVOKED),
        "deletionPolicy": Choice(("Retain", "Delete"), DEFAULT_DELETION_POLICY),
        "verification": VERIFICATION,
    }
)
"""The whole spec: every field, its type and every limit."""


def leaves(section: Section = SPEC, path: str = "spec") -> list[tuple[str, Field]]:
    """(dotted path, field) for every field below ``section``, sections included."""
    result: list[tuple[str, Field]] = []
    for name, item in section.fields.items():
        where = f"{path}.{name}"
        result.append((where, item))
        if isinstance(item, Section):
            result += leaves(item, where)
    return result
