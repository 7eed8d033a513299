"""The docs are the tests: every code block of the two verification guides is a file (or a
marked region of one) that a test runs, and the verifier table is the suite's own.

- A fenced block with a language in docs/verifying-tokens.md or docs/gateways.md must be,
  byte for byte, one of ``snippets()``: a region between ``snippet:start NAME`` and
  ``snippet:end NAME`` lines of a verifier program under tests/clients/, or a whole
  configuration file that a test starts a real program with. Blocks without a language are
  URL and path patterns (tests/deploy/test_docs.py checks the in-cluster URL).
- Every such region and file is published: renaming one cannot silently drop it.
- docs/verifying-tokens.md holds ``support_table()`` verbatim, the table the conformance
  suite checks its measurements against.
- The documented JwksKeySet with a verification policy runs in standalone: the policy it
  states is the one /verify applies.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Final

import pytest

from jwks_operator.core.tokens import sign_token
from tests.clients.verifiers import support_table
from tests.standalone.support import REPO_ROOT, StandaloneProcess, read_state

DOCS: Final = [REPO_ROOT / "docs" / "verifying-tokens.md", REPO_ROOT / "docs" / "gateways.md"]
CLIENTS: Final = REPO_ROOT / "tests" / "clients"
REGION_SOURCES: Final = [
    CLIENTS / "python" / "verify_tokens.py",
    CLIENTS / "js" / "jose-verifier.mjs",
    CLIENTS / "js" / "jwks-rsa-verifier.mjs",
    CLIENTS / "go" / "jwx.go",
    CLIENTS / "go" / "keyfunc.go",
    CLIENTS / "go" / "oidc.go",
    CLIENTS / "java" / "src" / "main" / "java" / "dev" / "jwks" / "clients" / "NimbusVerifier.java",
]
WHOLE_FILES: Final = [
    CLIENTS / "gateways" / "oauth2-proxy.cfg",  # tests/clients/gateways.py: oauth2_proxy
    CLIENTS / "gateways" / "traefik-dynamic.yaml",  # tests/clients/gateways.py: traefik
    REPO_ROOT / "tests" / "verification" / "nginx-auth-request.conf",  # test_nginx.py
    CLIENTS / "snippets" / "keyset-verification.yaml",  # below
]
BLOCK_RE: Final = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
REGION_RE: Final = re.compile(
    r"^[ \t]*(?://|#) snippet:start (\S+)\n(.*?)^[ \t]*(?://|#) snippet:end \1\n", re.S | re.M
)


def blocks() -> list[tuple[Path, str, str]]:
    return [
        (doc, language, body)
        for doc in DOCS
        for language, body in BLOCK_RE.findall(doc.read_text())
    ]


def snippets() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in REGION_SOURCES:
        regions = REGION_RE.findall(path.read_text())
        assert regions, f"{path} has no snippet region"
        for name, body in regions:
            found[f"{path.relative_to(REPO_ROOT)}#{name}"] = body
    for path in WHOLE_FILES:
        found[str(path.relative_to(REPO_ROOT))] = path.read_text()
    return found


def test_every_code_block_is_a_tested_file() -> None:
    known = set(snippets().values())
    untested = [
        f"{doc.name}: ```{language} block starting {body.splitlines()[0]!r}"
        for doc, language, body in blocks()
        if language and body not in known
    ]
    assert not untested, "code blocks that no test runs:\n" + "\n".join(untested)


def test_every_tested_snippet_is_published() -> None:
    published = {body for _, language, body in blocks() if language}
    missing = [name for name, body in snippets().items() if body not in published]
    assert not missing, f"snippets the docs do not show: {missing}"


def test_the_verifier_table_is_the_suites() -> None:
    assert support_table() in (REPO_ROOT / "docs" / "verifying-tokens.md").read_text()


@pytest.mark.timeout(120)
def test_the_documented_verification_policy_is_applied(tmp_path: Path) -> None:
    config = CLIENTS / "snippets" / "keyset-verification.yaml"
    standalone = StandaloneProcess(tmp_path, config).started(60)
    try:
        state = read_state(standalone.state_dir, "identity", "auth")
        assert state.active is not None
        now = int(time.time())
        claims = {
            "iss": "https://auth.example.com/identity/auth",
            "aud": "api",
            "sub": "alice",
            "tenant": "acme",
            "email": "alice@example.com",
            "groups": ["admin", "dev"],
            "iat": now,
            "exp": now + 300,
        }
        good = sign_token(state.active.material, claims)
        status, headers, _ = standalone.get(
            "/identity/auth/verify", {"Authorization": f"Bearer {good}"}
        )
        assert status == 200
        assert headers["X-Auth-Tenant"] == "acme"
        assert headers["X-Auth-Email"] == "alice@example.com"
        assert headers["X-Auth-Groups"] == '["admin","dev"]'
        no_tenant = sign_token(
            state.active.material, {k: v for k, v in claims.items() if k != "tenant"}
        )
        status, _, body = standalone.get(
            "/identity/auth/verify", {"Authorization": f"Bearer {no_tenant}"}
        )
        assert status == 401
        assert b"missing_claim" in body
        too_old = sign_token(state.active.material, {**claims, "iat": now - 13 * 3600})
        status, _, body = standalone.get(
            "/identity/auth/verify", {"Authorization": f"Bearer {too_old}"}
        )
        assert status == 401
        assert b"token_too_old" in body
    finally:
        standalone.stop()
