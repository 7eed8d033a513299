"""One log format for every command: the flags, the line format and the JSON fields.

``run``, ``serve`` and ``standalone`` take the same ``--log-level`` and ``--log-format``
and print the same lines, so that one log pipeline parses all of them. A line about a
keyset names it: the standalone runner passes ``extra={"keyset": ..., "reason": ...}``,
and Kopf's per-object loggers attach ``k8s_ref`` (the object's namespace and name), which
is read here. JSON lines (one object per line) carry these fields, documented in
docs/logging.md:

``timestamp``  UTC, RFC 3339 with milliseconds (``2026-12-01T20:35:27.123Z``)
``level``      ``DEBUG`` ``INFO`` ``WARNING`` ``ERROR`` ``CRITICAL``
``logger``     the Python logger (``jwks_operator.standalone``, ``kopf.objects``, ...)
``keyset``     ``namespace/name`` when the line is about one keyset, else absent
``object``     ``Kind namespace/name`` when a Kopf handler line is about another object
``reason``     the event reason (``Bootstrapped``, ``Rotated``, ...) when it reports one
``message``    the text; never key material (nothing that logs holds any)
``error``      the exception type and message when one is logged, else absent
"""

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from jwks_operator.core.contract import KIND

LEVELS: Final = ("debug", "info", "warning", "error")
FORMATS: Final = ("plain", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format``: the same two flags on every long-running command."""
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-level",
        type=str.lower,
        choices=LEVELS,
        default="info",
        help="least severe level logged (default info)",
    )
    group.add_argument(
        "--log-format",
        type=str.lower,
        choices=(*FORMATS, "full"),
        default="plain",
        help="plain: one readable line per record; json: one JSON object per line, for log "
        "pipelines (fields in docs/logging.md). Default plain",
    )


def keyset_extra(keyset: str, reason: str | None = None) -> dict[str, str]:
    """``extra=`` for a record about one keyset (and, for an event, its reason)."""
    return {"keyset": keyset, "reason": reason} if reason else {"keyset": keyset}


def _ref_name(record: logging.LogRecord) -> tuple[str, str] | None:
    """(kind, namespace/name) of a Kopf per-object logger's record, else None."""
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, Mapping) and ref.get("name"):
        namespace = ref.get("namespace")
        name = f"{namespace}/{ref['name']}" if namespace else str(ref["name"])
        return str(ref.get("kind") or ""), name
    return None


def record_keyset(record: logging.LogRecord) -> str | None:
    keyset = getattr(record, "keyset", None)
    if isinstance(keyset, str):
        return keyset
    ref = _ref_name(record)
    return ref[1] if ref and ref[0] == KIND else None


def record_object(record: logging.LogRecord) -> str | None:
    """``Kind namespace/name`` of the object a Kopf handler line is about (a keyset's
    Secret or ConfigMap, say) when it is not the keyset itself."""
    ref = _ref_name(record)
    return f"{ref[0]} {ref[1]}" if ref and ref[0] != KIND else None


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class PlainFormatter(logging.Formatter):
    """``<timestamp> <LEVEL> <message>``: what a person reads in a terminal.

    Lines of Kopf's per-object loggers are prefixed ``[namespace/name]`` as Kopf's own
    format does (their text does not name the object); every other line about a keyset
    already names it in its text, which is the same in both formats.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} "
        if (ref := _ref_name(record)) is not None:
            line += f"[{ref[1]}] "
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the documented fields (module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
        }
        keyset = record_keyset(record)
        if keyset:
            document["keyset"] = keyset
        if (other := record_object(record)) is not None:
            document["object"] = other
        reason = getattr(record, "reason", None)
        if isinstance(reason, str):
            document["reason"] = reason
        document["message"] = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            document["error"] = f"{error.__class__.__name__}: {error}"
        return json.dumps(document, ensure_ascii=False, default=str)


def configure(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers with one on stderr in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PlainFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if level != "debug":
        logging.getLogger("asyncio").setLevel(logging.WARNING)


def chosen(args: argparse.Namespace, prog: str) -> tuple[str, str]:
    """The level and format the flags ask for; ``--log-format full`` (an old ``run`` value)
    is accepted with a warning on stderr. Nothing is configured yet, so that a command can
    finish its usage checks (exit 2) before it takes over the process's logging."""
    log_format = args.log_format
    if log_format == "full":
        print(
            f"{prog}: warning: --log-format full is deprecated; it now means plain",
            file=sys.stderr,
        )
        log_format = "plain"
    return args.log_level, log_format
