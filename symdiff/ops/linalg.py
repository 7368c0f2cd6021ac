"""Products and matrix structure: ``matmul`` (NumPy's ``@``), ``tensordot`` and ``outer`` (``dot`` is built from
them), ``trace`` and ``diag``."""

from __future__ import annotations

import numpy as np

from .. import functions as F
from ..errors import ShapeError
from ..graph import Expr, broadcast_shapes, check_contraction, format_shape, matmul_pairs, result_dtype
from .batch import mT, nbatch, shifted, traced
from .registry import ATOM, MUL, Fmt, binop, call, register, wrap


def _infer_matmul(args, attrs):
    a, b = args
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(
            f"matmul: operands must have at least one axis, got shapes "
            f"{format_shape(a.shape)} and {format_shape(b.shape)} (use * for scalars)"
        )
    check_contraction("matmul", a, b, matmul_pairs(a, b))
    if a.ndim == 1 and b.ndim == 1:
        return (), result_dtype(a, b)
    if a.ndim == 1:
        return (*b.shape[:-2], b.shape[-1]), result_dtype(a, b)
    if b.ndim == 1:
        return a.shape[:-1], result_dtype(a, b)
    try:
        batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(
            f"matmul: the batch axes of shapes {format_shape(a.shape)} and {format_shape(b.shape)} "
            "cannot be broadcast together"
        ) from None
    return (*batch, a.shape[-2], b.shape[-1]), result_dtype(a, b)


def _matmul_grad_a(g: Expr, out: Expr, a: Expr, b: Expr) -> Expr:
    if a.ndim == 1 and b.ndim == 1:  # inner product
        return g * b
    if b.ndim == 1:  # (..., m, k) @ (k,) -> (..., m): outer product of g and b
        return F.outer(g, b) if g.ndim == 1 else F.expand_dims(g, -1) * b
    if a.ndim == 1 and b.ndim == 2:  # (k,) @ (k, n) -> (n,)
        return b @ g
    if a.ndim == 1:  # (k,) @ (..., k, n) -> (..., n)
        return F.squeeze(b @ F.expand_dims(g, -1), -1)
    return g @ mT(b)


def _matmul_grad_b(g: Expr, out: Expr, a: Expr, b: Expr) -> Expr:
    if a.ndim == 1 and b.ndim == 1:
        return g * a
    if a.ndim == 1:  # outer product of a and g
        return F.outer(a, g) if g.ndim == 1 else F.expand_dims(a, -1) * F.expand_dims(g, -2)
    if b.ndim == 1 and a.ndim == 2:  # (m, k) @ (k,) -> (m,)
        return a.T @ g
    if b.ndim == 1:
        return F.squeeze(mT(a) @ F.expand_dims(g, -1), -1)
    return mT(a) @ g


def _matmul_tangent(t: Expr, x: Expr, other: Expr, position: int) -> Expr:
    """``t @ other`` (``position`` 0) or ``other @ t`` (1): the tangent of ``x`` times the other operand. A batch
    of tangents stays in front: 1-D operands are promoted to matrices (the promoted axes squeezed out after)."""
    nb = nbatch(t, x)
    if nb and x.ndim == 1 and position == 1 and other.ndim <= 2:  # A @ v for a batch of vectors v: v @ A.T
        return F.matmul(t, other if other.ndim == 1 else mT(other))
    if not nb or (x.ndim >= 2 and other.ndim <= x.ndim) or (x.ndim == 1 and position == 0 and other.ndim <= 2):
        return F.matmul(t, other) if position == 0 else F.matmul(other, t)  # NumPy's matmul keeps t's batch axes
    # the promoted axis of a vector: a row on the left, a column on the right
    lifted, x_vec = (F.expand_dims(t, -1 - (position == 0)), True) if x.ndim == 1 else (t, False)
    other, o_vec = (F.expand_dims(other, -2 + (position == 0)), True) if other.ndim == 1 else (other, False)
    core = lifted.ndim - nb
    if other.ndim > core:  # the other operand's own batch axes go behind the tangents' batch axes
        lifted = F.expand_dims(lifted, tuple(range(nb, nb + other.ndim - core)))
    res = F.matmul(lifted, other) if position == 0 else F.matmul(other, lifted)
    left_vec, right_vec = (x_vec, o_vec) if position == 0 else (o_vec, x_vec)
    squeeze = (res.ndim - 2,) * left_vec + (res.ndim - 1,) * right_vec
    return F.squeeze(res, squeeze) if squeeze else res


def _matmul_axis_source(out: Expr, ax: int, a: Expr, b: Expr) -> tuple[Expr, int] | None:
    """Rows come from ``a``, columns from ``b``, batch axes from ``a`` (the open ones)."""
    if b.ndim == 1:  # (..., m, k) @ (k,) -> (..., m)
        return (a, ax) if a.shape[ax] is None else None
    if a.ndim == 1:  # (k,) @ (..., k, n) -> (..., n)
        return (b, ax if ax < out.ndim - 1 else b.ndim - 1)
    if a.ndim >= 2 and ax == out.ndim - 2 and a.shape[-2] is None:
        return a, a.ndim - 2
    if b.ndim >= 2 and ax == out.ndim - 1 and b.shape[-1] is None:
        return b, b.ndim - 1
    lead = out.ndim - a.ndim
    if a.ndim > 2 and lead <= ax < out.ndim - 2 and a.shape[ax - lead] is None:
        return a, ax - lead
    return None


register(
    "matmul",
    sympy=lambda sp, a, b: a * b,
    sympy_matrix=True,
    dot="@",
    hint="mm",
    out=lambda node, args, buf: f"np.matmul({args[0].text}, {args[1].text}, out={buf})",
    infer=_infer_matmul,
    impl=lambda attrs, a, b: np.matmul(a, b),
    # d(A @ B) = dA @ B + A @ dB  ->  gA = g @ B.T, gB = A.T @ g (summed over broadcast batch axes)
    vjp=(_matmul_grad_a, _matmul_grad_b),
    jvp=(lambda t, out, a, b: _matmul_tangent(t, a, b, 0), lambda t, out, a, b: _matmul_tangent(t, b, a, 1)),
    axis_source=_matmul_axis_source,
    text=binop("@", MUL),
    numpy=binop("@", MUL),
    xp=binop("@", MUL),
    latex=lambda node, args: Fmt(f"{wrap(args[0], MUL)} {wrap(args[1], MUL + 1)}", MUL),
)


def _infer_tensordot(args, attrs):
    a, b = args
    ax_a, ax_b = attrs["axes"]
    check_contraction("tensordot", a, b, list(zip(ax_a, ax_b)))
    free_a = [d for i, d in enumerate(a.shape) if i not in ax_a]
    free_b = [d for j, d in enumerate(b.shape) if j not in ax_b]
    return (*free_a, *free_b), result_dtype(a, b)


def _perm_to(current: list[int]) -> tuple[int, ...]:
    """The transpose that puts axes labelled ``current`` into order 0..n-1."""
    return tuple(current.index(i) for i in range(len(current)))


def _tensordot_grad_a(g: Expr, out: Expr, a: Expr, b: Expr, *, axes: tuple) -> Expr:
    ax_a, ax_b = axes
    free_a = [i for i in range(a.ndim) if i not in ax_a]
    free_b = [j for j in range(b.ndim) if j not in ax_b]
    g_axes = tuple(range(len(free_a), len(free_a) + len(free_b)))
    res = F.tensordot(g, b, axes=(g_axes, tuple(free_b)))
    # result axes: a's free axes, then the a-axis paired with each remaining b axis in b's order
    current = free_a + [ax_a[ax_b.index(j)] for j in sorted(ax_b)]
    return F.transpose(res, _perm_to(current))


def _tensordot_grad_b(g: Expr, out: Expr, a: Expr, b: Expr, *, axes: tuple) -> Expr:
    ax_a, ax_b = axes
    free_a = [i for i in range(a.ndim) if i not in ax_a]
    free_b = [j for j in range(b.ndim) if j not in ax_b]
    res = F.tensordot(a, g, axes=(tuple(free_a), tuple(range(len(free_a)))))
    current = [ax_b[ax_a.index(i)] for i in sorted(ax_a)] + free_b
    return F.transpose(res, _perm_to(current))


def _tensordot_tangent_b(t: Expr, out: Expr, a: Expr, b: Expr, *, axes: tuple) -> Expr:
    nb = nbatch(t, b)
    res = F.tensordot(a, t, axes=(axes[0], shifted(axes[1], nb)))
    if not nb:
        return res
    free_a = a.ndim - len(axes[0])  # the batch axes follow a's free axes: move them in front
    return F.transpose(res, (*range(free_a, free_a + nb), *range(free_a), *range(free_a + nb, res.ndim)))


def _fmt_tensordot(prefix: str):
    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        ax_a, ax_b = node.attrs["axes"]
        return Fmt(f"{prefix}tensordot({args[0].text}, {args[1].text}, axes=({list(ax_a)}, {list(ax_b)}))", ATOM)

    return fmt


def _latex_tensordot(node: Expr, args: list[Fmt]) -> Fmt:
    """``A \\otimes B`` only for the outer product (no contracted axes); otherwise the axes are shown."""
    ax_a, ax_b = node.attrs["axes"]
    if not ax_a:
        return Fmt(f"{wrap(args[0], MUL)} \\otimes {wrap(args[1], MUL + 1)}", MUL)
    return Fmt(
        f"\\operatorname{{tensordot}}_{{{list(ax_a)}, {list(ax_b)}}}\\left({args[0].text}, {args[1].text}\\right)", ATOM
    )


def _tensordot_axis_source(out: Expr, ax: int, a: Expr, b: Expr, *, axes: tuple) -> tuple[Expr, int]:
    """The result axes are a's free axes, then b's."""
    ax_a, ax_b = axes
    free = [(a, i) for i in range(a.ndim) if i not in ax_a] + [(b, j) for j in range(b.ndim) if j not in ax_b]
    return free[ax]


register(
    "tensordot",
    sympy=None,
    hint="td",
    infer=_infer_tensordot,
    impl=lambda attrs, a, b: np.tensordot(a, b, axes=attrs["axes"]),
    vjp=(_tensordot_grad_a, _tensordot_grad_b),
    jvp=(
        lambda t, out, a, b, *, axes: F.tensordot(t, b, axes=(shifted(axes[0], nbatch(t, a)), axes[1])),
        _tensordot_tangent_b,
    ),
    axis_source=_tensordot_axis_source,
    text=_fmt_tensordot(""),
    numpy=_fmt_tensordot("np."),
    xp=_fmt_tensordot("xp."),
    latex=_latex_tensordot,
)


# -- outer product -------------------------------------------------------------------------------
def _infer_outer(args, attrs):
    a, b = args
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(
            f"outer: operands must be vectors, got shapes {format_shape(a.shape)} and {format_shape(b.shape)}"
        )
    return (a.shape[0], b.shape[0]), result_dtype(a, b)


def _outer_tangent(t: Expr, x: Expr, other: Expr, position: int) -> Expr:
    """``outer(t, other)`` (``position`` 0) or ``outer(other, t)`` (1): the tangent of the vector ``x`` times the
    other vector. ``F.outer`` would flatten a batch of tangents, so a batch is an ``expand_dims`` product."""
    if not nbatch(t, x):
        return F.outer(t, other) if position == 0 else F.outer(other, t)
    return F.expand_dims(t, -1) * other if position == 0 else F.expand_dims(other, -1) * F.expand_dims(t, -2)


# d outer(a, b) = da b^T + a db^T  ->  ga = g @ b, gb = a @ g (= g^T a)
register(
    "outer",
    sympy=lambda sp, a, b: a.T * b,  # 1-D symbols are 1 x n rows
    sympy_matrix=True,
    infer=_infer_outer,
    impl=lambda attrs, a, b: np.outer(a, b),
    vjp=(lambda g, out, a, b: g @ b, lambda g, out, a, b: a @ g),
    jvp=(lambda t, out, a, b: _outer_tangent(t, a, b, 0), lambda t, out, a, b: _outer_tangent(t, b, a, 1)),
    axis_source=lambda out, ax, a, b: (a, 0) if ax == 0 else (b, 0),
    text=lambda node, args: Fmt(f"outer({args[0].text}, {args[1].text})", ATOM),
    numpy=lambda node, args: Fmt(f"np.outer({args[0].text}, {args[1].text})", ATOM),
    xp=call("_outer"),
    out=lambda node, args, buf: f"np.outer({args[0].text}, {args[1].text}, out={buf})",
    latex=lambda node, args: Fmt(f"{wrap(args[0], MUL)} {{{wrap(args[1], ATOM)}}}^\\top", MUL),
)


# -- trace and diagonal ----------------------------------------------------------------------------
def _known_matrix_axes(op: str, x: Expr) -> tuple[int, int]:
    """The lengths of the two matrix axes of ``x``, which a gradient through ``op`` needs; ``ShapeError`` if open."""
    n, m = x.shape[:2]
    if n is None or m is None:
        raise ShapeError(
            f"{op}: cannot differentiate with respect to an operand of shape {format_shape(x.shape)}: "
            "the matrix axes need known lengths (None is open)"
        )
    return n, m


def _infer_trace(args, attrs):
    x = args[0]
    if x.ndim < 2:
        raise ShapeError(f"trace: operand must have at least 2 axes (a matrix), got shape {format_shape(x.shape)}")
    return x.shape[2:], np.trace(np.zeros((1, 1), x.dtype)).dtype  # NumPy's sum dtype: int32 -> int64


def _trace_vjp(g: Expr, out: Expr, x: Expr) -> Expr:
    # d tr(X) = tr(dX)  ->  gX = g I (one I per trailing index: axes 0 and 1 are the matrix, as in NumPy)
    n, m = _known_matrix_axes("trace", x)
    eye = F.eye(n, m, dtype=g.dtype)
    if x.ndim > 2:
        eye = F.expand_dims(eye, tuple(range(2, x.ndim)))
    return g * eye


# The sum of the diagonal over the first two axes, as np.trace (a stack of matrices keeps its trailing axes).
register(
    "trace",
    sympy=lambda sp, a: sp.Trace(a),
    sympy_matrix=True,
    infer=_infer_trace,
    impl=lambda attrs, x: np.trace(x),
    vjp=(_trace_vjp,),
    # d tr(X) = tr(dX): the trace of the tangent over the matrix axes, behind its batch axes
    jvp=(lambda t, out, x: traced(t, shifted((0, 1), nbatch(t, x))),),
    axis_source=lambda out, ax, x: (x, ax + 2),
    text=lambda node, args: Fmt(f"trace({args[0].text})", ATOM),
    numpy=lambda node, args: Fmt(f"np.trace({args[0].text})", ATOM),
    xp=call("_trace"),
    latex=lambda node, args: Fmt(f"\\operatorname{{tr}}\\left({args[0].text}\\right)", ATOM),
)


def _infer_diag(args, attrs):
    x = args[0]
    if x.ndim != 1:
        raise ShapeError(
            f"diag: operand must be a vector (giving a diagonal matrix), got shape {format_shape(x.shape)}"
        )
    return (x.shape[0], x.shape[0]), x.dtype


def _infer_diagonal(args, attrs):
    x = args[0]
    if x.ndim != 2:
        raise ShapeError(f"diagonal: operand must be a matrix (giving its diagonal), got shape {format_shape(x.shape)}")
    n, m = x.shape
    return (None if n is None or m is None else min(n, m),), x.dtype


def _diagonal_vjp(g: Expr, out: Expr, x: Expr) -> Expr:
    # the diagonal of an n x m matrix gets g, the rest zeros: diag(g) when square
    n, m = _known_matrix_axes("diag", x)
    if n == m:
        return F.diag(g)
    return F.eye(n, m, dtype=g.dtype) * (g if m < n else F.expand_dims(g, 1))


def _diag_tangent(t: Expr, out: Expr, x: Expr) -> Expr:
    # d diag(v) = diag(dv); a batch of vectors (..., n) becomes a batch of diagonal matrices (..., n, n)
    if not nbatch(t, x):
        return F.diag(t)
    n = x.shape[0]
    eye = F.eye(n, dtype=t.dtype) if n is not None else F.diag(F.broadcast_like(np.ones((), t.dtype), x))
    return F.expand_dims(t, -1) * eye


def _diagonal_tangent(t: Expr, out: Expr, x: Expr) -> Expr:
    # d diagonal(X) = diagonal(dX); for a batch of matrices, the diagonal is the masked sum over the longer axis
    if not nbatch(t, x):
        return F.diag(t)
    n, m = _known_matrix_axes("diag", x)
    return F.sum(t * F.eye(n, m, dtype=t.dtype), axis=t.ndim - 1 if n <= m else t.ndim - 2)


def _diag_latex(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"\\operatorname{{diag}}\\left({args[0].text}\\right)", ATOM)


def _diag_text(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"diag({args[0].text})", ATOM)


# sd.diag is NumPy's: a vector's diagonal matrix (op diag) or a matrix's diagonal (op diagonal, a view of the
# first min(n, m) entries); both print as diag(x). Two ops, so each has one rank and one gradient rule.
register(
    "diag",
    sympy=lambda sp, a: sp.DiagMatrix(a.T),  # 1-D symbols are 1 x n rows
    sympy_matrix=True,
    infer=_infer_diag,
    impl=lambda attrs, x: np.diag(x),
    vjp=(lambda g, out, x: F.diag(g),),  # d diag(v) = diag(dv): v gets the diagonal of g
    jvp=(_diag_tangent,),
    axis_source=lambda out, ax, x: (x, 0),
    text=_diag_text,
    numpy=lambda node, args: Fmt(f"np.diag({args[0].text})", ATOM),
    xp=call("_diag"),
    latex=_diag_latex,
)
register(
    "diagonal",
    sympy=lambda sp, a: sp.DiagonalOf(a).T,  # as a 1 x n row, like 1-D symbols
    sympy_matrix=True,
    view=True,  # NumPy's diagonal is a (read-only) view of the matrix
    hint="diag",
    infer=_infer_diagonal,
    impl=lambda attrs, x: np.diagonal(x),
    vjp=(_diagonal_vjp,),
    jvp=(_diagonal_tangent,),
    axis_source=None,  # min(n, m): neither operand axis has its length in general
    text=_diag_text,
    numpy=lambda node, args: Fmt(f"np.diagonal({args[0].text})", ATOM),
    xp=call("_diagonal"),
    latex=_diag_latex,
)
