"""The token policy: the keyset's own (``verification.json``) and a gateway's query overrides.

The policy document is written by the operator but read here from a ConfigMap, i.e. from
data anyone with ConfigMap write access could have shaped, so it is validated again rather
than trusted. Overrides come from the gateway's configured URL; they may narrow or retune
the policy, never change the algorithm or the key set, and a typo in one is a 400 instead
of a silently ignored requirement.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any, Final
from urllib.parse import parse_qsl

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.durations import DurationError, parse_duration
from jwks_operator.core.spec import (
    CLAIM_PATTERN,
    DEFAULT_LEEWAY,
    HEADER_PATTERN,
    RESERVED_CLAIM_HEADERS,
)

RESERVED_HEADERS: Final = RESERVED_CLAIM_HEADERS
"""Headers a claim may not be mapped to: framing, hop-by-hop, auth and our own identity
headers. A claim written into Content-Length or Set-Cookie would let token data reshape
the gateway's HTTP exchange."""

MAX_LEEWAY: Final = timedelta(hours=1)
MAX_OVERRIDE_QUERY: Final = 4096
MAX_AUDIENCES: Final = 16
MAX_REQUIRED: Final = 32
_CLAIM_RE = re.compile(CLAIM_PATTERN)
_HEADER_RE = re.compile(HEADER_PATTERN)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class PolicyError(ValueError):
    """A ``verification.json`` this verifier refuses to enforce (message names the field)."""


class OverrideError(ValueError):
    """A query-string override that is not understood or not valid."""


@dataclass(frozen=True, slots=True)
class Policy:
    algorithm: str
    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    required_claims: tuple[str, ...] = ()
    leeway_seconds: float = DEFAULT_LEEWAY.total_seconds()
    max_age_seconds: float | None = None
    claim_headers: tuple[tuple[str, str], ...] = ()

    def with_overrides(self, overrides: "PolicyOverrides") -> "Policy":
        """Audiences and issuer replace, required claims add up, durations replace."""
        if overrides is NO_OVERRIDES:
            return self
        required = self.required_claims + tuple(
            claim for claim in overrides.require if claim not in self.required_claims
        )
        return Policy(
            algorithm=self.algorithm,
            issuer=overrides.issuer if overrides.issuer is not None else self.issuer,
            audiences=overrides.audiences or self.audiences,
            required_claims=required,
            leeway_seconds=(
                overrides.leeway_seconds
                if overrides.leeway_seconds is not None
                else self.leeway_seconds
            ),
            max_age_seconds=(
                overrides.max_age_seconds
                if overrides.max_age_seconds is not None
                else self.max_age_seconds
            ),
            claim_headers=self.claim_headers,
        )


@dataclass(frozen=True, slots=True)
class PolicyOverrides:
    audiences: tuple[str, ...] = ()
    issuer: str | None = None
    require: tuple[str, ...] = ()
    leeway_seconds: float | None = None
    max_age_seconds: float | None = None


NO_OVERRIDES: Final = PolicyOverrides()


def parse_policy(text: str | None, fallback_algorithm: str | None) -> Policy:
    """Parse ``verification.json``; without one, defaults with the JWKS's own algorithm."""
    if text is None:
        if fallback_algorithm not in ALGORITHMS:
            raise PolicyError("no verification.json and no usable alg on the keyset's first key")
        assert fallback_algorithm is not None
        return Policy(algorithm=fallback_algorithm)
    try:
        raw = json.loads(text)
    except ValueError:
        raise PolicyError("verification.json is not valid JSON") from None
    if not isinstance(raw, Mapping):
        raise PolicyError("verification.json must be a JSON object")
    algorithm = raw.get("algorithm")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise PolicyError(f"verification.json: algorithm {_show(algorithm)} is not supported")
    issuer = raw.get("issuer")
    if issuer is not None and not _text(issuer, 2048):
        raise PolicyError("verification.json: issuer must be a string")
    audiences = _string_list(raw.get("audiences"), "audiences", 512)
    required = _string_list(raw.get("requiredClaims"), "requiredClaims", 64)
    for claim in required:
        if not _CLAIM_RE.match(claim):
            raise PolicyError(f"verification.json: requiredClaims: {claim!r} is not a claim name")
    leeway = _seconds(raw.get("leewaySeconds", DEFAULT_LEEWAY.total_seconds()), "leewaySeconds")
    max_age_raw = raw.get("maxTokenAgeSeconds")
    max_age = None if max_age_raw is None else _seconds(max_age_raw, "maxTokenAgeSeconds")
    if max_age is not None and max_age <= 0:
        raise PolicyError("verification.json: maxTokenAgeSeconds must be above zero")
    return Policy(
        algorithm=algorithm,
        issuer=issuer,
        audiences=tuple(audiences),
        required_claims=tuple(required),
        leeway_seconds=leeway,
        max_age_seconds=max_age,
        claim_headers=_claim_headers(raw.get("claimHeaders")),
    )


@lru_cache(maxsize=256)
def parse_overrides(query: str) -> PolicyOverrides | OverrideError:
    """Parse a gateway's query string; cached because a gateway sends the same one each time.

    Returns (rather than raises) the error, so that a bad query is cached too.
    """
    if not query:
        return NO_OVERRIDES
    if len(query) > MAX_OVERRIDE_QUERY:
        return OverrideError("query string too long")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True, max_num_fields=64)
    except ValueError:
        return OverrideError("query string is not valid form encoding")
    audiences: list[str] = []
    require: list[str] = []
    single: dict[str, str] = {}
    for name, value in pairs:
        if name == "audience":
            if not _text(value, 512):
                return OverrideError("audience must be 1-512 printable characters")
            audiences.append(value)
        elif name == "require":
            if not _CLAIM_RE.match(value):
                return OverrideError(f"require: {_show(value)} is not a claim name")
            require.append(value)
        elif name in ("issuer", "leeway", "max_age"):
            if name in single:
                return OverrideError(f"{name} given more than once")
            single[name] = value
        else:
            return OverrideError(
                f"unknown parameter {_show(name)} (allowed: audience, issuer, require, "
                "leeway, max_age)"
            )
    if len(audiences) > MAX_AUDIENCES or len(require) > MAX_REQUIRED:
        return OverrideError("too many audience or require parameters")
    issuer = single.get("issuer")
    if issuer is not None and not _text(issuer, 2048):
        return OverrideError("issuer must be 1-2048 printable characters")
    try:
        leeway = _duration(single.get("leeway"), "leeway", allow_zero=True)
        max_age = _duration(single.get("max_age"), "max_age", allow_zero=False)
    except OverrideError as error:
        return error
    if leeway is not None and leeway > MAX_LEEWAY.total_seconds():
        return OverrideError(f"leeway may be at most {int(MAX_LEEWAY.total_seconds())}s")
    return PolicyOverrides(
        audiences=tuple(dict.fromkeys(audiences)),
        issuer=issuer,
        require=tuple(dict.fromkeys(require)),
        leeway_seconds=leeway,
        max_age_seconds=max_age,
    )


def _duration(value: str | None, name: str, *, allow_zero: bool) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value).total_seconds()
    except DurationError:
        raise OverrideError(f"{name}: {_show(value)} is not a duration like 30s or 5m") from None
    if seconds <= 0 and not allow_zero:
        raise OverrideError(f"{name} must be longer than zero")
    return seconds


def _text(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and not _CONTROL_RE.search(value)


def _string_list(value: object, name: str, limit: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(_text(item, limit) for item in value):
        raise PolicyError(f"verification.json: {name} must be a list of non-empty strings")
    return list(value)


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise PolicyError(f"verification.json: {name} must be a non-negative number of seconds")
    return float(value)


def _claim_headers(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise PolicyError("verification.json: claimHeaders must be an object")
    mapping: list[tuple[str, str]] = []
    seen: set[str] = set()
    for claim, header in value.items():
        if not isinstance(claim, str) or not _CLAIM_RE.match(claim):
            raise PolicyError(f"verification.json: claimHeaders: {_show(claim)} is not a claim")
        if not isinstance(header, str) or not _HEADER_RE.match(header):
            raise PolicyError(
                f"verification.json: claimHeaders.{claim}: {_show(header)} is not a header name"
            )
        if header.lower() in RESERVED_HEADERS:
            raise PolicyError(
                f"verification.json: claimHeaders.{claim}: {header} is reserved "
                "(framing, hop-by-hop, auth or X-Auth-Subject/-Issuer/-Kid)"
            )
        if header.lower() in seen:
            raise PolicyError(f"verification.json: claimHeaders: {header} is used twice")
        seen.add(header.lower())
        mapping.append((claim, header))
    return tuple(sorted(mapping))


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."
