"""What a verification concludes, in a form both the HTTP glue and the metrics can use.

Every refusal carries a stable reason code (a metric label, a JSON field, a line in the
docs) and the RFC 6750 error class that decides the HTTP status, so the glue never has to
guess whether a failure is the client's request (400) or the token itself (401).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

ErrorClass = Literal["invalid_request", "invalid_token"]


class Reason(StrEnum):
    """Why a token or request was refused; values are metric labels and documented codes."""

    MISSING_TOKEN = "missing_token"
    MALFORMED_REQUEST = "malformed_request"
    BAD_OVERRIDE = "bad_override"
    TOKEN_TOO_LARGE = "token_too_large"
    MALFORMED_TOKEN = "malformed_token"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    UNSUPPORTED_HEADER = "unsupported_header"
    WRONG_TYPE = "wrong_type"
    MISSING_KID = "missing_kid"
    UNKNOWN_KID = "unknown_kid"
    KEY_NOT_USABLE = "key_not_usable"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    TOKEN_TOO_OLD = "token_too_old"
    MISSING_CLAIM = "missing_claim"
    INVALID_CLAIM = "invalid_claim"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    UNREPRESENTABLE_CLAIM = "unrepresentable_claim"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A token whose signature, header and claims all passed; ``headers`` go to the upstream."""

    claims: Mapping[str, Any]
    kid: str
    headers: tuple[tuple[str, str], ...]
    ok: Literal[True] = True


@dataclass(frozen=True, slots=True)
class Refused:
    """A refusal: ``description`` is safe to show (no raw token bytes, bounded length)."""

    reason: Reason
    description: str
    error: ErrorClass = "invalid_token"
    ok: Literal[False] = False

    @property
    def status(self) -> int:
        return 400 if self.error == "invalid_request" else 401


Verdict = Accepted | Refused
