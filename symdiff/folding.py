"""Constant folding: a node whose arguments are all constants, computed by its op's reference implementation.

Building a node (:mod:`symdiff.functions`) folds to check integer arithmetic on constants for overflow and to read
a constant exponent; the simplifier (:mod:`symdiff.simplify`) folds as its first rewrite.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConstantOverflowError
from .graph import Expr, const_value, constant, topo_order, with_args
from .ops.registry import OPS

FOLD_LIMIT = 4096  # constants with more elements than this are left unfolded


def fold(node: Expr) -> Expr | None:
    """op(constants) -> constant."""
    opdef = OPS[node.op]
    if not node.args or opdef.impl is None or opdef.random or not all(a.op == "const" for a in node.args):
        return None
    if node.size is None or node.size > FOLD_LIMIT:
        return None
    with np.errstate(all="ignore"):
        value = np.asarray(opdef.impl(node.attrs, *(const_value(a) for a in node.args)), dtype=node.dtype)
    if node.dtype.kind in "iu" and node.op in ("add", "sub", "mul", "pow", "neg"):
        _check_int_overflow(node, value)
    if node.op == "div" and value.ndim == 0 and len(repr(value.item())) > 8:
        return None  # keep 1 / 24 readable rather than 0.041666666666666664 (same float either way)
    if node.weak and value.ndim == 0 and np.asarray(value.item()).dtype == node.dtype:
        return constant(value.item())
    return constant(value, dtype=node.dtype)


def _check_int_overflow(node: Expr, value: np.ndarray) -> None:
    """Raise ``ConstantOverflowError`` (an ``OverflowError``) if the integer result ``value`` of ``node`` wrapped.

    The exact result is computed with Python ints only when it is known to be small: a power whose
    result needs more than 64 bits is refused from its exponent alone (``3 ** (2**63 - 1)`` would
    take forever and all memory), so the work is bounded by the size of the result, not the exponent.
    """
    operands = [const_value(a).astype(object) for a in node.args]
    if node.op == "pow":
        base, exp = np.broadcast_arrays(*operands)
        for b, e in zip(base.flat, exp.flat):
            if abs(b) >= 2 and e * math.log2(abs(b)) >= 64:
                raise ConstantOverflowError(
                    f"pow: integer constants overflow {node.dtype} ({b} ** {e} is out of range); use float constants"
                )
    exact = OPS[node.op].impl(node.attrs, *operands)
    if np.any(np.asarray(exact, dtype=object) != value.astype(object)):
        raise ConstantOverflowError(
            f"{node.op}: integer constants overflow {node.dtype} ({exact} is out of range); use float constants"
        )


def fold_all(root: Expr) -> Expr:
    """``root`` with every subgraph of constants folded, bottom-up (what is left unfolded stays a node)."""
    folded: dict[int, Expr] = {}
    for node in topo_order([root]):
        args = tuple(folded[id(a)] for a in node.args)
        cur = with_args(node, args)
        value = fold(cur)
        folded[id(node)] = cur if value is None else value
    return folded[id(root)]
