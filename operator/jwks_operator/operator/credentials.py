"""One login for Kopf and for the operator's own API client, from ``kube.config``.

The credentials are found in ``kube.config.ORDER`` (the same for every command) and
handed both to Kopf, as the ``ConnectionInfo`` its login handler returns, and to the
operator's ``KubeClient``, as an ``Endpoint``: both always talk to the same server as the
same user. After a 401 either side logs in again, which reloads the configuration and so
renews expiring tokens (exec plugins, projected service-account tokens).
"""

import asyncio
import logging

import kopf

from jwks_operator.kube.client import Endpoint
from jwks_operator.kube.config import Credentials, KubeConfigError, load_credentials

_log = logging.getLogger("jwks_operator.credentials")


class SharedLogin:
    def __init__(
        self,
        settings: kopf.OperatorSettings,
        context: str | None = None,
        kubeconfig: str | None = None,
    ) -> None:
        self._settings = settings
        self._context = context
        self._kubeconfig = kubeconfig
        self._credentials: Credentials | None = None
        self._lock = asyncio.Lock()

    async def _load(self) -> Credentials:
        try:
            credentials = await asyncio.to_thread(load_credentials, self._kubeconfig, self._context)
        except KubeConfigError as error:
            raise kopf.LoginError(str(error)) from None
        self._credentials = credentials
        return credentials

    async def login(self) -> kopf.ConnectionInfo:
        """Log in now (Kopf calls this at startup and whenever its credentials expire)."""
        async with self._lock:
            credentials = await self._load()
        _log.debug("Kubernetes credentials from %s", credentials.source)
        return await asyncio.to_thread(connection_info, credentials, self._settings)

    async def endpoint(self, refresh: bool) -> Endpoint:
        async with self._lock:
            credentials = self._credentials
            if refresh or credentials is None:
                credentials = await self._load()
        # Reads the token (a plugin may run) and builds an SSL context: off the loop.
        return await asyncio.to_thread(credentials.endpoint)


def connection_info(
    credentials: Credentials, settings: kopf.OperatorSettings
) -> kopf.ConnectionInfo:
    """Kopf's view of the same credentials (read the way ``kopf.login_via_client`` reads a
    ``kubernetes`` configuration: the token through ``get_api_key_with_prefix``)."""
    configuration = credentials.configuration
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    parts: list[str] = header.split(" ", 1) if header else []
    scheme: str | None = parts[0] if len(parts) == 2 else None
    token: str | None = parts[-1] if parts else None
    return kopf.ConnectionInfo(
        server=credentials.server,
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
