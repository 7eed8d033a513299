"""End to end with the project's own pieces: ``jwks-operator standalone`` publishes the
keyset (its ``verification.json`` written by the core from ``spec.verification``) and
serves ``/verify``; ``jwks-operator sign`` makes the tokens. No hand-written policy here,
so a drift between what the operator publishes and what the verifier reads shows up.
"""

import json
from collections.abc import Iterator

import pytest

from tests.standalone.support import StandaloneProcess, keyset_doc, run_cli, write_config

pytestmark = pytest.mark.timeout(120)

ISSUER = "https://auth.example.com/default/demo"


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneProcess]:
    tmp_path = tmp_path_factory.mktemp("standalone-verify")
    document = keyset_doc(
        algorithm="ES256",
        interval="1h",
        pre_publish="10m",
        retire_after="10m",
        issuer=ISSUER,
        verification={
            "audiences": ["api"],
            "requiredClaims": ["tenant"],
            "leeway": "30s",
            "claimHeaders": {"email": "X-Auth-Email", "tenant": "X-Auth-Tenant"},
        },
    )
    config = write_config(tmp_path / "keysets.yaml", document)
    process = StandaloneProcess(tmp_path, config).started()
    try:
        yield process
    finally:
        process.stop()


def sign(process: StandaloneProcess, *args: str) -> str:
    result = run_cli(
        "sign", "--keyset", "default/demo", "--state-dir", str(process.state_dir), *args
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def verify(process: StandaloneProcess, token: str) -> tuple[int, dict[str, str], bytes]:
    return process.get("/default/demo/verify", {"Authorization": f"Bearer {token}"})


def test_tokens_from_sign_verify_against_the_published_policy(
    standalone: StandaloneProcess,
) -> None:
    claims = json.dumps({"tenant": "t1", "email": "alice@example.com"})
    good = sign(
        standalone,
        "--issuer",
        ISSUER,
        "--audience",
        "api",
        "--subject",
        "alice",
        "--claims",
        claims,
    )
    status, headers, _ = verify(standalone, good)
    assert status == 200
    assert headers["X-Auth-Subject"] == "alice"
    assert headers["X-Auth-Issuer"] == ISSUER
    assert headers["X-Auth-Tenant"] == "t1"
    assert headers["X-Auth-Email"] == "alice@example.com"
    kid = json.loads(standalone.get("/default/demo/.well-known/jwks.json")[2])["keys"][0]["kid"]
    assert headers["X-Auth-Kid"] == kid


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ["--issuer", ISSUER, "--audience", "other", "--claims", '{"tenant": "t"}'],
            "wrong_audience",
        ),
        (
            [
                "--issuer",
                "https://evil.example",
                "--audience",
                "api",
                "--claims",
                '{"tenant": "t"}',
            ],
            "wrong_issuer",
        ),
        (["--issuer", ISSUER, "--audience", "api"], "missing_claim"),
    ],
)
def test_the_published_policy_is_enforced(
    standalone: StandaloneProcess, args: list[str], reason: str
) -> None:
    status, headers, body = verify(standalone, sign(standalone, *args))
    assert status == 401
    assert json.loads(body)["reason"] == reason
    assert headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
