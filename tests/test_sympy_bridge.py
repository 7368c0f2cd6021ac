"""sd.from_sympy: SymPy scalar expressions applied element-wise, their values, gradients and errors."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symdiff as sd

t, s = sp.symbols("t s")
x = sd.Input("x", shape=(None, 4))
W = sd.Param("W", shape=(4, 3))
b = sd.Param("b", shape=(3,))
MISH = t * sp.tanh(sp.log(1 + sp.exp(t)))


def values(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W": rng.normal(size=(4, 3)),
        "b": rng.normal(size=3) + 0.05,
        "x": rng.normal(size=(n, 4)),
        "v": rng.normal(size=(4, 3)),
    }


def mish_np(z):
    return z * np.tanh(np.log1p(np.exp(z)))


def test_mish_values():
    v = values()
    out = sd.compile(sd.from_sympy(MISH, {t: x @ W + b}))(**{k: v[k] for k in ("W", "b", "x")})
    np.testing.assert_allclose(out, mish_np(v["x"] @ v["W"] + v["b"]), rtol=1e-12, atol=1e-14)


def test_mish_shape_dtype_and_text():
    m = sd.from_sympy(MISH, {t: x @ W + b})
    assert m.shape == (None, 3) and m.dtype == np.float64
    lines = str(m).splitlines()
    assert len(lines) == 2
    name, _, body = lines[0].partition(" = ")
    assert body == "x @ W + b"
    assert f"{name}*tanh(log(exp({name}) + 1))" in lines[1]


def test_mish_gradient_passes_check_grad():
    m = sd.from_sympy(MISH, {t: x @ W + b})
    assert sd.check_grad(sd.sum(m), [W, b], values()) < 1e-6


def test_mish_gradient_matches_hand_derivative():
    m = sd.from_sympy(MISH, {t: x @ W + b})
    v = values()
    z = v["x"] @ v["W"] + v["b"]
    sp_ = np.log1p(np.exp(z))
    dmish = np.tanh(sp_) + z * (1 - np.tanh(sp_) ** 2) / (1 + np.exp(-z))
    gW = sd.compile(sd.grad(sd.sum(m), W))(W=v["W"], b=v["b"], x=v["x"])
    np.testing.assert_allclose(gW, v["x"].T @ dmish, rtol=1e-10)


def test_second_derivative_passes_check_grad():
    m = sd.from_sympy(MISH, {t: x @ W + b})
    vv = sd.Input("v", shape=(4, 3))
    g = sd.grad(sd.sum(m), W)
    hvp_loss = sd.sum(g * vv)  # its gradient is a Hessian-vector product
    assert sd.check_grad(hvp_loss, [W, b], values()) < 1e-6


FUNCTIONS = [
    (t, lambda z: z),
    (sp.sin(t), np.sin),
    (sp.exp(t), np.exp),
    (sp.log(1 + t**2), lambda z: np.log(1 + z**2)),
    (sp.sqrt(1 + t**2), lambda z: np.sqrt(1 + z**2)),
    (sp.Abs(t), np.abs),
    (sp.Abs(t) * t, lambda z: np.abs(z) * z),
    (sp.Piecewise((t, t > 0), (t / 10, True)), lambda z: np.where(z > 0, z, z / 10)),
    (sp.Max(t, 0), lambda z: np.maximum(z, 0)),
    (sp.Min(t, 1) * t, lambda z: np.minimum(z, 1) * z),
    (sp.atan(t), np.arctan),
    (sp.cosh(t) - t**3, lambda z: np.cosh(z) - z**3),
]


@pytest.mark.parametrize("expr, ref", FUNCTIONS, ids=[str(f[0]) for f in FUNCTIONS])
def test_function_values(expr, ref):
    v = values()
    e = sd.from_sympy(expr, {t: x * 2.0})
    out = sd.compile(e)(x=v["x"])
    assert out.shape == v["x"].shape and out.dtype == np.float64
    np.testing.assert_allclose(out, ref(v["x"] * 2.0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("expr, ref", FUNCTIONS, ids=[str(f[0]) for f in FUNCTIONS])
def test_function_gradients(expr, ref):
    e = sd.from_sympy(expr, {t: x @ W + b})
    assert sd.check_grad(sd.sum(e), [W, b], values()) < 1e-6


def test_real_symbol_abs_gradient():
    r = sp.Symbol("r", real=True)
    e = sd.from_sympy(sp.Abs(r), {r: x @ W + b})
    assert sd.check_grad(sd.sum(e), [W, b], values()) < 1e-6


def test_two_symbols_broadcast():
    e = sd.from_sympy(t * s + sp.sin(s), {t: x @ W, s: b})
    assert e.shape == (None, 3)
    v = values()
    out = sd.compile(e)(W=v["W"], b=v["b"], x=v["x"])
    np.testing.assert_allclose(out, (v["x"] @ v["W"]) * v["b"] + np.sin(v["b"]), rtol=1e-12)
    assert sd.check_grad(sd.sum(e**2), [W, b], v) < 1e-6
    assert "sin(b)" in str(e)


def test_two_symbols_outer_broadcast():
    col = sd.Input("col", shape=(5, 1))
    e = sd.from_sympy(sp.exp(t) / (1 + s**2), {t: col, s: b})
    assert e.shape == (5, 3)
    c = np.linspace(-1, 1, 5).reshape(5, 1)
    bv = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(sd.compile(e)(col=c, b=bv), np.exp(c) / (1 + bv**2), rtol=1e-12)
    assert sd.check_grad(sd.sum(e), b, {"col": c, "b": bv}) < 1e-6


def test_float32_stays_float32():
    x32 = sd.Input("x32", shape=(None, 3), dtype="float32")
    e = sd.from_sympy(sp.Piecewise((t, t > 0), (0.1 * t, True)) + sp.exp(t), {t: x32})
    assert e.dtype == np.float32
    out = sd.compile(e)(x32=np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))
    assert out.dtype == np.float32


def test_constant_expression_broadcasts_to_declared_shape():
    e = sd.from_sympy(sp.Integer(3), {t: x})
    assert e.shape == (None, 4) and e.dtype == np.float64
    out = sd.compile(e)(x=np.zeros((2, 4)))
    assert isinstance(out, np.ndarray) and out.shape == (2, 4) and out.dtype == np.float64
    np.testing.assert_array_equal(out, 3.0)


@pytest.mark.parametrize(
    "expr, name",
    [(sp.besselj(0, t), "besselj"), (sp.erf(t), "erf"), (sp.gamma(t), "gamma"), (sp.LambertW(t), "LambertW")],
    ids=["besselj", "erf", "gamma", "LambertW"],
)
def test_unsupported_function_is_named(expr, name):
    with pytest.raises(sd.UnsupportedError, match=name):
        sd.from_sympy(expr, {t: x})


def test_condition_is_refused():
    with pytest.raises(sd.UnsupportedError, match="condition"):
        sd.from_sympy(t > 0, {t: x})


@pytest.mark.parametrize("bad", ["t * 2", "exp(t)"])
def test_string_is_refused(bad):
    with pytest.raises(TypeError, match="string"):
        sd.from_sympy(bad, {t: x})


@pytest.mark.parametrize("bad", [None, [t], object()], ids=["None", "list", "object"])
def test_non_sympy_is_refused(bad):
    with pytest.raises(TypeError):
        sd.from_sympy(bad, {t: x})


def test_mapping_keys_must_be_symbols():
    with pytest.raises(TypeError, match="Symbol"):
        sd.from_sympy(t * 2, {"t": x})


def test_missing_symbol_is_named():
    with pytest.raises(ValueError, match=r"\bs\b"):
        sd.from_sympy(t * s, {t: x})
    u = sp.Symbol("unmapped_thing")
    with pytest.raises(ValueError, match="unmapped_thing"):
        sd.from_sympy(t + u, {t: x})


def test_incompatible_shapes_raise_shape_error():
    with pytest.raises(sd.ShapeError):
        sd.from_sympy(t * s, {t: x, s: sd.Param("q", shape=(5,))})


def test_latex_contains_the_formula():
    e = sd.from_sympy(sp.sin(t) ** 2, {t: x @ W})
    assert r"\sin" in sd.latex(e)


class _CodeName(str):
    """A symbol name whose formatting is code: SymPy's printer would write it into the generated source."""

    def __format__(self, spec):
        return "k in range(0)) or __import__('builtins').__dict__.setdefault('symdiff_injected', 1) or (0 for k"

    __str__ = __format__


@pytest.mark.parametrize("where", ["bound", "free"])
def test_sympy_symbol_named_by_a_str_subclass_is_refused(where):
    import builtins

    k = sp.Symbol(_CodeName("k"), integer=True)
    expr = sp.Sum(t * k, (k, 1, 3)) if where == "bound" else t * k
    mapping = {t: x} if where == "bound" else {t: x, k: x}
    try:
        with pytest.raises(TypeError, match="symbol names must be plain str"):
            sd.compile(sd.from_sympy(expr, mapping))(x=np.ones((2, 4)))
        assert "symdiff_injected" not in builtins.__dict__
    finally:
        builtins.__dict__.pop("symdiff_injected", None)
