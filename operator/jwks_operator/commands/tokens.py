"""``jwks-operator sign`` and ``jwks-operator verify``: a token from a keyset, and back.

``sign`` exists for demos, smoke tests and scripts (real services sign with their own
library and the mounted ``signing.pem``); it uses ``core.tokens.sign_token``. ``verify``
goes through the same ``TokenVerifier`` as the server's ``/verify`` endpoint, so that
what the CLI accepts and refuses (``none``, HMAC, algorithm confusion, unknown kid,
expiry) is one implementation. The algorithm is taken from the published key the token's
``kid`` names, never from the token: the header only selects a key.

Exit status: 0 success, 1 the token was refused (``verify``) or the key could not be read
(``sign``), 2 bad usage (arguments, claims JSON, durations, unknown keyset, bad JWKS).
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from jwks_operator.commands import kubeflags
from jwks_operator.core.algorithms import ALGORITHM_NAMES
from jwks_operator.core.durations import DurationError, format_duration, parse_duration
from jwks_operator.core.guard import UnsafeJwksError, parse_public_jwks
from jwks_operator.core.keys import KeyMaterial
from jwks_operator.core.tokens import sign_token
from jwks_operator.standalone.config import parse_keyset_ref
from jwks_operator.standalone.keysource import (
    KeySourceError,
    key_from_kubernetes,
    key_from_state_dir,
)
from jwks_operator.verification import Accepted, Refused, build_verifier
from jwks_operator.verification.compact import MalformedTokenError, decode_object, split_token

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
MAX_JWKS_BYTES: Final = 1024 * 1024
FETCH_TIMEOUT: Final = 10.0
MAX_TTL: Final = timedelta(days=366)


class UsageError(Exception):
    """Bad input from the user: reported with exit status 2."""


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    _register_sign(subparsers)
    _register_verify(subparsers)


def _register_sign(subparsers: "argparse._SubParsersAction[Any]") -> None:
    parser = subparsers.add_parser(
        "sign",
        help="print a JWT signed by a keyset's active key",
        description="Print a compact JWT signed by the keyset's active key (kid in the header; "
        "iat, nbf and exp set unless --claims sets them).",
    )
    parser.add_argument("--keyset", required=True, metavar="NAMESPACE/NAME", type=parse_keyset_ref)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--state-dir", type=Path, help="standalone mode's state directory")
    source.add_argument(
        "--kube", action="store_true", help="read the keyset's Secret through the kubeconfig"
    )
    kubeflags.add_arguments(parser, note=" (with --kube)", limits=False)
    parser.add_argument("--claims", default="{}", help="JSON object of claims (default {})")
    parser.add_argument("--ttl", default="5m", help="lifetime, e.g. 90s, 5m, 1h (default 5m)")
    parser.add_argument("--issuer", help="iss claim")
    parser.add_argument("--audience", action="append", help="aud claim (repeatable)")
    parser.add_argument("--subject", help="sub claim")
    parser.set_defaults(handler=handle_sign)


def _register_verify(subparsers: "argparse._SubParsersAction[Any]") -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify a JWT against a JWKS and print its claims",
        description="Verify a compact JWT against a JWKS (URL or file). Prints the claims as "
        "JSON and exits 0, or prints why not and exits 1. Unsigned (none) and HMAC tokens are "
        "always refused; the algorithm comes from the published key, not from the token.",
    )
    parser.add_argument("token", metavar="TOKEN", help="the compact JWT, or - to read stdin")
    parser.add_argument("--jwks", required=True, metavar="URL_OR_FILE")
    parser.add_argument("--issuer", help="required iss")
    parser.add_argument("--audience", action="append", help="accepted aud (repeatable)")
    parser.add_argument("--leeway", default="60s", help="clock skew allowed (default 60s)")
    parser.add_argument(
        "--algorithm",
        choices=ALGORITHM_NAMES,
        help="for JWKS keys without an alg member: the algorithm they verify",
    )
    parser.set_defaults(handler=handle_verify)


def _fail(command: str, message: str, status: int) -> int:
    print(f"jwks-operator {command}: error: {message}", file=sys.stderr)
    return status


def _duration(text: str, option: str) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError as error:
        raise UsageError(f"{option}: {error}") from None


# -- sign ---------------------------------------------------------------------------------


def build_claims(args: argparse.Namespace, now: int) -> dict[str, Any]:
    try:
        claims = json.loads(args.claims)
    except ValueError as error:
        raise UsageError(f"--claims is not valid JSON ({error})") from None
    if not isinstance(claims, dict):
        raise UsageError('--claims must be a JSON object, like \'{"scope": "read"}\'')
    ttl = _duration(args.ttl, "--ttl")
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise UsageError(f"--ttl must be longer than zero and at most {MAX_TTL.days} days")
    claims.setdefault("iat", now)
    claims.setdefault("nbf", now)
    claims.setdefault("exp", now + int(ttl.total_seconds()))
    if args.issuer is not None:
        claims["iss"] = args.issuer
    if args.subject is not None:
        claims["sub"] = args.subject
    if args.audience:
        claims["aud"] = args.audience[0] if len(args.audience) == 1 else list(args.audience)
    return claims


def handle_sign(args: argparse.Namespace) -> int:
    namespace, name = args.keyset
    try:
        claims = build_claims(args, int(time.time()))
        material: KeyMaterial
        if args.kube:
            problem = kubeflags.kubeconfig_problem(args.kubeconfig)
            if problem is not None:
                raise UsageError(problem)
            material = key_from_kubernetes(namespace, name, args.context, args.kubeconfig)
        else:
            for flag in ("context", "kubeconfig"):
                if getattr(args, flag) is not None:
                    raise UsageError(f"--{flag} only goes with --kube")
            found = key_from_state_dir(args.state_dir, namespace, name)
            if found.warning is not None:
                print(f"jwks-operator sign: warning: {found.warning}", file=sys.stderr)
            material = found.material
    except UsageError as error:
        return _fail("sign", str(error), EXIT_USAGE)
    except KeySourceError as error:
        return _fail("sign", str(error), EXIT_USAGE if error.usage else EXIT_REFUSED)
    print(sign_token(material, claims))
    return EXIT_OK


# -- verify -------------------------------------------------------------------------------


def load_jwks(source: str) -> dict[str, Any]:
    """Fetch (http/https) or read the JWKS; UsageError when it is not a usable public set."""
    scheme = urlsplit(source).scheme
    if scheme in ("http", "https"):
        # The scheme is checked just above: only http(s), never file: or ftp:.
        request = urllib.request.Request(source, headers={"Accept": "application/json"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:  # noqa: S310
                raw = response.read(MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise UsageError(f"--jwks {source}: HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise UsageError(f"--jwks {source}: cannot fetch ({reason})") from None
    elif scheme and len(scheme) > 1:
        raise UsageError(f"--jwks {source}: only http(s) URLs and files are supported")
    else:
        try:
            raw = Path(source).read_bytes()[: MAX_JWKS_BYTES + 1]
        except OSError as error:
            raise UsageError(f"--jwks {source}: {error.strerror}") from None
    if len(raw) > MAX_JWKS_BYTES:
        raise UsageError(f"--jwks {source}: larger than {MAX_JWKS_BYTES} bytes")
    try:
        return parse_public_jwks(raw)
    except UnsafeJwksError as error:
        raise UsageError(f"--jwks {source}: not a public JWKS ({error})") from None


def choose_algorithm(token: str, jwks: Mapping[str, Any], fallback: str | None) -> str:
    """The algorithm of the published key the token's kid names (never the token's alg)."""
    keys: list[Mapping[str, Any]] = list(jwks["keys"])
    kid: object = None
    try:
        header = decode_object(split_token(token)[0], "header")
        kid = header.get("kid")
    except MalformedTokenError:
        pass  # the verifier reports it
    chosen = next((key for key in keys if key.get("kid") == kid), None)
    if chosen is not None:
        alg = chosen.get("alg")
        if isinstance(alg, str):
            return alg
        if fallback is None:
            raise UsageError(
                f"JWKS key {kid} declares no alg: pass --algorithm to say what it verifies"
            )
        return fallback
    # Unknown kid (or none): any algorithm of the set gives the right refusal.
    declared = next((key["alg"] for key in keys if isinstance(key.get("alg"), str)), None)
    return fallback or declared or "RS256"


def verify_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str | None,
    audiences: list[str],
    leeway: timedelta,
    algorithm: str | None,
    now: datetime,
) -> Accepted | Refused:
    policy = {
        "algorithm": choose_algorithm(token, jwks, algorithm),
        "issuer": issuer,
        "audiences": audiences,
        "leeway": format_duration(leeway),
    }
    verifier = build_verifier(jwks, json.dumps(policy))
    verdict = verifier.verify(token, now)
    assert isinstance(verdict, Accepted | Refused)
    return verdict


def handle_verify(args: argparse.Namespace) -> int:
    try:
        token = sys.stdin.read().strip() if args.token == "-" else args.token.strip()
        if not token:
            raise UsageError("no token given")
        leeway = _duration(args.leeway, "--leeway")
        if leeway > timedelta(hours=1):
            raise UsageError("--leeway may be at most 1h")
        jwks = load_jwks(args.jwks)
        verdict = verify_token(
            token,
            jwks,
            issuer=args.issuer,
            audiences=list(args.audience or []),
            leeway=leeway,
            algorithm=args.algorithm,
            now=datetime.now(UTC),
        )
    except UsageError as error:
        return _fail("verify", str(error), EXIT_USAGE)
    except ValueError as error:  # a policy the verifier refuses (e.g. a bad issuer)
        return _fail("verify", str(error), EXIT_USAGE)
    if isinstance(verdict, Refused):
        print(f"token refused ({verdict.reason.value}): {verdict.description}", file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(dict(verdict.claims), indent=2, sort_keys=True))
    print(f"verified: signed by kid {verdict.kid}", file=sys.stderr)
    return EXIT_OK
