"""Reverse-mode symbolic differentiation: the chain rule over the graph.

This module knows the chain rule and nothing about any op's mathematics: each op's gradient (VJP) rule
lives in the op table. ``grad`` walks the nodes between the loss and the targets in reverse topological
order, asks each op for the gradient of every argument that leads to a target, sums the gradients back
to each argument's shape (``unbroadcast``) and accumulates them. The result is an ordinary expression,
so it can be printed, simplified, compiled, and differentiated again.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Sequence
from typing import Protocol, overload

import numpy as np

from . import functions as F
from .errors import ArgumentTypeError, FloatDTypeError, ShapeError
from .graph import Expr, check_targets_used, constant, format_shape, topo_order
from .naming import grad_name


def unbroadcast(g: Expr, like: Expr) -> Expr:
    """Sum ``g`` over the axes along which ``like`` was broadcast, giving it ``like``'s shape."""
    if g.shape == like.shape:
        return g
    lead = g.ndim - like.ndim
    if lead < 0:
        raise ValueError(
            f"unbroadcast: gradient of shape {format_shape(g.shape)} has fewer axes than "
            f"its operand {format_shape(like.shape)}"
        )
    if lead:
        g = F.sum(g, axis=tuple(range(lead)))
    inner = tuple(i for i, d in enumerate(like.shape) if d == 1 and g.shape[i] != 1)
    if inner:
        g = F.sum(g, axis=inner, keepdims=True)
    return g


def check_loss(loss: object, who: str, name: str = "loss", *, scalar: bool = True) -> None:
    """Raise ``ArgumentTypeError``/``ShapeError``/``FloatDTypeError`` (prefixed with ``who``, naming the argument
    ``name``) unless ``loss`` is a float expression, a scalar unless ``scalar=False``."""
    if not isinstance(loss, Expr):
        raise ArgumentTypeError(f"{who}: {name} must be a symdiff expression, got {type(loss).__name__}")
    if scalar and loss.shape != ():
        raise ShapeError(
            f"{who}: {name} must be a scalar, got shape {format_shape(loss.shape)} (reduce it with sd.mean or sd.sum)"
        )
    if loss.dtype.kind != "f":
        raise FloatDTypeError(f"{who}: {name} must have a float dtype, got {loss.dtype}")


def check_targets(root: Expr, wrt: Expr | Sequence[Expr], who: str, name: str = "wrt") -> list[Expr]:
    """``wrt`` (one expression or several) as a list of float expressions that ``root`` may be differentiated
    with respect to; raises ``InputError``/``FloatDTypeError`` prefixed with ``who``, naming the argument ``name``."""
    many = isinstance(wrt, Iterable) and not isinstance(wrt, (Expr, str))
    targets = list(wrt) if many else [wrt]
    for t in targets:
        if not isinstance(t, Expr):
            raise ArgumentTypeError(
                f"{who}: {name} must be an Input or Param, or a list of them, got {reprlib.repr(wrt)}"
            )
        if t.dtype.kind != "f":
            raise FloatDTypeError(
                f"{who}: cannot differentiate with respect to {t.label or 'an expression'} "
                f"of dtype {t.dtype} (not a float)"
            )
    check_targets_used([root], targets, who)
    return targets


def _depends(order: list[Expr], targets: Sequence[Expr]) -> set[int]:
    """Ids of the nodes in ``order`` from which some target can be reached through arguments that have a gradient
    (a dropout mask reads only the shape of its argument: no gradient reaches the target through it)."""
    needed = {id(t) for t in targets}
    for node in order:
        if any(id(a) in needed and node.opdef.vjp is not None and node.opdef.rule(i) for i, a in enumerate(node.args)):
            needed.add(id(node))
    return needed


class Recorder(Protocol):
    """What :func:`backward` tells an observer of its sweep (``sd.explain`` records the chain rule's steps)."""

    def adjoint(self, node: Expr, g: Expr) -> None:
        """``node``'s adjoint ``g`` is complete: every contribution to it has been summed (reverse order)."""

    def contribution(self, node: Expr, i: int, local: Expr, reduced: Expr) -> None:
        """Argument ``i`` of ``node`` receives ``local`` (the VJP rule's result, before undoing broadcasting)
        as ``reduced`` (summed back to the argument's shape and cast to its dtype; ``local`` itself if neither)."""


def backward(
    loss: Expr, targets: Sequence[Expr], seed: Expr | None = None, recorder: Recorder | None = None
) -> dict[int, Expr]:
    """Adjoints of every node between ``loss`` and ``targets``: ``{id(node): dloss/dnode}`` (unsimplified).

    Nodes with a user label (``.named``) and symbols get adjoints labelled ``d<name>``. A ``recorder`` sees each
    node's adjoint and each contribution to an argument's adjoint, in the order the sweep makes them.
    """
    order = topo_order([loss])
    needed = _depends(order, targets)
    if seed is None:
        seed = constant(np.ones((), dtype=loss.dtype))
    adjoint: dict[int, Expr] = {id(loss): seed}
    for node in reversed(order):
        g = adjoint.get(id(node))
        if g is None:
            continue
        if node.label is not None and not (g.is_symbol or g.op == "const") and id(node) != id(loss):
            g = g.named(grad_name(node.label))
            adjoint[id(node)] = g
        if recorder is not None:
            recorder.adjoint(node, g)
        if not node.args:
            continue
        opdef = node.opdef
        for i, arg in enumerate(node.args):
            if id(arg) not in needed or arg.dtype.kind != "f":
                continue
            gi = opdef.arg_grad(i, g, node)
            if gi is None:  # declared non-differentiable argument (labels, conditions, shape refs)
                continue
            local = gi
            gi = unbroadcast(gi, arg)
            if gi.dtype != arg.dtype:
                gi = F.astype(gi, arg.dtype)
            if recorder is not None:
                recorder.contribution(node, i, local, gi)
            prev = adjoint.get(id(arg))
            adjoint[id(arg)] = gi if prev is None else prev + gi
    return adjoint


@overload
def grad(loss: Expr, wrt: Expr, *, simplify: bool = True, seed: Expr | None = None) -> Expr: ...
@overload
def grad(loss: Expr, wrt: Sequence[Expr], *, simplify: bool = True, seed: Expr | None = None) -> list[Expr]: ...


def grad(
    loss: Expr, wrt: Expr | Sequence[Expr], *, simplify: bool = True, seed: Expr | None = None
) -> Expr | list[Expr]:
    """Gradient of the scalar ``loss`` with respect to ``wrt`` (one expression, or a list for a list).

    Each gradient is an expression with its target's shape, named ``d<name>`` for symbols, simplified
    (constant folding, identities, closed forms) unless ``simplify=False``. With ``seed`` (a scalar
    expression) every gradient is multiplied by it, as if differentiating ``seed * loss``; a training
    step uses the learning rate, so that it is folded into the first backward product.

    Raises:
        ValueError: ``loss`` is not a scalar, or a target is not a float expression.
        InputError: a target symbol is not the one the loss uses under its name (another init, shape, dtype).

    >>> x, y = sd.Input("x", shape=(None, 3)), sd.Input("y", shape=(None,), dtype="int64")
    >>> W = sd.Param("W", shape=(3, 2))
    >>> print(sd.grad(sd.softmax_cross_entropy(x @ W, y), W))
    n = x.shape[0]
    dW = x.T @ ((softmax(x @ W) - onehot(y, 2)) / n)
    """
    check_loss(loss, "grad")
    single = isinstance(wrt, Expr)
    targets = check_targets(loss, wrt, "grad")
    if seed is not None and (not isinstance(seed, Expr) or seed.shape != ()):
        raise ValueError("grad: seed must be a scalar expression (the gradient is seed * dloss/dwrt)")
    results = gradients(loss, targets, backward(loss, targets, seed), simplify)
    return results[0] if single else results


def gradients(loss: Expr, targets: Sequence[Expr], adjoint: dict[int, Expr], simplify: bool = True) -> list[Expr]:
    """The targets' adjoints from :func:`backward` (zeros of a target's shape where it has none), simplified
    unless ``simplify=False``, each labelled with its derivative name (``dx``, ``d2x``, ``dxs_da``)."""
    results = []
    for t in targets:
        g = adjoint.get(id(t))
        if g is None:
            g = F.zeros_like(t)
            if t.label:
                g = g if g.is_symbol or g.op == "const" else g.named(grad_name(t.label))
        results.append(g)
    if simplify:
        from .simplify import simplify as _simplify

        results = _simplify(results)
    from .printing import label_gradients

    return label_gradients(loss, targets, results)  # every gradient prints as d<target> = ...
