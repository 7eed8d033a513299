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

from jwks_operator.core.algorithms import DEFAULT_RSA_KEY_SIZE, is_rsa
from jwks_operator.core.durations import DurationError, format_duration, parse_duration
from jwks_operator.core.specfields import (
    CLAIM_PATTERN,
    DEFAULT_ALGORITHM,
    DEFAULT_INTERVAL,
    DEFAULT_LEEWAY,
    DEFAULT_PRE_PUBLISH,
    DEFAULT_RETIRE_AFTER,
    HEADER_PATTERN,
    KID_PATTERN,
    NAME_MAX,
    NAME_PATTERN,
    NAMESPACE_PATTERN,
    ROTATION,
    SPEC,
    VERIFICATION,
    Choice,
    Duration,
    ListOf,
    MapOf,
    Section,
    Text,
)

__all__ = [
    "CLAIM_PATTERN",
    "DEFAULT_ALGORITHM",
    "DEFAULT_INTERVAL",
    "DEFAULT_LEEWAY",
    "DEFAULT_PRE_PUBLISH",
    "DEFAULT_RETIRE_AFTER",
    "HEADER_PATTERN",
    "KID_PATTERN",
    "NAMESPACE_PATTERN",
    "NAME_MAX",
    "NAME_PATTERN",
    "RESERVED_CLAIM_HEADERS",
    "KeySetSpec",
    "SpecError",
    "VerificationPolicy",
    "parse_spec",
    "parse_verification",
]

DeletionPolicy = Literal["Retain", "Delete"]

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
_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


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
    """Gathers problems so that one parse reports all of them; every limit comes from the
    table in ``specfields`` (the one the CRD is generated from)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, value: object, path: str, section: Section) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, f"must be an object, not {_kind(value)}")
            return {}
        allowed = sorted(section.fields)
        for key in value:
            if key not in section.fields:
                self.add(
                    f"{path}.{key}" if isinstance(key, str) else path,
                    f"unknown field (allowed: {', '.join(allowed)})",
                )
        return value

    def duration(self, value: object, path: str, rule: Duration) -> timedelta | None:
        """The text's own limits; None (nothing reported) when unset and without default."""
        if value is None:
            return rule.default
        if not isinstance(value, str):
            self.add(path, f"must be a duration string like 90s, 15m or 720h, not {_kind(value)}")
            return None
        try:
            parsed = parse_duration(value)
        except DurationError as error:
            self.add(path, str(error))
            return None
        if parsed <= timedelta(0) and not (rule.zero_allowed and parsed == timedelta(0)):
            self.add(path, f"{_show(value)} must be longer than zero")
            return None
        return parsed

    def text(self, value: object, path: str, rule: Text) -> str | None:
        if value is None:
            return rule.default
        if not isinstance(value, str):
            self.add(path, f"must be a string ({rule.what}), not {_kind(value)}")
            return None
        if len(value) > rule.max_length:
            self.add(path, f"is longer than {rule.max_length} characters ({rule.what})")
            return None
        if len(value) < rule.min_length or (
            rule.pattern is not None and not _compiled(rule.pattern).fullmatch(value)
        ):
            self.add(path, f"{_show(value)} is not a valid {rule.what}")
            return None
        return value

    def choice(self, value: object, path: str, rule: Choice) -> Any:
        if value is None:
            return rule.default
        if isinstance(value, bool) or value not in rule.values or type(value) is float:
            allowed = ", ".join(map(str, rule.values))
            self.add(path, f"{_show(value)} is not allowed (allowed: {allowed})")
            return None
        return value

    def _container(self, value: object, path: str, rule: ListOf | MapOf) -> bool:
        """Whether ``value`` is the list or object ``rule`` wants, within its size."""
        kind: type[list[Any]] | type[Mapping[Any, Any]]
        if isinstance(rule, ListOf):
            kind, wanted, noun = list, f"a list of {rule.item.what}", "items"
        else:
            kind, wanted, noun = Mapping, "an object", "entries"
        if not isinstance(value, kind):
            self.add(path, f"must be {wanted}, not {_kind(value)}")
            return False
        if len(value) > rule.max_items:
            self.add(path, f"has {len(value)} {noun}, more than {rule.max_items}")
            return False
        return True

    def strings(self, value: object, path: str, rule: ListOf) -> list[str]:
        if value is None or not self._container(value, path, rule):
            return []
        assert isinstance(value, list)
        result: list[str] = []
        for index, item in enumerate(value):
            parsed = self.text(item, f"{path}[{index}]", rule.item)
            if parsed is None:
                continue
            if parsed in result:
                self.add(f"{path}[{index}]", f"{_show(item)} is listed twice")
            else:
                result.append(parsed)
        return result

    def pairs(self, value: object, path: str, rule: MapOf) -> list[tuple[str, str]]:
        if value is None or not self._container(value, path, rule):
            return []
        assert isinstance(value, Mapping)
        result = []
        for key, item in value.items():
            where = f"{path}.{key}"
            if not isinstance(key, str) or self.text(key, where, rule.key) is None:
                if not isinstance(key, str):
                    self.add(path, f"keys must be strings ({rule.key.what})")
                continue
            parsed = self.text(item, where, rule.value)
            if parsed is not None:
                result.append((key, parsed))
        return result


def _field(section: Section, name: str) -> Any:
    return section.fields[name]


def parse_spec(name: str, raw: object) -> KeySetSpec:
    """Validate a JwksKeySet ``spec`` (plain JSON-like data) and apply the defaults."""
    check = _Collector()
    if not isinstance(name, str) or len(name) > NAME_MAX or not _NAME_RE.fullmatch(name):
        check.add("metadata.name", f"{_show(name)} is not a valid Kubernetes object name")
        name = "invalid"
    spec = check.mapping(raw, "spec", SPEC)

    algorithm = check.choice(spec.get("algorithm"), "spec.algorithm", _field(SPEC, "algorithm"))
    key_size = _key_size(check, algorithm, spec.get("keySize"))

    rotation = check.mapping(spec.get("rotation"), "spec.rotation", ROTATION)
    interval, pre_publish, retire_after = (
        check.duration(rotation.get(key), f"spec.rotation.{key}", _field(ROTATION, key))
        for key in ("interval", "prePublish", "retireAfter")
    )
    if interval is not None and pre_publish is not None and pre_publish >= interval:
        check.add(
            "spec.rotation.prePublish",
            f"prePublish ({_in_force(rotation, 'prePublish', pre_publish)}) must be shorter "
            f"than interval ({_in_force(rotation, 'interval', interval)}), so that the next "
            "key is published before the active one's time is up",
        )

    # The default names derive from metadata.name, which may make them too long: checked too.
    secret_name = check.text(
        _given(spec, "secretName", f"{name}-signing"), "spec.secretName", _field(SPEC, "secretName")
    )
    config_map_name = check.text(
        _given(spec, "configMapName", f"{name}-jwks"),
        "spec.configMapName",
        _field(SPEC, "configMapName"),
    )
    issuer = check.text(spec.get("issuer"), "spec.issuer", _field(SPEC, "issuer"))
    jwks_uri = check.text(spec.get("jwksUri"), "spec.jwksUri", _field(SPEC, "jwksUri"))
    revoked = check.strings(
        spec.get("revokedKeys"), "spec.revokedKeys", _field(SPEC, "revokedKeys")
    )
    deletion_policy = check.choice(
        spec.get("deletionPolicy"), "spec.deletionPolicy", _field(SPEC, "deletionPolicy")
    )
    verification = _verification(check, spec.get("verification"), issuer)

    if check.problems:
        raise SpecError(check.problems)
    assert algorithm is not None and interval and pre_publish and retire_after
    assert secret_name is not None and config_map_name is not None
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


def parse_verification(raw: object, issuer: str | None = None) -> VerificationPolicy:
    """Validate a ``spec.verification`` section alone (what ``verification.json`` carries):
    the same table and the same code as ``parse_spec``; SpecError names every problem."""
    check = _Collector()
    policy = _verification(check, raw, issuer)
    if check.problems:
        raise SpecError(check.problems)
    return policy


def verification_section(policy: VerificationPolicy) -> dict[str, Any]:
    """A parsed policy back in ``spec.verification`` form (defaults applied): what the
    operator publishes, and what ``parse_verification`` reads back to the same value."""
    section: dict[str, Any] = {
        "audiences": list(policy.audiences),
        "requiredClaims": list(policy.required_claims),
        "leeway": format_duration(policy.leeway),
        "claimHeaders": dict(policy.claim_headers),
    }
    if policy.issuer is not None:
        section["issuer"] = policy.issuer
    if policy.max_token_age is not None:
        section["maxTokenAge"] = format_duration(policy.max_token_age)
    return section


def _given(section: Mapping[str, Any], key: str, default: str) -> object:
    value = section.get(key)
    return default if value is None else value


def _in_force(section: Mapping[str, Any], key: str, value: timedelta) -> str:
    """A value as the user sees it in force: their text, or ``default <value>``."""
    given = section.get(key)
    return given if isinstance(given, str) else f"default {format_duration(value)}"


def _key_size(check: _Collector, algorithm: str | None, value: object) -> int | None:
    if algorithm is None:
        return None
    if not is_rsa(algorithm):
        if value is not None:
            check.add("spec.keySize", f"is only for RSA algorithms, not {algorithm}")
        return None
    if value is None:
        return DEFAULT_RSA_KEY_SIZE
    rule = _field(SPEC, "keySize")
    if isinstance(value, bool) or not isinstance(value, int) or value not in rule.values:
        check.add(
            "spec.keySize",
            f"{_show(value)} is not allowed for {algorithm} "
            f"(allowed: {', '.join(map(str, rule.values))})",
        )
        return None
    return int(value)


def _verification(check: _Collector, raw: object, issuer: str | None) -> VerificationPolicy:
    path = "spec.verification"
    section = check.mapping(raw, path, VERIFICATION)
    expected_issuer = (
        check.text(section.get("issuer"), f"{path}.issuer", _field(VERIFICATION, "issuer"))
        or issuer
    )
    audiences = check.strings(
        section.get("audiences"), f"{path}.audiences", _field(VERIFICATION, "audiences")
    )
    claims = check.strings(
        section.get("requiredClaims"),
        f"{path}.requiredClaims",
        _field(VERIFICATION, "requiredClaims"),
    )
    leeway = check.duration(section.get("leeway"), f"{path}.leeway", _field(VERIFICATION, "leeway"))
    max_age = check.duration(
        section.get("maxTokenAge"), f"{path}.maxTokenAge", _field(VERIFICATION, "maxTokenAge")
    )
    headers: list[tuple[str, str]] = []
    pairs = check.pairs(
        section.get("claimHeaders"), f"{path}.claimHeaders", _field(VERIFICATION, "claimHeaders")
    )
    for claim, header in pairs:
        where = f"{path}.claimHeaders.{claim}"
        if header.lower() in RESERVED_CLAIM_HEADERS:
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
        audiences=tuple(audiences),
        required_claims=tuple(claims),
        leeway=DEFAULT_LEEWAY if leeway is None else leeway,
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
