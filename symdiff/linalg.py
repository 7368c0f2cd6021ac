"""Linear algebra on expressions, under NumPy's ``np.linalg`` names: ``inv``, ``det``, ``slogdet``, ``solve``, ``norm``.

Like NumPy's, each function takes a square matrix ``(n, n)`` or a stack of them ``(..., n, n)`` (the stack axes
may have open length ``None``, the matrix axes may not), computes integer and boolean operands in float64 and
refuses float16. Every result is an ordinary expression: printed (``inv(A)``, ``det(A)``, ``solve(A, b)``,
``norm(x)``; in LaTeX ``A^{-1}``, ``\\det(A)``, ``A^{-1} b``, ``\\|x\\|_2``), compiled to ``np.linalg`` calls and
differentiated (twice, too) with the textbook rules, which solve linear systems rather than form inverses:
``solve(A, b)`` back-propagates through ``solve(A.T, g)``, and ``det``/``slogdet`` through ``A^{-T}`` computed as
``solve(A.T, I)`` (printed ``inv(A.T)``, in LaTeX ``A^{-\\top}``).

The text parser (``symdiff grad``) calls them by their plain names: ``inv(A)``, ``det(A)``, ``cofactor(A)``,
``solve(A, b)``,
``norm(x, axis=1)``, and ``logabsdet(A)`` for the second value of ``slogdet``.
"""

from __future__ import annotations

from typing import Any

from .errors import ShapeError, UnsupportedError
from .functions import ArrayLike, as_expr
from .graph import Expr, format_shape, make, normalize_axis

__all__ = ["cofactor", "det", "inv", "norm", "slogdet", "solve"]


def inv(a: ArrayLike) -> Expr:
    """The inverse of the square matrix ``a`` (each matrix of a stack ``(..., n, n)``), like ``np.linalg.inv``.

    >>> A = sd.Input("A", shape=(2, 2))
    >>> print(sd.compile(sd.linalg.inv(A))(A=np.array([[2.0, 0.0], [0.0, 4.0]])))
    [[0.5  0.  ]
     [0.   0.25]]
    >>> X = sd.Param("X", shape=(3, 3))
    >>> print(sd.grad(sd.trace(sd.linalg.inv(X)), X))
    inv1 = inv(X.T)
    dX = -(inv1 @ inv1)
    """
    return make("inv", (as_expr(a),))


def det(a: ArrayLike) -> Expr:
    """The determinant of the square matrix ``a`` (one per matrix of a stack), like ``np.linalg.det``.

    Its gradient is the cofactor matrix :func:`cofactor`, ``det(A) * A^{-T}``, which exists for singular ``A`` too.

    >>> X = sd.Param("X", shape=(3, 3))
    >>> print(sd.grad(sd.linalg.det(X), X))
    dX = det(X) * inv(X.T)
    """
    return make("det", (as_expr(a),))


def cofactor(a: ArrayLike) -> Expr:
    """The cofactor matrix of the square matrix ``a`` (each matrix of a stack): ``det(A) * inv(A).T`` for an invertible
    ``A``, the transposed adjugate in general; the gradient of :func:`det`. Computed from an SVD, without an inverse.

    >>> A = sd.Input("A", shape=(2, 2))
    >>> print(sd.compile(sd.linalg.cofactor(A))(A=np.array([[1.0, 2.0], [3.0, 4.0]])).round(6))
    [[ 4. -3.]
     [-2.  1.]]
    """
    return make("cofactor", (as_expr(a),))


def slogdet(a: ArrayLike) -> tuple[Expr, Expr]:
    """``(sign, logabsdet)`` of the square matrix ``a``, like ``np.linalg.slogdet``: ``det(a) = sign * exp(logabsdet)``
    without overflow.

    ``sign`` (printed ``sign(det(A))``) has no gradient; ``logabsdet`` (printed ``logabsdet(A)``, in LaTeX
    ``\\ln|\\det(A)|``) has the gradient ``A^{-T}``, computed as ``solve(A.T, I)``.

    >>> X = sd.Param("X", shape=(3, 3))
    >>> sign, logabsdet = sd.linalg.slogdet(X)
    >>> print(sd.grad(logabsdet, X))
    dX = inv(X.T)
    """
    a = as_expr(a)
    return make("signdet", (a,)), make("logabsdet", (a,))


def logabsdet(a: ArrayLike) -> Expr:
    """``ln|det(a)|``, the second value of :func:`slogdet` (the text parser's ``logabsdet(A)``)."""
    return slogdet(a)[1]


def solve(a: ArrayLike, b: ArrayLike) -> Expr:
    """The solution ``x`` of ``a @ x = b``, like ``np.linalg.solve`` in NumPy 2: ``b`` is a vector ``(n,)`` or a
    matrix of right-hand sides ``(..., n, k)``, whose stack axes broadcast against ``a``'s.

    Its gradient solves the transposed system, ``db = solve(A.T, g)`` and ``dA = -db @ x.T``: no inverse is formed.

    >>> A, b = sd.Input("A", shape=(3, 3)), sd.Param("b", shape=(3,))
    >>> c = sd.Input("c", shape=(3,))
    >>> print(sd.grad(c @ sd.linalg.solve(A, b), b))
    db = solve(A.T, c)
    """
    return make("solve", (as_expr(a), as_expr(b)))


def norm(x: ArrayLike, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Expr:  # noqa: A002 - NumPy's
    """The 2-norm of a vector or the Frobenius norm of a matrix, like ``np.linalg.norm``'s defaults:
    ``sqrt(sum(x**2, axis))``.

    ``axis`` is ``None`` (all axes: the norm of ``x`` flattened), one axis (a vector norm per row, column, ...) or
    two axes (a Frobenius norm per matrix); ``keepdims`` keeps the reduced axes with length 1. ``ord`` may only
    name these norms: ``None``, ``2`` for vectors, ``"fro"`` for matrices; other orders (1, inf, the nuclear or
    spectral norm) raise :class:`UnsupportedError`. The gradient is ``x / norm(x)`` (undefined at ``x = 0``).

    >>> x = sd.Param("x", shape=(3,))
    >>> print(sd.grad(sd.linalg.norm(x), x))
    dx = x / norm(x)
    """
    x = as_expr(x)
    axes = normalize_axis(axis, x.ndim, "norm", x.shape)
    if axis is not None and len(axes) > 2:
        raise ShapeError(
            f"norm: axis {axis!r} names {len(axes)} axes of shape {format_shape(x.shape)}; "
            "give one axis (vector norms) or two (matrix norms), or None for the whole array"
        )
    if not (ord is None or (len(axes) == 1 and ord == 2) or (len(axes) == 2 and ord == "fro")):
        raise UnsupportedError(
            f"norm: ord={ord!r} over {len(axes)} axes of shape {format_shape(x.shape)} is not supported; only the "
            "2-norm of vectors (ord=None or 2) and the Frobenius norm of matrices (ord=None or 'fro') are"
        )
    kept = None if axes == tuple(range(x.ndim)) else axes  # None: every axis, as np.linalg.norm's default
    return make("norm", (x,), {"axis": kept, "keepdims": bool(keepdims)})


def __dir__() -> list[str]:
    """``dir()`` lists the public names only (not ``annotations`` or other imports)."""
    return sorted(__all__)
