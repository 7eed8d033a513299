"""Crash safety of standalone mode: SIGKILL a real instance many times, check nothing is lost.

The same loop as ``tests/standalone/test_kill_restart.py`` (which does 8 kills), at a
larger count: a keyset rotating every 2 s (prePublish 1 s, retireAfter 1.5 s) is killed
at random moments, half of them aimed at a scheduled change (inside a reconcile), and
restarted at once. An observer polls the JWKS over HTTP and the state file throughout and
asserts, across all lives: exactly one active key per committed state and it is served;
no key signs before ``prePublish`` of publication; every key that signed stays in every
JWKS served (and a token it signed verifies with PyJWT) until ``retireAfter`` after it
stopped signing; no private member, duplicate kid or non-thumbprint kid is ever served.
Any violation fails the run (exit 1).

Reported: kills, restart-to-ready times (process start to the "serving" line, i.e. first
reconcile done and the server answering), rotations, JWKS fetches, retention checks.

Run: ``.venv/bin/python bench/standalone_killloop.py [--kills 100] [--seed N]``.
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from tests.standalone.killloop import run_kill_loop  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description="standalone SIGKILL/restart loop")
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="killloop-") as workdir:
        try:
            result = run_kill_loop(Path(workdir), kills=args.kills, seed=seed)
        except AssertionError as error:
            print(f"INVARIANT VIOLATED (seed {seed}): {error}", file=sys.stderr)
            return 1
    summary = {"seed": seed, **result.summary(), "wall_s": round(time.monotonic() - started, 1)}
    print(json.dumps(summary, indent=2))
    print("all invariants held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
