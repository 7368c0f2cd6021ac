"""Data-parallel training on Dask: a symbolic logistic regression (full-batch L-BFGS) and a small MLP (minibatch
Adam) on millions of synthetic rows held as a dask array, which the client never loads, beside dask-ml.

    pip install "symdiff[dask]"          # or "symdiff[dask-ml]", to compare with dask-ml's LogisticRegression
    python examples/distributed_logistic.py [--rows 5000000] [--workers 2] [--quick]

The rows are drawn on the workers (``dask.array.random``), chunk by chunk; ``sd.distributed`` evaluates the generated
NumPy code of the loss and its gradients on each chunk where it lives and adds the sums. Point the same code at a
real cluster with ``Client("scheduler-address:8786")`` instead of the ``LocalCluster``.

With dask-ml installed, its ``LogisticRegression`` (dask-glm's L-BFGS, the same SciPy routine) fits the same data on
the same cluster, for the same objective: the mean log-loss plus ``ALPHA * |w, b|^2`` is dask-glm's summed log-loss
plus ``|beta|^2 / (2C)`` (its L2 term covers the intercept too) divided by the rows, so ``C = 1 / (2 * ALPHA * rows)``;
its inputs are not normalized (``normalize=False``, as ours are not), it stops at the same projected-gradient
tolerance (its ``tol`` is on the sum, ``GTOL * rows``) and after at most the same iterations.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

FEATURES = 20
ALPHA = 1e-4  # the L2 term of the logistic regression, on the mean loss
GTOL = 1e-5  # L-BFGS stops when every component of the (mean loss's) projected gradient is below this
MAX_ITER = 100


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
    logreg = sd.sigmoid_cross_entropy(x @ w + b, t) + ALPHA * (sd.sum(w**2) + b**2)
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
        options = {"gtol": GTOL, "maxiter": MAX_ITER}
        result = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", options=options)
        ours = time.perf_counter() - t0
        found = unflatten(result.x)
        accuracy = np.mean(((Xt @ found["w"] + found["b"]) > 0) == Tt)
        print(
            f"symdiff logistic regression (L-BFGS, {result.nit} iterations): test accuracy {accuracy:.4f}, "
            f"objective {result.fun:.6f}, {ours:.1f} s"
        )
        compare_dask_ml(data, rows, (Xt, Tt), fun, result.x, ours)

        params = sd.init_params(mlp, seed=0)
        t0 = time.perf_counter()
        epochs = 1 if args.quick else 2
        hist = sd.distributed.fit(
            mlp, params, data, sd.optim.Adam(0.01), 8192, epochs, client, seed=0, metrics=["accuracy"]
        )
        seconds = time.perf_counter() - t0
        accuracy = np.mean((predict(x=Xt, **params) > 0) == Tt)
        print(
            f"symdiff MLP {FEATURES}-32-1 (Adam, batch 8192, {epochs} epochs): loss {hist.history['loss'][-1]:.4f}, "
            f"training accuracy {hist.history['accuracy'][-1]:.4f}, test accuracy {accuracy:.4f}, {seconds:.1f} s"
        )
    return 0


def compare_dask_ml(data, rows: int, test, fun, x, ours: float) -> None:
    """Fit dask-ml's LogisticRegression to the same objective on the same data and cluster; print it beside ours.

    ``test``: the held-out ``(inputs, targets)``; ``fun``, ``x``, ``ours``: our objective, optimum and seconds.
    """
    try:
        from dask_ml.linear_model import LogisticRegression
    except ImportError:
        print('dask-ml is not installed (pip install "symdiff[dask-ml]"): no comparison with its LogisticRegression')
        return
    import warnings

    warnings.filterwarnings("ignore", message=".*fuse_ave_width", category=FutureWarning)  # dask-glm's old config key
    model = LogisticRegression(
        solver="lbfgs",
        C=1 / (2 * ALPHA * rows),
        tol=GTOL * rows,
        max_iter=MAX_ITER,
        solver_kwargs={"normalize": False},
    )
    t0 = time.perf_counter()
    model.fit(data["x"], data["t"])
    theirs = time.perf_counter() - t0
    beta = np.append(model.coef_, model.intercept_)
    accuracy = np.mean(model.predict(test[0]).astype(float) == test[1])
    print(
        f"dask-ml LogisticRegression (lbfgs, C={model.C:.3g}): test accuracy {accuracy:.4f}, "
        f"objective {fun(beta)[0]:.6f}, {theirs:.1f} s"
    )
    print(
        f"  same objective: the optima differ by at most {np.max(np.abs(beta - x)):.1e}; "
        f"dask-ml's wall time / symdiff's: {theirs / ours:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
