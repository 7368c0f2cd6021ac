"""Linear regression by gradient descent, with the gradient derived and printed by symdiff.

Synthetic data ``y = X @ w_true + b_true + noise`` (500 samples, 3 features). The model ``x @ w + b``
and its mean squared error are symbolic expressions; symdiff derives the gradient formulas
(``dw = x.T @ (2 * (x @ w + b - y) / n)``, the textbook normal-equation gradient), generates the
training step and ``sd.fit`` runs minibatch SGD. The recovered coefficients are compared with the
true ones and with the exact least-squares solution.

Run: ``python examples/linear_regression.py [--epochs 30]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import symdiff as sd


def make_data(n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Features X (n, 3), targets y (n,), and the true weights and bias that produced them."""
    rng = np.random.default_rng(seed)
    w_true, b_true = np.array([2.0, -3.0, 0.5]), 1.5
    X = rng.normal(size=(n, 3))
    y = X @ w_true + b_true + 0.1 * rng.normal(size=n)
    return X, y, w_true, b_true


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="passes over the data (default 30)")
    parser.add_argument("--show-code", action="store_true", help="print the generated NumPy training step")
    args = parser.parse_args()
    X, y, w_true, b_true = make_data()
    n, d = X.shape

    # The model, symbolically: a batch of rows x, a weight vector w and a scalar bias b.
    x = sd.Input("x", shape=(None, d))
    target = sd.Input("y", shape=(None,))
    w = sd.Param("w", shape=(d,))
    b = sd.Param("b")  # shape (): a scalar
    loss = sd.mse(x @ w + b, target)
    print("loss:")
    print(loss)
    # Nobody wrote these: the chain rule, simplified to closed form.
    dw, db = sd.grad(loss, [w, b])
    print("\ngradient with respect to w:")
    print(dw)
    print("\ngradient with respect to b:")
    print(db)

    # Train: minibatch SGD through one generated NumPy step (forward, backward, update).
    # Linear regression is convex, so starting from zero is fine.
    params = {"w": np.zeros(d), "b": np.zeros(())}
    opt = sd.optim.SGD(lr=0.05)
    if args.show_code:
        print("\nthe generated training step:\n" + sd.codegen_step(loss, params, opt))
    t0 = time.perf_counter()
    history = sd.fit(loss, params, {"x": X, "y": y}, optimizer=opt, batch_size=32, epochs=args.epochs, progress=False)
    seconds = time.perf_counter() - t0
    final = sd.evaluate(loss, params, {"x": X, "y": y})["loss"]
    print(
        f"\n{opt}, batch 32, {len(history.epoch)} epochs in {seconds:.2f} s: "
        f"training MSE {history.history['loss'][0]:.4f} (epoch 1) -> {final:.4f} (noise variance 0.01)"
    )

    # The exact least-squares answer for comparison (X with a column of ones for the bias).
    exact = np.linalg.lstsq(np.c_[X, np.ones(n)], y, rcond=None)[0]
    print("\n| coefficient | true | fitted by SGD | least squares |")
    print("|---|---:|---:|---:|")
    for i in range(d):
        print(f"| w[{i}] | {w_true[i]:+.4f} | {params['w'][i]:+.4f} | {exact[i]:+.4f} |")
    print(f"| b | {b_true:+.4f} | {float(params['b']):+.4f} | {exact[d]:+.4f} |")

    if args.epochs >= 10:
        np.testing.assert_allclose(params["w"], w_true, atol=0.05)
        np.testing.assert_allclose(params["b"], b_true, atol=0.05)
        np.testing.assert_allclose(np.r_[params["w"], params["b"]], exact, atol=0.02)
        print("\nrecovered coefficients are within 0.05 of the true ones")


if __name__ == "__main__":
    main()
