"""Batch-length provenance: which operand's run-time axis length an axis of an expression has.

``x.shape[i]`` for an open axis (``None``) is rewritten to the earliest operand with the same length
(:func:`canonical_dim`), so that a mean over the batch reads ``x.shape[0]`` of an input instead of computing
an intermediate only to count its rows. The simplifier registers :func:`dim_known` as a rule; building a
node (:mod:`symdiff.functions`) and the memory planner read :func:`canonical_dim`.
"""

from __future__ import annotations

import weakref

from .graph import Expr, constant, make


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
    """An operand of ``x`` (and its axis) with the same run-time length as axis ``ax`` of ``x``: the op's
    ``axis_source`` fact (:class:`symdiff.ops.registry.OpDef`)."""
    return x.opdef.arg_axis(x, ax)


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
