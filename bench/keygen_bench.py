"""Key generation cost per algorithm, and the event loop's lag while RSA-4096 keys are made.

Run: ``.venv/bin/python bench/keygen_bench.py``. Prints a table of median generation
times and the loop's worst and p99 lag (a 5 ms ticker) during 8 concurrent RSA-4096
generations through ``generate_key_async``, beside the same work done *on* the loop for
contrast. Timing goals live here, not in tests.
"""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.keys import generate_key, generate_key_async

SAMPLES = {"RSA": 15, "EC": 200, "OKP": 200}
TICK = 0.005


def keygen_table() -> list[tuple[str, str, float]]:
    rows = []
    cases = [(alg, 2048 if info.kty == "RSA" else None) for alg, info in ALGORITHMS.items()]
    cases = [c for c in cases if not c[0].startswith(("RS384", "RS512", "PS"))]
    cases += [("RS256", 3072), ("RS256", 4096)]
    for algorithm, size in cases:
        runs = []
        for _ in range(SAMPLES[ALGORITHMS[algorithm].kty]):
            start = time.perf_counter()
            generate_key(algorithm, size)
            runs.append(time.perf_counter() - start)
        label = f"{algorithm}" + (f"/{size}" if size else "")
        rows.append((label, ALGORITHMS[algorithm].kty, statistics.median(runs)))
    return rows


async def loop_lag(work: Callable[[], Awaitable[object]]) -> tuple[float, float, float]:
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - start - TICK)

    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - start
    done = True
    await task
    lags.sort()
    return max(lags), lags[max(0, int(len(lags) * 0.99) - 1)], elapsed


async def main() -> None:
    print("key generation, median (single thread)")
    for label, _kty, seconds in keygen_table():
        unit = f"{seconds * 1000:8.2f} ms" if seconds >= 0.001 else f"{seconds * 1e6:8.1f} us"
        print(f"  {label:12} {unit}")

    async def off_loop() -> None:
        await asyncio.gather(*(generate_key_async("RS256", 4096) for _ in range(8)))

    async def on_loop() -> None:
        for _ in range(2):
            await asyncio.sleep(TICK * 2)  # let the ticker start, then block it
            generate_key("RS256", 4096)

    worst, p99, elapsed = await loop_lag(off_loop)
    print(
        f"8 concurrent RSA-4096 via generate_key_async: {elapsed:.2f} s total, "
        f"loop lag max {worst * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
    worst, p99, elapsed = await loop_lag(on_loop)
    print(
        f"for contrast, 2 RSA-4096 generated ON the loop: {elapsed:.2f} s, "
        f"loop lag max {worst * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
