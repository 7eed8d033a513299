"""One login for Kopf and for the operator's own API client, found the way kubectl finds it.

Kopf's ``login_via_client`` tries the in-cluster service account first, then the
kubeconfig (``KUBECONFIG``, else ``~/.kube/config``, current context). The operator
registers it as *the* login handler and hands the same ``ConnectionInfo`` to its own
aiohttp client, so both always talk to the same server as the same user; after a 401
the client logs in again, which renews expiring tokens.
"""

import asyncio
import logging
import os
from typing import Any

import kopf

from jwks_operator.store.kubeclient import Endpoint

_log = logging.getLogger("jwks_operator.credentials")


class SharedLogin:
    def __init__(self, settings: kopf.OperatorSettings, context: str | None = None) -> None:
        self._settings = settings
        self._context = context
        self._info: kopf.ConnectionInfo | None = None
        self._lock = asyncio.Lock()

    async def login(self, logger: Any = _log) -> kopf.ConnectionInfo:
        """Log in now (Kopf calls this at startup and whenever its credentials expire)."""
        if self._context is None:
            info = await asyncio.to_thread(
                kopf.login_via_client, logger=logger, settings=self._settings
            )
        else:
            info = await asyncio.to_thread(login_with_context, self._context, self._settings)
        if info is None:  # only when the kubernetes package is missing
            raise kopf.LoginError("the kubernetes package is required to find credentials")
        self._info = info
        return info

    async def endpoint(self, refresh: bool) -> Endpoint:
        async with self._lock:
            if refresh or self._info is None:
                await self.login()
            info = self._info
            assert info is not None
        secure = info.server.startswith("https:")
        return Endpoint(
            server=info.server,
            headers=info.as_http_headers(),
            # Builds an SSL context from files and the system CA store: off the loop.
            ssl_context=await asyncio.to_thread(info.as_ssl_context) if secure else None,
        )


def login_with_context(context: str, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """``--context``: Kopf's ``login_via_client`` always takes the current context.

    The kubeconfig is loaded as kubectl loads it, with the named context, and read back
    the way ``login_via_client`` reads it (an auth-provider's token through
    ``get_api_key_with_prefix``, files possibly temporary).
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            # KUBECONFIG as it is now (the package's default is read once, at its import).
            config_file=os.environ.get("KUBECONFIG") or None,
            context=context,
            client_configuration=configuration,
        )
    except config.ConfigException as error:
        raise kopf.LoginError(f"cannot use kubeconfig context {context!r}: {error}") from None
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    parts: list[str] = header.split(" ", 1) if header else []
    scheme: str | None = parts[0] if len(parts) == 2 else None
    token: str | None = parts[-1] if parts else None
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        trust_env=settings.networking.trust_env,
    )
