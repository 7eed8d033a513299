"""The ``jwks-operator`` command line: one entry point, one module per subcommand.

Each subcommand lives in ``jwks_operator.commands.<name>`` and registers its own parser,
so that the operator, the server, standalone mode and the token tools evolve without
touching each other. Usage errors exit with status 2, as argparse does.
"""

import argparse
import sys
from collections.abc import Sequence

from jwks_operator import __version__
from jwks_operator.commands import run, serve, standalone, status, tokens

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwks-operator",
        description="Generate, rotate, store and serve JSON Web Key Sets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in (run, serve, standalone, tokens, status):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
