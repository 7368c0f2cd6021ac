"""Cases shared by several test files: index expressions, tensordot shapes, the 2-layer MLP."""

import numpy as np

import symdiff as sd

TENSORDOT_CASES = [
    ((3, 4, 5), (4, 5, 6), 2),
    ((3, 4), (4, 5), 1),
    ((3, 4), (5, 6), 0),
    ((2, 3), (2, 3), 2),
    ((3, 4, 5), (5, 4, 6), ([1, 2], [1, 0])),
    ((3, 4, 5), (6, 3), ([0], [1])),
    ((3, 4, 5), (6, 3), (0, 1)),
    ((3, 4, 5), (5, 2), ([-1], [0])),
    ((2, 3, 4), (4, 3, 2), ([0, 1, 2], [2, 1, 0])),
]

# Basic indexing cases used by both the shape tests and the NumPy-semantics tests.
INDEX_CASES = [
    np.s_[0:2],
    np.s_[:, 1:, 3:],
    np.s_[:, 1:-1, :],
    np.s_[0:2, 0:1, 0:4],
    np.s_[-1],
    np.s_[-3, -1, -5],
    np.s_[1, :, 2],
    np.s_[::2],
    np.s_[:, ::-1],
    np.s_[::-2, 3:0:-1],
    np.s_[:, :, -1:-6:-2],
    np.s_[5:1:-1],
    np.s_[-100:100],
    np.s_[2:2],
    np.s_[None],
    np.s_[:, None, 1],
    np.s_[np.newaxis, ..., np.newaxis],
    np.s_[..., 0],
    np.s_[1, ...],
    np.s_[..., 1:3, None],
    np.s_[0, ..., 2],
    np.s_[np.int64(1)],
]


def mlp():
    """The 2-layer ReLU MLP of the issue (x: (None, 64), labels y, hidden 32, 10 classes): (loss, params)."""
    x = sd.Input("x", shape=(None, 64))
    y = sd.Input("y", shape=(None,), dtype="int64")
    W1, b1 = sd.Param("W1", shape=(64, 32)), sd.Param("b1", shape=(32,))
    W2, b2 = sd.Param("W2", shape=(32, 10)), sd.Param("b2", shape=(10,))
    z1 = (x @ W1 + b1).named("z1")
    h1 = sd.relu(z1).named("h1")
    z2 = (h1 @ W2 + b2).named("z2")
    return sd.softmax_cross_entropy(z2, y), [W1, b1, W2, b2]
