"""Data-parallel symdiff on Dask against one process: ``python -m benchmarks.distributed [--quick] [--scaling]``.

The same data and model (the medium MLP of ``models.py``, float32) three ways, side by side: one process on
in-memory arrays, and ``sd.distributed`` on a ``LocalCluster`` of 1 and of 2 worker processes (one thread each;
Dask limits each worker's BLAS to one thread). Two workloads, in rows per second:

* a full-data gradient: ``sd.distributed.value_and_grad`` against the compiled loss-and-gradient function run over
  the same chunks in this process;
* one epoch of minibatch training: ``sd.distributed.fit`` against ``sd.fit``.

It also prints, per training step, the bytes of params sent out and of gradients sent back against the FLOPs of
one step, the inputs of a scaling model for more machines.

``--out-of-core`` instead writes a data set 4x larger than one worker's ``memory_limit`` to disk as chunked ``.npy``
files, trains a logistic regression on it for one epoch (``fit(..., persist=False)``: each task memory-maps its
chunk), checks that no worker was restarted, and compares the throughput with ``sd.fit`` on an in-memory slice.
``--scaling`` prints :func:`scaling_report`: the per-step costs of synchronous data-parallel training of the medium
and large MLPs measured on 1 and 2 workers here, and a model of N machines saying where it stops scaling.

Needs the ``dask`` extra.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .models import SIZES, Spec, init_params, make_batches
from .peers import symdiff_mlp


def _best(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn`` (after one warm-up call), in seconds."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one repeat (a smoke run)")
    parser.add_argument("--size", default="medium", choices=sorted(SIZES))
    parser.add_argument("--out-of-core", action="store_true", help="train on a data set 4x a worker's memory")
    parser.add_argument("--scaling", action="store_true", help="the measured step costs and the model of N machines")
    args = parser.parse_args(argv)
    if args.out_of_core:
        return out_of_core(args.quick)
    if args.scaling:
        quick = {"batch": 1024, "steps": 2, "repeats": 1} if args.quick else {}
        print("\n".join(scaling_report(**quick)))
        return 0

    import dask.array as da
    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    import symdiff as sd
    from symdiff import distributed as sdd

    warnings.filterwarnings("ignore", message=".*large graph")  # from_array ships the in-memory data: the same rows

    spec = SIZES[args.size]
    # batches of 4 chunks: a batch's rows lie in the chunks it is cut from, so smaller batches use one worker a step
    rows, chunk, batch, repeats = (4096, 256, 1024, 1) if args.quick else (32768, 1024, 4096, 3)
    loss, names = symdiff_mlp(spec, "float32")
    params0 = {names[k]: v for k, v in init_params(spec).items()}
    ((X, Y),) = make_batches(spec, count=1, rows=rows)
    fn = sd.compile([loss, *sd.grad(loss, sd.params(loss))]).fn
    lr = 0.01

    def local_gradient() -> None:
        for lo in range(0, rows, chunk):
            fn(**params0, x=X[lo : lo + chunk], y=Y[lo : lo + chunk])

    def local_fit() -> None:
        p = {k: v.copy() for k, v in params0.items()}
        sd.fit(loss, p, {"x": X, "y": Y}, optimizer=sd.optim.SGD(lr), batch_size=batch, progress=False)

    results: dict[str, tuple[float, float]] = {}
    results["one process, BLAS 2 threads"] = (_best(local_gradient, repeats), _best(local_fit, repeats))
    with threadpool_limits(1):
        results["one process, BLAS 1 thread"] = (_best(local_gradient, repeats), _best(local_fit, repeats))
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                data = {"x": da.from_array(X, chunks=(chunk, X.shape[1])), "y": da.from_array(Y, chunks=chunk)}
                data = dict(zip(data, client.persist(list(data.values()))))  # timed: compute, not the upload

                def dist_gradient(data=data, client=client) -> None:
                    sdd.value_and_grad(loss, params0, data, client)

                def dist_fit(data=data, client=client) -> None:
                    p = {k: v.copy() for k, v in params0.items()}
                    sdd.fit(loss, p, data, sd.optim.SGD(lr), batch, 1, client)

                label = f"sd.distributed, {workers} worker{'s' if workers > 1 else ''}"
                results[label] = (_best(dist_gradient, repeats), _best(dist_fit, repeats))

    print(f"{spec.name} MLP {spec.label.split(',')[0]}, float32; {rows} rows in chunks of {chunk}; fit batch {batch}")
    print(f"{'':34} {'gradient rows/s':>16} {'fit rows/s':>12} {'fit ms/step':>12}")
    steps = -(-rows // batch)
    for label, (grad_s, fit_s) in results.items():
        print(f"{label:34} {rows / grad_s:16,.0f} {rows / fit_s:12,.0f} {1000 * fit_s / steps:12.1f}")
    param_bytes = sum(v.nbytes for v in params0.values())
    flops = spec.gemm_flops() * batch / spec.batch
    print(
        f"per step: params out {param_bytes / 2**20:.2f} MiB per worker, gradient sums back {param_bytes / 2**20:.2f}"
        f" MiB per chunk part, {flops / 1e9:.2f} GFLOP of matmuls for a batch of {batch}"
    )
    return 0


# -- scaling on paper --------------------------------------------------------------------------------------------------
LINKS: dict[str, float] = {"1 GbE": 125e6, "10 GbE": 1.25e9}  # the network links of the model, in bytes per second
MACHINES = (1, 2, 4, 8, 16, 32, 64)  # the cluster sizes the model tabulates
PARTS = 4  # chunks per global batch in the measurements (each chunk one task)
FIXED_ROWS = 8  # rows per chunk of the runs that measure a step's fixed cost
LATENCY_SIZE = "tiny"  # the MLP whose fixed cost is the latency: a few KiB of params, no compute to speak of


@dataclass
class StepCosts:
    """What one synchronous data-parallel step of an MLP costs, measured here."""

    spec: Spec
    batch: int  # rows of the global batch
    nbytes: int  # bytes of the params sent out per step, and of the gradient sums sent back
    row_s: float  # compute per row: the generated loss-and-gradient code in one process, one BLAS thread
    fixed_s: dict[int, float]  # workers -> seconds per step with FIXED_ROWS rows per chunk
    step_s: dict[int, float]  # workers -> seconds per step with the global batch

    @property
    def compute_s(self) -> float:
        """Compute of one global batch on one worker."""
        return self.row_s * self.batch

    def bandwidth(self, latency: float, workers: int) -> float:
        """Bytes per second at which the model's ``2 * nbytes`` costs what moving them cost here: the fixed cost on
        ``workers`` beyond ``latency`` (infinite when there is none to measure)."""
        extra = self.fixed_s[workers] - latency
        return 2 * self.nbytes / extra if extra > 0 else math.inf


def step_model(latency: float, compute: float, nbytes: float, bandwidth: float, machines: int) -> float:
    """Seconds per synchronous step on ``machines``: ``latency + compute / N + 2 * nbytes / bandwidth``.

    ``2 * nbytes / bandwidth``: the params out and the gradient sums back over each machine's link, as a
    bandwidth-optimal broadcast and reduction (pipelined tree or ring) moves them, whatever N.
    """
    return latency + compute / machines + 2 * nbytes / bandwidth


def half_efficiency_machines(latency: float, compute: float, nbytes: float, bandwidth: float) -> int:
    """The most machines at which :func:`step_model` keeps a parallel efficiency ``t(1) / (N t(N))`` of 50%:
    ``N <= 2 + compute / (latency + 2 * nbytes / bandwidth)``."""
    return int(2 + compute / (latency + 2 * nbytes / bandwidth))


def measure_step_costs(
    sizes: tuple[str, ...], batch: int, steps: int, repeats: int, workers: tuple[int, ...]
) -> tuple[dict[int, float], list[StepCosts]]:
    """Time ``sd.distributed.fit`` steps (SGD, float32) of each MLP in ``sizes`` on LocalClusters of ``workers``
    processes (one thread each), with a global batch of ``batch`` rows in PARTS chunks and with FIXED_ROWS rows per
    chunk, and the compute per row of the same generated code in this process. Best of ``repeats`` epochs of
    ``steps`` steps. Returns the latency (workers -> the fixed cost of the LATENCY_SIZE MLP) and the costs."""
    import dask.array as da
    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    import symdiff as sd
    from symdiff import distributed as sdd

    warnings.filterwarnings("ignore", message=".*large graph")  # from_array ships the in-memory data
    chunk = batch // PARTS
    models = {}
    for size in dict.fromkeys((LATENCY_SIZE, *sizes)):
        spec = SIZES[size]
        loss, names = symdiff_mlp(spec, "float32")
        params = {names[k]: v for k, v in init_params(spec).items()}
        ((X, Y),) = make_batches(spec, count=1, rows=steps * batch)
        fn, one = sdd.program(loss, params).function().fn, {"x": X[:chunk], "y": Y[:chunk]}
        with threadpool_limits(1):
            row_s = _best(lambda fn=fn, p=params, one=one: fn(**p, **one), 3 * repeats) / chunk
        nbytes = sum(v.nbytes for v in params.values())
        runs = (FIXED_ROWS, chunk) if size in sizes else (FIXED_ROWS,)
        models[size] = (loss, params, X, Y, runs, StepCosts(spec, batch, nbytes, row_s, {}, {}))
    for n in workers:
        with (
            LocalCluster(n_workers=n, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster,
            Client(cluster) as client,
        ):
            for loss, params, X, Y, runs, costs in models.values():
                for rows in runs:
                    arrays = [da.from_array(X[: steps * PARTS * rows], chunks=(rows, X.shape[1])),
                              da.from_array(Y[: steps * PARTS * rows], chunks=rows)]  # fmt: skip
                    data = dict(zip(("x", "y"), client.persist(arrays)))

                    def epoch(loss=loss, params=params, data=data, client=client, rows=rows) -> None:
                        p = {k: v.copy() for k, v in params.items()}
                        sdd.fit(loss, p, data, sd.optim.SGD(0.01), PARTS * rows, 1, client)

                    (costs.fixed_s if rows == FIXED_ROWS else costs.step_s)[n] = _best(epoch, repeats) / steps
    latency = models[LATENCY_SIZE][-1].fixed_s
    return latency, [models[size][-1] for size in sizes]


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:,.1f}" if seconds < 10 else f"{1000 * seconds:,.0f}"


def _rate(bandwidth: float) -> str:
    return f"{bandwidth / 1e6:,.0f} MB/s" if math.isfinite(bandwidth) else "too fast to measure"


def _workers(n: int) -> str:
    return f"{n} worker{'s' * (n > 1)}"


def scaling_report(
    sizes: tuple[str, ...] = ("medium", "large"),
    batch: int = 4096,
    steps: int = 3,
    repeats: int = 3,
    workers: tuple[int, ...] = (1, 2),
    links: dict[str, float] | None = None,
) -> list[str]:
    """Markdown lines: the step costs of synchronous data-parallel training measured on ``workers`` here (see
    :func:`measure_step_costs`), then :func:`step_model` for N machines on each of ``links`` (name -> bytes per
    second; default :data:`LINKS`) and at the bandwidth measured here, and where each MLP stops scaling (parallel
    efficiency below 50%)."""
    links = LINKS if links is None else links
    latency, measured = measure_step_costs(tuple(sizes), batch, steps, repeats, tuple(workers))
    most = max(workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    tiny = SIZES[LATENCY_SIZE]
    lines = [
        "## Data-parallel scaling on paper (sd.distributed)",
        "",
        f"Measured here ({cores} usable cores, shared by the client, the scheduler and the workers): "
        f"`sd.distributed.fit` (SGD, float32) on a `LocalCluster` of {' and '.join(map(str, workers))} worker "
        f"processes, one thread each; a global batch of {batch} rows in {PARTS} chunks per step (one task each), "
        f"best of {repeats} epochs of {steps} steps. *Fixed cost*: a step with {FIXED_ROWS} rows per chunk "
        "(scheduling, the update on the client, the params out and the gradient sums back). *Latency*: the fixed "
        f"cost of the {tiny.name} MLP {tiny.label.split(',')[0]} (a few KiB): "
        + ", ".join(f"{_ms(latency[n])} ms on {_workers(n)}" for n in workers)
        + ". *Effective bandwidth*: `2·bytes / (fixed cost − latency)`, how fast this implementation moves them "
        "here. *Compute per row*: the same generated loss-and-gradient code in one process, one BLAS thread. "
        "*Model*: fixed cost + compute per row × batch / workers.",
        "",
        "| MLP | params (= gradient sums) | compute per row | "
        + " | ".join(f"fixed cost, {_workers(n)}" for n in workers)
        + f" | effective bandwidth, {_workers(most)} | "
        + " | ".join(f"step, {_workers(n)}: measured (model)" for n in workers)
        + " |",
        "|---" * (4 + 2 * len(workers)) + "|",
    ]
    for m in measured:
        cells = [f"{m.spec.name} {m.spec.label.split(',')[0]}", f"{m.nbytes / 2**20:.2f} MiB each way",
                 f"{1e6 * m.row_s:.2f} µs"]  # fmt: skip
        cells += [f"{_ms(m.fixed_s[n])} ms" for n in workers]
        cells.append(_rate(m.bandwidth(latency[most], most)))
        cells += [f"{_ms(m.step_s[n])} ms ({_ms(m.fixed_s[n] + m.compute_s / n)})" for n in workers]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Model of N machines: `t_step(N) = latency + compute(batch)/N + 2·bytes/bandwidth`, with the latency "
        f"measured on {_workers(most)}, compute(batch) the compute per row × {batch} rows on one machine, bytes the "
        "params (out) and the gradient sums (back), moved by a bandwidth-optimal broadcast and reduction (pipelined "
        "tree or ring: about 2·bytes over each machine's link, whatever N) on "
        + ", ".join(f"{name} ({bw / 1e6:,.0f} MB/s)" for name, bw in links.items())
        + ", or at the effective bandwidth measured here. Parallel efficiency `t(1) / (N·t(N))` stays at 50% or "
        "more up to `N = 2 + compute(batch) / (latency + 2·bytes/bandwidth)`; no N steps faster than "
        "`latency + 2·bytes/bandwidth`.",
        "",
        "| MLP | bandwidth | compute(batch) | 2·bytes/bandwidth | "
        + " | ".join(f"t_step({n})" for n in MACHINES)
        + " | efficiency ≥ 50% up to | fastest step (speed-up) |",
        "|---" * (6 + len(MACHINES)) + "|",
    ]
    verdicts = []
    for m in measured:
        here = m.bandwidth(latency[most], most)
        ends = []
        for name, bw in [*links.items(), (f"here, {_rate(here)}", here)]:
            t = [step_model(latency[most], m.compute_s, m.nbytes, bw, n) for n in MACHINES]
            floor = step_model(latency[most], 0.0, m.nbytes, bw, 1)
            limit = half_efficiency_machines(latency[most], m.compute_s, m.nbytes, bw)
            ends.append(f"N = {limit} " + (f"on {name}" if name in links else "at the bandwidth measured here"))
            cells = [m.spec.name, name, f"{_ms(m.compute_s)} ms", f"{_ms(2 * m.nbytes / bw)} ms"]
            cells += [f"{_ms(x)} ms" for x in t] + [f"N = {limit}", f"{_ms(floor)} ms ({t[0] / floor:.1f}×)"]
            lines.append("| " + " | ".join(cells) + " |")
        verdicts.append(f"the {m.spec.name} MLP beyond {', '.join(ends[:-1])} and {ends[-1]}")
    lines += [
        "",
        f"With a global batch of {batch} rows, synchronous data-parallel training stops scaling (efficiency below "
        f"50%) for {'; for '.join(verdicts)}. A larger global batch moves the limit out in proportion to its "
        "compute. symdiff's client adds up to 8 gradient parts of 16 MiB in all itself (more, or larger, are "
        "tree-reduced on the workers), and the params go out through the scheduler: the effective bandwidth, not "
        "the link's, bounds it today.",
    ]
    return lines


def out_of_core(quick: bool) -> int:
    """One epoch on chunked ``.npy`` files 4x one worker's ``memory_limit``; no worker may be restarted."""
    import dask.array as da
    from distributed import Client, LocalCluster

    import symdiff as sd
    from symdiff import distributed as sdd

    limit = 2**20 * (300 if quick else 400)  # bytes per worker
    features, chunk, batch = 256, 50_000, 8192
    rows = -(-4 * limit // (4 * features * chunk)) * chunk  # float32 rows: at least 4x one worker's memory
    x = sd.Input("x", shape=(None, features), dtype="float32")
    t = sd.Input("t", shape=(None,), dtype="float32")
    w, b = sd.Param("w", (features,), dtype="float32"), sd.Param("b", (), dtype="float32")
    loss = sd.sigmoid_cross_entropy(x @ w + b, t)
    params0 = {"w": np.zeros(features, np.float32), "b": np.zeros((), np.float32)}
    with tempfile.TemporaryDirectory(prefix="symdiff-ooc-") as folder:
        with (
            LocalCluster(n_workers=2, processes=True, threads_per_worker=1, memory_limit=limit, dashboard_address=":0")
            as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            rng = da.random.default_rng(0)
            X = rng.standard_normal((rows, features), chunks=(chunk, features), dtype=np.float32)
            T = ((X @ np.linspace(-1, 1, features, dtype=np.float32)) > 0).astype(np.float32)
            t0 = time.perf_counter()
            da.to_npy_stack(os.path.join(folder, "x"), X)  # written by the workers, chunk by chunk
            da.to_npy_stack(os.path.join(folder, "t"), T)
            written = time.perf_counter() - t0
            data = {k: da.from_npy_stack(os.path.join(folder, k), mmap_mode="r") for k in ("x", "t")}
            pids = client.run(os.getpid)
            p = {k: v.copy() for k, v in params0.items()}
            t0 = time.perf_counter()
            sdd.fit(loss, p, data, sd.optim.Adam(0.01), batch, 1, client, persist=False)
            seconds = time.perf_counter() - t0
            restarted = pids != client.run(os.getpid)
            xs, ts = (np.load(os.path.join(folder, k, "0.npy")) for k in ("x", "t"))
        q = {k: v.copy() for k, v in params0.items()}
        t0 = time.perf_counter()
        sd.fit(loss, q, {"x": xs, "t": ts}, optimizer=sd.optim.Adam(0.01), batch_size=batch, progress=False)
        local = time.perf_counter() - t0
    size = rows * features * 4
    print(f"out of core: {rows:,} rows x {features} float32 = {size / 2**30:.2f} GiB on disk in chunks of {chunk:,}")
    print(f"  2 workers of memory_limit {limit / 2**20:.0f} MiB ({size / limit:.1f}x one); written in {written:.1f} s")
    print(f"  sd.distributed.fit, one epoch, batch {batch}: {rows / seconds:,.0f} rows/s, {seconds:.1f} s")
    print(f"  sd.fit on an in-memory slice of {chunk:,} rows: {chunk / local:,.0f} rows/s")
    print(f"  workers restarted: {'YES' if restarted else 'none'}")
    return 1 if restarted else 0


if __name__ == "__main__":
    sys.exit(main())
