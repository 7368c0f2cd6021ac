"""Batch-length provenance: which operand's run-time axis length an axis of an expression has.

``x.shape[i]`` for an open axis (``None``) is rewritten to the earliest operand with the same length
(:func:`canonical_dim`), so that a mean over the batch reads ``x.shape[0]`` of an input instead of computing
an intermediate only to count its rows. The simplifier registers :func:`dim_known` as a rule; building a
node (:mod:`symdiff.functions`) and the memory planner read :func:`canonical_dim`.
"""

from __future__ import annotations

import weakref

from .graph import Expr, constant, make
from .ops.registry import OPS


def index_entry(x: Expr, ax: int) -> tuple[tuple, int]:
    """The index entry of the getitem ``x`` that makes its result axis ``ax``, and the operand axis it reads
    (``("new",)`` and the operand's next axis for a ``None`` entry)."""
    operand_axis, result_axis = 0, 0
    for e in x.attrs["index"] + (("slice", None, None, None),) * x.args[0].ndim:
        if e[0] == "int":
            operand_axis += 1
            continue
        if result_axis == ax:
            return e, operand_axis
        result_axis += 1
        operand_axis += e[0] == "slice"
    raise AssertionError(f"getitem has no result axis {ax}")


def dim_known(n: Expr) -> Expr | None:
    """x.shape[i] with a static length -> that length; otherwise ask the operand the axis came from."""
    x, ax = n.args[0], n.attrs["axis"]
    if x.shape[ax] is not None:
        return constant(int(x.shape[ax]))
    src = axis_source(x, ax)
    return None if src is None else make("dim", (src[0],), {"axis": src[1]})


def axis_source(x: Expr, ax: int) -> tuple[Expr, int] | None:
    """An argument of ``x`` (and its axis) with the same run-time length as axis ``ax`` of ``x``."""
    op = x.op
    if OPS[op].elementwise or op in ("softmax", "log_softmax", "broadcast_like"):
        for a in x.args:
            lead = x.ndim - a.ndim
            if ax >= lead and a.shape[ax - lead] is None:
                return a, ax - lead
    if op == "scatter":
        return x.args[1], ax
    if op in ("onehot_sub", "cast", "sympy_fn") and x.args[0].shape == x.shape:
        return x.args[0], ax
    if op == "squeeze":  # result axis ax is the ax-th kept axis of the operand
        kept = [i for i in range(x.args[0].ndim) if i not in x.attrs["axis"]]
        return x.args[0], kept[ax]
    if op == "expand_dims":
        if ax in x.attrs["axis"]:
            return None
        return x.args[0], ax - sum(1 for a in x.attrs["axis"] if a < ax)
    if op == "onehot":
        return (x.args[0], ax) if ax < x.ndim - 1 else None
    if op == "matmul":
        a, b = x.args
        if b.ndim == 1:  # (..., m, k) @ (k,) -> (..., m)
            return (a, ax) if a.shape[ax] is None else None
        if a.ndim == 1:  # (k,) @ (..., k, n) -> (..., n)
            return (b, ax if ax < x.ndim - 1 else b.ndim - 1)
        if a.ndim >= 2 and ax == x.ndim - 2 and a.shape[-2] is None:
            return a, a.ndim - 2
        if b.ndim >= 2 and ax == x.ndim - 1 and b.shape[-1] is None:
            return b, b.ndim - 1
        lead = x.ndim - a.ndim
        if a.ndim > 2 and lead <= ax < x.ndim - 2 and a.shape[ax - lead] is None:
            return a, ax - lead
    if op == "pick":
        return x.args[0], ax
    if op == "transpose":
        return x.args[0], x.attrs["axes"][ax]
    if op in ("sum", "max", "logsumexp"):
        axes = x.attrs["axis"]
        if x.attrs["keepdims"]:
            return x.args[0], ax
        kept = [i for i in range(x.args[0].ndim) if i not in axes]
        return x.args[0], kept[ax]
    if op == "getitem":  # an axis taken whole (``:`` or ``::-1``) keeps its length
        e, operand_axis = index_entry(x, ax)
        whole = e[0] == "slice" and e[1] is None and e[2] is None and e[3] in (None, -1)
        return (x.args[0], operand_axis) if whole else None
    if op == "shape":  # the length argument of an open axis
        d = x.args[sum(1 for i in range(ax) if x.shape[i] is None)]
        return d.args[0], d.attrs["axis"]
    if op == "concatenate" and ax != x.attrs["axis"]:  # the other axes are every part's
        return next(((a, ax) for a in x.args if a.shape[ax] is None), None)
    if op == "tensordot":
        a, b = x.args
        ax_a, ax_b = x.attrs["axes"]
        free = [(a, i) for i in range(a.ndim) if i not in ax_a] + [(b, j) for j in range(b.ndim) if j not in ax_b]
        return free[ax]
    return None


# operand -> {axis: canonical dim}; keyed weakly on the operand, whose dim nodes are short-lived
_CANONICAL: weakref.WeakKeyDictionary[Expr, dict[int, Expr]] = weakref.WeakKeyDictionary()


def canonical_dim(d: Expr) -> Expr:
    """``x.shape[i]`` rewritten to the earliest operand with the same run-time length (memoized)."""
    chain: list[tuple[Expr, int]] = []
    result = d
    while True:
        x, ax = d.args[0], d.attrs["axis"]
        known = _CANONICAL.get(x, {}).get(ax)
        if known is not None:
            result = known
            break
        chain.append((x, ax))
        nxt = dim_known(d)
        if nxt is None or nxt.op != "dim":
            result = d if nxt is None else nxt
            break
        d = nxt
    for x, ax in chain:
        _CANONICAL.setdefault(x, {})[ax] = result
    return result
