"""The seam between the JWKS server and the gateway ``/verify`` endpoint (issue 7).

The server owns the socket, the parsing and the snapshot; the verification package owns
what a valid token is. Keeping the contract this small lets either side change without the
other, and lets the server run unchanged when the package is absent (``/verify`` then
answers 404 JSON, like any route that does not exist).

The package ``jwks_operator.verification`` takes part by exposing, at module level:

``handle_verify(entry, method, headers, query) -> (status, headers, body)``
    Called for ``/{namespace}/{name}/verify`` with any method, synchronously on the event
    loop (keep it to microseconds: keys are parsed once per change, not per request).
    ``entry`` is the keyset's ``KeySetEntry`` (``entry.verifier`` is what ``build_verifier``
    returned), ``method`` the request method (``"GET"``...), ``headers`` the request
    headers with lower-case names, values decoded as latin-1 and repeated headers joined
    with ``", "``, ``query`` the raw (still percent-encoded) query string without ``?``.
    The returned headers must not include Content-Length, Date or Connection (the server
    writes those); a header whose name or value cannot be sent safely is dropped and logged.
    An exception is logged and answered with a bare 500, never with its text.

``build_verifier(jwks, verification_json) -> object`` (optional)
    Called once per ConfigMap change, in a worker thread, with the guarded JWKS document
    and the raw ``verification.json`` text (or None). Its result is stored on the entry;
    an exception leaves ``entry.verifier`` None and is logged without key material.

``metrics_text() -> str`` (optional)
    Extra Prometheus text appended to ``/metrics`` (e.g. verifications by result).
"""

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from jwks_operator.server.snapshot import KeySetEntry

VERIFICATION_MODULE: Final = "jwks_operator.verification"

VerifyResponse = tuple[int, Sequence[tuple[str, str]], bytes]
"""(status, headers, body) as returned by a verify handler."""

logger = logging.getLogger(__name__)


class VerifyHandler(Protocol):
    def __call__(
        self,
        entry: "KeySetEntry",
        method: str,
        headers: Mapping[str, str],
        query: str,
        /,
    ) -> VerifyResponse: ...


class VerifierBuilder(Protocol):
    def __call__(self, jwks: Mapping[str, Any], verification_json: str | None, /) -> object: ...


@dataclass(frozen=True, slots=True)
class VerificationHooks:
    """What the verification package contributes; see the module docstring."""

    handle_verify: VerifyHandler
    build_verifier: VerifierBuilder | None = None
    metrics_text: Callable[[], str] | None = None


def load_verification_hooks(module_name: str = VERIFICATION_MODULE) -> VerificationHooks | None:
    """The hooks of the verification package, or None while it does not provide them."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            return None
        raise
    handle = getattr(module, "handle_verify", None)
    if handle is None:
        return None
    hooks = VerificationHooks(
        handle_verify=handle,
        build_verifier=getattr(module, "build_verifier", None),
        metrics_text=getattr(module, "metrics_text", None),
    )
    logger.debug("verification hooks loaded from %s", module_name)
    return hooks
