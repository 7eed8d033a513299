"""The install and verification docs say what the code does: the in-cluster URL is the
Service the chart renders, paths exist. (Every code block of docs/verifying-tokens.md and
docs/gateways.md is run by the conformance suite: tests/clients/test_docs.py.)"""

import re
from pathlib import Path

import yaml

from tests.deploy.support import CHART, ROOT, helm

DOCS = ROOT / "docs"
IN_CLUSTER = "http://jwks-operator-server.jwks-system.svc/identity/auth/.well-known/jwks.json"


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
