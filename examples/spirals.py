"""Uncrumpling the paper ball: two interleaved spirals, a linear model versus a ReLU network.

The primer pictures a classifier as someone uncrumpling two sheets of paper crumpled together into a
ball: each layer is a simple geometric transformation, and enough of them make the classes separable.
Two interleaved spirals (1000 points, two turns each) are such a ball. Logistic regression (a single
dense layer: one straight cut through the plane) cannot separate them and stays near chance level,
while a 2-64-64-2 ReLU network built with ``sd.dense`` untangles them almost perfectly.

Run: ``python examples/spirals.py [--epochs 40]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import symdiff as sd


def two_spirals(n: int, turns: float = 2.0, noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (x, y) in about [-1, 1]^2 on two interleaved spiral arms, labels 0 and 1."""
    rng = np.random.default_rng(seed)
    m = n // 2
    theta = np.sqrt(rng.uniform(0.0, 1.0, m)) * turns * 2 * np.pi  # denser sampling far from the centre
    arm = np.c_[theta * np.cos(theta), theta * np.sin(theta)]
    X = np.r_[arm + noise * rng.normal(size=(m, 2)), -arm + noise * rng.normal(size=(m, 2))]
    y = np.r_[np.zeros(m, dtype=np.int64), np.ones(m, dtype=np.int64)]
    return X / (turns * 2 * np.pi), y


def train(name: str, loss: sd.Expr, data: dict, test: dict, epochs: int) -> dict[str, float]:
    """Fit ``loss`` with Adam from a seeded initialization; return train/test accuracy and seconds."""
    params = sd.init_params(loss, seed=0)
    t0 = time.perf_counter()
    history = sd.fit(
        loss,
        params,
        data,
        optimizer=sd.optim.Adam(lr=0.01),
        batch_size=32,
        epochs=epochs,
        metrics=["accuracy"],
        progress=False,
    )
    seconds = time.perf_counter() - t0
    result = {
        "loss": history.history["loss"][-1],
        "train": history.history["accuracy"][-1],
        "test": sd.evaluate(loss, params, test, metrics=["accuracy"])["accuracy"],
        "seconds": seconds,
    }
    print(
        f"{name}: training accuracy {result['train']:.3f}, test accuracy {result['test']:.3f}, "
        f"final loss {result['loss']:.4f} ({epochs} epochs, {seconds:.2f} s)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="passes over the data (default 40)")
    args = parser.parse_args()

    X, Y = two_spirals(1000, seed=0)
    Xt, Yt = two_spirals(1000, seed=1)  # fresh points from the same spirals, to test on
    data, test = {"x": X, "y": Y}, {"x": Xt, "y": Yt}

    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")

    # 1. Logistic regression: the logits are an affine function of the point, so the decision
    #    boundary is a straight line. No line separates two spirals.
    linear = sd.softmax_cross_entropy(sd.dense(x, 2, "out"), y)

    # 2. A multilayer perceptron: two ReLU layers of 64 units, then the logits.
    h1 = sd.dense(x, 64, "h1", activation="relu")
    h2 = sd.dense(h1, 64, "h2", activation="relu")
    mlp = sd.softmax_cross_entropy(sd.dense(h2, 2, "out"), y)
    print("the network and its loss:")
    print(mlp)
    # Backpropagation, layer by layer: the gradient with respect to the input x runs through every layer.
    print("\nbackpropagation through it (the gradient with respect to the input x):")
    print(sd.grad(mlp, x))
    print()

    lin = train("logistic regression (one dense layer)", linear, data, test, args.epochs)
    net = train("ReLU MLP 2-64-64-2", mlp, data, test, args.epochs)

    print("\n| model | training accuracy | test accuracy | seconds |")
    print("|---|---:|---:|---:|")
    print(f"| logistic regression | {lin['train']:.3f} | {lin['test']:.3f} | {lin['seconds']:.2f} |")
    print(f"| ReLU MLP 2-64-64-2 | {net['train']:.3f} | {net['test']:.3f} | {net['seconds']:.2f} |")
    if args.epochs >= 40:
        assert lin["train"] < 0.75, lin
        assert net["train"] >= 0.97, net
        print("\nthe straight cut fails; the stacked ReLU layers uncrumple the spirals")


if __name__ == "__main__":
    main()
