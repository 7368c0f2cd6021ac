"""Simplification of derived graphs: small named rewrites run to a fixed point.

Each rule looks at one node (whose arguments are already simplified) and returns an equivalent node
of the same shape and dtype, or ``None``; it is called as ``rule(node, ctx)``, ``ctx`` being the running
:class:`Simplifier`, through which a rule can simplify a candidate subgraph. Rules are registered per op with
``@rule(...)``; the comment on each states its algebra. Together they fold constants, drop identities
(``x*1``, ``x+0``, ``x*0`` with the shape kept), cancel double transposes and negations, remove broadcasts that
the surrounding element-wise op performs anyway, and bring classic gradients to their closed forms, e.g. the gradient of
softmax cross-entropy with respect to the logits becomes ``(softmax(z) - onehot(y, k)) / n``. Matrix gradients
take The Matrix Cookbook's forms: identity matrices drop out of products (``I @ A -> A``), ``sum(M * I)`` is
``trace(M)``, ``expand_dims`` products of vectors are ``outer(a, b)``, like terms collect, also across a chain
of + and - (``c*s + 3*c*s -> 4*c*s``, ``a + b + a -> 2*a + b``), constant factors fold across nested products and
quotients (``2*u / (2*v) -> u / v``, ``3 * (96 * a * b) -> 288 * a * b``), ``diag`` of a fill is a scaled
identity, and common factors of products come out (``x @ B + B @ x -> (B + B.T) @ x``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Generator, Sequence

import numpy as np

from . import functions as F
from .dims import canonical_dim, dim_known, index_entry
from .folding import fold
from .graph import Expr, broadcast_shapes, const_value, constant, make, result_dtype, topo_order, with_args
from .ops.leaves import is_identity
from .ops.registry import OPS

Rule = Callable[[Expr, "Simplifier"], "Expr | None"]
"""A rewrite: ``rule(node, ctx)`` -> an equivalent node or ``None``; ``ctx`` is the :class:`Simplifier` running it."""
RULES: dict[str, list[Rule]] = defaultdict(list)
ELEMENTWISE_RULES: list[Rule] = []


def rule_decorator(
    table: dict[str, list[Rule]], elementwise: list[Rule] | None = None
) -> Callable[..., Callable[[Rule], Rule]]:
    """A ``@rule("op", ...)`` decorator adding rewrites to ``table`` (``"*"``: to ``elementwise``, every
    element-wise op's list). The simplifier and the lowering pass (:mod:`symdiff.lower`) each have one."""

    def rule(*ops: str) -> Callable[[Rule], Rule]:
        def deco(fn: Rule) -> Rule:
            for op in ops:
                rules = elementwise if op == "*" else table.setdefault(op, [])
                if rules is None:
                    raise ValueError(f"rule {fn.__name__}: this table has no element-wise ('*') rules")
                rules.append(fn)
            return fn

        return deco

    return rule


rule = rule_decorator(RULES, ELEMENTWISE_RULES)
"""Register a simplification rewrite for the named ops (``"*"``: every element-wise op)."""


# -- predicates -------------------------------------------------------------------------------
def scalar_const(e: Expr) -> float | None:
    """The value of a constant whose elements all equal one number (through broadcasts), else None."""
    while e.op in ("broadcast_like", "broadcast_to"):
        e = e.args[0]
    if e.op != "const":
        return None
    arr = const_value(e)
    if arr.size == 0:
        return None
    first = arr.flat[0]
    return first.item() if np.all(arr == first) else None


def is_value(e: Expr, v: float) -> bool:
    """True when every element of ``e`` is the constant ``v``."""
    c = scalar_const(e)
    return c is not None and c == v


def _bcast_scalar(e: Expr) -> tuple[Expr, Expr] | None:
    """``(c, ref)`` when ``e`` is ``broadcast_like(c, ref)`` of a 0-d value ``c``."""
    if e.op == "broadcast_like" and e.args[0].ndim == 0:
        return e.args[0], e.args[1]
    return None


def conform(result: Expr, node: Expr) -> Expr | None:
    """``result`` given ``node``'s shape and dtype (broadcasting or casting as needed), or None if it can't be."""
    if result.dtype != node.dtype:
        result = F.astype(result, node.dtype)
    if result.shape == node.shape:
        return result
    if broadcast_shapes("conform", result.shape, node.shape) != node.shape:
        return None
    ref = next((a for a in node.args if a.shape == node.shape), None)
    while ref is not None and ref.op == "broadcast_like":  # take the shape from the source of a broadcast
        ref = ref.args[1]
    if ref is None:
        if None in node.shape:
            return None
        return F.broadcast_to(result, node.shape)
    return F.broadcast_like(result, ref)


def zeros(node: Expr) -> Expr | None:
    """Zeros with ``node``'s shape and dtype."""
    return conform(constant(np.zeros((), dtype=node.dtype)), node)


@rule("dim")
def dim_of_known_length(n: Expr, ctx: Simplifier) -> Expr | None:
    """x.shape[i] -> its static length, or the operand the axis came from."""
    return dim_known(n)


@rule("dim")
def dim_of_sliced_product(n: Expr, ctx: Simplifier) -> Expr | None:
    """(x @ W)[::2].shape[0] -> x[::2].shape[0]: the same slice of an operand whose shape reads for free."""
    x = n.args[0]
    if x.op != "getitem" or _shape_is_free(x):
        return None
    length = _free_length(x, n.attrs["axis"])
    return None if length is None or length is n else length


# -- identities of arithmetic -------------------------------------------------------------------
@rule("add")
def add_identities(n: Expr, ctx: Simplifier) -> Expr | None:
    a, b = n.args
    if is_value(b, 0):  # x + 0 -> x
        return conform(a, n)
    if is_value(a, 0):  # 0 + x -> x
        return conform(b, n)
    if b.op == "neg":  # a + (-b) -> a - b
        return a - b.args[0]
    if _negative_const(b) and b.ndim == 0:  # a + (-k) -> a - k
        return conform(a - (-b), n)
    if a is b and a.dtype.kind == "f":  # x + x -> 2 * x
        return 2 * a
    if a.op == "neg":  # (-a) + b -> b - a
        return b - a.args[0]
    if a.op == "transpose" and a.args[0] is b:  # x.T + x -> x + x.T (the book's order)
        return b + a
    collected = _collect(n, F.add)
    return _factor(n, F.add) if collected is None else collected


@rule("sub")
def sub_identities(n: Expr, ctx: Simplifier) -> Expr | None:
    a, b = n.args
    if is_value(b, 0):  # x - 0 -> x
        return conform(a, n)
    if is_value(a, 0):  # 0 - x -> -x
        return conform(-b, n)
    if a is b:  # x - x -> 0
        return zeros(n)
    if b.op == "neg":  # a - (-b) -> a + b
        return a + b.args[0]
    if a.op == "neg":  # (-a) - b -> -(a + b)
        return -(a.args[0] + b)
    collected = _collect(n, F.subtract)
    return _factor(n, F.subtract) if collected is None else collected


_CHAIN_TERMS = 16  # how many terms of a chain of + and - collect_like_terms reads


@rule("add", "sub")
def collect_like_terms(n: Expr, ctx: Simplifier) -> Expr | None:
    """Like terms across a chain of + and -: a + b + a -> 2 * a + b, a - b + 3 * a -> 4 * a - b (each collected
    term where it first occurs; k * t and t / k count as terms in t). Two-term sums are add_identities'."""
    terms = _signed_terms(n)
    if terms is None or len(terms) < 3:
        return None
    parts = [_term(t) for _, t in terms]
    first: dict[int, int] = {}  # id(t) -> the index of its first term, for float terms t
    for i, (_, t) in enumerate(parts):
        # NOTE: integer terms (which may wrap) keep their form: each is a term of its own
        first.setdefault(id(t) if t.dtype.kind == "f" else -1 - i, i)
    if len(first) == len(terms):
        return None
    out: Expr | None = None
    for i, ((sign, _), (k, t)) in enumerate(zip(terms, parts)):
        if first.get(id(t), i) != i:
            continue
        if t.dtype.kind == "f":
            for (other, _), (kj, tj) in zip(terms[i + 1 :], parts[i + 1 :]):
                if tj is t:
                    k = _combine_coefficients(k, kj, other == sign)
        term = t if isinstance(k, int) and k == 1 else k * t
        if out is None:
            out = term if sign > 0 else -term
        else:
            out = out + term if sign > 0 else out - term
    return None if out is None else conform(out, n)


def _combine_coefficients(k1: Expr | int, k2: Expr | int, same_sign: bool) -> Expr | int:
    """``k1 + k2`` (``k1 - k2`` unless ``same_sign``) of two coefficients, Python ints added as such."""
    if isinstance(k1, int) and isinstance(k2, int):
        return k1 + k2 if same_sign else k1 - k2
    return F.add(k1, k2) if same_sign else F.subtract(k1, k2)


def _signed_terms(n: Expr) -> list[tuple[int, Expr]] | None:
    """The terms of the chain of ``add``, ``sub`` and ``neg`` of ``n``'s dtype under ``n`` (through no user label),
    with their signs, in order; None when there are more than ``_CHAIN_TERMS``."""
    terms: list[tuple[int, Expr]] = []
    stack = [(1, n)]
    while stack:
        sign, e = stack.pop()
        if e.op in ("add", "sub", "neg") and e.dtype == n.dtype and (e is n or e._label is None):
            if e.op == "neg":
                stack.append((-sign, e.args[0]))
            else:
                stack.append((sign if e.op == "add" else -sign, e.args[1]))
                stack.append((sign, e.args[0]))
        else:
            terms.append((sign, e))
            if len(terms) > _CHAIN_TERMS:
                return None
    return terms


def _factor_products(n: Expr, combine: Callable[[Expr, Expr], Expr]) -> Expr | None:
    (a0, a1), (b0, b1) = (x.args for x in n.args)
    if a1 is b1 and a0.shape == b0.shape:  # A @ c ± B @ c
        return conform(combine(a0, b0) @ a1, n)
    if a0 is b0 and a1.shape == b1.shape:  # c @ A ± c @ B
        return conform(a0 @ combine(a1, b1), n)
    if a0 is b1 and a0.ndim == 1 and a1.ndim == b0.ndim == 2:  # v @ M ± N @ v -> (M.T ± N) @ v
        return conform(combine(F.transpose(a1), b0) @ a0, n)
    if a1 is b0 and a1.ndim == 1 and a0.ndim == b1.ndim == 2:  # N @ v ± v @ M -> (N ± M.T) @ v
        return conform(combine(a0, F.transpose(b1)) @ a1, n)
    return None


def _coefficient(e: Expr) -> tuple[Expr | None, Expr]:
    """``(k, t)`` with ``e = k * t`` for a 0-d constant ``k`` (``k`` is None when ``e`` has no constant factor)."""
    if e.op == "mul" and e.args[0].op == "const" and e.args[0].ndim == 0:
        return e.args[0], e.args[1]
    return None, e


def _term(e: Expr) -> tuple[Expr | int, Expr]:
    """``(k, t)`` with ``e = k * t`` for a constant ``k``, a 0-d constant factor or divisor (``t / 2``: k = 1 / 2)."""
    if e.op == "div" and e.args[1].op == "const" and e.args[1].ndim == 0:
        return F.divide(1, e.args[1]), e.args[0]
    k, t = _coefficient(e)
    return 1 if k is None else k, t


def _collect(n: Expr, combine: Callable[[Expr, Expr], Expr]) -> Expr | None:
    """Like terms: k1 * t ± k2 * t -> (k1 ± k2) * t for constants k1, k2 (c * s + 3 * c * s -> 4 * c * s)."""
    (ka, ta), (kb, tb) = (_term(x) for x in n.args)
    if ta is not tb or ka is kb or ta.dtype.kind != "f":
        return None
    return conform(combine(ka, kb) * ta, n)


def _factor(n: Expr, combine: Callable[[Expr, Expr], Expr]) -> Expr | None:
    """a*c ± b*c -> (a ± b)*c and a/c ± b/c -> (a ± b)/c (c the same node on both sides); likewise for matrix
    products, A @ c ± B @ c -> (A ± B) @ c, with v @ M read as M.T @ v for a vector v (x @ B + B @ x ->
    (B.T + B) @ x)."""
    a, b = n.args
    if a.op == b.op == "matmul" and n.dtype.kind == "f":
        return _factor_products(n, combine)
    if a.op == b.op == "div" and a.args[1] is b.args[1] and a.args[0].dtype.kind == b.args[0].dtype.kind == "f":
        return conform(combine(a.args[0], b.args[0]) / a.args[1], n)
    if a.op == b.op == "mul":
        for i in (0, 1):
            for j in (0, 1):
                # NOTE: only float cofactors: for boolean masks m1 + m2 is a logical or, not a sum.
                if a.args[i] is b.args[j] and a.args[1 - i].dtype.kind == b.args[1 - j].dtype.kind == "f":
                    common = a.args[i]
                    rest = combine(a.args[1 - i], b.args[1 - j])
                    return conform(rest * common if i == 1 else common * rest, n)
    return None


@rule("mul")
def mul_identities(n: Expr, ctx: Simplifier) -> Expr | None:
    a, b = n.args
    for x, y in ((a, b), (b, a)):
        if is_value(y, 1):  # x * 1 -> x
            return conform(x, n)
        if is_value(y, 0):  # x * 0 -> zeros of the result's shape
            return zeros(n)
        if is_value(y, -1):  # x * -1 -> -x
            return conform(-x, n)
    if a.op == "neg":  # (-a) * b -> -(a * b)
        return -(a.args[0] * b)
    if b.op == "neg":  # a * (-b) -> -(a * b)
        return -(a * b.args[0])
    # a * (k / c) -> (a * k) / c, unless k / c is a float16 or float32 that NumPy rounds before multiplying
    if b.op == "div" and scalar_const(b.args[0]) is not None and b.dtype == n.dtype:
        return (a * b.args[0]) / b.args[1]
    if a.op == "div" and scalar_const(a.args[0]) is not None and a.dtype == n.dtype:  # (k / c) * b -> (k * b) / c
        return (a.args[0] * b) / a.args[1]
    for k, x in ((a, b), (b, a)):
        if _negative_const(k) and k.ndim == 0:  # (-k) * x -> -(k * x): negations outermost
            return conform(-((-k) * x), n)
        m = _reciprocal_int(k)
        if m is not None and scalar_const(x) is None:  # (1/m) * x -> x / m
            return conform(x / m, n)
    if scalar_const(b) is not None and scalar_const(a) is None and a.ndim >= b.ndim:
        return b * a  # x * k -> k * x (constants first, so k1 * (k2 * x) can fold)
    if a.op == "const" and b.op == "mul" and b.args[0].op == "const":  # k1 * (k2 * x) -> (k1*k2) * x
        return conform(_const_product(a, b.args[0], n.dtype) * b.args[1], n)
    return None


def _const_product(k1: Expr, k2: Expr, dtype: np.dtype) -> Expr:
    """``k1 * k2`` for the constant factors of a product of dtype ``dtype`` (computed in that dtype where the
    constants' own would differ: an int8 k1 * k2 would wrap)."""
    if dtype != result_dtype(k1, k2) and not (k1.weak and k2.weak):
        k1, k2 = F.astype(k1, dtype), F.astype(k2, dtype)
    return k1 * k2


_NESTED_FACTORS = 8  # how deep fold_nested_constant_factors looks for a constant in a chain of products


@rule("mul")
def fold_nested_constant_factors(n: Expr, ctx: Simplifier) -> Expr | None:
    """Constant factors multiply out across nested products and quotients: k1 * (k2 * a * b) -> (k1*k2) * a * b,
    and k1 * (u / k2) -> (k1/k2) * u, k1 * (u / (k2 * v)) -> (k1/k2) * u / v when one constant divides the other
    (2 * (u / (2 * v)) -> u / v; the folded form rounds once where the nested one rounds twice)."""
    k1, b = n.args
    if k1.op != "const" or k1.ndim or n.dtype.kind != "f":
        return None
    if b.op == "mul":
        folded = _scale_leftmost_factor(b.args[0], k1, n.dtype, _NESTED_FACTORS)
        return None if folded is None else conform(folded * b.args[1], n)
    if b.op != "div":
        return None
    u, v = b.args
    k2, rest = (v, None) if v.op == "const" and v.ndim == 0 else _coefficient(v)
    ratio = None if k2 is None else _divides(k1, k2)
    if ratio is None:
        return None
    m, on_top = ratio
    if on_top:
        u = _const_like(m, k1) * u
    else:
        rest = _const_like(m, k2) if rest is None else _const_like(m, k2) * rest
    return conform(u if rest is None else u / rest, n)


def _scale_leftmost_factor(e: Expr, k1: Expr, dtype: np.dtype, depth: int) -> Expr | None:
    """``k1 * e`` for a chain of products ``e`` whose leftmost factor is a 0-d constant ``k2``, with ``k1 * k2``
    in its place; None when there is none within ``depth`` products."""
    if e.op == "const" and e.ndim == 0:
        return _const_product(k1, e, dtype)
    if e.op != "mul" or depth == 0:
        return None
    inner = _scale_leftmost_factor(e.args[0], k1, dtype, depth - 1)
    return None if inner is None else inner * e.args[1]


@rule("div")
def div_identities(n: Expr, ctx: Simplifier) -> Expr | None:
    a, b = n.args
    if is_value(b, 1):  # x / 1 -> x
        return conform(a, n)
    if is_value(a, 0) and scalar_const(b) is None:  # 0 / x -> 0
        return zeros(n)
    if a.op == "neg":  # (-a) / b -> -(a / b)
        return -(a.args[0] / b)
    if b.op == "neg":  # a / (-b) -> -(a / b)
        return -(a / b.args[0])
    if _negative_const(a) and a.ndim == 0:  # (-k) / x -> -(k / x)
        return conform(-((-a) / b), n)
    if a.op == "div" and a.args[1].ndim == 0 and b.ndim == 0:  # (a / c) / d -> a / (c * d)
        return a.args[0] / (a.args[1] * b)
    if a.op == "mul" and n.dtype.kind == "f":  # (k * c * d) / c -> k * d: a factor of the product cancels
        rest = _without_factor(a, b)
        if rest is not None:
            return conform(rest, n)
    return _fold_quotient_constants(n)


def _without_factor(product: Expr, factor: Expr) -> Expr | None:
    """``product`` (a chain of ``mul``) with one occurrence of ``factor`` taken out, or None if it has none."""
    if product.op != "mul":
        return None
    a, b = product.args
    if b is factor:
        return a
    if a is factor:
        return b
    rest = _without_factor(a, factor)
    return None if rest is None else rest * b


def _fold_quotient_constants(n: Expr) -> Expr | None:
    """(k1 * u) / (k2 * v) -> (k1 / k2) * u / v when one constant divides the other (2 * u / (2 * v) -> u / v)."""
    (k1, u), (k2, v) = (_coefficient(x) for x in n.args)
    if k1 is None or k2 is None or n.dtype.kind != "f":
        return None
    ratio = _divides(k1, k2)
    if ratio is None:
        return None
    m, on_top = ratio
    if on_top:  # k2 divides k1: the quotient of the constants stays on the numerator
        return conform(_const_like(m, k1) * u / v, n)
    return conform(u / (_const_like(m, k2) * v), n)


def _divides(k1: Expr, k2: Expr) -> tuple[float, bool] | None:
    """``(k1 / k2, True)`` when the constant ``k2`` divides ``k1``, ``(k2 / k1, False)`` when ``k1`` divides
    ``k2``, else None (also for zero, non-finite or too distant constants)."""
    c1, c2 = scalar_const(k1), scalar_const(k2)
    if not c1 or not c2 or not np.isfinite(c1) or not np.isfinite(c2) or max(abs(c1 / c2), abs(c2 / c1)) > 2.0**53:
        return None
    if c1 % c2 == 0:
        return c1 // c2, True
    if c2 % c1 == 0:
        return c2 // c1, False
    return None


def _const_like(value: float, k: Expr) -> Expr:
    """The number ``value`` as a constant of ``k``'s dtype, weak (a Python scalar) if ``k`` is."""
    if k.weak:
        return constant(type(const_value(k).item())(value))
    return constant(np.asarray(value, dtype=k.dtype))


@rule("neg")
def neg_identities(n: Expr, ctx: Simplifier) -> Expr | None:
    x = n.args[0]
    if x.op == "neg":  # --x -> x
        return x.args[0]
    if x.op == "sub":  # -(a - b) -> b - a
        return conform(x.args[1] - x.args[0], n)
    return None


def _negative_const(e: Expr) -> bool:
    """True for a negative constant whose negation fits its dtype (-(-2**63) does not fit int64)."""
    c = scalar_const(e)
    if e.op != "const" or c is None or c >= 0:
        return False
    return e.dtype.kind != "i" or c > np.iinfo(e.dtype).min


def _reciprocal_int(e: Expr) -> int | None:
    """m when the constant ``e`` is exactly 1/m for an integer 1 < m <= 2**53 (0.125 -> 8; 1e-30 stays a float)."""
    c = scalar_const(e)
    if e.op != "const" or e.ndim or not c or c <= 2.0**-53 or c >= 1:
        return None
    m = round(1 / c)
    return m if m > 1 and 1.0 / m == c else None


@rule("pow")
def pow_identities(n: Expr, ctx: Simplifier) -> Expr | None:
    a, b = n.args
    if is_value(b, 1):  # x**1 -> x
        return conform(a, n)
    if is_value(b, 0):  # x**0 -> 1
        return conform(constant(np.ones((), dtype=n.dtype)), n)
    return None


@rule("where")
def where_same(n: Expr, ctx: Simplifier) -> Expr | None:
    c, a, b = n.args
    if a is b:  # where(c, x, x) -> x
        return conform(a, n)
    return None


# -- broadcasts that element-wise ops perform anyway ------------------------------------------
@rule("*")
def drop_broadcast(n: Expr, ctx: Simplifier) -> Expr | None:
    """op(..., broadcast_to(x, s), ...) -> op(..., x, ...) when the result keeps its shape."""
    for i, a in enumerate(n.args):
        if a.op in ("broadcast_like", "broadcast_to"):
            args = list(n.args)
            args[i] = a.args[0]
            try:
                shape = broadcast_shapes(n.op, *(x.shape for x in args))
            except ValueError:
                continue
            if shape == n.shape:
                return make(n.op, args, n.attrs)
    return None


@rule("*")
def lift_scalar_broadcast(n: Expr, ctx: Simplifier) -> Expr | None:
    """op(broadcast(c, r), s) with 0-d c and s -> broadcast(op(c, s), r): compute on the scalar only."""
    refs = [_bcast_scalar(a) for a in n.args]
    if not any(refs):
        return None
    if not all(r is not None or a.ndim == 0 for r, a in zip(refs, n.args)):
        return None
    ref = next(r[1] for r in refs if r is not None)
    if any(r is not None and r[1] is not ref for r in refs):
        return None
    scalar_args = [r[0] if r is not None else a for r, a in zip(refs, n.args)]
    return F.broadcast_like(make(n.op, scalar_args, n.attrs), ref)


@rule("broadcast_like")
def broadcast_like_identities(n: Expr, ctx: Simplifier) -> Expr | None:
    x, ref = n.args
    if x.shape == ref.shape and None not in x.shape:  # broadcast to its own shape -> x
        return x
    if x.op == "broadcast_like":  # broadcast(broadcast(c, r1), r2) -> broadcast(c, r2)
        return F.broadcast_like(x.args[0], ref)
    if x.shape == n.shape and _same_lengths(x, ref):  # x already has the shape (same run-time axes)
        return x
    if ref.args and OPS[ref.op].elementwise:  # the shape of f(a, ...) is a's: read it there, compute nothing
        for a in ref.args:
            if a.shape == ref.shape:
                return F.broadcast_like(x, a)
    if ref.op == "broadcast_like":  # broadcast(x, broadcast(c, r)) -> broadcast(x, r)
        return F.broadcast_like(x, ref.args[1])
    if not _shape_is_free(ref):  # reading ref's shape would compute ref: build the shape from input lengths
        shape = _shape_of(ref)
        if shape is not None:
            return F.broadcast_like(x, shape)
    return None


def _shape_is_free(e: Expr) -> bool:
    """True when generated code reads ``e.shape`` without computing anything: a symbol, a constant, a
    ``shape`` node, or a view of a symbol or constant."""
    if e.op == "shape":
        return True
    while e.op in ("transpose", "expand_dims", "squeeze", "getitem", "reshape"):
        e = e.args[0]
    return e.is_symbol or e.op == "const"


def _shape_of(ref: Expr) -> Expr | None:
    """A ``shape`` node for ``ref``'s shape with each open axis read off an input (``x.shape[0]``), or None."""
    template: list[int | None] = []
    lengths: list[Expr] = []
    for i, d in enumerate(ref.shape):
        if d is not None:
            template.append(d)
            continue
        length = _free_length(ref, i)
        if length is None:
            return None
        if length.op == "const":
            template.append(int(const_value(length)))
        else:
            template.append(None)
            lengths.append(length)
    return make("shape", lengths, {"shape": tuple(template)})


def _free_length(ref: Expr, i: int) -> Expr | None:
    """The run-time length of axis ``i`` of ``ref`` as an integer that computes nothing, or None.

    That is a constant, the length of an input's axis (``x.shape[0]``), or the length of the same slice of the
    input's axis that ``ref`` took of a product (``x[::2].shape[0]`` for ``(x @ W)[::2]``).
    """
    length = canonical_dim(make("dim", (ref,), {"axis": i}))
    if length.op == "const":
        return length
    if length.op != "dim" or length.args[0].op == "shape":
        return None
    src, ax = length.args[0], length.attrs["axis"]
    if _shape_is_free(src):
        return length
    if src.op == "getitem":
        entry, operand_axis = index_entry(src, ax)
        inner = _free_length(src.args[0], operand_axis) if entry[0] == "slice" else None
        if inner is None or inner.op != "dim":
            return None
        base, k = inner.args[0], inner.attrs["axis"]
        view = make("getitem", (base,), {"index": (("slice", None, None, None),) * k + (entry,)})
        return make("dim", (view,), {"axis": k})
    return None


def _same_lengths(x: Expr, ref: Expr) -> bool:
    dims = [make("dim", (e,), {"axis": i}) for e in (x, ref) for i in range(e.ndim) if e.shape[i] is None]
    half = len(dims) // 2
    return all(canonical_dim(a) is canonical_dim(b) for a, b in zip(dims[:half], dims[half:]))


@rule("scatter")
def scatter_into_shape(n: Expr, ctx: Simplifier) -> Expr | None:
    """scatter(g, like) -> scatter(g, shape of like) when reading like's shape would compute like."""
    like = n.args[1]
    if _shape_is_free(like):
        return None
    shape = _shape_of(like)
    return None if shape is None else make("scatter", (n.args[0], shape), n.attrs)


@rule("expand_dims", "squeeze", "transpose")
def shape_op_of_scalar_broadcast(n: Expr, ctx: Simplifier) -> Expr | None:
    """expand_dims(broadcast(c, r)) -> broadcast(c, expand_dims(r)) for 0-d c (likewise squeeze, transpose)."""
    src = _bcast_scalar(n.args[0])
    if src is None:
        return None
    c, ref = src
    return F.broadcast_like(c, make(n.op, (ref,), n.attrs))


@rule("expand_dims", "squeeze")
def undo_inverse_shape_op(n: Expr, ctx: Simplifier) -> Expr | None:
    """expand_dims(squeeze(x, a), a) -> x and squeeze(expand_dims(x, a), a) -> x."""
    x = n.args[0]
    inverse = "squeeze" if n.op == "expand_dims" else "expand_dims"
    if x.op == inverse and x.attrs["axis"] == n.attrs["axis"]:
        return x.args[0]
    return None


@rule("transpose")
def double_transpose(n: Expr, ctx: Simplifier) -> Expr | None:
    x = n.args[0]
    if x.op == "transpose":  # transpose(transpose(x, p), q) -> transpose(x, p[q])
        perm = tuple(x.attrs["axes"][i] for i in n.attrs["axes"])
        return F.transpose(x.args[0], perm)
    return None


@rule("reshape")
def double_reshape(n: Expr, ctx: Simplifier) -> Expr | None:
    x = n.args[0]
    if x.op == "reshape":  # reshape(reshape(x, s1), s2) -> reshape(x, s2)
        return F.reshape(x.args[0], n.attrs["newshape"])
    if x.shape == n.shape and (None not in x.shape or _same_open_length(x.shape, n.attrs["newshape"])):
        return x
    if x.op == "broadcast_like" and x.args[0].ndim == 0:  # a reshaped fill is a fill of the reshaped shape
        return F.broadcast_like(x.args[0], F.reshape(x.args[1], n.attrs["newshape"]))
    return None


def _same_open_length(shape: tuple, newshape: tuple) -> bool:
    """True when reshaping ``shape`` (one open axis) to ``newshape`` keeps every axis: the same static lengths,
    -1 at the open axis, and no zero length (so the sizes determine the open length)."""
    return shape.count(None) == 1 and 0 not in shape and newshape == tuple(-1 if d is None else d for d in shape)


@rule("matmul")
def matmul_by_broadcast_scalar(n: Expr, ctx: Simplifier) -> Expr | None:
    """A @ broadcast(c) over a vector -> c * sum(A, axis=-1): a product with a constant vector is a sum."""
    a, b = n.args
    src = _bcast_scalar(b)
    if src is not None and b.ndim == 1 and a.ndim >= 2:
        return conform(src[0] * F.sum(a, axis=-1), n)
    return None


# -- textbook forms: identity matrices, outer products, traces, transposes ---------------------
_LEAVES = ("eye", "const")  # the ops an identity matrix can be (is_identity)


@rule("matmul")
def matmul_by_identity(n: Expr, ctx: Simplifier) -> Expr | None:
    """I @ A -> A and A @ I -> A (I an identity matrix: eye(n) or a constant equal to one)."""
    a, b = n.args
    for x, other in ((a, b), (b, a)):
        if x.op in _LEAVES and other.shape == n.shape and is_identity(x):
            return conform(other, n)
    if a.ndim == 1 and b.op == "transpose" and b.ndim == 2:  # v @ M.T -> M @ v
        return b.args[0] @ a
    for i, v in enumerate(n.args):  # M @ (k * v) -> k * (M @ v) for a vector v: the constant factor in front
        if v.op == "mul" and v.ndim == 1 and v.args[0].op == "const" and v.args[0].ndim == 0:
            product = a @ v.args[1] if i else v.args[1] @ b
            return conform(v.args[0] * product, n)
    return None


@rule("mul")
def mul_by_identity(n: Expr, ctx: Simplifier) -> Expr | None:
    """I * v -> diag(v) for a vector v along either axis of I (I * v[None, :] and I * v[:, None] alike), and
    (k * I) * v -> k * diag(v)."""
    for i in (0, 1):
        eye, v = n.args[i], n.args[1 - i]
        k = None
        if eye.op == "mul" and eye.args[0].ndim == 0:
            k, eye = eye.args
        if v.op == "expand_dims" and v.ndim == 2 and v.attrs["axis"] in ((0,), (1,)):
            v = v.args[0]
        if v.ndim == 1 and eye.ndim == 2 and v.shape[0] == eye.shape[0] and is_identity(eye):
            return conform(F.diag(v) if k is None else k * F.diag(v), n)
    distributed = _distribute_over_identity(n)
    return _outer_of_expanded(n) if distributed is None else distributed


def _distribute_over_identity(n: Expr) -> Expr | None:
    """v * (I ± W) -> v * I ± v * W for a vector v, so that v * I becomes diag(v) (the Jacobian of softmax,
    s * (I - s[:, None]), reads diag(s) - outer(s, s))."""
    for i in (0, 1):
        v, d = n.args[i], n.args[1 - i]
        if v.ndim == 1 and d.op in ("add", "sub") and d.ndim == 2 and is_identity(d.args[0]):
            return conform(make(d.op, (v * d.args[0], v * d.args[1])), n)
    return None


def _outer_of_expanded(n: Expr) -> Expr | None:
    """expand_dims(a, 1) * expand_dims(b, 0) -> outer(a, b) for vectors a, b (either order of the factors; the
    row may be b itself, which broadcasts alike)."""
    for i in (0, 1):
        col, row = n.args[i], n.args[1 - i]
        if col.op != "expand_dims" or col.attrs["axis"] != (1,) or col.args[0].ndim != 1:
            continue
        b = row.args[0] if row.op == "expand_dims" and row.attrs["axis"] == (0,) else row
        if b.ndim == 1:
            return conform(F.outer(col.args[0], b), n)
    return None


@rule("sum")
def sum_times_identity(n: Expr, ctx: Simplifier) -> Expr | None:
    """sum(M * I) -> trace(M): the sum of a matrix masked by the identity is its trace."""
    x = n.args[0]
    if x.op != "mul" or x.ndim != 2 or n.attrs["axis"] != (0, 1) or n.attrs["keepdims"]:
        return None
    for i in (0, 1):
        m = x.args[1 - i]
        if m.shape == x.shape and is_identity(x.args[i]):
            return conform(F.trace(m), n)
    return None


@rule("sum")
def sum_of_diagonal_matrix(n: Expr, ctx: Simplifier) -> Expr | None:
    """sum(diag(v), axis=0 or 1) -> v and sum(I, axis=0 or 1) -> ones: each row and column holds one entry."""
    x, axes = n.args[0], n.attrs["axis"]
    if x.ndim != 2 or axes not in ((0,), (1,)) or not (x.op == "diag" or is_identity(x)):
        return None
    v = x.args[0] if x.op == "diag" else constant(np.ones((), dtype=n.dtype))
    return conform(F.expand_dims(v, axes) if n.attrs["keepdims"] and v.ndim else v, n)


def _fill(e: Expr) -> Expr | None:
    """The 0-d value ``c`` of a fill (a broadcast of ``c``, or a constant whose elements all equal ``c``) in
    ``e``'s dtype, else None."""
    if e.op in ("broadcast_like", "broadcast_to") and e.args[0].ndim == 0:
        return e.args[0]
    c = scalar_const(e) if e.op == "const" else None
    return None if c is None else constant(np.asarray(c, dtype=e.dtype))


def _constant_factor(e: Expr) -> tuple[Expr, Expr] | None:
    """``(k, x)`` when ``e`` is ``k * x`` or ``x * k`` for a 0-d constant ``k``."""
    if e.op == "mul":
        for i in (0, 1):
            if e.args[i].op == "const" and e.args[i].ndim == 0:
                return e.args[i], e.args[1 - i]
    return None


@rule("diag")
def diag_textbook(n: Expr, ctx: Simplifier) -> Expr | None:
    """diag(k * v) -> k * diag(v) for a constant k (so that nested factors fold), and diag(c) of a vector
    filled with c -> c * eye(n)."""
    v = n.args[0]
    scaled = _constant_factor(v)
    if scaled is not None:
        return conform(scaled[0] * F.diag(scaled[1]), n)
    c = _fill(v)
    if c is not None and n.shape[0] is not None:
        return conform(c * F.eye(n.shape[0], dtype=n.dtype), n)
    return None


@rule("diagonal")
def diagonal_textbook(n: Expr, ctx: Simplifier) -> Expr | None:
    """diagonal(k * M) -> k * diagonal(M) for a constant k, diagonal(diag(v)) -> v, and the diagonal of a fill or
    of an identity matrix -> a fill (of ones)."""
    m = n.args[0]
    scaled = _constant_factor(m)
    if scaled is not None:
        return conform(scaled[0] * F.diag(scaled[1]), n)
    if m.op == "diag":
        return conform(m.args[0], n)
    c = constant(np.ones((), dtype=n.dtype)) if m.op in _LEAVES and is_identity(m) else _fill(m)
    return None if c is None else conform(c, n)


@rule("trace")
def trace_of_transpose(n: Expr, ctx: Simplifier) -> Expr | None:
    """trace(A.T) -> trace(A)."""
    x = n.args[0]
    if x.op == "transpose" and x.ndim == 2:
        return F.trace(x.args[0])
    return None


_TERMWISE = ("add", "sub", "mul", "div", "neg")  # element-wise ops a transpose distributes over


def _absorbs_transpose(e: Expr, depth: int = 3) -> bool:
    """True when ``e.T`` simplifies to no more transposes than ``e``: a transpose, a symmetric matrix (I,
    diag(v)), an outer product (its factors swap), a scalar, or an element-wise op of those (``depth`` levels)."""
    if e.ndim == 0 or e.op in ("transpose", "outer", "diag") or is_identity(e):
        return True
    return depth > 0 and e.op in _TERMWISE and all(_absorbs_transpose(a, depth - 1) for a in e.args)


@rule("transpose")
def transpose_textbook(n: Expr, ctx: Simplifier) -> Expr | None:
    """I.T -> I, diag(v).T -> diag(v), outer(a, b).T -> outer(b, a), inv(A).T -> inv(A.T), (A.T @ B).T -> B.T @ A,
    and the transpose of a sum or product taken term by term when that leaves fewer transposes ((A + A.T).T ->
    A.T + A)."""
    x = n.args[0]
    if x.ndim != 2:
        return None
    if x.op == "diag" or is_identity(x):
        return x
    if x.op == "outer":
        return F.outer(x.args[1], x.args[0])
    if x.op == "inv":  # inv(A).T -> inv(A.T): the book's A^{-T}
        return make("inv", (F.transpose(x.args[0]),), x.attrs)
    if x.op == "matmul" and x.args[0].ndim == x.args[1].ndim == 2:
        if x.args[0].op == "transpose" or x.args[1].op == "transpose":
            return F.transpose(x.args[1]) @ F.transpose(x.args[0])
        return None
    if x.op in _TERMWISE and all(a.ndim in (0, 2) for a in x.args):
        before = 1 + sum(a.op == "transpose" for a in x.args)
        if sum(not _absorbs_transpose(a) for a in x.args) < before:
            return make(x.op, tuple(F.transpose(a) if a.ndim else a for a in x.args), x.attrs)
    return None


@rule("cast")
def cast_identities(n: Expr, ctx: Simplifier) -> Expr | None:
    x = n.args[0]
    if x.dtype == n.dtype:
        return x
    if x.op == "const":
        return None  # folded by the generic rule
    if x.op == "broadcast_like":  # cast(broadcast(c, r)) -> broadcast(cast(c), r)
        return F.broadcast_like(F.astype(x.args[0], n.dtype), x.args[1])
    return None


# -- reductions -------------------------------------------------------------------------------
@rule("sum")
def sum_identities(n: Expr, ctx: Simplifier) -> Expr | None:
    x = n.args[0]
    axes, keep = n.attrs["axis"], n.attrs["keepdims"]
    if not axes:  # sum over no axes -> x
        return x
    if keep and all(x.shape[i] == 1 for i in axes):  # summing length-1 axes and keeping them -> x
        return x
    if x.op == "neg":  # sum(-x) -> -sum(x)
        return -F.sum(x.args[0], axis=axes, keepdims=keep)
    if x.op == "transpose" and not keep:  # sum(transpose(x), axes) -> sum(x, those axes) when order is kept
        perm = x.attrs["axes"]
        kept = [perm[i] for i in range(x.ndim) if i not in axes]
        if kept == sorted(kept):
            return F.sum(x.args[0], axis=tuple(perm[i] for i in axes))
    if x.op in ("mul", "div") and x.args[1].ndim == 0 and x.args[0].ndim == x.ndim:
        # sum(x * s) -> sum(x) * s ; sum(x / s) -> sum(x) / s  (s a scalar), when sum(x) then simplifies away
        inner = _sum_if_it_vanishes(x.args[0], axes, keep, ctx)
        if inner is not None:
            return inner * x.args[1] if x.op == "mul" else inner / x.args[1]
    if x.op == "mul" and x.args[0].ndim == 0:  # sum(s * x) -> s * sum(x), likewise
        inner = _sum_if_it_vanishes(x.args[1], axes, keep, ctx)
        if inner is not None:
            return x.args[0] * inner
    src = _bcast_scalar(x)
    if src is not None and n.ndim == 0:  # sum(broadcast(c, r)) -> c * size(r)
        c, ref = src
        return conform(c * F.count(ref, axes), n)
    if x.op == "onehot" and axes == (x.ndim - 1,):  # a one-hot row sums to one
        one = constant(np.ones((), dtype=n.dtype))
        labels = x.args[0]
        ref = F.expand_dims(labels, -1) if keep else labels
        return F.broadcast_like(one, ref) if ref.ndim else one
    return None


def _sum_if_it_vanishes(x: Expr, axes: tuple, keep: bool, ctx: Simplifier) -> Expr | None:
    """sum(x, axes) simplified, if that leaves no sum over x (else None: keep the factor inside)."""
    out = ctx.candidate(F.sum(x, axis=axes, keepdims=keep))
    if out is None:
        return None
    return None if out.op in ("sum", "neg") and out.args[0] is x or out.op == "sum" else out


# -- driver -----------------------------------------------------------------------------------
MAX_REWRITES = 64
MAX_NESTED = 32  # rules simplifying a candidate subgraph (sum(x * s) tries sum(x)) nest at most this deep


class Simplifier:
    """One simplification run: the rules it applies and the nodes simplified so far.

    Each rule is called as ``rule(node, ctx)`` with the running simplifier as ``ctx``, so that it can
    simplify a candidate subgraph (:meth:`candidate`) in the same run.
    """

    def __init__(self, extra: dict[str, list[Rule]] | None = None) -> None:
        # id(node) -> (node, simplified); the node is kept so that its id is not reused
        self.memo: dict[int, tuple[Expr, Expr]] = {}
        self.open: set[int] = set()  # ids of the nodes whose subgraph is being simplified now
        self.nested = 0  # how many rules are simplifying a candidate subgraph right now
        self.extra = extra or {}

    def run(self, roots: Sequence[Expr]) -> list[Expr]:
        """The simplified forms of ``roots``."""
        return [self._graph(r) for r in roots]

    def candidate(self, e: Expr) -> Expr | None:
        """``e`` simplified in this run, for a rule weighing a rewrite; None when such tries already nest
        ``MAX_NESTED`` deep (each nests Python calls: a deep chain stops trying)."""
        if self.nested >= MAX_NESTED:
            return None
        self.nested += 1
        try:
            return self._graph(e)
        finally:
            self.nested -= 1

    def _graph(self, root: Expr) -> Expr:
        """Simplify the graph of ``root`` (the nodes not simplified yet), iteratively: no recursion limit.

        Each pending subgraph is a generator on an explicit stack; it yields a rewritten node whose
        simplified form it needs and is resumed with that form once the node's own subgraph is done.
        """
        if id(root) in self.memo:
            return self.memo[id(root)][1]
        if id(root) in self.open:  # a rewrite cycle (a -> b -> a): stop rewriting here
            return root
        stack = [(root, self._subgraph(root))]
        self.open.add(id(root))
        value: Expr | None = None
        while stack:
            try:
                wanted = stack[-1][1].send(value)
            except StopIteration as done:
                self.open.discard(id(stack.pop()[0]))
                value = done.value
                continue
            if id(wanted) in self.memo:
                value = self.memo[id(wanted)][1]
            elif id(wanted) in self.open:
                value = wanted
            else:
                stack.append((wanted, self._subgraph(wanted)))
                self.open.add(id(wanted))
                value = None
        return self.memo[id(root)][1]

    def _subgraph(self, root: Expr) -> Generator[Expr, Expr, Expr]:
        """Simplify each not yet simplified node under ``root``, arguments first; yields rewrites to simplify."""
        for node in topo_order([root], stop=self.memo):
            if id(node) in self.memo:  # simplified meanwhile, by a rewrite of an earlier node
                continue
            cur = with_args(node, tuple(self.memo[id(a)][1] for a in node.args))
            for _ in range(MAX_REWRITES):
                new = self._apply(cur)
                if new is None:
                    break
                new = yield new  # its simplified form
                if new is cur:
                    break
                if node._label is not None and new._label is None and not (new.is_symbol or new.op == "const"):
                    new = new.named(node._label)
                    self.memo[id(new)] = (new, new)
                cur = new
            self.memo[id(node)] = (node, cur)
            self.memo.setdefault(id(cur), (cur, cur))
        return self.memo[id(root)][1]

    def _apply(self, n: Expr) -> Expr | None:
        out = self._rewrite(n)
        if out is not None and out.dtype != n.dtype:  # every rewrite keeps the node's dtype (float32 stays)
            out = F.astype(out, n.dtype)
        return out

    def _rewrite(self, n: Expr) -> Expr | None:
        out = fold(n)
        if out is not None:
            return out if out is not n else None
        rules = [*self.extra.get(n.op, []), *RULES.get(n.op, [])]
        if OPS[n.op].elementwise:
            rules = [*rules, *ELEMENTWISE_RULES]
        for r in rules:
            out = r(n, self)
            if out is not None and out is not n:
                return out
        return None


def simplify(exprs: Expr | Sequence[Expr], extra: dict[str, list[Rule]] | None = None) -> Expr | list[Expr]:
    """Simplified equivalents of ``exprs`` (same shapes and dtypes; user labels kept).

    ``extra`` adds rules (per op name, tried first), e.g. the lowering rules of :mod:`symdiff.lower`.

    >>> x = sd.Input("x", shape=(3,))
    >>> y = x * 1 + 0 * sd.exp(x) + x / 2
    >>> print(y)
    x * 1 + 0 * exp(x) + x / 2
    >>> print(sd.simplify(y))
    1.5 * x
    """
    if isinstance(exprs, Expr):
        return Simplifier(extra).run([exprs])[0]
    return Simplifier(extra).run(list(exprs))
