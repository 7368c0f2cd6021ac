"""Forward-mode symbolic differentiation: tangents pushed from the inputs to the outputs.

The counterpart of :mod:`symdiff.autodiff`. Like it, this module knows the chain rule and nothing about any op's
mathematics: each op's tangent (JVP) rule lives in the op table. ``tangents`` walks the graph once in topological
order, asks each op for the contribution of every argument that carries a tangent, broadcasts the contributions to
the node's shape and sums them. The sweep costs a small constant times the forward pass it follows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import functions as F
from .graph import Expr, topo_order
from .ops.batch import align, batched_like


def fit(t: Expr, node: Expr, batch: tuple[int, ...] = ()) -> Expr:
    """The tangent contribution ``t`` with the shape ``batch + node.shape`` (broadcast) and ``node``'s dtype."""
    shape = (*batch, *node.shape)
    if t.shape != shape:
        t = F.broadcast_to(t, shape) if None not in shape else F.broadcast_like(t, batched_like(node, batch))
    if t.dtype != node.dtype:
        t = F.astype(t, node.dtype)
    return t


def tangents(outputs: Sequence[Expr], seeds: Mapping[int, Expr], batch: tuple[int, ...] = ()) -> dict[int, Expr]:
    """Tangents of every node of ``outputs``' graph that depends on a seeded node: ``{id(node): tangent}``.

    ``seeds`` maps ``id(node)`` to that node's tangent (shape ``batch + node.shape``, its dtype): with a
    ``batch``, every tangent is a batch of tangents along those leading axes (:mod:`symdiff.ops.batch`). Float
    nodes only carry tangents, and an op whose rule for an argument is ``None`` passes none on from it. The
    tangents are unsimplified.
    """
    tangent: dict[int, Expr] = dict(seeds)
    for node in topo_order(list(outputs)):
        if id(node) in tangent or not node.args or node.dtype.kind != "f":
            continue
        total = None
        for i, arg in enumerate(node.args):
            t = tangent.get(id(arg))
            if t is None:
                continue
            if batch and node.opdef.elementwise:  # its rules broadcast: batch axes stay in front
                t = align(t, arg, node.ndim)
            part = node.opdef.arg_tangent(i, t, node)
            if part is None:  # declared non-differentiable argument (labels, conditions, shape refs)
                continue
            part = fit(part, node, batch)
            total = part if total is None else total + part
        if total is not None:
            tangent[id(node)] = total
    return tangent
