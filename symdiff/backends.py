"""Array-library backends: the same generated code on PyTorch, JAX, CuPy or any Array API namespace.

``backend="numpy"`` (the default everywhere) is symdiff's own fast path: NumPy code with ``out=`` buffers, ufunc
reductions and the memory planner. Every other backend gets code written against the Python Array API standard
(each op's ``xp`` form in the op table), calling the namespace ``xp`` of that library (through
``array_api_compat`` where the library's own namespace is not the standard's) and a few helpers ``_<name>(...)``.
A helper's generic definition uses the standard only (:data:`ARRAY_API`); where the standard lacks something
(scatter-add, erf) or the library has a better function, the library's own table (:data:`TORCH`, :data:`JAX`)
defines it. An op without an ``xp`` form, or a helper the backend cannot define, is refused when the code is
generated, with an error naming the op and the backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import SymdiffError, UnsupportedError
from .graph import Expr, topo_order
from .ops.registry import ATOM, Fmt

__all__ = ["ARRAY_API", "JAX", "TORCH", "Backend", "BackendError", "check_supported", "helpers_used", "resolve"]

NAMES = ("numpy", "torch", "jax", "cupy")


class BackendError(SymdiffError, ValueError):
    """An unknown backend, or one whose library is not installed.

    >>> import symdiff as sd
    >>> try:
    ...     sd.compile(sd.Input("x", shape=(2,)), backend="tensorflow")
    ... except sd.BackendError as e:
    ...     print(str(e).split(";")[0])
    unknown backend 'tensorflow'
    """


# Helpers in the Array API standard alone; ``xp`` is the namespace, ``_device`` the device the module targets.
ARRAY_API: dict[str, str | None] = {
    "_sigmoid": "def _sigmoid(x):\n    return 1 / (1 + xp.exp(-x))",
    "_softplus": "def _softplus(x):\n    return xp.logaddexp(x, xp.zeros_like(x))",
    "_logsumexp": (
        "def _logsumexp(x, axis=None, keepdims=False):\n"
        "    m = xp.max(x, axis=axis, keepdims=True)\n"
        "    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m\n"
        "    return out if keepdims else xp.squeeze(out, axis=tuple(range(x.ndim)) if axis is None else axis)"
    ),
    "_softmax": (
        "def _softmax(x, axis=-1):\n"
        "    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))\n"
        "    return e / xp.sum(e, axis=axis, keepdims=True)"
    ),
    "_log_softmax": (
        "def _log_softmax(x, axis=-1):\n"
        "    s = x - xp.max(x, axis=axis, keepdims=True)\n"
        "    return s - xp.log(xp.sum(xp.exp(s), axis=axis, keepdims=True))"
    ),
    "_pick": (
        "def _pick(x, labels):\n    return xp.take_along_axis(x, xp.expand_dims(labels, axis=-1), axis=-1)[..., 0]"
    ),
    "_onehot": (
        "def _onehot(labels, depth, dtype):\n"
        "    return xp.astype(xp.expand_dims(labels, axis=-1) == xp.arange(depth, device=_device), dtype)"
    ),
    "_onehot_sub": ("def _onehot_sub(x, labels, value):\n    return x - value * _onehot(labels, x.shape[-1], x.dtype)"),
    "_s": "class _Index:\n    def __getitem__(self, index):\n        return index\n\n\n_s = _Index()",
    "_scatter": (
        "def _scatter(g, shape, index, dtype):\n"
        "    out = xp.zeros(shape, dtype=dtype, device=_device)\n"
        "    out[index] = g\n"
        "    return out"
    ),
    "_getitem": "def _getitem(x, index):  # an index with a negative step\n    return x[index]",
    "_dropout_mask": None,  # the standard has no random numbers
    "_positive_steps": None,  # torch's own: its tensors take no negative steps
    "_take": (
        "def _take(x, ids, axis=0):\n"
        "    out = xp.take(x, xp.reshape(ids % x.shape[axis], (-1,)), axis=axis)\n"
        "    return xp.reshape(out, (*x.shape[:axis], *ids.shape, *x.shape[axis + 1 :]))"
    ),
    "_scatter_add": None,  # the standard has no scatter-add
    "_erf": None,  # nor an error function
    "_outer": "def _outer(a, b):\n    return xp.reshape(a, (-1, 1)) * xp.reshape(b, (1, -1))",
    "_diagonal": "def _diagonal(x):\n    return xp.linalg.diagonal(xp.permute_dims(x, (*range(2, x.ndim), 0, 1)))",
    "_trace": "def _trace(x):\n    return xp.sum(_diagonal(x), axis=-1)",
    "_diag": (
        "def _diag(v):\n"
        "    eye = xp.eye(v.shape[0], device=_device) == 1\n"
        "    return xp.where(eye, v, xp.zeros((v.shape[0], v.shape[0]), dtype=v.dtype, device=_device))"
    ),
    "_cofactor": (
        "def _cofactor(a):\n    return xp.linalg.det(a)[..., None, None] * xp.matrix_transpose(xp.linalg.inv(a))"
    ),
    "_solve": (
        "def _solve(a, b):\n"
        "    if b.ndim == 1:  # NumPy's rule: a 1-D b is one vector, for every matrix of a\n"
        "        return xp.linalg.solve(a, b[..., None])[..., 0]\n"
        "    return xp.linalg.solve(a, b)"
    ),
    # -- images (..., H, W, C), as symdiff.ops.conv and symdiff.ops.pool hold them; the kernels' signatures --
    "_normalize": (
        "def _normalize(x, axis, eps):\n"
        "    centered = x - xp.mean(x, axis=axis, keepdims=True)\n"
        "    return centered / xp.sqrt(xp.mean(centered * centered, axis=axis, keepdims=True) + eps)"
    ),
    "_add_at": (
        "def _add_at(out, index, part):  # out with part added at out[index]\n"
        "    out[index] = out[index] + part\n"
        "    return out"
    ),
    "_fold": (
        "def _fold(shape, dtype, parts):  # zeros of shape with each (index, part) added at its index\n"
        "    out = xp.zeros(shape, dtype=dtype, device=_device)\n"
        "    for index, part in parts:\n"
        "        out = _add_at(out, index, part)\n"
        "    return out"
    ),
    "_tap_index": (
        "def _tap_index(a, b, ho, wo, stride=(1, 1), dilation=(1, 1)):  # the pixels under tap (a, b) of every window\n"
        "    (sh, sw), (dh, dw) = stride, dilation\n"
        "    rows = slice(a * dh, a * dh + (ho - 1) * sh + 1, sh)\n"
        "    return (..., rows, slice(b * dw, b * dw + (wo - 1) * sw + 1, sw), slice(None))"
    ),
    "_pad2d": (
        "def _pad2d(x, padding):  # images with zeros around them\n"
        "    ((pt, pb), (pl, pr)), (*lead, h, w, c) = padding, x.shape\n"
        "    if not (pt or pb or pl or pr):\n"
        "        return x\n"
        "    index = (..., slice(pt, pt + h), slice(pl, pl + w), slice(None))\n"
        "    return _fold((*lead, h + pt + pb, w + pl + pr, c), x.dtype, [(index, x)])"
    ),
    "_sym_pads": (
        "def _sym_pads(x, padding):  # images and the pads left to the convolution: equal pads on both sides\n"
        "    (pt, pb), (pl, pr) = padding\n"
        "    return (x, (pt, pl)) if pt == pb and pl == pr else (_pad2d(x, padding), (0, 0))"
    ),
    "_conv2d": (
        "def _conv2d(x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):\n"
        "    (kh, kw), x = w.shape[:2], _pad2d(x, padding)\n"
        "    ho = (x.shape[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1\n"
        "    wo = (x.shape[2] - dilation[1] * (kw - 1) - 1) // stride[1] + 1\n"
        "    return sum(x[_tap_index(a, b, ho, wo, stride, dilation)] @ w[a, b] for a in range(kh) for b in range(kw))"
    ),
    "_conv2d_transpose": (
        "def _conv2d_transpose(dy, w, size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):\n"
        "    (kh, kw, c, _), (n, ho, wo, _), ((pt, pb), (pl, pr)) = w.shape, dy.shape, padding\n"
        "    parts = [\n"
        "        (_tap_index(a, b, ho, wo, stride, dilation), dy @ xp.matrix_transpose(w[a, b]))\n"
        "        for a in range(kh)\n"
        "        for b in range(kw)\n"
        "    ]\n"
        "    out = _fold((n, size[0] + pt + pb, size[1] + pl + pr, c), xp.result_type(dy, w), parts)\n"
        "    return out[:, pt : pt + size[0], pl : pl + size[1], :]"
    ),
    "_conv2d_filters": (
        "def _conv2d_filters(x, dy, kernel, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):\n"
        "    (ho, wo), x, axes = dy.shape[1:3], _pad2d(x, padding), ((0, 1, 2), (0, 1, 2))\n"
        "    taps = [\n"
        "        xp.tensordot(x[_tap_index(a, b, ho, wo, stride, dilation)], dy, axes=axes)\n"
        "        for a in range(kernel[0])\n"
        "        for b in range(kernel[1])\n"
        "    ]\n"
        "    return xp.reshape(xp.stack(taps), (*kernel, x.shape[3], dy.shape[3]))"
    ),
    "_times": "def _times(mask, v):  # NumPy's mask * v\n    return xp.astype(mask, v.dtype) * v",
    "_pool_blocks": (
        "def _pool_blocks(x, size):  # the windows of a stride equal to their size: (..., ho, kh, wo, kw, c)\n"
        "    (kh, kw), (*lead, h, w, c) = size, x.shape\n"
        "    return xp.reshape(x[..., : h // kh * kh, : w // kw * kw, :], (*lead, h // kh, kh, w // kw, kw, c))"
    ),
    "_pool_taps": (
        "def _pool_taps(x, size, stride):  # the pixels under each tap of the windows, an array (..., ho, wo, c) each\n"
        "    ho, wo = (x.shape[-3] - size[0]) // stride[0] + 1, (x.shape[-2] - size[1]) // stride[1] + 1\n"
        "    return [x[_tap_index(a, b, ho, wo, stride)] for a in range(size[0]) for b in range(size[1])]"
    ),
    "_max_pool2d": (
        "def _max_pool2d(x, size, stride):\n"
        "    taps = _pool_taps(x, size, stride)\n"
        "    out = taps[0]\n"
        "    for tap in taps[1:]:\n"
        "        out = xp.maximum(out, tap)\n"
        "    return out"
    ),
    "_avg_pool2d": (
        "def _avg_pool2d(x, size, stride):\n    return sum(_pool_taps(x, size, stride)) / (size[0] * size[1])"
    ),
    "_max_pool2d_grad": (
        "def _max_pool2d_grad(x, y, g, size, stride):  # each window's g shared equally by its maxima\n"
        "    taps = _pool_taps(x, size, stride)\n"
        "    share = g / sum(xp.astype(tap == y, g.dtype) for tap in taps)\n"
        "    if size == stride:  # the windows' pixels as one array, written as the images' pixels\n"
        "        at_max = _pool_blocks(x, size) == y[..., None, :, None, :]\n"
        "        part = _times(at_max, share[..., None, :, None, :])\n"
        "        (*lead, ho, kh, wo, kw, c), (h, w) = part.shape, x.shape[-3:-1]\n"
        "        part, index = xp.reshape(part, (*lead, ho * kh, wo * kw, c)), _tap_index(0, 0, ho * kh, wo * kw)\n"
        "        return part if (ho * kh, wo * kw) == (h, w) else _fold((*lead, h, w, c), g.dtype, [(index, part)])\n"
        "    at_max, (ho, wo) = [tap == y for tap in taps], y.shape[-3:-1]\n"
        "    index = [_tap_index(a, b, ho, wo, stride) for a in range(size[0]) for b in range(size[1])]\n"
        "    shape = (*share.shape[:-3], *x.shape[-3:])\n"
        "    return _fold(shape, g.dtype, [(i, _times(m, share)) for i, m in zip(index, at_max)])"
    ),
    "_max_pool2d_tangent": (
        "def _max_pool2d_tangent(x, y, t, size, stride):  # each window's mean of t over its maxima\n"
        "    at_max = [tap == y for tap in _pool_taps(x, size, stride)]\n"
        "    total = sum(_times(m, v) for m, v in zip(at_max, _pool_taps(t, size, stride)))\n"
        "    return total / sum(xp.astype(m, t.dtype) for m in at_max)"
    ),
    "_avg_pool2d_grad": (
        "def _avg_pool2d_grad(g, image, size, stride):  # each window's g spread evenly over its pixels\n"
        "    share, (ho, wo) = g / (size[0] * size[1]), g.shape[-3:-1]\n"
        "    index = [_tap_index(a, b, ho, wo, stride) for a in range(size[0]) for b in range(size[1])]\n"
        "    return _fold((*g.shape[:-3], *image, g.shape[-1]), g.dtype, [(i, share) for i in index])"
    ),
}

# PyTorch's own functions where the standard lacks one or torch has a fused kernel.
TORCH: dict[str, str | None] = {
    "_dropout_mask": (  # as NumPy's kernel, from the module's torch.Generator on the device
        "def _dropout_mask(rng, shape, rate, dtype):\n"
        "    keep = torch.rand(shape, generator=rng, dtype=dtype, device=_device) >= rate\n"
        "    return keep.to(dtype) * (1 / (1 - rate))"
    ),
    "_positive_steps": (
        "def _positive_steps(index, shape):  # the index with positive steps, and the result's axes to flip\n"
        "    index, out, flip, dim = index if isinstance(index, tuple) else (index,), [], [], 0\n"
        "    for e in index:\n"
        "        if isinstance(e, slice) and (e.step or 1) < 0:\n"
        "            r = range(*e.indices(shape[dim]))\n"
        "            e = slice(r[-1], r[0] + 1, -r.step) if r else slice(0, 0)\n"
        "            flip.append(sum(not isinstance(f, int) for f in out))\n"
        "        out.append(e)\n"
        "        dim += e is not None\n"
        "    ndim = sum(not isinstance(f, int) for f in out) + len(shape) - dim\n"
        "    return tuple(out), tuple(a - ndim for a in flip)  # counted from the end: g may broadcast"
    ),
    "_getitem": (
        "def _getitem(x, index):\n"
        "    index, flip = _positive_steps(index, x.shape)\n"
        "    return torch.flip(x[index], flip)"
    ),
    "_scatter": (
        "def _scatter(g, shape, index, dtype):\n"
        "    (index, flip), out = _positive_steps(index, shape), torch.zeros(shape, dtype=dtype, device=_device)\n"
        "    out[index] = torch.flip(g, tuple(a for a in flip if -a <= g.ndim)) if flip else g\n"
        "    return out"
    ),
    "_sigmoid": "_sigmoid = torch.sigmoid",
    "_erf": "_erf = torch.special.erf",
    "_logsumexp": (
        "def _logsumexp(x, axis=None, keepdims=False):\n"
        "    return torch.logsumexp(x, dim=tuple(range(x.ndim)) if axis is None else axis, keepdim=keepdims)"
    ),
    "_pick": "def _pick(x, labels):\n    return torch.gather(x, -1, labels[..., None])[..., 0]",
    "_scatter_add": (
        "def _scatter_add(values, ids, size, axis=0):\n"
        "    lead, trail = values.shape[:axis], values.shape[axis + ids.ndim :]\n"
        "    out = torch.zeros((*lead, size, *trail), dtype=values.dtype, device=values.device)\n"
        "    flat = torch.reshape(values, (*lead, -1, *trail))\n"
        "    return out.index_add_(axis, torch.reshape(ids % size, (-1,)), flat)"
    ),
    # torch's convolutions (channels-first: the images' NHWC arrays are taken as channels-last NCHW views)
    "_conv2d": (
        "def _conv2d(x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):\n"
        "    x, pads = _sym_pads(x, padding)\n"
        "    w = w.to(torch.promote_types(x.dtype, w.dtype)).permute(3, 2, 0, 1)\n"
        "    y = torch.nn.functional.conv2d(x.to(w.dtype).permute(0, 3, 1, 2), w, None, stride, pads, dilation)\n"
        "    return y.permute(0, 2, 3, 1)"
    ),
    "_conv2d_transpose": (
        "def _conv2d_transpose(dy, w, size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):\n"
        "    ((pt, pb), (pl, pr)), dtype = padding, torch.promote_types(dy.dtype, w.dtype)\n"
        "    images = (dy.shape[0], w.shape[2], size[0] + pt + pb, size[1] + pl + pr)  # padded\n"
        "    w, dy = w.to(dtype).permute(3, 2, 0, 1), dy.to(dtype).permute(0, 3, 1, 2)\n"
        "    dx = torch.nn.grad.conv2d_input(images, w, dy, stride, 0, dilation).permute(0, 2, 3, 1)\n"
        "    return dx[:, pt : pt + size[0], pl : pl + size[1], :]"
    ),
    "_conv2d_filters": (
        "def _conv2d_filters(x, dy, kernel, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):\n"
        "    (x, pads), dtype = _sym_pads(x, padding), torch.promote_types(x.dtype, dy.dtype)\n"
        "    filters = (dy.shape[3], x.shape[3], *kernel)\n"
        "    x, dy = x.to(dtype).permute(0, 3, 1, 2), dy.to(dtype).permute(0, 3, 1, 2)\n"
        "    return torch.nn.grad.conv2d_weight(x, filters, dy, stride, pads, dilation).permute(2, 3, 1, 0)"
    ),
}

# JAX's own functions: its arrays are immutable (``.at[...]`` updates), and jax.nn / jax.scipy hold the rest.
JAX: dict[str, str | None] = {
    "_sigmoid": "_sigmoid = jax.nn.sigmoid",
    "_erf": "_erf = jax.scipy.special.erf",
    "_logsumexp": (
        "def _logsumexp(x, axis=None, keepdims=False):\n    return jax.nn.logsumexp(x, axis=axis, keepdims=keepdims)"
    ),
    "_scatter": "def _scatter(g, shape, index, dtype):\n    return xp.zeros(shape, dtype=dtype).at[index].set(g)",
    "_scatter_add": (
        "def _scatter_add(values, ids, size, axis=0):\n"
        "    lead, trail = values.shape[:axis], values.shape[axis + ids.ndim :]\n"
        "    flat = xp.reshape(values, (*lead, -1, *trail))\n"
        "    rows = xp.reshape(ids % size, (-1,))\n"
        "    return xp.zeros((*lead, size, *trail), dtype=values.dtype).at[(slice(None),) * axis + (rows,)].add(flat)"
    ),
    "_add_at": "def _add_at(out, index, part):\n    return out.at[index].add(part)",
    # NaN where v is inf or nan, as NumPy's product (XLA would make mask * v a select)
    "_times": "def _times(mask, v):\n    return xp.where(mask, v, v * 0)",
    # XLA's convolution (full float32 precision, as NumPy's), its transposes derived by JAX
    "_conv2d": (
        "def _conv2d(x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):\n"
        "    x, w = (xp.astype(a, xp.result_type(x, w)) for a in (x, w))\n"
        "    return jax.lax.conv_general_dilated(\n"
        "        x, w, stride, padding, rhs_dilation=dilation, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),\n"
        "        precision=jax.lax.Precision.HIGHEST,\n"
        "    )"
    ),
    "_conv2d_transpose": (
        "def _conv2d_transpose(dy, w, size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):\n"
        "    images = jax.ShapeDtypeStruct((dy.shape[0], *size, w.shape[2]), xp.result_type(dy, w))\n"
        "    conv = jax.linear_transpose(lambda x: _conv2d(x, w, stride, padding, dilation), images)\n"
        "    return conv(xp.astype(dy, images.dtype))[0]"
    ),
    "_conv2d_filters": (
        "def _conv2d_filters(x, dy, kernel, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):\n"
        "    filters = jax.ShapeDtypeStruct((*kernel, x.shape[3], dy.shape[3]), xp.result_type(x, dy))\n"
        "    conv = jax.linear_transpose(lambda w: _conv2d(x, w, stride, padding, dilation), filters)\n"
        "    return conv(xp.astype(dy, filters.dtype))[0]"
    ),
}


@dataclass(frozen=True)
class Backend:
    """How generated code runs on one array library.

    ``name`` is how errors and docstrings name it; ``imports`` the module's import lines (binding ``xp``);
    ``device`` the source of the module-level ``_device`` (``None``: the library's default device);
    ``helpers`` each helper's definition (``None``: the backend has none); ``wrap`` the source of the callable that
    wraps the generated function (``"jax.jit"``), if any; ``x64`` a line that lets the library hold 64-bit arrays;
    ``generator`` the source of a random generator seeded by ``{seed}`` that a module keeps for each random node
    (a dropout mask), so that each call draws anew (``None``: the library's compiled functions keep no state, and a
    random node is refused).
    """

    name: str
    imports: tuple[str, ...]
    device: str
    helpers: Mapping[str, str | None] = field(default_factory=dict)
    wrap: str | None = None
    x64: str | None = None
    library: str = ""  # the library's name in docstrings ("PyTorch")
    generator: str | None = None

    def helper(self, name: str) -> str | None:
        """The source defining helper ``name`` on this backend, or ``None``."""
        return self.helpers.get(name, ARRAY_API.get(name))


_HELPER = re.compile(r"\b(" + "|".join(map(re.escape, sorted(ARRAY_API, key=len, reverse=True))) + r")\b")


def helpers_used(code: Sequence[str], backend: Backend) -> list[str]:
    """The helpers that ``code`` names, and those the helpers name in turn (in a defining order)."""
    used: list[str] = []
    todo = list(code)
    while todo:
        for name in _HELPER.findall(todo.pop()):
            if name not in used:
                used.append(name)
                todo.append(backend.helper(name) or "")
    return sorted(used, key=lambda n: list(ARRAY_API).index(n))


def _needs(module: str, backend: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise BackendError(
            f"backend {backend!r} needs the {module!r} package, which is not installed: pip install 'symdiff[{extra}]'"
        )


def resolve(backend: Any = "numpy", device: Any = None, jit: bool | None = None) -> Backend | None:
    """The :class:`Backend` that ``backend`` names (``None`` for NumPy's own path).

    ``backend`` is ``"numpy"``, ``"torch"``, ``"jax"``, ``"cupy"`` or an Array API namespace (a module such as
    ``array_api_strict``, or one from ``array_api_compat``); ``device`` a device of that library (``"cpu"``,
    ``"cuda"``, ``"cuda:1"``), passed through; ``jit`` wraps the function in the library's compiler (JAX: on by
    default; torch: ``torch.compile`` when true).
    """
    if isinstance(backend, str):
        if backend == "numba":  # compiled functions' and steps' backend (symdiff.fused), not an array library's
            raise BackendError(
                "backend 'numba' compiles functions and training steps (sd.compile, sd.compile_step, sd.fit); "
                "sd.codegen writes NumPy or Array API modules only: use backend='numpy' here, or read the fused "
                "module from sd.compile(..., backend='numba').source"
            )
        if backend == "numpy":
            if device not in (None, "cpu"):
                raise BackendError(f"backend 'numpy' runs on the CPU only, got device={device!r}")
            return None
        if backend == "torch":
            _needs("torch", "torch", "torch")
            _needs("array_api_compat", "torch", "torch")
            return Backend(
                "torch",
                ("import torch", "import array_api_compat.torch as xp"),
                f"torch.device({device or 'cpu'!r})",
                TORCH,
                wrap="torch.compile" if jit else None,
                library="PyTorch",
                generator="torch.Generator(device=_device).manual_seed({seed})",
            )
        if backend == "jax":
            _needs("jax", "jax", "jax")
            platform = {"cuda": "gpu"}.get(str(device).split(":")[0], str(device).split(":")[0])
            index = int(str(device).split(":")[1]) if device is not None and ":" in str(device) else 0
            return Backend(
                "jax",
                ("import jax", "import jax.numpy as xp", "import jax.scipy.special"),
                "None" if device is None else f"jax.devices({platform!r})[{index}]",
                JAX,
                wrap=None if jit is False else "jax.jit",
                x64='jax.config.update("jax_enable_x64", True)  # float64 and int64 arrays stay 64-bit',
                library="JAX",
            )
        if backend == "cupy":
            _needs("cupy", "cupy", "cupy")
            _needs("array_api_compat", "cupy", "cupy")
            index = int(str(device).split(":")[1]) if device is not None and ":" in str(device) else 0
            return Backend(
                "cupy",
                ("import cupy", "import array_api_compat.cupy as xp"),
                f"cupy.cuda.Device({index})",
                library="CuPy",
            )
        raise BackendError(
            f"unknown backend {backend!r}; use one of {', '.join(map(repr, NAMES))} or an Array API namespace "
            "(a module such as array_api_strict)"
        )
    module = getattr(backend, "__name__", None)
    if not hasattr(backend, "__array_api_version__") or not isinstance(module, str):
        raise BackendError(
            f"backend {backend!r} is neither one of {', '.join(map(repr, NAMES))} nor an Array API namespace "
            "(a module with __array_api_version__)"
        )
    if module == "numpy":  # NumPy's own namespace: the fast path
        return resolve("numpy", device, jit)
    return Backend(module, (f"import {module} as xp",), "None" if device is None else repr(device), library=module)


def check_supported(roots: Sequence[Expr], backend: Backend) -> None:
    """Refuse (``UnsupportedError`` naming the op and the backend) a graph with an op that has no Array API form,
    or whose form needs a helper the backend cannot define."""
    placeholders: dict[int, list[Fmt]] = {}
    for node in topo_order(roots):
        opdef = node.opdef
        why = None
        if opdef.xp is None:
            why = "has no Array API form yet"
        elif opdef.random and backend.generator is None:
            why = f"draws anew on each call from a generator kept by its module, and {backend.name} modules keep none"
        elif not node.is_symbol:
            n = len(node.args) + opdef.random  # a random node's generator comes first
            args = placeholders.setdefault(n, [Fmt(f"_a{i}", ATOM) for i in range(n)])
            missing = [h for h in _HELPER.findall(opdef.xp(node, args).text) if backend.helper(h) is None]
            why = f"needs {missing[0]}(), which {backend.name} has no function for" if missing else None
        if why is not None:
            raise UnsupportedError(
                f"op {node.op!r} {why}, so backend {backend.name!r} cannot run this graph; "
                "use backend='numpy' (the default), which runs every op"
            )


def has_64bit(roots: Sequence[Expr]) -> bool:
    """Whether the graph holds 64-bit arrays (JAX then needs its x64 mode)."""
    return any(n.dtype.itemsize == 8 for n in topo_order(roots))


def namespace_of(fn: Any) -> tuple[Any, Any]:
    """The ``xp`` namespace and ``_device`` of a generated module, from its function (jit-wrapped or not)."""
    inner = getattr(fn, "__wrapped__", fn)
    while hasattr(inner, "__wrapped__") and not hasattr(inner, "__globals__"):
        inner = inner.__wrapped__
    module = getattr(inner, "__globals__", None) or importlib.import_module(inner.__module__).__dict__
    return module["xp"], module["_device"]
