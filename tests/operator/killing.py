"""Killing the operator with SIGKILL at moments that matter, and telling where each kill hit.

Four kinds of moments, picked at random: while the restarted operator runs its first
reconciliations (startup), right when a keyset's next change is due (the rotation
writes), at any time while it idles, and the instant the emulator has served its next
Secret write (so that the kill lands between the private and the public write, the
moment crash safety is about). Afterwards the emulator's request log tells
whether a kill tore a reconciliation apart: the operator's last write for a keyset
before the kill was its Secret or ConfigMap rather than the status patch that ends
every reconciliation that changes keys.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from jwks_operator.core.contract import NEXT_CHANGE_ANNOTATION
from jwks_operator.core.timefmt import parse_time
from tests.operator.harness import OperatorUnderTest

OPERATOR_AGENT = "jwks-operator"


@dataclass
class KillReport:
    kills: int = 0
    moments: Counter[str] = field(default_factory=Counter)
    torn: int = 0
    """Kills that landed between a reconciliation's first write and its status patch."""


def _due_in(operator: OperatorUnderTest, names: Sequence[str]) -> float | None:
    moments = []
    for name in names:
        configmap = operator.configmap(f"{name}-jwks")
        annotation = ((configmap or {}).get("metadata", {}).get("annotations") or {}).get(
            NEXT_CHANGE_ANNOTATION
        )
        if annotation:
            moments.append(parse_time(annotation).timestamp() - time.time())
    return min(moments) if moments else None


def _torn(operator: OperatorUnderTest, names: Sequence[str], killed_at: float) -> bool:
    last: dict[str, str] = {}
    for record in operator.cluster.request_log():
        if record.at > killed_at or not record.user_agent.startswith(OPERATOR_AGENT):
            continue
        if record.method not in ("POST", "PATCH"):
            continue
        for name in names:
            if record.path.endswith(f"/jwkskeysets/{name}/status"):
                last[name] = "status"
            elif record.path.endswith((f"/secrets/{name}-signing", f"/configmaps/{name}-jwks")):
                last[name] = "data"
    return any(kind == "data" for kind in last.values())


def _after_next_secret_write(operator: OperatorUnderTest, timeout: float) -> None:
    since = time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        for record in operator.cluster.request_log():
            if (
                record.at > since
                and record.user_agent.startswith(OPERATOR_AGENT)
                and record.method in ("POST", "PATCH")
                and "/secrets" in record.path
            ):
                return
        time.sleep(0.002)


def kill_loop(
    operator: OperatorUnderTest, names: Sequence[str], kills: int, chance: random.Random
) -> KillReport:
    """Kill and restart ``kills`` times; the operator is running again when it returns."""
    report = KillReport()
    for _ in range(kills):
        moment = chance.choice(("startup", "due", "idle", "write"))
        if moment == "write":
            operator.process.wait_for_output("Reconciled (trigger: daemon started)", 30)
            _after_next_secret_write(operator, 10)
        elif moment == "startup":
            time.sleep(chance.uniform(0.6, 1.8))
        else:
            operator.process.wait_for_output("Reconciled (trigger: daemon started)", 30)
            due = _due_in(operator, names) if moment == "due" else None
            if due is not None and 0 <= due < 5:
                time.sleep(due + chance.uniform(0.045, 0.09))
            else:
                time.sleep(chance.uniform(0.0, 2.0))
        killed_at = time.monotonic()
        operator.kill()
        report.kills += 1
        report.moments[moment] += 1
        report.torn += _torn(operator, names, killed_at)
        operator.start()
    return report
