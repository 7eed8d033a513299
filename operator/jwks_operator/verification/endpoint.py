"""``/{namespace}/{name}/verify``: the HTTP answer a gateway's forward-auth call gets.

Framework-free (the server hands over method, lower-cased headers and the raw query), so
every status and header is unit-testable without a socket. It runs on the event loop:
the work is bounded (token size-capped, one signature check of 30-120 us) and a thread
hop would cost more than the verification itself.

Statuses: 200 with identity headers; 401 with an RFC 6750 ``WWW-Authenticate`` challenge
(no error code when there is no bearer token at all, as RFC 6750 3.1 asks, so that a
login flow can start); 400 ``invalid_request`` for a malformed Authorization header or a
bad override; 503 while the keyset has no usable verifier. A bad token is never a 5xx.
"""

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from jwks_operator.verification import metrics
from jwks_operator.verification.policy import (
    NO_OVERRIDES,
    OverrideError,
    PolicyError,
    parse_overrides,
    parse_policy,
)
from jwks_operator.verification.verdict import Accepted, Reason, Refused
from jwks_operator.verification.verifier import TokenVerifier

COOKIE_PARAMETER: Final = "cookie"
"""Query parameter naming a cookie to read the token from when there is no Authorization
header (browser sessions behind a gateway). Set in the gateway's configured URL."""

_BEARER_RE = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9._~+/-]+=*) *")
_SCHEME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_COOKIE_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_DESCRIPTION_UNSAFE_RE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
_NO_STORE: Final = ("Cache-Control", "no-store")
_BEARER_PREFIXES: Final = frozenset({"Bearer ", "bearer "})

Response = tuple[int, Sequence[tuple[str, str]], bytes]


def handle_verify(entry: Any, method: str, headers: Mapping[str, str], query: str) -> Response:
    """Called by the server (``server/app.py``); ``entry.verifier`` is ours or None."""
    verifier = getattr(entry, "verifier", None)
    if verifier is not None and not isinstance(verifier, TokenVerifier):
        verifier = None
    return _answer(verifier, headers, query, time.time(), entry, None)


def answer(
    verifier: TokenVerifier | None,
    headers: Mapping[str, str],
    query: str,
    now: datetime,
    unavailable: Callable[[], str] = lambda: "this keyset has no usable verification policy",
) -> Response:
    """The response to one verify request; header strings are latin-1 views of the wire
    bytes in both directions, as the server's hook contract has them."""
    return _answer(verifier, headers, query, now.timestamp(), None, unavailable)


def _answer(
    verifier: TokenVerifier | None,
    headers: Mapping[str, str],
    query: str,
    moment: float,
    entry: Any,
    unavailable: Callable[[], str] | None,
) -> Response:
    """The 503's text comes from ``unavailable`` or else ``_why(entry)``: no closure is
    built per request for a branch a serving keyset never takes."""
    if query:
        query, cookie_name = _split_cookie_parameter(query)
        overrides = parse_overrides(query)
        if isinstance(overrides, OverrideError):
            return _refuse(Refused(Reason.BAD_OVERRIDE, str(overrides), "invalid_request"))
        if cookie_name is not None and not _COOKIE_NAME_RE.fullmatch(cookie_name):
            return _refuse(
                Refused(Reason.BAD_OVERRIDE, "cookie is not a valid cookie name", "invalid_request")
            )
    else:
        overrides, cookie_name = NO_OVERRIDES, None
    if verifier is None:
        metrics.count("unavailable", "no_verifier")
        why = unavailable() if unavailable is not None else _why(entry)
        body = _json({"error": "verification_unavailable", "error_description": why})
        return 503, (("Content-Type", "application/json"), _NO_STORE), body
    token = _bearer_token(headers, cookie_name)
    if isinstance(token, Refused):
        return _refuse(token)
    verdict = verifier.verify_at(token, moment, overrides)
    if isinstance(verdict, Refused):
        return _refuse(verdict)
    return _accept(verdict)


def _accept(verdict: Accepted) -> Response:
    metrics.count("valid", "ok")
    headers = [
        pair if pair[1].isascii() else (pair[0], pair[1].encode("utf-8").decode("latin-1"))
        for pair in verdict.headers
    ]
    headers.append(_NO_STORE)
    return 200, headers, b""


def _why(entry: Any) -> str:
    """Why a keyset that exists cannot verify: its JWKS state or its policy's error.

    Only on the 503 path, so re-parsing the (public) policy here costs nothing in the
    common case and saves an operator a trip to the server's logs.
    """
    reason = getattr(entry, "unavailable", None)
    if isinstance(reason, str) and reason:
        return reason
    text = getattr(entry, "verification", None)
    try:
        parse_policy(text if isinstance(text, str) else None, None)
    except PolicyError as error:
        return str(error)
    return "this keyset has no usable verification policy"


def _refuse(refusal: Refused) -> Response:
    metrics.count(
        refusal.error if refusal.reason != Reason.MISSING_TOKEN else "missing", refusal.reason.value
    )
    description = _DESCRIPTION_UNSAFE_RE.sub("?", refusal.description.replace('"', "'"))[:200]
    if refusal.reason == Reason.MISSING_TOKEN:
        challenge = "Bearer"
        body = _json({"error": "missing_token", "error_description": description})
    else:
        challenge = f'Bearer error="{refusal.error}", error_description="{description}"'
        body = _json(
            {
                "error": refusal.error,
                "error_description": description,
                "reason": refusal.reason.value,
            }
        )
    return (
        refusal.status,
        (
            ("WWW-Authenticate", challenge),
            ("Content-Type", "application/json"),
            _NO_STORE,
        ),
        body,
    )


def _bearer_token(headers: Mapping[str, str], cookie_name: str | None) -> str | Refused:
    authorization = headers.get("authorization")
    if authorization is not None:
        # The scheme as every client spells it needs no regex; other spellings are read.
        if authorization[:7] not in _BEARER_PREFIXES:
            scheme = _SCHEME_RE.match(authorization)
            if scheme is None or scheme.group().lower() != "bearer":
                # Another scheme (Basic from a browser...) is "no bearer token", not an error.
                return Refused(Reason.MISSING_TOKEN, "no bearer token", "invalid_token")
        match = _BEARER_RE.fullmatch(authorization)
        if match is None:
            return Refused(
                Reason.MALFORMED_REQUEST,
                "Authorization header is not 'Bearer <token>' (one token, no commas)",
                "invalid_request",
            )
        return match.group(1)
    if cookie_name is not None:
        token = _cookie(headers.get("cookie"), cookie_name)
        if token:
            return token
    return Refused(Reason.MISSING_TOKEN, "no bearer token", "invalid_token")


def _cookie(header: str | None, name: str) -> str | None:
    """The named cookie's value; parsed by hand because SimpleCookie is lenient and slow."""
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def _split_cookie_parameter(query: str) -> tuple[str, str | None]:
    """Take ``cookie=NAME`` out of the query; the rest are policy overrides."""
    if COOKIE_PARAMETER + "=" not in query:
        return query, None
    kept: list[str] = []
    name: str | None = None
    for part in query.split("&"):
        if part.startswith(COOKIE_PARAMETER + "=") and name is None:
            name = part[len(COOKIE_PARAMETER) + 1 :]
        else:
            kept.append(part)
    return "&".join(kept), name


def _json(document: Mapping[str, str]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
