"""Shape ops: indexing, reshape, transpose, expand_dims/squeeze, broadcasting and concatenation."""

from __future__ import annotations

import math

import numpy as np

from .. import functions as F
from ..dims import index_entry
from ..errors import ShapeError, UnsupportedError
from ..graph import Expr, broadcast_shapes, const_value, format_shape, result_dtype
from .batch import align, batched_index, batched_like, nbatch, shifted
from .registry import ATOM, MUL, Fmt, PerArgument, broadcast_axis_source, register, wrap, xp_dtype


# -- indexing ----------------------------------------------------------------------------------
def index_text(entries: tuple) -> str:
    """Canonical index entries as Python subscript text: ``0:2, :, ::-1, None``."""
    parts = []
    for e in entries:
        if e[0] == "new":
            parts.append("None")
        elif e[0] == "int":
            parts.append(str(e[1]))
        else:
            start, stop, step = e[1:]
            s = ("" if start is None else str(start)) + ":" + ("" if stop is None else str(stop))
            if step is not None:
                s += f":{step}"
            parts.append(s)
    return ", ".join(parts) if parts else "()"


def index_value(entries: tuple) -> tuple:
    """Canonical index entries as a real NumPy index tuple."""
    out = []
    for e in entries:
        if e[0] == "new":
            out.append(None)
        elif e[0] == "int":
            out.append(e[1])
        else:
            out.append(slice(*e[1:]))
    return tuple(out)


def _infer_getitem(args, attrs):
    x = args[0]
    shape: list = []
    axis = 0
    for e in attrs["index"]:
        if e[0] == "new":
            shape.append(1)
            continue
        d = x.shape[axis]
        axis += 1
        if e[0] == "int":
            continue
        start, stop, step = e[1:]
        if d is not None:
            shape.append(len(range(*slice(start, stop, step).indices(d))))
        elif start is None and stop is None and step in (None, 1):
            shape.append(None)
        else:
            shape.append(None)
    shape.extend(x.shape[axis:])
    return tuple(shape), x.dtype


def _getitem_axis_source(out: Expr, ax: int, x: Expr, *, index: tuple) -> tuple[Expr, int] | None:
    """An axis taken whole (``:`` or ``::-1``) keeps its length."""
    e, operand_axis = index_entry(out, ax)
    whole = e[0] == "slice" and e[1] is None and e[2] is None and e[3] in (None, -1)
    return (x, operand_axis) if whole else None


register(
    "getitem",
    sympy=None,
    view=True,
    hint="sl",
    infer=_infer_getitem,
    impl=lambda attrs, x: np.asarray(x)[index_value(attrs["index"])],
    # d x[i] = zeros like x with the upstream gradient written at i
    vjp=(lambda g, out, x, *, index: F.make_scatter(g, x, index),),
    jvp=(lambda t, out, x, *, index: F.getitem(t, index_value(batched_index(index, nbatch(t, x)))),),
    axis_source=_getitem_axis_source,
    text=lambda node, args: Fmt(f"{wrap(args[0], ATOM)}[{index_text(node.attrs['index'])}]", ATOM),
    numpy=lambda node, args: Fmt(f"{wrap(args[0], ATOM)}[{index_text(node.attrs['index'])}]", ATOM),
    xp=lambda node, args: Fmt(
        f"_getitem({args[0].text}, _s[{index_text(node.attrs['index'])}])"  # a library may lack negative steps
        if any(e[0] == "slice" and (e[3] or 1) < 0 for e in node.attrs["index"])
        else f"{wrap(args[0], ATOM)}[{index_text(node.attrs['index'])}]",
        ATOM,
    ),
    latex=lambda node, args: Fmt(f"{{{wrap(args[0], ATOM)}}}_{{[{index_text(node.attrs['index'])}]}}", ATOM),
)


def _infer_scatter(args, attrs):
    g, like = args
    return like.shape, g.dtype


def _scatter_ref(attrs, g, like):
    out = np.zeros(np.shape(like), dtype=np.asarray(g).dtype)
    out[index_value(attrs["index"])] = g
    return out


def _scatter_jvp(t: Expr, out: Expr, x: Expr, like: Expr, *, index: tuple) -> Expr:
    nb = nbatch(t, x)
    return F.make_scatter(t, batched_like(like, t.shape[:nb]), batched_index(index, nb))


register(
    "scatter",
    sympy=None,
    infer=_infer_scatter,
    impl=_scatter_ref,
    vjp=(lambda g, out, x, like, *, index: F.getitem(g, index_value(index)), None),
    jvp=(_scatter_jvp, None),
    axis_source=lambda out, ax, x, like, *, index: (like, ax),
    text=lambda node, args: Fmt(
        f"scatter({args[0].text}, {_shape_of_ref(node.args[1], args[1])}, [{index_text(node.attrs['index'])}])", ATOM
    ),
    # for a shape node the kernel gets an uninitialized array of that shape (it reads only its .shape;
    # np.empty costs far less than np.broadcast_to)
    numpy=lambda node, args: Fmt(
        f"_scatter({args[0].text}, "
        f"{f'np.empty({args[1].text}, dtype=np.bool_)' if node.args[1].op == 'shape' else args[1].text}, "
        f"np.s_[{index_text(node.attrs['index'])}])",
        ATOM,
    ),
    xp=lambda node, args: Fmt(
        f"_scatter({args[0].text}, {_shape_of_ref(node.args[1], args[1])}, _s[{index_text(node.attrs['index'])}], "
        f"{xp_dtype(node.dtype)})",
        ATOM,
    ),
    kernels=("_scatter",),
    latex=lambda node, args: Fmt(
        f"\\operatorname{{scatter}}_{{[{index_text(node.attrs['index'])}]}}\\left({args[0].text}\\right)", ATOM
    ),
)


# -- reshape / transpose -----------------------------------------------------------------------
def _infer_reshape(args, attrs):
    x = args[0]
    new = attrs["newshape"]
    known = [d for d in new if d != -1]
    if None in x.shape:
        if -1 in new:
            return tuple(None if d == -1 else d for d in new), x.dtype
        return new, x.dtype
    size = math.prod(x.shape)
    if -1 in new:
        rest = math.prod(known)
        if rest == 0 or size % rest:
            raise ShapeError(f"reshape: cannot reshape shape {format_shape(x.shape)} into {new!r}")
        return tuple(size // rest if d == -1 else d for d in new), x.dtype
    if math.prod(new) != size:
        raise ShapeError(
            f"reshape: cannot reshape shape {format_shape(x.shape)} (size {size}) into {format_shape(new)}"
        )
    return new, x.dtype


def _reshape_back(g: Expr, out: Expr, x: Expr, *, newshape: tuple) -> Expr:
    shape = x.shape
    if shape.count(None) > 1:
        raise UnsupportedError("reshape: cannot differentiate through an operand with several open-length axes")
    return F.reshape(g, tuple(-1 if d is None else d for d in shape))


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _shape_view(name: str, attr: str, infer, vjp, latex, axis_source=None) -> None:
    """Register ``name(x, <attr>)`` (reshape, broadcast_to): a view of ``x`` with the fixed shape ``attrs[attr]``,
    computed by ``np.<name>`` (``sd.<name>`` gives a tangent the same view); ``axis_source`` is the provenance of its
    open result axes (default: none is carried through)."""

    def jvp(t: Expr, out: Expr, x: Expr, **attrs) -> Expr:
        shape = attrs[attr]
        return getattr(F, name)(align(t, x, len(shape)), (*t.shape[: nbatch(t, x)], *shape))

    def fmt(prefix: str):
        return lambda node, args: Fmt(f"{prefix}{name}({args[0].text}, {_shape_text(node.attrs[attr])})", ATOM)

    register(
        name,
        sympy=None,
        view=True,
        infer=infer,
        impl=lambda attrs, x: getattr(np, name)(x, attrs[attr]),
        vjp=(vjp,),
        jvp=(jvp,),
        axis_source=axis_source,
        text=fmt(""),
        numpy=fmt("np."),
        xp=fmt("xp."),
        latex=latex,
    )


def _reshape_axis_source(out: Expr, ax: int, x: Expr, *, newshape: tuple) -> tuple[Expr, int] | None:
    """The open axis of a reshape that keeps the sizes on either side of it (a flatten ``(None, 8, 8, 16) -> (-1,
    1024)``) has the length of the operand's open axis."""
    if x.shape.count(None) != 1 or out.shape.count(None) != 1 or out.shape[ax] is not None or 0 in newshape:
        return None
    i = x.shape.index(None)
    same = math.prod(x.shape[:i]) == math.prod(out.shape[:ax]) and math.prod(x.shape[i + 1 :]) == math.prod(
        out.shape[ax + 1 :]
    )
    return (x, i) if same else None


_shape_view(
    "reshape",
    "newshape",
    _infer_reshape,
    _reshape_back,
    lambda node, args: Fmt(
        f"\\operatorname{{reshape}}_{{{_shape_text(node.attrs['newshape'])}}}\\left({args[0].text}\\right)", ATOM
    ),
    _reshape_axis_source,
)


def _is_reversal(axes: tuple) -> bool:
    return axes == tuple(reversed(range(len(axes))))


def _fmt_transpose(prefix: str):
    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        axes = node.attrs["axes"]
        if _is_reversal(axes):
            return Fmt(f"{wrap(args[0], ATOM)}.T", ATOM)
        return Fmt(f"{prefix}transpose({args[0].text}, {axes!r})", ATOM)

    return fmt


register(
    "transpose",
    sympy=lambda sp, a, axes: a.T if axes == (1, 0) else None,
    sympy_matrix=True,
    view=True,
    inline_view=True,
    infer=lambda args, attrs: (tuple(args[0].shape[i] for i in attrs["axes"]), args[0].dtype),
    impl=lambda attrs, x: np.transpose(x, attrs["axes"]),
    vjp=(lambda g, out, x, *, axes: F.transpose(g, tuple(int(i) for i in np.argsort(axes))),),
    jvp=(lambda t, out, x, *, axes: F.transpose(t, (*range(nbatch(t, x)), *shifted(axes, nbatch(t, x)))),),
    axis_source=lambda out, ax, x, *, axes: (x, axes[ax]),
    text=_fmt_transpose(""),
    numpy=_fmt_transpose("np."),
    xp=lambda node, args: Fmt(
        f"{wrap(args[0], ATOM)}.T"  # the Array API's .T is for matrices only
        if node.ndim == 2 and _is_reversal(node.attrs["axes"])
        else f"xp.permute_dims({args[0].text}, {node.attrs['axes']!r})",
        ATOM,
    ),
    latex=lambda node, args: Fmt(
        f"{{{wrap(args[0], ATOM)}}}^\\top"
        if _is_reversal(node.attrs["axes"])
        else f"\\operatorname{{transpose}}_{{{node.attrs['axes']}}}\\left({args[0].text}\\right)",
        ATOM,
    ),
)


def _infer_expand(args, attrs):
    x = args[0]
    axes = attrs["axis"]
    nd = x.ndim + len(axes)
    it = iter(x.shape)
    return tuple(1 if i in axes else next(it) for i in range(nd)), x.dtype


def _axis_text(axes: tuple) -> str:
    return str(axes[0]) if len(axes) == 1 else repr(axes)


def _axis_call(fname: str):
    """Formatter ``fname(x, axis)`` for expand_dims and squeeze."""
    return lambda node, args: Fmt(f"{fname}({args[0].text}, {_axis_text(node.attrs['axis'])})", ATOM)


def _latex_axis_call(fname: str, node: Expr, args: list[Fmt]) -> Fmt:
    """``\\operatorname{fname}_{axis}(x)``: the new or removed axis changes how the result broadcasts."""
    return Fmt(f"\\operatorname{{{fname}}}_{{{_axis_text(node.attrs['axis'])}}}\\left({args[0].text}\\right)", ATOM)


def _infer_squeeze(args, attrs):
    x = args[0]
    for a in attrs["axis"]:
        if x.shape[a] not in (1, None):
            raise ShapeError(f"squeeze: axis {a} of shape {format_shape(x.shape)} does not have length 1")
    return tuple(d for i, d in enumerate(x.shape) if i not in attrs["axis"]), x.dtype


def _xp_expand_dims(node: Expr, args: list[Fmt]) -> Fmt:
    """``xp.expand_dims`` once per new axis (the Array API's takes one), in ascending order."""
    text = args[0].text
    for a in sorted(node.attrs["axis"]):
        text = f"xp.expand_dims({text}, axis={a})"
    return Fmt(text, ATOM)


def _axis_op(name: str, infer, impl, vjp, axis_source, latex: str, xp) -> None:
    """Register ``name(x, axis)`` (expand_dims, squeeze): a view adding or removing length-1 axes (a tangent
    gets the same view); ``xp`` is its Array API form."""
    register(
        name,
        sympy=None,
        view=True,
        inline_view=True,
        infer=infer,
        impl=lambda attrs, x: impl(x, attrs["axis"]),
        vjp=(vjp,),
        jvp=(lambda t, out, x, *, axis: getattr(F, name)(t, shifted(axis, nbatch(t, x))),),
        axis_source=axis_source,
        text=_axis_call(name),
        numpy=_axis_call(f"np.{name}"),
        xp=xp,
        latex=lambda node, args: _latex_axis_call(latex, node, args),
    )


def _expanded_axis_source(out: Expr, ax: int, x: Expr, *, axis: tuple[int, ...]) -> tuple[Expr, int] | None:
    """A result axis that is not a new one is an operand axis."""
    return None if ax in axis else (x, ax - sum(1 for a in axis if a < ax))


def _squeezed_axis_source(out: Expr, ax: int, x: Expr, *, axis: tuple[int, ...]) -> tuple[Expr, int]:
    """Result axis ``ax`` is the ``ax``-th kept axis of the operand."""
    return x, [i for i in range(x.ndim) if i not in axis][ax]


_axis_op(
    "expand_dims",
    _infer_expand,
    np.expand_dims,
    lambda g, out, x, *, axis: F.squeeze(g, axis),
    _expanded_axis_source,
    "expand\\_dims",
    _xp_expand_dims,
)
_axis_op(
    "squeeze",
    _infer_squeeze,
    np.squeeze,
    lambda g, out, x, *, axis: F.expand_dims(g, axis),
    _squeezed_axis_source,
    "squeeze",
    lambda node, args: Fmt(f"xp.squeeze({args[0].text}, axis={node.attrs['axis']!r})", ATOM),
)


# -- broadcasting --------------------------------------------------------------------------------
def _infer_broadcast_to(args, attrs):
    x = args[0]
    target = attrs["shape"]
    out = broadcast_shapes("broadcast_to", x.shape, target)
    if out != target:
        raise ShapeError(f"broadcast_to: shape {format_shape(x.shape)} cannot be broadcast to {format_shape(target)}")
    return target, x.dtype


_shape_view(
    "broadcast_to",
    "shape",
    _infer_broadcast_to,
    lambda g, out, x, *, shape: g,  # autodiff sums g back over the broadcast axes
    lambda node, args: _latex_broadcast(node.args[0], args[0], _latex_dims(node.attrs["shape"])),
)


def _latex_dims(shape: tuple) -> str:
    """A shape as a mathematician writes a matrix size: ``n \\times 4`` (``1`` for a 0-d shape)."""
    return " \\times ".join(map(str, shape)) or "1"


def _latex_broadcast(x: Expr, fmt: Fmt, dims: str) -> Fmt:
    """``x`` broadcast to the shape ``dims``: a scalar fill is a multiple of the all-ones array
    (``\\mathbf{1}_{n \\times 4}``, ``c\\,\\mathbf{1}_{n \\times 4}``), anything else a named broadcast."""
    if x.ndim:
        return Fmt(f"\\operatorname{{broadcast}}_{{{dims}}}\\left({fmt.text}\\right)", ATOM)
    value = const_value(x).item() if x.op == "const" else None
    if value in (0, 1):
        return Fmt(f"\\mathbf{{{int(value)}}}_{{{dims}}}", ATOM)
    return Fmt(f"{wrap(fmt, MUL)}\\,\\mathbf{{1}}_{{{dims}}}", MUL)


def _infer_broadcast_like(args, attrs):
    x, ref = args
    out = broadcast_shapes("broadcast_to", x.shape, ref.shape)
    if out != ref.shape:
        raise ShapeError(
            f"broadcast_to: shape {format_shape(x.shape)} cannot be broadcast to {format_shape(ref.shape)}"
        )
    return ref.shape, x.dtype


def _shape_of_ref(ref: Expr, fmt: Fmt) -> str:
    """How a formula reads the shape of ``ref`` (an argument used only for its shape): ``x.shape`` or ``(n, 10)``."""
    return fmt.text if ref.op == "shape" else f"{wrap(fmt, ATOM)}.shape"


def _broadcast_like_fmt(prefix: str):
    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        return Fmt(f"{prefix}broadcast_to({args[0].text}, {_shape_of_ref(node.args[1], args[1])})", ATOM)

    return fmt


register(
    "broadcast_like",
    sympy=None,
    view=True,
    hint="bc",
    infer=_infer_broadcast_like,
    impl=lambda attrs, x, ref: np.broadcast_to(x, np.shape(ref)),
    vjp=(lambda g, out, x, ref: g, None),  # autodiff sums g back over the broadcast axes
    jvp=(
        lambda t, out, x, ref: F.broadcast_like(align(t, x, ref.ndim), batched_like(ref, t.shape[: nbatch(t, x)])),
        None,
    ),
    axis_source=broadcast_axis_source,
    text=_broadcast_like_fmt(""),
    numpy=_broadcast_like_fmt("np."),
    xp=_broadcast_like_fmt("xp."),
    latex=lambda node, args: _latex_broadcast(
        node.args[0],
        args[0],
        args[1].text if node.args[1].op == "shape" else f"\\operatorname{{shape}}\\left({args[1].text}\\right)",
    ),
)


# -- a shape made of run-time lengths ----------------------------------------------------------
def _infer_shape(args, attrs):
    template = attrs["shape"]
    if sum(d is None for d in template) != len(args) or any(a.ndim or a.dtype.kind not in "iu" for a in args):
        raise ValueError(f"shape {format_shape(template)}: needs one integer length per open axis")
    return template, np.dtype(bool)


def _shape_value(attrs, *lengths) -> np.ndarray:
    it = iter(lengths)
    return np.broadcast_to(np.False_, tuple(int(next(it)) if d is None else d for d in attrs["shape"]))


def _shape_axis_source(out: Expr, ax: int, *lengths: Expr, shape: tuple) -> tuple[Expr, int]:
    """An open axis has the length its ``dim`` argument reads."""
    d = lengths[sum(1 for i in range(ax) if out.shape[i] is None)]
    return d.args[0], d.attrs["axis"]


def _fmt_shape(node: Expr, args: list[Fmt]) -> Fmt:
    it = iter(args)
    return Fmt(_shape_text(tuple(next(it).text if d is None else d for d in node.attrs["shape"])), ATOM)


def _latex_shape(node: Expr, args: list[Fmt]) -> Fmt:
    it = iter(args)
    return Fmt(_latex_dims(tuple(next(it).text if d is None else d for d in node.attrs["shape"])), ATOM)


# A shape whose open axes have the lengths of its (dim) arguments; only the second argument of broadcast_like,
# which prints it as a tuple: broadcast_to(c, (x.shape[0], 10)) computes nothing for a shape.
register(
    "shape",
    sympy=None,
    view=True,
    infer=_infer_shape,
    impl=_shape_value,
    axis_source=_shape_axis_source,
    text=_fmt_shape,
    numpy=_fmt_shape,
    xp=_fmt_shape,
    latex=_latex_shape,
)


# -- concatenation -----------------------------------------------------------------------------
def _infer_concat(args, attrs):
    ax = attrs["axis"]
    first = args[0]
    total: int | None = 0
    for a in args:
        if a.ndim != first.ndim:
            raise ShapeError(
                f"concatenate: shapes {format_shape(first.shape)} and {format_shape(a.shape)} differ in ndim"
            )
        for i, (d1, d2) in enumerate(zip(first.shape, a.shape)):
            if i != ax and d1 is not None and d2 is not None and d1 != d2:
                raise ShapeError(
                    f"concatenate: shapes {format_shape(first.shape)} and {format_shape(a.shape)} "
                    f"differ on axis {i} (joining on axis {ax})"
                )
        total = None if total is None or a.shape[ax] is None else total + a.shape[ax]
    shape = list(first.shape)
    shape[ax] = total
    return tuple(shape), result_dtype(*args)


def _concat_part(i: int, xs: tuple[Expr, ...], axis: int) -> tuple:
    """The canonical index of argument ``i`` in the result of concatenating ``xs`` along ``axis``."""
    lengths = [a.shape[axis] for a in xs[: i + 1]]
    if None in lengths:
        raise UnsupportedError("concatenate: cannot differentiate along an open-length axis")
    start = sum(lengths[:-1])
    return (("slice", None, None, None),) * axis + (("slice", start or None, start + lengths[-1], None),)


def _concat_rule(i: int):
    def rule(g: Expr, out: Expr, *xs: Expr, axis: int) -> Expr:
        return F.getitem(g, index_value(_concat_part(i, xs, axis)))

    return rule


def _concat_tangent(i: int):
    def rule(t: Expr, out: Expr, *xs: Expr, axis: int) -> Expr:
        nb = nbatch(t, xs[i])
        return F.make_scatter(t, batched_like(out, t.shape[:nb]), batched_index(_concat_part(i, xs, axis), nb))

    return rule


def _concat_axis_source(out: Expr, ax: int, *xs: Expr, axis: int) -> tuple[Expr, int] | None:
    """The axes other than the joined one are every part's."""
    return None if ax == axis else next(((a, ax) for a in xs if a.shape[ax] is None), None)


register(
    "concatenate",
    sympy=None,
    hint="cat",
    infer=_infer_concat,
    impl=lambda attrs, *xs: np.concatenate(xs, axis=attrs["axis"]),
    vjp=PerArgument(_concat_rule),  # type: ignore[arg-type]  # rule i slices out argument i
    jvp=PerArgument(_concat_tangent),  # type: ignore[arg-type]  # rule i writes argument i's part of zeros
    axis_source=_concat_axis_source,
    text=lambda node, args: Fmt(f"concatenate([{', '.join(a.text for a in args)}], axis={node.attrs['axis']})", ATOM),
    numpy=lambda node, args: Fmt(
        f"np.concatenate([{', '.join(a.text for a in args)}], axis={node.attrs['axis']})", ATOM
    ),
    xp=lambda node, args: Fmt(f"xp.concat([{', '.join(a.text for a in args)}], axis={node.attrs['axis']})", ATOM),
    latex=lambda node, args: Fmt(
        "\\left[" + ", ".join(a.text for a in args) + f"\\right]_{{\\mathrm{{axis}}\\,{node.attrs['axis']}}}", ATOM
    ),
)
