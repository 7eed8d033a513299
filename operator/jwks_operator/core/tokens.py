"""Compact JWS signing with a stored key, for ``jwks-operator sign``, demos and tests.

Tokens are built and signed by jwcrypto's JWT (a JWS in compact form). The project fixes
the header: ``alg`` is the key's own algorithm, ``kid`` its thumbprint, ``typ`` ``JWT``;
``extra_headers`` exists for tests that need an odd header signed by a real key.
"""

from collections.abc import Mapping
from typing import Any

from jwcrypto import jwt
from jwcrypto.common import json_encode

from jwks_operator.core.keys import KeyMaterial, signing_jwk


def sign_token(
    material: KeyMaterial,
    claims: Mapping[str, Any],
    extra_headers: Mapping[str, Any] | None = None,
) -> str:
    """A compact JWT signed by ``material``, with ``alg``, ``kid`` and ``typ`` headers."""
    header = {"alg": material.algorithm, "kid": material.kid, "typ": "JWT", **(extra_headers or {})}
    token = jwt.JWT(header=json_encode(header), claims=json_encode(dict(claims)))
    token.make_signed_token(signing_jwk(material))
    return str(token.serialize(compact=True))
