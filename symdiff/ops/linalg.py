"""Products: ``matmul`` (NumPy's ``@``) and ``tensordot``; ``dot`` is built from them."""

from __future__ import annotations

import numpy as np

from .. import functions as F
from ..errors import ShapeError
from ..graph import Expr, broadcast_shapes, check_contraction, format_shape, matmul_pairs, result_dtype
from .batch import nbatch, shifted
from .registry import ATOM, MUL, Fmt, binop, register, wrap


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


def _mT(x: Expr) -> Expr:
    """Swap the last two axes (the matrix transpose of a stack of matrices)."""
    return F.swapaxes(x, -1, -2)


def _matmul_grad_a(g: Expr, out: Expr, a: Expr, b: Expr) -> Expr:
    if a.ndim == 1 and b.ndim == 1:  # inner product
        return g * b
    if b.ndim == 1:  # (..., m, k) @ (k,) -> (..., m): outer product of g and b
        return F.expand_dims(g, -1) * b
    if a.ndim == 1 and b.ndim == 2:  # (k,) @ (k, n) -> (n,)
        return b @ g
    if a.ndim == 1:  # (k,) @ (..., k, n) -> (..., n)
        return F.squeeze(b @ F.expand_dims(g, -1), -1)
    return g @ _mT(b)


def _matmul_grad_b(g: Expr, out: Expr, a: Expr, b: Expr) -> Expr:
    if a.ndim == 1 and b.ndim == 1:
        return g * a
    if a.ndim == 1:  # outer product of a and g
        return F.expand_dims(a, -1) * F.expand_dims(g, -2)
    if b.ndim == 1 and a.ndim == 2:  # (m, k) @ (k,) -> (m,)
        return a.T @ g
    if b.ndim == 1:
        return F.squeeze(_mT(a) @ F.expand_dims(g, -1), -1)
    return _mT(a) @ g


def _matmul_tangent(t: Expr, x: Expr, other: Expr, position: int) -> Expr:
    """``t @ other`` (``position`` 0) or ``other @ t`` (1): the tangent of ``x`` times the other operand. A batch
    of tangents stays in front: 1-D operands are promoted to matrices (the promoted axes squeezed out after)."""
    nb = nbatch(t, x)
    if nb and x.ndim == 1 and position == 1 and other.ndim <= 2:  # A @ v for a batch of vectors v: v @ A.T
        return F.matmul(t, other if other.ndim == 1 else _mT(other))
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
    latex=_latex_tensordot,
)
