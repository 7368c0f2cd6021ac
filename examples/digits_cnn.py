"""A convolutional network on the digits: images as (samples, height, width, channels), as the primer draws them.

scikit-learn's 1797 8x8 grey-scale digits (``sklearn.datasets.load_digits``, bundled with the package) become a
batch of images of shape ``(N, 8, 8, 1)``. A small CNN classifies them:

    conv 3x3, 16 filters, 'same' padding, ReLU  ->  2x2 max-pool  ->  flatten  ->  dense 10  ->  softmax cross-entropy

trained with Adam (its rate halving every 200 steps) in batches of 32 on a 75/25 train/test split
(``random_state=0``). The example prints

1. the model and the shapes of its tensors, layer by layer;
2. the gradients, layer by layer, as symdiff derives them: the convolution's filter gradient is a correlation of
   the input with the output gradient (``conv2d_filters``), the pooling gradient routes each window's gradient to
   its maximum, and the flatten is undone by a reshape;
3. the test accuracy (at least 0.98 with the default 12 epochs) and the training time;
4. with ``--png PATH`` and matplotlib, the 16 learned 3x3 filters as a picture.

scikit-learn is optional for symdiff: without it this example says how to install it and exits.

Run: ``python examples/digits_cnn.py [--epochs 12] [--png filters.png]`` (about a second of training).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import numpy as np

import symdiff as sd


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The digits as (N, 8, 8, 1) float32 images scaled to [0, 1], split 75/25 (None without scikit-learn)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        return None
    X, y = load_digits(return_X_y=True)  # X: (1797, 64) intensities 0..16
    images = (X / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(images, y, test_size=0.25, random_state=0)
    return X_train, X_test, y_train.astype(np.int64), y_test.astype(np.int64)


def model() -> tuple[sd.Expr, sd.Expr]:
    """The CNN's loss and its logits."""
    x = sd.Input("x", shape=(None, 8, 8, 1), dtype="float32")
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.conv(x, 16, 3, "conv", padding="same", activation="relu")  # (N, 8, 8, 16)
    h = sd.max_pool2d(h, 2).named("pool")  # (N, 4, 4, 16)
    h = sd.reshape(h, (-1, 4 * 4 * 16)).named("flat")  # (N, 256)
    logits = sd.dense(h, 10, "out")
    return sd.softmax_cross_entropy(logits, y), logits


def plot_filters(filters: np.ndarray, path: str) -> None:
    """The learned filters, one 3x3 grey image each, in a 2x8 grid."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.4))
    for k, ax in enumerate(fig.subplots(2, 8).ravel()):
        ax.imshow(filters[:, :, 0, k], cmap="gray")
        ax.set_title(f"filter {k}", fontsize=7)
        ax.axis("off")
    fig.suptitle("learned 3x3 filters of the first convolution")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="passes over the training set (default 12)")
    parser.add_argument("--png", metavar="PATH", help="also draw the learned filters to PATH (needs matplotlib)")
    args = parser.parse_args()

    splits = load()
    if splits is None:
        print("this example needs scikit-learn for its bundled digits data set: pip install scikit-learn")
        sys.exit(0)
    X_train, X_test, y_train, y_test = splits
    loss, logits = model()
    params = {k: v.astype(np.float32) for k, v in sd.init_params(loss, seed=0).items()}
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of shape {X_train.shape[1:]}")
    print("1. the model")
    print(sd.to_text(loss))
    print(
        f"   {sum(p.size for p in params.values())} parameters: "
        + ", ".join(f"{k} {v.shape}" for k, v in params.items())
    )

    print("\n2. the gradients, layer by layer (derived by the chain rule and simplified)")
    print(sd.to_text(sd.grad(loss, sd.params(loss))))

    t0 = time.perf_counter()
    history = sd.fit(
        loss,
        params,
        {"x": X_train, "y": y_train},
        optimizer=sd.optim.Adam(lr=sd.optim.exponential_decay(0.01, rate=0.5, every=200)),
        batch_size=32,
        epochs=args.epochs,
        metrics=["accuracy"],
        progress=False,
    )
    seconds = time.perf_counter() - t0
    test = sd.evaluate(loss, params, {"x": X_test, "y": y_test}, metrics=["accuracy"])
    print(
        f"\n3. training accuracy {history.history['accuracy'][-1]:.4f}, test accuracy {test['accuracy']:.4f} "
        f"(test loss {test['loss']:.4f}); {seconds:.2f} s for {history.steps} steps ({args.epochs} epochs)"
    )
    if args.png and importlib.util.find_spec("matplotlib") is not None:
        plot_filters(params["conv_W"], args.png)
        print(f"\n4. the learned filters: {args.png}")
    if args.epochs >= 12:
        assert test["accuracy"] >= 0.98, test


if __name__ == "__main__":
    main()
