"""The JWKS HTTP server: an in-memory snapshot of pre-encoded documents, served fast.

Reusable by ``serve`` (Kubernetes watch) and standalone mode (files). The pieces:

- ``snapshot``: ``SnapshotStore`` (``apply`` / ``remove`` / ``mark_ready`` / ``batch``),
  the immutable ``Snapshot`` it swaps, ``KeySetEntry`` and ``Document``.
- ``runner``: ``ServerSettings``, ``JwksServer`` (``start`` / ``shutdown`` / ``ports``),
  ``run_server`` (serve until SIGTERM, then drain), ``install_stop_signals``.
- ``kube``: ``load_connection`` and ``ConfigMapSource`` (list + watch into a store).
- ``hooks``: the ``/verify`` contract with ``jwks_operator.verification``.
- ``metrics``: ``Metrics`` (Prometheus text; ``add_collector`` for other components).
- ``http``, ``routing``, ``responses``, ``app``, ``protocol``: parsing, routes, response
  bytes, the request-to-bytes function, and the asyncio Protocol.

Typical use (standalone mode)::

    store = SnapshotStore()
    store.apply(namespace, keyset_name, configmap_data, annotations)
    store.mark_ready()
    await run_server(store, ServerSettings(host="0.0.0.0", port=8080))
"""

from jwks_operator.server.http import Limits
from jwks_operator.server.metrics import Metrics
from jwks_operator.server.runner import JwksServer, ServerSettings, install_stop_signals, run_server
from jwks_operator.server.snapshot import (
    ApplyResult,
    Document,
    KeySetEntry,
    Snapshot,
    SnapshotStore,
)

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
    "install_stop_signals",
    "run_server",
]
