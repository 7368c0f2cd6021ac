"""The benchmark harness: ``python -m benchmarks [options]`` writes ``benchmarks/RESULTS.md``.

Sections (``--sections``, all by default):

- ``main``: median µs per training step (forward + backward + SGD update) of the ReLU MLP at each size, every
  peer in one process, interleaved rounds, after the correctness check; ratios to the hand-written NumPy.
- ``compile``: symdiff's preparation time versus depth (fresh process per depth), JAX's beside it, and the
  steady step at the deepest depth.
- ``ops``: NumPy operations and FLOPs of the generated forward function versus the full step.
- ``memory``: peak RSS of 100 large steps per peer, fresh process each.
- ``driver``: ``sd.fit`` per step versus a bare loop.
- ``cnn``: median µs per training step of the two CNNs of issue 12 (``cnn.py``), symdiff beside an expert
  hand-written NumPy im2col step, PyTorch eager and JAX jit, checked first like the MLPs.
- ``scaling``: ``sd.distributed`` on a real ``LocalCluster`` with 1 and 2 workers, and the model of N machines
  built from it (``distributed.scaling_report``): where synchronous data-parallel training stops scaling.
- ``blas``: does GEMM-level fusion through SciPy's BLAS pay (``blas_fusion.report``): hand-written steps with the
  SGD update fused into ``gemm``, steady and switching between NumPy's and SciPy's OpenBLAS.
- ``gpu`` (only with ``--gpu`` or when named): the MLP and CNN steps of symdiff on PyTorch and JAX on the GPU,
  checked, then timed beside NumPy on the CPU (``gpu.report``); skipped, saying so, when no GPU is present.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from . import cnn, envcheck, models
from .check import CheckResult, check_peer
from .models import SIZES, deep_spec, init_params, make_batches
from .peers import ALL, CORE, Peer
from .timing import CpuMeter, interleave, median, quartiles, round_ratios, wait_for_quiet

ROW_ORDER = (
    "symdiff",
    "symdiff-call",
    "symdiff-noguard",
    "symdiff-numba",
    "symdiff-torch",
    "symdiff-jax",
    "hand",
    "pytensor",
    "jax",
    "torch",
    "autograd",
    "gemm",
)
SECTIONS = ("main", "cnn", "compile", "ops", "memory", "driver", "scaling", "blas", "gpu")
DEFAULT_SECTIONS = SECTIONS[:-1]  # the GPU section runs with --gpu
HERE = os.path.dirname(os.path.abspath(__file__))

# what issue 5 measured on its reference machine (2 cores, AVX-512, OpenBLAS, float32)
ISSUE = {
    "jax_steady_deep_ms": 7.4,
    "hand_peak_mib": 76,
    "pytensor_tiny_ratio": 0.61,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the machine -------------------------------------------------------------------------------
def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    fam = model = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name" and cpu in (platform.processor(), platform.machine()):
                    cpu = val
                elif key == "cpu family" and fam is None:
                    fam = val
                elif key == "model" and model is None:
                    model = val
    except OSError:
        pass
    if fam is not None:
        cpu += f" (family {fam}, model {model})"
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return (
        f"{cpu}, {cores} cores ({usable} usable); {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; NumPy {np.__version__}; BLAS: {blas_line()}"
    )


def blas_line() -> str:
    try:
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            i = infos[0]
            arch = i.get("architecture") or "?"
            return (
                f"{i.get('internal_api')} {i.get('version')} ({i.get('prefix')}), kernel {arch}, "
                f"{i.get('num_threads')} threads (threadpoolctl)"
            )
    except Exception:  # noqa: BLE001 - threadpoolctl is optional
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} (np.show_config; threadpoolctl not installed)"
    except Exception:  # noqa: BLE001
        return "unknown"


# -- results -------------------------------------------------------------------------------------
@dataclass
class SizeResult:
    spec: Any  # a models.Spec or a cnn.CNNSpec
    times: dict[str, list[float]] = field(default_factory=dict)  # per-step seconds per round
    blocks: dict[str, int] = field(default_factory=dict)
    checks: dict[str, CheckResult] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # skipped / failed / excluded peers
    build_s: dict[str, float] = field(default_factory=dict)
    foreign: float | None = None  # share of the CPU other processes used while timing

    def med(self, key: str) -> float | None:
        return median(self.times[key]) if key in self.times else None

    def ratio(self, key: str, base: str = "hand") -> float | None:
        a, b = self.med(key), self.med(base)
        return a / b if a is not None and b else None

    def ratio_iqr(self, key: str, base: str = "hand") -> tuple[float, float] | None:
        if key not in self.times or base not in self.times:
            return None
        return quartiles(round_ratios(self.times[key], self.times[base]))


def build_peers(
    spec: Any,
    keys: list[str],
    dtype: str,
    lr: float,
    res: SizeResult,
    model: ModuleType = models,
    registry: Mapping[str, type[Peer]] = ALL,
) -> dict[str, Any]:
    """The peers ``keys`` of ``registry`` built from ``model.init_params`` and checked; the others noted in ``res``."""
    p0 = model.init_params(spec, dtype)
    peers: dict[str, Any] = {}
    for key in keys:
        cls = registry[key]
        missing = cls.missing()
        if missing:
            res.notes[key] = f"skipped: {missing}"
            continue
        try:
            t0 = time.perf_counter()
            peer = cls(spec, p0, dtype, lr)
            res.build_s[key] = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - a peer that cannot build is reported
            res.notes[key] = f"failed to build: {type(exc).__name__}: {str(exc)[:160]}"
            continue
        t0 = time.perf_counter()
        chk = check_peer(peer, spec, dtype, p0, lr, model=model)
        res.checks[key] = chk
        if not chk.ok:
            res.notes[key] = f"EXCLUDED, {chk.message}"
            continue
        log(f"    {key}: built in {res.build_s[key]:.2f} s, checked in {time.perf_counter() - t0:.2f} s")
        peers[key] = peer
    return peers


def time_size(
    spec: Any,
    keys: list[str],
    dtype: str,
    lr: float,
    rounds: int,
    block_s: float,
    wait_idle_s: float = 0.0,
    pause_s: float = 0.0,
    model: ModuleType = models,
    registry: Mapping[str, type[Peer]] = ALL,
) -> SizeResult:
    """Build and check the peers ``keys`` of ``registry`` on ``spec`` (a size of ``model``), then time them."""
    res = SizeResult(spec)
    peers = build_peers(spec, keys, dtype, lr, res, model, registry)
    batches = model.make_batches(spec, dtype, count=4)
    loops = {k: p.make_loop([p.convert(x, y) for x, y in batches]) for k, p in peers.items()}
    if wait_idle_s > 0:
        share = wait_for_quiet(wait_idle_s)
        if share is not None and share >= 0.10:
            log(f"    other processes still use {share:.0%} of the CPU; timing anyway")
    if loops:
        meter = CpuMeter()
        res.times, res.blocks = interleave(loops, rounds, block_s, pause_s=pause_s)
        res.foreign = meter.foreign()
    return res


# -- formatting ----------------------------------------------------------------------------------
def fmt_us(s: float | None) -> str:
    if s is None:
        return "–"
    us = s * 1e6
    if us >= 10000:
        return f"{us:,.0f}".replace(",", " ")
    if us >= 100:
        return f"{us:.0f}"
    return f"{us:.1f}"


def fmt_ratio(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}"


def fmt_share(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%} of the machine"


def fmt_s(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 0.01:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def title(key: str, registry: Mapping[str, type[Peer]] = ALL) -> str:
    return registry[key].title


def main_table(
    results: dict[str, SizeResult], registry: Mapping[str, type[Peer]] = ALL, order: tuple[str, ...] = ROW_ORDER
) -> list[str]:
    sizes = list(results)
    head = "| peer | " + " | ".join(f"{s} {results[s].spec.label}" for s in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    keys = [k for k in order if any(k in r.times or k in r.notes for r in results.values())]
    for k in keys:
        cells = []
        for s in sizes:
            r = results[s]
            if k in r.times:
                ratio = r.ratio(k)
                cells.append(f"{fmt_us(r.med(k))} ({fmt_ratio(ratio)})" if k != "gemm" else fmt_us(r.med(k)))
            else:
                cells.append("skipped" if r.notes.get(k, "").startswith("skipped") else "excluded")
        name = f"**{title(k, registry)}**" if k == "symdiff" else title(k, registry)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "gemm" in order:
        cells = []
        for s in sizes:
            r = results[s]
            cells.append(fmt_ratio(r.ratio("symdiff", "gemm")) if "gemm" in r.times else "–")
        lines.append("| symdiff / GEMM floor | " + " | ".join(cells) + " |")
        cells = []
        for s in sizes:
            r = results[s]
            if "gemm" in r.times:
                gf = r.spec.gemm_flops() / r.med("gemm") / 1e9
                cells.append(f"{gf:.0f} GFLOP/s")
            else:
                cells.append("–")
        lines.append("| GEMM floor throughput | " + " | ".join(cells) + " |")
    cells = [fmt_share(results[s].foreign) for s in sizes]
    lines.append("| other processes' CPU while timing | " + " | ".join(cells) + " |")
    cells = [str(max((len(t) for t in results[s].times.values()), default=0)) for s in sizes]
    lines.append("| rounds run | " + " | ".join(cells) + " |")
    return lines


def spread_table(
    results: dict[str, SizeResult], registry: Mapping[str, type[Peer]] = ALL, order: tuple[str, ...] = ROW_ORDER
) -> list[str]:
    sizes = list(results)
    lines = [
        "| peer | " + " | ".join(f"{s}: p25–p75 of per-round ratio (block steps)" for s in sizes) + " |",
        "|---" * (len(sizes) + 1) + "|",
    ]
    for k in order:
        if not any(k in r.times for r in results.values()):
            continue
        cells = []
        for s in sizes:
            r = results[s]
            q = r.ratio_iqr(k) if k != "gemm" else r.ratio_iqr("symdiff", "gemm")
            blk = r.blocks.get(k)
            if q is None:
                cells.append("–")
            else:
                cells.append(f"{q[0]:.2f}–{q[1]:.2f} ({blk})")
        name = "symdiff / GEMM floor" if k == "gemm" else title(k, registry)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def check_table(
    results: dict[str, SizeResult], registry: Mapping[str, type[Peer]] = ALL, order: tuple[str, ...] = ROW_ORDER
) -> list[str]:
    sizes = list(results)
    lines = [
        "| peer | " + " | ".join(f"{s}: loss err / grad err" for s in sizes) + " |",
        "|---" * (len(sizes) + 1) + "|",
    ]
    for k in order:
        if not any(k in r.checks or k in r.notes for r in results.values()):
            continue
        cells = []
        for s in sizes:
            r = results[s]
            c = r.checks.get(k)
            if k in r.notes:
                cells.append(r.notes[k])
            elif c is None:
                cells.append("–")
            elif c.message:
                cells.append(c.message)
            else:
                cells.append(f"{c.loss_err:.0e} / {c.grad_err:.0e} ok")
        lines.append(f"| {title(k, registry)} | " + " | ".join(cells) + " |")
    return lines


# -- sections -------------------------------------------------------------------------------------
def section_main(a, report: dict) -> None:
    report["main"] = {}
    for dtype in a.dtypes:
        report["main"][dtype] = {}
        for size in a.sizes:
            spec = SIZES[size]
            log(f"[main] {dtype} {size} {spec.label}")
            res = time_size(spec, a.peers, dtype, a.lr, a.rounds, a.block_ms / 1e3, a.wait_idle, a.pause_ms / 1e3)
            report["main"][dtype][size] = res
            for k in res.times:
                log(f"    {k:9s} {fmt_us(res.med(k)):>8} µs  ({fmt_ratio(res.ratio(k))})")
            for k, note in res.notes.items():
                log(f"    {k:9s} {note}")


def section_cnn(a, report: dict) -> None:
    keys = [k for k in cnn.ROW_ORDER if k in a.peers]
    report["cnn"] = {}
    for size in a.cnn_sizes:
        spec = cnn.SIZES[size]
        log(f"[cnn] float32 {size} {spec.label}")
        res = time_size(
            spec, keys, "float32", a.lr, a.rounds, a.block_ms / 1e3, a.wait_idle, a.pause_ms / 1e3, cnn, cnn.PEERS
        )
        report["cnn"][size] = res
        for k in res.times:
            log(f"    {k:9s} {fmt_us(res.med(k)):>8} µs  ({fmt_ratio(res.ratio(k))})")
        for k, note in res.notes.items():
            log(f"    {k:9s} {note}")


def cnn_targets(bysize: dict[str, SizeResult]) -> list[str]:
    """Issue 12's targets on the small CNN: symdiff ≤ 1.0× the hand-written step and ≤ PyTorch eager."""
    rows = ["| target (issue 12) | measured | status |", "|---|---|---|"]
    r = bysize.get("small")
    if r is None:
        return []
    why = r.notes.get("symdiff", "")
    q, qt = r.ratio("symdiff"), r.ratio("torch")
    iqr = r.ratio_iqr("symdiff")
    spread = f" (IQR {iqr[0]:.2f}–{iqr[1]:.2f})" if iqr else ""
    rows.append(
        f"| small CNN: step ≤ 1.0× hand NumPy im2col | {fmt_ratio(q) + spread if q else why or '–'} | "
        f"{verdict(q <= 1.0 if q else None, f'{(q - 1) * 100:.0f}% over' if q else '')} |"
    )
    if qt is not None or "torch" in r.notes:
        ok = q <= qt if q and qt else None
        measured = f"{fmt_ratio(q)} vs {fmt_ratio(qt)}" if q and qt else why or r.notes.get("torch", "–")
        miss = f"{q / qt:.2f}× PyTorch" if ok is False else ""
        rows.append(f"| small CNN: step ≤ PyTorch eager | {measured} | {verdict(ok, miss)} |")
    big = bysize.get("large")
    if big is not None:
        qb = big.ratio("symdiff")
        rows.append(
            f"| large CNN: reported as measured | {fmt_ratio(qb) if qb else big.notes.get('symdiff', '–')} | "
            f"{'measured' if qb else 'not measured'} |"
        )
    return rows


def section_compile(a, report: dict) -> None:
    from . import compiletime

    out: dict[str, Any] = {"symdiff": {}, "jax": {}}
    jax_ok = "jax" in a.peers and ALL["jax"].missing() is None
    if a.wait_idle > 0:
        wait_for_quiet(a.wait_idle)
    meter = CpuMeter()
    for d in a.depths:
        log(f"[compile] symdiff depth {d}")
        out["symdiff"][d] = compiletime.measure("symdiff", d, dtype="float32")
        if jax_ok:
            log(f"[compile] jax depth {d}")
            out["jax"][d] = compiletime.measure("jax", d, dtype="float32")
    out["foreign"] = meter.foreign()
    deep = max(a.depths)
    spec = deep_spec(deep)
    keys = [k for k in ("symdiff", "symdiff-noguard", "hand", "jax", "torch") if k in a.peers]
    log(f"[compile] steady step at depth {deep}: {', '.join(keys)}")
    out["steady"] = time_size(
        spec, keys, "float32", 1e-4, max(3, a.rounds // 3), max(a.block_ms, 5) / 1e3, a.wait_idle, a.pause_ms / 1e3
    )
    out["deep"] = deep
    report["compile"] = out


def section_ops(a, report: dict) -> None:
    import symdiff as sd

    from . import opcount
    from .peers import HandNumpy, symdiff_mlp

    spec = SIZES[a.ops_size]
    log(f"[ops] {spec.label}")
    loss, names = symdiff_mlp(spec, "float32")
    p0 = init_params(spec, "float32")
    params = {names[k]: v.copy() for k, v in p0.items()}
    ((x, y),) = make_batches(spec, "float32", count=1)

    def count(fn, *args, **kwargs) -> opcount.Tally:
        tally = fn.tally
        fn(*args, **kwargs)  # first call: workspaces are allocated; steady state is the second
        tally.reset()
        fn(*args, **kwargs)
        return tally

    def load(source, name):
        t = opcount.Tally()
        f = opcount.instrument(source, name, t)
        f.tally = t
        return f

    fwd_src = sd.codegen({"loss": loss}, name="forward")
    fwd = count(load(fwd_src, "forward"), **params, x=x, y=y)
    train = sd.compile_step(loss, {k: v.copy() for k, v in params.items()}, sd.optim.SGD(lr=1e-3))
    stp = count(load(train.source, "train_step"), train.params, train.state, 1e-3, 1, x=x, y=y)
    nog = None
    if ALL["symdiff-noguard"].missing() is None:
        tr2 = sd.compile_step(loss, {k: v.copy() for k, v in params.items()}, sd.optim.SGD(lr=1e-3), guard=False)
        nog = count(load(tr2.source, "train_step"), tr2.params, tr2.state, 1e-3, 1, x=x, y=y)
    hand = HandNumpy(spec, p0, "float32", 1e-3)
    t = opcount.Tally()
    hf = opcount.instrument_function(HandNumpy._step, t)
    hf.tally = t
    hnd = count(hf, hand, (x, y))
    report["ops"] = {"spec": spec, "forward": fwd, "step": stp, "hand": hnd, "noguard": nog}


def section_memory(a, report: dict) -> None:
    from . import memory

    rows = []
    variants = ("gemm", "symdiff-call", "symdiff-noguard", "symdiff-torch", "symdiff-jax")  # a row's memory again
    keys = [k for k in ROW_ORDER if k in a.peers and k not in variants]
    for key in ["numpy-only", *keys]:
        if key != "numpy-only":
            missing = ALL[key].missing()
            if missing:
                rows.append({"peer": key, "error": f"skipped: {missing}"})
                continue
        log(f"[memory] {key}: {a.memory_steps} {a.memory_size} float32 steps in a fresh process")
        rows.append(memory.measure(key, a.memory_size, "float32", a.memory_steps))
    report["memory"] = rows


def section_scaling(a, report: dict) -> None:
    from . import distributed

    log("[scaling] sd.distributed with 1 and 2 workers on a LocalCluster, and the model of N machines")
    quick = {"sizes": ("tiny",), "batch": 256, "steps": 2, "repeats": 1} if a.quick else {}
    report["scaling"] = distributed.scaling_report(**quick)


def section_blas(a, report: dict) -> None:
    from . import blas_fusion

    if importlib.util.find_spec("scipy") is None:
        report["blas"] = [blas_fusion.HEADING, "", "Skipped: SciPy is not installed."]
        return
    log("[blas] hand-written steps with the SGD update fused into SciPy's gemm, steady and switching")
    sizes = tuple(s for s in a.sizes if s in SIZES)
    report["blas"] = blas_fusion.report(sizes, rounds=3 if a.quick else 12)


GPU_HEADING = "## On a GPU: symdiff on PyTorch and JAX"


def gpu_device() -> str | None:
    """``"cuda"`` when PyTorch or JAX sees a GPU here, else None."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    if importlib.util.find_spec("jax") is not None:
        import jax

        if any(d.platform == "gpu" for d in jax.devices()):
            return "cuda"
    return None


def section_gpu(a, report: dict) -> None:
    from . import gpu

    device = gpu_device()
    if device is None:
        log("[gpu] skipped: no GPU (PyTorch and JAX see none)")
        report["gpu"] = [GPU_HEADING, "", "No GPU here: neither PyTorch nor JAX sees one, so this section did not run."]
        return
    log(f"[gpu] symdiff on PyTorch and JAX on {device}")
    report["gpu"] = [GPU_HEADING, "", *gpu.report(device)]


def section_driver(a, report: dict) -> None:
    from . import driver

    spec = SIZES[a.driver_size]
    log(f"[driver] sd.fit vs bare loop, {spec.label}")
    if a.wait_idle > 0:
        wait_for_quiet(a.wait_idle)
    meter = CpuMeter()
    report["driver"] = driver.measure(
        spec, "float32", a.lr, epochs=a.driver_epochs, batches=a.driver_batches, rounds=a.driver_rounds
    )
    report["driver"]["spec"] = spec
    report["driver"]["foreign"] = meter.foreign()


# -- the report -----------------------------------------------------------------------------------
def verdict(ok: bool | None, miss: str = "") -> str:
    if ok is None:
        return "not measured"
    return "met" if ok else f"**missed**{': ' + miss if miss else ''}"


def targets(a, report: dict) -> list[str]:
    rows = ["| target (issue 5) | measured | status |", "|---|---|---|"]
    main = report.get("main", {})
    for dtype, bysize in main.items():
        parts, worst = [], None
        for size, r in bysize.items():
            q, iqr = r.ratio("symdiff"), r.ratio_iqr("symdiff")
            parts.append(f"{size} {fmt_ratio(q)}" + (f" (IQR {iqr[0]:.2f}–{iqr[1]:.2f})" if iqr else ""))
            if q is not None:
                worst = q if worst is None else max(worst, q)
        ok = None if worst is None else worst <= 1.0
        rows.append(
            f"| 1. step ≤ 1.0× hand NumPy, {dtype} | {', '.join(parts)} | "
            f"{verdict(ok, f'worst {worst:.2f}×, {(worst - 1) * 100:.0f}% over' if worst else '')} |"
        )
    for dtype, bysize in main.items():
        parts, worst = [], None
        for size, r in bysize.items():
            q = r.ratio("symdiff-noguard")
            if q is not None:
                parts.append(f"{size} {fmt_ratio(q)}")
                worst = q if worst is None else max(worst, q)
        if worst is not None:
            rows.append(
                f"| 1. (the same with `guard=False`), {dtype} | {', '.join(parts)} | "
                f"{verdict(worst <= 1.0, f'worst {worst:.2f}×')} |"
            )
    for dtype, bysize in main.items():
        if "medium" in bysize and "gemm" in bysize["medium"].times:
            q = bysize["medium"].ratio("symdiff", "gemm")
            rows.append(
                f"| 1. step ≤ 1.1× GEMM floor at medium, {dtype} | {fmt_ratio(q)} | "
                f"{verdict(q <= 1.1 if q else None, f'{(q / 1.1 - 1) * 100:.0f}% over the 1.1×' if q else '')} |"
            )
    if "float32" in main and "tiny" in main["float32"]:
        r = main["float32"]["tiny"]
        q, qp = r.ratio("symdiff"), r.ratio("pytensor")
        ref = f"PyTensor {fmt_ratio(qp)} in this run" if qp else f"PyTensor {ISSUE['pytensor_tiny_ratio']} in issue 5"
        bar = qp if qp else ISSUE["pytensor_tiny_ratio"]
        rows.append(
            f"| 1. stretch: tiny below PyTensor's ratio | {fmt_ratio(q)} ({ref}) | {verdict(q < bar if q else None)} |"
        )
    comp = report.get("compile")
    if comp:
        sd_ = comp["symdiff"]
        deep = comp["deep"]
        d = sd_.get(deep, {})
        c = d.get("compile_step")
        rows.append(
            f"| 2. gradient + codegen + compile at depth {deep} ≤ 0.5 s | "
            f"{fmt_s(c) if c else d.get('error', '–')} | {verdict(c <= 0.5 if c else None)} |"
        )
        if 64 in sd_ and deep != 64 and "compile_step" in sd_[64] and c:
            q = c / sd_[64]["compile_step"]
            rows.append(f"| 2. linear in depth: depth {deep} ≤ 4.5× depth 64 | {q:.1f}× | {verdict(q <= 4.5)} |")
        st = comp["steady"]
        s_sd, s_jax = st.med("symdiff"), st.med("jax")
        if s_sd is not None and (s_jax is not None or deep == 256):
            bar = s_jax if s_jax is not None else ISSUE["jax_steady_deep_ms"] / 1e3
            src = "JAX in this run" if s_jax is not None else "JAX in issue 5"
            rows.append(
                f"| 2. steady step at depth {deep} faster than JAX | {fmt_s(s_sd)} vs {fmt_s(bar)} ({src}) | "
                f"{verdict(s_sd < bar, f'{s_sd / bar:.2f}× JAX')} |"
            )
    ops = report.get("ops")
    if ops:
        qo = ops["step"].total_ops / ops["forward"].total_ops
        qf = ops["step"].total_flops / ops["forward"].total_flops
        rows.append(
            f"| 3. gradient step ≤ 3× forward (NumPy ops, FLOPs) | {qo:.2f}× ops, {qf:.2f}× FLOPs | "
            f"{verdict(qo <= 3 and qf <= 3, f'{qo:.2f}× ops' if qo > 3 else f'{qf:.2f}× FLOPs')} |"
        )
    mem = {m["peer"]: m for m in report.get("memory", []) if "peak_mib" in m}
    if "symdiff" in mem and "hand" in mem:
        ms, mh = mem["symdiff"]["peak_mib"], mem["hand"]["peak_mib"]
        rows.append(
            f"| 4. peak memory of {a.memory_steps} {a.memory_size} float32 steps ≤ hand NumPy | "
            f"{ms:.0f} MiB vs {mh:.0f} MiB | {verdict(ms <= mh, f'+{ms - mh:.0f} MiB')} |"
        )
    drv = report.get("driver")
    if drv:
        q = drv["ratio"]
        rows.append(
            f"| 5. sd.fit ≤ 1.10× bare loop ({drv['spec'].name}) | {q:.3f}× (without the shuffle "
            f"{drv['ratio_noshuffle']:.3f}×) | {verdict(q <= 1.10, f'{(q - 1) * 100:.0f}% overhead')} |"
        )
    return rows


BACKENDS14 = {"NumPy": "symdiff", "fused": "symdiff-numba"}  # the peers of symdiff's two CPU backends


def targets14(report: dict) -> list[str]:
    """The rows of issue 14's targets that this run measures (ratios to the expert hand-written NumPy step)."""
    rows = ["| target (issue 14) | measured | status |", "|---|---|---|"]
    for dtype, bysize in report.get("main", {}).items():
        r = bysize.get("tiny")
        if r is not None and r.ratio("symdiff") is not None:
            q = r.ratio("symdiff")
            rows.append(f"| tiny: NumPy backend step.run ≤ 1.0×, {dtype} | {fmt_ratio(q)} | {verdict(q <= 1.0)} |")
        if r is not None and r.ratio("symdiff-numba") is not None:
            q, qp = r.ratio("symdiff-numba"), r.ratio("pytensor")
            ok = q <= 0.5 and (qp is None or q < qp)
            ref = f", PyTensor {fmt_ratio(qp)}" if qp is not None else " (PyTensor not run)"
            label = f"tiny: fused backend ≤ 0.5×, ahead of PyTensor, {dtype}"
            rows.append(f"| {label} | {fmt_ratio(q)}{ref} | {verdict(ok)} |")
        r = bysize.get("medium")
        for base, bound, what in (("hand", 0.9, "hand NumPy"), ("gemm", 1.1, "the GEMM floor")):
            got = {b: r.ratio(k, base) for b, k in BACKENDS14.items()} if r is not None else {}
            got = {b: q for b, q in got.items() if q is not None}
            if got:  # met by the better backend; each named
                best = min(got.values())
                shown = ", ".join(f"{b} {fmt_ratio(q)}" for b, q in got.items())
                miss = f"best {best:.2f}×, {(best / bound - 1) * 100:.0f}% over"
                rows.append(f"| medium: ≤ {bound}× {what}, {dtype} | {shown} | {verdict(best <= bound, miss)} |")
        r = bysize.get("large")
        if r is not None and r.ratio("symdiff") is not None:
            q, qj = r.ratio("symdiff"), r.ratio("jax")
            ok = q <= 1.0 and (qj is None or q < qj)
            jax = f", JAX jit {fmt_ratio(qj)}" if qj is not None else " (JAX not run)"
            rows.append(f"| large: ≤ 1.0× and faster than JAX jit, {dtype} | {fmt_ratio(q)}{jax} | {verdict(ok)} |")
        calls = [(size, r.ratio("symdiff-call", "symdiff")) for size, r in bysize.items()]
        calls = [(size, q) for size, q in calls if q is not None]
        if calls:
            worst = max(q for _, q in calls)
            shown = ", ".join(f"{size} {fmt_ratio(q)}" for size, q in calls)
            rows.append(
                f"| public call step(**batch) ≤ 1.05× step.run, {dtype} | {shown} | "
                f"{verdict(worst <= 1.05, f'worst {worst:.3f}×')} |"
            )
    return rows


def render(a, report: dict, started: float) -> str:
    L: list[str] = []
    L.append("# symdiff benchmarks")
    L.append("")
    L.append(
        f"Generated by `python -m benchmarks {' '.join(a.argv)}`".rstrip() + f" on {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{time.time() - started:.0f} s in all. Regenerate rather than edit."
    )
    L.append("")
    L.append(f"**Machine:** {machine_line()}.  ")
    la0, la1 = report.get("load_start"), os.getloadavg() if hasattr(os, "getloadavg") else None
    if la0 and la1:
        L.append(
            f"**Load average** (1, 5, 15 min) at start {la0[0]:.2f}, {la0[1]:.2f}, {la0[2]:.2f}; at end "
            f"{la1[0]:.2f}, {la1[1]:.2f}, {la1[2]:.2f} (on {os.cpu_count()} cores: other work competes).  "
        )
    share = report["meter"].foreign() if "meter" in report else None
    if share is not None:
        L.append(
            f"**Other processes** used {share:.0%} of the machine's CPU during this run"
            + (
                " — the figures below are distorted by that contention (multithreaded BLAS suffers most); "
                "rerun on an idle machine."
                if share >= 0.10
                else "."
            )
            + "  "
        )
    L.append(f"**OpenBLAS environment** (`OPENBLAS_CORETYPE`, `OPENBLAS_L2_SIZE`): {envcheck.describe()}.  ")
    vers = []
    for k in ROW_ORDER:
        if k in a.peers and ALL[k].missing() is None and k not in ("hand", "gemm", "symdiff-noguard"):
            try:
                vers.append(ALL[k].version())
            except Exception:  # noqa: BLE001
                pass
    missing = [f"{ALL[k].title} ({ALL[k].missing()})" for k in ROW_ORDER if k in a.peers and ALL[k].missing()]
    L.append(f"**Peers:** {', '.join(vers)}" + (f"; skipped: {', '.join(missing)}" if missing else "") + ".  ")
    not_run = [ALL[k].title for k in ROW_ORDER if k not in a.peers]
    if not_run:
        L.append(f"Not requested: {', '.join(not_run)}.  ")
    L.append("")
    L.append("## Targets")
    L.append("")
    L += targets(a, report)
    L.append("")
    issue14 = targets14(report)
    if len(issue14) > 2:
        L += [*issue14, ""]

    if "main" in report:
        L.append("## Training step: median µs per step (ratio to hand-written NumPy)")
        L.append("")
        L.append(
            f"ReLU MLP, softmax cross-entropy, one step = forward + backward + SGD update, returning the loss as a "
            f"Python float. All peers in one process; up to {a.rounds} interleaved rounds (peer order rotating; a "
            f"table stops after 120 s, at least 3 rounds), each peer running a block of steps lasting about "
            f"{a.block_ms:g} ms per round (shrunk when the machine slows down), cycling over 4 batches; garbage "
            f"collector off inside blocks, and a {a.pause_ms:g} ms pause before each block so the thread pools of the "
            f"previous peer stop spinning (see `benchmarks/timing.py`). Ratios are ratios of medians; the GEMM "
            f"floor row is the bare matmuls only. Shared machines drift: compare ratios, not absolute figures, "
            f"across runs. The harness waits up to {a.wait_idle:g} s before each table for other processes to "
            f"quiet down and reports their CPU use."
        )
        L.append("")
        for dtype, bysize in report["main"].items():
            L.append(f"### {dtype}")
            L.append("")
            L += main_table(bysize)
            L.append("")
            L.append(
                "Noise: the interquartile range of the per-round ratios (each round's time over the hand-written "
                "NumPy's in the same round; for the GEMM row symdiff over the floor), and the steps per block:"
            )
            L.append("")
            L += spread_table(bysize)
            L.append("")
        L.append("### Correctness check before timing")
        L.append("")
        L.append(
            "Every peer takes three steps from the same params with lr = 1 (a full batch, a partial batch of "
            "n/2+1 rows, a full batch again); the gradient it applied, `(p_before - p_after) / lr`, and its loss are "
            "compared with a float64 NumPy reference evaluated on the peer's own `p_before`. Errors are the max "
            "absolute difference over the max reference magnitude, worst over all arrays and steps; tolerance "
            "float32: loss 1e-5, gradients 1e-4; float64: 1e-12 and 1e-10. A peer over the tolerance, or whose "
            "params change dtype, is excluded from timing."
        )
        L.append("")
        for dtype, bysize in report["main"].items():
            L.append(f"{dtype}:")
            L.append("")
            L += check_table(bysize)
            L.append("")
        L.append("Peers: " + "; ".join(f"{ALL[k].title}: {ALL[k].note}" for k in ROW_ORDER if k in a.peers) + ".")
        L.append("")

    convs = report.get("cnn")
    if convs:
        L += cnn_section(a, convs)

    comp = report.get("compile")
    if comp:
        L.append("## Preparation time versus depth (width-64 ReLU MLP, batch 128, float32)")
        L.append("")
        L.append(
            "`depth` hidden 64→64 ReLU layers, then 64→10 and softmax cross-entropy; each figure from a fresh "
            "process (imports not timed). symdiff: `graph` = building the model with `sd.Input`/`sd.dense` and the "
            "loss; `compile_step` = `sd.compile_step` (gradient, simplification, code generation, `exec`); `first` "
            "= the first `step.run`; `sd.grad` alone = the gradient of a second, identically shaped model in the "
            "same process (part of `compile_step`). JAX: `jax.jit` of the update traced, compiled and run once."
        )
        L.append("")
        depths = sorted(comp["symdiff"])
        L.append(
            "| depth | graph | compile_step | of which sd.grad | first step | symdiff total | generated lines "
            "| JAX jit + first step |"
        )
        L.append("|---|---|---|---|---|---|---|---|")
        for d in depths:
            s = comp["symdiff"][d]
            j = comp["jax"].get(d, {})
            jtxt = fmt_s(j.get("total")) if "total" in j else (j.get("error", "–") if j else "–")
            if "error" in s:
                L.append(f"| {d} | {s['error']} | | | | | | {jtxt} |")
                continue
            L.append(
                f"| {d} | {fmt_s(s['graph'])} | {fmt_s(s['compile_step'])} | {fmt_s(s.get('grad_only'))} | "
                f"{fmt_s(s['first'])} | {fmt_s(s['total'])} | {s.get('source_lines', '–')} | {jtxt} |"
            )
        L.append("")
        L.append(f"Other processes' CPU during these preparations: {fmt_share(comp.get('foreign'))}.")
        deep = comp["deep"]
        if 64 in comp["symdiff"] and deep != 64:
            a64, ad = comp["symdiff"][64], comp["symdiff"][deep]
            if "compile_step" in a64 and "compile_step" in ad:
                L.append("")
                L.append(
                    f"Ratio depth {deep} / depth 64: compile_step {ad['compile_step'] / a64['compile_step']:.1f}×, "
                    f"total {ad['total'] / a64['total']:.1f}× (linear growth would be {deep / 64:.0f}×)."
                )
        st: SizeResult = comp["steady"]
        L.append("")
        L.append(f"Steady step at depth {deep} (median of interleaved rounds, same process; ratio to hand NumPy):")
        L.append("")
        L.append("| peer | ms per step | ratio |")
        L.append("|---|---|---|")
        for k in ("symdiff", "symdiff-noguard", "hand", "jax", "torch"):
            if k in st.times:
                L.append(f"| {title(k)} | {st.med(k) * 1e3:.2f} | {fmt_ratio(st.ratio(k))} |")
            elif k in st.notes:
                L.append(f"| {title(k)} | {st.notes[k]} | |")
        bad = [f"{title(k)}: {c.loss_err:.0e} / {c.grad_err:.0e}" for k, c in st.checks.items() if c.ok and c.grad_err]
        if bad:
            L.append("")
            L.append("Correctness check at this depth (loss / gradient error): " + "; ".join(bad) + ".")
        L.append("")

    ops = report.get("ops")
    if ops:
        spec = ops["spec"]
        L.append(f"## Cheap-gradient principle: operations and FLOPs ({spec.name} {spec.label}, float32)")
        L.append("")
        L.append(
            "Counted by executing the code with every NumPy operation wrapped (`benchmarks/opcount.py`): the "
            "module source is parsed with `ast`, each operator on arrays (`@ + - * / > ...`, in-place ones "
            "included), each `np.*` call, each array method call and each fancy-index read or write is rewritten "
            "into a counting call, and the function is run on real arrays (the second call is counted, so "
            "one-time workspace allocation is not). Views (basic slicing, `.T`) are not counted; helper functions "
            "of the generated module are counted inside. FLOPs: matmul 2·m·k·n, element-wise one per output "
            "element, reductions one per input element, data movement (indexing, casts, allocation) zero. "
            "Forward = `sd.codegen({'loss': loss})`; step = `sd.compile_step(...).source` (loss, gradients, "
            "finiteness check, SGD update)."
        )
        L.append("")
        L.append(
            "| function | NumPy ops | matmul | element-wise | reductions | data | opaque | FLOPs | matmul FLOPs "
            "| ops / forward | FLOPs / forward |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        f0 = ops["forward"]
        rows_ = [("symdiff forward (loss only)", f0), ("**symdiff training step**", ops["step"])]
        if ops.get("noguard") is not None:
            rows_.append(("symdiff training step, guard=False", ops["noguard"]))
        rows_.append(("hand-written NumPy step", ops["hand"]))
        for label, t in rows_:
            L.append(
                f"| {label} | {t.total_ops} | {t.ops['matmul']} | {t.ops['elementwise']} | {t.ops['reduction']} | "
                f"{t.ops['data']} | {t.ops['opaque']} | {t.total_flops / 1e6:.1f} M | "
                f"{t.flops['matmul'] / 1e6:.1f} M | "
                f"{t.total_ops / f0.total_ops:.2f} | {t.total_flops / f0.total_flops:.2f} |"
            )
        L.append("")
        for label, t in (("symdiff step", ops["step"]), ("hand-written step", ops["hand"])):
            names = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in sorted(t.names.items(), key=lambda kv: -kv[1]))
            L.append(f"- {label} ops by name: {names}")
        L.append("")

    mem = report.get("memory")
    if mem:
        L.append(f"## Peak memory: {a.memory_steps} {a.memory_size}-MLP float32 steps, fresh process per peer")
        L.append("")
        L.append(
            "`ru_maxrss` of the process (`resource.getrusage`), imports included: the process imports NumPy, the "
            "harness's model module and the peer's framework, builds the peer from the same params, runs the steps "
            "on one batch. `numpy-only` is the floor: interpreter, NumPy, params and batch."
        )
        L.append("")
        L.append("| peer | peak MiB (ru_maxrss) | VmHWM MiB | after setup MiB | seconds for the steps |")
        L.append("|---|---|---|---|---|")
        for m in mem:
            name = m["peer"] if m["peer"] == "numpy-only" else title(m["peer"])
            if "error" in m:
                L.append(f"| {name} | {m['error']} | | | |")
            else:
                setup = f"{m['setup_mib']:.0f}" if "setup_mib" in m else "–"
                secs = f"{m['seconds']:.1f}" if "seconds" in m else "–"
                hwm = f"{m['vmhwm_mib']:.0f}" if m.get("vmhwm_mib") else "–"
                L.append(f"| {name} | {m['peak_mib']:.0f} | {hwm} | {setup} | {secs} |")
        L.append("")

    drv = report.get("driver")
    if drv:
        spec = drv["spec"]
        L.append(f"## Driver overhead: `sd.fit` versus a bare loop ({spec.name} {spec.label}, float32)")
        L.append("")
        L.append(
            f"{drv['rows']} rows, {drv['epochs']} epochs = {drv['steps']} steps per run, {drv['rounds']} alternating "
            "runs, medians. `sd.fit(..., progress=False)` per step is `History.seconds / History.steps` (its epoch "
            "loop: shuffling, batch views, the step, loss accumulation); the wall time of the whole call also "
            "compiles the step. The bare loop calls `step.run` on precomputed views of the same arrays."
        )
        L.append("")
        L.append("| | µs per step | ratio to bare loop |")
        L.append("|---|---|---|")
        L.append(f"| bare loop over `step.run` | {drv['bare_step'] * 1e6:.0f} | 1.00 |")
        L.append(f"| `sd.fit` epoch loop | {drv['fit_step'] * 1e6:.0f} | {drv['ratio']:.3f} |")
        L.append(
            f"| `sd.fit` whole call (compile included) | {drv['fit_wall_step'] * 1e6:.0f} | {drv['ratio_wall']:.3f} |"
        )
        L.append(
            f"| `sd.fit(shuffle=False)` epoch loop | {drv['fit_noshuffle_step'] * 1e6:.0f} | "
            f"{drv['ratio_noshuffle']:.3f} |"
        )
        L.append("")
        L.append(f"Other processes' CPU during this measurement: {fmt_share(drv.get('foreign'))}.")
        L.append("")
    for key in ("scaling", "blas", "gpu"):  # each report is markdown under its own heading
        if report.get(key):
            L += [*report[key], ""]
    return "\n".join(L).rstrip() + "\n"


def cnn_section(a, bysize: dict[str, SizeResult]) -> list[str]:
    """The markdown of the ``cnn`` section: targets, times, noise, the correctness check, the peers."""
    reg, order = cnn.PEERS, cnn.ROW_ORDER
    L = ["## Convolutional networks: median µs per training step (ratio to hand-written NumPy im2col)", ""]
    L.append(
        "Issue 12's CNNs, NHWC, float32: conv 3×3 'same' + bias → ReLU → 2×2 max-pool (stride 2) blocks, the "
        "pooled maps flattened into a dense layer, softmax cross-entropy; one step = forward + backward + SGD "
        "update, returning the loss as a Python float. Same protocol as the MLP tables: all peers in one process, "
        f"up to {a.rounds} interleaved rounds, blocks of about {a.block_ms:g} ms, a {a.pause_ms:g} ms pause before "
        "each block, ratios of medians. The baseline is an expert NumPy step (`benchmarks/cnn.py`, `HandCNN`)."
    )
    L.append("")
    L += cnn_targets(bysize)
    L.append("")
    L += main_table(bysize, reg, order)
    L.append("")
    L.append("Noise: the interquartile range of the per-round ratios, and the steps per block:")
    L.append("")
    L += spread_table(bysize, reg, order)
    L.append("")
    L.append(
        "Correctness check before timing, as for the MLPs (three steps at lr = 1: full, partial, full batch; "
        "against a float64 NumPy reference that sums over the kernel taps and splits max-pool ties evenly):"
    )
    L.append("")
    L += check_table(bysize, reg, order)
    L.append("")
    L.append("Peers: " + "; ".join(f"{reg[k].title}: {reg[k].note}" for k in order if k in a.peers) + ".")
    L.append("")
    return L


# -- command line ---------------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="tiny,medium,large", help="comma-separated: tiny, medium, large")
    ap.add_argument("--dtype", default="float32,float64", help="float32, float64 or both, comma-separated")
    ap.add_argument("--cnn-sizes", default="small,large", help="comma-separated CNNs of the cnn section: small, large")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds per size (default 30)")
    ap.add_argument("--block-ms", type=float, default=20.0, help="target duration of one peer's block per round")
    ap.add_argument(
        "--peers",
        default="all",
        help=f"comma-separated from {', '.join(ALL)}; 'all' (optional ones when importable) or 'core'",
    )
    ap.add_argument("--no-optional", action="store_true", help="only symdiff, hand-written NumPy, GEMM floor")
    ap.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated from {', '.join(SECTIONS)} (default all but gpu)",
    )
    ap.add_argument("--gpu", action="store_true", help="add the gpu section (it runs only where a GPU is present)")
    ap.add_argument("--depths", default="16,64,128,256", help="depths of the compile-time table")
    ap.add_argument("--memory-size", default="large")
    ap.add_argument("--memory-steps", type=int, default=100)
    ap.add_argument("--ops-size", default="medium")
    ap.add_argument("--driver-size", default="medium")
    ap.add_argument("--driver-epochs", type=int, default=2)
    ap.add_argument("--driver-batches", type=int, default=40, help="batches per epoch in the driver section")
    ap.add_argument("--driver-rounds", type=int, default=15)
    ap.add_argument("--lr", type=float, default=0.01, help="SGD learning rate while timing")
    ap.add_argument(
        "--pause-ms",
        type=float,
        default=150.0,
        help="sleep before each block so the previous peer's thread pools stop spinning (see timing.py)",
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=10.0,
        metavar="S",
        help="before each timed table wait up to S seconds for other processes to use < 10%% of the CPU",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny size, small CNN, float32, 2 rounds, core peers, depths 2 and 4, tiny memory/driver",
    )
    ap.add_argument(
        "--out",
        default=None,
        help="where to write the markdown report (default benchmarks/RESULTS.md; with --quick "
        "benchmarks/RESULTS-quick.md, git-ignored, so a smoke run never replaces the committed results)",
    )
    ap.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help="do not re-run without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (they are unset by default)",
    )
    a = ap.parse_args(argv)
    a.argv = argv
    if a.out is None:
        a.out = os.path.join(HERE, "RESULTS-quick.md" if a.quick else "RESULTS.md")
    if a.quick:
        a.sizes, a.cnn_sizes, a.dtype, a.rounds, a.block_ms = (
            "tiny",
            "small",
            "float32" if a.dtype == "float32,float64" else a.dtype,
            min(a.rounds, 2),
            min(a.block_ms, 2.0),
        )
        if a.peers == "all":
            a.peers = "core"
        a.depths = "2,4" if a.depths == "16,64,128,256" else a.depths
        a.memory_size, a.memory_steps = "tiny", min(a.memory_steps, 5)
        a.ops_size = a.driver_size = "tiny"
        a.wait_idle = 0.0
        a.pause_ms = 0.0
        a.driver_epochs, a.driver_batches, a.driver_rounds = 1, 4, 2
    a.sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    a.cnn_sizes = [s.strip() for s in a.cnn_sizes.split(",") if s.strip()]
    a.dtypes = [s.strip() for s in a.dtype.split(",") if s.strip()]
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()] + (["gpu"] if a.gpu else [])
    a.depths = sorted({int(d) for d in a.depths.split(",") if d.strip()})
    if a.no_optional or a.peers == "core":
        a.peers = list(CORE)
    elif a.peers == "all":
        a.peers = list(ALL)
    else:
        a.peers = [p.strip() for p in a.peers.split(",") if p.strip()]
    for what, got, allowed in (
        ("size", a.sizes, SIZES),
        ("CNN size", a.cnn_sizes, cnn.SIZES),
        ("peer", a.peers, ALL),
        ("section", a.sections, SECTIONS),
        ("dtype", a.dtypes, ("float32", "float64")),
    ):
        bad = [g for g in got if g not in allowed]
        if bad:
            ap.error(f"unknown {what} {bad[0]!r}; choose from {', '.join(allowed)}")
    if "hand" not in a.peers:
        a.peers.insert(0, "hand")  # the baseline of every ratio
    a.peers = [k for k in ROW_ORDER if k in a.peers]
    return a


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse(argv)
    started = time.time()
    report: dict[str, Any] = {"load_start": os.getloadavg() if hasattr(os, "getloadavg") else None, "meter": CpuMeter()}
    log(f"machine: {machine_line()}")
    log(f"OpenBLAS env: {envcheck.describe()}")
    steps = {
        "main": section_main,
        "cnn": section_cnn,
        "compile": section_compile,
        "ops": section_ops,
        "memory": section_memory,
        "driver": section_driver,
        "scaling": section_scaling,
        "blas": section_blas,
        "gpu": section_gpu,
    }
    for name in SECTIONS:
        if name in a.sections:
            steps[name](a, report)
    text = render(a, report, started)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        fh.write(text)
    print(text)
    log(f"wrote {a.out} in {time.time() - started:.0f} s")
    return 0
