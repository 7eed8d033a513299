"""A JwksKeySet's ``spec``, parsed from plain data into an immutable, validated value.

The operator and standalone mode both feed user-written YAML through ``parse_spec``; the
API server's schema catches most mistakes first on a real cluster, but not every cluster
enforces every rule (and standalone has no API server), so this is the authority. Every
problem is collected, not just the first, and each names its field path and what is
allowed, because the message ends up in a condition or on a terminal.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from jwks_operator.core.algorithms import (
    ALGORITHM_NAMES,
    DEFAULT_RSA_KEY_SIZE,
    RSA_KEY_SIZES,
    is_rsa,
)
from jwks_operator.core.durations import DurationError, parse_duration

DeletionPolicy = Literal["Retain", "Delete"]

DEFAULT_ALGORITHM: Final = "RS256"
DEFAULT_INTERVAL: Final = timedelta(hours=720)
DEFAULT_PRE_PUBLISH: Final = timedelta(hours=2)
DEFAULT_RETIRE_AFTER: Final = timedelta(hours=2)
DEFAULT_LEEWAY: Final = timedelta(seconds=60)

NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""RFC 1123 subdomain, as Kubernetes requires of Secret and ConfigMap names."""
NAME_MAX: Final = 253
NAMESPACE_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""RFC 1123 label (at most 63 characters), as Kubernetes requires of namespace names."""
KID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,128}$"
HEADER_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9-]{0,63}$"
CLAIM_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}$"
RESERVED_CLAIM_HEADERS: Final = frozenset(
    name.lower()
    for name in (
        "X-Auth-Subject",  # the identity headers /verify always sends
        "X-Auth-Issuer",
        "X-Auth-Kid",
        "Authorization",
        "Cache-Control",
        "Connection",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "Cookie",
        "Date",
        "Host",
        "Keep-Alive",
        "Location",
        "Server",
        "Set-Cookie",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Vary",
        "WWW-Authenticate",
    )
)
"""Headers a claim may never be mapped to: framing, hop-by-hop, auth, or our own."""
_NAME_RE = re.compile(NAME_PATTERN)
_KID_RE = re.compile(KID_PATTERN)
_HEADER_RE = re.compile(HEADER_PATTERN)
_CLAIM_RE = re.compile(CLAIM_PATTERN)

_SPEC_FIELDS = frozenset(
    {
        "algorithm",
        "keySize",
        "rotation",
        "secretName",
        "configMapName",
        "issuer",
        "jwksUri",
        "revokedKeys",
        "deletionPolicy",
        "verification",
    }
)
_ROTATION_FIELDS = frozenset({"interval", "prePublish", "retireAfter"})
_VERIFICATION_FIELDS = frozenset(
    {"issuer", "audiences", "requiredClaims", "leeway", "maxTokenAge", "claimHeaders"}
)


class SpecError(ValueError):
    """An invalid spec; ``problems`` lists every one found, each prefixed by its field path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class VerificationPolicy:
    """What the gateway ``/verify`` endpoint demands of a token, beyond a valid signature."""

    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    required_claims: tuple[str, ...] = ()
    leeway: timedelta = DEFAULT_LEEWAY
    max_token_age: timedelta | None = None
    claim_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class KeySetSpec:
    name: str
    algorithm: str = DEFAULT_ALGORITHM
    key_size: int | None = DEFAULT_RSA_KEY_SIZE
    interval: timedelta = DEFAULT_INTERVAL
    pre_publish: timedelta = DEFAULT_PRE_PUBLISH
    retire_after: timedelta = DEFAULT_RETIRE_AFTER
    secret_name: str = ""
    config_map_name: str = ""
    issuer: str | None = None
    jwks_uri: str | None = None
    revoked_keys: frozenset[str] = frozenset()
    deletion_policy: DeletionPolicy = "Retain"
    verification: VerificationPolicy = field(default_factory=VerificationPolicy)

    @property
    def key_params(self) -> tuple[str, int | None]:
        """What a new key is made of; a key whose params differ is from an older spec."""
        return (self.algorithm, self.key_size)

    @property
    def published_jwks_uri(self) -> str | None:
        """Where discovery documents point verifiers: explicit, else under the issuer."""
        if self.jwks_uri:
            return self.jwks_uri
        if self.issuer:
            return self.issuer.rstrip("/") + "/.well-known/jwks.json"
        return None


class _Collector:
    """Gathers problems so that one parse reports all of them."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, value: object, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, f"must be an object, not {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.add(
                    f"{path}.{key}" if isinstance(key, str) else path,
                    f"unknown field (allowed: {', '.join(sorted(allowed))})",
                )
        return value

    def duration(self, value: object, path: str, default: timedelta) -> timedelta | None:
        if value is None:
            return default
        if not isinstance(value, str):
            self.add(path, f"must be a duration string like 90s, 15m or 720h, not {_kind(value)}")
            return None
        try:
            parsed = parse_duration(value)
        except DurationError as error:
            self.add(path, str(error))
            return None
        if parsed <= timedelta(0):
            self.add(path, f"{_show(value)} must be longer than zero")
            return None
        return parsed

    def name(self, value: object, path: str, default: str) -> str:
        if value is None:
            value = default
        if not isinstance(value, str) or len(value) > NAME_MAX or not _NAME_RE.match(value):
            self.add(
                path,
                f"{_show(value)} is not a valid Kubernetes object name "
                "(lowercase letters, digits, '-' and '.', at most 253 characters)",
            )
        return value if isinstance(value, str) else default

    def url(self, value: object, path: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > 2048:
            self.add(path, f"must be an absolute https:// or http:// URL, not {_kind(value)}")
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            self.add(path, f"{_show(value)} is not an absolute https:// or http:// URL")
            return None
        if parts.query or parts.fragment:
            self.add(path, f"{_show(value)} must not have a query or fragment")
            return None
        return value

    def strings(self, value: object, path: str, pattern: re.Pattern[str], what: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, f"must be a list of {what}, not {_kind(value)}")
            return []
        result = []
        for index, item in enumerate(value):
            if isinstance(item, str) and pattern.match(item):
                result.append(item)
            else:
                self.add(f"{path}[{index}]", f"{_show(item)} is not a valid {what}")
        return result


def parse_spec(name: str, raw: object) -> KeySetSpec:
    """Validate a JwksKeySet ``spec`` (plain JSON-like data) and apply the defaults."""
    check = _Collector()
    if not isinstance(name, str) or len(name) > NAME_MAX or not _NAME_RE.match(name):
        check.add("metadata.name", f"{_show(name)} is not a valid Kubernetes object name")
        name = "invalid"
    spec = check.mapping(raw, "spec", _SPEC_FIELDS)

    algorithm = spec.get("algorithm", DEFAULT_ALGORITHM)
    if algorithm not in ALGORITHM_NAMES:
        check.add(
            "spec.algorithm",
            f"{_show(algorithm)} is not supported (allowed: {', '.join(ALGORITHM_NAMES)})",
        )
        algorithm = None

    key_size = _key_size(check, algorithm, spec.get("keySize"))

    rotation = check.mapping(spec.get("rotation"), "spec.rotation", _ROTATION_FIELDS)
    interval = check.duration(rotation.get("interval"), "spec.rotation.interval", DEFAULT_INTERVAL)
    pre_publish = check.duration(
        rotation.get("prePublish"), "spec.rotation.prePublish", DEFAULT_PRE_PUBLISH
    )
    retire_after = check.duration(
        rotation.get("retireAfter"), "spec.rotation.retireAfter", DEFAULT_RETIRE_AFTER
    )
    if interval is not None and pre_publish is not None and pre_publish >= interval:
        check.add(
            "spec.rotation.prePublish",
            "must be shorter than spec.rotation.interval, so that the next key is published "
            "before the active one's time is up",
        )

    secret_name = check.name(spec.get("secretName"), "spec.secretName", f"{name}-signing")
    config_map_name = check.name(spec.get("configMapName"), "spec.configMapName", f"{name}-jwks")
    issuer = check.url(spec.get("issuer"), "spec.issuer")
    jwks_uri = check.url(spec.get("jwksUri"), "spec.jwksUri")
    revoked = check.strings(
        spec.get("revokedKeys"), "spec.revokedKeys", _KID_RE, "kid (base64url, 1-128 characters)"
    )

    deletion_policy = spec.get("deletionPolicy", "Retain")
    if deletion_policy not in ("Retain", "Delete"):
        check.add(
            "spec.deletionPolicy", f"{_show(deletion_policy)} is not allowed (Retain or Delete)"
        )
        deletion_policy = "Retain"

    verification = _verification(check, spec.get("verification"), issuer)

    if check.problems:
        raise SpecError(check.problems)
    assert algorithm is not None and interval and pre_publish and retire_after
    return KeySetSpec(
        name=name,
        algorithm=algorithm,
        key_size=key_size,
        interval=interval,
        pre_publish=pre_publish,
        retire_after=retire_after,
        secret_name=secret_name,
        config_map_name=config_map_name,
        issuer=issuer,
        jwks_uri=jwks_uri,
        revoked_keys=frozenset(revoked),
        deletion_policy=deletion_policy,
        verification=verification,
    )


def _key_size(check: _Collector, algorithm: str | None, value: object) -> int | None:
    if algorithm is None:
        return None
    if not is_rsa(algorithm):
        if value is not None:
            check.add("spec.keySize", f"is only for RSA algorithms, not {algorithm}")
        return None
    if value is None:
        return DEFAULT_RSA_KEY_SIZE
    if isinstance(value, bool) or not isinstance(value, int) or value not in RSA_KEY_SIZES:
        check.add(
            "spec.keySize",
            f"{_show(value)} is not allowed for {algorithm} "
            f"(allowed: {', '.join(map(str, RSA_KEY_SIZES))})",
        )
        return None
    return value


def _verification(check: _Collector, raw: object, issuer: str | None) -> VerificationPolicy:
    section = check.mapping(raw, "spec.verification", _VERIFICATION_FIELDS)
    path = "spec.verification"
    expected_issuer = check.url(section.get("issuer"), f"{path}.issuer") or issuer
    audiences = section.get("audiences")
    audience_list: list[str] = []
    if audiences is not None:
        if not isinstance(audiences, list):
            check.add(f"{path}.audiences", f"must be a list of strings, not {_kind(audiences)}")
        else:
            for index, item in enumerate(audiences):
                if isinstance(item, str) and 0 < len(item) <= 512:
                    audience_list.append(item)
                else:
                    check.add(f"{path}.audiences[{index}]", f"{_show(item)} is not an audience")
    claims = check.strings(
        section.get("requiredClaims"), f"{path}.requiredClaims", _CLAIM_RE, "claim name"
    )
    leeway = check.duration(section.get("leeway"), f"{path}.leeway", DEFAULT_LEEWAY)
    max_age = None
    if section.get("maxTokenAge") is not None:
        max_age = check.duration(section.get("maxTokenAge"), f"{path}.maxTokenAge", DEFAULT_LEEWAY)
    headers: list[tuple[str, str]] = []
    raw_headers = section.get("claimHeaders")
    if raw_headers is not None:
        if not isinstance(raw_headers, Mapping):
            check.add(f"{path}.claimHeaders", f"must be an object, not {_kind(raw_headers)}")
        else:
            for claim, header in raw_headers.items():
                where = f"{path}.claimHeaders.{claim}"
                if not isinstance(claim, str) or not _CLAIM_RE.match(claim):
                    check.add(where, "is not a valid claim name")
                elif not isinstance(header, str) or not _HEADER_RE.match(header):
                    check.add(where, f"{_show(header)} is not a valid HTTP header name")
                elif header.lower() in RESERVED_CLAIM_HEADERS:
                    check.add(
                        where,
                        f"{_show(header)} is reserved (framing, hop-by-hop, auth or "
                        "X-Auth-Subject/-Issuer/-Kid)",
                    )
                elif header.lower() in {h.lower() for _, h in headers}:
                    check.add(where, f"{_show(header)} is already mapped from another claim")
                else:
                    headers.append((claim, header))
    return VerificationPolicy(
        issuer=expected_issuer,
        audiences=tuple(audience_list),
        required_claims=tuple(claims),
        leeway=leeway or DEFAULT_LEEWAY,
        max_token_age=max_age,
        claim_headers=tuple(sorted(headers)),
    )


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str) else _kind(value)
    return text if len(text) <= 80 else text[:77] + "..."
