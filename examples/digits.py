"""Real data: classifying handwritten digits with a small MLP.

The 1797 8x8 grey-scale digit images bundled with scikit-learn (``sklearn.datasets.load_digits``; they
ship inside the package, nothing is downloaded) are split into training and test sets, standardized
with the training set's statistics, and classified by a 64-64-10 ReLU network trained with Adam and
the softmax cross-entropy loss. Test accuracy and training time are printed.

scikit-learn is optional for symdiff: without it this example says how to install it and exits.

Run: ``python examples/digits.py [--epochs 20]``
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import symdiff as sd


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Standardized train/test splits of the digits (None when scikit-learn is missing)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        return None
    X, y = load_digits(return_X_y=True)  # X: (1797, 64) pixel intensities 0..16, y: labels 0..9
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    # Standardize with the statistics of the training set only (the test set stays unseen). Some
    # border pixels are always 0 in training: leave those unscaled instead of dividing by zero.
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1.0
    return (X_train - mean) / std, (X_test - mean) / std, y_train.astype(np.int64), y_test.astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set (default 20)")
    parser.add_argument("--hidden", type=int, default=64, help="units of the hidden layer (default 64)")
    args = parser.parse_args()

    splits = load()
    if splits is None:
        print("this example needs scikit-learn for its bundled digits data set: pip install scikit-learn")
        sys.exit(0)
    X_train, X_test, y_train, y_test = splits
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 = 64 pixels, 10 classes")

    x = sd.Input("x", shape=(None, 64))
    y = sd.Input("y", shape=(None,), dtype="int64")
    hidden = sd.dense(x, args.hidden, "hidden", activation="relu")
    logits = sd.dense(hidden, 10, "logits")
    loss = sd.softmax_cross_entropy(logits, y)
    params = sd.init_params(loss, seed=0)
    n_params = sum(p.size for p in params.values())
    print(f"model: 64-{args.hidden}-10 ReLU MLP, {n_params} parameters")

    t0 = time.perf_counter()
    history = sd.fit(
        loss,
        params,
        {"x": X_train, "y": y_train},
        optimizer=sd.optim.Adam(lr=0.003),
        batch_size=32,
        epochs=args.epochs,
        metrics=["accuracy"],
        validation_data={"x": X_test, "y": y_test},
        progress=False,
    )
    seconds = time.perf_counter() - t0
    shown = sorted({*range(0, len(history.epoch), max(1, len(history.epoch) // 5)), len(history.epoch) - 1})
    for epoch in shown:
        h = {k: v[epoch] for k, v in history.history.items()}
        print(
            f"  epoch {history.epoch[epoch]:>3}: loss {h['loss']:.4f}  accuracy {h['accuracy']:.4f}  "
            f"test loss {h['val_loss']:.4f}  test accuracy {h['val_accuracy']:.4f}"
        )

    test = sd.evaluate(loss, params, {"x": X_test, "y": y_test}, metrics=["accuracy"])
    print(f"training accuracy {history.history['accuracy'][-1]:.4f}")
    print(f"test accuracy {test['accuracy']:.4f} (test loss {test['loss']:.4f})")
    print(f"training time {seconds:.2f} s for {history.steps} steps ({len(history.epoch)} epochs)")

    # Which digits are confused with which: predictions from the compiled logits.
    predict = sd.compile(logits)
    pred = np.argmax(predict(x=X_test, **{k: v for k, v in params.items() if k in predict.inputs}), axis=1)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (y_test, pred), 1)
    print("confusion matrix (rows: true digit, columns: predicted):")
    print("     " + " ".join(f"{j:>3}" for j in range(10)))
    for i in range(10):
        print(f"  {i}: " + " ".join(f"{c:>3}" for c in confusion[i]))
    if args.epochs >= 20:
        assert test["accuracy"] >= 0.95, test


if __name__ == "__main__":
    main()
