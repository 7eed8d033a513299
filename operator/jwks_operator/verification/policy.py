"""The token policy: the keyset's own (``verification.json``) and a gateway's query overrides.

``verification.json`` is ``spec.verification`` as ``parse_spec`` left it (defaults applied,
``spec.issuer`` folded in) plus the keyset's ``algorithm``. It is read here from a
ConfigMap, so it goes through the same parser and the same table of limits as the spec
(``core.spec.parse_verification``), not through a second set of rules that could drift;
what it yields is the ``Policy`` the verifier enforces. Overrides come from the gateway's
configured URL; they may narrow or retune the policy, never change the algorithm or the key
set, and a typo in one is a 400 instead of a silently ignored requirement.
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
    DEFAULT_LEEWAY,
    RESERVED_CLAIM_HEADERS,
    SpecError,
    VerificationPolicy,
    parse_verification,
)
from jwks_operator.core.specfields import (
    AUDIENCE,
    CLAIM,
    MAX_AUDIENCES,
    MAX_CLAIMS,
    URL_MAX,
    VERIFICATION,
)

RESERVED_HEADERS: Final = RESERVED_CLAIM_HEADERS
"""Headers a claim may not be mapped to: framing, hop-by-hop, auth and our own identity
headers. A claim written into Content-Length or Set-Cookie would let token data reshape
the gateway's HTTP exchange."""

MAX_LEEWAY: Final = timedelta(hours=1)
MAX_OVERRIDE_QUERY: Final = 4096
MAX_REQUIRED: Final = MAX_CLAIMS
_CLAIM_RE = re.compile(CLAIM.pattern or "")
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
    # Fields a newer operator may add are left out (forward compatibility); every field this
    # version knows is held to the spec's own limits.
    section = {name: value for name, value in raw.items() if name in VERIFICATION.fields}
    try:
        parsed = parse_verification(section)
    except SpecError as error:
        raise PolicyError(f"verification.json: {error}") from None
    return policy_from_spec(algorithm, parsed)


def policy_from_spec(algorithm: str, policy: VerificationPolicy) -> Policy:
    """The verifier's form of a parsed ``spec.verification``: seconds as floats, for speed."""
    return Policy(
        algorithm=algorithm,
        issuer=policy.issuer,
        audiences=policy.audiences,
        required_claims=policy.required_claims,
        leeway_seconds=policy.leeway.total_seconds(),
        max_age_seconds=(
            policy.max_token_age.total_seconds() if policy.max_token_age is not None else None
        ),
        claim_headers=policy.claim_headers,
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
            if not _text(value, AUDIENCE.max_length):
                return OverrideError(
                    f"audience must be 1-{AUDIENCE.max_length} printable characters"
                )
            audiences.append(value)
        elif name == "require":
            if not _CLAIM_RE.fullmatch(value):
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
    if issuer is not None and not _text(issuer, URL_MAX):
        return OverrideError(f"issuer must be 1-{URL_MAX} printable characters")
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


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."
