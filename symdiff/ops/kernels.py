"""NumPy helper functions that generated code calls for ops without a one-call NumPy form.

Their source is copied verbatim into every generated module that uses them, so generated code needs
only NumPy. Each helper is numerically stable where a naive form is not.
"""

from __future__ import annotations

import numpy as np


def _softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    shifted = x - np.where(np.isfinite(m), m, 0)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _onehot(labels, depth, dtype):
    return (labels[..., None] == np.arange(depth)).astype(dtype)


def _rows(n, _cache={}):  # noqa: B006 - _cache: one read-only np.arange(n) per batch length, made once
    rows = _cache.get(n)
    if rows is None:
        if len(_cache) >= 16:
            _cache.clear()
        rows = _cache[n] = np.arange(n)
        rows.flags.writeable = False
    return rows


def _pick(x, labels):
    if labels.ndim == 1 and x.ndim == 2:
        return x[_rows(labels.shape[0]), labels]
    return np.take_along_axis(x, labels[..., None], axis=-1)[..., 0]


def _scatter(g, like, index):
    out = np.zeros(like.shape, dtype=np.result_type(g))  # g may be a Python float (a float64 constant)
    out[index] = g
    return out


def _erf(x):
    f = _erf.__dict__.get("f")
    if f is None:  # SciPy's ufunc when SciPy is installed, else math.erf element by element (same values, slower)
        try:
            from scipy.special import erf as f
        except ImportError:
            import math

            f = np.frompyfunc(math.erf, 1, 1)
        _erf.f = f
    x = np.asarray(x)
    return np.asarray(f(x), dtype=np.promote_types(x.dtype, np.float16))[()]  # NumPy's float-function dtype


def _cofactor(a):
    # det(A) A^{-T} without an inverse, so that it holds for singular matrices too: with A = U diag(s) Vh,
    # cof(A) = det(U) det(Vh) U diag(prod of the other singular values) Vh
    a = np.asarray(a)
    u, s, vh = np.linalg.svd(a)
    ones = np.ones(s.shape[:-1] + (1,), dtype=s.dtype)
    before = np.cumprod(np.concatenate([ones, s[..., :-1]], axis=-1), axis=-1)
    after = np.cumprod(np.concatenate([ones, s[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    sign = np.linalg.det(u) * np.linalg.det(vh)
    return (sign[..., None, None] * (u * (before * after)[..., None, :]) @ vh).astype(a.dtype, copy=False)


def _sum_leading(x, k, out=None, _ones={}):  # noqa: B006 - _ones: a vector of ones per length and dtype, made once
    # the sum over the first k axes of x as one matrix-vector product with ones (BLAS): NumPy's reduction of many
    # short rows (a bias gradient: (N, C) or a convolution's (N, H, W, C) summed to (C,)) is 1.2-3x slower
    if k == 1 and x.ndim == 2:
        rows, into = x, out
    elif x.size == 0:
        return np.add.reduce(x, axis=tuple(range(k)), out=out)
    else:
        rows = x.reshape(-1, x[(0,) * k].size)  # (the summed elements, the kept ones)
        into = None if out is None else out.reshape(-1)
    key = (rows.shape[0], x.dtype.char)
    ones = _ones.get(key)
    if ones is None:
        if len(_ones) >= 16:
            _ones.clear()
        ones = _ones[key] = np.ones(rows.shape[0], dtype=x.dtype)
    total = np.matmul(ones, rows, out=into)
    return total.reshape(x.shape[k:]) if out is None else out


KERNELS = {
    f.__name__: f
    for f in (
        _softmax,
        _log_softmax,
        _logsumexp,
        _sigmoid,
        _onehot,
        _rows,
        _pick,
        _scatter,
        _erf,
        _cofactor,
        _sum_leading,
    )
}


def _onehot_sub(x, labels, value, out=None):
    if out is None:
        out = np.array(x, copy=True)
    elif out is not x:
        np.copyto(out, x)
    if labels.ndim == 1 and out.ndim == 2:
        out[_rows(labels.shape[0]), labels] -= value
    else:
        idx = labels[..., None]
        np.put_along_axis(out, idx, np.take_along_axis(out, idx, axis=-1) - value, axis=-1)
    return out


KERNELS["_onehot_sub"] = _onehot_sub
