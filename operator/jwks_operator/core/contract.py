"""Names shared by every part of the system: the resource, labels, annotations, data keys.

They are the contract between the operator (which writes), the server and the standalone
mode (which read), the chart (which grants) and the users (who mount and select). Keeping
them in one pure module means a rename cannot silently split writer from reader.
"""

from typing import Final

GROUP: Final = "jwks.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "JwksKeySet"
PLURAL: Final = "jwkskeysets"
SINGULAR: Final = "jwkskeyset"
SHORT_NAMES: Final = ("jwks", "keyset")

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "jwks-operator"
KEYSET_LABEL: Final = "jwks.dev/keyset"
MANAGED_SELECTOR: Final = f"{KEYSET_LABEL},{MANAGED_BY_LABEL}={MANAGED_BY}"
"""The label selector of the Secrets and ConfigMaps the operator manages for a keyset:
what the operator's cache and the JWKS server watch (never any other Secret)."""

ROTATE_ANNOTATION: Final = "jwks.dev/rotate"
"""Set to any new value on a JwksKeySet to promote its published next key now (once per value)."""
CONTENT_HASH_ANNOTATION: Final = "jwks.dev/content-hash"
"""SHA-256 of the data the operator wrote, so that unchanged content is never rewritten."""
KEYSET_UID_ANNOTATION: Final = "jwks.dev/keyset-uid"
"""On the ConfigMap: the UID of the JwksKeySet it was written for. The server serves a
ConfigMap only for the keyset whose UID it carries (here, or as an owner reference)."""
NEXT_CHANGE_ANNOTATION: Final = "jwks.dev/next-change"
"""On the ConfigMap: RFC 3339 UTC time of the keyset's next scheduled JWKS change.
The server caps ``Cache-Control: max-age`` so that no cache outlives it."""

SECRET_KEYS: Final = "keys.json"
SECRET_SIGNING_PEM: Final = "signing.pem"
SECRET_SIGNING_KID: Final = "signing.kid"
SECRET_SIGNING_JWK: Final = "signing.jwk"

CONFIGMAP_JWKS: Final = "jwks.json"
CONFIGMAP_OPENID: Final = "openid-configuration"
CONFIGMAP_VERIFICATION: Final = "verification.json"
"""The keyset's public token policy (spec.verification), for the gateway ``/verify`` endpoint,
published next to the JWKS so that the server needs nothing but the ConfigMap and status."""

PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
"""JWK members that carry secret material (RFC 7518 section 6); none may ever be published."""
