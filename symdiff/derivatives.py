"""The derivative toolkit: ``jvp``, ``vjp``, ``hvp``, ``jacobian`` and ``hessian``.

Forward mode (:mod:`symdiff.forward`) gives ``jvp`` and, with a batch of tangents (the identity), ``jacobian``;
reverse mode (:mod:`symdiff.autodiff`) gives ``vjp``; the Hessian forms are forward-over-reverse (the forward sweep
over the gradient's graph). Every result is an ordinary expression: printable, compilable and differentiable again.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import functions as F
from .autodiff import backward, check_loss, check_targets, gradients
from .autodiff import grad as _grad
from .errors import FloatDTypeError, InputError, ShapeError, UnsupportedError
from .forward import fit, tangents
from .graph import Expr, format_shape
from .printing import label_gradients
from .simplify import simplify as _simplify

__all__ = ["hessian", "hvp", "jacobian", "jvp", "vjp"]

# The most elements a Jacobian or Hessian target may have: the sweep carries one tangent per element (the identity
# tangent alone has MAX_ELEMENTS**2 entries), so every tangent is that many times its node's size.
MAX_ELEMENTS = 1024


def _single(x: Any) -> bool:
    return isinstance(x, Expr)


def _like(value: Any, ref: Expr, what: str, who: str) -> Expr:
    """``value`` as an expression of ``ref``'s shape and float dtype, refused before anything is built otherwise.

    The shapes must be equal, open axes included: an open axis against a fixed length cannot broadcast.
    """
    v = value if isinstance(value, Expr) else np.asarray(value)
    if v.dtype.kind not in "fiub":
        raise FloatDTypeError(f"{who}: {what} has dtype {v.dtype}, expected a float (or an int or bool to cast)")
    if v.shape != ref.shape:
        raise ShapeError(f"{who}: {what} has shape {format_shape(v.shape)}, expected {format_shape(ref.shape)}")
    return F.astype(F.as_expr(value), ref.dtype)


def _seeds(targets: list[Expr], x: Any, vs: Any, what: str, name: str, who: str) -> dict[int, Expr]:
    """``{id(target): direction}`` for the targets of ``x`` (one, or a list) and the directions ``vs`` (one, or
    a list of as many), each checked against its target (:func:`_like`); the argument is called ``name``."""
    if _single(x):
        return {id(targets[0]): _like(vs, targets[0], f"the {what} {name}", who)}
    if isinstance(vs, Expr) or not isinstance(vs, (list, tuple)):
        raise InputError(f"{who}: {len(targets)} targets need a list of as many {what}s, got {reprlib.repr(vs)}")
    if len(targets) != len(vs):
        raise InputError(f"{who}: {len(targets)} targets but {len(vs)} {what}s")
    return {id(t): _like(d, t, f"the {what} {name}[{i}]", who) for i, (t, d) in enumerate(zip(targets, vs))}


def _tangent(y: Expr, seeds: dict[int, Expr]) -> Expr:
    """The tangent of ``y`` from one forward sweep (zeros when no seed reaches it)."""
    t = tangents([y], seeds).get(id(y))
    return F.zeros_like(y) if t is None else fit(t, y)


def jvp(y: Expr, x: Expr | Sequence[Expr], v: Any, *, simplify: bool = True) -> Expr:
    """The directional derivative of ``y`` along ``v`` (``v`` has ``x``'s shape): ``J v``, of ``y``'s shape.

    Forward mode: one sweep from ``x`` to ``y`` through each op's tangent rule, costing a small constant times
    the forward pass. ``x`` may be a list of targets, ``v`` then a list of directions (their effects add).

    Raises:
        ShapeError: a direction does not have its target's shape (an open axis fits only an open axis).
        DTypeError: ``y`` or a target is not a float expression, or a direction is not numeric.
        InputError: ``x`` is not an Input or Param (or a list of them), or ``v`` not one direction per target.

    >>> x, A, v = sd.Param("x", shape=(3,)), sd.Input("A", shape=(3, 3)), sd.Input("v", shape=(3,))
    >>> print(sd.jvp(sd.tanh(A @ x), x, v))
    A @ v * (1 - tanh(A @ x)**2)
    """
    check_loss(y, "jvp", "y", scalar=False)
    t = _tangent(y, _seeds(check_targets(y, x, "jvp", "x"), x, v, "direction", "v", "jvp"))
    return _simplify(t) if simplify else t


def vjp(y: Expr, x: Expr | Sequence[Expr], u: Any, *, simplify: bool = True) -> Expr | list[Expr]:
    """``u`` pulled back through ``y``: ``J^T u`` (``u`` has ``y``'s shape), of ``x``'s shape (a list for a list).

    Reverse mode seeded with the cotangent ``u``: ``vjp(y, x, 1)`` of a scalar ``y`` is ``sd.grad(y, x)``.
    Refuses its arguments as :func:`jvp` does (``u`` checked against ``y``).

    >>> x, A, u = sd.Param("x", shape=(3,)), sd.Input("A", shape=(3, 3)), sd.Input("u", shape=(3,))
    >>> print(sd.vjp(sd.tanh(A @ x), x, u))
    dx = A.T @ (u * (1 - tanh(A @ x)**2))
    """
    check_loss(y, "vjp", "y", scalar=False)
    targets = check_targets(y, x, "vjp", "x")
    seed = _like(u, y, "the cotangent u", "vjp")
    results = gradients(y, targets, backward(y, targets, seed), simplify)
    return results[0] if _single(x) else results


def hvp(f: Expr, x: Expr | Sequence[Expr], v: Any, *, simplify: bool = True) -> Expr | list[Expr]:
    """The Hessian of the scalar ``f`` times ``v`` (``x``'s shape), without forming the Hessian.

    Forward-over-reverse: the forward sweep along ``v`` over the gradient's graph, one more pass of the
    gradient's cost (reverse-over-reverse would differentiate ``sum(grad * v)`` backwards: a second backward
    sweep over the larger gradient graph, plus the product and the sum). For a list ``x`` (and ``v``), the
    list of the blocks ``sum_j H_ij v_j``. Refuses its arguments as :func:`jvp` does, and a non-scalar ``f``
    with a ``ShapeError``.

    >>> x, A, v = sd.Param("x", shape=(3,)), sd.Input("A", shape=(3, 3)), sd.Input("v", shape=(3,))
    >>> print(sd.hvp(x @ A @ x, x, v))
    (A + A.T) @ v
    """
    check_loss(f, "hvp", "f")
    targets = check_targets(f, x, "hvp", "x")
    seeds = _seeds(targets, x, v, "direction", "v", "hvp")
    grads = _grad(f, targets)
    sweep = tangents(grads, seeds)
    out = [fit(sweep[id(g)], g) if id(g) in sweep else F.zeros_like(g) for g in grads]
    if simplify:
        out = _simplify(out)
    return out[0] if _single(x) else out


def jacobian(y: Expr, x: Expr | Sequence[Expr], *, simplify: bool = True) -> Expr | list[Expr]:
    """The Jacobian of ``y`` with respect to ``x``: shape ``y.shape + x.shape`` (a list for a list of targets).

    ``y`` may have an open (batch) axis; ``x`` needs a fixed shape of at most ``MAX_ELEMENTS`` (1024) elements:
    the Jacobian is built by forward mode, one sweep pushing the identity over ``x``'s elements (a batch of
    tangents) through each op's tangent rule.

    Raises:
        UnsupportedError: ``x`` has an open axis or too many elements.
        DTypeError, InputError: as :func:`jvp`.

    >>> x, W = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 4))
    >>> sd.jacobian(sd.tanh(x @ W), W).shape
    (None, 4, 3, 4)
    """
    check_loss(y, "jacobian", "y", scalar=False)
    targets = check_targets(y, x, "jacobian", "x")
    results = [_jacfwd(y, t, "jacobian") for t in targets]
    if simplify:
        results = _simplify(results)
    results = label_gradients(y, targets, results)
    return results[0] if _single(x) else results


def hessian(f: Expr, x: Expr | Sequence[Expr], *, simplify: bool = True) -> Expr | list[list[Expr]]:
    """The Hessian of the scalar ``f``: shape ``x.shape + x.shape``, named ``d2x``.

    Forward-over-reverse: the Jacobian (:func:`jacobian`, forward mode) of the gradient. For a list of
    targets, a nested list: the blocks ``H[i][j]`` of shape ``x_i.shape + x_j.shape`` (named ``d2x``, ``dx_dy``,
    ``dy_dx``, ...). Targets of different shapes do not make one array, so the blocks stay apart, and
    :func:`~symdiff.to_text`, :func:`~symdiff.latex`, :func:`~symdiff.codegen` and :func:`~symdiff.compile` take
    the nested list as it is: the blocks print under their names, and the compiled function returns tuples nested
    alike (``H[0][1]`` is ``out[0][1]``).

    >>> x, A = sd.Param("x", shape=(3,)), sd.Input("A", shape=(3, 3))
    >>> print(sd.hessian(x @ A @ x, x))
    d2x = A + A.T
    """
    check_loss(f, "hessian", "f")
    targets = check_targets(f, x, "hessian", "x")
    grads = _grad(f, targets)
    # d2f/dx_i dx_j = d2f/dx_j dx_i: a diagonal block's batch-first tangent is already the block, and a block below
    # the diagonal is the one above it with its two groups of axes swapped (one sweep per pair, not two)
    n = len(targets)
    rows: list[list[Expr]] = [[] for _ in range(n)]
    for i, g in enumerate(grads):
        upper = [_jacfwd(g, t, "hessian", symmetric=i == j) for j, t in enumerate(targets) if j >= i]
        rows[i] = [_swap_groups(rows[j][i], targets[j], targets[i]) for j in range(i)] + upper
    if simplify:
        flat = _simplify([h for row in rows for h in row])
        rows = [flat[i * len(targets) : (i + 1) * len(targets)] for i in range(len(targets))]
    rows = [label_gradients(g, targets, row) for g, row in zip(grads, rows)]
    return rows[0][0] if _single(x) else rows


def _swap_groups(h: Expr, a: Expr, b: Expr) -> Expr:
    """The block ``h`` of shape ``a.shape + b.shape`` as ``b.shape + a.shape``."""
    if not a.ndim or not b.ndim:  # a group of no axes: nothing moves
        return h
    return F.transpose(h, (*range(a.ndim, a.ndim + b.ndim), *range(a.ndim)))


def _jacfwd(y: Expr, x: Expr, who: str, symmetric: bool = False) -> Expr:
    """The Jacobian ``y.shape + x.shape`` from one forward sweep carrying a batch of tangents: the identity over
    ``x``'s elements (shape ``x.shape + x.shape``), whose batch axes end up behind ``y``'s (a ``symmetric``
    Jacobian, a Hessian's diagonal block, is the same array either way round: no transpose)."""
    if None in x.shape:
        raise UnsupportedError(
            f"{who}: the target {x.label or 'x'} has an open axis (shape {format_shape(x.shape)}); forward mode "
            "needs its elements: differentiate with respect to a fixed-shape symbol"
        )
    size = math.prod(x.shape)
    if size > MAX_ELEMENTS:
        raise UnsupportedError(
            f"{who}: the target {x.label or 'x'} of shape {format_shape(x.shape)} has {size} elements, more than "
            f"{MAX_ELEMENTS} (its identity tangent has size**2 entries)"
        )
    batch = x.shape
    # the identity over x's elements: an eye node (it prints as eye(n), and I @ A -> A sees it), reshaped when x is
    # not a vector
    if x.ndim == 0:
        identity = F.constant(np.ones((), dtype=x.dtype))
    else:
        identity = F.eye(size, dtype=x.dtype) if x.ndim == 1 else F.reshape(F.eye(size, dtype=x.dtype), batch + batch)
    t = tangents([y], {id(x): identity}, batch).get(id(y))
    t = fit(F.constant(np.zeros((), dtype=y.dtype)) if t is None else t, y, batch)
    nb = len(batch)
    return F.transpose(t, (*range(nb, t.ndim), *range(nb))) if nb and y.ndim and not symmetric else t
