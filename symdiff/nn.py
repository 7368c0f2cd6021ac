"""Losses (and, later, layers) written in graph ops: users of the compiler, not part of it.

Each loss is a scalar built from primitives whose gradients simplify to the textbook closed forms:
``softmax_cross_entropy`` -> ``(softmax(z) - onehot(y, k)) / n``, ``sigmoid_cross_entropy`` ->
``(sigmoid(z) - t) / n``, ``mse`` -> ``2 * (pred - target) / n``.
"""

from __future__ import annotations

from typing import Any

from . import functions as F
from .errors import ShapeError
from .graph import Expr, format_shape


def mse(pred: Any, target: Any) -> Expr:
    """Mean squared error over all elements: ``mean((pred - target)**2)``."""
    return F.mean(F.square(F.subtract(pred, target)))


def sigmoid_cross_entropy(logits: Any, targets: Any) -> Expr:
    """Mean over all elements of the binary cross-entropy of ``sigmoid(logits)`` against ``targets`` in [0, 1].

    NOTE: written as ``softplus(z) - z * t`` (= ``-t log s - (1 - t) log(1 - s)``), which never takes the
    log of a rounded-to-zero probability, so large logits give finite losses and gradients.
    """
    z, t = F.as_expr(logits), F.as_expr(targets)
    return F.mean(F.softplus(z) - z * t)


def softmax_cross_entropy(logits: Any, labels: Any) -> Expr:
    """Mean over the batch of ``-log softmax(logits)[i, labels[i]]``.

    ``labels`` holds integer class indices (shape ``logits.shape[:-1]``) or, with a float dtype and the
    logits' shape, class probabilities (``-sum(labels * log_softmax(logits), axis=-1)`` per row).

    NOTE: uses ``log_softmax`` (max-shifted) rather than ``log(softmax(z))``, which underflows to
    ``log(0)`` for large logits.
    """
    z, y = F.as_expr(logits), F.as_expr(labels)
    logp = F.log_softmax(z, axis=-1)
    if y.dtype.kind in "iu":
        return F.mean(-F.pick(logp, y))
    if y.shape != z.shape and F.broadcast_shapes_or_none(y.shape, z.shape) != z.shape:
        raise ShapeError(
            f"softmax_cross_entropy: targets of shape {format_shape(y.shape)} do not match "
            f"logits of shape {format_shape(z.shape)}"
        )
    return F.mean(-F.sum(y * logp, axis=-1))
