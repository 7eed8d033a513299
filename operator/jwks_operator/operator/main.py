"""Wiring: settings, the shared login, the API client and the handlers, handed to Kopf."""

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from jwks_operator.core.contract import API_VERSION, KEYSET_LABEL, KIND, MANAGED_SELECTOR
from jwks_operator.core.labelselector import LabelSelector
from jwks_operator.kube.cache import ObjectCache
from jwks_operator.kube.client import DEFAULT_BURST, DEFAULT_QPS, KubeClient
from jwks_operator.logs import keyset_extra
from jwks_operator.operator.credentials import SharedLogin
from jwks_operator.operator.handlers import build_registry
from jwks_operator.operator.settings import RELAY_HANDLER, operator_settings
from jwks_operator.operator.wakeups import Wakers
from jwks_operator.operator.worker import Runtime
from jwks_operator.store.kubernetes import PLURALS

_log = logging.getLogger("jwks_operator.operator")


def post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Queue an Event about the keyset through Kopf's poster (it batches and retries), and
    log it as standalone mode logs its events: one line, with the keyset and the reason
    as fields of a JSON line (``jwks_operator.logs``)."""
    metadata = body.get("metadata") or {}
    reference: Any = {
        "apiVersion": body.get("apiVersion") or API_VERSION,
        "kind": body.get("kind") or KIND,
        "metadata": metadata,
    }
    kopf.event(kopf.Body(reference), type=type_, reason=reason, message=message)
    label = f"{metadata.get('namespace')}/{metadata.get('name')}"
    level = logging.WARNING if type_ == "Warning" else logging.INFO
    _log.log(level, "%s %s: %s", label, reason, message, extra=keyset_extra(label, reason))


def _not_a_relay_success(record: logging.LogRecord) -> bool:
    """Drop Kopf's "Handler 'keyset-changes' succeeded." (INFO, on every keyset event).

    That handler only relays the event to the keyset's daemon; at thousands of keysets the
    line is most of the log and says nothing. Its failures, and the daemon's own lines,
    are kept; ``--log-level debug`` still shows Kopf's "is invoked" lines.
    """
    return not (
        record.levelno == logging.INFO and record.msg == f"Handler {RELAY_HANDLER!r} succeeded."
    )


def run_operator(
    *,
    namespaces: tuple[str, ...],
    clusterwide: bool,
    peering: str | None,
    priority: int,
    liveness: str | None,
    resync: float,
    context: str | None = None,
    kubeconfig: str | None = None,
    qps: float = DEFAULT_QPS,
    burst: int = DEFAULT_BURST,
    shard: LabelSelector | None = None,
) -> int:
    """Run Kopf until it stops; logging is already configured (``jwks_operator.logs``).

    With ``shard`` (``--keyset-selector``) only the JwksKeySets whose labels match it are
    watched and reconciled: one shard of several processes that split the keysets."""
    settings = operator_settings(str(shard) if shard is not None else None)
    logging.getLogger("kopf.objects").addFilter(_not_a_relay_success)
    login = SharedLogin(settings, context, kubeconfig)
    client = KubeClient(login.endpoint, qps=qps, burst=burst)
    wakers = Wakers()
    cache = ObjectCache(
        client,
        PLURALS,
        selector=MANAGED_SELECTOR,
        index_label=KEYSET_LABEL,
        namespaces=() if clusterwide else namespaces,
        listener=wakers.object_changed,
    )
    runtime = Runtime(client=client, cache=cache, post_event=post_event, resync=resync)
    registry = build_registry(runtime, wakers, login, shard)
    if shard is not None:
        _log.info(f"Shard: reconciling only the JwksKeySets whose labels match {shard}")
    kopf.run(
        registry=registry,
        settings=settings,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        liveness_endpoint=liveness,
        clusterwide=clusterwide,
        namespaces=namespaces,
    )
    return 0
