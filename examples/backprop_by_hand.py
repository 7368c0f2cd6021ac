"""Backpropagation by hand: the chain rule through a two-layer network, step by step, as a textbook writes it.

The primer teaches backpropagation by hand: start from dL/dL = 1 and walk the graph backwards from the loss,
multiplying at each node by its local derivative (summing where paths meet). ``sd.explain`` shows exactly the
steps that ``sd.grad`` takes, for the primer's two-layer ReLU network on the two spirals
(``sd.datasets.spirals``):

1. the derivation of dL/dh1_W (the first layer's weights), one numbered line per node: the rule applied (the
   op's VJP, and which operand), the local formula in terms of the previous steps' adjoints, and its shape;
2. dL/dh1_b, where the bias's broadcast over the batch is undone by a sum (named as such);
3. the same derivation in LaTeX (an ``align`` environment, as on the board; a notebook renders it, and the
   HTML table, by itself);
4. the numbers flowing backwards: every step's value on a batch of 8 spiral points with freshly initialized
   params, recomputed here by hand in plain NumPy (the primer's way) and checked against central differences;
5. the loss unfused (``fuse=False``): the softmax cross-entropy's own steps, and how they simplify to its closed
   form ``(softmax(out) - onehot(y)) / n``;
6. with ``--png PATH`` and matplotlib installed, the derivation drawn as on the board (``Derivation.plot``,
   mathtext).

The command line does the same: ``symdiff explain "mean((x @ W + b - y)**2)" --wrt W --shape x=None,3
--shape W=3,1 --shape b=1 --shape y=None,1`` and ``symdiff show MODEL.py --explain W``.

Run: ``python examples/backprop_by_hand.py [--png chain.png]`` (about a second).
"""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np

import symdiff as sd


def by_hand(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The forward pass and the backward pass of the network in plain NumPy, one line per step, as by hand."""
    x, y, W1, b1, W2, b2 = (values[k] for k in ("x", "y", "h1_W", "h1_b", "out_W", "out_b"))
    h1_z = x @ W1 + b1
    h1 = np.maximum(h1_z, 0)
    out = h1 @ W2 + b2
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dout = (p - np.eye(2)[y]) / len(x)  # softmax cross-entropy: the closed form
    dh1 = dout @ W2.T  # matmul, left operand
    dh1_z = dh1 * (h1_z > 0)  # relu
    dh1_W = x.T @ dh1_z  # matmul, right operand
    return {"out": dout, "h1": dh1, "h1_z": dh1_z, "h1_W": dh1_W}


def main(png: str | None = None) -> None:
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h1 = sd.dense(x, 16, "h1", activation="relu")
    loss = sd.softmax_cross_entropy(sd.dense(h1, 2, "out"), y)
    W1, b1, W2, _ = sd.params(loss)

    print("the network: a 2-16-2 ReLU network and its loss")
    print(loss)

    print("\n1. backpropagation down to the first layer's weights")
    print(sd.explain(loss, W1))

    print("\n2. down to the first layer's bias: its broadcast over the batch is undone by a sum")
    print(sd.explain(loss, b1))

    print("\n3. the same derivation in LaTeX")
    print(sd.explain(loss, W1).latex())

    print("\n4. with numbers: a batch of 8 spiral points, params from sd.init_params(loss, seed=0)")
    X, Y = sd.datasets.spirals(4, seed=0)
    values = {**sd.init_params(loss, seed=0), "x": X, "y": Y}
    derivation = sd.explain(loss, W1, numeric=values)
    print(derivation)
    steps = {s.name: s.value for s in derivation}
    for name, expected in by_hand(values).items():
        assert np.allclose(steps[name], expected), name
    print(f"by hand in NumPy: d{', d'.join(by_hand(values))} agree with the steps' values")
    assert derivation.check is not None and derivation.check < 1e-6, derivation.check

    print("\n5. the loss unfused: softmax cross-entropy's own steps, down to the output layer's weights")
    print(sd.explain(loss, W2, fuse=False))

    if png is not None and importlib.util.find_spec("matplotlib") is not None:
        sd.explain(loss, W1).plot(png)
        print(f"\n6. the derivation drawn as on the board: {png}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", metavar="PATH", help="also draw the derivation to PATH (needs matplotlib)")
    main(parser.parse_args().png)
