"""The JWKS HTTP server: an in-memory snapshot of pre-encoded documents, served by aiohttp.

Reusable by ``serve`` (Kubernetes watch) and standalone mode (files). Data flows one way:
source (``kube`` or standalone's reconcile) -> ``snapshot`` -> ``app`` (the handler). The
modules, in that order:

- ``servable``: what may be served (the guard's projection; ``Refusal`` reasons).
- ``representation``: ``Document`` (bytes, gzip, ETags) and content negotiation.
- ``snapshot``: ``SnapshotStore`` (``apply`` / ``remove`` / ``mark_ready`` / ``batch``),
  the immutable ``Snapshot`` it swaps and its ``KeySetEntry``.
- ``kube``: ``ConfigMapSource`` (list + watch of keysets and ConfigMaps into a store, on
  the project's one client, ``jwks_operator.kube``).
- ``routing``: request targets to routes, strictly.
- ``app``: ``Responder``, the aiohttp request handler (``/verify`` calls
  ``jwks_operator.verification.handle_verify``).
- ``connections``: ``Limits`` and the slow-client bounds aiohttp has no setting for.
- ``tls``: ``TlsFiles``, ``load_context`` (``TlsError``), reloading on change.
- ``metrics``: ``Metrics`` (prometheus_client registry of the server's families).
- ``runner``: ``ServerSettings``, ``JwksServer`` (``start`` / ``shutdown`` / ``ports``),
  ``run_server`` (serve until SIGTERM, then drain), ``install_stop_signals``.

Typical use (standalone mode)::

    store = SnapshotStore()
    store.apply(namespace, keyset_name, configmap_data, annotations)
    store.mark_ready()
    await run_server(store, ServerSettings(host="0.0.0.0", port=8080))
"""

from jwks_operator.server.connections import Limits
from jwks_operator.server.metrics import Metrics
from jwks_operator.server.representation import Document
from jwks_operator.server.runner import JwksServer, ServerSettings, install_stop_signals, run_server
from jwks_operator.server.snapshot import ApplyResult, KeySetEntry, Snapshot, SnapshotStore
from jwks_operator.server.tls import TlsError, TlsFiles, load_context

__all__ = [
    "ApplyResult",
    "Document",
    "JwksServer",
    "KeySetEntry",
    "Limits",
    "Metrics",
    "ServerSettings",
    "Snapshot",
    "SnapshotStore",
    "TlsError",
    "TlsFiles",
    "install_stop_signals",
    "load_context",
    "run_server",
]
