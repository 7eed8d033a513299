"""Retirement gap: from "the old key stopped signing" to "the old key left the JWKS".

Invariant 3 says that gap is never below ``retireAfter``. It is measured here on the real
``reconcile`` with real RSA-4096 key generation and a store whose writes take a few
milliseconds (as an API server's do), on the wall clock, the way the operator's daemon
drives it: reconcile, sleep until the next change, reconcile again.

- stopped signing: the moment the private write that replaced ``signing.kid`` returned
  (a signer re-reading ``signing.pem`` gets the old key until then);
- left the JWKS: the moment the public write without the key started.

    .venv/bin/python bench/retirement_gap_bench.py [--rotations 6] [--key-size 4096]

Run it against an older tree with ``PYTHONPATH=<tree>/operator`` to compare.
"""

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from jwks_operator.core.spec import parse_spec
from jwks_operator.reconcile import reconcile
from jwks_operator.store.base import WriteOutcome
from jwks_operator.store.memory import MemoryStore

WRITE_LATENCY = 0.02


def utc_now() -> datetime:
    return datetime.now(UTC)


class TimedStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.stopped: dict[str, float] = {}
        self.left: dict[str, float] = {}

    async def write_private(self, data: Mapping[str, str]) -> WriteOutcome:
        before = (self.private or {}).get("signing.kid")
        await asyncio.sleep(WRITE_LATENCY)
        outcome = await super().write_private(data)
        if before is not None and data.get("signing.kid") != before:
            self.stopped.setdefault(before, time.time())
        return outcome

    async def write_trust(self, keys: Sequence[Mapping[str, Any]]) -> None:
        await asyncio.sleep(WRITE_LATENCY)
        await super().write_trust(keys)

    async def write_public(
        self, data: Mapping[str, str], next_change: datetime | None
    ) -> WriteOutcome:
        started = time.time()
        old = _kids(self.public)
        await asyncio.sleep(WRITE_LATENCY)
        outcome = await super().write_public(data, next_change)
        for kid in old - _kids(self.public):
            self.left.setdefault(kid, started)
        return outcome


def _kids(data: Mapping[str, str] | None) -> set[str]:
    return {key["kid"] for key in json.loads(data["jwks.json"])["keys"]} if data else set()


async def main(rotations: int, key_size: int) -> int:
    retire_after = 2.0
    spec = parse_spec(
        "gap",
        {
            "algorithm": "RS256",
            "keySize": key_size,
            "rotation": {"interval": "3s", "prePublish": "1s", "retireAfter": "2s"},
        },
    )
    store = TimedStore()
    outcome = await reconcile(spec, store, clock=utc_now)
    while len(store.left) < rotations:
        assert outcome.next_change is not None
        await asyncio.sleep(max(0.0, (outcome.next_change - utc_now()).total_seconds()) + 0.05)
        outcome = await reconcile(spec, store, clock=utc_now)
    gaps = [store.left[kid] - store.stopped[kid] for kid in store.left if kid in store.stopped]
    short = [gap for gap in gaps if gap < retire_after]
    print(
        f"RS{key_size} keys, retireAfter {retire_after:g}s, {len(gaps)} retirements: gap "
        f"stopped signing -> left the JWKS min {min(gaps):.3f}s, median "
        f"{statistics.median(gaps):.3f}s, max {max(gaps):.3f}s; "
        f"{len(short)} below retireAfter (worst {min(gaps) - retire_after:+.3f}s)"
    )
    return 1 if short else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=6)
    parser.add_argument("--key-size", type=int, default=4096, choices=(2048, 3072, 4096))
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.rotations, args.key_size)))
