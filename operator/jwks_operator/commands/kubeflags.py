"""``--kubeconfig`` and ``--context``: one pair of flags, one check, on every command that
talks to a cluster (``run``, ``serve``, ``sign --kube``).

The kubernetes package, given a path that does not exist, answers "Invalid kube-config
file. No configuration found.", which does not say the file is missing; Kopf retries a
broken configuration forever. So the file is checked here first, with one message for a
flag and for ``KUBECONFIG`` alike, and a problem is a usage error (exit 2).
"""

import argparse
import os
from typing import Final

KUBECONFIG_ENV: Final = "KUBECONFIG"


def add_arguments(parser: argparse.ArgumentParser, *, note: str = "") -> None:
    group = parser.add_argument_group("cluster access (found as kubectl finds it)")
    group.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help=f"kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster){note}",
    )
    group.add_argument(
        "--context", metavar="NAME", help=f"kubeconfig context (default: current){note}"
    )


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
