"""Linear algebra (``sd.linalg``): ``inv``, ``det``, ``slogdet`` (``signdet``, ``logabsdet``), ``solve``, ``norm``.

The matrix ops take square matrices ``(n, n)`` or stacks of them ``(..., n, n)``, like ``np.linalg``: the matrix
axes must have known lengths, the stack axes may be open (``None``). Integer and boolean operands are computed in
float64, float16 is refused (NumPy's linalg refuses it too). The gradient rules are the textbook ones (the Matrix
Cookbook, ch. 2) and never form an inverse that a solve can replace: the inverse transpose ``A^{-T}`` in the
gradient of ``logabsdet`` is ``solve(A.T, I)``, which prints as ``inv(A.T)`` (LaTeX ``A^{-\\top}``) and compiles to
``np.linalg.solve``; the gradient of ``det`` is the cofactor matrix ``cofactor(A)`` (``det(A) A^{-T}``), computed
from an SVD so that it holds for singular matrices too.
"""

from __future__ import annotations

import numpy as np

from .. import functions as F
from .. import linalg as LA
from ..errors import DTypeError, ShapeError
from ..graph import Expr, broadcast_shapes, format_shape, result_dtype
from .batch import align, mT, nbatch, shifted, traced
from .kernels import _cofactor
from .leaves import is_identity
from .reductions import _keep, _reduced_axis_source, _reduced_shape
from .registry import ATOM, MUL, Fmt, broadcast_axis_source, call, latex_call, register, wrap


# -- shapes and dtypes -----------------------------------------------------------------------------
def _linalg_dtype(op: str, *args: Expr) -> np.dtype:
    """NumPy's linalg dtype: float32/float64 stay, integers and booleans are computed in float64, float16 refused."""
    dt = result_dtype(*args)
    if dt.kind != "f":
        return np.dtype("float64")
    if dt.itemsize < 4:
        raise DTypeError(f"{op}: dtype {dt} is not supported (np.linalg refuses it); cast to float32 or float64")
    return dt


def _check_square(op: str, a: Expr, shapes: str = "") -> int:
    """The order ``n`` of the square matrices ``a`` (shape ``(..., n, n)``); else a ShapeError naming ``op`` and
    ``shapes`` (default: ``a``'s shape)."""
    shapes = shapes or f"shape {format_shape(a.shape)}"
    if a.ndim < 2:
        raise ShapeError(f"{op}: expected a square matrix or a stack of them, shape (..., n, n); got {shapes}")
    rows, cols = a.shape[-2:]
    if rows is None or cols is None:
        raise ShapeError(
            f"{op}: the matrix axes (the last two) must have known lengths, got {shapes}; an open length (None) "
            "is allowed in the stack axes only"
        )
    if rows != cols:
        raise ShapeError(f"{op}: expected square matrices, shape (..., n, n); got {shapes} ({rows} != {cols})")
    return rows


def _infer_square(op: str, drop: int):
    """Shape rule of a function of square matrices whose result drops their last ``drop`` axes."""

    def infer(args, attrs):
        (a,) = args
        _check_square(op, a)
        return a.shape[: a.ndim - drop], _linalg_dtype(op, a)

    return infer


def _infer_solve(args, attrs):
    a, b = args
    shapes = f"shapes {format_shape(a.shape)} (A) and {format_shape(b.shape)} (b)"
    n = _check_square("solve", a, shapes)
    if b.ndim == 0:
        raise ShapeError(f"solve: b must be a vector (n,) or a stack of matrices (..., n, k); got {shapes}")
    rows = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if rows != n:
        raise ShapeError(
            f"solve: {shapes} do not fit: A has {n} rows, b has {rows} (b is (n,) or (..., n, k); "
            "an open length (None) does not fit a known one)"
        )
    dtype = _linalg_dtype("solve", a, b)
    if b.ndim == 1:  # NumPy 2: a 1-D b is one vector for every matrix of the stack
        return a.shape[:-1], dtype
    try:
        stack = broadcast_shapes("solve", a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"solve: the stack axes of {shapes} cannot be broadcast together") from None
    return (*stack, n, b.shape[-1]), dtype


def _norm_axes(x: Expr, axis: tuple[int, ...] | None) -> tuple[int, ...]:
    return tuple(range(x.ndim)) if axis is None else axis


def _infer_norm(args, attrs):
    (x,) = args
    shape = _reduced_shape(x, {"axis": _norm_axes(x, attrs["axis"]), "keepdims": attrs["keepdims"]})
    return shape, x.dtype if x.dtype.kind == "f" else np.dtype("float64")


# -- gradients ---------------------------------------------------------------------------------------
def _matrices(g: Expr) -> Expr:
    """One value per matrix, given two trailing length-1 axes, to scale a stack of matrices."""
    return g if g.ndim == 0 else F.expand_dims(g, (g.ndim, g.ndim + 1))


def _inv_transpose(a: Expr) -> Expr:
    """``A^{-T}`` as ``solve(A.T, I)``: printed ``inv(A.T)``, computed by ``np.linalg.solve``."""
    n = a.shape[-1]
    return LA.solve(mT(a), F.eye(n, dtype=a.dtype if a.dtype.kind == "f" else "float64"))


def _solve_grad_b(g: Expr, out: Expr, a: Expr, b: Expr) -> Expr:
    # x = A^{-1} b  ->  db = A^{-T} g, one transposed solve
    if b.ndim == 1 and a.ndim > 2:  # one right-hand side for a stack: solve each g as a column
        return F.squeeze(LA.solve(mT(a), F.expand_dims(g, -1)), -1)
    return LA.solve(mT(a), g)


def _solve_grad_a(g: Expr, out: Expr, a: Expr, b: Expr) -> Expr:
    # dA = -db x^T (the same solve as db's node: hash-consed, computed once)
    db = _solve_grad_b(g, out, a, b)
    if b.ndim == 1:
        return -(F.expand_dims(db, -1) * F.expand_dims(out, -2))
    return -(db @ mT(out))


def _norm_vjp(g: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...] | None, keepdims: bool) -> Expr:
    # d ||x|| = x / ||x||
    axes = _norm_axes(x, axis)
    return _keep(g, axes, keepdims) * x / _keep(out, axes, keepdims)


def _inner(t: Expr, m: Expr) -> Expr:
    """``<t, m>`` of each matrix: the sum over the last two axes of ``t * m`` (``t`` may carry batch axes)."""
    return F.sum(t * m, axis=(t.ndim - 2, t.ndim - 1))


def _mtrace(m: Expr) -> Expr:
    """The trace of each matrix of a stack (over the last two axes)."""
    return traced(m, (m.ndim - 2, m.ndim - 1))


def _solve_vectors(a: Expr, r: Expr, nb: int) -> Expr:
    """``solve(A, r)`` for a batch of vectors ``r`` (``nb`` batch axes in front of ``(..., n)``), which NumPy's
    1-D rule would read as a matrix: one batch axis and one matrix ``A`` make the columns of one right-hand side
    (one factorization), otherwise each vector is solved as a column."""
    if nb == 1 and a.ndim == 2:
        return mT(LA.solve(a, mT(r)))
    return F.squeeze(LA.solve(a, F.expand_dims(r, -1)), -1)


def _solve_tangent_b(t: Expr, out: Expr, a: Expr, b: Expr) -> Expr:
    # dx = A^{-1} db (the stack axes of a larger A's stack inserted behind a batch of tangents)
    nb = nbatch(t, b)
    if b.ndim == 1 and nb:
        return _solve_vectors(a, align(t, b, out.ndim), nb)
    return LA.solve(a, align(t, b, out.ndim))


def _solve_tangent_a(t: Expr, out: Expr, a: Expr, b: Expr) -> Expr:
    # dx = -A^{-1} dA x
    nb = nbatch(t, a)
    if b.ndim == 1 and (nb or a.ndim > 2):  # a batch of vectors dA x (x a stack of vectors: as columns)
        prod = t @ out if a.ndim == 2 else F.squeeze(t @ F.expand_dims(out, -1), -1)
        return -_solve_vectors(a, prod, nb)
    return -LA.solve(a, align(t, a, out.ndim) @ out)


def _norm_jvp(t: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...] | None, keepdims: bool) -> Expr:
    # d ||x|| = sum(x dx) / ||x||
    return F.sum(x * t, axis=shifted(_norm_axes(x, axis), nbatch(t, x)), keepdims=keepdims) / out


# -- formatters -----------------------------------------------------------------------------------------
def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _latex_inverse(a: Fmt) -> str:
    """``{A}^{-1}``; the inverse of a transpose ``{X}^\\top`` is ``{X}^{-\\top}``."""
    top = "}^\\top"
    if a.text.startswith("{") and a.text.endswith(top) and _balanced(a.text[1 : -len(top)]):
        return a.text[: -len(top)] + "}^{-\\top}"
    return f"{{{wrap(a, ATOM)}}}^{{-1}}"


def _text_solve(node: Expr, args: list[Fmt]) -> Fmt:
    """``solve(A, b)``; ``inv(A)`` when ``b`` is the identity (how gradients compute ``A^{-1}``)."""
    if is_identity(node.args[1]):
        return Fmt(f"inv({args[0].text})", ATOM)
    return Fmt(f"solve({args[0].text}, {args[1].text})", ATOM)


def _latex_solve(node: Expr, args: list[Fmt]) -> Fmt:
    if is_identity(node.args[1]):
        return Fmt(_latex_inverse(args[0]), ATOM)
    return Fmt(f"{_latex_inverse(args[0])} {wrap(args[1], MUL + 1)}", MUL)


def _fmt_norm(fname: str):
    """``fname(x, axis=..., keepdims=True)``, leaving out the defaults."""
    return call(fname, "axis", "keepdims", defaults={"axis": None, "keepdims": False})


def _latex_norm(node: Expr, args: list[Fmt]) -> Fmt:
    """``\\|x\\|_2`` for vectors, ``\\|X\\|_F`` for matrices (and whole arrays of more axes)."""
    x, axis = node.args[0], node.attrs["axis"]
    sub = "2" if len(_norm_axes(x, axis)) <= 1 else "F"
    if axis is not None:
        sub = f"{{{sub}, \\mathrm{{axis}}\\,{','.join(map(str, axis))}}}"
    return Fmt(f"\\left\\| {args[0].text} \\right\\|_{sub}", ATOM)


def _sympy_solve(sp, a, b):
    if b.shape[0] == a.shape[0]:
        return a.inverse() * b
    return (a.inverse() * b.T).T  # a 1-D b is a row (1, n) in SymPy


def _sympy_norm(sp, x, *, axis, keepdims):
    if axis is not None:
        return None
    return sp.sqrt(sp.Trace(x * x.T)) if isinstance(x, sp.MatrixExpr) else sp.Abs(x)


# -- the entries ----------------------------------------------------------------------------------------
def _square_op(name: str, drop: int, impl, vjp, jvp, *, checked_as: str | None = None, **facts) -> None:
    """Register ``name(A)`` of square matrices (a stack of them): computed by ``impl(A)``, its result drops ``A``'s
    last ``drop`` axes (each result axis is an axis of ``A``); ``vjp`` and ``jvp`` are its one gradient and tangent
    rule (``None``: no derivative); shape errors name ``checked_as`` (default ``name``), the public function."""
    register(
        name,
        sympy_matrix=True,
        infer=_infer_square(checked_as or name, drop),
        impl=lambda attrs, a: impl(a),
        vjp=(vjp,),
        jvp=(jvp,),
        axis_source=lambda out, ax, a: (a, ax),
        **facts,
    )


def _slogdet_part(name: str, index: int, vjp, jvp, **facts) -> None:
    """Register value ``index`` of ``np.linalg.slogdet`` (0: the sign, 1: ln|det|) as the op ``name``."""

    def form(prefix: str):
        return lambda node, args: Fmt(f"{prefix}.linalg.slogdet({args[0].text})[{index}]", ATOM)

    impl = lambda a: np.linalg.slogdet(a)[index]
    _square_op(name, 2, impl, vjp, jvp, checked_as="slogdet", numpy=form("np"), xp=form("xp"), **facts)


# d(A^{-1}) = -A^{-1} dA A^{-1}  ->  gA = -A^{-T} g A^{-T}, from the node itself (one inverse)
_square_op(
    "inv",
    0,
    np.linalg.inv,
    lambda g, out, a: -(mT(out) @ g @ mT(out)),
    lambda t, out, a: -(out @ t @ out),
    sympy=lambda sp, a: a.inverse(),
    text=call("inv"),
    numpy=call("np.linalg.inv"),
    xp=call("xp.linalg.inv"),
    latex=lambda node, args: Fmt(_latex_inverse(args[0]), ATOM),
    dot="inv",
)
# The cofactor matrix cof(A) = det(A) A^{-T}, computed without an inverse (an SVD), so the gradient of det holds for
# singular matrices too. For an invertible A: d cof(A) = (<cof(A), dA> cof(A) - cof(A) dA^T cof(A)) / det(A).
_square_op(
    "cofactor",
    0,
    _cofactor,
    lambda g, out, a: (_matrices(_inner(g, out)) * out - out @ mT(g) @ out) / _matrices(LA.det(a)),
    lambda t, out, a: (_matrices(_inner(t, out)) * out - out @ mT(t) @ out) / _matrices(LA.det(a)),
    sympy=lambda sp, a: sp.Determinant(a) * a.inverse().T,
    # printed as the book writes it, det(A) A^{-T} (as solve(A, I) prints inv(A)); computed from the SVD
    text=lambda node, args: Fmt(f"det({args[0].text}) * inv({wrap(args[0], ATOM)}.T)", MUL),
    numpy=call("_cofactor"),
    xp=call("_cofactor"),
    kernels=("_cofactor",),
    latex=lambda node, args: Fmt(
        f"\\det\\left({args[0].text}\\right) \\cdot {{{wrap(args[0], ATOM)}}}^{{-\\top}}", MUL
    ),
    hint="cof",
    dot="cof",
)
# d det(A) = <cof(A), dA>  ->  gA = g cof(A) (= g det(A) A^{-T} for an invertible A)
_square_op(
    "det",
    2,
    np.linalg.det,
    lambda g, out, a: _matrices(g) * LA.cofactor(a),
    lambda t, out, a: _inner(t, LA.cofactor(a)),
    sympy=lambda sp, a: sp.Determinant(a),
    text=call("det"),
    numpy=call("np.linalg.det"),
    xp=call("xp.linalg.det"),
    latex=latex_call("\\det"),
    dot="det",
)
# d ln|det(A)| = tr(A^{-1} dA)  ->  gA = g A^{-T}
_slogdet_part(
    "logabsdet",
    1,
    lambda g, out, a: _matrices(g) * _inv_transpose(a),
    lambda t, out, a: _mtrace(LA.solve(a, t)),
    sympy=lambda sp, a: sp.log(sp.Abs(sp.Determinant(a))),
    text=call("logabsdet"),
    latex=lambda node, args: Fmt(f"\\ln\\left|\\det\\left({args[0].text}\\right)\\right|", ATOM),
    hint="logdet",
    dot="ln|det|",
)
_slogdet_part(
    "signdet",
    0,
    None,  # piecewise constant: no gradient
    None,
    sympy=lambda sp, a: sp.sign(sp.Determinant(a)),
    text=lambda node, args: Fmt(f"sign(det({args[0].text}))", ATOM),
    latex=lambda node, args: Fmt(f"\\operatorname{{sign}}\\left(\\det\\left({args[0].text}\\right)\\right)", ATOM),
    hint="sgn",
    dot="sign det",
)
register(
    "solve",
    sympy=_sympy_solve,
    sympy_matrix=True,
    infer=_infer_solve,
    impl=lambda attrs, a, b: np.linalg.solve(a, b),
    vjp=(_solve_grad_a, _solve_grad_b),
    jvp=(_solve_tangent_a, _solve_tangent_b),
    axis_source=lambda out, ax, a, b: (a, ax) if b.ndim == 1 else broadcast_axis_source(out, ax, a, b),
    text=_text_solve,
    numpy=call("np.linalg.solve"),
    xp=call("_solve"),
    latex=_latex_solve,
    hint="sol",
    dot="solve",
)
register(
    "norm",
    sympy=_sympy_norm,
    sympy_matrix=True,
    infer=_infer_norm,
    impl=lambda attrs, x: np.linalg.norm(x, axis=attrs["axis"], keepdims=attrs["keepdims"]),
    vjp=(_norm_vjp,),
    jvp=(_norm_jvp,),
    axis_source=lambda out, ax, x, *, axis, keepdims: _reduced_axis_source(
        out, ax, x, axis=_norm_axes(x, axis), keepdims=keepdims
    ),
    text=_fmt_norm("norm"),
    numpy=_fmt_norm("np.linalg.norm"),
    xp=_fmt_norm("xp.linalg.vector_norm"),
    latex=_latex_norm,
    dot="norm",
)
