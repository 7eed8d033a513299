"""What the private side stores: ``keys.json`` plus the active key in mountable forms.

Only Secrets (operator) and 0600 files (standalone) may receive this mapping. A signing
service mounts ``signing.pem`` (PKCS#8), ``signing.kid`` and ``signing.jwk`` and never
needs to understand ``keys.json``.
"""

import json

from jwks_operator.core.contract import (
    SECRET_KEYS,
    SECRET_SIGNING_JWK,
    SECRET_SIGNING_KID,
    SECRET_SIGNING_PEM,
)
from jwks_operator.core.keys import private_key_pem
from jwks_operator.core.state import KeySetState, state_to_json


def secret_data(state: KeySetState) -> dict[str, str]:
    data = {SECRET_KEYS: state_to_json(state)}
    active = state.active
    if active is not None:
        data[SECRET_SIGNING_PEM] = private_key_pem(active.material)
        data[SECRET_SIGNING_KID] = active.kid
        data[SECRET_SIGNING_JWK] = json.dumps(dict(active.material.private_jwk), sort_keys=True)
    return data
