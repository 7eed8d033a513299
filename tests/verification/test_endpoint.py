"""The HTTP answer (status, headers, body) for every kind of request, without a socket."""

import json
from typing import Any

import pytest

from jwks_operator.verification import build_verifier, handle_verify, metrics_text
from jwks_operator.verification.endpoint import answer
from jwks_operator.verification.metrics import snapshot
from jwks_operator.verification.policy import parse_overrides
from tests.verification.helpers import NOW, NOW_TS, claims, jwks, material, policy_json, token

KEY = material("ES256")
VERIFIER = build_verifier(jwks(KEY), policy_json("ES256", claimHeaders={"email": "X-Auth-Email"}))


def call(headers: dict[str, str] | None = None, query: str = "") -> tuple[int, dict[str, str], Any]:
    status, response_headers, body = answer(VERIFIER, headers or {}, query, NOW)
    as_dict = dict(response_headers)
    assert len(as_dict) == len(response_headers), "a header was sent twice"
    return status, as_dict, json.loads(body) if body else None


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def test_a_valid_token_gets_200_with_identity_headers_and_no_body() -> None:
    status, headers, body = call(bearer(token(KEY, claims(email="a@example.com"))))
    assert status == 200 and body is None
    assert headers["X-Auth-Subject"] == "alice"
    assert headers["X-Auth-Kid"] == KEY.kid
    assert headers["X-Auth-Email"] == "a@example.com"
    assert headers["Cache-Control"] == "no-store"


def test_an_invalid_token_gets_401_with_an_rfc6750_challenge() -> None:
    status, headers, body = call(bearer(token(KEY, claims(exp=NOW_TS - 3600))))
    assert status == 401
    assert headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="token expired"'
    )
    assert body == {
        "error": "invalid_token",
        "error_description": "token expired",
        "reason": "expired",
    }
    assert "X-Auth-Subject" not in headers


def test_without_any_token_the_challenge_has_no_error_code() -> None:
    for headers in ({}, {"authorization": "Basic YWxpY2U6cHc="}, {"cookie": "session=abc"}):
        status, response, body = call(headers)
        assert status == 401
        assert response["WWW-Authenticate"] == "Bearer"
        assert body["error"] == "missing_token"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a,b",
        "Bearer a, Bearer b",
        "Bearer\ta",
        'Bearer a"b',
        "Bearer é",
    ],
)
def test_a_malformed_authorization_header_is_400_invalid_request(authorization: str) -> None:
    status, headers, body = call({"authorization": authorization})
    assert status == 400
    assert headers["WWW-Authenticate"].startswith('Bearer error="invalid_request"')
    assert body["reason"] == "malformed_request"


def test_the_scheme_is_case_insensitive() -> None:
    assert call({"authorization": f"bEaReR {token(KEY)}"})[0] == 200


def test_descriptions_cannot_break_out_of_the_quoted_string() -> None:
    from jwks_operator.verification.endpoint import _refuse
    from jwks_operator.verification.verdict import Reason, Refused

    _, headers, _ = _refuse(Refused(Reason.MALFORMED_TOKEN, 'say "hi"\\\r\nX-Evil: 1 é'))
    challenge = dict(headers)["WWW-Authenticate"]
    description = challenge.split('error_description="', 1)[1]
    assert description.endswith('"') and '"' not in description[:-1]
    assert "\\" not in challenge and "\r" not in challenge and "\n" not in challenge
    assert challenge.isascii()


def test_the_token_may_come_from_a_named_cookie() -> None:
    cookie = {"cookie": f"theme=dark; session={token(KEY)}; other=1"}
    assert call(cookie, "cookie=session")[0] == 200
    assert call({"cookie": f'session="{token(KEY)}"'}, "cookie=session")[0] == 200
    assert call(cookie)[0] == 401  # no cookie configured: Authorization only
    assert call(cookie, "cookie=absent")[0] == 401
    # The header wins over the cookie.
    expired = token(KEY, claims(exp=NOW_TS - 3600))
    assert call({**cookie, **bearer(expired)}, "cookie=session")[0] == 401
    assert call(cookie, "cookie=bad;name")[0] == 400


@pytest.mark.parametrize(
    "query",
    [
        "audiance=api",
        "audience=",
        "leeway=5",
        "leeway=2h",
        "leeway=1s&leeway=2s",
        "issuer=a&issuer=b",
        "max_age=0s",
        "max_age=-5m",
        "require=a%20b",
        "require=" + "x" * 65,
        "audience=" + "a" * 513,
        "a" * 5000,
        "x=1;y=2",
        "issuer=%0d%0aX-Evil:1",
    ],
)
def test_bad_overrides_are_400_even_without_a_token(query: str) -> None:
    status, headers, body = call({}, query)
    assert status == 400
    assert body["reason"] == "bad_override"
    assert "\n" not in headers["WWW-Authenticate"]


def test_good_overrides_apply() -> None:
    signed = token(KEY, claims(aud="billing", tenant="t1", iat=NOW_TS - 180))
    assert call(bearer(signed))[0] == 401
    assert call(bearer(signed), "audience=other&audience=billing")[0] == 200
    assert call(bearer(signed), "audience=billing&require=tenant&leeway=30s")[0] == 200
    assert call(bearer(signed), "audience=billing&require=group")[0] == 401
    assert call(bearer(signed), "audience=billing&max_age=1m")[0] == 401
    assert call(bearer(signed), "audience=billing&max_age=1h")[0] == 200
    other_issuer = token(KEY, claims(iss="https://login.example/"))
    assert call(bearer(other_issuer), "issuer=https%3A%2F%2Flogin.example%2F")[0] == 200


def test_override_parsing_is_cached_per_query() -> None:
    assert parse_overrides("audience=x&leeway=5s") is parse_overrides("audience=x&leeway=5s")


def test_a_keyset_without_a_usable_verifier_is_503_not_a_token_error() -> None:
    status, headers, body = answer(None, bearer(token(KEY)), "", NOW)
    assert status == 503
    assert dict(headers)["Cache-Control"] == "no-store"
    assert json.loads(body)["error"] == "verification_unavailable"


def test_the_server_hook_reads_the_verifier_from_the_entry() -> None:
    class Entry:
        verifier = VERIFIER

    status, headers, _ = handle_verify(Entry(), "POST", bearer(token(KEY)), "")
    # Real clock: our fixed-time token is long expired or not yet valid, never accepted.
    assert status == 401
    assert dict(headers)["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_results_are_counted_by_result_and_reason() -> None:
    before = snapshot()
    call(bearer(token(KEY)))
    call(bearer("x.y.z"))
    call({"authorization": "Bearer a b"})
    after = snapshot()

    def grew(key: tuple[str, str]) -> int:
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("valid", "ok")) == 1
    assert grew(("invalid_token", "malformed_token")) == 1
    assert grew(("invalid_request", "malformed_request")) == 1
    text = metrics_text()
    assert "# TYPE jwks_verifications_total counter" in text
    assert 'jwks_verifications_total{result="valid",reason="ok"}' in text


def test_nothing_in_a_response_repeats_the_token() -> None:
    forged = token(material("ES256", 1), kid=KEY.kid)
    status, headers, body = answer(VERIFIER, bearer(forged), "", NOW)
    assert status == 401
    blob = repr(headers) + body.decode()
    for part in forged.split("."):
        assert part not in blob


def test_a_keyset_with_a_broken_policy_says_why_in_the_503() -> None:
    class Entry:
        verifier = None
        unavailable: str | None = None
        verification = policy_json("HS256")

    status, _, body = handle_verify(Entry(), "GET", bearer(token(KEY)), "")
    assert status == 503
    assert "HS256" in json.loads(body)["error_description"]

    class NoKeys(Entry):
        unavailable = "the keyset has no published keys yet"

    assert (
        "no published keys"
        in json.loads(handle_verify(NoKeys(), "GET", {}, "")[2])["error_description"]
    )


def test_non_ascii_identities_travel_as_utf8_bytes() -> None:
    """The hook's strings are latin-1 views of wire bytes: UTF-8 must be pre-encoded."""
    status, headers, _ = call(bearer(token(KEY, claims(sub="Zoë 山田"))))
    assert status == 200
    wire = headers["X-Auth-Subject"].encode("latin-1")
    assert wire.decode("utf-8") == "Zoë 山田"
