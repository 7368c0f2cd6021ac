"""Reductions and the softmax family: sum, max, logsumexp, softmax, log_softmax, pick, onehot."""

from __future__ import annotations

import numpy as np

from .. import functions as F
from ..errors import DTypeError, ShapeError
from ..graph import Expr, dtype_source, float_dtype, format_shape
from .registry import ADD, ATOM, Fmt, format_attr, register


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


def _keep(g: Expr, n: Expr) -> Expr:
    """The upstream gradient with the reduced axes put back as length-1 axes."""
    if n.attrs["keepdims"] or g.ndim == 0:
        return g
    return F.expand_dims(g, n.attrs["axis"])


def _axis_kw(node: Expr, key: str = "axis", last_is_default: bool = False) -> list[str]:
    axes = node.attrs[key]
    nd = node.args[0].ndim
    if last_is_default and axes == (nd - 1,):
        return []
    if axes == tuple(range(nd)) and not last_is_default:
        return []
    return [f"axis={format_attr(axes)}"]


def _reduce_fmt(fname: str, last_is_default: bool = False):
    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        parts = [args[0].text, *_axis_kw(node, last_is_default=last_is_default)]
        if node.attrs.get("keepdims"):
            parts.append("keepdims=True")
        return Fmt(f"{fname}({', '.join(parts)})", ATOM)

    return fmt


def _latex_reduce(symbol: str):
    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        axes = node.attrs["axis"]
        sub = "" if axes == tuple(range(node.args[0].ndim)) else f"_{{{','.join(map(str, axes))}}}"
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
        parts = [args[0].text, f"axis={format_attr(node.attrs['axis'])}"]
        if node.attrs["keepdims"]:
            parts.append("keepdims=True")
        return f"{fname}({', '.join(parts)}, out={buf})"

    return fmt


register(
    "sum",
    sympy=None,
    out=_reduce_out("np.add.reduce"),
    infer=_infer_sum,
    impl=lambda attrs, x: np.sum(x, axis=attrs["axis"], keepdims=attrs["keepdims"]),
    # d sum(x) = broadcast of the upstream gradient back over the summed axes
    vjp=(lambda g, n: F.broadcast_like(_keep(g, n), n.args[0]),),
    text=_reduce_fmt("sum"),
    numpy=_reduce_fmt("np.sum"),
    latex=_latex_reduce("\\sum"),
)


def _max_vjp(g: Expr, n: Expr) -> Expr:
    # NOTE: ties share the gradient equally (mask / count), so the rule stays a valid subgradient.
    x = n.args[0]
    mask = F.equal(x, _keep(n, n))
    return _keep(g, n) * mask / F.sum(mask, axis=n.attrs["axis"], keepdims=True)


register(
    "max",
    sympy=None,
    out=_reduce_out("np.maximum.reduce"),
    infer=_infer_max,
    impl=lambda attrs, x: np.max(x, axis=attrs["axis"], keepdims=attrs["keepdims"]),
    vjp=(_max_vjp,),
    text=_reduce_fmt("max"),
    numpy=_reduce_fmt("np.max"),
    latex=_latex_reduce("\\max"),
)


def _lse_ref(attrs, x):
    m = np.max(x, axis=attrs["axis"], keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=attrs["axis"], keepdims=True)) + m
    return out if attrs["keepdims"] else np.squeeze(out, axis=attrs["axis"])


register(
    "logsumexp",
    sympy=None,
    infer=_infer_float_reduce,
    impl=_lse_ref,
    vjp=(lambda g, n: _keep(g, n) * F.softmax(n.args[0], axis=n.attrs["axis"]),),
    text=_reduce_fmt("logsumexp"),
    numpy=_reduce_fmt("_logsumexp"),
    kernels=("_logsumexp",),
    latex=_latex_reduce("\\operatorname{logsumexp}"),
)


def _infer_softmax(args, attrs):
    return args[0].shape, float_dtype(args[0])


def _softmax_ref(attrs, x):
    e = np.exp(x - np.max(x, axis=attrs["axis"], keepdims=True))
    return e / np.sum(e, axis=attrs["axis"], keepdims=True)


def _log_softmax_ref(attrs, x):
    s = x - np.max(x, axis=attrs["axis"], keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=attrs["axis"], keepdims=True))


register(
    "softmax",
    sympy=None,
    infer=_infer_softmax,
    impl=_softmax_ref,
    # d softmax: s * (g - sum(g * s, axis))
    vjp=(lambda g, n: n * (g - F.sum(g * n, axis=n.attrs["axis"], keepdims=True)),),
    text=_reduce_fmt("softmax", last_is_default=True),
    numpy=_reduce_fmt("_softmax", last_is_default=True),
    kernels=("_softmax",),
    latex=_latex_softmax("softmax"),
)
register(
    "log_softmax",
    sympy=None,
    infer=_infer_softmax,
    impl=_log_softmax_ref,
    # d log_softmax: g - softmax(x) * sum(g, axis)
    vjp=(lambda g, n: g - F.softmax(n.args[0], axis=n.attrs["axis"]) * F.sum(g, axis=n.attrs["axis"], keepdims=True),),
    text=_reduce_fmt("log_softmax", last_is_default=True),
    numpy=_reduce_fmt("_log_softmax", last_is_default=True),
    kernels=("_log_softmax",),
    latex=_latex_softmax("log\\_softmax"),
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


def _pick_vjp(g: Expr, n: Expr) -> Expr:
    x, labels = n.args
    if x.shape[-1] is None:
        raise ShapeError("pick: the class axis must have a known length to differentiate")
    if labels.shape != x.shape[:-1] and None not in x.shape[:-1]:  # open-length labels for fixed rows
        labels = F.reshape(labels, x.shape[:-1])
    return F.onehot(labels, x.shape[-1], dtype=g.dtype) * F.expand_dims(g, -1)


register(
    "pick",
    sympy=None,
    infer=_infer_pick,
    impl=lambda attrs, x, labels: np.take_along_axis(x, np.asarray(labels)[..., None], axis=-1)[..., 0],
    vjp=(_pick_vjp, None),
    text=lambda node, args: Fmt(f"pick({args[0].text}, {args[1].text})", ATOM),
    numpy=lambda node, args: Fmt(f"_pick({args[0].text}, {args[1].text})", ATOM),
    kernels=("_pick",),
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
    vjp=(lambda g, n: g, None, lambda g, n: -F.sum(F.pick(g, n.args[1]))),
    text=lambda node, args: Fmt(
        f"{args[0].text} - {args[2].text} * onehot({args[1].text}, {node.args[0].shape[-1]})", ADD
    ),
    numpy=lambda node, args: Fmt(f"_onehot_sub({args[0].text}, {args[1].text}, {args[2].text})", ATOM),
    out=lambda node, args, buf: f"_onehot_sub({args[0].text}, {args[1].text}, {args[2].text}, out={buf})",
    inplace=True,
    kernels=("_onehot_sub",),
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
    text=lambda node, args: Fmt(f"onehot({args[0].text}, {node.attrs['depth']})", ATOM),
    numpy=lambda node, args: Fmt(
        f"_onehot({args[0].text}, {node.attrs['depth']}, {dtype_source(node.attrs['dtype'])})", ATOM
    ),
    kernels=("_onehot",),
    latex=lambda node, args: Fmt(
        f"\\operatorname{{onehot}}_{{{node.attrs['depth']}}}\\left({args[0].text}\\right)", ATOM
    ),
)
