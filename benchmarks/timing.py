"""Interleaved timing: in each round every peer runs one block of steps, peers in a rotating order.

Shared machines drift (frequency, noisy neighbours); interleaving makes every peer see the same drift, so
the ratios of medians are more trustworthy than absolute numbers. A block is ``k`` steps with ``k`` chosen per
peer so one block lasts about ``target_s``; the garbage collector is off inside a block (as ``timeit`` does).

Before each block the harness sleeps ``pause_s``. The peers bring their own thread pools (NumPy's OpenBLAS,
SciPy's OpenBLAS under Numba, PyTorch's OpenMP, XLA's Eigen pool) whose idle workers spin for a while after
their last job (OpenBLAS ~2^28 cycles, about 0.1 s). On 2 cores a pool still spinning from the previous peer
steals the core the next peer's BLAS worker needs: measured on this machine without a pause, the bare-matmul
floor at medium doubled (0.55 -> 1.08 ms) and PyTorch and autograd slowed 3-5x. The pause lets every peer
start its block from a quiet process, as if it ran alone, while rounds still interleave.
"""

from __future__ import annotations

import gc
import os
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
    loops: dict[str, Callable[[int], float]],
    rounds: int,
    target_s: float = 0.02,
    budget_s: float = 120.0,
    pause_s: float = 0.15,
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per-step seconds of each block, per peer, and the block sizes used.

    A block that takes over three times ``target_s`` (the machine got slower after calibration) shrinks that
    peer's later blocks; after ``budget_s`` the rounds stop early (but not before three), so a contended
    machine cannot stretch a table without bound. ``len(times[peer])`` is the number of rounds run.
    """
    ks = {}
    for name, loop in loops.items():
        time.sleep(pause_s)
        ks[name] = calibrate(loop, target_s)
    names = list(loops)
    times: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        gc.collect()
        for name in order:
            loop, k = loops[name], ks[name]
            if pause_s:
                time.sleep(pause_s)
            gc.disable()
            try:
                t0 = time.perf_counter()
                loop(k)
                dt = time.perf_counter() - t0
            finally:
                gc.enable()
            times[name].append(dt / k)
            if dt > 3 * target_s and k > 1:
                ks[name] = max(1, int(k * target_s / dt))
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
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


# -- other processes' CPU use -----------------------------------------------------------------------
def _machine_busy_s() -> float | None:
    """CPU seconds all processes used so far (Linux /proc/stat; steal time included), or None."""
    try:
        with open("/proc/stat") as fh:
            f = fh.readline().split()
    except OSError:
        return None
    vals = [int(v) for v in f[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMeter:
    """The share of the machine's CPU that other processes used since ``start()`` (0 = idle, 1 = all cores)."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self.t0, self.busy0, self.own0 = time.monotonic(), _machine_busy_s(), _own_s()

    def foreign(self) -> float | None:
        busy = _machine_busy_s()
        wall = time.monotonic() - self.t0
        if busy is None or self.busy0 is None or wall <= 0:
            return None
        other = (busy - self.busy0) - (_own_s() - self.own0)
        return max(0.0, other) / ((os.cpu_count() or 1) * wall)


def wait_for_quiet(max_wait_s: float, threshold: float = 0.10, window_s: float = 1.0) -> float | None:
    """Wait (at most ``max_wait_s``) until other processes use under ``threshold`` of the CPU over a window.

    Returns the last measured share (None where /proc/stat is missing)."""
    deadline = time.monotonic() + max_wait_s
    share = None
    while True:
        meter = CpuMeter()
        time.sleep(window_s)
        share = meter.foreign()
        if share is None or share < threshold or time.monotonic() >= deadline:
            return share
