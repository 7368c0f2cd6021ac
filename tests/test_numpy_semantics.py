"""Differential tests: compiled symdiff expressions against the same computation done directly in NumPy.

Each case builds an expression over named symbols, compiles it with ``sd.compile`` (one Expr in, one
array out), runs it on random data and compares with NumPy. The compiled output must also have the
dtype the expression advertises statically (and NumPy's dtype for the same computation).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapecases import INDEX_CASES as SHARED_INDEX_CASES
from shapecases import TENSORDOT_CASES

import symdiff as sd

RNG_SEED = 1234


def run(expr, **arrays):
    """Compile ``expr`` and call it; check the runtime dtype and shape against the static ones."""
    f = sd.compile(expr)
    out = f(**arrays)
    assert isinstance(out, np.ndarray) or np.isscalar(out), type(out)
    out = np.asarray(out)
    assert out.dtype == expr.dtype, f"static dtype {expr.dtype} but the compiled code gave {out.dtype}"
    assert len(out.shape) == len(expr.shape)
    for d_static, d_run in zip(expr.shape, out.shape):
        assert d_static is None or d_static == d_run, (expr.shape, out.shape)
    return out


def close(actual, expected, rtol=1e-12, atol=1e-12):
    expected = np.asarray(expected)
    assert np.shape(actual) == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def rand(shape, low=-2.0, high=2.0, seed=RNG_SEED, dtype="float64"):
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _logsumexp(x, axis=None, keepdims=False):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


# -- unary element-wise -------------------------------------------------------------------------
UNARY = [
    ("exp", sd.exp, np.exp, (-2, 2)),
    ("log", sd.log, np.log, (0.1, 3)),
    ("sqrt", sd.sqrt, np.sqrt, (0.0, 3)),
    ("tanh", sd.tanh, np.tanh, (-3, 3)),
    ("sin", sd.sin, np.sin, (-4, 4)),
    ("cos", sd.cos, np.cos, (-4, 4)),
    ("abs", sd.abs, np.abs, (-2, 2)),
    ("absolute", sd.absolute, np.absolute, (-2, 2)),
    ("square", sd.square, np.square, (-2, 2)),
    ("negative", sd.negative, np.negative, (-2, 2)),
    ("sign", sd.sign, np.sign, (-2, 2)),
    ("neg-op", lambda x: -x, lambda x: -x, (-2, 2)),
    ("abs-op", lambda x: abs(x), lambda x: abs(x), (-2, 2)),
    ("pow-op", lambda x: x**3, lambda x: x**3, (-2, 2)),
    ("rpow-op", lambda x: 2.0**x, lambda x: 2.0**x, (-2, 2)),
    ("relu", sd.relu, lambda x: np.maximum(x, 0), (-2, 2)),
    ("sigmoid", sd.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-6, 6)),
    ("softplus", sd.softplus, lambda x: np.log1p(np.exp(x)), (-6, 6)),
    ("log_sigmoid", sd.log_sigmoid, lambda x: np.log(1 / (1 + np.exp(-x))), (-6, 6)),
    ("astype-f32", lambda x: sd.astype(x, "float32"), lambda x: x.astype("float32"), (-2, 2)),
    ("astype-int", lambda x: sd.astype(x, "int64"), lambda x: x.astype("int64"), (-5, 5)),
    ("method-astype", lambda x: x.astype("float32"), lambda x: x.astype("float32"), (-2, 2)),
    ("relu-builder", lambda x: sd.maximum(x, 0), lambda x: np.maximum(x, 0), (-2, 2)),
]


@pytest.mark.parametrize("name,sd_fn,np_fn,dom", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("shape", [(3, 4), (), (None, 5)])
def test_unary_matches_numpy(name, sd_fn, np_fn, dom, shape):
    run_shape = tuple(7 if d is None else d for d in shape)
    x = sd.Input("x", shape=shape)
    X = rand(run_shape, *dom)
    expected = np_fn(X)
    out = run(sd_fn(x), x=X)
    assert out.dtype == np.asarray(expected).dtype
    close(out, expected, rtol=1e-6 if name == "astype-f32" or name == "method-astype" else 1e-12)


@pytest.mark.parametrize("name,sd_fn,np_fn,dom", UNARY, ids=[u[0] for u in UNARY])
def test_unary_float32_end_to_end(name, sd_fn, np_fn, dom):
    x = sd.Input("x", shape=(4, 3), dtype="float32")
    X = rand((4, 3), *dom, dtype="float32")
    expected = np_fn(X)
    out = run(sd_fn(x), x=X)
    assert out.dtype == np.asarray(expected).dtype
    close(out, expected, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["int64", "int32", "int16", "int8", "bool"])
@pytest.mark.parametrize("fn", ["exp", "tanh", "sqrt", "sin"])
def test_unary_float_functions_on_integer_inputs(dtype, fn):
    x = sd.Input("x", shape=(5,), dtype=dtype)
    X = np.arange(5).astype(dtype)
    expected = getattr(np, fn)(X)
    out = run(getattr(sd, fn)(x), x=X)  # run() also checks compiled dtype == static dtype
    assert out.dtype == expected.dtype
    close(out, expected, rtol=1e-3)


# -- binary element-wise and broadcasting -------------------------------------------------------
BINARY = [
    ("add", sd.add, np.add),
    ("subtract", sd.subtract, np.subtract),
    ("multiply", sd.multiply, np.multiply),
    ("divide", sd.divide, np.divide),
    ("power", sd.power, np.power),
    ("maximum", sd.maximum, np.maximum),
    ("minimum", sd.minimum, np.minimum),
    ("+", lambda a, b: a + b, lambda a, b: a + b),
    ("-", lambda a, b: a - b, lambda a, b: a - b),
    ("*", lambda a, b: a * b, lambda a, b: a * b),
    ("/", lambda a, b: a / b, lambda a, b: a / b),
    ("**", lambda a, b: a**b, lambda a, b: a**b),
]

BROADCAST_SHAPES = [
    ((32, 10), (10,)),
    ((64, 3, 32, 10), (32, 10)),
    ((5, 1), (1, 4)),
    ((3, 4), ()),
    ((), (3, 4)),
    ((2, 1, 3), (4, 1)),
    ((4, 3), (4, 3)),
]


@pytest.mark.parametrize("name,sd_fn,np_fn", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("sa,sb", BROADCAST_SHAPES)
def test_binary_broadcasting_matches_numpy(name, sd_fn, np_fn, sa, sb):
    a, b = sd.Input("a", shape=sa), sd.Param("b", shape=sb)
    A, B = rand(sa, 0.5, 2, seed=1), rand(sb, 0.5, 2, seed=2)
    if name in ("subtract", "-", "maximum", "minimum"):
        B = B - 1.25
    close(run(sd_fn(a, b), a=A, b=B), np_fn(A, B))


@pytest.mark.parametrize("name,sd_fn,np_fn", BINARY, ids=[b[0] for b in BINARY])
def test_binary_with_open_batch_axis(name, sd_fn, np_fn):
    x = sd.Input("x", shape=(None, 10))
    b = sd.Param("b", shape=(10,))
    for n in (1, 6):
        X, B = rand((n, 10), 0.5, 2, seed=n), rand((10,), 0.5, 2, seed=9)
        close(run(sd_fn(x, b), x=X, b=B), np_fn(X, B))
        close(run(sd_fn(b, x), x=X, b=B), np_fn(B, X))


@pytest.mark.parametrize("name,sd_fn,np_fn", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("const", [2, 0.5, -1.5])
def test_binary_with_python_scalars(name, sd_fn, np_fn, const):
    if name in ("power", "**"):
        const = abs(const)  # a negative base to a fractional power is NaN in NumPy too
    x = sd.Input("x", shape=(3, 2))
    X = rand((3, 2), 0.5, 2)
    close(run(sd_fn(x, const), x=X), np_fn(X, const))
    close(run(sd_fn(const, x), x=X), np_fn(const, X))


@pytest.mark.parametrize("name,sd_fn,np_fn", BINARY, ids=[b[0] for b in BINARY])
def test_binary_with_numpy_array_constants(name, sd_fn, np_fn):
    x = sd.Input("x", shape=(3, 4))
    X = rand((3, 4), 0.5, 2)
    C = rand((4,), 0.5, 2, seed=7)
    close(run(sd_fn(x, C), x=X), np_fn(X, C))
    close(run(sd_fn(C, x), x=X), np_fn(C, X))


@pytest.mark.parametrize("name,sd_fn,np_fn", BINARY, ids=[b[0] for b in BINARY])
def test_binary_float32_stays_float32(name, sd_fn, np_fn):
    a = sd.Param("a", shape=(3, 4), dtype="float32")
    b = sd.Input("b", shape=(4,), dtype="float32")
    A, B = rand((3, 4), 0.5, 2, dtype="float32"), rand((4,), 0.5, 2, seed=3, dtype="float32")
    for e, kwargs, expected in (
        (sd_fn(a, b), dict(a=A, b=B), np_fn(A, B)),
        (sd_fn(a, 2.0), dict(a=A), np_fn(A, 2.0)),
        (sd_fn(3, b), dict(b=B), np_fn(3, B)),
    ):
        assert expected.dtype == np.float32
        out = run(e, **kwargs)
        assert out.dtype == np.float32
        close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "da,db", [("float32", "float64"), ("int64", "float32"), ("int64", "int64"), ("int32", "int64"), ("bool", "int64")]
)
@pytest.mark.parametrize("op", ["add", "multiply", "divide", "maximum"])
def test_mixed_dtype_arithmetic(da, db, op):
    a, b = sd.Input("a", shape=(4,), dtype=da), sd.Input("b", shape=(4,), dtype=db)
    A, B = np.array([1, 2, 3, 4]).astype(da), np.array([3, 1, 4, 1]).astype(db)
    expected = getattr(np, op)(A, B)
    out = run(getattr(sd, op)(a, b), a=A, b=B)
    assert out.dtype == expected.dtype
    close(out, expected, rtol=1e-6)


# -- comparisons and where ----------------------------------------------------------------------
COMPARISONS = [
    ("greater", sd.greater, np.greater),
    ("greater_equal", sd.greater_equal, np.greater_equal),
    ("less", sd.less, np.less),
    ("less_equal", sd.less_equal, np.less_equal),
    ("equal", sd.equal, np.equal),
    (">", lambda a, b: a > b, lambda a, b: a > b),
    (">=", lambda a, b: a >= b, lambda a, b: a >= b),
    ("<", lambda a, b: a < b, lambda a, b: a < b),
    ("<=", lambda a, b: a <= b, lambda a, b: a <= b),
]


@pytest.mark.parametrize("name,sd_fn,np_fn", COMPARISONS, ids=[c[0] for c in COMPARISONS])
def test_comparisons_match_numpy(name, sd_fn, np_fn):
    a, b = sd.Input("a", shape=(4, 5)), sd.Input("b", shape=(5,))
    A = np.random.default_rng(0).integers(-2, 3, size=(4, 5)).astype(float)
    B = np.random.default_rng(1).integers(-2, 3, size=(5,)).astype(float)
    out = run(sd_fn(a, b), a=A, b=B)
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, np_fn(A, B))
    np.testing.assert_array_equal(run(sd_fn(a, 0.0), a=A), np_fn(A, 0.0))
    np.testing.assert_array_equal(run(sd_fn(1, b), b=B), np_fn(1, B))


def test_where_matches_numpy():
    x = sd.Input("x", shape=(4, 5))
    y = sd.Param("y", shape=(5,))
    X, Y = rand((4, 5)), rand((5,), seed=3)
    close(run(sd.where(x > 0, x, y * 2), x=X, y=Y), np.where(X > 0, X, Y * 2))
    close(run(sd.where(x > y, 1.0, 0.0), x=X, y=Y), np.where(X > Y, 1.0, 0.0))
    close(run(sd.where(y < 0, x, -1), x=X, y=Y), np.where(Y < 0, X, -1))
    c = sd.Input("c", shape=(4, 1), dtype="bool")
    C = np.array([[True], [False], [True], [False]])
    close(run(sd.where(c, x, y), x=X, y=Y, c=C), np.where(C, X, Y))


def test_boolean_mask_arithmetic():
    x = sd.Input("x", shape=(6,))
    X = rand((6,))
    close(run(x * (x > 0), x=X), X * (X > 0))
    close(run(sd.sum(x > 0), x=X), np.sum(X > 0))


# -- products -----------------------------------------------------------------------------------
MATMUL_CASES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((4,), (2, 4, 5)),
    ((5, 1, 3, 4), (6, 4, 2)),
    ((1, 3, 4), (7, 4, 2)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_CASES)
def test_matmul_matches_numpy(sa, sb):
    a, b = sd.Input("a", shape=sa), sd.Param("b", shape=sb)
    A, B = rand(sa, seed=1), rand(sb, seed=2)
    close(run(a @ b, a=A, b=B), A @ B)
    close(run(sd.matmul(a, b), a=A, b=B), np.matmul(A, B))


def test_matmul_with_batch_axis_and_constant_matrix():
    x = sd.Input("x", shape=(None, 4))
    M = rand((4, 3), seed=5)
    X = rand((9, 4))
    close(run(x @ M, x=X), X @ M)
    close(run(M.T @ x.T, x=X), M.T @ X.T)


DOT_CASES = [
    ((2, 3, 4, 5), (5,)),
    ((2, 3, 4, 5), (5, 6)),
    ((2, 3, 4), (5, 4, 6)),
    ((3, 4), (4, 5)),
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((), (3, 4)),
    ((3, 4), ()),
    ((4,), (2, 4, 3)),
]


@pytest.mark.parametrize("sa,sb", DOT_CASES)
def test_dot_matches_numpy(sa, sb):
    a, b = sd.Input("a", shape=sa), sd.Param("b", shape=sb)
    A, B = rand(sa, seed=1), rand(sb, seed=2)
    close(run(sd.dot(a, b), a=A, b=B), np.dot(A, B))
    close(run(a.dot(b), a=A, b=B), A.dot(B))


@pytest.mark.parametrize("sa,sb,axes", TENSORDOT_CASES)
def test_tensordot_matches_numpy(sa, sb, axes):
    a, b = sd.Input("a", shape=sa), sd.Param("b", shape=sb)
    A, B = rand(sa, seed=1), rand(sb, seed=2)
    close(run(sd.tensordot(a, b, axes=axes), a=A, b=B), np.tensordot(A, B, axes=axes))


def test_tensordot_default_axes():
    a, b = sd.Input("a", shape=(3, 4, 5)), sd.Param("b", shape=(4, 5, 2))
    A, B = rand((3, 4, 5), seed=1), rand((4, 5, 2), seed=2)
    close(run(sd.tensordot(a, b), a=A, b=B), np.tensordot(A, B))


# -- shape manipulation -------------------------------------------------------------------------
INDEX_CASES = [*SHARED_INDEX_CASES, np.s_[..., ::-1], np.s_[:, 4:1:-2, 1::3]]


@pytest.mark.parametrize("index", INDEX_CASES, ids=repr)
def test_getitem_matches_numpy(index):
    x = sd.Input("x", shape=(4, 5, 6))
    X = rand((4, 5, 6))
    close(run(x[index], x=X), X[index])


@pytest.mark.parametrize(
    "index", [np.s_[1:], np.s_[:, 1:-1], np.s_[::-1], np.s_[-1], np.s_[0], np.s_[:, None, 2], np.s_[-2:, ::2]], ids=repr
)
def test_getitem_on_open_batch_axis(index):
    x = sd.Input("x", shape=(None, 5))
    for n in (3, 8):
        X = rand((n, 5), seed=n)
        close(run(x[index], x=X), X[index])


def test_getitem_of_expression():
    x, W = sd.Input("x", shape=(None, 4)), sd.Param("W", shape=(4, 6))
    X, Wv = rand((5, 4)), rand((4, 6), seed=2)
    close(run((x @ W)[:, 1::2] * 2, x=X, W=Wv), (X @ Wv)[:, 1::2] * 2)


@pytest.mark.parametrize(
    "shape,new",
    [
        ((6, 4), (-1, 4)),
        ((6, 4), (3, -1)),
        ((6, 4), (-1,)),
        ((6, 4), (2, 3, 4)),
        ((2, 3, 4), (4, -1, 2)),
        ((6,), (1, 6, 1)),
        ((), (1, 1)),
        ((1, 1), ()),
    ],
)
def test_reshape_matches_numpy(shape, new):
    x = sd.Input("x", shape=shape)
    X = rand(shape)
    close(run(x.reshape(new), x=X), X.reshape(new))
    close(run(sd.reshape(x, new), x=X), np.reshape(X, new))


def test_reshape_with_open_batch_axis():
    x = sd.Input("x", shape=(None, 2, 3))
    for n in (1, 5):
        X = rand((n, 2, 3), seed=n)
        close(run(x.reshape(-1, 6), x=X), X.reshape(-1, 6))
        close(run(x.reshape(-1), x=X), X.reshape(-1))
        close(run(sd.reshape(x, (-1, 3)), x=X), X.reshape(-1, 3))


@pytest.mark.parametrize(
    "shape,axes",
    [((2, 3, 4), (1, 0, 2)), ((2, 3, 4), (2, 0, 1)), ((2, 3, 4), (-1, 0, 1)), ((2, 3, 4), None), ((2, 3), None)],
)
def test_transpose_matches_numpy(shape, axes):
    x = sd.Input("x", shape=shape)
    X = rand(shape)
    close(run(sd.transpose(x, axes), x=X), np.transpose(X, axes))
    close(run(x.transpose(axes), x=X), X.transpose(axes))


def test_T_matches_numpy():
    x = sd.Input("x", shape=(2, 3, 4))
    X = rand((2, 3, 4))
    close(run(x.T, x=X), X.T)
    close(run(x.T.T + 0, x=X), X)


@pytest.mark.parametrize("a,b", [(0, 2), (-1, -2), (1, -1), (0, 0)])
def test_swapaxes_matches_numpy(a, b):
    x = sd.Input("x", shape=(2, 3, 4))
    X = rand((2, 3, 4))
    close(run(sd.swapaxes(x, a, b), x=X), np.swapaxes(X, a, b))


@pytest.mark.parametrize("axis", [0, 2, -1, (0, 2), (-1, 0), (1, 3)])
def test_expand_dims_matches_numpy(axis):
    x = sd.Input("x", shape=(2, 3))
    X = rand((2, 3))
    close(run(sd.expand_dims(x, axis), x=X), np.expand_dims(X, axis))


@pytest.mark.parametrize("axis", [0, -1, (0, 2), 2])
def test_squeeze_matches_numpy(axis):
    x = sd.Input("x", shape=(1, 3, 1))
    X = rand((1, 3, 1))
    close(run(sd.squeeze(x, axis), x=X), np.squeeze(X, axis))


@pytest.mark.parametrize(
    "shapes,axis",
    [([(2, 3), (4, 3)], 0), ([(2, 3), (2, 5)], 1), ([(2, 3), (2, 1), (2, 2)], -1), ([(3,), (4,)], 0)],
)
def test_concatenate_matches_numpy(shapes, axis):
    xs = [sd.Input(f"x{i}", shape=s) for i, s in enumerate(shapes)]
    Xs = [rand(s, seed=i) for i, s in enumerate(shapes)]
    close(run(sd.concatenate(xs, axis=axis), **{f"x{i}": X for i, X in enumerate(Xs)}), np.concatenate(Xs, axis=axis))


def test_concatenate_along_open_batch_axis():
    a, b = sd.Input("a", shape=(None, 3)), sd.Param("b", shape=(2, 3))
    A, B = rand((4, 3)), rand((2, 3), seed=2)
    close(run(sd.concatenate([a, b], axis=0), a=A, b=B), np.concatenate([A, B], axis=0))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack_matches_numpy(axis):
    xs = [sd.Input(f"x{i}", shape=(2, 3)) for i in range(3)]
    Xs = [rand((2, 3), seed=i) for i in range(3)]
    close(run(sd.stack(xs, axis=axis), **{f"x{i}": X for i, X in enumerate(Xs)}), np.stack(Xs, axis=axis))


def test_broadcast_to_matches_numpy():
    x = sd.Input("x", shape=(3, 1))
    X = rand((3, 1))
    close(run(sd.broadcast_to(x, (2, 3, 4)), x=X), np.broadcast_to(X, (2, 3, 4)))


# -- reductions ---------------------------------------------------------------------------------
REDUCE_AXES = [None, 0, 1, 2, -1, (0, 2), (2, 0), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("name", ["sum", "mean", "max", "amax"])
@pytest.mark.parametrize("axis", REDUCE_AXES, ids=repr)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_numpy(name, axis, keepdims):
    x = sd.Input("x", shape=(2, 3, 4))
    X = rand((2, 3, 4))
    expected = getattr(np, name)(X, axis=axis, keepdims=keepdims)
    close(run(getattr(sd, name)(x, axis=axis, keepdims=keepdims), x=X), expected)
    if name != "amax":
        close(run(getattr(x, name)(axis=axis, keepdims=keepdims), x=X), expected)


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)], ids=repr)
def test_reductions_over_open_batch_axis(name, axis):
    x = sd.Input("x", shape=(None, 5))
    for n in (1, 4):
        X = rand((n, 5), seed=n)
        close(run(getattr(sd, name)(x, axis=axis), x=X), getattr(np, name)(X, axis=axis))


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_integer_reductions(dtype, name):
    x = sd.Input("x", shape=(3, 4), dtype=dtype)
    X = np.random.default_rng(0).integers(0, 5, size=(3, 4)).astype(dtype)
    expected = getattr(np, name)(X, axis=0)
    out = run(getattr(sd, name)(x, axis=0), x=X)
    assert out.dtype == expected.dtype
    close(out, expected)


# -- softmax family -----------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_softmax_and_log_softmax_match_numpy(axis):
    x = sd.Input("x", shape=(4, 5))
    X = rand((4, 5), -3, 3)
    close(run(sd.softmax(x, axis=axis), x=X), _softmax(X, axis))
    close(run(sd.log_softmax(x, axis=axis), x=X), np.log(_softmax(X, axis)))


def test_softmax_default_axis_is_last():
    x = sd.Input("x", shape=(3, 4, 5))
    X = rand((3, 4, 5), -3, 3)
    close(run(sd.softmax(x), x=X), _softmax(X, -1))
    close(run(sd.log_softmax(x), x=X), np.log(_softmax(X, -1)))


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)], ids=repr)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_matches_numpy(axis, keepdims):
    x = sd.Input("x", shape=(4, 5))
    X = rand((4, 5), -3, 3)
    close(run(sd.logsumexp(x, axis=axis, keepdims=keepdims), x=X), _logsumexp(X, axis=axis, keepdims=keepdims))


def test_logsumexp_default_reduces_all_axes_like_scipy():
    x = sd.Input("x", shape=(3, 4))
    X = rand((3, 4))
    e = sd.logsumexp(x)
    assert e.shape == ()
    close(run(e, x=X), np.log(np.exp(X).sum()))


def test_onehot_and_pick_match_numpy():
    y = sd.Input("y", shape=(None,), dtype="int64")
    z = sd.Input("z", shape=(None, 4))
    Y = np.array([0, 3, 1, 1, 2])
    Z = rand((5, 4))
    close(run(sd.onehot(y, 4), y=Y), np.eye(4)[Y])
    close(run(sd.pick(z, y), y=Y, z=Z), Z[np.arange(5), Y])


# -- losses -------------------------------------------------------------------------------------
def test_losses_match_numpy():
    z = sd.Input("z", shape=(None, 4))
    t = sd.Input("t", shape=(None, 4))
    y = sd.Input("y", shape=(None,), dtype="int64")
    Z, T = rand((6, 4), -3, 3), rand((6, 4), 0, 1, seed=5)
    Y = np.array([0, 1, 2, 3, 3, 1])
    close(run(sd.mse(z, t), z=Z, t=T), np.mean((Z - T) ** 2))
    s = 1 / (1 + np.exp(-Z))
    close(run(sd.sigmoid_cross_entropy(z, t), z=Z, t=T), np.mean(-T * np.log(s) - (1 - T) * np.log(1 - s)))
    logp = np.log(_softmax(Z))
    close(run(sd.softmax_cross_entropy(z, y), z=Z, y=Y), -np.mean(logp[np.arange(6), Y]))
    close(run(sd.softmax_cross_entropy(z, t), z=Z, t=T), np.mean(-np.sum(T * logp, axis=-1)))


# -- numerical stability ------------------------------------------------------------------------
LARGE = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, 999.0]])


def _no_warnings_run(expr, **arrays):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            out = run(expr, **arrays)
    assert np.all(np.isfinite(out)), out
    return out


def test_softmax_stable_for_large_logits():
    x = sd.Input("x", shape=(3, 3))
    out = _no_warnings_run(sd.softmax(x), x=LARGE)
    e = np.exp(-1.0)
    close(out, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [1 / (2 + e), 1 / (2 + e), e / (2 + e)]], rtol=1e-12, atol=1e-300)


def test_log_softmax_stable_for_large_logits():
    x = sd.Input("x", shape=(3, 3))
    out = _no_warnings_run(sd.log_softmax(x), x=LARGE)
    e = np.exp(-1.0)
    l3 = np.log(3.0)
    close(out, [[0, -2000, -1000], [-l3, -l3, -l3], [-np.log(2 + e), -np.log(2 + e), -1 - np.log(2 + e)]])


def test_logsumexp_stable_for_large_logits():
    x = sd.Input("x", shape=(3, 3))
    out = _no_warnings_run(sd.logsumexp(x, axis=1), x=LARGE)
    close(out, [1000.0, -1000 + np.log(3.0), 1000 + np.log(2 + np.exp(-1.0))])
    close(_no_warnings_run(sd.logsumexp(x), x=LARGE), 1000 + np.log(3 + np.exp(-1.0)))
    close(_no_warnings_run(sd.logsumexp(x, axis=0, keepdims=True), x=LARGE), [[1000 + np.log(2.0), 1000.0, 999.0]])


def test_sigmoid_softplus_stable_for_large_logits():
    x = sd.Input("x", shape=(4,))
    X = np.array([1000.0, -1000.0, 40.0, -40.0])
    close(_no_warnings_run(sd.sigmoid(x), x=X), [1.0, 0.0, 1.0, np.exp(-40.0)], rtol=1e-12, atol=0)
    close(_no_warnings_run(sd.softplus(x), x=X), [1000.0, 0.0, 40.0, np.exp(-40.0)], rtol=1e-12, atol=0)
    close(_no_warnings_run(sd.log_sigmoid(x), x=X), [0.0, -1000.0, -np.exp(-40.0), -40.0], rtol=1e-12, atol=0)


def test_cross_entropies_stable_for_large_logits():
    z = sd.Input("z", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    t = sd.Input("t", shape=(None, 2))
    Z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    # labels disagreeing with the confident logits: each row costs 2000
    close(_no_warnings_run(sd.softmax_cross_entropy(z, y), z=Z, y=np.array([1, 0])), 2000.0)
    close(_no_warnings_run(sd.softmax_cross_entropy(z, y), z=Z, y=np.array([0, 1])), 0.0)
    T = np.array([[0.0, 1.0], [1.0, 0.0]])
    # element-wise: softplus(z) - z*t  = [1000, 1000, 1000, 1000]
    close(_no_warnings_run(sd.sigmoid_cross_entropy(z, t), z=Z, t=T), 1000.0)
    close(_no_warnings_run(sd.sigmoid_cross_entropy(z, t), z=Z, t=1 - T), 0.0)


def test_cross_entropy_gradients_finite_for_large_logits():
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    W = sd.Param("W", shape=(2, 2))
    loss = sd.softmax_cross_entropy(x @ W, y)
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    Wv = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    g = _no_warnings_run(sd.grad(loss, W), x=X, y=np.array([1, 0]), W=Wv)
    # dz = (softmax(z) - onehot) / n = [[0.5, -0.5], [-0.5, 0.5]]; dW = x.T @ dz
    close(g, [[0.5, -0.5], [-0.5, 0.5]], atol=1e-300)
    t = sd.Input("t", shape=(None, 2))
    g2 = _no_warnings_run(sd.grad(sd.sigmoid_cross_entropy(x @ W, t), W), x=X, t=np.eye(2)[[1, 0]], W=Wv)
    close(g2, [[0.25, -0.25], [-0.25, 0.25]], atol=1e-300)


# -- gradients of masked (piecewise) ops against closed forms in NumPy --------------------------
X_GRAD = np.array([1.0, -1.0, 2.0, -0.5])
W_GRAD = np.array([1.0, 2.0, 3.0, 4.0])

MASKED_GRADS = [
    ("relu(x)*w", lambda x: sd.sum(sd.relu(x) * W_GRAD), lambda X: W_GRAD * (X > 0)),
    ("relu(x+x)", lambda x: sd.sum(sd.relu(x + x)), lambda X: 2.0 * (X > 0)),
    ("relu(x+x)*2.0", lambda x: sd.sum(sd.relu(x + x) * 2.0), lambda X: 4.0 * (X > 0)),
    ("maximum(x+x,0)*w", lambda x: sd.sum(sd.maximum(x + x, 0) * W_GRAD), lambda X: 2 * W_GRAD * (X > 0)),
    ("maximum(2x,0)*w", lambda x: sd.sum(sd.maximum(2 * x, 0) * W_GRAD), lambda X: 2 * W_GRAD * (X > 0)),
    ("maximum(-x,x)*w", lambda x: sd.sum(sd.maximum(-x, x) * W_GRAD), lambda X: W_GRAD * np.sign(X)),
    ("minimum(-x,x)*w", lambda x: sd.sum(sd.minimum(-x, x) * W_GRAD), lambda X: -W_GRAD * np.sign(X)),
    ("exp(maximum(-x,x))", lambda x: sd.sum(sd.exp(sd.maximum(-x, x))), lambda X: np.exp(np.abs(X)) * np.sign(X)),
    ("exp(abs(x))", lambda x: sd.sum(sd.exp(sd.abs(x))), lambda X: np.exp(np.abs(X)) * np.sign(X)),
    ("where(x>0,x,-x)*w", lambda x: sd.sum(sd.where(x > 0, x, -x) * W_GRAD), lambda X: W_GRAD * np.sign(X)),
]


@pytest.mark.parametrize("name,build,expected", MASKED_GRADS, ids=[c[0] for c in MASKED_GRADS])
def test_gradients_of_masked_ops_match_closed_forms(name, build, expected):
    x = sd.Param("x", shape=(4,))
    g = sd.grad(build(x), x)
    close(run(g, x=X_GRAD), expected(X_GRAD))


# -- float32 end to end -------------------------------------------------------------------------
def test_float32_model_end_to_end():
    x = sd.Input("x", shape=(None, 4), dtype="float32")
    W = sd.Param("W", shape=(4, 3), dtype="float32")
    b = sd.Param("b", shape=(3,), dtype="float32")
    X = rand((8, 4), dtype="float32")
    Wv, bv = rand((4, 3), seed=2, dtype="float32"), rand((3,), seed=3, dtype="float32")
    h = sd.tanh(x @ W + b) * 2.0 - 1
    out_expr = sd.mean(sd.softmax(h) + sd.exp(h) / 3, axis=0)
    assert out_expr.dtype == np.float32
    Hn = np.tanh(X @ Wv + bv) * np.float32(2.0) - 1
    expected = np.mean(_softmax(Hn) + np.exp(Hn) / 3, axis=0)
    assert expected.dtype == np.float32
    out = run(out_expr, x=X, W=Wv, b=bv)
    assert out.dtype == np.float32
    close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda z, t, y: sd.mse(z, t),
        lambda z, t, y: sd.sigmoid_cross_entropy(z, t),
        lambda z, t, y: sd.softmax_cross_entropy(z, y),
        lambda z, t, y: sd.mean(sd.logsumexp(z, axis=1)),
    ],
    ids=["mse", "sigmoid_ce", "softmax_ce", "logsumexp"],
)
def test_float32_losses_and_gradients_compile_to_float32(loss_fn):
    x = sd.Input("x", shape=(None, 4), dtype="float32")
    t = sd.Input("t", shape=(None, 3), dtype="float32")
    y = sd.Input("y", shape=(None,), dtype="int64")
    W = sd.Param("W", shape=(4, 3), dtype="float32")
    loss = loss_fn(x @ W, t, y)
    assert loss.dtype == np.float32
    gW = sd.grad(loss, W)
    f = sd.compile({"loss": loss, "dW": gW})
    vals = dict(
        x=rand((6, 4), dtype="float32"),
        t=rand((6, 3), 0, 1, dtype="float32"),
        y=np.array([0, 1, 2, 2, 1, 0]),
        W=rand((4, 3), seed=2, dtype="float32"),
    )
    out = f(**{k: v for k, v in vals.items() if k in f.inputs})
    assert out["loss"].dtype == np.float32 and out["loss"].shape == ()
    assert out["dW"].dtype == np.float32 and out["dW"].shape == (4, 3)
    # the float64 reference of the same graph
    loss64 = loss_fn(sd.Input("x", shape=(None, 4)) @ sd.Param("W", shape=(4, 3)), sd.Input("t", shape=(None, 3)), y)
    f64 = sd.compile({"loss": loss64, "dW": sd.grad(loss64, sd.Param("W", shape=(4, 3)))})
    ref = f64(**{k: v.astype("float64") if v.dtype == np.float32 else v for k, v in vals.items() if k in f64.inputs})
    close(out["loss"], ref["loss"], rtol=1e-5, atol=1e-6)
    close(out["dW"], ref["dW"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["exp1", "s1", "prod1", "sum1", "cast1", "fn", "out", "dx"])
def test_symbol_names_like_generated_temporaries(name):
    x = sd.Input(name, shape=(3,))
    e = sd.exp(x)
    expr = (e * e + (x + x) * (x + x) + sd.sum(x) * sd.sum(x)).named("total")
    X = np.array([0.1, 0.2, 0.3])
    close(run(expr, **{name: X}), np.exp(X) ** 2 + (2 * X) ** 2 + X.sum() ** 2)


# -- one builder, two backends ------------------------------------------------------------------
def layer(m, x, W, b):
    return m.maximum(x @ W + b, 0)


def mlp(m, x, W1, b1, W2):
    h = m.tanh(x @ W1 + b1)
    z = m.dot(h, W2)
    s = m.exp(z - m.max(z, axis=-1, keepdims=True))
    p = s / m.sum(s, axis=-1, keepdims=True)
    feats = m.concatenate([p, m.square(h[:, :2]), m.sqrt(m.abs(z) + 1)], axis=1)
    return m.mean(m.where(feats > 0.5, feats, -feats), axis=0) + m.transpose(m.reshape(W1, (-1, 2))).sum(axis=1)[0]


def test_layer_builder_runs_with_numpy_or_symdiff():
    X, Wv, bv = rand((5, 4), seed=1), rand((4, 3), seed=2), rand((3,), seed=3)
    expected = layer(np, X, Wv, bv)
    x, W, b = sd.Input("x", shape=(None, 4)), sd.Param("W", shape=(4, 3)), sd.Param("b", shape=(3,))
    expr = layer(sd, x, W, b)
    assert expr.shape == (None, 3)
    close(run(expr, x=X, W=Wv, b=bv), expected)


def test_mlp_builder_runs_with_numpy_or_symdiff():
    X, W1, b1, W2 = rand((5, 4), seed=1), rand((4, 6), seed=2), rand((6,), seed=3), rand((6, 3), seed=4)
    expected = mlp(np, X, W1, b1, W2)
    syms = dict(
        x=sd.Input("x", shape=(None, 4)),
        W1=sd.Param("W1", shape=(4, 6)),
        b1=sd.Param("b1", shape=(6,)),
        W2=sd.Param("W2", shape=(6, 3)),
    )
    expr = mlp(sd, **syms)
    assert expr.shape == expected.shape
    close(run(expr, x=X, W1=W1, b1=b1, W2=W2), expected)


# -- property test: random graphs against the reference interpreter (sd.testing.interpret) ----------
PARAM_SHAPES = {"A": (3, 4), "B": (4,), "C": (4, 3)}


def _broadcastable(a, b):
    try:
        np.broadcast_shapes(a.shape, b.shape)
        return True
    except ValueError:
        return False


UNARY_OPS = {
    "exp": (sd.exp, lambda v: v.max() < 3),
    "log": (sd.log, lambda v: v.min() > 0.1),
    "sqrt": (sd.sqrt, lambda v: v.min() > 0.1),
    "tanh": (sd.tanh, lambda v: True),
    "sin": (sd.sin, lambda v: True),
    "cos": (sd.cos, lambda v: True),
    "neg": (lambda e: -e, lambda v: True),
    "square": (sd.square, lambda v: True),
    "abs": (sd.abs, lambda v: np.abs(v).min() > 1e-3),
    "sigmoid": (sd.sigmoid, lambda v: True),
    "softplus": (sd.softplus, lambda v: True),
    "scale": (lambda e: 0.5 * e + 1, lambda v: True),
    "T": (lambda e: e.T, lambda v: True),
}
BINARY_OPS = {
    "add": (lambda a, b: a + b, lambda va, vb: True),
    "sub": (lambda a, b: a - b, lambda va, vb: True),
    "mul": (lambda a, b: a * b, lambda va, vb: True),
    "div": (lambda a, b: a / b, lambda va, vb: np.abs(vb).min() > 0.2),
    "pow": (lambda a, b: a ** sd.tanh(b), lambda va, vb: va.min() > 0.1),
    "maximum": (sd.maximum, lambda va, vb: np.abs(np.subtract(va, vb)).min() > 1e-3),
    "minimum": (sd.minimum, lambda va, vb: np.abs(np.subtract(va, vb)).min() > 1e-3),
}
REDUCE_OPS = ["sum", "mean", "matmul"]
OP_NAMES = [*UNARY_OPS, *BINARY_OPS, *REDUCE_OPS]


@st.composite
def random_graph(draw):
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    values = {k: rng.uniform(0.5, 1.5, size=s) for k, s in PARAM_SHAPES.items()}
    params = {k: sd.Param(k, shape=s) for k, s in PARAM_SHAPES.items()}
    cache: dict = {}
    pool = list(params.values())
    steps = draw(st.integers(2, 9))
    for _ in range(steps):
        op = draw(st.sampled_from(OP_NAMES))
        i = len(pool) - 1 - draw(st.integers(0, min(2, len(pool) - 1)))  # mostly chain onto recent nodes
        j = draw(st.integers(0, len(pool) - 1))
        a, b = pool[i], pool[j]
        va, vb = sd.testing.interpret(a, values, cache), sd.testing.interpret(b, values, cache)
        new = None
        if op in UNARY_OPS:
            fn, ok = UNARY_OPS[op]
            if ok(va):
                new = fn(a)
        elif op in BINARY_OPS:
            fn, ok = BINARY_OPS[op]
            if _broadcastable(a, b) and ok(va, vb):
                new = fn(a, b)
        elif op == "matmul":
            if a.ndim >= 1 and b.ndim >= 1 and a.shape[-1] == b.shape[0 if b.ndim == 1 else -2]:
                new = a @ b
        elif a.ndim >= 1:
            axis = draw(st.integers(-a.ndim, a.ndim - 1))
            keepdims = draw(st.booleans())
            new = getattr(sd, op)(a, axis=axis, keepdims=keepdims)
        if new is None:
            continue
        v = sd.testing.interpret(new, values, cache)
        if np.all(np.isfinite(v)) and np.abs(v).max() < 50:
            pool.append(new)
    return pool[-1], params, values


@settings(max_examples=35, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(random_graph())
def test_random_graphs_forward_and_gradients(case):
    expr, params, values = case
    reference = sd.testing.interpret(expr, values)
    f = sd.compile(expr)
    out = f(**{k: v for k, v in values.items() if k in f.inputs})
    assert np.asarray(out).dtype == expr.dtype
    close(out, reference, rtol=1e-10, atol=1e-12)
    # Random weights keep the loss from being flat by symmetry (e.g. sum(mean(x, 0) - x) == 0), and a linear
    # term per param keeps every gradient away from 0, where check_grad's relative error is all rounding noise
    # (B / A / B does not depend on B; tanh(sum(exp(C))) is saturated).
    rng = np.random.default_rng(0)
    loss = sd.sum(expr * rng.uniform(0.5, 1.5, size=expr.shape))
    for p in params.values():
        loss = loss + sd.sum(p * rng.uniform(0.5, 1.5, size=p.shape))
    assert sd.check_grad(loss, list(params.values()), values) < 1e-5, str(loss)


# -- arithmetic on typed scalar constants: readable code, optimized code and NumPy agree -----------
CONST_OPS = [("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.true_divide), ("pow", np.power)]
CONST_CASES = [
    (np.int8(100), np.int8(3)),
    (np.int8(-128), np.int8(-1)),
    (np.uint8(1), np.uint8(2)),
    (np.int16(300), np.int16(200)),
    (np.int32(7), np.int32(2)),
    (np.float16(2), np.float16(20)),
    (np.float16(60000), np.float16(3)),
    (np.float32(2), np.float32(200)),
    (np.float32(0.1), np.float32(3)),
    (0.0, -1),
    (-8.0, 1 / 3),
    (1.0, 0.0),
    (np.float32(1), np.float32(0)),
]


@pytest.mark.parametrize("a,b", CONST_CASES, ids=[f"{type(a).__name__}({a})-{b}" for a, b in CONST_CASES])
def test_constant_arithmetic_of_typed_scalars_matches_numpy_on_both_paths(a, b):
    """Readable code must not compute ``int8(100) * int8(3)`` or ``0.0 ** -1`` with Python numbers
    (300, ZeroDivisionError): it agrees with NumPy and with optimized code, or both refuse the same overflow."""
    x = sd.Input("x", shape=(3,))
    X = np.array([1.5, -2.0, 3.0])
    for name, np_op in CONST_OPS:
        try:
            sd_op = {"add": sd.add, "sub": sd.subtract, "mul": sd.multiply, "div": sd.divide, "pow": sd.power}[name]
            e = x * sd_op(sd.constant(a), sd.constant(b))
        except sd.ConstantOverflowError:  # integer overflow is refused when the graph is built, for every path
            with np.errstate(all="ignore"):
                assert np.asarray(np_op(a, b)) != np_op(np.asarray(a).astype(object), np.asarray(b).astype(object))
            continue
        except (sd.DTypeError, sd.UnsupportedError):  # an integer to a negative power; a huge exponent
            continue
        with np.errstate(all="ignore"):
            expected = X * np_op(a, b)
        for optimize in (True, False):
            with np.errstate(all="ignore"):
                out = sd.compile(e, optimize=optimize)(x=X)
            assert out.dtype == expected.dtype, (name, optimize)
            np.testing.assert_array_equal(out, expected, err_msg=f"{name} optimize={optimize}")


SMALL_DTYPES = ["int8", "uint8", "int16", "int32", "float16", "float32", "float64", "bool"]
SCALAR_OPS = {
    "add": (sd.add, np.add),
    "sub": (sd.subtract, np.subtract),
    "mul": (sd.multiply, np.multiply),
    "div": (sd.divide, np.true_divide),
    "pow": (sd.power, np.power),
    "maximum": (sd.maximum, np.maximum),
    "less": (sd.less, np.less),
}


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.sampled_from(SMALL_DTYPES),
    st.sampled_from([0, 1, 2, 3, 100, 127, 200, 0.1, -1, -8, 60000, 1e30]),
    st.sampled_from(SMALL_DTYPES),
    st.sampled_from([0, 1, 2, 3, 7, 20, 0.5, -1, 1 / 3]),
    st.booleans(),
    st.sampled_from(sorted(SCALAR_OPS)),
)
def test_scalar_constant_arithmetic_over_small_dtypes_agrees_on_both_paths_and_numpy(da, va, db, vb, weak, op):
    """Readable code, optimized code and NumPy agree on op(a, b) * x for typed (or weak Python) scalars a, b."""
    with np.errstate(all="ignore"):
        a = np.array(va).astype(da)[()]
        b = np.array(vb).astype(db)[()]
    a = a.item() if weak else a
    sd_op, np_op = SCALAR_OPS[op]
    x = sd.Input("x", shape=(3,))
    X = np.array([1.5, -2.0, 3.0])
    try:
        e = x * sd_op(sd.constant(a), sd.constant(b))
    except sd.SymdiffError:  # refused when built, so for every path alike (an overflowing integer constant ...)
        return
    with np.errstate(all="ignore"):
        expected = X * np_op(a, b)
        for optimize in (False, True):
            out = sd.compile(e, optimize=optimize)(x=X)
            assert out.dtype == expected.dtype, optimize
            # optimized code may reassociate x * (100 / 7) as (x * 100) / 7: the last bit may differ
            np.testing.assert_allclose(out, expected, rtol=0 if not optimize else 1e-15, err_msg=str(optimize))
