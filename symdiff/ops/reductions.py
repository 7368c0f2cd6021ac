"""Reductions and the softmax family: sum, max, logsumexp, softmax, log_softmax, pick, onehot."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import functions as F
from ..errors import DTypeError, ShapeError
from ..graph import Expr, dtype_source, float_dtype, format_shape
from .batch import align, nbatch, shifted
from .registry import ADD, ATOM, Fmt, broadcast_axis_source, call, format_attr, register, xp_dtype


def _reduced_shape(x: Expr, attrs) -> tuple:
    axes, keep = attrs["axis"], attrs["keepdims"]
    if keep:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _infer_sum(args, attrs):
    x = args[0]
    dt = x.dtype if x.dtype.kind == "f" else np.sum(np.zeros((), x.dtype)).dtype
    return _reduced_shape(x, attrs), dt


def _infer_float_reduce(args, attrs):
    return _reduced_shape(args[0], attrs), float_dtype(args[0])


def _infer_max(args, attrs):
    return _reduced_shape(args[0], attrs), args[0].dtype


def _keep(g: Expr, axis: tuple[int, ...], keepdims: bool) -> Expr:
    """The upstream gradient with the reduced axes put back as length-1 axes."""
    if keepdims or g.ndim == 0:
        return g
    return F.expand_dims(g, axis)


def _reduced_axis_source(
    out: Expr, ax: int, x: Expr, *, axis: tuple[int, ...], keepdims: bool, ddof: int = 0
) -> tuple[Expr, int]:
    """A reduction's result axis ``ax`` is an axis of its operand that it kept."""
    if keepdims:
        return x, ax
    kept = [i for i in range(x.ndim) if i not in axis]
    return x, kept[ax]


def _axis_kw(node: Expr, key: str = "axis", last_is_default: bool = False) -> list[str]:
    axes = node.attrs[key]
    nd = node.args[0].ndim
    if last_is_default and axes == (nd - 1,):
        return []
    if axes == tuple(range(nd)) and not last_is_default:
        return []
    return [f"axis={format_attr(axes)}"]


def _reduce_fmt(fname: str, last_is_default: bool = False, ddof: str = "ddof"):
    """``fname(x, axis=..., keepdims=True, ddof=1)`` leaving out the defaults; ``ddof`` names that keyword
    (the Array API's is ``correction``)."""

    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        parts = [args[0].text, *_axis_kw(node, last_is_default=last_is_default)]
        if node.attrs.get("keepdims"):
            parts.append("keepdims=True")
        if node.attrs.get("ddof"):
            parts.append(f"{ddof}={node.attrs['ddof']!r}")
        return Fmt(f"{fname}({', '.join(parts)})", ATOM)

    return fmt


def _latex_reduce(symbol: str):
    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        axes = node.attrs["axis"]
        marks = [] if axes == tuple(range(node.args[0].ndim)) else [",".join(map(str, axes))]
        if node.attrs.get("ddof"):
            marks.append(f"\\mathrm{{ddof}}={node.attrs['ddof']}")
        sub = "_{" + ",\\,".join(marks) + "}" if marks else ""
        return Fmt(f"{symbol}{sub}\\left({args[0].text}\\right)", ATOM)

    return fmt


def _latex_softmax(fname: str):
    """``\\operatorname{softmax}(x)`` over the last axis; another axis is shown as a subscript."""

    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        axes = node.attrs["axis"]
        sub = "" if axes == (node.args[0].ndim - 1,) else f"_{{{','.join(map(str, axes))}}}"
        return Fmt(f"\\operatorname{{{fname}}}{sub}\\left({args[0].text}\\right)", ATOM)

    return fmt


def _reduce_out(fname: str):
    """``np.add.reduce(x, axis=..., out=buf)``: the ufunc reduction itself, without np.sum's Python wrapper."""

    def fmt(node: Expr, args: list[Fmt], buf: str) -> str:
        axes = node.attrs["axis"]
        whole = node.ndim == 0 and len(axes) > 1  # every axis of an array: axis=None reads plainly
        parts = [args[0].text, f"axis={'None' if whole else format_attr(axes)}"]
        if node.attrs["keepdims"]:
            parts.append("keepdims=True")
        return f"{fname}({', '.join(parts)}{'' if buf == 'None' else f', out={buf}'})"

    return fmt


def _reduction(name: str, infer, impl, vjp, jvp, *, numpy: str | Callable, xp: str, latex: str, **facts) -> None:
    """Register the reduction ``name(x, axis, keepdims)`` (and any further attributes, ``ddof``):
    ``impl(x, axis=, keepdims=, ...)`` computes it, ``vjp`` and ``jvp`` are its gradient and tangent rules,
    ``numpy`` the function its NumPy form calls (or its formatter), ``xp`` the function its Array API form calls
    and ``latex`` its LaTeX operator."""
    register(
        name,
        sympy=None,
        infer=infer,
        impl=lambda attrs, x: impl(x, **attrs),
        vjp=(vjp,),
        jvp=(jvp,),
        text=_reduce_fmt(name),
        numpy=numpy if callable(numpy) else _reduce_fmt(numpy),
        xp=_reduce_fmt(xp, ddof="correction"),
        latex=_latex_reduce(latex),
        axis_source=_reduced_axis_source,
        **facts,
    )


def _extremum_vjp(g: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...], keepdims: bool) -> Expr:
    # NOTE: ties share the gradient equally (mask / count), so the rule stays a valid subgradient.
    mask = F.equal(x, _keep(out, axis, keepdims))
    return _keep(g, axis, keepdims) * mask / F.sum(mask, axis=axis, keepdims=True)


def _extremum_jvp(t: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...], keepdims: bool) -> Expr:
    # the mean of the tangent over the maximal entries (the transpose of _max_vjp's equal share)
    mask = F.equal(x, _keep(out, axis, keepdims))
    total = F.sum(t * mask, axis=shifted(axis, nbatch(t, x)), keepdims=keepdims)
    return total / F.sum(mask, axis=axis, keepdims=keepdims)


def _lse_ref(x, *, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


# d sum(x) = broadcast of the upstream gradient back over the summed axes
def _leading(node: Expr, least: int = 2) -> int:
    """The number of leading axes a float sum adds up when they are ``least`` or more and not all (a conv's bias
    gradient; with ``least=1`` a dense layer's too), which :func:`~symdiff.ops.kernels._sum_leading` sums as one
    matrix-vector product; else 0."""
    axes, x = node.attrs["axis"], node.args[0]
    lead = least <= len(axes) < x.ndim and axes == tuple(range(len(axes)))
    return len(axes) if lead and not node.attrs["keepdims"] and x.dtype.kind == "f" else 0


def _sum_numpy(node: Expr, args: list[Fmt]) -> Fmt:
    k = _leading(node)  # readable code keeps np.sum(d, axis=0), the textbook's bias gradient
    return Fmt(f"_sum_leading({args[0].text}, {k})", ATOM) if k else _reduce_fmt("np.sum")(node, args)


def _sum_out(node: Expr, args: list[Fmt], buf: str) -> str:
    k = _leading(node, least=1)
    return f"_sum_leading({args[0].text}, {k}, out={buf})" if k else _reduce_out("np.add.reduce")(node, args, buf)


_reduction(
    "sum",
    _infer_sum,
    np.sum,
    lambda g, out, x, *, axis, keepdims: F.broadcast_like(_keep(g, axis, keepdims), x),
    lambda t, out, x, *, axis, keepdims: F.sum(t, axis=shifted(axis, nbatch(t, x)), keepdims=keepdims),
    numpy=_sum_numpy,
    xp="xp.sum",
    latex="\\sum",
    out=_sum_out,
    kernels=("_sum_leading",),
)

_reduction(
    "max",
    _infer_max,
    np.max,
    _extremum_vjp,
    _extremum_jvp,
    numpy="np.max",
    xp="xp.max",
    latex="\\max",
    out=_reduce_out("np.maximum.reduce"),
)
_reduction(
    "min",
    _infer_max,
    np.min,
    _extremum_vjp,
    _extremum_jvp,
    numpy="np.min",
    xp="xp.min",
    latex="\\min",
    out=_reduce_out("np.minimum.reduce"),
)


def _infer_moment(op: str):
    def infer(args, attrs):
        x = args[0]
        lengths = [x.shape[a] for a in attrs["axis"]]
        if None not in lengths and attrs["ddof"] > math.prod(lengths):
            # NumPy divides by max(n - ddof, 0): an infinite value, whose gradient n - ddof < 0 would get wrong
            raise ShapeError(
                f"{op}: ddof={attrs['ddof']} is more than the {math.prod(lengths)} elements it reduces "
                f"(shape {format_shape(x.shape)}, axis {format_attr(attrs['axis'])})"
            )
        return _reduced_shape(x, attrs), x.dtype if x.dtype.kind == "f" else np.dtype("float64")  # as np.var

    return infer


def _centered(x: Expr, axis: tuple[int, ...], ddof: int) -> tuple[Expr, Expr]:
    """``x - mean(x, axis, keepdims=True)`` and the divisor ``n - ddof`` of the variance over ``axis``."""
    n = F.count(x, axis)
    return x - F.mean(x, axis=axis, keepdims=True), (n - ddof if ddof else n)


def _var_vjp(g: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...], keepdims: bool, ddof: int) -> Expr:
    # d var = 2 (x - mean(x)) / (n - ddof): the deviations' own gradient sums to zero over the axis
    centered, n = _centered(x, axis, ddof)
    return _keep(g, axis, keepdims) * (2 * centered) / n


def _std_vjp(g: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...], keepdims: bool, ddof: int) -> Expr:
    # d std = d var / (2 std) = (x - mean(x)) / ((n - ddof) std)
    centered, n = _centered(x, axis, ddof)
    return _keep(g, axis, keepdims) * centered / (n * _keep(out, axis, keepdims))


def _var_jvp(t: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...], keepdims: bool, ddof: int) -> Expr:
    centered, n = _centered(x, axis, ddof)
    return F.sum(t * (2 * centered), axis=shifted(axis, nbatch(t, x)), keepdims=keepdims) / n


def _std_jvp(t: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...], keepdims: bool, ddof: int) -> Expr:
    centered, n = _centered(x, axis, ddof)
    return F.sum(t * centered, axis=shifted(axis, nbatch(t, x)), keepdims=keepdims) / (n * out)


for _name, _f, _vjp, _jvp, _latex in (
    ("var", np.var, _var_vjp, _var_jvp, "\\operatorname{Var}"),
    ("std", np.std, _std_vjp, _std_jvp, "\\operatorname{std}"),
):
    _reduction(_name, _infer_moment(_name), _f, _vjp, _jvp, numpy=f"np.{_name}", xp=f"xp.{_name}", latex=_latex)
_reduction(
    "logsumexp",
    _infer_float_reduce,
    _lse_ref,
    lambda g, out, x, *, axis, keepdims: _keep(g, axis, keepdims) * F.softmax(x, axis=axis),
    lambda t, out, x, *, axis, keepdims: F.sum(
        t * F.softmax(x, axis=axis), axis=shifted(axis, nbatch(t, x)), keepdims=keepdims
    ),
    numpy="_logsumexp",
    xp="_logsumexp",
    latex="\\operatorname{logsumexp}",
    kernels=("_logsumexp",),
)


def _infer_softmax(args, attrs):
    return args[0].shape, float_dtype(args[0])


def _softmax_ref(attrs, x):
    e = np.exp(x - np.max(x, axis=attrs["axis"], keepdims=True))
    return e / np.sum(e, axis=attrs["axis"], keepdims=True)


def _log_softmax_ref(attrs, x):
    s = x - np.max(x, axis=attrs["axis"], keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=attrs["axis"], keepdims=True))


def _softmax_family(name: str, impl, vjp, jvp, latex: str, **facts) -> None:
    """Register ``name(x, axis)`` (softmax, log_softmax): computed by the kernel ``_<name>``, over the last axis
    by default; ``vjp`` and ``jvp`` are its gradient and tangent rules and ``latex`` its LaTeX operator name."""
    register(
        name,
        sympy=None,
        infer=_infer_softmax,
        impl=impl,
        vjp=(vjp,),
        jvp=(jvp,),
        text=_reduce_fmt(name, last_is_default=True),
        numpy=_reduce_fmt(f"_{name}", last_is_default=True),
        xp=_reduce_fmt(f"_{name}", last_is_default=True),
        kernels=(f"_{name}",),
        latex=_latex_softmax(latex),
        axis_source=broadcast_axis_source,
        **facts,
    )


def _softmax_vjp(g: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...]) -> Expr:
    """d softmax: s * (g - sum(g * s, axis)); the Jacobian diag(s) - s s^T is symmetric, so tangents take it too."""
    return out * (g - F.sum(g * out, axis=shifted(axis, nbatch(g, out)), keepdims=True))


_softmax_family(
    "softmax",
    _softmax_ref,
    _softmax_vjp,
    _softmax_vjp,
    "softmax",
    activation=True,
)
# d log_softmax: g - softmax(x) * sum(g, axis)
_softmax_family(
    "log_softmax",
    _log_softmax_ref,
    lambda g, out, x, *, axis: g - F.softmax(x, axis=axis) * F.sum(g, axis=axis, keepdims=True),
    lambda t, out, x, *, axis: t - F.sum(t * F.softmax(x, axis=axis), axis=shifted(axis, nbatch(t, x)), keepdims=True),
    "log\\_softmax",
)


def _infer_pick(args, attrs):
    x, labels = args
    if labels.dtype.kind not in "iu":
        raise DTypeError(f"pick: labels must have an integer dtype, got {labels.dtype}")
    if x.ndim == 0:
        raise ShapeError("pick: x must have at least one axis (the classes)")
    rows = x.shape[:-1]
    if len(labels.shape) != len(rows) or any(
        a is not None and b is not None and a != b for a, b in zip(rows, labels.shape)
    ):
        raise ShapeError(
            f"pick: labels of shape {format_shape(labels.shape)} do not match the rows of x {format_shape(x.shape)}"
        )
    return rows, x.dtype


def _pick_vjp(g: Expr, out: Expr, x: Expr, labels: Expr) -> Expr:
    if x.shape[-1] is None:
        raise ShapeError("pick: the class axis must have a known length to differentiate")
    if labels.shape != x.shape[:-1] and None not in x.shape[:-1]:  # open-length labels for fixed rows
        labels = F.reshape(labels, x.shape[:-1])
    return F.onehot(labels, x.shape[-1], dtype=g.dtype) * F.expand_dims(g, -1)


def _pick_jvp(t: Expr, out: Expr, x: Expr, labels: Expr) -> Expr:
    if not nbatch(t, x):
        return F.pick(t, labels)
    if x.shape[-1] is None:
        raise ShapeError("pick: the class axis must have a known length to differentiate")
    return F.sum(t * F.onehot(labels, x.shape[-1], dtype=t.dtype), axis=-1)


register(
    "pick",
    sympy=None,
    infer=_infer_pick,
    impl=lambda attrs, x, labels: np.take_along_axis(x, np.asarray(labels)[..., None], axis=-1)[..., 0],
    vjp=(_pick_vjp, None),
    jvp=(_pick_jvp, None),
    axis_source=lambda out, ax, x, labels: (x, ax),
    text=lambda node, args: Fmt(f"pick({args[0].text}, {args[1].text})", ATOM),
    numpy=call("_pick"),
    xp=call("_pick"),
    kernels=("_pick", "_rows"),
    latex=lambda node, args: Fmt(f"{{{args[0].text}}}_{{[{args[1].text}]}}", ATOM),
)


def _infer_onehot_sub(args, attrs):
    x, labels, value = args
    if labels.dtype.kind not in "iu":
        raise DTypeError(f"onehot_sub: labels must have an integer dtype, got {labels.dtype}")
    if value.ndim != 0 or x.ndim == 0 or labels.shape != x.shape[:-1]:
        raise ShapeError(
            f"onehot_sub: shapes {format_shape(x.shape)}, {format_shape(labels.shape)} and "
            f"{format_shape(value.shape)} do not fit x - value * onehot(labels)"
        )
    return x.shape, x.dtype


def _onehot_sub_ref(attrs, x, labels, value):
    oh = np.asarray(labels)[..., None] == np.arange(np.shape(x)[-1])
    return np.asarray(x - value * oh, dtype=np.result_type(x, value))


# x - value * onehot(labels, k), computed by subtracting at the label column (no one-hot matrix).
# It appears only in lowered graphs (symdiff.lower), which generated code runs.
register(
    "onehot_sub",
    sympy=None,
    infer=_infer_onehot_sub,
    impl=_onehot_sub_ref,
    vjp=(lambda g, out, x, labels, value: g, None, lambda g, out, x, labels, value: -F.sum(F.pick(g, labels))),
    jvp=(
        lambda t, out, x, labels, value: t,
        None,
        lambda t, out, x, labels, value: -align(t, value, out.ndim) * F.onehot(labels, x.shape[-1], dtype=out.dtype),
    ),
    axis_source=lambda out, ax, x, labels, value: (x, ax),
    text=lambda node, args: Fmt(
        f"{args[0].text} - {args[2].text} * onehot({args[1].text}, {node.args[0].shape[-1]})", ADD
    ),
    numpy=call("_onehot_sub"),
    xp=call("_onehot_sub"),
    out=lambda node, args, buf: f"_onehot_sub({args[0].text}, {args[1].text}, {args[2].text}, out={buf})",
    inplace=True,
    kernels=("_onehot_sub", "_rows"),
    latex=lambda node, args: Fmt(
        f"{args[0].text} - {args[2].text} \\cdot \\operatorname{{onehot}}({args[1].text})", ADD
    ),
)


def _infer_onehot(args, attrs):
    labels = args[0]
    if labels.dtype.kind not in "iu":
        raise DTypeError(f"onehot: labels must have an integer dtype, got {labels.dtype}")
    return (*labels.shape, attrs["depth"]), np.dtype(attrs["dtype"])


register(
    "onehot",
    sympy=None,
    infer=_infer_onehot,
    impl=lambda attrs, y: (np.asarray(y)[..., None] == np.arange(attrs["depth"])).astype(attrs["dtype"]),
    vjp=(None,),
    jvp=(None,),
    axis_source=lambda out, ax, labels, *, depth, dtype: (labels, ax) if ax < out.ndim - 1 else None,
    text=lambda node, args: Fmt(f"onehot({args[0].text}, {node.attrs['depth']})", ATOM),
    numpy=lambda node, args: Fmt(
        f"_onehot({args[0].text}, {node.attrs['depth']}, {dtype_source(node.attrs['dtype'])})", ATOM
    ),
    xp=lambda node, args: Fmt(f"_onehot({args[0].text}, {node.attrs['depth']}, {xp_dtype(node.attrs['dtype'])})", ATOM),
    kernels=("_onehot",),
    latex=lambda node, args: Fmt(
        f"\\operatorname{{onehot}}_{{{node.attrs['depth']}}}\\left({args[0].text}\\right)", ATOM
    ),
)


def _infer_arg_extremum(args, attrs):
    x, axis, keep = args[0], attrs["axis"], attrs["keepdims"]
    if axis is None:
        shape = (1,) * x.ndim if keep else ()
    else:
        shape = _reduced_shape(x, {"axis": (axis,), "keepdims": keep})
    return shape, np.dtype("int64")


def _arg_extremum_axis_source(
    out: Expr, ax: int, x: Expr, *, axis: int | None, keepdims: bool
) -> tuple[Expr, int] | None:
    """The axes argmax/argmin keep are the operand's (none when it flattens, ``axis=None``)."""
    if axis is None:
        return None
    return _reduced_axis_source(out, ax, x, axis=(axis,), keepdims=keepdims)


def _arg_extremum_fmt(fname: str):
    """``fname(x, axis=..., keepdims=True)``, leaving out the defaults."""
    return call(fname, "axis", "keepdims", defaults={"axis": None, "keepdims": False})


def _latex_arg_extremum(fname: str):
    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        axis = node.attrs["axis"]
        sub = "" if axis is None else f"_{{{axis}}}"
        return Fmt(f"\\operatorname{{{fname}}}{sub}\\left({args[0].text}\\right)", ATOM)

    return fmt


# The index of the largest (smallest) element along ``axis`` (of the flattened operand for ``axis=None``), as
# NumPy gives it: int64, the first one on ties; piecewise constant, so no gradient.
for _name, _f in (("argmax", np.argmax), ("argmin", np.argmin)):
    register(
        _name,
        sympy=None,
        hint="idx",
        infer=_infer_arg_extremum,
        impl=lambda attrs, x, _f=_f: np.asarray(_f(x, **attrs), dtype=np.int64),
        vjp=(None,),
        jvp=(None,),
        axis_source=_arg_extremum_axis_source,
        text=_arg_extremum_fmt(_name),
        numpy=_arg_extremum_fmt(f"np.{_name}"),
        xp=_arg_extremum_fmt(f"xp.{_name}"),
        latex=_latex_arg_extremum(_name),
    )
