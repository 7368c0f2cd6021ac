"""Interleaved timing: in each round every peer runs one block of steps, peers in a rotating order.

Shared machines drift (frequency, noisy neighbours); interleaving makes every peer see the same drift, so
the ratios of medians are more trustworthy than absolute numbers. A block is ``k`` steps with ``k`` chosen per
peer so one block lasts about ``target_s``; the garbage collector is off inside a block (as ``timeit`` does).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def calibrate(loop: Callable[[int], float], target_s: float, warmup: int = 2) -> int:
    """Steps per block so that a block lasts about ``target_s`` (at least 1)."""
    loop(warmup)
    k = 1
    while True:
        t0 = time.perf_counter()
        loop(k)
        dt = time.perf_counter() - t0
        if dt >= target_s / 4 or k >= 1 << 16:
            return max(1, round(k * target_s / max(dt, 1e-9)))
        k *= 4


def interleave(
    loops: dict[str, Callable[[int], float]], rounds: int, target_s: float = 0.02
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per-step seconds of each block, per peer, and the block sizes used."""
    ks = {name: calibrate(loop, target_s) for name, loop in loops.items()}
    names = list(loops)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        gc.collect()
        for name in order:
            loop, k = loops[name], ks[name]
            gc.disable()
            try:
                t0 = time.perf_counter()
                loop(k)
                dt = time.perf_counter() - t0
            finally:
                gc.enable()
            times[name].append(dt / k)
    return times, ks


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def round_ratios(a: list[float], b: list[float]) -> list[float]:
    """Per-round ratios a/b (the same round saw the same machine state)."""
    return [x / y for x, y in zip(a, b)]
