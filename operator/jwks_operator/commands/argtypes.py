"""argparse types shared by the subcommands, so the same flag means the same thing everywhere.

A bad value becomes argparse's usage error (message and exit status 2) rather than a
traceback after start-up.
"""

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from jwks_operator.server.tls import TlsFiles

MAX_MAX_AGE: Final = 31_536_000
"""One year: longer cache lifetimes are refused as a likely mistake."""


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def max_age(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= MAX_MAX_AGE:
        raise argparse.ArgumentTypeError(f"max-age must be 0..{MAX_MAX_AGE} seconds")
    return value


def listen_problem(host: str, port: int | str, error: OSError, flag: str = "--port") -> str:
    """A bind failure as a usage error that names the flag to change.

    asyncio wraps the errno in "error while attempting to bind on address ...": the
    errno's own text (``address already in use``) is what the user needs.
    """
    reason = os.strerror(error.errno).lower() if error.errno else str(error)
    return f"cannot listen on {host}:{port} ({reason}): choose another port with {flag}"


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls-cert-file`` / ``--tls-key-file``: serve https, reloading the files on change."""
    parser.add_argument(
        "--tls-cert-file",
        type=Path,
        metavar="PEM",
        help="serve https with this certificate chain (reloaded when the file changes)",
    )
    parser.add_argument(
        "--tls-key-file",
        type=Path,
        metavar="PEM",
        help="the certificate's private key (unencrypted PEM; reloaded with it)",
    )


def tls_files(args: argparse.Namespace) -> "TlsFiles | None":
    """The TLS pair of the command line, checked by loading it once; raise TlsError."""
    # Imported here: every subcommand parses through this module, and the server package
    # (aiohttp, prometheus_client) would slow the start of `sign` and `verify`.
    from jwks_operator.server.tls import TlsError, TlsFiles, load_context

    cert, key = args.tls_cert_file, args.tls_key_file
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise TlsError("--tls-cert-file and --tls-key-file must be given together")
    files = TlsFiles(cert_file=cert, key_file=key)
    load_context(files)
    return files
