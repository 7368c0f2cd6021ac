"""The pieces of ``symdiff demo``: a 2-64-64-2 ReLU network on two spirals, and its decision-boundary picture.

The command line prints and writes; this module builds the model, derives its gradients layer by layer,
trains it and draws what it learned, so a notebook can do the same without the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .autodiff import grad
from .graph import Expr, Input, params
from .nn import dense, softmax_cross_entropy
from .optim import Optimizer
from .train import Callback, History, evaluate, fit

__all__ = ["DEMO_DIR", "DEMO_FILES", "SpiralNetwork", "save_boundary", "spiral_network", "train_spirals"]

DEMO_DIR = "symdiff-demo"  # the folder the demo writes into by default
DEMO_FILES = ("step.py", "params.npz", "loss.png", "boundary.png")  # what the demo writes (and may rewrite)


@dataclass
class SpiralNetwork:
    """The demo's model: its loss, logits, params and gradients (``"d<param>"``, output layer first)."""

    loss: Expr
    logits: Expr
    params: list[Expr]
    grads: dict[str, Expr]

    def outputs(self) -> dict[str, Expr]:
        """``loss`` and every param's gradient, in the params' order (what the generated module returns)."""
        return {"loss": self.loss, **{f"d{p.label}": self.grads[f"d{p.label}"] for p in self.params}}

    def predict(self, state: dict[str, np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        """The trained network's probability of class 1 at points ``(n, 2)``, with the params in ``state``."""
        from .functions import softmax
        from .runtime import compile as _compile

        predict_fn = _compile({"p": softmax(self.logits)}, name="predict")
        weights = {k: v for k, v in state.items() if k in predict_fn.inputs}

        def predict(points: np.ndarray) -> np.ndarray:
            return predict_fn(**weights, x=points)["p"][:, 1]

        return predict


def spiral_network() -> SpiralNetwork:
    """A 2 -> 64 -> 64 -> 2 ReLU network (``sd.dense``) with the softmax cross-entropy loss, and its gradients
    derived in backpropagation order (the output layer first)."""
    x = Input("x", shape=(None, 2))
    y = Input("y", shape=(None,), dtype="int64")
    h1 = dense(x, 64, "h1", activation="relu")
    h2 = dense(h1, 64, "h2", activation="relu")
    logits = dense(h2, 2, "out")
    loss = softmax_cross_entropy(logits, y)
    ps = params(loss)
    backprop_order = [p for layer in ("out", "h2", "h1") for p in ps if p.label.startswith(layer + "_")]
    backprop_order += [p for p in ps if p not in backprop_order]
    grads = dict(zip((f"d{p.label}" for p in backprop_order), grad(loss, backprop_order)))
    return SpiralNetwork(loss, logits, ps, grads)


def train_spirals(
    net: SpiralNetwork,
    state: dict[str, np.ndarray],
    data: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    epochs: int,
    optimizer: Optimizer,
    callbacks: Iterable[Callback] = (),
) -> tuple[History, float]:
    """Train ``state`` in place (batch 32, seed 0, quietly); returns the history and the accuracy on the
    ``test`` points."""
    history = fit(
        net.loss,
        state,
        {"x": data[0], "y": data[1]},
        optimizer=optimizer,
        batch_size=32,
        epochs=epochs,
        seed=0,
        metrics=["accuracy"],
        callbacks=list(callbacks),
        progress=False,
    )
    test_acc = evaluate(net.loss, state, {"x": test[0], "y": test[1]}, metrics=["accuracy"])["accuracy"]
    return history, test_acc


def save_boundary(
    path: str | Path,
    predict: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray,
    labels: np.ndarray,
    acc: float,
) -> Any:
    """Save the decision boundary of ``predict`` (the probability of class 1) over the points; returns the figure.

    Needs matplotlib. The background shades P(class 1) over ``[-1.15, 1.15]^2``, a black line marks 0.5,
    and the points are drawn in their class's colour; ``acc`` goes into the title.
    """
    from matplotlib.figure import Figure

    lim = 1.15
    grid = np.linspace(-lim, lim, 241)
    gx, gy = np.meshgrid(grid, grid)
    prob = predict(np.c_[gx.ravel(), gy.ravel()]).reshape(gx.shape)
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
    ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35)
    ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.2)
    for label, color in ((0, "#1d4ed8"), (1, "#b91c1c")):
        pts = points[labels == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=7, c=color, label=f"class {label}")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_0$ (first input feature)")
    ax.set_ylabel("$x_1$ (second input feature)")
    ax.legend(loc="upper right", fontsize=8, title="P(class 1) = 0.5: black line", title_fontsize=7)
    ax.set_title(f"decision boundary of the 2-64-64-2 ReLU network (accuracy {acc:.3f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig
