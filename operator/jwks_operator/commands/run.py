"""``jwks-operator run``: the Kubernetes operator (Kopf) that reconciles JwksKeySets.

Credentials are found in ``kube.config.ORDER`` (``--kubeconfig``, ``KUBECONFIG``, the
in-cluster service account, ``~/.kube/config``). The scope must be explicit
(``--namespace`` or ``--all-namespaces``), because an operator that silently watches the
whole cluster needs cluster-wide rights its chart may not have granted. One replica runs
``--standalone`` (the default); several replicas use ``--peering NAME`` so that exactly
one of them is active (Kopf peering; the chart creates the peering object). Several
operators can split the keysets between them (shards): by namespace, or by
``--keyset-selector`` (docs/operator.md, "Shards").
"""

import argparse
import re
import sys
from typing import Any
from urllib.parse import urlsplit

from jwks_operator import logs
from jwks_operator.commands import kubeflags
from jwks_operator.core.durations import DurationError, parse_duration
from jwks_operator.core.labelselector import LabelSelector, SelectorError, parse_selector
from jwks_operator.core.spec import NAME_MAX, NAME_PATTERN

EXIT_USAGE = 2
_DNS_NAME = re.compile(NAME_PATTERN)


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the Kubernetes operator",
        description="Reconcile JwksKeySet resources into Secrets, ConfigMaps and status.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable; glob patterns as Kopf accepts them)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        metavar="NAME",
        type=_peering_name,
        help="coordinate several replicas through the Kopf peering object NAME",
    )
    peering.add_argument(
        "--standalone",
        action="store_true",
        help="run as the only replica, without peering (the default)",
    )
    parser.add_argument(
        "--priority", type=int, default=0, help="peering priority of this replica (default 0)"
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        type=_liveness_url,
        help="serve Kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz",
    )
    parser.add_argument(
        "--keyset-selector",
        metavar="SELECTOR",
        type=_keyset_selector,
        help="reconcile only the JwksKeySets whose labels match this Kubernetes label "
        "selector (e.g. jwks.dev/shard=a): one shard of several operators",
    )
    parser.add_argument(
        "--resync",
        default="5m",
        metavar="DURATION",
        help="longest sleep between two reconciliations of a keyset (default 5m); "
        "rotations happen when due regardless",
    )
    kubeflags.add_arguments(parser)
    logs.add_arguments(parser)
    # Before --log-level existed: kept working, with a warning naming the replacement.
    verbosity = parser.add_mutually_exclusive_group()
    for flags, level in (
        (("-v", "--verbose"), "debug"),
        (("--debug",), "debug"),
        (("-q", "--quiet"), "warning"),
    ):
        verbosity.add_argument(
            *flags,
            dest="old_level",
            action="store_const",
            const=level,
            help=f"deprecated: --log-level {level}",
        )
    parser.set_defaults(handler=_handle)


def _liveness_url(text: str) -> str:
    """Kopf accepts http(s)://host:port/path; anything else would fail after start-up."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the port is out of range") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL like http://0.0.0.0:8081/healthz")
    return text


def _keyset_selector(text: str) -> LabelSelector:
    """Checked here: the API server would refuse a bad selector on every watch, forever."""
    try:
        return parse_selector(text)
    except SelectorError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def _peering_name(text: str) -> str:
    if not _DNS_NAME.match(text) or len(text) > NAME_MAX:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Kubernetes object name (lowercase letters, digits, '-', '.')"
        )
    return text


def _credentials_problem(kubeconfig: str | None, context: str | None) -> str | None:
    """Kopf would retry a missing or broken kubeconfig forever; say so and stop instead."""
    from jwks_operator.kube.config import KubeConfigError, load_credentials

    try:
        load_credentials(kubeconfig, context)
    except KubeConfigError as error:
        return f"no usable Kubernetes credentials: {error}"
    return None


def _usage(message: str) -> int:
    print(f"jwks-operator run: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _handle(args: argparse.Namespace) -> int:
    if not args.namespace and not args.all_namespaces:
        return _usage("choose the scope: --namespace NS (repeatable) or --all-namespaces")
    try:
        resync = parse_duration(args.resync).total_seconds()
    except DurationError as error:
        return _usage(f"--resync: {error}")
    if resync <= 0:
        return _usage("--resync must be longer than zero")
    if args.old_level is not None:
        print(
            f"jwks-operator run: warning: -v, --debug and -q are deprecated; "
            f"use --log-level {args.old_level}",
            file=sys.stderr,
        )
        args.log_level = args.old_level
    log_level, log_format = logs.chosen(args, "jwks-operator run")
    problem = kubeflags.kubeconfig_problem(args.kubeconfig)
    if problem is not None:
        return _usage(problem)
    problem = _credentials_problem(args.kubeconfig, args.context)
    if problem is not None:
        return _usage(problem)

    # Imported here so that `jwks-operator --help` and the other commands stay light.
    from jwks_operator.operator.main import run_operator

    logs.configure(log_level, log_format)
    return run_operator(
        namespaces=tuple(args.namespace),
        clusterwide=args.all_namespaces,
        peering=args.peering,
        priority=args.priority,
        liveness=args.liveness,
        resync=resync,
        context=args.context,
        kubeconfig=args.kubeconfig,
        qps=args.kube_api_qps,
        burst=args.kube_api_burst,
        shard=args.keyset_selector,
    )
