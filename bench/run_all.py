"""Run every benchmark of bench/ in one go (``make bench``).

Each benchmark is a script named ``bench/*_bench.py`` that installs or explains what it
needs and prints its own results; adding one needs no change here. Benchmarks run one
after another (they measure CPU, so never in parallel), each in its own process, and the
exit code is non-zero when any of them failed.

Run: ``.venv/bin/python bench/run_all.py [NAME_FILTER ...]`` (e.g. ``serve``).
"""

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    filters = argv[1:]
    scripts = sorted(BENCH.glob("*_bench.py"))
    if filters:
        scripts = [s for s in scripts if any(f in s.name for f in filters)]
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(script)], cwd=BENCH.parent).returncode
        print(f"--- {script.name}: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
