"""A crash at any instant loses no key: SIGKILL at random moments, restart, check invariants.

Nine kills here (the bench, ``bench/standalone_killloop.py``, runs hundreds); the
invariants are asserted by the observer over everything seen across all lives.
"""

import random
from pathlib import Path

import pytest

from tests.standalone.killloop import run_kill_loop

pytestmark = pytest.mark.timeout(180)


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    result = run_kill_loop(tmp_path, kills=9, seed=seed)
    summary = result.summary()
    print(f"seed {seed}: {summary}")
    assert result.kills == 9
    # The kills that watch keys.json land between a private write and the public write or
    # mark-published write (the windows that matter), not only somewhere in the process's life.
    assert result.kills_mid_reconcile >= 1, summary
    # Keys kept rotating across the kills, and the retention rule was actually exercised.
    assert summary["keys_active"] >= 3, summary  # type: ignore[operator]
    assert summary["retention_checks"] > 0, summary  # type: ignore[operator]
    assert result.rotations_logged >= 2, summary
    # The lock holder removes what a killed writer left half-written.
    assert result.leftover_temp_files == 0
