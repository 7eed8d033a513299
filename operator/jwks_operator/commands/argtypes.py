"""argparse types shared by the subcommands, so the same flag means the same thing everywhere.

A bad value becomes argparse's usage error (message and exit status 2) rather than a
traceback after start-up.
"""

import argparse
import os
from typing import Final

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
