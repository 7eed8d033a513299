"""Where the credentials come from: one order for ``run``, ``serve`` and ``sign --kube``.

The order (controller-runtime's, which every Go operator uses):

1. ``--kubeconfig PATH``;
2. the ``KUBECONFIG`` environment variable (one or more files, merged as kubectl merges);
3. the in-cluster ServiceAccount (``KUBERNETES_SERVICE_HOST`` and the mounted token);
4. ``~/.kube/config``.

kubectl and Kopf agree that an explicit choice wins, and that in-cluster and the home
kubeconfig are fallbacks; they disagree on which fallback comes first (kubectl: the home
file; Kopf: in-cluster). In-cluster first is right for a pod (a stray ``~/.kube/config`` in
an image must not redirect the operator) and harmless on a laptop (no service account
there). ``--context`` picks a context of the kubeconfig found by 1, 2 or 4, never
in-cluster.

The kubeconfig itself is read by the ``kubernetes`` package's loader (exec plugins,
auth providers, embedded certificates), which is also what renews expiring tokens: each
``endpoint()`` reads the current token again. Each failure has one message, fit for the
command line (the commands exit with 2).
"""

import asyncio
import os
import ssl
from dataclasses import dataclass
from typing import Any, Final

from jwks_operator.kube.client import Endpoint, EndpointProvider

KUBECONFIG_ENV: Final = "KUBECONFIG"
HOME_KUBECONFIG: Final = "~/.kube/config"
IN_CLUSTER: Final = "the in-cluster ServiceAccount"
ORDER: Final = f"--kubeconfig, ${KUBECONFIG_ENV}, {IN_CLUSTER}, {HOME_KUBECONFIG}"
"""The order, as the help texts and error messages spell it."""


class KubeConfigError(Exception):
    """No usable credentials; the message says which source failed and why."""


@dataclass(frozen=True)
class Credentials:
    """A loaded configuration and where it came from."""

    configuration: Any
    """The ``kubernetes.client.Configuration``: host, TLS files, token hooks."""
    source: str
    """Which step of ``ORDER`` found it (for log lines)."""

    @property
    def server(self) -> str:
        return str(self.configuration.host).rstrip("/")

    def auth_headers(self) -> dict[str, str]:
        """Authorization headers, read now (may run a credential plugin: call in a thread)."""
        configuration = self.configuration
        headers: dict[str, str] = {}
        for setting in configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        if getattr(configuration, "username", None) and "authorization" not in headers:
            headers["authorization"] = configuration.get_basic_auth_token()
        return headers

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS as the kubeconfig says (CA, client certificate, or verification off)."""
        if not self.server.startswith("https://"):
            return None
        configuration = self.configuration
        if configuration.verify_ssl:
            context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        return context

    def endpoint(self) -> Endpoint:
        """What ``KubeClient`` needs (reads files and may run a plugin: call in a thread)."""
        return Endpoint(
            server=self.server,
            headers=self.auth_headers(),
            ssl_context=self.ssl_context(),
            server_hostname=getattr(self.configuration, "tls_server_name", None) or None,
        )


def _kubeconfig_files(kubeconfig: str | None) -> tuple[str | None, str] | None:
    """The kubeconfig to load (None: the package's merged ``KUBECONFIG``) and its source."""
    if kubeconfig:
        return kubeconfig, f"--kubeconfig {kubeconfig}"
    if os.environ.get(KUBECONFIG_ENV):
        return None, f"${KUBECONFIG_ENV}"
    return None


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def load_credentials(kubeconfig: str | None = None, context: str | None = None) -> Credentials:
    """The credentials by ``ORDER``; KubeConfigError when there are none or they are broken."""
    from kubernetes import client, config

    configuration = client.Configuration()
    chosen = _kubeconfig_files(kubeconfig)
    home = os.path.expanduser(HOME_KUBECONFIG)
    try:
        if chosen is None and _in_cluster() and context is None:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
            return Credentials(configuration, IN_CLUSTER)
        if chosen is None:
            if not os.path.exists(home):
                raise KubeConfigError(
                    f"no Kubernetes credentials found (looked for {ORDER})"
                    + (f"; --context {context} needs a kubeconfig" if context else "")
                )
            chosen = (home, HOME_KUBECONFIG)
        path, source = chosen
        config.load_kube_config(  # type: ignore[no-untyped-call]
            # KUBECONFIG as it is now (the package's default is read once, at its import).
            config_file=path or os.environ.get(KUBECONFIG_ENV),
            context=context,
            client_configuration=configuration,
        )
        return Credentials(configuration, source + (f" (context {context})" if context else ""))
    except KubeConfigError:
        raise
    except config.ConfigException as error:
        raise KubeConfigError(f"cannot use the Kubernetes configuration: {error}") from None
    except OSError as error:
        raise KubeConfigError(f"cannot read the kubeconfig: {error}") from None
    except Exception as error:  # e.g. YAML syntax: the loader has no error type of its own
        raise KubeConfigError(
            f"cannot load the Kubernetes configuration: {error.__class__.__name__}: "
            f"{str(error)[:300]}"
        ) from None


def endpoint_provider(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    first: Credentials | None = None,
) -> EndpointProvider:
    """A ``KubeClient`` provider: the endpoint of ``first`` (or of a fresh load), and on a
    refresh (after a 401, or when old) the configuration loaded again, in a thread."""
    current: list[Credentials] = [first] if first is not None else []

    async def provide(refresh: bool) -> Endpoint:
        if refresh or not current:
            current[:] = [await asyncio.to_thread(load_credentials, kubeconfig, context)]
        return await asyncio.to_thread(current[0].endpoint)

    return provide
