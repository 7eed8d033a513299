"""``--kubeconfig``, ``--context`` and the client's rate limit: one set of flags, one check,
on every command that talks to a cluster (``run``, ``serve``, ``sign --kube``).

The kubernetes package, given a path that does not exist, answers "Invalid kube-config
file. No configuration found.", which does not say the file is missing; Kopf retries a
broken configuration forever. So the file is checked here first, with one message for a
flag and for ``KUBECONFIG`` alike, and a problem is a usage error (exit 2).
"""

import argparse
import os

from jwks_operator.kube.client import DEFAULT_BURST, DEFAULT_QPS
from jwks_operator.kube.config import KUBECONFIG_ENV, ORDER


def add_arguments(parser: argparse.ArgumentParser, *, note: str = "", limits: bool = True) -> None:
    """The flags; ``limits``: also the rate limit (not for one-shot commands)."""
    group = parser.add_argument_group(f"cluster access (credentials in this order: {ORDER})")
    group.add_argument("--kubeconfig", metavar="PATH", help=f"kubeconfig file{note}")
    group.add_argument(
        "--context", metavar="NAME", help=f"kubeconfig context (default: current){note}"
    )
    if not limits:
        return
    group.add_argument(
        "--kube-api-qps",
        type=_rate,
        default=DEFAULT_QPS,
        metavar="QPS",
        help=f"requests per second to the API server, sustained (default {DEFAULT_QPS:g}; "
        "0: no limit)",
    )
    group.add_argument(
        "--kube-api-burst",
        type=_burst,
        default=DEFAULT_BURST,
        metavar="N",
        help=f"requests allowed at once above --kube-api-qps (default {DEFAULT_BURST})",
    )


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 (no limit) or more")
    return value


def _burst(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


def missing_file(path: str, source: str) -> str:
    return f"{source}: kubeconfig file {path} does not exist"


def kubeconfig_problem(kubeconfig: str | None) -> str | None:
    """The one message for a named kubeconfig that is not there (flag or environment)."""
    if kubeconfig:
        return None if os.path.isfile(kubeconfig) else missing_file(kubeconfig, "--kubeconfig")
    paths = [p for p in os.environ.get(KUBECONFIG_ENV, "").split(os.pathsep) if p]
    if paths and not any(os.path.isfile(path) for path in paths):
        return missing_file(os.pathsep.join(paths), KUBECONFIG_ENV)
    return None
