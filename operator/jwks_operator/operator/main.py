"""Wiring: settings, the shared login, the API client and the handlers, handed to Kopf."""

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from jwks_operator.core.contract import API_VERSION, KIND
from jwks_operator.core.labelselector import LabelSelector
from jwks_operator.logs import keyset_extra
from jwks_operator.operator.credentials import SharedLogin
from jwks_operator.operator.handlers import build_registry
from jwks_operator.operator.settings import operator_settings
from jwks_operator.operator.wakeups import Wakers
from jwks_operator.operator.worker import Runtime
from jwks_operator.store.kubeclient import KubeClient

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


def run_operator(
    *,
    namespaces: tuple[str, ...],
    clusterwide: bool,
    peering: str | None,
    priority: int,
    liveness: str | None,
    resync: float,
    context: str | None = None,
    shard: LabelSelector | None = None,
) -> int:
    """Run Kopf until it stops; logging is already configured (``jwks_operator.logs``).

    With ``shard`` (``--keyset-selector``) only the JwksKeySets whose labels match it are
    watched and reconciled: one shard of several processes that split the keysets."""
    settings = operator_settings(str(shard) if shard is not None else None)
    login = SharedLogin(settings, context)
    runtime = Runtime(client=KubeClient(login.endpoint), post_event=post_event, resync=resync)
    registry = build_registry(runtime, Wakers(), login, shard)
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
