"""Data-parallel training on Dask: a symbolic logistic regression (full-batch L-BFGS) and a small MLP (minibatch
Adam) on millions of synthetic rows held as a dask array, which the client never loads.

    pip install "symdiff[dask]"          # dask-ml too, to compare with its LogisticRegression
    python examples/distributed_logistic.py [--rows 5000000] [--workers 2] [--quick]

The rows are drawn on the workers (``dask.array.random``), chunk by chunk; ``sd.distributed`` evaluates the generated
NumPy code of the loss and its gradients on each chunk where it lives and adds the sums. Point the same code at a
real cluster with ``Client("scheduler-address:8786")`` instead of the ``LocalCluster``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

FEATURES = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one epoch (a smoke run)")
    args = parser.parse_args(argv)
    try:
        import dask.array as da
        from distributed import Client, LocalCluster
    except ImportError:
        print('this example needs Dask: pip install "symdiff[dask]"')
        return 0
    import scipy.optimize

    import symdiff as sd

    rows = 100_000 if args.quick else args.rows
    chunk = max(rows // 16, 1)
    truth = np.linspace(-2.0, 2.0, FEATURES)
    rng = da.random.default_rng(0)
    X = rng.standard_normal((rows, FEATURES), chunks=(chunk, FEATURES))
    T = (X @ truth + 0.3 + rng.standard_normal(rows, chunks=chunk) > 0).astype("float64")
    test_rng = np.random.default_rng(1)
    Xt = test_rng.standard_normal((100_000, FEATURES))
    Tt = (Xt @ truth + 0.3 + test_rng.standard_normal(100_000) > 0).astype("float64")

    x, t = sd.Input("x", shape=(None, FEATURES)), sd.Input("t", shape=(None,))
    w, b = sd.Param("w", (FEATURES,)), sd.Param("b", ())
    logreg = sd.sigmoid_cross_entropy(x @ w + b, t) + 1e-4 * sd.sum(w**2)
    h = sd.dense(x, 32, "h", activation="relu")
    out = sd.dense(h, 1, "out")
    mlp = sd.sigmoid_cross_entropy(out[:, 0], t)
    predict = sd.compile(out[:, 0])

    print(f"{rows:,} rows x {FEATURES} features in {X.numblocks[0]} chunks, on {args.workers} worker processes")
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        data = {"x": X, "t": T}
        data = dict(zip(data, client.persist(list(data.values()))))  # drawn once, on the workers

        t0 = time.perf_counter()
        zeros = {"w": np.zeros(FEATURES), "b": np.array(0.0)}
        fun, x0, unflatten = sd.distributed.objective(logreg, zeros, data, client)
        found = unflatten(scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B").x)
        seconds = time.perf_counter() - t0
        accuracy = np.mean(((Xt @ found["w"] + found["b"]) > 0) == Tt)
        print(f"symdiff logistic regression (L-BFGS): test accuracy {accuracy:.4f}, {seconds:.1f} s")

        params = sd.init_params(mlp, seed=0)
        t0 = time.perf_counter()
        epochs = 1 if args.quick else 2
        hist = sd.distributed.fit(mlp, params, data, sd.optim.Adam(0.01), 8192, epochs, client, seed=0)
        seconds = time.perf_counter() - t0
        accuracy = np.mean((predict(x=Xt, **params) > 0) == Tt)
        print(
            f"symdiff MLP {FEATURES}-32-1 (Adam, batch 8192, {epochs} epochs): loss {hist.history['loss'][-1]:.4f}, "
            f"test accuracy {accuracy:.4f}, {seconds:.1f} s"
        )

        try:
            from dask_ml.linear_model import LogisticRegression
        except ImportError:
            print("dask-ml is not installed (pip install dask-ml): no comparison with its LogisticRegression")
            return 0
        t0 = time.perf_counter()
        model = LogisticRegression(solver="lbfgs").fit(data["x"], data["t"])
        seconds = time.perf_counter() - t0
        accuracy = np.mean(model.predict(Xt).astype(float) == Tt)
        print(f"dask-ml LogisticRegression (lbfgs): test accuracy {accuracy:.4f}, {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
