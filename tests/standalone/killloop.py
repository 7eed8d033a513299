"""SIGKILL a standalone instance at random moments and restart it; shared by test and bench.

Half of the kills land at a uniformly random moment of the process's life (start-up,
import, first reconcile, idle); the other half are aimed at the keyset's next scheduled
change, read from the public record, so that they land inside a reconcile, between its
private write, public write and mark-published write, where a crash could lose a key if
the sequence were wrong. The observer (see ``observer.py``) checks the invariants.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from jwks_operator.core.timefmt import parse_time
from jwks_operator.store.localdir import public_path
from tests.standalone.observer import LifecycleObserver
from tests.standalone.support import StandaloneProcess, keyset_doc, write_config

INTERVAL = "2s"
PRE_PUBLISH = timedelta(seconds=1)
RETIRE_AFTER = timedelta(seconds=1.5)


@dataclass
class KillLoopResult:
    kills: int = 0
    aimed_kills: int = 0
    ready_seconds: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    rotations_logged: int = 0
    leftover_temp_files: int = 0

    def summary(self) -> dict[str, object]:
        ready = sorted(self.ready_seconds)
        return {
            "kills": self.kills,
            "aimed_at_a_scheduled_change": self.aimed_kills,
            "restarts_to_ready": len(ready),
            "restart_to_ready_median_s": round(statistics.median(ready), 3) if ready else None,
            "restart_to_ready_max_s": round(max(ready), 3) if ready else None,
            "rotations_logged": self.rotations_logged,
            "leftover_temp_files": self.leftover_temp_files,
            **self.counts,
        }


def _next_change(state_dir: Path) -> float | None:
    try:
        record = json.loads(public_path(state_dir, "default", "demo").read_text())
    except (FileNotFoundError, ValueError):
        return None
    value = record.get("nextChange")
    return parse_time(value).timestamp() if value else None


def _observe_for(observer: LifecycleObserver, process: StandaloneProcess, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process.port:
            observer.observe(process.jwks_url())
        else:
            observer.read_state()
        time.sleep(0.04)


def run_kill_loop(workdir: Path, kills: int, seed: int) -> KillLoopResult:
    rng = random.Random(seed)
    config = write_config(
        workdir / "keysets.yaml",
        keyset_doc(
            interval=INTERVAL,
            pre_publish=f"{PRE_PUBLISH.total_seconds():g}s",
            retire_after=f"{int(RETIRE_AFTER.total_seconds() * 1000)}ms",
        ),
    )
    process = StandaloneProcess(workdir, config)
    observer = LifecycleObserver(process.state_dir, PRE_PUBLISH, RETIRE_AFTER)
    result = KillLoopResult()
    try:
        for index in range(kills):
            process.port = 0
            process.start()
            started = time.monotonic()
            aimed = index % 2 == 1
            target: float | None = None
            if aimed:
                # Wait until it serves (so a schedule exists), then kill at the change.
                _wait_ready_observing(process, observer, result, started)
                change = _next_change(process.state_dir)
                if change is not None:
                    target = change + rng.uniform(-0.005, 0.02)
            if target is None:
                target = time.time() + rng.uniform(0.05, 2.5)
            while time.time() < target:
                if not process.port and ("serving http" in process.output()):
                    _wait_ready_observing(process, observer, result, started)
                observer.observe(process.jwks_url()) if process.port else observer.read_state()
                time.sleep(min(0.04, max(0.0, target - time.time())))
            process.kill()
            result.kills += 1
            result.aimed_kills += aimed
            observer.read_state()
        # The last life: it must converge, serve and keep rotating.
        process.port = 0
        process.start()
        _wait_ready_observing(process, observer, result, time.monotonic())
        _observe_for(observer, process, 4.5)
        result.leftover_temp_files = sum(1 for _ in process.state_dir.glob(".*.tmp"))
    finally:
        if process.running:
            process.stop()
    result.rotations_logged = process.all_output().count(" Rotated: ")
    result.counts = observer.check()
    return result


def _wait_ready_observing(
    process: StandaloneProcess,
    observer: LifecycleObserver,
    result: KillLoopResult,
    started: float,
) -> None:
    if process.port:
        return
    process.wait_ready()
    result.ready_seconds.append(time.monotonic() - started)
    observer.observe(process.jwks_url())
