"""``jwks-operator serve``: the JWKS HTTP server fed by a watch on labelled ConfigMaps.

Bad flag values are reported by argparse (exit 2) before anything is started; a missing
kubeconfig is reported the same way, since it is as much a usage error as a bad flag.
SIGTERM stops accepting connections, lets in-flight requests finish, and exits 0.
"""

import argparse
import asyncio
import logging
import re
import sys
from typing import Any

from jwks_operator import logs
from jwks_operator.commands import argtypes, kubeflags
from jwks_operator.kube.client import KubeClient
from jwks_operator.kube.config import (
    Credentials,
    KubeConfigError,
    endpoint_provider,
    load_credentials,
)
from jwks_operator.server.kube import ConfigMapSource
from jwks_operator.server.runner import ServerSettings, install_stop_signals, run_server
from jwks_operator.server.snapshot import SnapshotStore
from jwks_operator.server.tls import TlsError

EXIT_USAGE = 2
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")

logger = logging.getLogger("jwks_operator.serve")


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the published JWKS of labelled ConfigMaps over HTTP",
        description=(
            "Watch ConfigMaps labelled jwks.dev/keyset and serve their JWKS at "
            "/{namespace}/{name}/.well-known/jwks.json (plus openid-configuration, "
            "/healthz, /readyz, /metrics)."
        ),
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    parser.add_argument("--port", type=argtypes.port, default=8080, help="HTTP port (default 8080)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        action="append",
        type=_namespace,
        metavar="NS",
        help="watch only this namespace (repeatable)",
    )
    scope.add_argument(
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no --namespace is given)",
    )
    parser.add_argument(
        "--default-keyset",
        type=_keyset,
        metavar="NS/NAME",
        help="the keyset served at /.well-known/jwks.json and /.well-known/openid-configuration",
    )
    parser.add_argument(
        "--max-age",
        type=argtypes.max_age,
        default=300,
        metavar="SECONDS",
        help="Cache-Control max-age; capped by each keyset's next change, floor 60 (default 300)",
    )
    parser.add_argument(
        "--metrics-port",
        type=argtypes.port,
        metavar="PORT",
        help="serve /metrics on this port instead of the main one",
    )
    argtypes.add_tls_arguments(parser)
    kubeflags.add_arguments(parser)
    logs.add_arguments(parser)
    parser.set_defaults(handler=_handle)


def _namespace(text: str) -> str:
    if len(text) > 63 or not _NAME.fullmatch(text) or "." in text:
        raise argparse.ArgumentTypeError(f"not a namespace name: {text!r}")
    return text


def _keyset(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not _NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {text!r}")
    return _namespace(namespace), name


def _handle(args: argparse.Namespace) -> int:
    log_level, log_format = logs.chosen(args, "jwks-operator serve")
    if args.metrics_port is not None and args.metrics_port == args.port != 0:
        print("jwks-operator serve: --metrics-port must differ from --port", file=sys.stderr)
        return EXIT_USAGE
    try:  # local files first: a usage error here needs no cluster to be found
        tls = argtypes.tls_files(args)
    except TlsError as error:
        print(f"jwks-operator serve: {error}", file=sys.stderr)
        return EXIT_USAGE
    problem = kubeflags.kubeconfig_problem(args.kubeconfig)
    if problem is not None:
        print(f"jwks-operator serve: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        credentials = load_credentials(args.kubeconfig, args.context)
    except KubeConfigError as error:
        print(f"jwks-operator serve: {error}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(log_level, log_format)
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        max_age=args.max_age,
        default_keyset=args.default_keyset,
        tls=tls,
    )
    try:
        asyncio.run(_serve(settings, args, credentials))
    except TlsError as error:  # the files changed between the check and the start
        print(f"jwks-operator serve: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # e.g. the port is taken
        flag = "--port" if args.metrics_port is None else "--port or --metrics-port"
        ports = f"{args.port}" if args.metrics_port is None else f"{args.port}/{args.metrics_port}"
        problem = argtypes.listen_problem(args.host, ports, error, flag)
        print(f"jwks-operator serve: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return 0


async def _serve(
    settings: ServerSettings, args: argparse.Namespace, credentials: Credentials
) -> None:
    store = SnapshotStore()
    client = KubeClient(
        endpoint_provider(args.kubeconfig, args.context, first=credentials),
        qps=args.kube_api_qps,
        burst=args.kube_api_burst,
        user_agent="jwks-operator-serve",
    )
    source = ConfigMapSource(store, client, namespaces=args.namespace)
    stop = asyncio.Event()
    install_stop_signals(stop)
    watcher = asyncio.create_task(source.run(), name="configmap-source")
    watcher.add_done_callback(lambda task: _source_ended(task, stop))
    try:
        await run_server(store, settings, stop=stop)
    finally:
        watcher.cancel()
        try:
            await watcher
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("the ConfigMap source failed")
        await client.close()


def _source_ended(task: "asyncio.Task[None]", stop: asyncio.Event) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the ConfigMap source stopped: %r", task.exception())
        stop.set()
