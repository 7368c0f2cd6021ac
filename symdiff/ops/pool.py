"""2-D pooling of NHWC images: ``max_pool2d``, ``avg_pool2d`` and the ops their derivatives are made of.

A pooled image has one value per window: windows of ``size = (kh, kw)`` pixels placed every ``stride = (sh, sw)``
pixels, "valid" only (rows and columns that do not fill a window are left out, as TensorFlow's ``'VALID'``), every
channel apart. The ops pool the last three axes ``(H, W, C)``; any leading axes (the batch ``N``, and the batch of
tangents forward mode puts in front of it) are batch axes.

The derivatives are ops of their own, so that they print as the textbook writes them:

* ``max_pool2d_grad(x, y, g, size)``: the gradient of ``y = max_pool2d(x, size)``: each window's upstream gradient
  ``g`` goes to the pixels of ``x`` where the window has its maximum ``y``, shared equally among ties (as ``max``
  shares it), the contributions of overlapping windows added up;
* ``max_pool2d_tangent(x, y, t, size)``: its transpose, the tangent of ``y``: each window's mean of ``t`` over its
  maxima; the two are each other's gradients (linear in their last argument, constant in ``x`` and ``y`` between
  ties), so every order of derivative stays within these ops;
* ``avg_pool2d_grad(g, size, image=(H, W))``: the gradient of ``avg_pool2d``: each window's ``g`` spread evenly over
  its pixels; its gradient is ``avg_pool2d`` again.

The kernels compute windows with stride equal to size (the usual 2x2 pool) on a reshaped view, ``(..., H/kh, kh,
W/kw, kw, C)``, reduced over the two window axes (a gradient is written through the same view of its result, the
pooled values repeated over each block's columns so that its comparisons and products run over whole image rows; the
max-pool gradient counts the maxima of a window only where some window has other than one); other strides on
``sliding_window_view``, and a gradient of overlapping windows sums each pixel's parts from a zero-padded
buffer through one strided view (a gather, no scatter). No kernel loops in Python.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..graph import Expr, broadcast_shapes, format_shape, make
from .kernels import KERNELS
from .registry import ATOM, Fmt, register, xp_dtype


# -- kernels (their source is copied into generated modules: NumPy only) ---------------------------------------------
def _pool_blocks(x, size):
    # the complete (kh, kw) blocks of x (..., h, w, c) as a view (..., h // kh, kh, w // kw, kw, c)
    kh, kw = size
    ho, wo = x.shape[-3] // kh, x.shape[-2] // kw
    return x[..., : ho * kh, : wo * kw, :].reshape(*x.shape[:-3], ho, kh, wo, kw, x.shape[-1])


def _pool_columns(a, size):
    # the pooled images a (..., ho, wo, c) at every column of their blocks, broadcasting over the blocks' rows: a
    # view (..., ho, 1, wo, kw, c) of a copy, so that an op with _pool_blocks runs over whole image rows at a time
    *lead, ho, wo, c = a.shape
    return np.repeat(a, size[1], axis=-2).reshape(*lead, ho, 1, wo, size[1], c)


def _pool_windows(x, size, stride):
    # the pooling windows of x (..., h, w, c) as a strided view (kh, kw, ..., ho, wo, c): the window offsets in front,
    # where a reduction over them runs fast and the pooled images broadcast against them
    windows = np.lib.stride_tricks.sliding_window_view(x, size, axis=(-3, -2))
    return np.moveaxis(windows[..., :: stride[0], :: stride[1], :, :, :], (-2, -1), (0, 1))


def _pool_windows_reduce(ufunc, windows, dtype=None, out=None):
    # ufunc over the window offsets (kh, kw) of _pool_windows' view
    return ufunc.reduce(ufunc.reduce(windows, axis=0, dtype=dtype), axis=0, out=out)


def _pool_margins(out, size, stride, ho, wo):
    # zeros in the rows and columns of out (..., h, w, c) that no window of the ho x wo pooled image covers
    rows, cols = (ho - 1) * stride[0] + size[0], (wo - 1) * stride[1] + size[1]
    if rows < out.shape[-3]:
        out[..., rows:, :, :] = 0
    if cols < out.shape[-2]:
        out[..., :, cols:, :] = 0
    return out


def _pool_spread(shape, size, stride, dtype):
    # zeros padded for _pool_fold around the windows of pooled images of shape (..., ho, wo, c), and the view
    # (kh, kw, ..., ho, wo, c) of it that takes each window's parts
    *lead, ho, wo, c = shape
    (kh, kw), (sh, sw) = size, stride
    qh, qw = -(-kh // sh), -(-kw // sw)
    padded = np.zeros((int(np.prod(lead)), ho + 2 * qh - 2, qh * sh, wo + 2 * qw - 2, qw * sw, c), dtype=dtype)
    inner = padded[:, qh - 1 : qh - 1 + ho, :kh, qw - 1 : qw - 1 + wo, :kw, :]
    return padded, inner.transpose(2, 4, 0, 1, 3, 5).reshape(kh, kw, *lead, ho, wo, c)


def _pool_fold(padded, size, stride, out):
    # out (..., h, w, c) = the sum of the window parts _pool_spread's view took, at their pixels (windows overlap),
    # gathered: pixel m * sh + r takes, for each q, the part at row q * sh + r of window m - q (zeros beyond)
    (kh, kw), (sh, sw) = size, stride
    qh, qw = -(-kh // sh), -(-kw // sw)
    n, ph, _, pw, _, c = padded.shape
    s, mh, mw = padded.strides, ph - qh + 1, pw - qw + 1
    gathered = np.lib.stride_tricks.as_strided(
        padded[:, qh - 1 :, :, qw - 1 :],
        (n, mh, qh, sh, mw, qw, sw, c),
        (s[0], s[1], sh * s[2] - s[1], s[2], s[3], sw * s[4] - s[3], s[4], s[5]),
    )
    total = _pool_reduce(np.add, _pool_reduce(np.add, gathered, -3), -5)  # over qw, then qh
    total = total.reshape(*out.shape[:-3], mh * sh, mw * sw, c)
    rows, cols = min(out.shape[-3], mh * sh), min(out.shape[-2], mw * sw)
    out[..., :rows, :cols, :] = total[..., :rows, :cols, :]
    return _pool_margins(out, (rows, cols), (1, 1), 1, 1)


def _pool_reduce(ufunc, a, axis, dtype=None, out=None):
    # ufunc over the short axis (negative) of a; two entries are two slices (NumPy reduces a short axis slowly)
    if a.shape[axis] != 2:
        return ufunc.reduce(a, axis=axis, dtype=dtype, out=out)
    rest = (slice(None),) * (-1 - axis)
    return ufunc(a[(..., 0, *rest)], a[(..., 1, *rest)], dtype=dtype, out=out)


def _pool_blocks_reduce(ufunc, blocks, dtype=None, out=None):
    # ufunc over each block (..., ho, kh, wo, kw, c): over its rows (whole image rows at a time), then its columns
    return _pool_reduce(ufunc, _pool_reduce(ufunc, blocks, -4, dtype), -2, out=out)


def _max_pool2d(x, size, stride, out=None):
    if size == stride:
        return _pool_blocks_reduce(np.maximum, _pool_blocks(x, size), out=out)
    return _pool_windows_reduce(np.maximum, _pool_windows(x, size, stride), out=out)


def _avg_pool2d(x, size, stride, out=None):
    if size == stride:
        total = _pool_blocks_reduce(np.add, _pool_blocks(x, size), out=out)
    else:
        total = _pool_windows_reduce(np.add, _pool_windows(x, size, stride), out=out)
    return np.divide(total, size[0] * size[1], out=total)


def _max_pool2d_grad(x, y, g, size, stride, out=None):
    if out is None:
        lead = x.shape[:-3] if x.shape[:-3] == g.shape[:-3] else np.broadcast_shapes(x.shape[:-3], g.shape[:-3])
        out = np.empty((*lead, *x.shape[-3:]), dtype=g.dtype)
    if size == stride:
        at_max = _pool_blocks(x, size) == _pool_columns(y, size)
        one_each = np.count_nonzero(at_max) * size[0] * size[1] == at_max.size
        if not one_each or not np.isfinite(np.dot(y.ravel(), y.ravel())):
            # ties (a window without one maximum: several, or none where it holds a nan) share the window's gradient
            g = g / _pool_blocks_reduce(np.add, at_max.view(np.uint8))  # a pair of slices adds in uint8: at most 4
        np.multiply(at_max, _pool_columns(g, size), out=_pool_blocks(out, size))
        return _pool_margins(out, size, stride, *y.shape[-3:-1])
    at_max = _pool_windows(x[(None,) * (out.ndim - x.ndim)], size, stride) == y  # g's batch axes, if more
    padded, parts = _pool_spread((*out.shape[:-3], *y.shape[-3:]), size, stride, out.dtype)
    np.multiply(at_max, g / _pool_windows_reduce(np.add, at_max, dtype=out.dtype), out=parts)
    return _pool_fold(padded, size, stride, out)


def _max_pool2d_tangent(x, y, t, size, stride):
    x, t = x[(None,) * (t.ndim - x.ndim)], t[(None,) * (x.ndim - t.ndim)]  # the same batch axes
    at_max = _pool_windows(x, size, stride) == y
    total = _pool_windows_reduce(np.add, _pool_windows(t, size, stride) * at_max)
    return total / _pool_windows_reduce(np.add, at_max, dtype=total.dtype)


def _avg_pool2d_grad(g, image, size, stride, out=None):
    if out is None:
        out = np.empty((*g.shape[:-3], *image, g.shape[-1]), dtype=g.dtype)
    share = g / (size[0] * size[1])
    if size == stride:
        np.copyto(_pool_blocks(out, size), share[..., :, None, :, None, :])
        return _pool_margins(out, size, stride, *g.shape[-3:-1])
    padded, parts = _pool_spread(share.shape, size, stride, out.dtype)
    np.copyto(parts, share)
    return _pool_fold(padded, size, stride, out)


for _kernel in (
    _pool_reduce,
    _pool_blocks,
    _pool_columns,
    _pool_blocks_reduce,
    _pool_windows,
    _pool_windows_reduce,
    _pool_margins,
    _pool_spread,
    _pool_fold,
    _max_pool2d,
    _avg_pool2d,
    _max_pool2d_grad,
    _max_pool2d_tangent,
    _avg_pool2d_grad,
):
    KERNELS[_kernel.__name__] = _kernel
_BLOCKS = (
    "_pool_reduce",
    "_pool_blocks",
    "_pool_blocks_reduce",
    "_pool_windows",
    "_pool_windows_reduce",
)  # the views every pooling kernel takes
# and what a gradient kernel writes with
_FOLDS = (*_BLOCKS, "_pool_columns", "_pool_margins", "_pool_spread", "_pool_fold")


# -- shapes ----------------------------------------------------------------------------------------------------------
def _pooled(op: str, shape: tuple, size: tuple[int, int], stride: tuple[int, int]) -> tuple:
    """``shape`` (..., H, W, C) pooled by ``size`` windows every ``stride`` pixels; a ShapeError naming ``op`` when it
    is not the shape of a batch of images, or a window does not fit in the image."""
    if len(shape) < 4:
        raise ShapeError(f"{op}: expected a batch of images of shape (N, H, W, C), got shape {format_shape(shape)}")
    h, w = shape[-3:-1]
    if h is None or w is None:
        raise ShapeError(f"{op}: the image height and width must have known lengths, got shape {format_shape(shape)}")
    if size[0] > h or size[1] > w:
        raise ShapeError(
            f"{op}: the {size[0]}x{size[1]} window is larger than the {h}x{w} image (shape {format_shape(shape)})"
        )
    return (*shape[:-3], (h - size[0]) // stride[0] + 1, (w - size[1]) // stride[1] + 1, shape[-1])


def _infer_pool(op: str, float_only: bool):
    def infer(args, attrs):
        x = args[0]
        dtype = np.promote_types(x.dtype, np.float16) if float_only else x.dtype
        return _pooled(op, x.shape, attrs["size"], attrs["stride"]), dtype

    return infer


def _fitting(op: str, image: tuple, pooled: tuple, other: Expr, what: str, attrs) -> tuple:
    """The leading axes of ``op``'s result: ``pooled`` must be ``image`` (..., H, W, C) pooled, and the last three
    axes of ``other`` those of ``pooled`` (``what`` is "gradient") or of ``image`` (a "tangent")."""
    expected = _pooled(op, image, attrs["size"], attrs["stride"])
    tail = (expected if what == "gradient" else image)[-3:]
    if pooled != expected or other.ndim < 3 or other.shape[-3:] != tail:
        raise ShapeError(
            f"{op}: pooled {format_shape(pooled)} and {what} {format_shape(other.shape)} do not fit the image "
            f"{format_shape(image)} pooled to {format_shape(expected)}"
        )
    return broadcast_shapes(op, image[:-3], other.shape[:-3])


def _infer_max_grad(args, attrs):
    x, y, g = args
    return (*_fitting("max_pool2d_grad", x.shape, y.shape, g, "gradient", attrs), *x.shape[-3:]), g.dtype


def _infer_max_tangent(args, attrs):
    x, y, t = args
    return (*_fitting("max_pool2d_tangent", x.shape, y.shape, t, "tangent", attrs), *y.shape[-3:]), t.dtype


def _infer_avg_grad(args, attrs):
    (g,) = args
    image = (*g.shape[:-3], *attrs["image"], g.shape[-1]) if g.ndim >= 3 else g.shape
    if g.shape != _pooled("avg_pool2d_grad", image, attrs["size"], attrs["stride"]):
        raise ShapeError(f"avg_pool2d_grad: gradient {format_shape(g.shape)} is not the {attrs['image']} image pooled")
    return image, g.dtype


def _pool_axis_source(out: Expr, ax: int, *args: Expr, **attrs) -> tuple[Expr, int] | None:
    """The batch axes and the channels of a pooled image or its gradient are those of an argument that has them
    (the height and width have known lengths)."""
    back = out.ndim - ax  # the same axis counted from the end: 1 is the channels, 2 and 3 the width and height
    if back in (2, 3):
        return None
    return next(((a, a.ndim - back) for a in args if a.ndim >= back and a.shape[-back] is None), None)


# -- formatters ------------------------------------------------------------------------------------------------------
def _pair_text(pair: tuple[int, int]) -> str:
    """A window size or stride as an argument: ``2`` for a square, ``(2, 3)`` otherwise."""
    return str(pair[0]) if pair[0] == pair[1] else repr(pair)


def _pool_args(node: Expr) -> list[str]:
    """The window arguments of a pooling op after its operands: ``2``, ``stride=1`` where it is not the size, and
    ``image=(8, 8)`` for the op that has one."""
    size, stride = node.attrs["size"], node.attrs["stride"]
    parts = [_pair_text(size)] + ([] if stride == size else [f"stride={_pair_text(stride)}"])
    if "image" in node.attrs:
        parts.append(f"image={node.attrs['image']!r}")
    return parts


def _pool_text(fname: str):
    """``max_pool2d(x, 2)``, ``max_pool2d_grad(x, y, g, (2, 3), stride=1)``: the readable form."""
    return lambda node, args: Fmt(f"{fname}({', '.join([*(a.text for a in args), *_pool_args(node)])})", ATOM)


def _kernel_call(node: Expr, args: list[Fmt], out: str | None = None) -> str:
    """``_<op>(args, image, size, stride[, out=buf])``: the kernel computing ``node``."""
    attrs = node.attrs
    parts = [a.text for a in args] + ([repr(attrs["image"])] if "image" in attrs else [])
    parts += [repr(attrs["size"]), repr(attrs["stride"])] + ([f"out={out}"] if out else [])
    return f"_{node.op}({', '.join(parts)})"


def _as_dtype(node: Expr, args: list[Fmt]) -> list[Fmt]:
    """The operands of an Array API form: integer images of ``avg_pool2d`` cast to its float dtype first."""
    if node.op == "avg_pool2d" and node.args[0].dtype != node.dtype:
        return [Fmt(f"xp.astype({args[0].text}, {xp_dtype(node.dtype)})", ATOM)]
    return args


def _pool_latex(node: Expr, args: list[Fmt]) -> Fmt:
    r"""``\operatorname{max\_pool2d}_{2 \times 2}\left(x\right)``; a stride other than the size after a slash, the
    image size (of a gradient) after an arrow."""
    size, stride = node.attrs["size"], node.attrs["stride"]
    sub = f"{size[0]} \\times {size[1]}" + ("" if stride == size else f" / {stride[0]}, {stride[1]}")
    if "image" in node.attrs:  # the size of the images the gradient spreads over
        sub += " \\to {} \\times {}".format(*node.attrs["image"])
    name = node.op.replace("_", "\\_")
    return Fmt(f"\\operatorname{{{name}}}_{{{sub}}}\\left({', '.join(a.text for a in args)}\\right)", ATOM)


def _pool_op(name: str, infer, impl, vjp, jvp, *, out: bool = True, kernels: tuple[str, ...] = _FOLDS, **facts) -> None:
    """Register the pooling op ``name`` (attributes ``size``, ``stride`` and maybe ``image``), computed by the kernel
    ``_<name>`` (with the helper ``kernels``; it writes into ``out=`` unless ``out`` is False), with the gradient and
    tangent rules ``vjp`` and ``jvp``."""
    register(
        name,
        infer=infer,
        text=_pool_text(name),
        impl=impl,
        vjp=vjp,
        jvp=jvp,
        numpy=lambda node, args: Fmt(_kernel_call(node, args), ATOM),
        xp=lambda node, args: Fmt(_kernel_call(node, _as_dtype(node, args)), ATOM),  # the same call (backends)
        out=(lambda node, args, buf: _kernel_call(node, args, buf)) if out else None,
        kernels=(*kernels, f"_{name}"),
        latex=_pool_latex,
        sympy=None,
        axis_source=_pool_axis_source,
        **facts,
    )


# -- the ops ---------------------------------------------------------------------------------------------------------
def _window_attrs(size: tuple[int, int], stride: tuple[int, int]) -> dict:
    return {"size": size, "stride": stride}


def max_pool2d_grad(x: Expr, y: Expr, g: Expr, size: tuple[int, int], stride: tuple[int, int]) -> Expr:
    """The gradient of ``y = max_pool2d(x, size, stride)`` given the upstream gradient ``g``: each window's ``g``
    at the window's maxima of ``x``, ties sharing it equally."""
    return make("max_pool2d_grad", (x, y, g), _window_attrs(size, stride))


def max_pool2d_tangent(x: Expr, y: Expr, t: Expr, size: tuple[int, int], stride: tuple[int, int]) -> Expr:
    """The tangent of ``y = max_pool2d(x, size, stride)`` given the tangent ``t`` of ``x``: each window's mean of
    ``t`` over the window's maxima of ``x``."""
    return make("max_pool2d_tangent", (x, y, t), _window_attrs(size, stride))


def avg_pool2d(x: Expr, size: tuple[int, int], stride: tuple[int, int]) -> Expr:
    """The mean of each window of ``x`` (..., H, W, C): any number of leading batch axes."""
    return make("avg_pool2d", (x,), _window_attrs(size, stride))


def avg_pool2d_grad(g: Expr, image: tuple[int, int], size: tuple[int, int], stride: tuple[int, int]) -> Expr:
    """The gradient of ``avg_pool2d(x, size, stride)`` (``x`` images of ``image = (H, W)`` pixels) given the upstream
    gradient ``g``: each window's ``g`` spread evenly over its pixels."""
    return make("avg_pool2d_grad", (g,), {"image": tuple(image), **_window_attrs(size, stride)})


# -- reference implementations: every window position one by one, as a textbook loops -------------------------------
def _positions(shape: tuple, size: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, slice, slice]]:
    """``(i, j, rows, cols)`` of every window of an image of ``shape`` (..., H, W, C)."""
    ho, wo = (shape[-3] - size[0]) // stride[0] + 1, (shape[-2] - size[1]) // stride[1] + 1
    return [
        (i, j, slice(i * stride[0], i * stride[0] + size[0]), slice(j * stride[1], j * stride[1] + size[1]))
        for i in range(ho)
        for j in range(wo)
    ]


def _pool_ref(reduce):
    """The reference of a pooling op: ``reduce(window, axis=(-3, -2))`` of each window."""

    def impl(attrs, x):
        x = np.asarray(x)
        spots = _positions(x.shape, attrs["size"], attrs["stride"])
        out = np.zeros((*x.shape[:-3], spots[-1][0] + 1, spots[-1][1] + 1, x.shape[-1]), dtype=x.dtype)
        for i, j, rows, cols in spots:
            out[..., i, j, :] = reduce(x[..., rows, cols, :], axis=(-3, -2))
        return out

    return impl


def _max_routes(attrs, x, y, v, gather):
    """The reference of both max-pool derivatives: the gradient ``v`` routed back to the maxima, or (``gather``)
    the tangent ``v`` averaged over them."""
    x, y, v = (np.asarray(a) for a in (x, y, v))
    lead = np.broadcast_shapes(x.shape[:-3], v.shape[:-3])
    out = np.zeros((*lead, *(y.shape[-3:] if gather else x.shape[-3:])), dtype=v.dtype)
    for i, j, rows, cols in _positions(x.shape, attrs["size"], attrs["stride"]):
        at_max = x[..., rows, cols, :] == y[..., i, j, None, None, :]
        share = at_max / at_max.sum(axis=(-3, -2), keepdims=True)
        if gather:
            out[..., i, j, :] = (share * v[..., rows, cols, :]).sum(axis=(-3, -2))
        else:
            out[..., rows, cols, :] += share * v[..., i, j, None, None, :]
    return out


def _avg_grad_ref(attrs, g):
    g = np.asarray(g)
    out = np.zeros((*g.shape[:-3], *attrs["image"], g.shape[-1]), dtype=g.dtype)
    size = attrs["size"]
    for i, j, rows, cols in _positions(out.shape, size, attrs["stride"]):
        out[..., rows, cols, :] += g[..., i, j, None, None, :] / (size[0] * size[1])
    return out


# y = max over each window; its gradient routes g to the window's maxima (ties share), its tangent averages t there
_pool_op(
    "max_pool2d",
    _infer_pool("max_pool2d", float_only=False),
    _pool_ref(np.max),
    (lambda g, out, x, *, size, stride: max_pool2d_grad(x, out, g, size, stride),),
    (lambda t, out, x, *, size, stride: max_pool2d_tangent(x, out, t, size, stride),),
    kernels=_BLOCKS,
    hint="pool",
)
for _name, _gather, _hint in (("max_pool2d_grad", False, "unpool"), ("max_pool2d_tangent", True, "pool_t")):
    # linear in the last argument v, constant in x and y between ties: the tangent is the op itself, the gradient the
    # other op of the pair (its transpose); the gradient writes into a planned buffer, the tangent is second order only
    _transpose = max_pool2d_tangent if _name == "max_pool2d_grad" else max_pool2d_grad
    _pool_op(
        _name,
        _infer_max_tangent if _gather else _infer_max_grad,
        lambda attrs, x, y, v, _gather=_gather: _max_routes(attrs, x, y, v, gather=_gather),
        (None, None, lambda g, out, x, y, v, *, size, stride, _t=_transpose: _t(x, y, g, size, stride)),
        (None, None, lambda t, out, x, y, v, *, size, stride: make(out.op, (x, y, t), _window_attrs(size, stride))),
        out=not _gather,
        kernels=_BLOCKS if _gather else _FOLDS,
        hint=_hint,
    )
# y = mean over each window: linear, so its gradient spreads g evenly, and the gradient's gradient pools again
_pool_op(
    "avg_pool2d",
    _infer_pool("avg_pool2d", float_only=True),
    _pool_ref(np.mean),
    (lambda g, out, x, *, size, stride: avg_pool2d_grad(g, x.shape[-3:-1], size, stride),),
    (lambda t, out, x, *, size, stride: avg_pool2d(t, size, stride),),
    kernels=_BLOCKS,
    hint="pool",
)
_pool_op(
    "avg_pool2d_grad",
    _infer_avg_grad,
    _avg_grad_ref,
    (lambda h, out, g, *, image, size, stride: avg_pool2d(h, size, stride),),
    (lambda t, out, g, *, image, size, stride: avg_pool2d_grad(t, image, size, stride),),
    hint="unpool",
)
