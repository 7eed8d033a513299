"""Placeholder for the ``tokens`` subcommand (being built)."""

import argparse
import sys
from typing import Any


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    parser = subparsers.add_parser("tokens", help="(not yet available)")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    print("jwks-operator tokens: not implemented yet", file=sys.stderr)
    return 2
