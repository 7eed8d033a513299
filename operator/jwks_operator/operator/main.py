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

_LOG_FORMATS = {
    "plain": kopf.LogFormat.PLAIN,
    "full": kopf.LogFormat.FULL,
    "json": kopf.LogFormat.JSON,
}


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
    log_format: str,
    verbose: bool,
    debug: bool,
    quiet: bool,
) -> int:
    # Prefix each line with [namespace/name] of its object (Kopf's own CLI does so too).
    kopf.configure(
        verbose=verbose,
        debug=debug,
        quiet=quiet,
        log_format=_LOG_FORMATS[log_format],
        log_prefix=log_format != "json",
    )
    settings = operator_settings()
    login = SharedLogin(settings)
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
