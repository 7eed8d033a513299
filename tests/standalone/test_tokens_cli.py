"""``jwks-operator sign`` / ``verify``: every refusal says why (exit 1), bad usage exits 2."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest

from jwks_operator.core.contract import SECRET_KEYS
from jwks_operator.core.keys import KeyMaterial, b64url, generate_key
from jwks_operator.core.secretdata import secret_data
from jwks_operator.core.spec import parse_spec
from jwks_operator.core.tokens import sign_token
from jwks_operator.reconcile import reconcile
from jwks_operator.store.localdir import LocalDirStore, private_path, public_path
from tests.standalone.support import read_state, run_cli
from tests.support.cluster import EmulatedCluster

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Keyset:
    state_dir: Path
    jwks_file: Path
    active: KeyMaterial


@pytest.fixture(scope="module")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> Keyset:
    """A reconciled ES256 keyset in a state directory, made by the real store."""
    root = tmp_path_factory.mktemp("tokens")
    state_dir = root / "state"
    state_dir.mkdir(mode=0o700)
    spec = parse_spec("demo", {"algorithm": "ES256"})
    store = LocalDirStore(state_dir, "default", "demo")
    asyncio.run(reconcile(spec, store, clock=lambda: datetime.now(UTC)))
    jwks_file = root / "jwks.json"
    jwks_file.write_text(
        json.loads(public_path(state_dir, "default", "demo").read_text())["data"]["jwks.json"]
    )
    active = read_state(state_dir).active
    assert active is not None
    return Keyset(state_dir, jwks_file, active.material)


def sign(keyset: Keyset, *args: str) -> str:
    result = run_cli(
        "sign", "--keyset", "default/demo", "--state-dir", str(keyset.state_dir), *args
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def verify(keyset: Keyset, token: str, *args: str) -> tuple[int, str, str]:
    result = run_cli("verify", token, "--jwks", str(keyset.jwks_file), *args)
    return result.returncode, result.stdout, result.stderr


def segment(document: dict[str, Any]) -> str:
    return b64url(json.dumps(document, separators=(",", ":")).encode())


def claims_now(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iat": now, "exp": now + 300, **extra}


def test_sign_then_verify_prints_the_claims(keyset: Keyset) -> None:
    token = sign(keyset, "--issuer", "https://issuer.test", "--audience", "a", "--audience", "b")
    assert jwt.get_unverified_header(token) == {
        "alg": "ES256",
        "kid": keyset.active.kid,
        "typ": "JWT",
    }
    code, out, err = verify(keyset, token, "--issuer", "https://issuer.test", "--audience", "b")
    assert code == 0, err
    claims = json.loads(out)
    assert claims["aud"] == ["a", "b"]
    assert claims["exp"] - claims["iat"] == 300  # the default --ttl 5m
    assert f"signed by kid {keyset.active.kid}" in err


def _forge_hmac(keyset: Keyset) -> str:
    """The classic confusion: HS256 keyed with the published public key."""
    header = segment({"alg": "HS256", "kid": keyset.active.kid, "typ": "JWT"})
    payload = segment(claims_now())
    public = json.dumps(dict(keyset.active.public_jwk)).encode()
    mac = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(mac)}"


def _forge_none(keyset: Keyset) -> str:
    header = segment({"alg": "none", "kid": keyset.active.kid})
    return f"{header}.{segment(claims_now())}.c2ln"


def _rsa_with_es_kid(keyset: Keyset) -> str:
    rsa = generate_key("RS256", 2048)
    token = sign_token(rsa, claims_now())
    header = segment({"alg": "RS256", "kid": keyset.active.kid, "typ": "JWT"})
    return header + token[token.index(".") :]


def _tampered(keyset: Keyset) -> str:
    token = sign_token(keyset.active, claims_now())
    head, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"


def _other_payload(keyset: Keyset) -> str:
    token = sign_token(keyset.active, claims_now(sub="alice"))
    head, _, signature = token.split(".")
    return f"{head}.{segment(claims_now(sub='admin'))}.{signature}"


REFUSALS: list[tuple[str, Callable[[Keyset], str], tuple[str, ...], str]] = [
    ("expired", lambda k: sign(k, "--claims", '{"exp": 1000000000}'), (), "expired"),
    (
        "not yet valid",
        lambda k: sign(k, "--claims", json.dumps({"nbf": int(time.time()) + 3600})),
        (),
        "not_yet_valid",
    ),
    (
        "unknown kid",
        lambda k: sign_token(generate_key("ES256", None), claims_now()),
        (),
        "unknown_kid",
    ),
    ("bad signature", _tampered, (), "bad_signature"),
    ("payload swapped", _other_payload, (), "bad_signature"),
    ("alg none", _forge_none, (), "algorithm_not_allowed"),
    ("unsigned, empty signature", lambda k: _forge_none(k)[:-4], (), "algorithm_not_allowed"),
    ("HMAC with the public key", _forge_hmac, (), "algorithm_not_allowed"),
    ("RS256 under an ES256 kid", _rsa_with_es_kid, (), "algorithm_not_allowed"),
    (
        "wrong issuer",
        lambda k: sign(k, "--issuer", "https://evil.test"),
        ("--issuer", "https://good.test"),
        "wrong_issuer",
    ),
    (
        "wrong audience",
        lambda k: sign(k, "--audience", "web"),
        ("--audience", "api"),
        "wrong_audience",
    ),
    ("not a JWT", lambda k: "hello", (), "malformed_token"),
]


@pytest.mark.parametrize(
    ("case", "make", "options", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_verify_refuses_with_the_reason(
    keyset: Keyset,
    case: str,
    make: Callable[[Keyset], str],
    options: tuple[str, ...],
    reason: str,
) -> None:
    code, out, err = verify(keyset, make(keyset), *options)
    assert code == 1, (case, out, err)
    assert f"token refused ({reason})" in err
    assert out == ""


def test_none_and_hmac_messages_are_explicit(keyset: Keyset) -> None:
    assert "unsigned tokens (alg none) are not accepted" in verify(keyset, _forge_none(keyset))[2]
    assert "HMAC tokens (HS256) are not accepted" in verify(keyset, _forge_hmac(keyset))[2]


def test_leeway_accepts_a_just_expired_token(keyset: Keyset) -> None:
    token = sign_token(keyset.active, {"exp": int(time.time()) - 30})
    assert verify(keyset, token, "--leeway", "0s")[0] == 1
    assert verify(keyset, token, "--leeway", "2m")[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--claims", "{not json"], "--claims is not valid JSON"),
        (["--claims", "[1, 2]"], "--claims must be a JSON object"),
        (["--ttl", "5 minutes"], '--ttl: "5 minutes" is not a duration'),
        (["--ttl", "0s"], "--ttl must be longer than zero"),
        (["--keyset", "default/missing"], "no keyset default/missing in state directory"),
        (["--keyset", "a/b/c"], "is not NAMESPACE/NAME"),
        (["--kube"], "not allowed with argument --state-dir"),
    ],
)
def test_sign_usage_errors_exit_2(keyset: Keyset, args: list[str], message: str) -> None:
    base = ["sign", "--keyset", "default/demo", "--state-dir", str(keyset.state_dir)]
    result = run_cli(*base, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_sign_needs_a_key_source_and_an_existing_state_dir(tmp_path: Path) -> None:
    neither = run_cli("sign", "--keyset", "default/demo")
    assert neither.returncode == 2
    assert "one of the arguments --state-dir --kube is required" in neither.stderr
    missing = run_cli("sign", "--keyset", "default/demo", "--state-dir", str(tmp_path / "none"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr


def test_sign_refuses_a_corrupt_state_file(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    corrupt = private_path(state_dir, "default", "demo")
    corrupt.write_text('{"version": 1, "keys": "x"}')
    corrupt.chmod(0o600)  # a 0644 state file is refused before it is read
    result = run_cli("sign", "--keyset", "default/demo", "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert 'keys.json has no "keys" list' in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--leeway", "soon"], '--leeway: "soon" is not a duration'),
        (["--leeway", "2h"], "--leeway may be at most 1h"),
        (["--jwks", "/no/such/jwks.json"], "No such file or directory"),
        (["--jwks", "ftp://example.com/jwks.json"], "only http(s) URLs and files"),
        (["--jwks", "http://127.0.0.1:9/jwks.json"], "cannot fetch"),
    ],
)
def test_verify_usage_errors_exit_2(keyset: Keyset, args: list[str], message: str) -> None:
    token = sign_token(keyset.active, claims_now())
    result = run_cli("verify", token, "--jwks", str(keyset.jwks_file), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_verify_refuses_a_jwks_with_private_members(keyset: Keyset, tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.json"
    leaky.write_text(json.dumps({"keys": [dict(keyset.active.private_jwk)]}))
    token = sign_token(keyset.active, claims_now())
    result = run_cli("verify", token, "--jwks", str(leaky))
    assert result.returncode == 2
    assert "not a public JWKS (keys[0]: holds private member(s) d)" in result.stderr
    assert keyset.active.private_jwk["d"] not in result.stderr


def test_verify_key_without_alg_needs_algorithm(keyset: Keyset, tmp_path: Path) -> None:
    bare = {k: v for k, v in keyset.active.public_jwk.items() if k != "alg"}
    path = tmp_path / "bare.json"
    path.write_text(json.dumps({"keys": [bare]}))
    token = sign_token(keyset.active, claims_now())
    result = run_cli("verify", token, "--jwks", str(path))
    assert result.returncode == 2
    assert "declares no alg: pass --algorithm" in result.stderr
    assert run_cli("verify", token, "--jwks", str(path), "--algorithm", "ES256").returncode == 0
    wrong = run_cli("verify", token, "--jwks", str(path), "--algorithm", "ES384")
    assert wrong.returncode == 1


@pytest.mark.timeout(180)  # five CLI runs against the emulator: slow on a loaded machine
def test_sign_kube_reads_the_secret_named_by_the_keyset(
    cluster: EmulatedCluster, keyset: Keyset
) -> None:
    state = read_state(keyset.state_dir)
    keys_json = secret_data(state)[SECRET_KEYS]
    cluster.create(
        {
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "JwksKeySet",
            "metadata": {"name": "login", "namespace": "default"},
            "spec": {"algorithm": "ES256", "secretName": "custom-signing"},
        }
    )
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "custom-signing", "namespace": "default"},
            "data": {SECRET_KEYS: base64.b64encode(keys_json.encode()).decode()},
        }
    )
    env = {"KUBECONFIG": str(cluster.kubeconfig)}
    env_clean = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
    result = run_cli(
        "sign", "--keyset", "default/login", "--kube", "--subject", "bob", env={**env_clean, **env}
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == keyset.active.kid
    code, out, err = verify(keyset, token)
    assert code == 0, err
    assert json.loads(out)["sub"] == "bob"
    # --kubeconfig instead of KUBECONFIG: the same cluster, as with run and serve.
    flagged = run_cli(
        "sign",
        "--keyset",
        "default/login",
        "--kube",
        "--kubeconfig",
        str(cluster.kubeconfig),
        env={**env_clean, "KUBECONFIG": str(cluster.kubeconfig) + ".missing"},
    )
    assert flagged.returncode == 0, flagged.stderr
    assert jwt.get_unverified_header(flagged.stdout.strip())["kid"] == keyset.active.kid

    missing = run_cli("sign", "--keyset", "default/nope", "--kube", env={**env_clean, **env})
    assert missing.returncode == 2
    assert "JwksKeySet default/nope not found" in missing.stderr
    cluster.create(
        {
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "JwksKeySet",
            "metadata": {"name": "orphan", "namespace": "default"},
            "spec": {},
        }
    )
    no_secret = run_cli("sign", "--keyset", "default/orphan", "--kube", env={**env_clean, **env})
    assert no_secret.returncode == 2
    assert "Secret default/orphan-signing not found" in no_secret.stderr
