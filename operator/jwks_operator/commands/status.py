"""``jwks-operator status --state-dir DIR [-o json]``: where each standalone keyset stands.

Reads the state directory (after the same checks as ``standalone``; it takes no lock, so
it works while an instance runs) and prints, per keyset, the active and next kid, the next
scheduled change and the last recorded one, never key material. Exit status 0, 1 when a
keyset's state cannot be read or is overdue (no instance is rotating it), 2 bad usage.
"""

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jwks_operator.core.timefmt import format_time
from jwks_operator.standalone.statedir import StateDirError, check_state_dir
from jwks_operator.standalone.status import KeySetStatus, read_status, status_document

EXIT_USAGE = 2
COLUMNS = ("KEYSET", "ACTIVE KID", "NEXT KID", "NEXT CHANGE", "LAST CHANGE")


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    parser = subparsers.add_parser(
        "status",
        help="show where each standalone keyset stands (active/next kid, next change)",
        description="Print each keyset of a standalone state directory: active and next kid, "
        "the next scheduled change (overdue when no instance is running), the last change.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".jwks-state"),
        help="standalone mode's state directory (default: ./.jwks-state)",
    )
    parser.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="default table"
    )
    parser.set_defaults(handler=handle)


def table(statuses: list[KeySetStatus]) -> str:
    rows = [COLUMNS]
    for status in statuses:
        if status.problem is not None:
            rows.append((status.keyset, f"unreadable: {status.problem}", "", "", ""))
            continue
        change = format_time(status.next_change) if status.next_change else "-"
        last = status.last_change
        rows.append(
            (
                status.keyset,
                status.active_kid or "-",
                status.next_kid or "-",
                f"{change} (overdue)" if status.overdue else change,
                f"{format_time(last[0])} {last[1]}" if last else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("   ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    try:
        state_dir = check_state_dir(args.state_dir)
    except StateDirError as error:
        print(f"jwks-operator status: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    statuses = read_status(state_dir, datetime.now(UTC))
    if args.output == "json":
        print(json.dumps(status_document(statuses), indent=2))
    elif statuses:
        print(table(statuses))
    else:
        print(f"no keyset in {args.state_dir}", file=sys.stderr)
    return 1 if any(s.problem or s.overdue for s in statuses) else 0
