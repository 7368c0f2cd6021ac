"""Batched tangents: what the tangent (JVP) rules share to carry several tangents at once.

A tangent rule may get a *batch* of tangents: ``t`` of shape ``batch + x.shape`` for an argument ``x`` (the
Jacobian pushes the identity over a target's elements through in one sweep), and then returns its contribution
with shape ``batch + out.shape`` (or one that broadcasts to it behind the batch axes). Without batch axes every
helper here returns its input unchanged, so single tangents build exactly the expressions they always did.
"""

from __future__ import annotations

from .. import functions as F
from ..graph import Expr, make


def nbatch(t: Expr, x: Expr) -> int:
    """The number of leading batch axes of the tangent ``t`` of ``x``."""
    return t.ndim - x.ndim


def shifted(axes: tuple[int, ...], nb: int) -> tuple[int, ...]:
    """The (non-negative) axes ``axes`` of an argument, as axes of its tangent behind ``nb`` batch axes."""
    return tuple(a + nb for a in axes)


def align(t: Expr, x: Expr, ndim: int) -> Expr:
    """The tangent ``t`` of ``x`` with length-1 axes inserted behind its batch axes up to ``ndim`` axes of ``x``'s
    part, so that it broadcasts, batch axes kept in front, against a result of ``ndim`` axes."""
    nb = nbatch(t, x)
    if not nb or ndim <= x.ndim:
        return t
    return F.expand_dims(t, tuple(range(nb, nb + ndim - x.ndim)))


def batched_like(ref: Expr, batch: tuple[int, ...]) -> Expr:
    """A reference for the shape ``batch + ref.shape`` (``ref`` itself without a batch): a ``shape`` node whose
    open axes read ``ref``'s run-time lengths."""
    if not batch:
        return ref
    lengths = [F.dim(ref, i) for i, d in enumerate(ref.shape) if d is None]
    return make("shape", tuple(lengths), {"shape": (*batch, *ref.shape)})


def mT(x: Expr) -> Expr:
    """Swap the last two axes: the matrix transpose of a stack of matrices (leading batch axes stay in front)."""
    return F.swapaxes(x, -1, -2)


def traced(x: Expr, axes: tuple[int, int]) -> Expr:
    """The trace of ``x`` over its two (non-negative) ``axes``, its other axes kept in order: over the matrix
    axes of a batch of tangents, or over the last two axes of a stack of matrices."""
    i, j = axes
    if (i, j) != (0, 1):
        x = F.transpose(x, (i, j, *(k for k in range(x.ndim) if k not in axes)))
    return F.trace(x)


def batched_index(index: tuple, nb: int) -> tuple:
    """Canonical index entries (getitem, scatter) applied behind ``nb`` batch axes."""
    return (("slice", None, None, None),) * nb + index
