"""Lowering: rewrites that make a graph cheaper to *run*, applied just before NumPy code generation.

Printing keeps the textbook forms (``softmax(z) - onehot(y, k)``); generated code runs these instead:

* ``logsumexp``, ``softmax`` and ``log_softmax`` of the same ``z`` share one max-shifted exponential
  ``e = exp(z - max(z))`` and its row sums ``s``: the loss and its gradient compute them once;
* ``pick(z - c, y) -> pick(z, y) - c`` for a row constant ``c``: the loss needs only the label column;
* ``x - onehot(y, k) -> onehot_sub(x, y, 1)``: subtract at the label column, no one-hot matrix;
* a scalar factor moves onto the smaller operand (``(e / s) * c -> e * (c / s)``), so a scaled softmax
  costs one full-size pass;
* ``max_pool2d(f(z)) -> f(max_pool2d(z))`` for an increasing activation ``f`` (ReLU, tanh, sigmoid, softplus) or
  a shift by a channel bias (``z + b``): the activation and the bias add run on the pooled quarter of the data.
  The training step rewrites so before differentiating (:func:`pool_before_increasing`), so that the activation's
  derivative is a quarter-size mask and the bias gradient a sum over it;
* ``conv2d`` and its filter gradient are GEMMs on the images' patches, ``im2col(x)``, which they share
  (:func:`symdiff.ops.conv.lowered`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import functions as F
from .graph import Expr, constant, make, topo_order, with_args
from .ops import conv
from .simplify import Rule, Simplifier, conform, is_value, rule_decorator, simplify

RULES: dict[str, list[Rule]] = {}
rule = rule_decorator(RULES)
"""Register a lowering rewrite for the named ops."""


def _shift(z: Expr, axis: tuple) -> Expr:
    """z - max(z, axis, keepdims=True): every exponent <= 0, so exp never overflows."""
    return z - F.max(z, axis=axis, keepdims=True)


@rule("softmax")
def softmax_from_shifted_exp(n: Expr, ctx: Simplifier) -> Expr:
    """softmax(z) -> e / sum(e) with e = exp(z - max(z))."""
    axis = n.attrs["axis"]
    e = F.exp(_shift(n.args[0], axis))
    return e / F.sum(e, axis=axis, keepdims=True)


def logsumexp_from_shifted_exp(n: Expr, exact_inf: bool = True) -> Expr:
    """logsumexp(z) -> log(sum(e)) + max(z), sharing e with softmax(z).

    A row whose max is -inf or +inf has e = nan (z - max is -inf - -inf or inf - inf); its logsumexp is
    that max, as the readable kernel gives: log(sum(e)) >= 0 on every other row, so ``exact_inf``
    replaces a nan there by 0 (two ops on the row vector).
    """
    z, axis, keep = n.args[0], n.attrs["axis"], n.attrs["keepdims"]
    m = F.max(z, axis=axis, keepdims=True)
    log_s = F.log(F.sum(F.exp(z - m), axis=axis, keepdims=True))
    if exact_inf:
        log_s = F.where(log_s >= 0, log_s, 0)  # false for nan
    lse = log_s + m
    return lse if keep else F.squeeze(lse, axis)


@rule("log_softmax")
def log_softmax_from_logsumexp(n: Expr, ctx: Simplifier) -> Expr:
    """log_softmax(z) -> z - logsumexp(z)."""
    z, axis = n.args[0], n.attrs["axis"]
    return z - F.logsumexp(z, axis=axis, keepdims=True)


@rule("pick")
def pick_of_row_shift(n: Expr, ctx: Simplifier) -> Expr | None:
    """pick(a - c, y) -> pick(a, y) - c and pick(-a, y) -> -pick(a, y) for c constant along the classes."""
    x, labels = n.args
    if x.op == "neg":
        return -F.pick(x.args[0], labels)
    if x.op in ("sub", "add") and x.args[1].ndim == x.ndim and x.args[1].shape[-1] == 1 and x.args[0].shape == x.shape:
        c = F.squeeze(x.args[1], x.ndim - 1)
        picked = F.pick(x.args[0], labels)
        return conform(picked - c if x.op == "sub" else picked + c, n)
    return None


@rule("sub")
def subtract_onehot_at_labels(n: Expr, ctx: Simplifier) -> Expr | None:
    """x - onehot(y, k) -> onehot_sub(x, y, 1): no one-hot matrix is built."""
    x, oh = n.args
    if oh.op == "onehot" and x.shape == n.shape and x.dtype == n.dtype:
        return make("onehot_sub", (x, oh.args[0], constant(np.ones((), dtype=n.dtype))))
    return None


@rule("mul", "div")
def scale_onehot_sub(n: Expr, ctx: Simplifier) -> Expr | None:
    """onehot_sub(x, y, v) * c -> onehot_sub(x * c, y, v * c) for a scalar c (likewise / c)."""
    a, c = n.args
    if a.op != "onehot_sub" or c.ndim != 0:
        return None
    x, labels, v = a.args
    combine = F.multiply if n.op == "mul" else F.divide
    return make("onehot_sub", (combine(x, c), labels, combine(v, c)))


@rule("mul", "div")
def scalar_onto_smaller_operand(n: Expr, ctx: Simplifier) -> Expr | None:
    """(e / s) * c -> e * (c / s) and (e / s) / c -> e / (s * c): the scalar meets the small operand."""
    a, c = n.args
    if a.op != "div" or c.ndim != 0 or a.args[1].ndim == 0:
        return None
    e, s = a.args
    if s.size is not None and e.size is not None and s.size >= e.size:
        return None
    if any(ds is not None and de is not None and ds > de for ds, de in zip(s.shape, e.shape)):
        return None
    return conform(e * (c / s) if n.op == "mul" else e / (s * c), n)


rule("conv2d", "conv2d_filters")(lambda n, ctx: conv.lowered(n))


def _shifted(f: Expr) -> int | None:
    """The position of ``z`` in ``f = z + c``, ``c + z`` or ``z - c`` for ``c`` constant over the height and width
    of images (a channel bias, broadcast): a max-pool commutes with the shift. None for any other ``f``."""
    if f.op not in ("add", "sub"):
        return None
    for i in (0, 1) if f.op == "add" else (0,):
        z, c = f.args[i], f.args[1 - i]
        if z.shape == f.shape and z.dtype == f.dtype and all(c.ndim < k or c.shape[-k] == 1 for k in (2, 3)):
            return i
    return None


def _pooled_first(node: Expr) -> Expr | None:
    """``max_pool2d(f(z)) -> f(max_pool2d(z))`` (the pool's label on the result) for an increasing ``f`` or a shift
    by a channel bias ``f(z) = z + b``, and so on down (``relu(z + b)``: both)."""
    f = node.args[0]
    i = 0 if f.opdef.increasing else _shifted(f)
    if i is None:
        return None
    pooled = make("max_pool2d", (f.args[i],), dict(node.attrs))
    deeper = _pooled_first(pooled)
    args = list(f.args)
    args[i] = pooled if deeper is None else deeper
    return make(f.op, tuple(args), dict(f.attrs), name=node.label)


@rule("max_pool2d")
def pool_before_activation(n: Expr, ctx: Simplifier) -> Expr | None:
    """max_pool2d(relu(z + b)) -> relu(max_pool2d(z) + b): the same values, the activation and the bias on a quarter
    of the data."""
    return _pooled_first(n)


def pool_before_increasing(exprs: Sequence[Expr]) -> list[Expr]:
    """``exprs`` with every ``max_pool2d(f(z))`` of an increasing ``f`` (or a shift ``z + b`` by a channel bias)
    rewritten as ``f(max_pool2d(z))``.

    Max pooling commutes with a function that never decreases, and where such a function is flat (ReLU below 0)
    its derivative is 0, so the values and the gradients are the same (floating-point addition never decreases
    either: a pooled ``z + b`` is bitwise the pooled ``z`` plus ``b``); differentiated after the rewrite, the
    activation's derivative (ReLU's mask) is a pooled, quarter-size array instead of a full one, and the bias's
    gradient a sum over it.
    """
    done: dict[int, Expr] = {}
    for n in topo_order(exprs):
        node = with_args(n, tuple(done.get(id(a), a) for a in n.args))
        pooled = _pooled_first(node) if node.op == "max_pool2d" else None
        done[id(n)] = node if pooled is None else pooled
    return [done[id(e)] for e in exprs]


def lower(exprs: Sequence[Expr], *, exact_inf: bool = True, patches: bool = True) -> list[Expr]:
    """The lowered (cheaper to run, same values up to rounding) forms of ``exprs``.

    ``exact_inf=False`` lets a logsumexp row whose max is infinite be nan instead of that infinity: for
    training steps, whose guard refuses a non-finite loss either way, and which should not pay for it.
    ``patches=False`` keeps convolutions whole (no ``im2col``): for array libraries that have their own.
    """
    relus = {id(n.args[0]): n for n in topo_order(exprs) if n.op == "relu"}

    def mask_from_relu(n: Expr, ctx: Simplifier) -> Expr | None:
        """(z > 0) -> (relu(z) > 0) where relu(z) is computed anyway: z can then die after the forward pass
        (the ReLU runs in place) instead of living until the backward pass needs its sign."""
        z, zero = n.args
        if id(z) in relus and is_value(zero, 0) and zero.ndim == 0:
            return make("gt", (relus[id(z)], zero))
        return None

    rules = {
        **RULES,
        "gt": [*RULES.get("gt", []), mask_from_relu],
        "logsumexp": [lambda n, ctx: logsumexp_from_shifted_exp(n, exact_inf)],
    }
    if not patches:
        rules = {k: v for k, v in rules.items() if k not in ("conv2d", "conv2d_filters")}
    return list(simplify(list(exprs), extra=rules))
