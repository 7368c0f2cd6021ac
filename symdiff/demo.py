"""``symdiff demo``: a 2-64-64-2 ReLU network on two spirals, from formulas to a decision-boundary picture.

The command line checks the folder and calls :func:`run`; the pieces (the network and its gradients in
backpropagation order, the training, the boundary plot) are here too, so a notebook can use them alone.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .autodiff import grad
from .errors import InputError
from .graph import Expr, Input, params
from .modelfile import check_replaceable, make_dir
from .naming import grad_name
from .nn import dense, softmax_cross_entropy
from .optim import Optimizer
from .train import Callback, History, evaluate, fit

__all__ = [
    "DEMO_DIR",
    "DEMO_EPILOG",
    "DEMO_FILES",
    "SpiralNetwork",
    "demo_dir",
    "run",
    "save_boundary",
    "spiral_network",
    "train_spirals",
]

DEMO_DIR = "symdiff-demo"  # the folder the demo writes into by default
DEMO_FILES = ("step.py", "params.npz", "loss.png", "boundary.png")  # what the demo writes (and may rewrite)
# the help of `symdiff demo`: what it does and writes
DEMO_EPILOG = f"""\
examples:
  symdiff demo                 train a ReLU network on two spirals, printing its gradients on the way;
                               the generated code (and the PNG pictures) go into ./{DEMO_DIR}
  symdiff demo --out demo      write them into the folder demo instead

With matplotlib installed (pip install matplotlib) the demo also saves the loss curve and the
decision boundary as PNG files. Running it again replaces the files of the earlier demo; a folder
whose step.py, params.npz, loss.png or boundary.png the demo did not write is refused.
"""


@dataclass
class SpiralNetwork:
    """The demo's model: its loss, logits, params and gradients (``"d<param>"``, output layer first)."""

    loss: Expr
    logits: Expr
    params: list[Expr]
    grads: dict[str, Expr]

    def outputs(self) -> dict[str, Expr]:
        """``loss`` and every param's gradient, in the params' order (what the generated module returns)."""
        return {"loss": self.loss, **{grad_name(p.label): self.grads[grad_name(p.label)] for p in self.params}}

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
    grads = dict(zip((grad_name(p.label) for p in backprop_order), grad(loss, backprop_order)))
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


def demo_dir(out: str | None) -> Path:
    """The demo's folder ``out`` (default ``./symdiff-demo``): created when new; refused when it holds files of
    the demo's names that the demo did not write (``out`` is what ``--out`` gave, named in the messages)."""
    if out and out.endswith(".py") and not os.path.isdir(out):
        raise InputError(f"--out takes a folder (the demo writes step.py and pictures into it), got {out!r}")
    out_dir = make_dir(out or DEMO_DIR)
    check_replaceable(out_dir / "step.py", "--out: the file")
    if not (out_dir / "step.py").exists():  # no earlier demo here: its other files would be someone else's
        taken = [name for name in DEMO_FILES if (out_dir / name).exists()]
        if taken:
            raise InputError(
                f"--out: {str(out_dir / taken[0])!r} exists and was not written by the demo: choose another folder"
            )
    return out_dir


def run(out_dir: Path, epochs: int, *, bar: bool = False, plots: bool = True) -> None:
    """The demo, printed on stdout: the network's formulas and gradients, its generated code (``out_dir/step.py``),
    a gradient check, training (a progress bar over the epochs on stderr with ``bar``), the accuracy, the
    params (``params.npz``) and, with ``plots`` and matplotlib, ``loss.png`` and ``boundary.png``."""
    from .codegen import codegen
    from .datasets import spirals
    from .modelfile import write_text
    from .nn import init_params
    from .optim import Adam
    from .runtime import compile as _compile
    from .testing import check_grad
    from .train import EpochLogger, save_params

    X, Y = spirals(500, seed=0)
    test = spirals(500, seed=1)  # fresh points from the same spirals
    net = spiral_network()
    _print_formulas(net, out_dir)
    outputs = net.outputs()
    source = codegen(outputs, name="step")
    code_path = write_text(out_dir / "step.py", source, "generated module")
    print(f"\n# generated NumPy code ({source.count(chr(10))} lines, imports only numpy) written to {code_path}")
    values = {**init_params(net.loss, seed=0), "x": X[:64], "y": Y[:64]}
    err = check_grad(net.loss, net.params, values)
    start = _compile(outputs, name="step")(**values)
    print(
        f"# loss at a random start: {float(start['loss']):.4f}; largest relative error of the gradients "
        f"against central differences: {err:.1e}"
    )
    optimizer = Adam(lr=0.01)
    print(f"\n# training with {optimizer}, batch 32, {epochs} epochs (the generated training step)")
    state = init_params(net.loss, seed=0)
    logger = EpochLogger(epochs, max(1, epochs // 4), bar)
    try:
        history, test_acc = train_spirals(net, state, (X, Y), test, epochs, optimizer, [logger])
    finally:
        logger.close()
    train_acc = history.history["accuracy"][-1]
    print(
        f"# accuracy {train_acc:.3f} on the training spirals, {test_acc:.3f} on 1000 fresh points "
        f"({history.steps} steps in {history.seconds:.2f} s)"
    )
    save_params(state, out_dir / "params.npz")
    if plots:
        _save_pictures(out_dir, net, state, history, (X, Y), train_acc)


def _print_formulas(net: SpiralNetwork, out_dir: Path) -> None:
    from .modelfile import split_lines

    fwd, back = split_lines(net.loss, net.grads)
    print("symdiff demo: a ReLU network learns two interleaved spirals (1000 points, 2 classes)")
    print(f"# its files (generated code, params, pictures) go into {out_dir}{os.sep} (--out DIR for another folder)\n")
    print("# the model: 2 -> 64 -> 64 -> 2, built with sd.dense; its loss is the softmax cross-entropy")
    print("\n".join(fwd))
    print("\n# its gradients, layer by layer: derived by the chain rule and simplified (nobody wrote these)")
    print("\n".join(back))


def _save_pictures(
    out_dir: Path,
    net: SpiralNetwork,
    state: dict[str, np.ndarray],
    history: History,
    data: tuple[np.ndarray, np.ndarray],
    acc: float,
) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        print("# pip install matplotlib to also get the loss curve and the decision boundary as PNG files")
        return
    curve = out_dir / "loss.png"
    history.plot(str(curve))
    boundary = out_dir / "boundary.png"
    save_boundary(boundary, net.predict(state), data[0], data[1], acc)
    print(f"# loss curve saved to {curve}; decision boundary saved to {boundary}")
