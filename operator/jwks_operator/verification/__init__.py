"""Gateway token verification: is this bearer token valid for that keyset, and who is it?

``build_verifier`` turns a keyset's published documents into a ``TokenVerifier`` once per
change; the server keeps it in its snapshot and answers ``/{ns}/{name}/verify`` through
``handle_verify``. Nothing here does I/O, so every rule is unit-testable without HTTP.

The server imports this package directly: ``server/snapshot.py`` calls ``build_verifier``
once per ConfigMap change, ``server/app.py`` calls ``handle_verify`` per request, and
``server/metrics.py`` reads ``metrics.snapshot()`` at scrape time.
"""

from jwks_operator.verification.endpoint import handle_verify
from jwks_operator.verification.metrics import metrics_text
from jwks_operator.verification.policy import (
    NO_OVERRIDES,
    OverrideError,
    Policy,
    PolicyError,
    PolicyOverrides,
    parse_overrides,
)
from jwks_operator.verification.verdict import Accepted, Reason, Refused, Verdict
from jwks_operator.verification.verifier import TokenVerifier, build_verifier

__all__ = [
    "NO_OVERRIDES",
    "Accepted",
    "OverrideError",
    "Policy",
    "PolicyError",
    "PolicyOverrides",
    "Reason",
    "Refused",
    "TokenVerifier",
    "Verdict",
    "build_verifier",
    "handle_verify",
    "metrics_text",
    "parse_overrides",
]
