"""Inverted dropout's random mask, and the evaluation form of a graph (dropout off).

``sd.dropout(x, rate, seed)`` is ``x * m`` with ``m = dropout_mask(x.shape, rate, seed)``: each element of ``m``
is 0 with probability ``rate`` and ``1 / (1 - rate)`` otherwise, so kept values are scaled and the expected value
of ``x * m`` is ``x``. The mask is one node: the forward pass and the gradient (``dx = dy * m``) read the same
array, computed once per call. It is a ``random`` op (:class:`symdiff.ops.registry.OpDef`): a generated module
keeps one ``np.random.default_rng(seed)`` per mask, so each call draws a fresh mask and a fresh module (a new
compile) repeats the same sequence; nothing folds it into a constant, and the reference implementation gives the
first draw. Training steps keep the masks; evaluation (:func:`without_dropout`, what ``sd.compile`` does unless
``training=True``) replaces each by 1, so dropout is the identity there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DTypeError
from ..graph import Expr, constant, dtype_source, make, topo_order, with_args
from .kernels import KERNELS
from .registry import ATOM, Fmt, register, wrap, xp_dtype


def _dropout_mask(rng, shape, rate, dtype):
    # 0 with probability rate, else 1 / (1 - rate): the scaled mask of inverted dropout, drawn anew on each call
    keep = rng.random(shape) >= rate
    return np.multiply(keep, 1 / (1 - rate), dtype=dtype)


KERNELS["_dropout_mask"] = _dropout_mask


def _infer_mask(args, attrs):
    x = args[0]
    if x.dtype.kind != "f":  # 1 / (1 - rate) has no integer value
        raise DTypeError(f"dropout: x must have a float dtype, got {x.dtype}")
    return x.shape, x.dtype


def _mask_text(node: Expr, args: list[Fmt]) -> Fmt:
    rate, seed = node.attrs["rate"], node.attrs["seed"]
    return Fmt(f"dropout_mask({wrap(args[0], ATOM)}.shape, rate={rate!r}, seed={seed})", ATOM)


def _mask_call(node: Expr, args: list[Fmt], dtype: str) -> Fmt:
    """``_dropout_mask(rng, x.shape, rate, dtype)``: the kernel drawing the mask from the module's generator."""
    return Fmt(f"_dropout_mask({args[0].text}, {wrap(args[1], ATOM)}.shape, {node.attrs['rate']!r}, {dtype})", ATOM)


register(
    "dropout_mask",
    sympy=None,
    random=True,
    hint="mask",
    dot=None,  # the text form with placeholders: dropout_mask(·.shape, rate=0.5, seed=7)
    infer=_infer_mask,
    impl=lambda attrs, x: _dropout_mask(
        np.random.default_rng(attrs["seed"]), np.shape(x), attrs["rate"], np.asarray(x).dtype
    ),
    vjp=(None,),  # the mask reads only the shape of x
    jvp=(None,),
    axis_source=lambda out, ax, x, *, rate, seed: (x, ax),
    text=_mask_text,
    # args[0] is the module's generator for this node (see OpDef.random)
    numpy=lambda node, args: _mask_call(node, args, dtype_source(node.dtype)),
    xp=lambda node, args: _mask_call(node, args, xp_dtype(node.dtype)),  # torch's generator (symdiff.backends)
    kernels=("_dropout_mask",),
    out=None,  # the memory planner's out= form has no generator to draw from: the kernel allocates the mask
    latex=lambda node, args: Fmt(
        f"\\operatorname{{dropout\\_mask}}_{{{node.attrs['rate']!r}}}^{{({node.attrs['seed']})}}"
        f"\\left(\\operatorname{{shape}} {args[0].text}\\right)",
        ATOM,
    ),
)


def without_dropout(roots: Sequence[Expr]) -> list[Expr]:
    """The evaluation form of ``roots``: every dropout mask replaced by 1, so that ``x * mask`` is ``x`` (the graphs
    themselves when they hold no mask)."""
    order = topo_order(roots)
    if not any(n.op == "dropout_mask" for n in order):
        return list(roots)
    new: dict[int, Expr] = {}
    masks: set[int] = set()
    for n in order:
        args = tuple(new[id(a)] for a in n.args)
        if n.op == "dropout_mask":
            ones = make("broadcast_like", (constant(np.ones((), dtype=n.dtype)), args[0]))
            masks.add(id(ones))
            new[id(n)] = ones
            continue
        kept = [a for a in args if id(a) not in masks]
        if n.op == "mul" and len(kept) == 1 and kept[0].shape == n.shape and kept[0].dtype == n.dtype:
            new[id(n)] = kept[0]  # x * 1
        else:
            new[id(n)] = with_args(n, args)
    return [new[id(r)] for r in roots]
