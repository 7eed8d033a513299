"""SIGKILL a standalone instance at random moments and restart it; shared by test and bench.

A third of the kills land at a uniformly random moment of the process's life (start-up,
import, first reconcile, idle); a third are aimed at the keyset's next scheduled change,
read from the public record, so that they land inside a reconcile; the last third watch
``keys.json`` and kill the moment a reconcile has replaced it, i.e. between its private
write and its public write or mark-published write, where a crash would lose a key or
shorten pre-publication if the sequence were wrong. The observer (see ``observer.py``) checks the invariants.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from jwks_operator.core.state import KeySetState
from jwks_operator.core.timefmt import parse_time
from jwks_operator.store.localdir import private_path, public_path
from tests.standalone.observer import LifecycleObserver
from tests.standalone.support import StandaloneProcess, keyset_doc, write_config

INTERVAL = "2s"
PRE_PUBLISH = timedelta(seconds=1)
RETIRE_AFTER = timedelta(seconds=1.5)


@dataclass
class KillLoopResult:
    kills: int = 0
    aimed_kills: int = 0
    watched_kills: int = 0
    kills_mid_reconcile: int = 0
    """Kills after which the private state on disk was ahead of the public documents, or
    held a key not yet marked published: the process died inside a reconcile."""
    ready_seconds: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    rotations_logged: int = 0
    leftover_temp_files: int = 0

    def summary(self) -> dict[str, object]:
        ready = sorted(self.ready_seconds)
        return {
            "kills": self.kills,
            "kills_at_random_moments": self.kills - self.aimed_kills - self.watched_kills,
            "kills_aimed_at_a_scheduled_change": self.aimed_kills,
            "kills_right_after_a_private_write": self.watched_kills,
            "kills_inside_a_reconcile": self.kills_mid_reconcile,
            "restarts_to_ready": len(ready),
            "restart_to_ready_median_s": round(statistics.median(ready), 3) if ready else None,
            "restart_to_ready_max_s": round(max(ready), 3) if ready else None,
            "rotations_logged": self.rotations_logged,
            "leftover_temp_files": self.leftover_temp_files,
            **self.counts,
        }


def _mid_reconcile(state: KeySetState, state_dir: Path) -> bool:
    """Did the process die inside a reconcile: private state written, but its public
    documents not (yet) matching it, or a key not (yet) marked published?"""
    if any(key.published_at is None for key in state.keys):
        return True
    try:
        record = json.loads(public_path(state_dir, "default", "demo").read_text())
    except (FileNotFoundError, ValueError):
        return True
    published = {key["kid"] for key in json.loads(record["data"]["jwks.json"])["keys"]}
    held = {key.kid for key in state.keys} | {orphan.kid for orphan in state.orphans}
    return published != held


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
            mode = index % 3
            if mode == 0:
                _kill_at(process, observer, result, started, time.time() + rng.uniform(0.05, 2.5))
            elif mode == 1:
                # Wait until it serves (so a schedule exists), then kill at the change.
                _wait_ready_observing(process, observer, result, started)
                change = _next_change(process.state_dir) or time.time() + 1
                _kill_at(process, observer, result, started, change + rng.uniform(0.004, 0.03))
            else:
                _wait_ready_observing(process, observer, result, started)
                _kill_after_private_write(process)
            process.kill()
            result.kills += 1
            result.aimed_kills += mode == 1
            result.watched_kills += mode == 2
            state = observer.read_state()
            if state is not None and _mid_reconcile(state, process.state_dir):
                result.kills_mid_reconcile += 1
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


def _kill_at(
    process: StandaloneProcess,
    observer: LifecycleObserver,
    result: KillLoopResult,
    started: float,
    target: float,
) -> None:
    """Observe until ``target`` (epoch seconds); the caller then kills."""
    while time.time() < target:
        if not process.port and "serving http" in process.output():
            _wait_ready_observing(process, observer, result, started)
        if process.port:
            observer.observe(process.jwks_url())
        else:
            observer.read_state()
        time.sleep(min(0.04, max(0.0, target - time.time())))


def _kill_after_private_write(process: StandaloneProcess, timeout: float = 5.0) -> None:
    """Busy-watch ``keys.json`` and SIGKILL the moment it is replaced: the process dies
    right after a reconcile's private write, before its public write or mark-published."""
    path = private_path(process.state_dir, "default", "demo")
    before = path.stat()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = path.stat()
        if (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
            break
    process.kill()


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
