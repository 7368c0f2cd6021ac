"""NumPy-named functions that build expressions.

These mirror NumPy's names and argument conventions (``sum(x, axis=None, keepdims=False)``,
``tensordot(a, b, axes=2)``, ...), so one model-building function can run with ``sd`` or with ``np``.
Python scalars and NumPy arrays mix in as constants. Shape errors are raised here, at build time.
"""

from __future__ import annotations

import builtins
import math
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .dims import canonical_dim
from .errors import DTypeError, ShapeError, UnsupportedError
from .folding import fold, fold_all
from .graph import (
    HOOKS,
    Expr,
    as_dtype,
    broadcast_shapes,
    check_contraction,
    const_value,
    constant,
    format_shape,
    leaves,
    make,
    matmul_pairs,
    normalize_axis,
    normalize_shape,
)

ArrayLike = Any

HOOKS.functions = sys.modules[__name__]  # Expr's operators and methods call this module's builders


def as_expr(x: ArrayLike) -> Expr:
    """``x`` itself if it is an expression, else a constant node."""
    return x if isinstance(x, Expr) else constant(x)


def _checked(node: Expr) -> Expr:
    """``node``, refused if it is integer arithmetic on constants that overflows its dtype.

    Every path then agrees: simplification would refuse to fold it, and readable code would wrap it.
    """
    if node.dtype.kind in "iu" and all(a.op == "const" for a in node.args):
        fold(node)  # raises ConstantOverflowError for add, sub, mul, neg (and pow) that wrap
    return node


def _binary(op: str, a: ArrayLike, b: ArrayLike) -> Expr:
    return _checked(make(op, (as_expr(a), as_expr(b))))


def _unary(op: str, x: ArrayLike) -> Expr:
    return _checked(make(op, (as_expr(x),)))


# -- arithmetic ------------------------------------------------------------------------------
# add, subtract, multiply, divide, negative, maximum, minimum (and the comparisons greater, ..., equal) are
# defined by their op table entries (``doc``), see define_elementwise; power checks its exponent, so it is here.
MAX_EXPONENT = 1000  # |b| in any power x ** b with a constant exponent (x**99999999999 helps nobody)


def power(a: ArrayLike, b: ArrayLike) -> Expr:
    """``a ** b`` with broadcasting.

    A constant exponent is at most ``MAX_EXPONENT`` in absolute value (whatever the base), an integer power
    takes no negative constant exponent (NumPy refuses it at run time), and a power of integer constants must
    fit its dtype: each is refused here, so no path (readable code included) writes a power it cannot compute.

    >>> x = sd.Input("x", shape=())
    >>> print(sd.grad(sd.power(x, 3), x))
    dx = 3 * x**2
    """
    a, b = as_expr(a), as_expr(b)
    if not leaves([b]):  # a constant exponent, possibly still to be folded
        folded = b if b.op == "const" else fold_all(b)
        if folded.op == "const":
            value = const_value(folded)
            big = (value > MAX_EXPONENT) | (value < -MAX_EXPONENT)  # not np.abs: it wraps at the int64 minimum
            if np.any(big):
                raise UnsupportedError(
                    f"power: the constant exponent {value[big].flat[0].item()!r} is too large "
                    f"(the limit is {MAX_EXPONENT} in absolute value)"
                )
            negative = value < 0
            if value.dtype.kind in "iu" and a.dtype.kind in "biu" and np.any(negative):
                e = value[negative].flat[0].item()
                if a.op == "const" and a.ndim == 0:
                    hint = f"write a float base, e.g. {float(const_value(a))!r} ** {e}"
                else:
                    hint = f"write a float exponent, e.g. x ** {float(e)!r}"
                raise DTypeError(f"power: an integer to the negative integer power {e} has no integer value; {hint}")
            return _checked(make("pow", (a, b)))  # a power of integer constants that overflows: from its exponent
    return make("pow", (a, b))


def square(x: ArrayLike) -> Expr:
    """``x ** 2``.

    >>> x = sd.Input("x", shape=())
    >>> print(sd.grad(sd.square(x), x))
    dx = 2 * x
    """
    return power(x, 2)


# -- element-wise functions ------------------------------------------------------------------
# exp, log, sqrt, tanh, sin, cos, sign, relu, sigmoid, softplus, ...: defined by their op table entries
# (``doc``), see define_elementwise.
def abs(x: ArrayLike) -> Expr:  # noqa: A001 - NumPy's name
    """Element-wise absolute value.

    ``absolute`` is the same function.

    >>> x = sd.Input("x", shape=())
    >>> print(sd.grad(sd.abs(x), x))
    dx = sign(x)
    """
    return _unary("abs", x)


absolute = abs


def log_sigmoid(x: ArrayLike) -> Expr:
    """``log(sigmoid(x)) = -softplus(-x)``, stable for large ``|x|``.

    >>> x = sd.Input("x", shape=())
    >>> print(sd.grad(sd.log_sigmoid(x), x))
    dx = sigmoid(-x)
    """
    return _unary("neg", _unary("softplus", _unary("neg", x)))


# -- selection -------------------------------------------------------------------------------
def where(cond: ArrayLike, a: ArrayLike, b: ArrayLike) -> Expr:
    """``a`` where ``cond`` holds, else ``b``; the three broadcast together.

    >>> x = sd.Input("x", shape=(3,))
    >>> leaky = sd.where(x > 0, x, 0.1 * x)
    >>> print(sd.compile(leaky)(x=np.array([-2.0, 0.5, 3.0])))
    [-0.2  0.5  3. ]
    """
    return make("where", (as_expr(cond), as_expr(a), as_expr(b)))


def clip(x: ArrayLike, lo: ArrayLike | None, hi: ArrayLike | None) -> Expr:
    """``x`` limited to ``[lo, hi]`` element-wise, NumPy's ``clip`` (``minimum(maximum(x, lo), hi)``: ``hi`` wins
    where ``lo > hi``); the gradient reaches ``x`` where ``lo <= x <= hi``, bounds included. A ``None`` bound is
    no bound (``clip(x, 0, None)`` is ``maximum(x, 0)``).

    >>> x = sd.Input("x", shape=(3,))
    >>> print(sd.compile(sd.clip(x, 0, 1))(x=np.array([-1.0, 0.5, 2.0])))
    [0.  0.5 1. ]
    """
    if lo is None or hi is None:
        x = as_expr(x)
        return (
            x if lo is None and hi is None else _binary("maximum", x, lo) if hi is None else _binary("minimum", x, hi)
        )
    return make("clip", (as_expr(x), as_expr(lo), as_expr(hi)))


def astype(x: ArrayLike, dtype: Any) -> Expr:
    """``x`` cast to ``dtype``.

    >>> x = sd.Input("x", shape=(3,))
    >>> sd.astype(x, "float32").dtype
    dtype('float32')
    """
    x = as_expr(x)
    dt = as_dtype(dtype)
    if dt == x.dtype:
        return x
    return make("cast", (x,), {"dtype": dt.str})


# -- reductions ------------------------------------------------------------------------------
def _reduce(op: str, x: ArrayLike, axis: Any, keepdims: bool) -> Expr:
    x = as_expr(x)
    axes = normalize_axis(axis, x.ndim, op, x.shape)
    return make(op, (x,), {"axis": axes, "keepdims": bool(keepdims)})


def sum(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Expr:  # noqa: A001
    """Sum over ``axis`` (an int, a tuple, or ``None`` for all axes).

    >>> x = sd.Input("x", shape=(None, 3))
    >>> sd.sum(x, axis=0).shape
    (3,)
    >>> print(sd.grad(sd.sum(x**2), x))
    dx = 2 * x
    """
    return _reduce("sum", x, axis, keepdims)


def _nonempty(op: str, x: ArrayLike) -> Expr:
    """``x`` as an expression; ``ShapeError`` if it has no elements (``op`` has no value then, as in NumPy)."""
    x = as_expr(x)
    if x.size == 0:
        raise ShapeError(
            f"{op}: zero-size operand of shape {format_shape(x.shape)} has no {op.removeprefix('arg')}imum"
        )
    return x


def max(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Expr:  # noqa: A001
    """Maximum over ``axis``; ties share the gradient equally.

    ``amax`` is the same function.

    >>> x = sd.Input("x", shape=(2, 3))
    >>> print(sd.compile(sd.max(x, axis=1))(x=np.array([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])))
    [5. 3.]
    """
    return _reduce("max", _nonempty("max", x), axis, keepdims)


def min(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Expr:  # noqa: A001
    """Minimum over ``axis``; ties share the gradient equally.

    ``amin`` is the same function.

    >>> x = sd.Input("x", shape=(2, 3))
    >>> sd.min(x, axis=1, keepdims=True).shape
    (2, 1)
    """
    return _reduce("min", _nonempty("min", x), axis, keepdims)


amax, amin = max, min


def var(x: ArrayLike, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Expr:
    """Variance over ``axis``, ``sum((x - mean(x))**2) / (n - ddof)`` as NumPy computes it (``ddof=1``: the
    unbiased estimate); its gradient is ``2 * (x - mean(x)) / (n - ddof)``.

    >>> x = sd.Input("x", shape=(4,))
    >>> f = sd.compile({"biased": sd.var(x), "unbiased": sd.var(x, ddof=1)})
    >>> out = f(x=np.array([1.0, 2.0, 3.0, 4.0]))
    >>> print(out["biased"], out["unbiased"])
    1.25 1.6666666666666667
    """
    return _moment("var", x, axis, keepdims, ddof)


def std(x: ArrayLike, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Expr:
    """Standard deviation over ``axis``, ``sqrt(var(x, axis, ddof=ddof))``.

    >>> x = sd.Input("x", shape=(4,))
    >>> print(sd.compile(sd.std(x))(x=np.array([1.0, 2.0, 3.0, 4.0])))
    1.118033988749895
    """
    return _moment("std", x, axis, keepdims, ddof)


def _moment(op: str, x: ArrayLike, axis: Any, keepdims: bool, ddof: int) -> Expr:
    x = as_expr(x)
    if not isinstance(ddof, (int, np.integer)) or isinstance(ddof, bool) or ddof < 0:
        raise DTypeError(f"{op}: ddof must be a non-negative int, got {ddof!r}")
    axes = normalize_axis(axis, x.ndim, op, x.shape)
    return make(op, (x,), {"axis": axes, "keepdims": bool(keepdims), "ddof": int(ddof)})


def argmax(x: ArrayLike, axis: int | None = None, keepdims: bool = False) -> Expr:
    """Index (int64) of the largest element along ``axis``, the first on ties; ``axis=None`` indexes the
    flattened array, as in NumPy. No gradient.

    >>> x = sd.Input("x", shape=(2, 3))
    >>> print(sd.compile(sd.argmax(x, axis=1))(x=np.array([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])))
    [1 2]
    """
    return _arg_extremum("argmax", x, axis, keepdims)


def argmin(x: ArrayLike, axis: int | None = None, keepdims: bool = False) -> Expr:
    """Index (int64) of the smallest element along ``axis``, the first on ties; ``axis=None`` indexes the
    flattened array, as in NumPy. No gradient.

    >>> x = sd.Input("x", shape=(2, 3))
    >>> print(sd.compile(sd.argmin(x, axis=1))(x=np.array([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])))
    [0 1]
    """
    return _arg_extremum("argmin", x, axis, keepdims)


def _arg_extremum(op: str, x: ArrayLike, axis: int | None, keepdims: bool) -> Expr:
    x = _nonempty(op, x)
    if isinstance(axis, (tuple, list)):
        raise DTypeError(f"{op}: axis must be an int or None, not {axis!r} (NumPy takes one axis)")
    if axis is not None:
        axis = normalize_axis(axis, x.ndim, op, x.shape)[0]
    return make(op, (x,), {"axis": axis, "keepdims": bool(keepdims)})


def dim(x: Expr, axis: int) -> Expr:
    """The run-time length of ``axis`` of ``x`` (a constant when static), read off the earliest operand."""
    ax = normalize_axis(axis, x.ndim, "dim", x.shape)[0]
    if x.shape[ax] is not None:
        return constant(x.shape[ax])
    return canonical_dim(make("dim", (x,), {"axis": ax}))


def count(x: Expr, axis: Any = None) -> Expr:
    """The number of elements ``sum(x, axis)`` adds up, as an expression (a constant when known)."""
    axes = normalize_axis(axis, x.ndim, "count", x.shape)
    known = math.prod(d for i, d in enumerate(x.shape) if i in axes and d is not None)
    result: Expr | None = None
    for i in axes:
        if x.shape[i] is None:
            d = dim(x, i)
            result = d if result is None else _binary("mul", result, d)
    if result is None:
        return constant(known)
    return result if known == 1 else _binary("mul", constant(known), result)


def mean(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Expr:
    """Mean over ``axis``: ``sum(x, axis) / count``.

    >>> x = sd.Input("x", shape=(None,))
    >>> print(sd.compile(sd.mean(x))(x=np.array([1.0, 2.0, 3.0, 6.0])))
    3.0
    """
    x = as_expr(x)
    axis = normalize_axis(axis, x.ndim, "mean", x.shape)
    total = sum(x, axis=axis, keepdims=keepdims)
    if total.dtype.kind != "f":
        total = astype(total, "float64")
    return _binary("div", total, count(x, axis))


def logsumexp(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Expr:
    """``log(sum(exp(x), axis))`` evaluated with the max shifted out (no overflow); all axes by default.

    >>> x = sd.Input("x", shape=(2,))
    >>> print(sd.compile(sd.logsumexp(x))(x=np.array([1000.0, 1000.0])))
    1000.6931471805599
    """
    return _reduce("logsumexp", x, axis, keepdims)


def softmax(x: ArrayLike, axis: Any = -1) -> Expr:
    """``exp(x) / sum(exp(x), axis, keepdims=True)``, max-shifted for stability.

    >>> x = sd.Input("x", shape=(2,))
    >>> print(sd.compile(sd.softmax(x))(x=np.log([1.0, 3.0])))
    [0.25 0.75]
    """
    x = as_expr(x)
    return make("softmax", (x,), {"axis": normalize_axis(axis, x.ndim, "softmax", x.shape)})


def log_softmax(x: ArrayLike, axis: Any = -1) -> Expr:
    """``x - logsumexp(x, axis, keepdims=True)``, max-shifted for stability.

    >>> x, y = sd.Input("x", shape=(None, 3)), sd.Input("y", shape=(None,), dtype="int64")
    >>> print(sd.grad(-sd.sum(sd.pick(sd.log_softmax(x), y)), x))  # the cross-entropy's gradient
    dx = softmax(x) - onehot(y, 3)
    """
    x = as_expr(x)
    return make("log_softmax", (x,), {"axis": normalize_axis(axis, x.ndim, "log_softmax", x.shape)})


# -- shape manipulation ----------------------------------------------------------------------
def transpose(x: ArrayLike, axes: Sequence[int] | None = None) -> Expr:
    """Permute axes (reverse them when ``axes`` is ``None``), like ``np.transpose``.

    >>> x = sd.Input("x", shape=(2, 3, 4))
    >>> sd.transpose(x).shape, sd.transpose(x, (0, 2, 1)).shape
    ((4, 3, 2), (2, 4, 3))
    """
    x = as_expr(x)
    if axes is None:
        perm = tuple(reversed(range(x.ndim)))
    else:
        perm = tuple(int(a) % x.ndim if x.ndim else int(a) for a in axes)
        if sorted(perm) != list(range(x.ndim)):
            raise ShapeError(f"transpose: axes {tuple(axes)!r} are not a permutation for shape {format_shape(x.shape)}")
    if perm == tuple(range(x.ndim)):
        return x
    return make("transpose", (x,), {"axes": perm})


def swapaxes(x: ArrayLike, a: int, b: int) -> Expr:
    """Exchange two axes.

    >>> sd.swapaxes(sd.Input("x", shape=(2, 3, 4)), 0, 2).shape
    (4, 3, 2)
    """
    x = as_expr(x)
    perm = list(range(x.ndim))
    a, b = normalize_axis(a, x.ndim, "swapaxes", x.shape)[0], normalize_axis(b, x.ndim, "swapaxes", x.shape)[0]
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def reshape(x: ArrayLike, shape: Any) -> Expr:
    """Reshape to ``shape``; one entry may be ``-1`` (it absorbs an open-length axis).

    >>> x = sd.Input("x", shape=(None, 4))
    >>> sd.reshape(x, (-1, 2, 2)).shape
    (None, 2, 2)
    """
    x = as_expr(x)
    new = tuple(int(d) for d in ((shape,) if isinstance(shape, (int, np.integer)) else shape))
    if any(d < -1 for d in new) or new.count(-1) > 1:
        raise ShapeError(f"reshape: invalid target shape {new!r} for shape {format_shape(x.shape)}")
    return _reshaped(x, "reshape", "newshape", new)


def _reshaped(x: Expr, op: str, attr: str, shape: tuple) -> Expr:
    """``op`` (reshape, broadcast_to) of ``x`` to ``shape`` (its ``attr``); ``x`` itself when it has that shape."""
    return x if shape == x.shape else make(op, (x,), {attr: shape})


def expand_dims(x: ArrayLike, axis: Any) -> Expr:
    """Insert length-1 axes at ``axis`` (positions in the result).

    >>> sd.expand_dims(sd.Input("x", shape=(3,)), 0).shape
    (1, 3)
    """
    x = as_expr(x)
    added = len(axis) if isinstance(axis, (tuple, list)) else 1  # normalize_axis refuses anything else
    axes = normalize_axis(axis, x.ndim + added, "expand_dims")
    return make("expand_dims", (x,), {"axis": axes})


def squeeze(x: ArrayLike, axis: Any) -> Expr:
    """Remove the length-1 axes ``axis``.

    >>> sd.squeeze(sd.Input("x", shape=(3, 1)), 1).shape
    (3,)
    """
    x = as_expr(x)
    axes = normalize_axis(axis, x.ndim, "squeeze", x.shape)
    return make("squeeze", (x,), {"axis": axes})


def broadcast_to(x: ArrayLike, shape: Any) -> Expr:
    """``x`` broadcast to a fully known ``shape``.

    >>> sd.broadcast_to(sd.Input("x", shape=(3,)), (2, 3)).shape
    (2, 3)
    """
    x, shp = as_expr(x), normalize_shape(shape)
    if any(d is None for d in shp):
        raise ShapeError(f"broadcast_to: target shape {format_shape(shp)} must be fully known")
    return _reshaped(x, "broadcast_to", "shape", shp)


def broadcast_like(x: ArrayLike, ref: Expr) -> Expr:
    """``x`` broadcast to the run-time shape of ``ref`` (``ref`` is used only for its shape)."""
    x = as_expr(x)
    if x.shape == ref.shape and None not in x.shape:
        return x
    return make("broadcast_like", (x, ref))


def zeros_like(x: Expr, dtype: Any = None) -> Expr:
    """Zeros with the shape of ``x`` (symbolic: no array is built until it is needed)."""
    dt = as_dtype(dtype) if dtype is not None else x.dtype
    zero = constant(np.zeros((), dtype=dt))
    return broadcast_like(zero, x) if x.shape else zero


def concatenate(arrays: Sequence[ArrayLike], axis: int = 0) -> Expr:
    """Join expressions along an existing axis.

    >>> a, b = sd.Input("a", shape=(2, 3)), sd.Input("b", shape=(4, 3))
    >>> sd.concatenate([a, b]).shape
    (6, 3)
    """
    items = tuple(as_expr(a) for a in arrays)
    if not items:
        raise ValueError("concatenate: need at least one array")
    if len(items) == 1:
        return items[0]
    ax = normalize_axis(axis, items[0].ndim, "concatenate", items[0].shape)[0]
    return make("concatenate", items, {"axis": ax})


def stack(arrays: Sequence[ArrayLike], axis: int = 0) -> Expr:
    """Join expressions along a new axis.

    >>> a, b = sd.Input("a", shape=(3,)), sd.Input("b", shape=(3,))
    >>> sd.stack([a, b], axis=1).shape
    (3, 2)
    """
    items = [as_expr(a) for a in arrays]
    if not items:
        raise ValueError("stack: need at least one array")
    shapes = {a.shape for a in items}
    if len(shapes) > 1:
        listed = " and ".join(format_shape(s) for s in sorted(shapes, key=str))
        raise ShapeError(f"stack: all inputs must have the same shape, got {listed}")
    ax = normalize_axis(axis, items[0].ndim + 1, "stack")[0]
    return concatenate([expand_dims(a, ax) for a in items], axis=ax)


def _normalize_index(x: Expr, index: Any) -> tuple[tuple, ...]:
    """Basic NumPy indexing -> a canonical tuple of ("slice", start, stop, step) / ("int", i) / ("new",)."""
    if not isinstance(index, tuple):
        index = (index,)
    for item in index:
        if isinstance(item, (Expr, np.ndarray, list)) or (isinstance(item, bool)):
            raise UnsupportedError(
                f"getitem: only basic indexing (ints, slices, None, ...) is supported, got {type(item).__name__}; "
                "for class labels use sd.pick(x, labels)"
            )
    if builtins.sum(1 for i in index if i is Ellipsis) > 1:
        raise IndexError("getitem: an index can only have a single ellipsis ('...')")
    n_real = builtins.sum(1 for i in index if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        raise ShapeError(f"getitem: too many indices ({n_real}) for shape {format_shape(x.shape)}")
    expanded: list[Any] = []
    for item in index:
        if item is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - n_real))
        else:
            expanded.append(item)
    expanded.extend([slice(None)] * (x.ndim - builtins.sum(1 for i in expanded if i is not None)))
    entries: list[tuple] = []
    axis = 0
    for item in expanded:
        if item is None:
            entries.append(("new",))
            continue
        d = x.shape[axis]
        if isinstance(item, (int, np.integer)):
            i = int(item)
            if d is not None and not -d <= i < d:
                raise ShapeError(
                    f"getitem: index {i} is out of bounds for axis {axis} with size {d} (shape {format_shape(x.shape)})"
                )
            entries.append(("int", i % d if d is not None else i))
        elif isinstance(item, slice):
            parts = []
            for p in (item.start, item.stop, item.step):
                if p is not None and not isinstance(p, (int, np.integer)):
                    raise UnsupportedError(f"getitem: slice bounds must be ints or None, got {p!r}")
                parts.append(None if p is None else int(p))
            if parts[2] == 0:
                raise ValueError("getitem: slice step cannot be zero")
            if parts[2] == 1:
                parts[2] = None
            if parts[0] == 0 and (parts[2] is None or parts[2] > 0):
                parts[0] = None
            entries.append(("slice", *parts))
        else:
            raise UnsupportedError(f"getitem: unsupported index {item!r}")
        axis += 1
    while entries and entries[-1] == ("slice", None, None, None):
        entries.pop()
    return tuple(entries)


def getitem(x: ArrayLike, index: Any) -> Expr:
    """Basic NumPy indexing: ints (negative too), slices with steps, ``None`` and ``...``."""
    x = as_expr(x)
    entries = _normalize_index(x, index)
    if not entries:
        return x
    return make("getitem", (x,), {"index": entries})


def make_scatter(g: Expr, like: Expr, entries: tuple) -> Expr:
    """Zeros shaped like ``like`` with ``g`` written at the canonical index ``entries`` (getitem's VJP)."""
    return make("scatter", (g, like), {"index": entries})


def pick(x: ArrayLike, labels: ArrayLike) -> Expr:
    """``x[i, labels[i]]`` for each row: selects one entry along the last axis per label.

    >>> x, y = sd.Input("x", shape=(None, 3)), sd.Input("y", shape=(None,), dtype="int64")
    >>> f = sd.compile(sd.pick(x, y))
    >>> print(f(x=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), y=np.array([2, 0])))
    [3. 4.]
    """
    return make("pick", (as_expr(x), as_expr(labels)))


def onehot(labels: ArrayLike, depth: int, dtype: Any = "float64") -> Expr:
    """One-hot rows: ``onehot(y, k)[i, j] = (y[i] == j)``.

    >>> y = sd.Input("y", shape=(None,), dtype="int64")
    >>> print(sd.compile(sd.onehot(y, 4))(y=np.array([2, 0])))
    [[0. 0. 1. 0.]
     [1. 0. 0. 0.]]
    """
    return make("onehot", (as_expr(labels),), {"depth": int(depth), "dtype": as_dtype(dtype).str})


# -- products --------------------------------------------------------------------------------
def matmul(a: ArrayLike, b: ArrayLike) -> Expr:
    """``a @ b`` with NumPy's matmul rules (1-D promotion, broadcast batch axes).

    >>> x, W, v = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 2)), sd.Input("v", shape=(2,))
    >>> sd.matmul(x, W).shape
    (None, 2)
    >>> print(sd.grad(sd.matmul(x[0], W) @ v, W))
    dW = outer(x[0], v)
    """
    return _binary("matmul", a, b)


def outer(a: ArrayLike, b: ArrayLike) -> Expr:
    """The outer product ``a[:, None] * b[None, :]`` of two vectors (other shapes are flattened, as in NumPy).

    >>> a, b = sd.Input("a", shape=(3,)), sd.Input("b", shape=(4,))
    >>> sd.outer(a, b).shape
    (3, 4)
    """
    a, b = (v if v.ndim == 1 else reshape(v, -1) for v in (as_expr(a), as_expr(b)))
    return make("outer", (a, b))


def trace(x: ArrayLike) -> Expr:
    """The sum of the diagonal of a matrix; for more axes, of the first two (NumPy's default), keeping the rest.

    >>> X = sd.Param("X", shape=(3, 3))
    >>> print(sd.grad(sd.trace(X @ X), X))
    dX = 2 * X.T
    """
    return make("trace", (as_expr(x),))


def diag(x: ArrayLike) -> Expr:
    """NumPy's ``diag``: the diagonal matrix of a vector, or the diagonal of a matrix (its first ``min(n, m)``
    entries).

    >>> v = sd.Input("v", shape=(3,))
    >>> sd.diag(v).shape, sd.diag(sd.diag(v)).shape
    ((3, 3), (3,))
    """
    x = as_expr(x)
    return make("diagonal" if x.ndim == 2 else "diag", (x,))


def eye(n: int, m: int | None = None, *, dtype: Any = "float64") -> Expr:
    """The ``n x n`` identity matrix (``n x m`` with ones on the diagonal), as ``np.eye(n, m, dtype=dtype)``.

    >>> print(sd.compile(sd.eye(2, 3))())
    [[1. 0. 0.]
     [0. 1. 0.]]
    """
    for what, v in (("n", n), ("m", n if m is None else m)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise DTypeError(f"eye: {what} must be an int, got {v!r}")
        if v < 0:
            raise ValueError(f"eye: {what} must be non-negative, got {v}")
    m = None if m is None or m == n else int(m)
    return make("eye", (), {"n": int(n), "m": m, "dtype": as_dtype(dtype).str})


def _tensordot_axes(a: Expr, b: Expr, axes: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > a.ndim or n > b.ndim:
            raise ShapeError(
                f"tensordot: axes={n} is invalid for shapes {format_shape(a.shape)} and {format_shape(b.shape)}"
            )
        return tuple(range(a.ndim - n, a.ndim)), tuple(range(n))
    try:
        ax_a, ax_b = axes
    except (TypeError, ValueError):
        raise ShapeError(f"tensordot: axes {axes!r} must be an int or a pair of axis lists") from None
    ax_a = (ax_a,) if isinstance(ax_a, (int, np.integer)) else tuple(ax_a)
    ax_b = (ax_b,) if isinstance(ax_b, (int, np.integer)) else tuple(ax_b)
    if len(ax_a) != len(ax_b):
        raise ShapeError(
            f"tensordot: axes {axes!r} have different lengths for shapes "
            f"{format_shape(a.shape)} and {format_shape(b.shape)}"
        )
    na = tuple(normalize_axis(i, a.ndim, "tensordot", a.shape)[0] for i in ax_a)
    nb = tuple(normalize_axis(i, b.ndim, "tensordot", b.shape)[0] for i in ax_b)
    return na, nb


def tensordot(a: ArrayLike, b: ArrayLike, axes: Any = 2) -> Expr:
    """Sum products over ``axes`` like ``np.tensordot`` (result axes: a's free axes, then b's).

    >>> A, B = sd.Input("A", shape=(2, 3, 4, 5)), sd.Input("B", shape=(5, 6))
    >>> sd.tensordot(A, B, axes=1).shape
    (2, 3, 4, 6)
    """
    a, b = as_expr(a), as_expr(b)
    ax_a, ax_b = _tensordot_axes(a, b, axes)
    return make("tensordot", (a, b), {"axes": (ax_a, ax_b)})


def dot(a: ArrayLike, b: ArrayLike) -> Expr:
    """``np.dot`` semantics: (a,b,c,d)·(d,) -> (a,b,c) and (a,b,c,d)·(d,e) -> (a,b,c,e).

    >>> A, B = sd.Input("A", shape=(2, 3, 4, 5)), sd.Input("B", shape=(5, 6))
    >>> sd.dot(A, B).shape
    (2, 3, 4, 6)
    """
    a, b = as_expr(a), as_expr(b)
    if a.ndim == 0 or b.ndim == 0:
        return _binary("mul", a, b)
    check_contraction("dot", a, b, matmul_pairs(a, b))  # dot sums over the same axes as matmul
    if a.ndim <= 2 and b.ndim <= 2:
        return matmul(a, b)
    if b.ndim == 1:
        return tensordot(a, b, axes=((a.ndim - 1,), (0,)))
    return tensordot(a, b, axes=((a.ndim - 1,), (b.ndim - 2,)))


def broadcast_shapes_or_none(*shapes: tuple) -> tuple | None:
    """The broadcast of ``shapes``, or ``None`` when they do not broadcast."""
    try:
        return broadcast_shapes("broadcast", *shapes)
    except ShapeError:
        return None


# The public wrappers, by name: ``sd.<name>`` and the functions the text parser (``sd.parse``) may call.
# The element-wise functions of one or two arguments (exp, tanh, add, greater, ...) are not listed here: their
# op table entry defines them (``define_elementwise``) once ``symdiff.ops`` is imported, which ``import symdiff``
# does.
# tests/test_op_table.py checks every op with a wrapper of its own name is listed here or declared internal.
PUBLIC: list[str] = [
    # element-wise
    "abs",
    "absolute",
    "square",
    "where",
    "clip",
    "log_sigmoid",
    "power",
    # products
    "dot",
    "matmul",
    "tensordot",
    "outer",
    # matrices
    "trace",
    "diag",
    "eye",
    # shapes
    "transpose",
    "swapaxes",
    "reshape",
    "expand_dims",
    "squeeze",
    "broadcast_to",
    "concatenate",
    "stack",
    # reductions
    "sum",
    "mean",
    "max",
    "amax",
    "min",
    "amin",
    "var",
    "std",
    "argmax",
    "argmin",
    "logsumexp",
    "softmax",
    "log_softmax",
    # labels and losses
    "onehot",
    "pick",
    # embeddings and dropout
    "take",
    "scatter_add",
    "dropout",
    # pooling and normalization
    "max_pool2d",
    "avg_pool2d",
    "layer_norm",
    "batch_norm",
    # convolution
    "conv2d",
]


def define_elementwise(
    op: str, name: str, doc: str, nargs: int, example: str | None = None, differentiable: bool = True
) -> Callable[..., Expr]:
    """Define the public wrapper ``name(x)`` (``nargs`` 1) or ``name(a, b)`` (``nargs`` 2) of the element-wise op
    ``op`` in this module, with the docstring ``doc``, and list it in :data:`PUBLIC`: an op table entry with a
    ``doc`` calls it, so that entry is the function's only home.

    With ``example`` (what it prints) the docstring ends with an example: the wrapper applied to scalar inputs and
    its derivative printed, or for an op that is not ``differentiable``, the expression printed with its dtype."""
    if name in PUBLIC or name in globals():
        raise ValueError(f"define_elementwise: {name!r} is already defined (an op's wrapper has one home: its entry)")
    if nargs == 1:

        def wrapper(x: ArrayLike) -> Expr:
            return _unary(op, x)

    elif nargs == 2:

        def wrapper(a: ArrayLike, b: ArrayLike) -> Expr:  # type: ignore[misc]
            return _binary(op, a, b)

    else:
        raise ValueError(f"define_elementwise: {name!r} takes {nargs} arguments; only 1 or 2 get a derived wrapper")
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = (
        doc if example is None else f"{doc}\n\n{_elementwise_example(name, nargs, example, differentiable)}"
    )
    globals()[name] = wrapper
    PUBLIC.append(name)
    return wrapper


def _elementwise_example(name: str, nargs: int, output: str, differentiable: bool) -> str:
    """The doctest of an element-wise wrapper (see :func:`define_elementwise`) that prints ``output``."""
    symbols = ["x"] if nargs == 1 else ["a", "b"]
    inputs = ", ".join(f'sd.Input("{s}", shape=())' for s in symbols)
    shown = (
        ("print(sd.grad(y, x))" if nargs == 1 else "print(sd.to_text(sd.grad(y, [a, b])))")
        if differentiable
        else "print(y, y.dtype)"
    )
    lines = [f"{', '.join(symbols)} = {inputs}", f"y = sd.{name}({', '.join(symbols)})", shown]
    return "\n".join([*(f">>> {line}" for line in lines), output])


# -- embeddings and dropout ----------------------------------------------------------------------
def take(table: ArrayLike, ids: ArrayLike, axis: int | None = 0) -> Expr:
    """NumPy's ``take``: the slices of ``table`` along ``axis`` at the integer ``ids`` (any shape), an embedding
    lookup for ``axis=0``; the result has shape ``table.shape[:axis] + ids.shape + table.shape[axis + 1:]``
    (``axis=None`` takes from the flattened table). A negative id counts from the end, as in NumPy. The gradient
    with respect to the table is :func:`scatter_add` (a row looked up several times gets the sum of its
    gradients); the ids have none.

    >>> table, ids = sd.Param("table", shape=(10, 4)), sd.Input("ids", shape=(None, 5), dtype="int64")
    >>> sd.take(table, ids).shape
    (None, 5, 4)
    """
    table, ids = as_expr(table), as_expr(ids)
    if axis is None:
        table, axis = reshape(table, -1), 0
    if table.ndim == 0:
        raise ShapeError("take: the table must have at least one axis")
    return make("take", (table, ids), {"axis": normalize_axis(axis, table.ndim, "take", table.shape)[0]})


def scatter_add(values: ArrayLike, ids: ArrayLike, size: int, axis: int = 0) -> Expr:
    """Zeros with ``size`` slices along ``axis``, each slice ``values[..., j, ...]`` added at ``ids[j]``: the
    transpose of :func:`take` (its gradient), ``np.add.at(zeros, ids, values)``; repeated ids accumulate. The
    values have shape ``out.shape[:axis] + ids.shape + out.shape[axis + 1:]``.

    >>> values, ids = sd.Input("values", shape=(3,)), sd.Input("ids", shape=(3,), dtype="int64")
    >>> f = sd.compile(sd.scatter_add(values, ids, size=4))
    >>> print(f(values=np.array([1.0, 2.0, 3.0]), ids=np.array([0, 2, 0])))
    [4. 0. 2. 0.]
    """
    values, ids = as_expr(values), as_expr(ids)
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 0:
        raise ValueError(f"scatter_add: size must be a non-negative int, got {size!r}")
    ax = normalize_axis(axis, values.ndim - ids.ndim + 1, "scatter_add")[0]
    return make("scatter_add", (values, ids), {"size": int(size), "axis": ax})


_SEEDS = np.random.default_rng(0)  # the seeds of dropout(..., seed=None), in the order the calls build them
_ISSUED: set[int] = set()
_SEEDS_LOCK = threading.Lock()


def dropout(x: ArrayLike, rate: float, seed: int | None = None) -> Expr:
    """Inverted dropout: ``x * m`` where each element of the mask ``m`` is 0 with probability ``rate`` and
    ``1 / (1 - rate)`` otherwise (kept values are scaled, so the expected value is ``x``); ``rate`` 0 is ``x``.

    Training runs (``sd.compile_step``, ``sd.fit``, ``sd.compile(..., training=True)``) draw a fresh mask on every
    call from a generator seeded by ``seed``: a new compile repeats the same sequence of masks, and two dropouts
    with one seed draw the same masks. ``seed=None`` gives this dropout a seed of its own (distinct from every
    other ``seed=None`` dropout's). The gradient ``dx = dy * m`` uses the forward pass's mask. Evaluation
    (``sd.compile`` without ``training=True``, ``sd.evaluate``, ``fit``'s metrics) leaves it out: dropout is the
    identity there.

    >>> x = sd.Input("x", shape=(None, 8))
    >>> y = sd.dropout(x, 0.5, seed=0)
    >>> y.shape
    (None, 8)
    >>> print(sd.compile(y)(x=np.ones((1, 8))))  # evaluation: the identity
    [[1. 1. 1. 1. 1. 1. 1. 1.]]
    """
    x = as_expr(x)
    if not isinstance(rate, (int, float, np.integer, np.floating)) or isinstance(rate, bool):
        raise DTypeError(f"dropout: rate must be a number in [0, 1) (the fraction dropped), got {rate!r}")
    if not 0 <= rate < 1:
        raise ValueError(f"dropout: rate must be in [0, 1) (the fraction dropped), got {rate!r}")
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"dropout: seed must be a non-negative int or None, got {seed!r}")
    if rate == 0:
        return x
    if seed is None:
        with _SEEDS_LOCK:
            while seed is None or seed in _ISSUED:
                seed = int(_SEEDS.integers(2**32))
            _ISSUED.add(seed)
    return _binary("mul", x, make("dropout_mask", (x,), {"rate": float(rate), "seed": int(seed)}))


# -- pooling and normalization ---------------------------------------------------------------
def spatial_pair(op: str, what: str, value: Any) -> tuple[int, int]:
    """A window size, stride, dilation or kernel ``value`` (an int, or a pair for height and width) as a pair of
    positive ints; ``ValueError`` naming ``op`` and ``what``."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2
    if not ok or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"{op}: {what} must be a positive int or a pair of them (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def _pool2d(op: str, x: ArrayLike, size: Any, stride: Any) -> Expr:
    x = as_expr(x)
    if x.ndim != 4:
        raise ShapeError(f"{op}: expected a batch of images of shape (N, H, W, C), got shape {format_shape(x.shape)}")
    window = spatial_pair(op, "size", size)
    step = window if stride is None else spatial_pair(op, "stride", stride)
    return make(op, (x,), {"size": window, "stride": step})


def max_pool2d(x: ArrayLike, size: Any, stride: Any = None) -> Expr:
    """The maximum of each ``size`` window (an int, or ``(height, width)``) of the images ``x`` of shape
    ``(N, H, W, C)``, every channel apart, windows placed every ``stride`` pixels (default: ``size``, windows side
    by side); "valid" windows only: rows and columns that fill no window are left out. The gradient goes to each
    window's maximum, ties sharing it equally (as in :func:`max`).

    >>> x = sd.Input("x", shape=(None, 28, 28, 3))
    >>> sd.max_pool2d(x, 2).shape
    (None, 14, 14, 3)
    """
    return _pool2d("max_pool2d", x, size, stride)


def avg_pool2d(x: ArrayLike, size: Any, stride: Any = None) -> Expr:
    """The mean of each ``size`` window (an int, or ``(height, width)``) of the images ``x`` of shape
    ``(N, H, W, C)``, every channel apart, windows placed every ``stride`` pixels (default: ``size``); "valid"
    windows only, as :func:`max_pool2d`. Integer images are averaged in float64.

    >>> x = sd.Input("x", shape=(None, 28, 28, 3))
    >>> sd.avg_pool2d(x, 3, stride=2).shape
    (None, 13, 13, 3)
    """
    x = as_expr(x)
    return _pool2d("avg_pool2d", x if x.dtype.kind == "f" else astype(x, "float64"), size, stride)


def _normalized(op: str, x: ArrayLike, axis: Any, eps: float) -> Expr:
    """The op ``op`` (layer_norm, batch_norm) of ``x`` (integers in float64) over ``axis``."""
    x = as_expr(x)
    if not isinstance(eps, (int, float, np.integer, np.floating)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps!r}")
    axes = normalize_axis(axis, x.ndim, op, x.shape)
    return make(op, (x if x.dtype.kind == "f" else astype(x, "float64"),), {"axis": axes, "eps": float(eps)})


def layer_norm(x: ArrayLike, axis: Any = -1, eps: float = 1e-5) -> Expr:
    """Layer normalization without scale and shift: ``(x - mean(x)) / sqrt(var(x) + eps)``, the mean and the
    variance over ``axis`` (an int or a tuple; the features) of each sample.

    >>> x = sd.Input("x", shape=(None, 3))
    >>> print(sd.compile(sd.layer_norm(x))(x=np.array([[1.0, 2.0, 3.0]])).round(3))
    [[-1.225  0.     1.225]]
    """
    return _normalized("layer_norm", x, axis, eps)


def batch_norm(x: ArrayLike, axis: Any = 0, eps: float = 1e-5) -> Expr:
    """Batch normalization in training mode, without scale and shift: ``(x - mean(x)) / sqrt(var(x) + eps)``, the
    mean and the variance over the batch axis ``axis`` (an int or a tuple: ``(0, 1, 2)`` for NHWC images, per
    channel); the batch may have a run-time length (``None``).

    >>> x = sd.Input("x", shape=(None, 8, 8, 3))
    >>> sd.batch_norm(x, axis=(0, 1, 2)).shape
    (None, 8, 8, 3)
    """
    return _normalized("batch_norm", x, axis, eps)


# -- convolution -----------------------------------------------------------------------------
Pads = tuple[tuple[int, int], tuple[int, int]]


def _is_seq(value: Any) -> bool:
    return isinstance(value, (tuple, list))


def conv_padding(
    op: str,
    padding: Any,
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> Pads:
    """Explicit pads ``((top, bottom), (left, right))`` for ``padding``: ``"valid"`` (none), ``"same"`` (as
    TensorFlow: the output has ``ceil(size / stride)`` rows and columns, the odd pixel of padding at the bottom and
    right) or explicit pads (an int, a pair per axis or a pair of pairs). TensorFlow's ``"SAME"`` and ``"VALID"``
    are read alike."""
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return (0, 0), (0, 0)
        if padding.lower() != "same":
            raise ValueError(f'{op}: padding must be "valid", "same" or explicit pads, got {padding!r}')
        pads = []
        for n, k, s, d in zip(size, kernel, stride, dilation):
            total = builtins.max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)  # type: ignore[return-value]
    if isinstance(padding, (int, np.integer)):
        padding = ((padding, padding), (padding, padding))
    if _is_seq(padding) and len(padding) == 2:
        axes = [(p, p) if isinstance(p, (int, np.integer)) else tuple(p) if _is_seq(p) else None for p in padding]
        if all(
            a is not None and len(a) == 2 and all(isinstance(v, (int, np.integer)) and v >= 0 for v in a) for a in axes
        ):
            return tuple((int(a[0]), int(a[1])) for a in axes)  # type: ignore[return-value]
    raise ValueError(
        f'{op}: padding must be "valid", "same" or explicit non-negative pads (an int, (rows, columns) or '
        f"((top, bottom), (left, right))), got {padding!r}"
    )


def conv_output_size(n: int, k: int, s: int, d: int, pads: tuple[int, int]) -> int:
    """The output length along one spatial axis of a convolution: windows of ``k`` taps ``d`` apart, ``s`` apart,
    over ``n`` pixels padded by ``pads``."""
    return (n + pads[0] + pads[1] - d * (k - 1) - 1) // s + 1


def conv2d(x: ArrayLike, w: ArrayLike, stride: Any = 1, padding: Any = "valid", dilation: Any = 1) -> Expr:
    """2-D convolution (cross-correlation, as in deep learning) of images ``x`` ``(N, H, W, C_in)`` with filters
    ``w`` ``(kh, kw, C_in, C_out)``: ``(N, H_out, W_out, C_out)``.

    ``stride`` and ``dilation`` are ints or ``(rows, columns)`` pairs; ``padding`` is ``"valid"`` (none), ``"same"``
    (as TensorFlow: ``H_out = ceil(H / stride)``, for any stride and dilation) or explicit pads (an int,
    ``(rows, columns)`` or ``((top, bottom), (left, right))``). Its gradients are a transposed convolution
    (``conv2d_transpose(dy, w)``, to ``x``) and a correlation of ``x`` with ``dy`` (``conv2d_filters(x, dy)``, to
    ``w``).

    >>> x, w = sd.Input("x", shape=(None, 28, 28, 1)), sd.Param("w", shape=(3, 3, 1, 8))
    >>> sd.conv2d(x, w).shape, sd.conv2d(x, w, padding="same").shape
    ((None, 26, 26, 8), (None, 28, 28, 8))
    """
    x, w = as_expr(x), as_expr(w)
    stride, dilation = spatial_pair("conv2d", "stride", stride), spatial_pair("conv2d", "dilation", dilation)
    if x.ndim != 4 or w.ndim != 4 or None in x.shape[1:3] or None in w.shape[:2]:
        raise ShapeError(
            f"conv2d: expected images x (N, H, W, C_in) and filters w (kh, kw, C_in, C_out) with known H, W, kh, kw; "
            f"got shapes {format_shape(x.shape)} (x) and {format_shape(w.shape)} (w)"
        )
    pads = conv_padding("conv2d", padding, x.shape[1:3], w.shape[:2], stride, dilation)
    return make("conv2d", (x, w), {"stride": stride, "padding": pads, "dilation": dilation})
