"""Normalization without scale and shift: ``layer_norm`` (over each sample's features) and ``batch_norm`` (over the
batch, training-mode statistics): ``y = (x - mean(x)) / sqrt(var(x) + eps)``, the statistics over ``axis``.

Each is an op of its own so that its gradient prints as the textbook writes it,
``dx = (dy - mean(dy) - y * mean(dy * y)) / sqrt(var(x) + eps)``, rather than as the chain of the mean's, the
variance's and the square root's gradients. The Jacobian ``(I - (1 1^T + y y^T) / n) / sqrt(var + eps)`` is
symmetric, so the tangent rule is the same formula. The means count the elements at run time (``sd.mean``), so a
batch of open length (``None``) is normalized too.
"""

from __future__ import annotations

import numpy as np

from .. import functions as F
from ..graph import Expr
from .batch import nbatch, shifted
from .kernels import KERNELS
from .registry import ATOM, Fmt, broadcast_axis_source, format_attr, register


def _normalize(x, axis, eps, out=None):
    centered = x - np.mean(x, axis=axis, keepdims=True)
    scale = np.sqrt(np.mean(np.square(centered), axis=axis, keepdims=True) + eps)
    return np.divide(centered, scale, out=out)


KERNELS["_normalize"] = _normalize


def _normalized_ref(attrs, x):
    axis, eps = attrs["axis"], attrs["eps"]
    return (x - np.mean(x, axis=axis, keepdims=True)) / np.sqrt(np.var(x, axis=axis, keepdims=True) + eps)


def _norm_rule(g: Expr, out: Expr, x: Expr, *, axis: tuple[int, ...], eps: float) -> Expr:
    """``(g - mean(g) - y * mean(g * y)) / sqrt(var(x) + eps)`` over ``axis`` (``y``: the normalized ``x``): the
    gradient given the upstream ``g``, and the tangent given the tangent ``g`` of ``x`` (the Jacobian is
    symmetric); batch axes of ``g`` stay in front."""
    axes = shifted(axis, nbatch(g, out))
    spread = g - F.mean(g, axis=axes, keepdims=True) - out * F.mean(g * out, axis=axes, keepdims=True)
    return spread / F.sqrt(F.var(x, axis=axis, keepdims=True) + eps)


def _norm_args(default_axis):
    """The arguments after the operand: ``axis`` unless it is the default, ``eps`` unless it is 1e-5."""

    def parts(node: Expr) -> list[str]:
        axis, eps = node.attrs["axis"], node.attrs["eps"]
        shown = [] if axis == default_axis(node.args[0].ndim) else [f"axis={format_attr(axis)}"]
        return shown + ([] if eps == 1e-5 else [f"eps={eps!r}"])

    return parts


def _latex_sub(node: Expr) -> str:
    """The axes, and ``\\epsilon`` unless it is 1e-5."""
    eps = node.attrs["eps"]
    return ",".join(map(str, node.attrs["axis"])) + ("" if eps == 1e-5 else f",\\, \\epsilon = {eps!r}")


def _norm_op(name: str, latex: str, default_axis, hint: str) -> None:
    """Register ``name(x, axis, eps)``, whose axis defaults to ``default_axis(ndim)``, printed in LaTeX as
    ``latex``."""
    parts = _norm_args(default_axis)

    def call(fname: str):
        return lambda node, args: Fmt(f"{fname}({', '.join([args[0].text, *parts(node)])})", ATOM)

    def normalize(node: Expr, args: list[Fmt]) -> Fmt:
        return Fmt(f"_normalize({args[0].text}, {node.attrs['axis']!r}, {node.attrs['eps']!r})", ATOM)

    register(
        name,
        sympy=None,
        infer=lambda args, attrs: (args[0].shape, args[0].dtype),
        impl=_normalized_ref,
        vjp=(_norm_rule,),
        jvp=(_norm_rule,),
        axis_source=broadcast_axis_source,
        text=call(name),
        numpy=normalize,
        xp=normalize,  # the same call (symdiff.backends defines _normalize for the other array libraries)
        out=lambda node, args, buf: (
            f"_normalize({args[0].text}, {node.attrs['axis']!r}, {node.attrs['eps']!r}, out={buf})"
        ),
        kernels=("_normalize",),
        latex=lambda node, args: Fmt(
            f"\\operatorname{{{latex}}}_{{{_latex_sub(node)}}}\\left({args[0].text}\\right)", ATOM
        ),
        hint=hint,
    )


_norm_op("layer_norm", "LayerNorm", lambda ndim: (ndim - 1,), "ln")
_norm_op("batch_norm", "BatchNorm", lambda ndim: (0,), "bn")
