"""The install and verification docs say what the code does: the PyJWT snippet runs, the
YAML blocks parse, the in-cluster URL is the Service the chart renders, paths exist."""

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.deploy.support import CHART, ROOT, helm

DOCS = ROOT / "docs"
IN_CLUSTER = "http://jwks-operator-server.jwks-system.svc/identity/auth/.well-known/jwks.json"


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, Any]]:
    """A local stand-in for the JWKS server: serves one RSA public key under a kid."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/identity/auth/.well-known/jwks.json"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if found else b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", key
    finally:
        server.shutdown()
        server.server_close()


def test_pyjwt_snippet_verifies_a_token(jwks_server: tuple[str, Any]) -> None:
    base, key = jwks_server
    (snippet,) = blocks(DOCS / "verifying-tokens.md", "python")
    assert IN_CLUSTER in snippet
    namespace: dict[str, Any] = {}
    exec(snippet.replace(IN_CLUSTER, f"{base}/identity/auth/.well-known/jwks.json"), namespace)  # noqa: S102
    now = int(time.time())
    claims = {"sub": "alice", "aud": "api.example.com", "iat": now, "exp": now + 300}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    assert namespace["verify"](token)["sub"] == "alice"

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(jwt.InvalidSignatureError):
        namespace["verify"](forged)
    unknown = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "nope"})
    with pytest.raises(jwt.PyJWKClientError):
        namespace["verify"](unknown)
    wrong_audience = jwt.encode(
        {**claims, "aud": "other"}, key, algorithm="RS256", headers={"kid": "k1"}
    )
    with pytest.raises(jwt.InvalidAudienceError):
        namespace["verify"](wrong_audience)


def test_yaml_blocks_parse() -> None:
    documents = [
        doc
        for block in blocks(DOCS / "verifying-tokens.md", "yaml")
        for doc in yaml.safe_load_all(block)
        if doc
    ]
    kinds = {doc.get("kind") for doc in documents}
    assert {"RequestAuthentication", "AuthorizationPolicy"} <= kinds
    envoy = next(doc for doc in documents if "http_filters" in doc)
    provider = envoy["http_filters"][0]["typed_config"]["providers"]["jwks_operator"]
    assert provider["remote_jwks"]["http_uri"]["uri"] == IN_CLUSTER
    assert provider["remote_jwks"]["cache_duration"] == "300s"  # well under prePublish 2h


def test_in_cluster_url_is_the_service_the_chart_renders(helm_path: Path) -> None:
    rendered = helm("template", "jwks-operator", str(CHART), "--namespace", "jwks-system").stdout
    services = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Service"]
    (service,) = services
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert service["spec"]["ports"][0]["port"] == 80
    assert IN_CLUSTER.startswith(f"http://{host}/")
    for doc in ("verifying-tokens.md", "install.md"):
        for url in re.findall(r"http://[a-z0-9.-]+\.svc[^\s`'\"]*", (DOCS / doc).read_text()):
            assert url.startswith(f"http://{host}/"), (doc, url)


def test_paths_named_in_the_install_guide_exist() -> None:
    text = (DOCS / "install.md").read_text()
    named = set(re.findall(r"\b((?:examples|deploy|tests|docs)/[\w./-]+\w)", text))
    assert "examples/keyset-minimal.yaml" in named
    missing = [path for path in sorted(named) if not (ROOT / path).exists()]
    assert not missing


def test_every_test_the_threat_model_cites_exists() -> None:
    """docs/security.md backs each claim with a test: each one it names must exist."""
    text = (DOCS / "security.md").read_text()
    cited = re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", text)
    assert len(cited) > 15
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert not name or re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name}"
    # The table names tests of test_trust_attacks.py without the path prefix.
    attacks = (ROOT / "tests/operator/test_trust_attacks.py").read_text()
    for name in re.findall(r"\| `(test_\w+)", text):
        assert re.search(rf"^def {name}\(", attacks, re.M), name
