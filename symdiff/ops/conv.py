"""Convolution: ``conv2d`` and its two gradients, each an op of its own so that gradients print as a textbook writes
them.

* ``conv2d(x, w)``: images ``x`` ``(N, H, W, C_in)`` (NHWC) correlated with filters ``w`` ``(kh, kw, C_in, C_out)``,
  ``y[n, i, j, o] = sum_{a, b, c} xp[n, i*sh + a*dh, j*sw + b*dw, c] w[a, b, c, o]`` with ``xp`` the zero-padded
  images (deep learning's convolution, which does not flip the filters);
* ``conv2d_transpose(dy, w)``: the transposed convolution, the adjoint of ``conv2d`` in ``x``: the gradient with
  respect to the images. Each output gradient pixel spreads back over the window it was computed from;
* ``conv2d_filters(x, dy)``: the correlation of the images with the output gradient, the adjoint of ``conv2d`` in
  ``w``: the gradient with respect to the filters, ``dw[a, b, c, o] = sum_{n, i, j} xp[n, i*sh + a*dh, j*sw + b*dw,
  c] dy[n, i, j, o]``.

All three are parts of one trilinear form ``<conv2d(x, w), dy>``: each is linear in each argument and their
gradients and tangents are again these ops, so derivatives of any order stay in the family. Attributes: ``stride``
and ``dilation`` pairs, explicit ``padding`` ``((top, bottom), (left, right))`` (``sd.conv2d`` resolves
``"same"``), and what the adjoint cannot recover from its operands: the image ``size`` of ``conv2d_transpose`` and
the ``kernel`` size of ``conv2d_filters`` (a stride drops the last rows that fit no window).

Lowering: ``im2col`` copies every window of the padded images into one column of a matrix, the patches
``(kh * kw * C_in, N, H_out, W_out)``: one row per filter tap and channel, holding that pixel of every window. It
stages the images channels-first, so that one strided view copied at once moves runs of whole image rows (no loop
over positions). For images of many channels (a window's row of ``kw * C_in`` values fills a cache line) the patches
are the transpose, one row per window ``(N, H_out, W_out, kh * kw * C_in)``, copied from the images as they are
(``rows="windows"``). A convolution is then one GEMM of the patches (as one row per window) with the filters, the
filter gradient one GEMM of the patches with the output gradient; a ``1 x 1`` convolution is a GEMM without patches.
The image gradient needs no patches: per filter tap, a GEMM of the output gradient with that tap's filters,
slice-added into the strided pixels of every window (``kh * kw`` of each; for one channel, one GEMM and ``col2im``,
the adjoint of ``im2col``). In generated code for speed (:mod:`symdiff.lower`) the patches are a node of their own,
``im2col(x)``, computed once for a convolution and its filter gradient, whose GEMMs are ``1 x 1`` convolutions of
it (of its transpose, a view, where it has one row per filter tap); each op writes into the buffer the memory
planner gives it.
"""

from __future__ import annotations

import math

import numpy as np

from .. import functions as F
from ..errors import DTypeError, ShapeError
from ..graph import Expr, format_shape, make, result_dtype
from .batch import nbatch
from .kernels import KERNELS
from .registry import ATOM, Fmt, register

_DEFAULTS = {"stride": (1, 1), "padding": ((0, 0), (0, 0)), "dilation": (1, 1)}


# -- kernels (copied into generated modules) -------------------------------------------------------------------
def _pointwise(kernel, stride, padding):
    return tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and tuple(map(tuple, padding)) == ((0, 0), (0, 0))


def _taps(kernel, stride, dilation, ho, wo):
    for a in range(kernel[0]):  # the pixels under filter tap (a, b) in every window: one strided slice
        rows = slice(a * dilation[0], a * dilation[0] + (ho - 1) * stride[0] + 1, stride[0])
        for b in range(kernel[1]):
            yield a, b, rows, slice(b * dilation[1], b * dilation[1] + (wo - 1) * stride[1] + 1, stride[1])


def _patch_rows(kw, c, itemsize):
    # the layout of the patches of images with c channels under filters kw taps wide: one row per filter tap and
    # channel ("taps", each a run of whole image rows) unless a window's row of kw * c pixels fills a cache line
    return "windows" if kw * c * itemsize >= 64 else "taps"


def _im2col(x, kernel, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), rows="taps", out=None):
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = kernel, stride, padding, dilation
    hp = h + pt + pb
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if rows == "windows":  # one row per window: its pixels are runs of kw * c values of the padded images
        if out is None:
            out = np.empty((n, ho, wo, kh * kw * c), dtype=x.dtype)
        xp = np.zeros((n, hp, w + pl + pr, c), dtype=x.dtype) if pt or pb or pl or pr else x
        if xp is not x:
            xp[:, pt : pt + h, pl : pl + w] = x
        s = xp.strides
        view = (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3])
        windows = out.reshape(n, ho, wo, kh, kw, c)
        np.copyto(windows, np.lib.stride_tricks.as_strided(xp, windows.shape, view, writeable=False))
        return out
    if out is None:
        out = np.empty((kh * kw * c, n, ho, wo), dtype=x.dtype)
    # the images channels-first, padded in height only, in one flat buffer with pl zeros before them and pr after
    flat = np.zeros(pl + c * n * hp * w + pr, dtype=x.dtype)
    flat[pl : pl + c * n * hp * w].reshape(c, n, hp, w)[:, :, pt : pt + h] = x.transpose(3, 0, 1, 2)
    # tap (a, b) of window (i, j) is pixel (i * sh + a * dh, j * sw + b * dw - pl) of its channel's padded image: one
    # strided view (of the buffer, made directly: as_strided costs more) takes every tap of every window at once, in
    # runs of whole rows where sw == 1 and wo == w
    e, taps = flat.itemsize, out.reshape(kh, kw, c, n, ho, wo)
    view = (dh * w * e, dw * e, n * hp * w * e, hp * w * e, sh * w * e, sw * e)
    np.copyto(taps, np.ndarray(taps.shape, flat.dtype, flat, 0, view))
    for b in range(kw):  # a column left or right of the image read a pixel of the next row: the padding's zeros
        first, end = -((b * dw - pl) // sw), -((b * dw - pl - w) // sw)  # the windows j with 0 <= column < w
        if first > 0:
            taps[:, b, :, :, :, :first] = 0
        if end < wo:
            taps[:, b, :, :, :, end:] = 0
    return out


def _add_taps(parts, n, c, size, padding, dtype, out=None):
    (h, w), ((pt, pb), (pl, pr)) = size, padding
    if out is None:
        out = np.empty((n, h, w, c), dtype=dtype)
    padded = pt or pb or pl or pr
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dtype) if padded else out
    if not padded:
        xp.fill(0)
    for rows, cols, part in parts:  # one strided slice-add per filter tap, each over every window
        xp[:, rows, cols] += part
    if padded:
        np.copyto(out, xp[:, pt : pt + h, pl : pl + w])
    return out


def _col2im(cols, kernel, size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), rows="taps", out=None):
    if rows == "windows":  # tap (a, b): windows[:, :, :, a, b], the pixels (n, ho, wo, c) under it
        n, ho, wo, k = cols.shape
        windows = cols.reshape(n, ho, wo, *kernel, k // (kernel[0] * kernel[1]))
    else:  # tap (a, b): the channels' pixels (c, n, ho, wo), as images
        k, n, ho, wo = cols.shape
        windows = cols.reshape(*kernel, k // (kernel[0] * kernel[1]), n, ho, wo).transpose(3, 4, 5, 0, 1, 2)
    parts = ((ys, xs, windows[:, :, :, a, b]) for a, b, ys, xs in _taps(kernel, stride, dilation, ho, wo))
    return _add_taps(parts, n, windows.shape[-1], size, padding, cols.dtype, out)


def _patch_matrix(x, kernel, stride, padding, dilation):
    # the patches as a matrix, one row per window (n * ho * wo, kh * kw * c), and (n, ho, wo): the images themselves
    # for 1 x 1 filters, else the im2col matrix (or its transpose)
    if _pointwise(kernel, stride, padding):
        return x.reshape(-1, x.shape[3]), x.shape[:3]
    rows = _patch_rows(kernel[1], x.shape[3], x.itemsize)
    cols = _im2col(x, kernel, stride, padding, dilation, rows)
    if rows == "windows":
        return cols.reshape(-1, cols.shape[3]), cols.shape[:3]
    return cols.reshape(cols.shape[0], -1).T, cols.shape[1:]


def _conv2d(x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), out=None):
    kh, kw, c, co = w.shape
    rows, windows = _patch_matrix(x, (kh, kw), stride, padding, dilation)
    if out is None:
        out = np.empty((*windows, co), dtype=np.result_type(x, w))
    np.matmul(rows, w.reshape(-1, co), out=out.reshape(-1, co))
    return out


def _conv2d_transpose(dy, w, size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), out=None):
    kh, kw, c, co = w.shape
    n, ho, wo = dy.shape[:3]
    if _pointwise((kh, kw), stride, padding):
        if out is None:
            out = np.empty((n, ho, wo, c), dtype=np.result_type(dy, w))
        np.matmul(dy.reshape(-1, co), w.reshape(c, co).T, out=out.reshape(-1, c))
        return out
    if c == 1:  # one channel: one GEMM, then its columns summed back into the image
        cols = (w.reshape(-1, co) @ dy.reshape(-1, co).T).reshape(kh * kw, n, ho, wo)
        return _col2im(cols, (kh, kw), size, stride, padding, dilation, out)
    dtype, dy2 = np.result_type(dy, w), dy.reshape(-1, co)
    part = np.empty((n * ho * wo, c), dtype=dtype)  # per filter tap: a GEMM, then its slice-add
    parts = (
        (rows, cols, np.matmul(dy2, w[a, b].T, out=part).reshape(n, ho, wo, c))
        for a, b, rows, cols in _taps((kh, kw), stride, dilation, ho, wo)
    )
    return _add_taps(parts, n, c, size, padding, dtype, out)


def _conv2d_filters(x, dy, kernel, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), out=None):
    rows, _ = _patch_matrix(x, kernel, stride, padding, dilation)
    co = dy.shape[3]
    if out is None:
        out = np.empty((*kernel, x.shape[3], co), dtype=np.result_type(x, dy))
    np.matmul(rows.T, dy.reshape(-1, co), out=out.reshape(-1, co))
    return out


for _kernel in (
    _pointwise,
    _taps,
    _add_taps,
    _patch_rows,
    _im2col,
    _col2im,
    _patch_matrix,
    _conv2d,
    _conv2d_transpose,
    _conv2d_filters,
):
    KERNELS[_kernel.__name__] = _kernel


# -- shapes ------------------------------------------------------------------------------------------------------
def _shapes(names: tuple[str, str], *args: Expr) -> str:
    return " and ".join(f"{format_shape(a.shape)} ({n})" for n, a in zip(names, args))


def _check_attrs(op: str, attrs) -> None:
    """Refuse a stride or dilation that is not a pair of positive ints, or pads that are not non-negative pairs."""
    for key in ("stride", "dilation"):
        F.spatial_pair(op, key, attrs[key])
    pads = attrs["padding"]
    if not (len(pads) == 2 and all(len(p) == 2 and all(isinstance(v, int) and v >= 0 for v in p) for p in pads)):
        raise ValueError(f"{op}: padding must be explicit pads ((top, bottom), (left, right)), got {pads!r}")


def _dtype(op: str, names: tuple[str, str], *args: Expr) -> np.dtype:
    if any(a.dtype.kind != "f" for a in args):
        raise DTypeError(
            f"{op}: operands must be floats, got dtypes {' and '.join(f'{a.dtype} ({n})' for n, a in zip(names, args))}"
            "; cast them first (sd.astype)"
        )
    return result_dtype(*args)


def _check_ndim(op: str, names: tuple[str, str], a: Expr, b: Expr, expected: str) -> None:
    """Both operands have 4 axes of known lengths, but for the batch axis (0) of images and output gradients (the
    filters ``w`` have none)."""
    open_b = names[1] != "w"
    if a.ndim != 4 or b.ndim != 4 or None in a.shape[1:] or None in b.shape[1:] or (b.shape[0] is None and not open_b):
        raise ShapeError(
            f"{op}: expected {expected}, every length known but the batch's; got shapes {_shapes(names, a, b)}"
        )


def _output_size(op: str, size, kernel, attrs, shapes: str) -> tuple[int, int]:
    """The spatial size of ``conv2d``'s result for images of ``size`` and filters of ``kernel``; ``ShapeError`` when a
    dilated filter is larger than the padded image."""
    out = []
    for n, k, s, d, p in zip(size, kernel, attrs["stride"], attrs["dilation"], attrs["padding"]):
        if n + p[0] + p[1] < d * (k - 1) + 1:
            raise ShapeError(
                f"{op}: the filter (spanning {d * (k - 1) + 1} pixels at dilation {d}) is larger than the padded image "
                f"({n} + {p[0]} + {p[1]} pixels) for shapes {shapes}"
            )
        out.append(F.conv_output_size(n, k, s, d, p))
    return out[0], out[1]


def _infer_conv2d(args, attrs):
    x, w = args
    names = ("x", "w")
    _check_ndim("conv2d", names, x, w, "images x (N, H, W, C_in) and filters w (kh, kw, C_in, C_out)")
    _check_attrs("conv2d", attrs)
    if x.shape[3] != w.shape[2]:
        raise ShapeError(
            f"conv2d: the images have {x.shape[3]} channels, the filters take {w.shape[2]}; shapes "
            f"{_shapes(names, x, w)} (x (N, H, W, C_in), w (kh, kw, C_in, C_out))"
        )
    dtype = _dtype("conv2d", names, x, w)
    ho, wo = _output_size("conv2d", x.shape[1:3], w.shape[:2], attrs, _shapes(names, x, w))
    return (x.shape[0], ho, wo, w.shape[3]), dtype


def _infer_transpose(args, attrs):
    dy, w = args
    names = ("dy", "w")
    _check_ndim(
        "conv2d_transpose", names, dy, w, "gradients dy (N, H_out, W_out, C_out), filters (kh, kw, C_in, C_out)"
    )
    _check_attrs("conv2d_transpose", attrs)
    size = tuple(attrs["size"])
    expected = _output_size("conv2d_transpose", size, w.shape[:2], attrs, _shapes(names, dy, w))
    if dy.shape[3] != w.shape[3] or dy.shape[1:3] != expected:
        raise ShapeError(
            f"conv2d_transpose: shapes {_shapes(names, dy, w)} do not fit: images of size {size} give outputs of "
            f"{expected} with {w.shape[3]} channels"
        )
    return (dy.shape[0], *size, w.shape[2]), _dtype("conv2d_transpose", names, dy, w)


def _infer_filters(args, attrs):
    x, dy = args
    names = ("x", "dy")
    _check_ndim("conv2d_filters", names, x, dy, "images x (N, H, W, C_in) and gradients dy (N, H_out, W_out, C_out)")
    _check_attrs("conv2d_filters", attrs)
    kernel = tuple(attrs["kernel"])
    expected = _output_size("conv2d_filters", x.shape[1:3], kernel, attrs, _shapes(names, x, dy))
    n, m = x.shape[0], dy.shape[0]
    if dy.shape[1:3] != expected or (n is not None and m is not None and n != m):
        raise ShapeError(
            f"conv2d_filters: shapes {_shapes(names, x, dy)} do not fit: filters of size {kernel} give outputs of "
            f"size {expected}, for as many images"
        )
    return (*kernel, x.shape[3], dy.shape[3]), _dtype("conv2d_filters", names, x, dy)


# -- the family's nodes ----------------------------------------------------------------------------------------
def _geometry(attrs) -> dict:
    return {k: attrs[k] for k in ("stride", "padding", "dilation")}


def conv2d_transpose(dy: Expr, w: Expr, size: tuple[int, int], **geometry) -> Expr:
    """The transposed convolution of ``dy`` with ``w`` onto images of ``size`` (the gradient of ``conv2d`` with
    respect to its images)."""
    return make("conv2d_transpose", (dy, w), {**geometry, "size": tuple(size)})


def conv2d_filters(x: Expr, dy: Expr, kernel: tuple[int, int], **geometry) -> Expr:
    """The correlation of images ``x`` with ``dy`` over filter taps of ``kernel`` (the gradient of ``conv2d`` with
    respect to its filters)."""
    return make("conv2d_filters", (x, dy), {**geometry, "kernel": tuple(kernel)})


def conv2d(x: Expr, w: Expr, **geometry) -> Expr:
    """``conv2d`` with the attributes as its node holds them (explicit pads)."""
    return make("conv2d", (x, w), geometry)


# -- tangents: a batch of tangents is folded into an axis of the operand and split off the result ----------------
def _fold(t: Expr, x: Expr, axis: int) -> tuple[Expr, tuple]:
    """The tangent ``t`` of ``x`` with its batch axes merged into ``x``'s ``axis`` (batch-major), and the batch."""
    nb = nbatch(t, x)
    if not nb:
        return t, ()
    batch = t.shape[:nb]
    moved = F.transpose(t, (*range(nb, nb + axis), *range(nb), *range(nb + axis, t.ndim))) if axis else t
    shape = [-1 if d is None else d for d in x.shape]
    shape[axis] = -1 if x.shape[axis] is None else math.prod(batch) * x.shape[axis]
    return F.reshape(moved, tuple(shape)), batch


def _unfold(r: Expr, batch: tuple, axis: int) -> Expr:
    """The result ``r`` of a folded tangent with the batch split off its ``axis`` and moved in front."""
    if not batch:
        return r
    d = r.shape[axis]
    shape = [-1 if e is None else e for e in r.shape]
    shape[axis : axis + 1] = [*batch, -1 if d is None else d // math.prod(batch)]
    split = F.reshape(r, tuple(shape))
    nb = len(batch)
    if not axis:
        return split
    return F.transpose(split, (*range(axis, axis + nb), *range(axis), *range(axis + nb, split.ndim)))


def _tangent(position: int, axis: int, out_axis: int, build):
    """The tangent rule of argument ``position`` of an op linear in it, ``build(*args, **attrs)``: a batch of
    tangents is folded into the argument's ``axis`` and split off the result's ``out_axis``."""

    def rule(t: Expr, out: Expr, *args: Expr, **attrs) -> Expr:
        folded, batch = _fold(t, args[position], axis)
        return _unfold(build(*args[:position], folded, *args[position + 1 :], **attrs), batch, out_axis)

    return rule


# -- formatters ----------------------------------------------------------------------------------------------------
def _pair_text(v: tuple) -> str:
    return repr(v[0]) if v[0] == v[1] else repr(tuple(v))


def _is_same(node: Expr, size, kernel) -> bool:
    a = node.attrs
    return a["padding"] == F.conv_padding(node.op, "same", size, kernel, a["stride"], a["dilation"])


# The sizes each op's kernel takes after its operands (it cannot read them off the operands' shapes).
_SIZES = {
    "conv2d": (),
    "conv2d_transpose": ("size",),
    "conv2d_filters": ("kernel",),
    "im2col": ("kernel",),
    "col2im": ("kernel", "size"),
}


def _sizes(node: Expr) -> tuple[tuple, tuple]:
    """The image size and the filter size of a node of the family."""
    a, b = node.args[0], node.args[-1]
    size = node.attrs["size"] if "size" in node.attrs else a.shape[1:3]
    return size, node.attrs["kernel"] if "kernel" in node.attrs else b.shape[:2]


def _implied(node: Expr, key: str) -> bool:
    """The image size of ``conv2d_transpose`` (the filter size of ``conv2d_filters``) follows from its operands:
    the smallest images (the largest filters) that give its output size. The patch ops show both sizes."""
    if node.op not in ("conv2d_transpose", "conv2d_filters"):
        return False
    a = node.attrs
    got = []
    for i in range(2):
        s, d, (p0, p1) = a["stride"][i], a["dilation"][i], a["padding"][i]
        if node.op == "conv2d_transpose":
            ho, k = node.args[0].shape[1 + i], node.args[1].shape[i]
            got.append((ho - 1) * s + d * (k - 1) + 1 - p0 - p1)
        else:
            n, ho = node.args[0].shape[1 + i], node.args[1].shape[1 + i]
            got.append((n + p0 + p1 - (ho - 1) * s - 1) // d + 1)
    return tuple(got) == tuple(a[key])


def _keywords(node: Expr) -> list[str]:
    """The attributes that differ from their defaults, as keyword arguments (``padding="same"`` where it is)."""
    a = node.attrs
    parts = [f"stride={_pair_text(a['stride'])}"] if a["stride"] != (1, 1) else []
    if a["padding"] != _DEFAULTS["padding"]:
        parts.append('padding="same"' if _is_same(node, *_sizes(node)) else f"padding={a['padding']!r}")
    if a["dilation"] != (1, 1):
        parts.append(f"dilation={_pair_text(a['dilation'])}")
    return parts + [f"{key}={tuple(a[key])!r}" for key in _SIZES[node.op] if not _implied(node, key)] + _layout(a)


def _layout(attrs) -> list[str]:
    """The patches' layout as a keyword argument where it is not the default (one row per filter tap)."""
    return [f'rows="{attrs["rows"]}"'] if attrs.get("rows", "taps") != "taps" else []


def _text(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"{node.op}({', '.join([a.text for a in args] + _keywords(node))})", ATOM)


def _latex(node: Expr, args: list[Fmt]) -> Fmt:
    name = node.op.replace("_", "\\_")
    sub = ", ".join(k.replace('"', "") for k in _keywords(node)).replace("_", "\\_")
    sub = f"_{{{sub}}}" if sub else ""
    return Fmt(f"\\operatorname{{{name}}}{sub}\\left({', '.join(a.text for a in args)}\\right)", ATOM)


def _call_args(node: Expr, args: list[Fmt]) -> str:
    """The kernel's arguments: the operands, the sizes it cannot read off them, then the non-default geometry."""
    parts = [a.text for a in args] + [repr(tuple(node.attrs[k])) for k in _SIZES[node.op]]
    parts += [f"{k}={node.attrs[k]!r}" for k in ("stride", "padding", "dilation") if node.attrs[k] != _DEFAULTS[k]]
    return ", ".join(parts + _layout(node.attrs))


def _numpy(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"_{node.op}({_call_args(node, args)})", ATOM)


def _out(node: Expr, args: list[Fmt], buf: str) -> str:
    return f"_{node.op}({_call_args(node, args)}, out={buf})"


def _impl(op: str):
    """The reference implementation: the op's kernel."""
    kernel = KERNELS[f"_{op}"]

    def impl(attrs, *arrays):
        layout = {"rows": attrs["rows"]} if "rows" in attrs else {}
        return kernel(*map(np.asarray, arrays), *(tuple(attrs[k]) for k in _SIZES[op]), **_geometry(attrs), **layout)

    return impl


# -- the entries -------------------------------------------------------------------------------------------------
def _batch_source(out: Expr, ax: int, a: Expr, *others: Expr, **attrs) -> tuple[Expr, int] | None:
    """The batch axis (0) of the result is the first operand's; every other length is known."""
    return (a, 0) if ax == 0 else None


_FORMATTERS = {"text": _text, "latex": _latex, "numpy": _numpy, "out": _out}


def _entry(name: str, **facts) -> None:
    """Register a linear op of the family: its kernel computes it, the family's formatters print it; ``facts`` are
    its own (shape rule, gradient and tangent rules, axis provenance, hint, DOT symbol)."""
    if name in ("conv2d_transpose", "col2im"):
        patches = ("_col2im", "_add_taps")
    else:
        patches = ("_patch_matrix", "_patch_rows", "_im2col")
    kernels = (f"_{name}", *patches, "_taps", "_pointwise")
    # other array libraries: the same call of the library's convolution (symdiff.backends); the patches stay NumPy's
    xp = None if name in ("im2col", "col2im") else _numpy
    register(name, sympy=None, impl=_impl(name), kernels=kernels, xp=xp, **_FORMATTERS, **facts)


def _images(x: Expr) -> tuple[int, int]:
    return x.shape[1:3]


def _kernel(w: Expr) -> tuple[int, int]:
    return w.shape[:2]


# y = conv2d(x, w): gx = conv2d_transpose(g, w), gw = conv2d_filters(x, g)
_entry(
    "conv2d",
    infer=_infer_conv2d,
    vjp=(
        lambda g, out, x, w, **geo: conv2d_transpose(g, w, _images(x), **geo),
        lambda g, out, x, w, **geo: conv2d_filters(x, g, _kernel(w), **geo),
    ),
    jvp=(
        _tangent(0, 0, 0, lambda x, w, **geo: conv2d(x, w, **geo)),
        _tangent(1, 3, 3, lambda x, w, **geo: conv2d(x, w, **geo)),
    ),
    axis_source=_batch_source,
    hint="conv",
    dot="conv2d",
)


def _transpose_vjp_w(g: Expr, out: Expr, dy: Expr, w: Expr, *, size, **geo) -> Expr:
    return conv2d_filters(g, dy, _kernel(w), **geo)


def _build_transpose(dy: Expr, w: Expr, *, size, **geo) -> Expr:
    return conv2d_transpose(dy, w, size, **geo)


# z = conv2d_transpose(dy, w) (<z, g> = <dy, conv2d(g, w)>): gdy = conv2d(g, w), gw = conv2d_filters(g, dy)
_entry(
    "conv2d_transpose",
    infer=_infer_transpose,
    vjp=(lambda g, out, dy, w, *, size, **geo: conv2d(g, w, **geo), _transpose_vjp_w),
    jvp=(_tangent(0, 0, 0, _build_transpose), _tangent(1, 2, 3, _build_transpose)),
    axis_source=_batch_source,
    hint="conv_t",
    dot="conv2dᵀ",
)


def _build_filters(x: Expr, dy: Expr, *, kernel, **geo) -> Expr:
    return conv2d_filters(x, dy, kernel, **geo)


# v = conv2d_filters(x, dy) (<v, g> = <dy, conv2d(x, g)>): gx = conv2d_transpose(dy, g), gdy = conv2d(x, g)
_entry(
    "conv2d_filters",
    infer=_infer_filters,
    vjp=(
        lambda g, out, x, dy, *, kernel, **geo: conv2d_transpose(dy, g, _images(x), **geo),
        lambda g, out, x, dy, *, kernel, **geo: conv2d(x, g, **geo),
    ),
    jvp=(_tangent(0, 3, 2, _build_filters), _tangent(1, 3, 3, _build_filters)),
    axis_source=None,  # the filters' lengths are all known
    hint="conv_w",
    dot="conv2d filters",
)


# -- lowering: the patches as a node of their own, shared by a convolution and its filter gradient -----------------
def im2col(x: Expr, kernel: tuple[int, int], rows: str = "taps", **geometry) -> Expr:
    """The patches of images ``x`` under filters of ``kernel`` taps: one row per filter tap and channel, one column
    per window, ``(kh * kw * C_in, N, H_out, W_out)``, or (``rows="windows"``) its transpose ``(N, H_out, W_out,
    kh * kw * C_in)``."""
    return make("im2col", (x,), {**geometry, "kernel": tuple(kernel), "rows": rows})


def col2im(cols: Expr, kernel: tuple[int, int], size: tuple[int, int], rows: str = "taps", **geometry) -> Expr:
    """Patches ``cols`` summed back into images of ``size`` (the adjoint of :func:`im2col`)."""
    return make("col2im", (cols,), {**geometry, "kernel": tuple(kernel), "size": tuple(size), "rows": rows})


def _patches_batch(attrs) -> int:
    """The batch axis of patches: second in one row per filter tap, first in one row per window."""
    if attrs["rows"] not in ("taps", "windows"):
        raise ValueError(f"patches: rows must be 'taps' (one per filter tap) or 'windows', got {attrs['rows']!r}")
    return 1 if attrs["rows"] == "taps" else 0


def _infer_im2col(args, attrs):
    (x,) = args
    kh, kw = attrs["kernel"]
    if x.ndim != 4 or None in x.shape[1:]:
        raise ShapeError(f"im2col: expected images (N, H, W, C) with known H, W, C, got shape {format_shape(x.shape)}")
    _check_attrs("im2col", attrs)
    ho, wo = _output_size("im2col", x.shape[1:3], (kh, kw), attrs, format_shape(x.shape))
    k = kh * kw * x.shape[3]
    shape = (k, x.shape[0], ho, wo) if _patches_batch(attrs) else (x.shape[0], ho, wo, k)
    return shape, _dtype("im2col", ("x",), x)


def _infer_col2im(args, attrs):
    (cols,) = args
    (kh, kw), size = attrs["kernel"], tuple(attrs["size"])
    _check_attrs("col2im", attrs)
    expected = _output_size("col2im", size, (kh, kw), attrs, format_shape(cols.shape))
    at = _patches_batch(attrs)  # taps: (K, N, H_out, W_out), windows: (N, H_out, W_out, K)
    k = (cols.shape[0] if at else cols.shape[3]) if cols.ndim == 4 else None
    if k is None or k % (kh * kw) or cols.shape[at + 1 : at + 3] != expected:
        want = ("{0} * {1} * C, N, {2}, {3}" if at else "N, {2}, {3}, {0} * {1} * C").format(kh, kw, *expected)
        raise ShapeError(
            f"col2im: expected patches ({want}) for images of size {size}, got shape {format_shape(cols.shape)}"
        )
    return (cols.shape[at], *size, k // (kh * kw)), _dtype("col2im", ("cols",), cols)


_entry(
    "im2col",
    infer=_infer_im2col,
    vjp=(lambda g, out, x, *, kernel, **geo: col2im(g, kernel, _images(x), **geo),),
    jvp=(lambda t, out, x, **attrs: _tangent(0, 0, _patches_batch(attrs), im2col)(t, out, x, **attrs),),
    axis_source=lambda out, ax, x, **attrs: (x, 0) if ax == _patches_batch(attrs) else None,
    hint="cols",
    dot="im2col",
)
_entry(
    "col2im",
    infer=_infer_col2im,
    vjp=(lambda g, out, cols, *, kernel, size, **geo: im2col(g, kernel, **geo),),
    jvp=(lambda t, out, cols, **attrs: _tangent(0, _patches_batch(attrs), 0, col2im)(t, out, cols, **attrs),),
    axis_source=lambda out, ax, cols, **attrs: (cols, _patches_batch(attrs)) if ax == 0 else None,
    hint="img",
    dot="col2im",
)


def _filter_matrix(w: Expr) -> Expr:
    """The filters as ``1 x 1`` filters on the patches: the ``(kh * kw * C_in, C_out)`` matrix of the GEMM."""
    kh, kw, c, co = w.shape
    return F.reshape(w, (1, 1, kh * kw * c, co))


def lowered(n: Expr) -> Expr | None:
    """``conv2d`` and its filter gradient as GEMMs on the patches of the images, :func:`im2col`, which they share:
    with the patches as one row per window (for images of few channels, the transpose, a view, of patches with one
    row per filter tap: see ``_patch_rows``), ``conv2d(x, w)`` is their ``1 x 1`` convolution with the filter matrix
    (``patches @ w``) and ``conv2d_filters(x, dy)`` its filter gradient (``patches.T @ dy``). ``None`` for a ``1 x 1``
    convolution (a GEMM already). (``conv2d_transpose`` needs no patches: its kernel runs a GEMM and a slice-add per
    filter tap.)"""
    a, b = n.args
    kernel = _sizes(n)[1]
    if _pointwise(kernel, n.attrs["stride"], n.attrs["padding"]):
        return None
    rows = _patch_rows(kernel[1], a.shape[3], a.dtype.itemsize)
    patches = im2col(a, kernel, rows, **_geometry(n.attrs))
    if rows == "taps":
        patches = F.transpose(patches, (1, 2, 3, 0))
    if n.op == "conv2d":
        return conv2d(patches, _filter_matrix(b), **_DEFAULTS)
    return F.reshape(conv2d_filters(patches, b, (1, 1), **_DEFAULTS), (*kernel, a.shape[3], b.shape[3]))
