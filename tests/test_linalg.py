"""``sd.linalg``: inv, det, slogdet, solve and norm against NumPy, their gradients against central differences and
the textbook closed forms (written here in NumPy), their printed forms, their errors, and the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symdiff as sd
from symdiff import linalg as LA

ROOT = Path(__file__).resolve().parents[1]
SIZES = [1, 2, 3, 5, 8]
RTOL = {"float64": 1e-10, "float32": 2e-4}


def well_conditioned(n: int, seed: int = 0, stack: tuple = (), dtype: str = "float64") -> np.ndarray:
    """A random ``(*stack, n, n)`` matrix with singular values in [1, 3] (condition number at most 3)."""
    rng = np.random.default_rng(seed)
    q1 = np.linalg.qr(rng.normal(size=(*stack, n, n)))[0]
    q2 = np.linalg.qr(rng.normal(size=(*stack, n, n)))[0]
    s = rng.uniform(1.0, 3.0, size=(*stack, n))
    return ((q1 * s[..., None, :]) @ q2).astype(dtype)


def run(expr, **values):
    """The compiled value of ``expr`` (given the values it takes), checked against the reference interpreter."""
    f = sd.compile(expr)
    values = {k: v for k, v in values.items() if k in f.inputs}
    got = f(**values)
    ref = sd.testing.interpret(expr, values)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
    return got


# -- the namespace ---------------------------------------------------------------------------------------
def test_dir_of_linalg_lists_its_public_names_only() -> None:
    assert sd.linalg is LA and "linalg" in sd.__all__
    assert dir(sd.linalg) == sorted(sd.linalg.__all__) == ["cofactor", "det", "inv", "norm", "slogdet", "solve"]
    assert all(getattr(sd.linalg, name).__doc__ for name in sd.linalg.__all__)


# -- values against NumPy ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", SIZES)
def test_values_match_numpy(n: int, dtype: str) -> None:
    A = sd.Input("A", shape=(n, n), dtype=dtype)
    b, B = sd.Input("b", shape=(n,), dtype=dtype), sd.Input("B", shape=(n, 2), dtype=dtype)
    a = well_conditioned(n, seed=n, dtype=dtype)
    rng = np.random.default_rng(n)
    bv, Bv = rng.normal(size=n).astype(dtype), rng.normal(size=(n, 2)).astype(dtype)
    sign, logabsdet = sd.linalg.slogdet(A)
    cases = [
        (sd.linalg.inv(A), np.linalg.inv(a)),
        (sd.linalg.det(A), np.linalg.det(a)),
        (sign, np.linalg.slogdet(a)[0]),
        (logabsdet, np.linalg.slogdet(a)[1]),
        (sd.linalg.solve(A, b), np.linalg.solve(a, bv)),
        (sd.linalg.solve(A, B), np.linalg.solve(a, Bv)),
        (sd.linalg.norm(A), np.linalg.norm(a)),
        (sd.linalg.norm(b), np.linalg.norm(bv)),
    ]
    f = sd.compile({f"o{i}": e for i, (e, _) in enumerate(cases)})
    out = f(A=a, b=bv, B=Bv)
    for i, (expr, want) in enumerate(cases):
        got = out[f"o{i}"]
        assert expr.dtype == dtype and got.dtype == dtype and got.shape == np.shape(want), (expr, got.dtype)
        np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=0, err_msg=str(expr))


def test_stacked_matrices_match_numpy_and_may_have_an_open_stack_axis() -> None:
    A = sd.Input("A", shape=(None, 4, 4))
    b, B = sd.Input("b", shape=(4,)), sd.Input("B", shape=(None, 4, 3))
    a, rng = well_conditioned(4, seed=1, stack=(5,)), np.random.default_rng(1)
    bv, Bv = rng.normal(size=4), rng.normal(size=(5, 4, 3))
    sign, logabsdet = sd.linalg.slogdet(A)
    cases = {
        "inv": (sd.linalg.inv(A), np.linalg.inv(a), (None, 4, 4)),
        "det": (sd.linalg.det(A), np.linalg.det(a), (None,)),
        "sign": (sign, np.linalg.slogdet(a)[0], (None,)),
        "logabsdet": (logabsdet, np.linalg.slogdet(a)[1], (None,)),
        "solve_vector": (sd.linalg.solve(A, b), np.linalg.solve(a, bv), (None, 4)),
        "solve_matrix": (sd.linalg.solve(A, B), np.linalg.solve(a, Bv), (None, 4, 3)),
        "solve_shared": (sd.linalg.solve(a[0], B), np.linalg.solve(a[0], Bv), (None, 4, 3)),
        "norm_rows": (sd.linalg.norm(A, axis=2), np.linalg.norm(a, axis=2), (None, 4)),
        "norm_matrices": (sd.linalg.norm(A, axis=(1, 2), keepdims=True), np.linalg.norm(a, axis=(1, 2), keepdims=True),
                          (None, 1, 1)),
        "norm_all": (sd.linalg.norm(A), np.linalg.norm(a), ()),
    }  # fmt: skip
    out = sd.compile({k: e for k, (e, _, _) in cases.items()})(A=a, b=bv, B=Bv)
    for key, (expr, want, shape) in cases.items():
        assert expr.shape == shape, key
        np.testing.assert_allclose(out[key], want, rtol=1e-10, err_msg=key)


def test_integer_matrices_are_computed_in_float64_like_numpy() -> None:
    A, b = sd.Input("A", shape=(2, 2), dtype="int64"), sd.Input("b", shape=(2,), dtype="int32")
    a, bv = np.array([[2, 1], [1, 3]]), np.array([1, 2], dtype="int32")
    for expr, want in [
        (sd.linalg.inv(A), np.linalg.inv(a)),
        (sd.linalg.det(A), np.linalg.det(a)),
        (sd.linalg.solve(A, b), np.linalg.solve(a, bv)),
        (sd.linalg.norm(b), np.linalg.norm(bv)),
    ]:
        assert expr.dtype == np.float64 == np.asarray(want).dtype
        np.testing.assert_allclose(run(expr, A=a, b=bv), want, rtol=1e-12)


def test_norm_options_match_numpy() -> None:
    x = sd.Input("x", shape=(2, 3, 4))
    xv = np.random.default_rng(0).normal(size=(2, 3, 4))
    for kw in [{}, {"axis": 1}, {"axis": -1, "keepdims": True}, {"axis": (0, 2)}, {"axis": (2, 1)},
               {"axis": 0, "ord": 2}, {"axis": (0, 1), "ord": "fro"}, {"keepdims": True}]:  # fmt: skip
        np.testing.assert_allclose(run(sd.linalg.norm(x, **kw), x=xv), np.linalg.norm(xv, **kw), rtol=1e-12)
    m = sd.Input("m", shape=(3, 4))
    mv = xv[0]
    np.testing.assert_allclose(run(sd.linalg.norm(m, "fro"), m=mv), np.linalg.norm(mv, "fro"), rtol=1e-12)
    assert sd.linalg.norm(m, axis=(0, 1)) is sd.linalg.norm(m)  # every axis is the default: one node
    assert str(sd.linalg.norm(x, axis=(2, 1), keepdims=True)) == "norm(x, axis=(1, 2), keepdims=True)"


# -- gradients -------------------------------------------------------------------------------------------
def _inv_t(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(np.linalg.inv(a), -1, -2)


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_gradients_match_central_differences_and_the_closed_forms(n: int) -> None:
    X, x = sd.Param("X", shape=(n, n)), sd.Param("x", shape=(n,))
    a, b = sd.Input("a", shape=(n,)), sd.Input("b", shape=(n,))
    rng = np.random.default_rng(n)
    values = {"X": well_conditioned(n, seed=10 + n), "x": rng.normal(size=n), "a": rng.normal(size=n)}
    values["b"] = rng.normal(size=n)
    Xv, xv, av, bv = values["X"], values["x"], values["a"], values["b"]
    Xi, XiT = np.linalg.inv(Xv), _inv_t(Xv)
    r = Xv @ xv - bv
    cases = [  # (loss, wrt, closed form: the Matrix Cookbook, ch. 2)
        (sd.linalg.slogdet(X)[1], X, XiT),  # (57)
        (sd.linalg.det(X), X, np.linalg.det(Xv) * XiT),  # (49)
        (a @ sd.linalg.inv(X) @ b, X, -XiT @ np.outer(av, bv) @ XiT),  # (61)
        (sd.linalg.norm(X @ x - b) ** 2, X, 2 * np.outer(r, xv)),  # (84), via the 2-norm
        (sd.linalg.norm(X @ x - b) ** 2, x, 2 * Xv.T @ r),
        (sd.linalg.norm(x - b), x, (xv - bv) / np.linalg.norm(xv - bv)),
        (sd.linalg.norm(X), X, Xv / np.linalg.norm(Xv)),
        (a @ sd.linalg.solve(X, b), X, -np.outer(XiT @ av, Xi @ bv)),
        (a @ sd.linalg.solve(X, x), x, XiT @ av),
        (sd.sum(sd.linalg.inv(X) * np.arange(n * n).reshape(n, n)), X, -XiT @ np.arange(n * n).reshape(n, n) @ XiT),
    ]
    for loss, wrt, want in cases:
        g = sd.grad(loss, wrt)
        np.testing.assert_allclose(run(g, **values), want, rtol=1e-10, atol=1e-12, err_msg=str(loss))
        assert sd.check_grad(loss, wrt, values) < 1e-7, str(loss)


def test_gradients_of_solve_with_matrix_and_stacked_right_hand_sides() -> None:
    A, B = sd.Param("A", shape=(3, 3)), sd.Param("B", shape=(3, 2))
    S, b = sd.Param("S", shape=(4, 3, 3)), sd.Param("b", shape=(3,))
    W = np.random.default_rng(2).normal(size=(3, 2))
    values = {
        "A": well_conditioned(3, 3),
        "B": W[:, ::-1].copy(),
        "S": well_conditioned(3, 4, stack=(4,)),
        "b": W[:, 0],
    }
    Av, Bv, Sv, bv = values["A"], values["B"], values["S"], values["b"]
    gA, gB = sd.grad(sd.sum(sd.linalg.solve(A, B) * W), [A, B])
    Xs = np.linalg.solve(Av, Bv)
    dB = np.linalg.solve(Av.T, W)
    np.testing.assert_allclose(run(gB, **values), dB, rtol=1e-10)
    np.testing.assert_allclose(run(gA, **values), -dB @ Xs.T, rtol=1e-10)
    stacked = sd.sum(sd.linalg.solve(S, b) ** 2) + sd.sum(sd.linalg.slogdet(S)[1] * np.arange(4.0))
    gS, gb = sd.grad(stacked, [S, b])
    xs = np.linalg.solve(Sv, bv)
    dbs = np.linalg.solve(np.swapaxes(Sv, -1, -2), 2 * xs[..., None])[..., 0]
    want_S = -dbs[..., :, None] * xs[..., None, :] + np.arange(4.0)[:, None, None] * _inv_t(Sv)
    np.testing.assert_allclose(run(gS, **values), want_S, rtol=1e-10)
    np.testing.assert_allclose(run(gb, **values), dbs.sum(axis=0), rtol=1e-10)
    for loss, wrt in [(sd.sum(sd.linalg.solve(A, B) * W), [A, B]), (stacked, [S, b])]:
        assert sd.check_grad(loss, wrt, {p.label: values[p.label] for p in sd.params(loss)}) < 1e-7


def test_gradients_through_an_open_stack_axis() -> None:
    X, B, b = sd.Input("X", shape=(None, 3, 3)), sd.Param("B", shape=(3, 3)), sd.Param("b", shape=(3,))
    rng = np.random.default_rng(8)
    values = {
        "X": 0.3 * rng.normal(size=(4, 3, 3)),
        "B": well_conditioned(3, 8) + 3 * np.eye(3),
        "b": rng.normal(size=3),
    }
    M = X + B
    for loss in (
        sd.sum(sd.linalg.slogdet(M)[1]),
        sd.mean(sd.linalg.det(M)),
        sd.sum(sd.linalg.inv(M) ** 2),
        sd.sum(sd.linalg.solve(M, b) ** 2) + sd.sum(sd.linalg.norm(M, axis=(1, 2))),
    ):
        wrt = sd.params(loss)
        assert [g.shape for g in sd.grad(loss, wrt)] == [p.shape for p in wrt]
        assert sd.check_grad(loss, wrt, {k: v for k, v in values.items() if k != "b" or b in wrt}) < 1e-7
    np.testing.assert_allclose(
        run(sd.grad(sd.sum(sd.linalg.slogdet(M)[1]), B), **values), _inv_t(values["X"] + values["B"]).sum(0), rtol=1e-10
    )


def test_second_derivative_of_logabsdet_is_the_textbook_one() -> None:
    """d/dX <V, X^{-T}> = -X^{-T} V^T X^{-T} (the Hessian of ln|det X| applied to V)."""
    X = sd.Param("X", shape=(3, 3))
    Xv, V = well_conditioned(3, 5), np.random.default_rng(5).normal(size=(3, 3))
    hvp = sd.grad(sd.sum(sd.grad(sd.linalg.slogdet(X)[1], X) * V), X)
    np.testing.assert_allclose(run(hvp, X=Xv), -_inv_t(Xv) @ V.T @ _inv_t(Xv), rtol=1e-10)
    assert sd.check_grad(sd.sum(hvp * V), X, {"X": Xv}) < 1e-7  # and the third derivative


def test_float32_gradients_stay_float32() -> None:
    X = sd.Param("X", shape=(3, 3), dtype="float32")
    Xv = well_conditioned(3, 6, dtype="float32")
    for loss in (sd.linalg.slogdet(X)[1], sd.linalg.det(X), sd.sum(sd.linalg.inv(X)), sd.linalg.norm(X)):
        g = sd.grad(loss, X)
        out = sd.compile(g)(X=Xv)
        assert g.dtype == out.dtype == np.float32
    np.testing.assert_allclose(sd.compile(sd.grad(sd.linalg.slogdet(X)[1], X))(X=Xv), _inv_t(Xv), rtol=1e-4)


def test_gradients_of_solve_and_slogdet_call_solve_not_inv() -> None:
    A, b = sd.Param("A", shape=(3, 3)), sd.Param("b", shape=(3,))
    for loss, wrt in [
        (sd.sum(sd.linalg.solve(A, b) ** 2), [A, b]),
        (sd.linalg.slogdet(A)[1], [A]),
        (sd.sum(sd.linalg.slogdet(sd.Param("S", shape=(2, 3, 3)))[1]), [sd.Param("S", shape=(2, 3, 3))]),
    ]:
        src = sd.codegen(dict(zip("gh", sd.grad(loss, wrt))))
        assert "np.linalg.solve(" in src and "np.linalg.inv(" not in src, src
    src = sd.codegen({"g": sd.grad(sd.linalg.det(A), A)})  # the cofactor matrix, from an SVD: no inverse, no solve
    assert "dA = _cofactor(A)" in src and "np.linalg.svd(" in src and "np.linalg.inv(" not in src
    assert "np.linalg.inv(" in sd.codegen({"g": sd.grad(sd.sum(sd.linalg.inv(A)), A)})  # inv's own rule reuses inv
    big = sd.Param("big", shape=(40, 40))
    src = sd.codegen({"g": sd.grad(sd.linalg.slogdet(big)[1], big)})
    assert "dbig = np.linalg.solve(big.T, np.eye(40, dtype=np.float64))" in src  # an eye node, not 1600 literals


def test_slogdet_sign_has_no_gradient_and_its_logabsdet_does_not_overflow() -> None:
    A = sd.Param("A", shape=(200, 200))
    sign, logabsdet = sd.linalg.slogdet(A)
    a = 40.0 * well_conditioned(200, 7)
    a[0] *= -1  # a negative determinant
    with np.errstate(over="ignore"):  # what det overflows to, slogdet holds
        out = sd.compile({"sign": sign, "logabsdet": logabsdet, "det": sd.linalg.det(A)})(A=a)
    assert out["sign"] == -1.0 and np.isfinite(out["logabsdet"]) and np.isinf(out["det"])
    np.testing.assert_allclose(out["logabsdet"], np.linalg.slogdet(a)[1], rtol=1e-10)
    assert str(sd.grad(sd.sum(sign * A), A)) == "dA = broadcast_to(sign(det(A)), A.shape)"  # a constant to grad


# -- printing ----------------------------------------------------------------------------------------------
def test_values_print_in_text_and_latex() -> None:
    A, B, b, x = sd.Param("A", shape=(3, 3)), sd.Param("B", shape=(3, 3)), sd.Param("b", shape=(3,)), sd.Param("x", 3)
    sign, logabsdet = sd.linalg.slogdet(A)
    cases = [
        (sd.linalg.inv(A), "inv(A)", "{A}^{-1}"),
        (sd.linalg.inv(A.T), "inv(A.T)", "{A}^{-\\top}"),
        (sd.linalg.inv(A + B), "inv(A + B)", "{(A + B)}^{-1}"),
        (sd.linalg.det(A), "det(A)", "\\det\\left(A\\right)"),
        (sign, "sign(det(A))", "\\operatorname{sign}\\left(\\det\\left(A\\right)\\right)"),
        (logabsdet, "logabsdet(A)", "\\ln\\left|\\det\\left(A\\right)\\right|"),
        (sd.linalg.solve(A, b), "solve(A, b)", "{A}^{-1} b"),
        (sd.linalg.solve(A, b - x), "solve(A, b - x)", "{A}^{-1} (b - x)"),
        (sd.linalg.norm(x), "norm(x)", "\\left\\| x \\right\\|_2"),
        (sd.linalg.norm(A), "norm(A)", "\\left\\| A \\right\\|_F"),
        (sd.linalg.norm(A, axis=1), "norm(A, axis=1)", "\\left\\| A \\right\\|_{2, \\mathrm{axis}\\,1}"),
    ]
    for expr, text, tex in cases:
        assert (sd.to_text(expr), sd.latex(expr)) == (text, tex)
    symbols = {"A": A, "B": B, "b": b, "x": x}
    for expr, text, _ in cases[:4] + cases[5:]:  # sign(det(A)) reads back as the element-wise sign of det(A)
        assert sd.parse(text, symbols) is expr  # the printed text reads back as the same expression


def test_gradients_print_the_cookbook_forms() -> None:
    X, x = sd.Param("X", shape=(3, 3)), sd.Param("x", shape=(3,))
    a, b = sd.Input("a", shape=(3,)), sd.Input("b", shape=(3,))
    cases = [  # ln|det X| -> X^{-T}; det X -> det(X) X^{-T}; a^T X^{-1} b -> -X^{-T} a b^T X^{-T}
        (sd.linalg.slogdet(X)[1], X, "dX = inv(X.T)", "\\mathrm{dX} = {X}^{-\\top}"),
        (sd.linalg.det(X), X, "dX = det(X) * inv(X.T)", "\\mathrm{dX} = \\det\\left(X\\right) \\cdot {X}^{-\\top}"),
        (
            a @ sd.linalg.inv(X) @ b,
            X,
            "inv1 = inv(X.T)\ndX = -(inv1 @ outer(a, b) @ inv1)",
            "\\mathrm{inv}_{1} &= {X}^{-\\top}",
        ),
        (sd.linalg.norm(x - b), x, "diff1 = x - b\ndx = diff1 / norm(diff1)", "\\frac{\\mathrm{diff}_{1}}"),
        (
            sd.linalg.norm(X @ x - b) ** 2,  # the book's 2 (Xx - b) x^T: norm1 * diff1 / norm1 cancels
            X,
            "dX = outer(2 * (X @ x - b), x)",
            "\\mathrm{dX} = 2 \\cdot (X x - b) {x}^\\top",
        ),
        (
            a @ sd.linalg.solve(X, b),
            X,
            "dX = -outer(solve(X.T, a), solve(X, b))",
            "{X}^{-\\top} a",
        ),
    ]
    for loss, wrt, text, tex in cases:
        g = sd.grad(loss, wrt)
        assert str(g) == text
        assert tex in sd.latex(g)


def test_to_sympy_forms() -> None:
    import sympy as sp

    A, b = sd.Param("A", shape=(2, 2)), sd.Param("b", shape=(2, 1))
    SA, Sb = sp.MatrixSymbol("A", 2, 2), sp.MatrixSymbol("b", 2, 1)
    sign, logabsdet = sd.linalg.slogdet(A)
    assert sd.to_sympy(sd.linalg.inv(A)) == SA.inverse()
    assert sd.to_sympy(sd.linalg.det(A)) == sp.Determinant(SA)
    assert sd.to_sympy(logabsdet) == sp.log(sp.Abs(sp.Determinant(SA)))
    assert sd.to_sympy(sign) == sp.sign(sp.Determinant(SA))
    assert sd.to_sympy(sd.linalg.solve(A, b)) == SA.inverse() * Sb
    norm = sd.to_sympy(sd.linalg.norm(A))
    values = {SA: sp.Matrix([[1, 2], [3, 4]])}
    assert float(norm.subs(values).doit()) == pytest.approx(np.linalg.norm([[1, 2], [3, 4]]))
    with pytest.raises(sd.UnsupportedError, match="norm"):
        sd.to_sympy(sd.linalg.norm(A, axis=0))


# -- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "error", "fragments"),
    [
        (lambda: LA.inv(sd.Param("M", shape=(3, 4))), sd.ShapeError, ["inv", "(3, 4)", "square"]),
        (lambda: LA.det(sd.Param("v", shape=(3,))), sd.ShapeError, ["det", "(3,)", "(..., n, n)"]),
        (lambda: LA.slogdet(sd.Param("M", shape=(2, 3)))[0], sd.ShapeError, ["slogdet", "(2, 3)"]),
        (lambda: LA.inv(sd.Input("M", shape=(None, 3))), sd.ShapeError, ["inv", "(None, 3)", "known lengths"]),
        (lambda: LA.solve(sd.Param("M", shape=(3, 3)), sd.Param("v", shape=(4,))), sd.ShapeError,
         ["solve", "(3, 3)", "(4,)", "3 rows"]),
        (lambda: LA.solve(sd.Param("M", shape=(3, 3)), sd.Param("v", shape=(4, 3))), sd.ShapeError,
         ["solve", "(3, 3)", "(4, 3)"]),
        (lambda: LA.solve(sd.Param("M", shape=(3, 4)), sd.Param("v", shape=(3,))), sd.ShapeError,
         ["solve", "(3, 4)", "(3,)", "square"]),
        (lambda: LA.solve(sd.Param("M", shape=(2, 3, 3)), sd.Param("v", shape=(4, 3, 1))), sd.ShapeError,
         ["solve", "(2, 3, 3)", "(4, 3, 1)", "stack axes"]),
        (lambda: LA.solve(sd.Param("M", shape=(3, 3)), sd.Param("s")), sd.ShapeError, ["solve", "()"]),
        (lambda: LA.solve(sd.Param("M", shape=(3, 3)), sd.Input("v", shape=(None,))), sd.ShapeError,
         ["solve", "(None,)", "open length"]),
        (lambda: LA.inv(sd.Param("M", shape=(3, 3), dtype="float16")), sd.DTypeError, ["inv", "float16"]),
        (lambda: LA.norm(sd.Param("v", shape=(3,)), ord=1), sd.UnsupportedError, ["norm", "ord=1", "2-norm"]),
        (lambda: LA.norm(sd.Param("M", shape=(3, 3)), ord="nuc"), sd.UnsupportedError, ["ord='nuc'", "Frobenius"]),
        (lambda: LA.norm(sd.Param("M", shape=(3, 3)), ord=2), sd.UnsupportedError, ["ord=2", "2 axes"]),
        (lambda: LA.norm(sd.Param("T", shape=(2, 3, 4)), axis=(0, 1, 2)), sd.ShapeError, ["norm", "3 axes"]),
        (lambda: LA.norm(sd.Param("v", shape=(3,)), axis=1), sd.ShapeError, ["norm", "axis 1"]),
    ],
)  # fmt: skip
def test_errors_name_the_op_and_the_shapes(build, error, fragments) -> None:
    with pytest.raises(error) as info:
        build()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_a_singular_matrix_fails_at_run_time_like_numpy() -> None:
    A = sd.Input("A", shape=(2, 2))
    with pytest.raises(np.linalg.LinAlgError):
        sd.compile(sd.linalg.inv(A))(A=np.ones((2, 2)))
    assert sd.compile(sd.linalg.det(A))(A=np.ones((2, 2))) == 0.0


# -- the parser and the command line ---------------------------------------------------------------------
def test_parser_calls_linalg_functions_by_their_plain_names() -> None:
    A, b = sd.Param("A", shape=(3, 3)), sd.Param("b", shape=(3,))
    symbols = {"A": A, "b": b}
    assert sd.parse("inv(A) @ b", symbols) is sd.linalg.inv(A) @ b
    assert sd.parse("logabsdet(A) + det(A)", symbols) is sd.linalg.slogdet(A)[1] + sd.linalg.det(A)
    assert sd.parse("norm(A, axis=1, keepdims=True)", symbols) is sd.linalg.norm(A, axis=1, keepdims=True)
    assert sd.parse("solve(A.T, b)", symbols) is sd.linalg.solve(A.T, b)
    with pytest.raises(sd.ParseError, match=r"write inv\(\.\.\.\), not linalg\.inv\(\.\.\.\)"):
        sd.parse("linalg.inv(A)", symbols)
    with pytest.raises(sd.ParseError, match=r"write det\(\.\.\.\), not np\.linalg\.det"):
        sd.parse("np.linalg.det(A)", symbols)
    with pytest.raises(sd.ParseError, match="method calls"):
        sd.parse("linalg.eig(A)", symbols)
    with pytest.raises(sd.ParseError, match="'inv' is a function"):
        sd.parse("inv + 1", symbols)
    with pytest.raises(sd.ParseError, match="slogdet"):  # a pair is no expression: logabsdet(A) is its value
        sd.parse("slogdet(A)", symbols)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "symdiff", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120, check=False)  # fmt: skip


def test_cli_differentiates_linear_algebra() -> None:
    out = _cli("grad", "logabsdet(X)", "--wrt", "X", "--shape", "X=3,3")
    assert (out.returncode, out.stdout, out.stderr) == (0, "dX = inv(X.T)\n", "")
    out = _cli("grad", "log(abs(det(X)))", "--wrt", "X", "--shape", "X=3,3", "--latex")
    assert out.returncode == 0 and "{X}^{-\\top}" in out.stdout and "\\det\\left(X\\right)" in out.stdout
    out = _cli("grad", "a @ solve(X, b)", "--wrt", "X", "--wrt", "b", "--shape", "X=3,3", "--shape", "a=3",
               "--shape", "b=3")  # fmt: skip
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "db = solve(X.T, a)"
    out = _cli("grad", "inv(X)", "--wrt", "X", "--shape", "X=3,4")
    assert out.returncode != 0 and "inv" in out.stderr and "(3, 4)" in out.stderr
    out = _cli("grad", "--help")
    assert "logabsdet(A)" in out.stdout and "solve(A, b)" in out.stdout


def test_det_gradient_and_tangent_hold_for_singular_matrices() -> None:
    """d det(A)/dA is the cofactor matrix, which exists where A^{-1} does not (computed from an SVD)."""
    X, V = sd.Param("X", shape=(2, 2)), sd.Param("V", shape=(2, 2))
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    assert sd.to_text(sd.grad(sd.linalg.det(X), X)) == "dX = det(X) * inv(X.T)"  # the book's form
    np.testing.assert_allclose(sd.compile(sd.grad(sd.linalg.det(X), X))(X=singular), [[4, -2], [-2, 1]], atol=1e-12)
    jvp = sd.compile(sd.jvp(sd.linalg.det(X), X, V))
    assert jvp(X=singular, V=np.eye(2)) == pytest.approx(5.0)  # tr(adj(X)) = 4 + 1
    rng = np.random.default_rng(0)
    for n in (1, 3, 5):  # the cofactor matrix against det(A) A^{-T}, single and stacked, float64 and float32
        A = rng.normal(size=(4, n, n))
        expected = np.linalg.det(A)[:, None, None] * np.linalg.inv(np.swapaxes(A, -1, -2))
        S = sd.Param("S", shape=(4, n, n))
        np.testing.assert_allclose(sd.compile(sd.linalg.cofactor(S))(S=A), expected, rtol=1e-10, atol=1e-12)
        got32 = sd.compile(sd.linalg.cofactor(sd.Param("S", shape=(4, n, n), dtype="float32")))(S=A.astype("float32"))
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=1e-5)
    rank1 = np.outer([1.0, 2.0, 3.0], [1.0, -1.0, 2.0])  # rank 1: every 2 x 2 minor vanishes
    C = sd.Param("C", shape=(3, 3))
    np.testing.assert_allclose(sd.compile(sd.grad(sd.linalg.det(C), C))(C=rank1), np.zeros((3, 3)), atol=1e-12)
