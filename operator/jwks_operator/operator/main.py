"""Wiring: settings, the shared login, the API client and the handlers, handed to Kopf."""

from collections.abc import Mapping
from typing import Any

import kopf

from jwks_operator.core.contract import API_VERSION, KIND
from jwks_operator.operator.credentials import SharedLogin
from jwks_operator.operator.handlers import build_registry
from jwks_operator.operator.settings import operator_settings
from jwks_operator.operator.wakeups import Wakers
from jwks_operator.operator.worker import Runtime
from jwks_operator.store.kubeclient import KubeClient


def post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Queue an Event about the keyset through Kopf's poster (it batches and retries)."""
    reference: Any = {
        "apiVersion": body.get("apiVersion") or API_VERSION,
        "kind": body.get("kind") or KIND,
        "metadata": body.get("metadata") or {},
    }
    kopf.event(kopf.Body(reference), type=type_, reason=reason, message=message)


def run_operator(
    *,
    namespaces: tuple[str, ...],
    clusterwide: bool,
    peering: str | None,
    priority: int,
    liveness: str | None,
    resync: float,
    context: str | None = None,
) -> int:
    """Run Kopf until it stops; logging is already configured (``jwks_operator.logs``)."""
    settings = operator_settings()
    login = SharedLogin(settings, context)
    runtime = Runtime(client=KubeClient(login.endpoint), post_event=post_event, resync=resync)
    registry = build_registry(runtime, Wakers(), login)
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
