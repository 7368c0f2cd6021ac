"""The ops of issue 10 (expm1, erf, clip, min, var, std, argmax, argmin, trace, diag, eye, outer): values against
NumPy for many shapes, axes and dtypes (reference implementation, compiled function and generated module),
the open batch axis, error messages naming the op and the shapes, printed forms, the text parser and the CLI.
Gradients are checked by the generic rows of tests/test_ops_grad.py."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff import cli
from symdiff.ops import kernels
from symdiff.ops.leaves import is_identity

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def _array(shape, dtype="float64", low=-2.0, high=2.0, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-5, 6, size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(dtype)


def _all_paths(y: sd.Expr, values: dict) -> list[np.ndarray]:
    """``y`` computed by the op table's reference implementation, the compiled function and a generated module."""
    namespace: dict = {}
    exec(sd.codegen({"y": y}, name="f"), namespace)
    return [sd.testing.interpret(y, values), sd.compile(y)(**values), namespace["f"](**values)["y"]]


def _check(y: sd.Expr, values: dict, expected, rtol: float = 1e-12) -> None:
    expected = np.asarray(expected)
    assert y.shape == expected.shape or None in y.shape, (y.shape, expected.shape)
    assert y.dtype == expected.dtype, (y.dtype, expected.dtype)
    for i, got in enumerate(_all_paths(y, values)):
        got = np.asarray(got)
        if i == 0:  # the reference implementation sees weak constants as float64 arrays: its values only
            got = got.astype(expected.dtype)
        assert got.shape == expected.shape and got.dtype == expected.dtype, (got.shape, got.dtype)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)


# -- reductions: min, var, std, argmax, argmin ---------------------------------------------------
REDUCE_CASES = [
    ((3, 4), None),
    ((3, 4), 0),
    ((3, 4), -1),
    ((2, 3, 4), (0, 2)),
    ((2, 3, 4), 1),
    ((5,), None),
    ((), None),
]


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
@pytest.mark.parametrize(("shape", "axis"), REDUCE_CASES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_min_matches_numpy(shape, axis, keepdims, dtype) -> None:
    x = sd.Input("x", shape=shape, dtype=dtype)
    v = _array(shape, dtype)
    _check(sd.min(x, axis=axis, keepdims=keepdims), {"x": v}, np.min(v, axis=axis, keepdims=keepdims))
    assert x.min(axis=axis, keepdims=keepdims) is sd.amin(x, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
@pytest.mark.parametrize(("shape", "axis"), REDUCE_CASES)
@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("op", ["var", "std"])
def test_var_and_std_match_numpy(op, shape, axis, ddof, dtype) -> None:
    x = sd.Input("x", shape=shape, dtype=dtype)
    if shape == () and ddof:  # n - ddof = 0: NumPy warns and gives nan, and so does symdiff
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = sd.compile(getattr(sd, op)(x, ddof=ddof))(x=_array(shape, dtype))
            assert np.isnan(got) and np.isnan(getattr(np, op)(_array(shape, dtype), ddof=ddof))
        return
    v = _array(shape, dtype)
    for keepdims in (False, True):
        y = getattr(sd, op)(x, axis=axis, keepdims=keepdims, ddof=ddof)
        assert y is getattr(x, op)(axis=axis, keepdims=keepdims, ddof=ddof)
        expected = getattr(np, op)(v, axis=axis, keepdims=keepdims, ddof=ddof)
        _check(y, {"x": v}, expected, rtol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "bool"])
@pytest.mark.parametrize(("shape", "axis"), [((3, 4), None), ((3, 4), 0), ((3, 4), -1), ((2, 3, 4), 1), ((5,), 0)])
@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_argmax_and_argmin_match_numpy_with_int64_indices(op, shape, axis, dtype) -> None:
    x = sd.Input("x", shape=shape, dtype=dtype)
    v = _array(shape, "int64") > 0 if dtype == "bool" else np.round(_array(shape, dtype))  # rounding makes ties
    for keepdims in (False, True):
        y = getattr(sd, op)(x, axis=axis, keepdims=keepdims)
        assert y is getattr(x, op)(axis=axis, keepdims=keepdims)
        _check(y, {"x": v}, getattr(np, op)(v, axis=axis, keepdims=keepdims).astype(np.int64))


def test_argmax_has_no_gradient_and_works_on_the_open_batch_axis() -> None:
    x = sd.Input("x", shape=(None, 3))
    w = sd.Param("w", shape=(3,))
    idx = sd.argmax(x * w, axis=1)
    assert idx.shape == (None,) and idx.dtype == np.int64
    assert sd.argmax(x, axis=0).shape == (3,) and sd.argmin(x).shape == ()
    v = _array((5, 3))
    np.testing.assert_array_equal(sd.compile(idx)(x=v, w=np.ones(3)), np.argmax(v, axis=1))
    loss = sd.sum(w) + sd.sum(sd.astype(idx, "float64"))  # the indices are piecewise constant in w
    (dw,) = sd.grad(loss, [w])
    np.testing.assert_array_equal(sd.compile(dw)(w=np.ones(3)), np.ones(3))


def test_var_over_the_open_batch_axis_divides_by_the_run_time_length() -> None:
    x = sd.Input("x", shape=(None, 3))
    y = sd.var(x, axis=0, ddof=1)
    assert y.shape == (3,)
    f = sd.compile({"y": y, "dx": sd.grad(sd.sum(y * np.arange(3.0)), x)})
    for n in (2, 5, 9):
        v = _array((n, 3), seed=n)
        out = f(x=v)
        np.testing.assert_allclose(out["y"], np.var(v, axis=0, ddof=1), rtol=1e-12)
        np.testing.assert_allclose(out["dx"], 2 * (v - v.mean(axis=0)) / (n - 1) * np.arange(3.0), rtol=1e-12)
    assert sd.to_text(sd.grad(sd.sum(y), x)) == (
        "n = x.shape[0]\ndx = 2 * (x - sum(x, axis=0, keepdims=True) / n) / (n - 1)"
    )


# -- element-wise: expm1, erf, clip ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int8"])
@pytest.mark.parametrize("shape", [(3, 4), (5,), ()])
def test_expm1_and_erf_match_numpy_and_math_erf(shape, dtype) -> None:
    x = sd.Input("x", shape=shape, dtype=dtype)
    v = _array(shape, dtype)
    _check(sd.expm1(x), {"x": v}, np.expm1(v), rtol=1e-6 if np.expm1(v).dtype.itemsize < 8 else 1e-15)
    expected_dtype = np.exp(v).dtype  # NumPy's float-function dtype (int8 -> float16)
    expected = np.vectorize(math.erf, otypes=[np.float64])(v).astype(expected_dtype)
    _check(sd.erf(x), {"x": v}, expected, rtol=1e-3 if expected_dtype.itemsize < 8 else 1e-15)


def test_expm1_is_accurate_for_tiny_arguments() -> None:
    x = sd.Input("x", shape=(3,))
    v = np.array([1e-12, -3e-15, 1e-300])
    np.testing.assert_array_equal(sd.compile(sd.expm1(x))(x=v), np.expm1(v))


def test_erf_kernel_equals_math_erf_to_the_last_bits() -> None:
    v = np.concatenate([np.linspace(-6, 6, 2001), [0.0, -0.0, 1e-300, 27.0, -np.inf, np.inf]])
    expected = np.array([math.erf(t) for t in v])
    np.testing.assert_allclose(kernels._erf(v), expected, rtol=1e-15, atol=0)
    assert np.isnan(kernels._erf(np.array([np.nan])))[0]


_NO_SCIPY = """
import math, sys
sys.modules["scipy"] = None  # importing scipy (or scipy.special) now raises ImportError
import numpy as np
namespace = {}
exec(open(sys.argv[1]).read(), namespace)
v = np.linspace(-5, 5, 1001)
out = namespace["f"](x=v)
expected = np.array([math.erf(t) for t in v])
assert np.allclose(out["y"], expected, rtol=1e-15, atol=0), np.max(np.abs(out["y"] - expected))
assert np.array_equal(out["dx"], 2 / math.sqrt(math.pi) * np.exp(-v**2)), "derivative"
out32 = namespace["f"](x=v.astype(np.float32))
assert out32["y"].dtype == np.float32
assert "scipy.special" not in sys.modules
print("ok")
"""


def test_generated_erf_module_needs_only_numpy(tmp_path) -> None:
    x = sd.Input("x", shape=(None,))
    y = sd.erf(x)
    source = sd.codegen({"y": y, "dx": sd.grad(sd.sum(y), x)}, name="f")
    assert "def _erf(" in source and "\nimport scipy" not in source and "\nfrom scipy" not in source
    (tmp_path / "mod.py").write_text(source)
    (tmp_path / "check.py").write_text(_NO_SCIPY)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "check.py"), str(tmp_path / "mod.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize(
    ("shapes", "dtype"),
    [
        (((3, 4), (), ()), "float64"),
        (((3, 4), (4,), (3, 1)), "float64"),
        (((2, 3), (), ()), "float32"),
        (((5,), (), ()), "int64"),
    ],
)
def test_clip_matches_numpy_with_broadcast_bounds(shapes, dtype) -> None:
    x, lo, hi = (sd.Input(n, shape=s, dtype=dtype) for n, s in zip(("x", "lo", "hi"), shapes))
    values = {"x": _array(shapes[0], dtype, seed=1), "lo": _array(shapes[1], dtype, seed=2) - 1}
    values["hi"] = _array(shapes[2], dtype, seed=3) + 1  # and lo > hi at some points: NumPy gives hi there
    _check(sd.clip(x, lo, hi), values, np.clip(values["x"], values["lo"], values["hi"]))
    assert x.clip(lo, hi) is sd.clip(x, lo, hi)


def test_clip_with_python_bounds_keeps_float32_and_a_missing_bound_is_maximum_or_minimum() -> None:
    x = sd.Input("x", shape=(4,), dtype="float32")
    assert sd.clip(x, 0, 1.5).dtype == np.float32
    assert sd.clip(x, 0, None) is sd.maximum(x, 0) and sd.clip(x, None, 1) is sd.minimum(x, 1)
    assert sd.clip(x, None, None) is x
    v = np.array([-1, 0.5, 2, 1.5], dtype=np.float32)
    _check(sd.clip(x, 0, 1.5), {"x": v}, np.clip(v, 0, 1.5))


def test_clip_gradient_reaches_x_on_both_bounds_and_the_bounds_outside() -> None:
    x, lo, hi = sd.Param("x", shape=(5,)), sd.Param("lo", shape=()), sd.Param("hi", shape=())
    f = sd.compile(sd.grad(sd.sum(sd.clip(x, lo, hi)), [x, lo, hi]))
    dx, dlo, dhi = f(x=np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), lo=0.0, hi=1.0)
    np.testing.assert_array_equal(dx, [0, 1, 1, 1, 0])  # ties (x == lo, x == hi) go to x
    assert dlo == 1 and dhi == 1
    dx, dlo, dhi = f(x=np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), lo=1.0, hi=0.0)  # lo > hi: the result is hi
    np.testing.assert_array_equal(dx, np.zeros(5))
    assert dlo == 0 and dhi == 5


def test_clip_writes_in_place_in_a_compiled_training_step() -> None:
    x = sd.Input("x", shape=(None, 3))
    w = sd.Param("w", shape=(3,))
    loss = sd.sum(sd.clip(x * w, -1.0, 1.0) ** 2)
    step = sd.compile_step(loss, {"w": np.ones(3)}, sd.optim.SGD(lr=0.1))
    assert "np.clip(" in step.source and "out=" in step.source.split("np.clip(", 1)[1].split("\n", 1)[0]
    v = _array((4, 3))
    step.run({"x": v})
    c = np.clip(v, -1, 1)
    expected = 1 - 0.1 * np.sum(2 * c * (np.abs(v) <= 1) * v, axis=0)
    np.testing.assert_allclose(step.params["w"], expected, rtol=1e-12)


# -- matrix structure: trace, diag, eye, outer -----------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 3), (3, 5), (5, 3), (3, 3, 2), (2, 4, 3, 2)])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_trace_matches_numpy_over_the_first_two_axes(shape, dtype) -> None:
    m = sd.Input("M", shape=shape, dtype=dtype)
    v = _array(shape, dtype)
    _check(sd.trace(m), {"M": v}, np.trace(v), rtol=1e-6)
    assert m.trace() is sd.trace(m)


@pytest.mark.parametrize("shape", [(4,), (1,), (3, 3), (3, 5), (5, 3)])
@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_diag_matches_numpy_for_vectors_and_matrices(shape, dtype) -> None:
    x = sd.Input("x", shape=shape, dtype=dtype)
    v = _array(shape, dtype)
    y = sd.diag(x)
    assert y.op == ("diag" if len(shape) == 1 else "diagonal")
    _check(y, {"x": v}, np.diag(v))


@pytest.mark.parametrize(("n", "m"), [(3, None), (3, 3), (2, 4), (4, 2), (0, None)])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "bool"])
def test_eye_matches_numpy(n, m, dtype) -> None:
    e = sd.eye(n, m, dtype=dtype)
    _check(e, {}, np.eye(n, m, dtype=dtype))
    assert e.op == "eye" and e.args == ()


@pytest.mark.parametrize(
    ("sa", "sb", "da", "db"),
    [((3,), (4,), "float64", "float64"), ((2, 3), (), "float64", "float32"), ((3,), (2, 2), "int64", "float32")],
)
def test_outer_matches_numpy_and_flattens_like_it(sa, sb, da, db) -> None:
    a, b = sd.Input("a", shape=sa, dtype=da), sd.Input("b", shape=sb, dtype=db)
    va, vb = _array(sa, da, seed=1), _array(sb, db, seed=2)
    _check(sd.outer(a, b), {"a": va, "b": vb}, np.outer(va, vb), rtol=1e-6)


def test_matrix_ops_on_open_axes() -> None:
    v = sd.Input("v", shape=(None,))
    assert sd.diag(v).shape == (None, None) and sd.outer(v, np.ones(3)).shape == (None, 3)
    assert sd.diag(sd.Input("M", shape=(None, 4))).shape == (None,)
    stack = sd.Input("S", shape=(3, 3, None))
    assert sd.trace(stack).shape == (None,)
    x = np.arange(4.0)
    out = sd.compile({"d": sd.diag(v), "o": sd.outer(v, np.ones(3))})(v=x)
    np.testing.assert_array_equal(out["d"], np.diag(x))
    np.testing.assert_array_equal(out["o"], np.outer(x, np.ones(3)))
    w = sd.Param("w", shape=(3,))
    (dw,) = sd.grad(sd.sum(sd.trace(stack * w[:, None, None])), [w])  # the open axis is a trailing one
    s = _array((3, 3, 5))
    np.testing.assert_allclose(sd.compile(dw)(S=s, w=np.ones(3)), np.einsum("iin->i", s), rtol=1e-12)
    np.testing.assert_allclose(sd.compile(sd.diag(v) @ sd.diag(v))(v=x), np.diag(x**2))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: sd.trace(sd.Input("M", shape=(None, None))), "trace: cannot differentiate .* shape \\(None, None\\)"),
        (lambda: sd.diag(sd.Input("M", shape=(None, 3))), "diag: cannot differentiate .* shape \\(None, 3\\)"),
    ],
)
def test_gradient_through_open_matrix_axes_is_refused_naming_the_op(build, message) -> None:
    y = build()
    x = y.args[0]
    f = sd.compile(y)  # the value needs no length
    assert f is not None
    with pytest.raises(sd.ShapeError, match=message):
        sd.grad(sd.sum(y * 1.0), x)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: sd.trace(sd.Param("v", shape=(3,))), sd.ShapeError, r"trace: .* got shape \(3,\)"),
        (lambda: sd.diag(sd.Param("t", shape=(2, 3, 4))), sd.ShapeError, r"diag: .* got shape \(2, 3, 4\)"),
        (lambda: sd.diag(sd.Param("s")), sd.ShapeError, r"diag: .* got shape \(\)"),
        (
            lambda: sd.graph.make("outer", (sd.Param("m", shape=(2, 2)), sd.Param("v", shape=(2,)))),
            sd.ShapeError,
            r"outer: operands must be vectors, got shapes \(2, 2\) and \(2,\)",
        ),
        (
            lambda: sd.clip(sd.Param("x", shape=(3,)), sd.Param("lo", shape=(4,)), 1.0),
            sd.ShapeError,
            r"clip: shapes \(3,\) and \(4,\) and \(\) cannot be broadcast",
        ),
        (lambda: sd.eye(2.5), sd.DTypeError, "eye: n must be an int, got 2.5"),
        (lambda: sd.eye(3, -1), ValueError, "eye: m must be non-negative"),
        (lambda: sd.eye(3, dtype="complex128"), sd.DTypeError, "complex128 is not supported"),
        (lambda: sd.var(sd.Param("x", shape=(3,)), ddof=-1), sd.DTypeError, "var: ddof must be a non-negative int"),
        (lambda: sd.std(sd.Param("x", shape=(3,)), ddof=1.5), sd.DTypeError, "std: ddof must be"),
        (lambda: sd.var(sd.Param("x", shape=(3,)), axis=1), sd.ShapeError, r"var: axis 1 is out of range .* \(3,\)"),
        (lambda: sd.min(sd.Param("x", shape=(2, 3)), axis=2), sd.ShapeError, r"min: axis 2 is out of range"),
        (lambda: sd.min(sd.Input("x", shape=(0, 3))), sd.ShapeError, r"min: zero-size .* \(0, 3\) has no minimum"),
        (
            lambda: sd.argmax(sd.Param("x", shape=(2, 3)), axis=(0, 1)),
            sd.DTypeError,
            r"argmax: axis must be an int or None",
        ),
        (lambda: sd.argmin(sd.Param("x", shape=(2, 3)), axis=-3), sd.ShapeError, "argmin: axis -3 is out of range"),
        (lambda: sd.argmin(sd.Param("x", shape=(2, 0))), sd.ShapeError, "argmin: zero-size .* has no minimum"),
    ],
)
def test_bad_operands_are_refused_naming_the_op_and_shapes(build, error, message) -> None:
    with pytest.raises(error, match=message):
        build()


# -- identity matrices -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (sd.eye(3), True),
        (sd.eye(3, 3, dtype="int64"), True),
        (sd.eye(2, 3), False),
        (sd.constant(np.eye(4)), True),
        (sd.constant(np.eye(2, dtype=np.float32)), True),
        (sd.constant(np.eye(2, dtype=bool)), True),
        (sd.constant(2 * np.eye(3)), False),
        (sd.constant(np.eye(3, 4)), False),
        (sd.constant(np.ones(3)), False),
        (sd.constant(1.0), False),
        (sd.Param("I", shape=(3, 3)), False),
    ],
)
def test_is_identity_recognises_eye_and_identity_constants(expr, expected) -> None:
    assert is_identity(expr) is expected


# -- printing, SymPy, parser, CLI -----------------------------------------------------------------------
A, X, B = sd.Param("A", shape=(2, 3)), sd.Param("X", shape=(3, 3)), sd.Param("B", shape=(3, 2))
a, b = sd.Param("a", shape=(3,)), sd.Param("b", shape=(4,))
x = sd.Param("x", shape=(4, 3))

PRINTED = [
    (lambda: sd.trace(A @ X @ B), "trace(A @ X @ B)", r"\operatorname{tr}\left(A X B\right)"),
    (lambda: sd.outer(a, b), "outer(a, b)", r"a {b}^\top"),
    (lambda: sd.outer(a + 1, b), "outer(a + 1, b)", r"(a + 1) {b}^\top"),
    (lambda: sd.diag(a), "diag(a)", r"\operatorname{diag}\left(a\right)"),
    (lambda: sd.diag(X), "diag(X)", r"\operatorname{diag}\left(X\right)"),
    (lambda: sd.eye(3), "eye(3)", "I_{3}"),
    (lambda: sd.eye(2, 3, dtype="float32"), "eye(2, 3, dtype=float32)", r"I_{2 \times 3}"),
    (lambda: sd.clip(x, 0, 1), "clip(x, 0, 1)", r"\operatorname{clip}\left(x, 0, 1\right)"),
    (lambda: sd.expm1(x), "expm1(x)", "e^{x} - 1"),
    (lambda: 2 * sd.expm1(x), "2 * expm1(x)", r"2 \cdot (e^{x} - 1)"),
    (lambda: sd.erf(x), "erf(x)", r"\operatorname{erf}\left(x\right)"),
    (lambda: sd.min(x, axis=1), "min(x, axis=1)", r"\min_{1}\left(x\right)"),
    (lambda: sd.var(x), "var(x)", r"\operatorname{Var}\left(x\right)"),
    (
        lambda: sd.var(x, axis=0, ddof=1),
        "var(x, axis=0, ddof=1)",
        r"\operatorname{Var}_{0,\,\mathrm{ddof}=1}\left(x\right)",
    ),
    (
        lambda: sd.std(x, axis=1, keepdims=True),
        "std(x, axis=1, keepdims=True)",
        r"\operatorname{std}_{1}\left(x\right)",
    ),
    (lambda: sd.argmax(x, axis=1), "argmax(x, axis=1)", r"\operatorname{argmax}_{1}\left(x\right)"),
    (lambda: sd.argmin(x), "argmin(x)", r"\operatorname{argmin}\left(x\right)"),
]


@pytest.mark.parametrize(("build", "text", "tex"), PRINTED, ids=[p[1] for p in PRINTED])
def test_new_ops_print_as_themselves_and_parse_back(build, text, tex) -> None:
    y = build()
    assert sd.to_text(y) == text
    assert sd.latex(y) == tex
    if "dtype" not in text:  # the parser takes no dtype keyword
        assert sd.parse(text, {s.label: s for s in sd.params(y)}) is y
    assert sd.to_dot(y)


def test_textbook_gradients_of_the_new_ops() -> None:
    w = sd.Param("W", shape=(3, 4))
    assert sd.to_text(sd.grad(sd.sum(sd.outer(a, b) * w), [a, b])) == "da = W @ b\ndb = a @ W"
    assert sd.to_text(sd.grad(sd.trace(X), X)) == "dX = eye(3)"
    assert sd.latex(sd.grad(sd.trace(X), X)) == r"\mathrm{dX} = I_{3}"
    assert sd.to_text(sd.grad(sd.sum(sd.diag(X)), X)) == "dX = eye(3)"
    assert sd.to_text(sd.grad(sd.sum(sd.diag(a)), a)) == "da = [1.0, 1.0, 1.0]"
    assert sd.to_text(sd.grad(sd.sum(sd.expm1(x)), x)) == "dx = exp(x)"
    assert sd.to_text(sd.grad(sd.sum(sd.erf(x)), x)) == "dx = 1.1283791670955126 * exp(-x**2)"
    assert sd.to_text(sd.grad(sd.sum(sd.clip(x, 0, 1)), x)) == "dx = (x >= 0).astype(float64) * (x <= 1)"
    assert sd.to_text(sd.grad(sd.std(x), x)) == "dx = (x - sum(x, keepdims=True) / 12) / (12 * std(x))"


def test_sympy_forms_of_the_new_ops() -> None:
    m = sd.Param("M", shape=(3, 3))
    msym = sp.MatrixSymbol("M", 3, 3)
    assert sd.to_sympy(sd.trace(m)) == sp.Trace(msym)
    assert sp.Matrix(sd.to_sympy(sd.diag(m))) == sp.Matrix([[msym[i, i] for i in range(3)]])
    asym, bsym = sp.MatrixSymbol("a", 1, 3), sp.MatrixSymbol("b", 1, 4)
    assert sp.Matrix(sd.to_sympy(sd.outer(a, b))) == sp.Matrix(asym.T * bsym)
    assert sp.Matrix(sd.to_sympy(sd.diag(a))) == sp.diag(*[asym[0, i] for i in range(3)])
    assert sd.to_sympy(sd.eye(3)) == sp.Identity(3)
    s, lo, hi = sd.Param("s"), sd.Param("lo"), sd.Param("hi")
    ssym, losym, hisym = (sp.Symbol(n, real=True) for n in ("s", "lo", "hi"))
    assert sd.to_sympy(sd.clip(s, lo, hi)) == sp.Min(sp.Max(ssym, losym), hisym)
    assert sd.to_sympy(sd.erf(s)) == sp.erf(ssym) and sd.to_sympy(sd.expm1(s)) == sp.exp(ssym) - 1


def test_cli_differentiates_a_trace(capsys) -> None:
    capsys.readouterr()
    code = cli.main(["grad", "trace(A @ B)", "--wrt", "A", "--shape", "A=3,3", "--shape", "B=3,3"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.strip() == "dA = B.T"


def test_gradient_of_a_bilinear_form_is_an_outer_product() -> None:
    """a^T X b w.r.t. X is a b^T (The Matrix Cookbook, eq. 70): matmul's gradient with a vector operand."""
    u, m, w = sd.Param("u", shape=(3,)), sd.Param("M", shape=(3, 4)), sd.Param("w", shape=(4,))
    dm = sd.grad(u @ m @ w, m)
    assert sd.to_text(dm) == "dM = outer(u, w)" and sd.latex(dm) == r"\mathrm{dM} = u {w}^\top"
    assert sd.to_text(sd.grad(sd.sum(m @ w), w)) == "dw = sum(M, axis=0)"  # (k,) from a matrix: no outer there
    vu, vw = _array((3,), seed=1), _array((4,), seed=2)
    np.testing.assert_allclose(sd.compile(dm)(u=vu, w=vw), np.outer(vu, vw), rtol=1e-15)
    h = sd.Input("H", shape=(3, None))  # an open axis on the vector side of the product
    dh = sd.grad(sd.sum(sd.tanh(u @ h)), h)
    assert dh.shape == (3, None) and "outer(u, " in sd.to_text(dh)
    vh = _array((3, 6), seed=3)
    np.testing.assert_allclose(sd.compile(dh)(u=vu, H=vh), np.outer(vu, 1 - np.tanh(vu @ vh) ** 2), rtol=1e-12)


def test_var_and_std_refuse_a_ddof_above_the_known_length_naming_it() -> None:
    """NumPy divides by max(n - ddof, 0); a gradient with n - ddof < 0 would have the wrong sign, so it is refused."""
    x = sd.Param("x", shape=(3, 2))
    for op in ("var", "std"):
        with pytest.raises(sd.ShapeError, match=rf"{op}: ddof=4 is more than the 3 elements .*\(3, 2\)"):
            getattr(sd, op)(x, axis=0, ddof=4)
        getattr(sd, op)(x, axis=0, ddof=3)  # n - ddof = 0: NumPy's inf/nan, as symdiff computes it
        getattr(sd, op)(x, ddof=6)  # all 6 elements
        getattr(sd, op)(sd.Input("o", shape=(None, 2)), axis=0, ddof=4)  # open length: decided at run time
