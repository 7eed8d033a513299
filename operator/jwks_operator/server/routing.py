"""Request paths to routes, with percent-encoding handled once and strictly.

Every route has a fixed shape whose variable segments are Kubernetes names, so a path is
split on its literal slashes first and each segment decoded after: an encoded slash, dot
segment or double encoding can only produce a segment that is not a valid name, i.e. a 404,
never a different resource. Nothing is ever redirected or normalised.

Routing reads the raw request target as aiohttp received it (``request.raw_path``), not
aiohttp's decoded and normalised path: what a name is must be decided here, once.
"""

import re
from typing import Final, NamedTuple
from urllib.parse import unquote_to_bytes

JWKS: Final = "jwks"
OPENID: Final = "openid"
VERIFY: Final = "verify"
VERIFY_PREFIX: Final = "verify_prefix"
"""``/{ns}/{name}/verify/<anything>``: Envoy's ext_authz HTTP service appends the client's
path (and query) to its ``path_prefix``. The tail is the client's: never decoded, and the
query is not passed to the verify handler (it would be client-chosen policy overrides)."""
STATUS: Final = "status"
"""``/{ns}/{name}/status``: a read-only view of where a keyset stands (standalone only)."""
HEALTHZ: Final = "healthz"
READYZ: Final = "readyz"
METRICS: Final = "metrics"
NOT_FOUND: Final = "not_found"
ASTERISK: Final = "asterisk"

# Kubernetes namespaces and label values: alphanumerics, '-', '_', '.', at most 253.
_NAME_RE: Final = re.compile(rb"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
_BAD_ESCAPE_RE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_WELL_KNOWN: Final = b".well-known"
_DOCUMENTS: Final = {b"jwks.json": JWKS, b"openid-configuration": OPENID}


class Route(NamedTuple):
    kind: str
    namespace: str = ""
    name: str = ""
    label: str = ""
    """The ``route`` label of the request metric."""
    message: str = ""
    """Why a NOT_FOUND route was not found."""


ROUTE_NOT_FOUND: Final = Route(NOT_FOUND, label="other", message="no such route")


class MalformedTarget(ValueError):
    """A request target that is not a path we can read (answered 400)."""


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of an origin-form or absolute-form target; ``*`` stays ``*``.

    The absolute form is what clients send to proxies; its authority is not ours to check.
    """
    if target[:1] != "/" and target != "*":
        lowered = target[:8].lower()
        if not lowered.startswith(("http://", "https://")):
            raise MalformedTarget("malformed request target")
        rest = target[target.index("//") + 2 :]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    if "#" in path:
        raise MalformedTarget("a fragment in the request target")
    return path, query


class Router:
    """Resolves paths (cached: clients repeat the same few) for one listener's routes."""

    def __init__(
        self,
        *,
        default_keyset: tuple[str, str] | None = None,
        serve_keysets: bool = True,
        serve_metrics: bool = True,
        serve_status: bool = False,
        cache_size: int = 4096,
    ) -> None:
        self._cache: dict[str, Route] = {}
        self._cache_size = cache_size
        self._serve_keysets = serve_keysets
        self._serve_status = serve_status
        self._static: dict[bytes, Route] = {
            b"/healthz": Route(HEALTHZ, label=HEALTHZ),
            b"/readyz": Route(READYZ, label=READYZ),
            b"*": Route(ASTERISK, label="other"),
        }
        if serve_metrics:
            self._static[b"/metrics"] = Route(METRICS, label=METRICS)
        if serve_keysets:
            for document, kind in _DOCUMENTS.items():
                path = b"/.well-known/" + document
                if default_keyset is None:
                    message = "no default keyset is configured (--default-keyset)"
                    self._static[path] = Route(NOT_FOUND, label="default_" + kind, message=message)
                else:
                    namespace, name = default_keyset
                    self._static[path] = Route(kind, namespace, name, label="default_" + kind)

    def resolve(self, path: str) -> Route:
        """The route of a raw path; raise MalformedTarget for a malformed percent-escape."""
        route = self._cache.get(path)
        if route is None:
            route = self._resolve(path.encode("utf-8", "surrogateescape"))
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[path] = route
        return route

    def _resolve(self, path: bytes) -> Route:
        segments = path.split(b"/")
        if len(segments) > 4 and segments[3] == b"verify" and self._serve_keysets:
            namespace, name = segments[1], segments[2]
            if segments[0] or not _NAME_RE.fullmatch(namespace) or not _NAME_RE.fullmatch(name):
                return ROUTE_NOT_FOUND
            return Route(VERIFY_PREFIX, namespace.decode("ascii"), name.decode("ascii"), VERIFY)
        if b"%" in path:
            if _BAD_ESCAPE_RE.search(path):
                raise MalformedTarget("malformed percent-encoding in the path")
            segments = [unquote_to_bytes(segment) for segment in segments]
            if any(b"/" in segment for segment in segments):
                return ROUTE_NOT_FOUND
            path = b"/".join(segments)
        static = self._static.get(path)
        if static is not None:
            return static
        if not self._serve_keysets or len(segments) not in (4, 5) or segments[0]:
            return ROUTE_NOT_FOUND
        if len(segments) == 5:
            kind = _DOCUMENTS.get(segments[4]) if segments[3] == _WELL_KNOWN else None
        elif segments[3] == b"verify":
            kind = VERIFY
        else:
            kind = STATUS if segments[3] == b"status" and self._serve_status else None
        if kind is None:
            return ROUTE_NOT_FOUND
        namespace, name = segments[1], segments[2]
        if not _NAME_RE.fullmatch(namespace) or not _NAME_RE.fullmatch(name):
            return Route(NOT_FOUND, label=kind, message="not a valid namespace and keyset name")
        return Route(kind, namespace.decode("ascii"), name.decode("ascii"), label=kind)
