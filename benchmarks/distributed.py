"""Data-parallel symdiff on Dask against one process: ``python -m benchmarks.distributed [--quick]``.

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
Needs the ``dask`` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

from .models import SIZES, init_params, make_batches
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
    args = parser.parse_args(argv)
    if args.out_of_core:
        return out_of_core(args.quick)

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
