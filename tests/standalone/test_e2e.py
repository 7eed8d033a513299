"""The README's story with the real CLI: start, fetch, sign, verify, watch keys rotate."""

import json
import re
import stat
import time
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from jwks_operator.core.contract import PRIVATE_MEMBERS
from tests.standalone.observer import LifecycleObserver
from tests.standalone.support import (
    StandaloneProcess,
    check_public_jwks,
    keyset_doc,
    leaks,
    private_values,
    read_state,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.timeout(120)


def test_serve_sign_verify_and_three_rotations(tmp_path: Path) -> None:
    # A token must outlive four CLI starts (sign, verify, and the checks after them), which
    # take seconds each on a loaded CI machine: its key stays published for at least
    # retireAfter (8 s) after it stops signing. Rotations every 5 s keep the test short.
    config = write_config(
        tmp_path / "keysets.yaml",
        keyset_doc(
            issuer="https://auth.example.com/default/demo", interval="5s", retire_after="8s"
        ),
    )
    process = StandaloneProcess(tmp_path, config, extra=["--max-age", "30"])
    observer = LifecycleObserver(
        process.state_dir, pre_publish=timedelta(seconds=1), retire_after=timedelta(seconds=8)
    )
    responses: list[bytes] = []
    secrets: set[str] = set()
    try:
        process.started()

        # The JWKS and the discovery document, with the server's headers.
        status, headers, body = process.get("/default/demo/.well-known/jwks.json")
        responses.append(body)
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert re.fullmatch(r"public, max-age=\d+", headers["Cache-Control"])
        assert int(headers["Cache-Control"].rsplit("=", 1)[1]) <= 30  # --max-age
        jwks = json.loads(body)
        kids = check_public_jwks(jwks)
        assert len(kids) == 2  # the active key and the pre-published next one
        status, _, discovery = process.get("/default/demo/.well-known/openid-configuration")
        responses.append(discovery)
        assert status == 200
        assert json.loads(discovery)["jwks_uri"] == (
            "https://auth.example.com/default/demo/.well-known/jwks.json"
        )
        # The only keyset is also the default one.
        status, _, default_body = process.get("/.well-known/jwks.json")
        assert status == 200
        assert json.loads(default_body)["keys"][0]["kid"] == kids[0]

        # sign -> verify with the CLI and with PyJWT.
        signed = run_cli(
            "sign",
            "--keyset",
            "default/demo",
            "--state-dir",
            str(process.state_dir),
            "--subject",
            "alice",
            "--audience",
            "api",
            "--issuer",
            "https://auth.example.com/default/demo",
            "--claims",
            '{"scope": "read"}',
            "--ttl",
            "10m",
        )
        assert signed.returncode == 0, signed.stderr
        token = signed.stdout.strip()
        header = jwt.get_unverified_header(token)
        assert header["kid"] == kids[0]
        assert header["alg"] == "ES256"

        verified = run_cli(
            "verify",
            token,
            "--jwks",
            process.jwks_url(),
            "--audience",
            "api",
            "--issuer",
            "https://auth.example.com/default/demo",
        )
        assert verified.returncode == 0, verified.stderr
        claims = json.loads(verified.stdout)
        assert claims["sub"] == "alice"
        assert claims["scope"] == "read"
        assert claims["exp"] - claims["iat"] == 600
        assert claims["nbf"] == claims["iat"]

        # The gateway endpoint of the same server answers for the same keyset.
        status, headers, _ = process.get(
            "/default/demo/verify", {"Authorization": f"Bearer {token}"}
        )
        assert status == 200
        assert headers["X-Auth-Subject"] == "alice"
        assert headers["X-Auth-Kid"] == kids[0]

        client = jwt.PyJWKClient(process.jwks_url())
        decoded = jwt.decode(
            token,
            client.get_signing_key_from_jwt(token).key,
            algorithms=["ES256"],
            audience="api",
            issuer="https://auth.example.com/default/demo",
        )
        assert decoded == claims

        # Three rotations, observed from outside while they happen.
        first_active = kids[0]
        deadline = time.monotonic() + 60
        while len(re.findall(r" Rotated: ", process.output())) < 3:
            assert time.monotonic() < deadline, process.output()
            assert process.running, process.output()
            observer.observe(process.jwks_url())
            time.sleep(0.05)
        for _ in range(5):
            observer.observe(process.jwks_url())
        counts = observer.check()
        assert counts["keys_active"] >= 3
        assert counts["retention_checks"] > 0

        # The first token's key has left the JWKS by now (3 rotations > retireAfter):
        # verify now refuses it, naming the reason.
        wait_for_removal(process, first_active)
        refused = run_cli("verify", token, "--jwks", process.jwks_url(), "--audience", "api")
        assert refused.returncode == 1
        assert "unknown_kid" in refused.stderr

        # Private keys: on disk in 0600 files of a 0700 directory, nowhere else.
        state = read_state(process.state_dir)
        assert private_values(state), "the state file holds the private keys"
        # Every key the run ever held (removed ones included), as seen in its state file.
        secrets = set().union(*(private_values(seen) for seen in [*observer.states, state]))
        assert len(secrets) >= 5
        assert stat.S_IMODE(process.state_dir.stat().st_mode) == 0o700
        for path in process.state_dir.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        for route in ("/default/demo/.well-known/jwks.json", "/metrics", "/healthz", "/readyz"):
            responses.append(process.get(route)[2])
        for body in responses + [json.dumps(s.document).encode() for s in observer.sightings]:
            assert not leaks(body.decode(), secrets)
        for sighting in observer.sightings:
            for key in sighting.document["keys"]:
                assert not PRIVATE_MEMBERS & set(key)
    finally:
        code = process.stop()
    assert code == 0
    log = process.all_output()
    assert not leaks(log, secrets)
    assert "PRIVATE KEY" not in log
    # One line per lifecycle event, naming the reason and the kid.
    assert re.search(rf"default/demo Bootstrapped: generated first active key {first_active}", log)
    assert len(re.findall(r"default/demo Rotated: \S+ is now active; \S+ retired", log)) >= 3
    assert "default/demo KeyRemoved: retired key" in log
    assert "RotatedEarly" not in log and "EarlyActivation" not in log


def wait_for_removal(process: StandaloneProcess, kid: str) -> None:
    deadline = time.monotonic() + 30
    while kid in {key["kid"] for key in process.jwks()["keys"]}:
        assert time.monotonic() < deadline, "retired key never left the JWKS"
        time.sleep(0.1)


def test_rsa_keyset_signs_and_verifies(tmp_path: Path) -> None:
    """RS256 (the default algorithm) end to end, with a token read from stdin."""
    doc = keyset_doc("api", "identity", algorithm="RS256", interval="1h", pre_publish="10m")
    config = write_config(tmp_path / "keysets.yaml", doc)
    process = StandaloneProcess(tmp_path, config)
    try:
        process.started()
        signed = run_cli("sign", "--keyset", "identity/api", "--state-dir", str(process.state_dir))
        assert signed.returncode == 0, signed.stderr
        verified = run_cli(
            "verify", "-", "--jwks", process.jwks_url("identity", "api"), stdin=signed.stdout
        )
        assert verified.returncode == 0, verified.stderr
        assert set(json.loads(verified.stdout)) == {"iat", "nbf", "exp"}
        jwks = process.jwks("identity", "api")
        assert [key["alg"] for key in jwks["keys"]] == ["RS256", "RS256"]
        assert all(len(key["n"]) == 342 for key in jwks["keys"])  # 2048-bit moduli
    finally:
        assert process.stop() == 0
