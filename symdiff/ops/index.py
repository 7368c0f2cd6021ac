"""Integer indexing: ``take`` (an embedding lookup) and its transpose, ``scatter_add``.

``take(table, ids, axis)`` is NumPy's ``np.take``: the slices of ``table`` along ``axis`` at the integer ``ids``
(any shape; a negative id counts from the end, an id out of range raises ``IndexError``), giving the shape
``table.shape[:axis] + ids.shape + table.shape[axis + 1:]``. Its gradient with respect to the table is
``scatter_add(dy, ids, n, axis)``: zeros with ``n`` slices along ``axis``, each slice ``dy[..., j, ...]``
added at ``ids[j]`` (``np.add.at(zeros, ids, dy)``), so that a row looked up several times gets the sum of
its gradients. The ids have no gradient.
"""

from __future__ import annotations

import numpy as np

from .. import functions as F
from ..errors import DTypeError, ShapeError
from ..graph import Expr, const_value, format_shape
from .batch import nbatch
from .kernels import KERNELS
from .registry import ATOM, Fmt, call, register


def check_ids(op: str, ids: Expr) -> None:
    """Refuse ids that are not integers (``DTypeError`` naming ``op``)."""
    if ids.dtype.kind not in "iu":
        raise DTypeError(f"{op}: ids must have an integer dtype, got {ids.dtype} (cast them with .astype('int64'))")


def _check_range(op: str, ids: Expr, size: int | None, axis: int) -> None:
    """Refuse constant ids outside ``[-size, size)`` when the graph is built (NumPy would raise when it runs)."""
    if ids.op != "const" or size is None or not const_value(ids).size:
        return
    value = const_value(ids)
    bad = value[(value < -size) | (value >= size)]
    if bad.size:
        raise IndexError(f"{op}: id {bad.flat[0]} is out of bounds for axis {axis} with size {size}")


def _infer_take(args, attrs):
    table, ids = args
    check_ids("take", ids)
    axis = attrs["axis"]
    _check_range("take", ids, table.shape[axis], axis)
    return (*table.shape[:axis], *ids.shape, *table.shape[axis + 1 :]), table.dtype


def _take_vjp(g: Expr, out: Expr, table: Expr, ids: Expr, *, axis: int) -> Expr:
    size = table.shape[axis]
    if size is None:
        raise ShapeError(f"take: axis {axis} of the table must have a known length to differentiate")
    return F.scatter_add(g, ids, size, axis=axis)


def _take_axis_source(out: Expr, ax: int, table: Expr, ids: Expr, *, axis: int) -> tuple[Expr, int]:
    """The ids' axes sit at ``axis``; the table's other axes keep their lengths around them."""
    if ax < axis:
        return table, ax
    if ax < axis + ids.ndim:
        return ids, ax - axis
    return table, ax - ids.ndim + 1


register(
    "take",
    sympy=None,
    infer=_infer_take,
    impl=lambda attrs, table, ids: np.take(table, ids, axis=attrs["axis"]),
    # d take(W, ids) = scatter_add(dy, ids, n): each looked-up slice's gradient added back at its id
    vjp=(_take_vjp, None),
    jvp=(lambda t, out, table, ids, *, axis: F.take(t, ids, axis=axis + nbatch(t, table)), None),
    axis_source=_take_axis_source,
    hint=None,  # lines are named take, take1, ...
    dot=None,  # the text form with placeholders: take(·, ·), take(·, ·, axis=1)
    text=call("take", "axis", defaults={"axis": 0}),
    numpy=call("np.take", "axis"),  # np.take beats W[ids] and np.take(..., out=buf) (buffered): no out= form
    xp=call("_take", "axis"),
    out=None,
    latex=lambda node, args: Fmt(
        f"\\operatorname{{take}}{_axis_sub(node)}\\left({args[0].text}, {args[1].text}\\right)", ATOM
    ),
)


def _axis_sub(node: Expr) -> str:
    """``_{axis}`` for an axis other than 0 (LaTeX)."""
    return f"_{{{node.attrs['axis']}}}" if node.attrs["axis"] else ""


def _infer_scatter_add(args, attrs):
    g, ids = args
    check_ids("scatter_add", ids)
    axis, size = attrs["axis"], attrs["size"]
    span = g.shape[axis : axis + ids.ndim]
    if len(span) != ids.ndim or any(a is not None and b is not None and a != b for a, b in zip(span, ids.shape)):
        raise ShapeError(
            f"scatter_add: ids of shape {format_shape(ids.shape)} do not match axes {axis}.. of "
            f"the values of shape {format_shape(g.shape)}"
        )
    _check_range("scatter_add", ids, size, axis)
    return (*g.shape[:axis], size, *g.shape[axis + ids.ndim :]), g.dtype


def _scatter_add_ref(attrs, g, ids):
    g, ids, axis = np.asarray(g), np.asarray(ids), attrs["axis"]
    out = np.zeros((*g.shape[:axis], attrs["size"], *g.shape[axis + ids.ndim :]), dtype=g.dtype)
    np.add.at(out, (slice(None),) * axis + (ids,), g)
    return out


def _scatter_add_axis_source(out: Expr, ax: int, g: Expr, ids: Expr, *, size: int, axis: int) -> tuple | None:
    """The scattered axis has the fixed length ``size``; the others are the values'."""
    if ax == axis:
        return None
    return (g, ax) if ax < axis else (g, ax + ids.ndim - 1)


def _scatter_add_fmt(fname: str):
    """``fname(dy, ids, n)``, then ``axis=k`` unless it is 0."""

    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        axis = node.attrs["axis"]
        tail = f", axis={axis}" if axis else ""
        return Fmt(f"{fname}({args[0].text}, {args[1].text}, {node.attrs['size']}{tail})", ATOM)

    return fmt


register(
    "scatter_add",
    sympy=None,
    infer=_infer_scatter_add,
    impl=_scatter_add_ref,
    # the transpose of take: its gradient takes the same ids back out
    vjp=(lambda g, out, values, ids, *, size, axis: F.take(g, ids, axis=axis), None),
    jvp=(lambda t, out, values, ids, *, size, axis: F.scatter_add(t, ids, size, axis=axis + nbatch(t, values)), None),
    axis_source=_scatter_add_axis_source,
    hint=None,  # lines are named scatter_add, ... (a gradient takes its target's name, dW)
    dot=None,  # the text form with placeholders: scatter_add(·, ·, 10)
    text=_scatter_add_fmt("scatter_add"),
    numpy=_scatter_add_fmt("_scatter_add"),
    xp=_scatter_add_fmt("_scatter_add"),
    out=None,  # np.zeros (pages the OS zeroes) costs no more than clearing a kept buffer
    kernels=("_scatter_add",),
    latex=lambda node, args: Fmt(
        f"\\operatorname{{scatter\\_add}}_{{{node.attrs['size']}}}{_axis_sub(node)}"
        f"\\left({args[0].text}, {args[1].text}\\right)",
        ATOM,
    ),
)


def _scatter_add(values, ids, size, axis=0):
    # zeros with `size` slices along `axis`, values[..., j, ...] added at ids[j] (repeated ids accumulate), as
    # np.add.at(zeros, ids, values) gives; np.add.at on a flat view with one flat index per element is 4-5x faster
    values, ids = np.asarray(values), np.asarray(ids, dtype=np.intp)
    lead, trail = values.shape[:axis], values.shape[axis + ids.ndim :]
    out = np.zeros((*lead, size, *trail), dtype=values.dtype)
    rows = ids.reshape(-1)
    if rows.size and (rows.min() < -size or rows.max() >= size):
        bad = rows[(rows < -size) | (rows >= size)][0]
        raise IndexError(f"scatter_add: id {bad} is out of bounds for axis {axis} with size {size}")
    inner = int(np.prod(trail, dtype=np.intp))
    starts = (np.arange(int(np.prod(lead, dtype=np.intp)))[:, None] * size + rows % size) * inner
    np.add.at(out.reshape(-1), (starts[..., None] + np.arange(inner)).reshape(-1), values.reshape(-1))
    return out


KERNELS["_scatter_add"] = _scatter_add
