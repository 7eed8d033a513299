"""Real verifier libraries against the running server, not only our own client code.

PyJWT's ``PyJWKClient`` and (when node is installed) npm ``jose``'s ``createRemoteJWKSet``
fetch the JWKS over HTTP exactly as services do and verify a token signed with the matching
private key, made here with ``cryptography``. A served key that is malformed, a wrong
content type, a redirect or a compressed body a client cannot read would fail them.
"""

import fcntl
import gzip
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jwks_operator.server.snapshot import SnapshotStore
from tests.server.support import (
    ThreadedServer,
    assert_no_private_material,
    configmap_data,
    public_jwk,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
JOSE_DIR = REPO_ROOT / ".cache" / "npm-jose"
JOSE_VERSION = "6"
ISSUER = "https://auth.example.com/identity/auth"
JWKS_PATH = "/identity/auth/.well-known/jwks.json"


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048), ec.generate_private_key(
        ec.SECP256R1()
    )


@pytest.fixture(scope="module")
def server(keys: tuple[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]) -> Iterator[ThreadedServer]:
    rsa_private, ec_private = keys
    store = SnapshotStore()
    store.apply(
        "identity",
        "auth",
        configmap_data(public_jwk(rsa_private), public_jwk(ec_private), issuer=ISSUER),
        {},
    )
    store.mark_ready()
    with ThreadedServer(store, default_keyset=("identity", "auth")) as running:
        yield running


def token(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *, audience: str = "api") -> str:
    jwk = public_jwk(private)
    claims = {"iss": ISSUER, "sub": "alice", "aud": audience, "exp": int(time.time()) + 300}
    return jwt.encode(claims, private, algorithm=jwk["alg"], headers={"kid": jwk["kid"]})


@pytest.mark.parametrize("which", [0, 1], ids=["RS256", "ES256"])
@pytest.mark.parametrize("path", [JWKS_PATH, "/.well-known/jwks.json"])
def test_pyjwt_pyjwkclient_verifies_a_token(
    server: ThreadedServer,
    keys: tuple[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey],
    which: int,
    path: str,
) -> None:
    private = keys[which]
    client = jwt.PyJWKClient(server.url(path), cache_keys=False)
    signed = token(private)
    signing_key = client.get_signing_key_from_jwt(signed)
    assert signing_key.key_id == public_jwk(private)["kid"]
    claims = jwt.decode(
        signed,
        signing_key.key,
        algorithms=[public_jwk(private)["alg"]],
        audience="api",
        issuer=ISSUER,
    )
    assert claims["sub"] == "alice"


def test_pyjwt_rejects_a_token_from_an_unpublished_key(server: ThreadedServer) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    client = jwt.PyJWKClient(server.url(JWKS_PATH), cache_keys=False)
    with pytest.raises(jwt.PyJWKClientError, match="Unable to find a signing key"):
        client.get_signing_key_from_jwt(token(stranger))


async def test_aiohttp_client_sees_the_headers_and_decodes_gzip(server: ThreadedServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url(JWKS_PATH)) as response:  # sends Accept-Encoding: gzip
            assert response.status == 200
            assert response.headers["Content-Encoding"] == "gzip"
            assert response.headers["Content-Type"] == "application/json"
            assert response.headers["Cache-Control"] == "public, max-age=300"
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            document = await response.json()
            etag = response.headers["ETag"]
        assert len(document["keys"]) == 2
        async with session.get(server.url(JWKS_PATH), headers={"If-None-Match": etag}) as again:
            assert again.status == 304
        async with session.get(
            server.url(JWKS_PATH), headers={"Accept": "application/jwk-set+json"}
        ) as typed:
            assert typed.headers["Content-Type"] == "application/jwk-set+json"
            assert (await typed.json(content_type=None))["keys"] == document["keys"]
        async with session.get(
            server.url(JWKS_PATH), auto_decompress=False, headers={"Accept-Encoding": "gzip"}
        ) as raw:
            body = await raw.read()
            assert_no_private_material(body)
            assert json.loads(gzip.decompress(body)) == document


def _install_jose() -> Path | None:
    """npm ``jose`` in .cache/npm-jose (installed once, under a lock for parallel workers)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    JOSE_DIR.mkdir(parents=True, exist_ok=True)
    module = JOSE_DIR / "node_modules" / "jose" / "package.json"
    with (JOSE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not module.exists():
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--prefix",
                    str(JOSE_DIR),
                    "--no-audit",
                    "--no-fund",
                    "--silent",
                    f"jose@{JOSE_VERSION}",
                ],
                check=True,
                timeout=240,
                capture_output=True,
            )
    return JOSE_DIR


JOSE_SCRIPT = """
import { createRemoteJWKSet, jwtVerify } from 'jose';
const [url, token, issuer] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(url));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer, audience: 'api' });
  console.log(JSON.stringify({ ok: true, sub: payload.sub, kid: protectedHeader.kid }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, code: error.code }));
}
"""


@pytest.fixture(scope="module")
def jose_dir() -> Path:
    try:
        installed = _install_jose()
    except (subprocess.SubprocessError, OSError) as error:
        pytest.skip(f"npm could not install jose: {error}")
    if installed is None:
        pytest.skip("node/npm are not installed: the npm jose interop test cannot run")
    script = installed / "verify.mjs"
    script.write_text(JOSE_SCRIPT)
    return installed


def run_jose(jose_dir: Path, url: str, signed: str) -> dict[str, object]:
    result = subprocess.run(
        ["node", str(jose_dir / "verify.mjs"), url, signed, ISSUER],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=jose_dir,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.parametrize("which", [0, 1], ids=["RS256", "ES256"])
def test_npm_jose_create_remote_jwk_set_verifies_a_token(
    server: ThreadedServer,
    keys: tuple[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey],
    jose_dir: Path,
    which: int,
) -> None:
    private = keys[which]
    answer = run_jose(jose_dir, server.url(JWKS_PATH), token(private))
    assert answer == {"ok": True, "sub": "alice", "kid": public_jwk(private)["kid"]}


def test_npm_jose_rejects_unknown_key_and_wrong_audience(
    server: ThreadedServer,
    keys: tuple[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey],
    jose_dir: Path,
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert run_jose(jose_dir, server.url(JWKS_PATH), token(stranger)) == {
        "ok": False,
        "code": "ERR_JWKS_NO_MATCHING_KEY",
    }
    wrong = run_jose(jose_dir, server.url(JWKS_PATH), token(keys[1], audience="other"))
    assert wrong == {"ok": False, "code": "ERR_JWT_CLAIM_VALIDATION_FAILED"}
