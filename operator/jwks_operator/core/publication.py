"""The public documents of a keyset, exactly as they are stored in the ConfigMap.

The operator and standalone mode write these; the server reads them. They hold no secret
material by construction, and every JWKS passes ``guard.encode_public_jwks`` on its way out.

ConfigMap data keys (see ``contract``):
- ``jwks.json``: ``{"keys": [...]}``, order active, next, retired (newest first).
- ``openid-configuration``: only when ``spec.issuer`` is set: ``issuer``, ``jwks_uri``,
  ``id_token_signing_alg_values_supported`` (from the published keys).
- ``verification.json``: the token policy of ``spec.verification`` for the ``/verify``
  endpoint, in the spec's own form with defaults applied (``issuer`` defaults to
  ``spec.issuer``): ``algorithm``, ``issuer`` (when set), ``audiences``, ``requiredClaims``,
  ``leeway``, ``maxTokenAge`` (when set), ``claimHeaders`` ({claim: header}). The server reads
  it back with ``core.spec.parse_verification``, the same parser and limits as the spec.
Annotation ``jwks.dev/next-change``: RFC 3339 time of the next scheduled JWKS change.
"""

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from jwks_operator.core.contract import CONFIGMAP_JWKS, CONFIGMAP_OPENID, CONFIGMAP_VERIFICATION
from jwks_operator.core.guard import check_public_jwks, encode_public_jwks
from jwks_operator.core.spec import KeySetSpec, verification_section
from jwks_operator.core.timefmt import format_time


def jwks_document(public_keys: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A JWKS from public JWKs already in publication order; guarded before it is returned."""
    document = {"keys": [dict(key) for key in public_keys]}
    check_public_jwks(document)
    return document


def openid_configuration(spec: KeySetSpec, jwks: Mapping[str, Any]) -> dict[str, Any] | None:
    """The OIDC discovery document, or None when the keyset has no issuer."""
    if not spec.issuer:
        return None
    algorithms = sorted({key["alg"] for key in jwks["keys"] if "alg" in key})
    return {
        "issuer": spec.issuer,
        "jwks_uri": spec.published_jwks_uri,
        "id_token_signing_alg_values_supported": algorithms,
    }


def verification_document(spec: KeySetSpec) -> dict[str, Any]:
    """The public token policy, in JSON form, for servers that only see the ConfigMap."""
    return {"algorithm": spec.algorithm, **verification_section(spec.verification)}


def configmap_data(spec: KeySetSpec, jwks: Mapping[str, Any]) -> dict[str, str]:
    """Every data key of the keyset's ConfigMap, as deterministic text."""
    data = {
        CONFIGMAP_JWKS: encode_public_jwks(jwks),
        CONFIGMAP_VERIFICATION: _dump(verification_document(spec)),
    }
    discovery = openid_configuration(spec, jwks)
    if discovery is not None:
        data[CONFIGMAP_OPENID] = _dump(discovery)
    return data


def next_change_annotation(next_change: datetime | None) -> str | None:
    return format_time(next_change) if next_change else None


def _dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=True)
