"""The identities of *The Matrix Cookbook* (Petersen & Pedersen, ch. 2): symdiff's printed gradient of each, its
value against the book's closed form (written here in NumPy; float64, random inputs, rtol 1e-10) and against
central differences.

The standard is the book's closed form. Where symdiff prints an equivalent form that is arranged differently or
longer, the case says so in its ``note`` and pins symdiff's string explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import symdiff as sd

N = 4
RTOL = 1e-10  # symdiff's value against the book's closed form
FD_RTOL = 1e-6  # central differences (eps 1e-6) against symdiff's value

a, b, c, x = (sd.Input(k, shape=(N,)) for k in "abcx")
A, B, C, D = (sd.Input(k, shape=(N, N)) for k in "ABCD")
X = sd.Param("X", shape=(N, N))
xp = sd.Param("x", shape=(N,))  # the variable of the vector identities (named x, like the book's)


def _values(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vals = {k: rng.normal(size=N) for k in "abc"}
    vals.update({k: rng.normal(size=(N, N)) for k in "ABCD"})
    vals["X"] = rng.normal(size=(N, N)) + N * np.eye(N)  # well conditioned: det, inv and log|det| are smooth here
    vals["x"] = rng.normal(size=N)
    return vals


@dataclass(frozen=True)
class Identity:
    """``d f / d wrt``: symdiff prints ``text``; the book's closed form is ``book(**values)``."""

    name: str
    f: Callable[[], sd.Expr]
    wrt: sd.Expr
    text: str
    book: Callable[..., np.ndarray]
    note: str = ""  # why symdiff's form differs from the book's (empty: it is the book's)


inv = np.linalg.inv
IDENTITIES = [
    # (69) d a^T X b / dX = a b^T
    Identity("aTXb", lambda: a @ X @ b, X, "dX = outer(a, b)", lambda a, b, **_: np.outer(a, b)),
    # (70) d a^T X^T b / dX = b a^T
    Identity("aTXTb", lambda: a @ X.T @ b, X, "dX = outer(b, a)", lambda a, b, **_: np.outer(b, a)),
    # (77) d b^T X^T X c / dX = X (b c^T + c b^T)
    Identity(
        "bTXTXc",
        lambda: b @ X.T @ X @ c,
        X,
        "dX = outer(X @ b, c) + outer(X @ c, b)",
        lambda X, b, c, **_: X @ (np.outer(b, c) + np.outer(c, b)),
        note="X distributed over the sum: X b c^T + X c b^T",
    ),
    # (80) d (Xb + c)^T D (Xb + c) / dX = (D + D^T)(Xb + c) b^T
    Identity(
        "XbcTDXbc",
        lambda: (X @ b + c) @ D @ (X @ b + c),
        X,
        "dX = outer((D + D.T) @ (X @ b + c), b)",
        lambda X, b, c, D, **_: np.outer((D + D.T) @ (X @ b + c), b),
    ),
    # (81) d x^T B x / dx = (B + B^T) x
    Identity(
        "xTBx",
        lambda: xp @ B @ xp,
        xp,
        "dx = (B + B.T) @ x",
        lambda x, B, **_: (B + B.T) @ x,
    ),
    # (84) d ||Ax - b||^2 / dx = 2 A^T (Ax - b)
    Identity(
        "normAxb2",
        lambda: sd.sum((A @ xp - b) ** 2),
        xp,
        "dx = 2 * (A.T @ (A @ x - b))",
        lambda A, x, b, **_: 2 * A.T @ (A @ x - b),
    ),
    # the 2-norm itself: d ||x - a|| / dx = (x - a) / ||x - a||
    Identity(
        "normxa",
        lambda: sd.linalg.norm(xp - a),
        xp,
        "diff1 = x - a\ndx = diff1 / norm(diff1)",
        lambda x, a, **_: (x - a) / np.linalg.norm(x - a),
        note="x - a is shared, so it gets a line of its own (diff1)",
    ),
    # (100) d tr(AXB) / dX = A^T B^T
    Identity("trAXB", lambda: sd.trace(A @ X @ B), X, "dX = A.T @ B.T", lambda A, B, **_: A.T @ B.T),
    # (103) d tr(X^T X) / dX = 2 X
    Identity("trXTX", lambda: sd.trace(X.T @ X), X, "dX = 2 * X", lambda X, **_: 2 * X),
    # (106) d tr(X^2) / dX = 2 X^T
    Identity("trX2", lambda: sd.trace(X @ X), X, "dX = 2 * X.T", lambda X, **_: 2 * X.T),
    # (113) d tr(X B X^T) / dX = X B^T + X B
    Identity(
        "trXBXT",
        lambda: sd.trace(X @ B @ X.T),
        X,
        "dX = X @ (B + B.T)",
        lambda X, B, **_: X @ B.T + X @ B,
        note="X factored out of the book's X B^T + X B",
    ),
    # (117) d tr(A X B X^T C) / dX = A^T C^T X B^T + C A X B
    Identity(
        "trAXBXTC",
        lambda: sd.trace(A @ X @ B @ X.T @ C),
        X,
        "dX = C @ (A @ X @ B) + A.T @ (C.T @ X @ B.T)",
        lambda A, X, B, C, **_: A.T @ C.T @ X @ B.T + C @ A @ X @ B,
        note="the terms in the other order, each product with the parentheses of its evaluation order",
    ),
    # (49) d det(X) / dX = det(X) X^{-T}
    Identity(
        "detX",
        lambda: sd.linalg.det(X),
        X,
        "dX = det(X) * inv(X.T)",
        lambda X, **_: np.linalg.det(X) * inv(X).T,
    ),
    # (57) d ln|det X| / dX = X^{-T}
    Identity("logabsdetX", lambda: sd.linalg.slogdet(X)[1], X, "dX = inv(X.T)", lambda X, **_: inv(X).T),
    # (61) d a^T X^{-1} b / dX = -X^{-T} a b^T X^{-T}
    Identity(
        "aTXinvb",
        lambda: a @ sd.linalg.inv(X) @ b,
        X,
        "inv1 = inv(X.T)\ndX = -(inv1 @ outer(a, b) @ inv1)",
        lambda X, a, b, **_: -inv(X).T @ np.outer(a, b) @ inv(X).T,
        note="X^{-T}, used twice, gets a line of its own (inv1)",
    ),
]


def _compiled(e: sd.Expr) -> Callable[..., np.ndarray]:
    f = sd.compile(e)
    return lambda **v: f(**{k: val for k, val in v.items() if k in f.inputs})


@pytest.mark.parametrize("case", IDENTITIES, ids=lambda c: c.name)
def test_cookbook_gradient_prints_the_book_form(case: Identity) -> None:
    assert sd.to_text(sd.grad(case.f(), case.wrt)) == case.text
    assert "const(" not in case.text and "expand_dims" not in case.text and ".0" not in case.text


@pytest.mark.parametrize("case", IDENTITIES, ids=lambda c: c.name)
def test_cookbook_gradient_equals_the_closed_form_and_central_differences(case: Identity) -> None:
    vals = _values()
    f = case.f()
    got = _compiled(sd.grad(f, case.wrt))(**vals)
    np.testing.assert_allclose(got, case.book(**vals), rtol=RTOL, atol=1e-12)
    numeric = sd.numeric_grad(_compiled(f), vals, case.wrt.label)
    np.testing.assert_allclose(numeric, got, rtol=FD_RTOL, atol=1e-6)


def test_outer_product_prints_a_b_transposed_in_latex() -> None:
    assert sd.latex(sd.grad(a @ X @ b, X)) == "\\mathrm{dX} = a {b}^\\top"
    assert sd.latex(sd.grad(a @ X.T @ b, X)) == "\\mathrm{dX} = b {a}^\\top"


def test_cookbook_trace_written_as_a_sum_times_the_identity_is_a_trace() -> None:
    """tr(AXB) written sum(AXB * I), with sd.eye or a constant that equals an identity: the same trace."""
    for eye in (sd.eye(N), sd.constant(np.eye(N))):
        f = sd.sum(A @ X @ B * eye)
        assert sd.to_text(sd.simplify(f)) == "trace(A @ X @ B)"
        assert sd.to_text(sd.grad(f, X)) == "dX = A.T @ B.T"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# -- Hessians ---------------------------------------------------------------------------------------------
def _check_columns(f: Callable[..., np.ndarray], vals: dict, got: np.ndarray) -> None:
    """Column j of ``got`` (a Jacobian in x) equals the central difference of ``f`` along x_j."""
    for j in range(N):
        step = np.zeros(N)
        step[j] = 1e-6
        fd = (f(**{**vals, "x": vals["x"] + step}) - f(**{**vals, "x": vals["x"] - step})) / 2e-6
        np.testing.assert_allclose(fd, got[..., j], rtol=FD_RTOL, atol=1e-6)


@pytest.mark.parametrize(
    "build, text, book",
    [
        (lambda: xp @ B @ xp, "d2x = B + B.T", lambda B, **_: B + B.T),  # (81)'s Hessian
        (lambda: sd.sum((A @ xp - b) ** 2), "d2x = 2 * (A.T @ A)", lambda A, **_: 2 * A.T @ A),  # (84)'s
        (lambda: sd.sum(xp * a) ** 2, "d2x = outer(2 * a, a)", lambda a, **_: 2 * np.outer(a, a)),
        (lambda: sd.sum(xp**3), "d2x = 6 * diag(x)", lambda x, **_: 6 * np.diag(x)),
        (  # the Jacobian of softmax s: diag(s) - s s^T (dx, the gradient, is s itself)
            lambda: sd.logsumexp(xp),
            "dx = softmax(x)\nd2x = diag(dx) - outer(dx, dx)",
            lambda x, **_: np.diag(_softmax(x)) - np.outer(_softmax(x), _softmax(x)),
        ),
    ],
    ids=["xTBx", "normAxb2", "aTx2", "sumx3", "logsumexp"],
)
def test_cookbook_hessian_prints_the_book_form(build, text, book) -> None:
    h = sd.hessian(build(), xp)
    assert sd.to_text(h) == text
    vals = _values()
    got = _compiled(h)(**vals)
    np.testing.assert_allclose(got, book(**vals), rtol=RTOL)
    _check_columns(_compiled(sd.grad(build(), xp)), vals, got)


def test_logistic_regression_hessian_reads_X_transposed_p_1_minus_p_X_over_n() -> None:
    """The book's X^T diag(p (1 - p)) X / n, written with the broadcast product X.T * p * (1 - p)."""
    Xd, y, w = sd.Input("X", shape=(None, 3)), sd.Input("y", shape=(None,)), sd.Param("w", shape=(3,))
    h = sd.hessian(sd.sigmoid_cross_entropy(Xd @ w, y), w)
    assert sd.to_text(h) == "sigmoid1 = sigmoid(X @ w)\nn = X.shape[0]\nd2w = X.T * sigmoid1 * (1 - sigmoid1) / n @ X"
    rng = np.random.default_rng(1)
    vals = {"X": rng.normal(size=(7, 3)), "y": rng.uniform(size=7), "w": rng.normal(size=3)}
    p = 1 / (1 + np.exp(-vals["X"] @ vals["w"]))
    book = vals["X"].T @ ((p * (1 - p))[:, None] * vals["X"]) / 7
    np.testing.assert_allclose(_compiled(h)(**vals), book, rtol=RTOL)


# -- Jacobians: the identity tangent leaves no constant behind ------------------------------------------
@pytest.mark.parametrize(
    "build, text",
    [
        (lambda: A @ xp, "dx = A"),
        (lambda: sd.tanh(xp), "dx = diag(1 - tanh(x)**2)"),
        (lambda: -(xp**2), "dx = -(2 * diag(x))"),
        (lambda: A @ sd.tanh(xp), "dx = A @ diag(1 - tanh(x)**2)"),
        (lambda: sd.softmax(xp), "softmax1 = softmax(x)\ndx = diag(softmax1) - outer(softmax1, softmax1)"),
    ],
    ids=["linear", "elementwise", "scaled", "chain", "softmax"],
)
def test_jacobian_prints_no_dense_identity_constant(build, text) -> None:
    jac = sd.jacobian(build(), xp)
    assert sd.to_text(jac) == text
    vals = _values()
    _check_columns(_compiled(build()), vals, _compiled(jac)(**vals))
