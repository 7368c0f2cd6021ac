"""Optimizers compared: SGD, momentum, Nesterov, Adagrad, RMSprop and Adam on the same network.

Every optimizer trains the same 2-32-32-2 ReLU network on the two-spirals problem (see spirals.py)
from the same initial weights, with the same minibatches in the same order; only the update rule
differs. symdiff prints each rule as a formula and generates it into the NumPy training step. The
learning rates are common starting points, not tuned per optimizer. A last run adds a learning-rate
schedule (Adam with exponential decay).

Prints the final losses and accuracies as a markdown table. With matplotlib installed (optional:
``pip install matplotlib``) it also saves the loss curves as a PNG, by default into the system's
temporary directory (``--out`` chooses the path); without matplotlib it says so and carries on.

Run: ``python examples/optimizers.py [--epochs 30] [--out curves.png]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import symdiff as sd
from symdiff import optim


def two_spirals(n: int, turns: float = 2.0, noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on two interleaved spiral arms (as in spirals.py), labels 0 and 1."""
    rng = np.random.default_rng(seed)
    m = n // 2
    theta = np.sqrt(rng.uniform(0.0, 1.0, m)) * turns * 2 * np.pi
    arm = np.c_[theta * np.cos(theta), theta * np.sin(theta)]
    X = np.r_[arm + noise * rng.normal(size=(m, 2)), -arm + noise * rng.normal(size=(m, 2))]
    y = np.r_[np.zeros(m, dtype=np.int64), np.ones(m, dtype=np.int64)]
    return X / (turns * 2 * np.pi), y


OPTIMIZERS = {
    "SGD": optim.SGD(lr=0.1),
    "momentum": optim.SGD(lr=0.05, momentum=0.9),
    "Nesterov": optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "Adagrad": optim.Adagrad(lr=0.1),
    "RMSprop": optim.RMSprop(lr=0.01),
    "Adam": optim.Adam(lr=0.01),
    # A schedule is any function of the step number t; this one halves the rate every 500 steps.
    "Adam + decay": optim.Adam(lr=optim.exponential_decay(0.01, rate=0.5, every=500)),
}


def save_plot(histories: dict[str, sd.History], path: str) -> bool:
    """Loss curves of all runs in one PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, h in histories.items():
        ax.plot(h.epoch, h.history["loss"], label=name, linestyle="--" if "decay" in name else "-")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (softmax cross-entropy)")
    ax.set_title("Optimizers on the two-spirals problem (2-32-32-2 ReLU MLP)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="passes over the data per optimizer (default 30)")
    parser.add_argument(
        "--out",
        default=os.path.join(tempfile.gettempdir(), "symdiff_optimizers.png"),
        help="where to save the loss curves (default: symdiff_optimizers.png in the temporary directory)",
    )
    args = parser.parse_args()

    X, Y = two_spirals(1000)
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h1 = sd.dense(x, 32, "h1", activation="relu")
    h2 = sd.dense(h1, 32, "h2", activation="relu")
    loss = sd.softmax_cross_entropy(sd.dense(h2, 2, "out"), y)

    print("update rules (p: a parameter, g: its gradient, lr: the learning rate, t: the step number):")
    for name, opt in OPTIMIZERS.items():
        rule = opt.formula().replace("\n", " ; ")
        print(f"  {name:<13} {rule}")
    print()

    histories: dict[str, sd.History] = {}
    rows = []
    for name, opt in OPTIMIZERS.items():
        params = sd.init_params(loss, seed=0)  # the same start for everyone
        t0 = time.perf_counter()
        h = sd.fit(
            loss,
            params,
            {"x": X, "y": Y},
            optimizer=opt,
            batch_size=32,
            epochs=args.epochs,
            seed=0,  # the same minibatches for everyone
            metrics=["accuracy"],
            progress=False,
        )
        seconds = time.perf_counter() - t0
        histories[name] = h
        rows.append((name, repr(opt), h.history["loss"][-1], h.history["accuracy"][-1], seconds))

    print(f"after {args.epochs} epochs of 32-sample minibatches ({histories['SGD'].steps} steps):\n")
    print("| optimizer | settings | final loss | training accuracy | seconds |")
    print("|---|---|---:|---:|---:|")
    for name, settings, final, acc, seconds in rows:
        print(f"| {name} | `{settings}` | {final:.4f} | {acc:.3f} | {seconds:.2f} |")
    best = min(rows, key=lambda r: r[2])
    print(f"\nlowest final loss: {best[0]} ({best[2]:.4f})")

    if save_plot(histories, args.out):
        print(f"loss curves saved to {args.out}")
    else:
        print("matplotlib is not installed, so no plot was saved (pip install matplotlib)")


if __name__ == "__main__":
    main()
