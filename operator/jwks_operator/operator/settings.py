"""Kopf's settings for this operator: our names on everything Kopf writes, and narrow watches.

- The finalizer (which a daemon needs, so that Kopf can stop it before the object goes)
  and Kopf's bookkeeping annotations carry the ``jwks.dev`` prefix, so that users can
  tell who put them there.
- Events say they come from ``jwks-operator`` (``kubectl describe`` shows this), and only
  the Events the operator posts on purpose are posted: Kopf's log-to-Event posting is off.
- Secrets and ConfigMaps are watched with a server-side label selector: the operator
  never streams the cluster's other Secrets, only its own (the watch exists to notice
  deletion and hand edits). Kopf's handlers filter by label again on the client side.
- With ``--keyset-selector`` (a shard), JwksKeySets are watched with that label selector
  too: the API server sends only this shard's keysets, and a DELETED event for one that is
  relabelled away (``handlers`` then stops its daemon).
"""

import logging
import os
import socket

import kopf

from jwks_operator.core.contract import GROUP, MANAGED_BY, MANAGED_BY_LABEL, PLURAL

FINALIZER = f"{GROUP}/finalizer"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"


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
    for plural in ("secrets", "configmaps"):
        settings.watching.label_selectors["v1", plural] = MANAGED_SELECTOR
    if keyset_selector:
        settings.watching.label_selectors[GROUP, PLURAL] = keyset_selector
    return settings
