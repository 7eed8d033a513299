"""The manifest tests drive the real helm: fetch it once per session (a cached no-op after
the first run; `make test` has already fetched it through scripts/ensure-tools.sh)."""

from pathlib import Path

import pytest

from tests.deploy.support import helm_binary


@pytest.fixture(scope="session")
def helm_path() -> Path:
    return helm_binary()
