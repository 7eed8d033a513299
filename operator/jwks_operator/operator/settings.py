"""Kopf's settings for this operator: our names on everything Kopf writes, and narrow watches.

- The finalizer (which a daemon needs, so that Kopf can stop it before the object goes)
  and Kopf's bookkeeping annotations carry the ``jwks.dev`` prefix, so that users can
  tell who put them there.
- Events say they come from ``jwks-operator`` (``kubectl describe`` shows this), and only
  the Events the operator posts on purpose are posted: Kopf's log-to-Event posting is off.
- Secrets and ConfigMaps are not Kopf's: the operator's cache (``kube.cache``) watches
  them with the server-side selector ``core.contract.MANAGED_SELECTOR``, so the operator
  never streams the cluster's other Secrets, only its own.
- With ``--keyset-selector`` (a shard), JwksKeySets are watched with that label selector:
  the API server sends only this shard's keysets, and a DELETED event for one that is
  relabelled away (``handlers`` then stops its daemon).
"""

import logging
import os
import socket

import kopf

from jwks_operator.core.contract import GROUP, PLURAL

FINALIZER = f"{GROUP}/finalizer"
RELAY_HANDLER = "keyset-changes"
"""The id of the handler that relays keyset events to daemons (its success is not logged)."""


def operator_settings(keyset_selector: str | None = None) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Events are posted explicitly from each Outcome (kopf.event ignores this level); log
    # lines must not become Events too, or every reconciliation would post one.
    settings.posting.level = logging.CRITICAL + 10
    settings.posting.reporting_component = "jwks-operator"
    settings.posting.reporting_instance = os.environ.get("POD_NAME") or socket.gethostname()
    settings.posting.event_name_prefix = "jwks-operator-"
    if keyset_selector:
        settings.watching.label_selectors[GROUP, PLURAL] = keyset_selector
    return settings
