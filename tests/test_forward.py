"""Forward mode and the derivative toolkit: ``sd.jvp``, ``sd.vjp``, ``sd.hvp``, ``sd.jacobian``, ``sd.hessian``.

The generic checks run over the gradient spec rows of ``tests/test_ops_grad.py`` (every op, every shape row):
the JVP along a random direction against central differences, and against the VJP by duality.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_ops_grad import CASES, _values

import symdiff as sd
from symdiff.derivatives import MAX_ELEMENTS
from symdiff.graph import SYMBOL_OPS, topo_order
from symdiff.naming import latex_name


def _run(expr: sd.Expr, values: dict) -> np.ndarray:
    """``expr`` compiled and called with the values of the symbols it uses."""
    used = {n.label for n in [*sd.params(expr), *sd.inputs(expr)]}
    return sd.compile(expr)(**{k: v for k, v in values.items() if k in used})


def _row(spec, shapes, seed: int = 0):
    params = [sd.Param(f"p{i}", shape=s) for i, s in enumerate(shapes)]
    out = spec.build(*params)
    values = {p.label: v for p, v in zip(params, _values(shapes, spec.domain, seed))}
    rng = np.random.default_rng(seed + 1)
    directions = [rng.normal(size=s) for s in shapes]
    return out, params, values, directions


@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_jvp_matches_central_differences_along_a_direction(spec, shapes) -> None:
    out, params, values, directions = _row(spec, shapes)
    tangent = sd.jvp(out, params, directions)
    assert tangent.shape == out.shape and tangent.dtype == out.dtype
    got = _run(tangent, values)
    f, h = sd.compile(out), 1e-6 if out.dtype == np.float64 else 1e-2

    def at(step: float) -> np.ndarray:
        return f(**{p.label: values[p.label] + step * d for p, d in zip(params, directions)})

    expected = (at(h) - at(-h)) / (2 * h)
    tol = 1e-6 if spec.tol < 1e-3 else spec.tol
    assert np.max(np.abs(got - expected)) <= tol * (1 + np.max(np.abs(expected)))


@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_jvp_and_vjp_are_transposes_of_each_other(spec, shapes) -> None:
    """u . (J v) == (J^T u) . v, both sides symbolic (rtol 1e-10 in float64)."""
    out, params, values, directions = _row(spec, shapes, seed=5)
    u = np.random.default_rng(9).normal(size=out.shape)
    forward = np.sum(u * _run(sd.jvp(out, params, directions), values))
    pulled = sd.vjp(out, params, u)
    assert [g.shape for g in pulled] == [p.shape for p in params]
    backward = sum(np.sum(_run(g, values) * d) for g, d in zip(pulled, directions))
    rtol = 1e-10 if spec.tol < 1e-3 else 1e-5
    assert forward == pytest.approx(backward, rel=rtol, abs=rtol)


@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_jacobian_batch_of_tangents_agrees_with_single_tangents(spec, shapes) -> None:
    """Every tangent rule with a batch of tangents (the identity, as jacobian pushes it) against the same rule
    with one tangent: J contracted with v equals jvp along v, for each argument (rtol 1e-10)."""
    out, params, values, directions = _row(spec, shapes, seed=11)
    for p, d in zip(params, directions):
        jac = sd.jacobian(out, p)
        assert jac.shape == out.shape + p.shape and jac.dtype == out.dtype
        got = np.tensordot(_run(jac, values), d, axes=p.ndim) if p.ndim else _run(jac, values) * d
        expected = _run(sd.jvp(out, p, d), values)
        rtol = 1e-10 if spec.tol < 1e-3 else 1e-5
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * (1 + np.max(np.abs(expected))))


# -- cost: a small constant times the forward pass --------------------------------------------------------------------
def _ops(expr: sd.Expr) -> int:
    """The computing nodes of the simplified graph (what the compiled function evaluates; leaves excluded)."""
    return sum(1 for n in topo_order([sd.simplify(expr)]) if n.op not in (*SYMBOL_OPS, "const"))


def _mlp():
    x = sd.Input("x", shape=(None, 4))
    w1, b1, w2, b2 = sd.Param("W1", shape=(4, 8)), sd.Param("b1", shape=(8,)), sd.Param("W2", shape=(8, 3)), 0.5
    return sd.softmax(sd.tanh(x @ w1 + b1) @ w2 + b2), [w1, b1, w2]


def _op_heavy():
    a, b = sd.Param("a", shape=(3, 4)), sd.Param("b", shape=(4, 5))
    h = sd.log_softmax(sd.concatenate([a, sd.exp(a)], axis=1)[:, 1:5] @ b, axis=0)
    return sd.logsumexp(sd.tensordot(h, sd.sigmoid(b), axes=((1,), (1,))) * sd.max(a, axis=1, keepdims=True)), [a, b]


def _elementwise_chain():
    x = sd.Param("x", shape=(5,))
    return sd.sum(sd.sqrt(sd.softplus(sd.sin(x) * sd.cos(x) / (1 + x**2)) + 1.0)), [x]


@pytest.mark.parametrize(("build", "which"), [(_mlp, slice(None)), (_op_heavy, slice(1, 2)), (_elementwise_chain, 0)])
def test_jvp_costs_at_most_three_forward_passes(build, which) -> None:
    """On an MLP (all its params), a softmax/tensordot/max graph and a chain of element-wise functions.

    (The op-heavy graph with respect to both of its params is 4.0x: each bilinear op with two differentiated
    arguments costs its forward product, two tangent products and a sum.)
    """
    y, targets = build()
    targets = targets[which] if isinstance(which, slice) else [targets[which]]
    directions = [sd.Param(f"v{i}", shape=t.shape) for i, t in enumerate(targets)]
    ratio = _ops(sd.jvp(y, targets, directions)) / _ops(y)
    assert ratio <= 3, ratio


def test_jvp_is_one_forward_sweep_not_a_transposed_backward_pass() -> None:
    """The tangent of x @ W along V is x @ V: no transpose of W or of x appears, as it would from reverse mode."""
    x, w = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 4))
    v = sd.Param("V", shape=(3, 4))
    assert sd.to_text(sd.jvp(sd.tanh(x @ w), w, v)) == "x @ V * (1 - tanh(x @ W)**2)"


# -- results are ordinary expressions ---------------------------------------------------------------------------------
def test_jvp_result_prints_compiles_and_differentiates_again() -> None:
    x, v = sd.Param("x", shape=(3,)), sd.Param("v", shape=(3,))
    t = sd.jvp(sd.sum(sd.sin(x) * x), x, v)
    assert t.shape == () and sd.to_text(t) and sd.latex(t) and "def f" in sd.codegen({"t": t}, name="f")
    xv, vv = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.5, -2.0])
    np.testing.assert_allclose(sd.compile(t)(x=xv, v=vv), np.sum((np.cos(xv) * xv + np.sin(xv)) * vv), rtol=1e-12)
    # d/dx of the directional derivative is H v
    hv = sd.compile(sd.grad(t, x))(x=xv, v=vv)
    np.testing.assert_allclose(hv, (2 * np.cos(xv) - np.sin(xv) * xv) * vv, rtol=1e-12)


def test_hessian_of_several_targets_prints_compiles_and_generates_code_as_nested_blocks() -> None:
    """The nested list of blocks is taken as it is: printed under the blocks' names, compiled (and generated) into
    a function returning tuples nested alike, each block against its closed form."""
    x, y = sd.Param("x", shape=(2,)), sd.Param("y", shape=(3,))
    blocks = sd.hessian(sd.sum(x * x) + sd.sum(y * y) + sd.sum(sd.sin(x)) * sd.sum(y), [x, y])
    text, tex = sd.to_text(blocks), sd.latex(blocks)
    for name in ("d2x", "dx_dy", "dy_dx", "d2y"):
        assert any(line.startswith(f"{name} = ") for line in text.splitlines()), text
        assert f"{latex_name(name)} &= " in tex
    assert "Compute out0_0, out0_1, out1_0, out1_1 from the symbols." in sd.codegen(blocks)
    xv, yv = np.array([0.3, 1.1]), np.array([1.0, -2.0, 0.5])
    expected = [
        [2 * np.eye(2) - np.diag(np.sin(xv)) * yv.sum(), np.outer(np.cos(xv), np.ones(3))],
        [np.outer(np.ones(3), np.cos(xv)), 2 * np.eye(3)],
    ]
    for optimize in (True, False):
        got = sd.compile(blocks, optimize=optimize)(x=xv, y=yv)
        assert isinstance(got, tuple) and [len(row) for row in got] == [2, 2]
        for got_row, row in zip(got, expected):
            for g, e in zip(got_row, row):
                np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-15)
    with pytest.raises(TypeError, match="to_text takes an expression"):
        sd.to_text([[x, "y"]])


def test_jvp_of_an_expression_that_does_not_use_the_target_is_zeros() -> None:
    x, w = sd.Input("x", shape=(None, 2)), sd.Param("w", shape=(2,))
    z = sd.jvp(sd.exp(x), w, np.ones(2))
    assert z.shape == (None, 2)
    np.testing.assert_array_equal(sd.compile(z)(x=np.ones((3, 2))), np.zeros((3, 2)))


def test_vjp_of_a_non_scalar_output_pulls_the_cotangent_back() -> None:
    x, w = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 4))
    u = sd.Input("u", shape=(None, 4))
    g = sd.vjp(sd.tanh(x @ w), w, u)
    assert g.shape == (3, 4) and g.name == "dW"
    rng = np.random.default_rng(0)
    xv, wv, uv = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    expected = xv.T @ (uv * (1 - np.tanh(xv @ wv) ** 2))
    np.testing.assert_allclose(sd.compile(g)(x=xv, W=wv, u=uv), expected, rtol=1e-12)


# -- jacobian and hessian ---------------------------------------------------------------------------------------------
def test_jacobian_of_a_batch_shaped_layer_has_the_open_axis_in_its_shape() -> None:
    x, w = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 4))
    jac = sd.jacobian(x @ w, w)
    assert jac.shape == (None, 4, 3, 4)
    xv = np.random.default_rng(1).normal(size=(5, 3))
    expected = np.einsum("ni,kj->nkij", xv, np.eye(4))  # d(xW)[n, k] / dW[i, j] = x[n, i] [k == j]
    np.testing.assert_allclose(sd.compile(jac)(x=xv), expected, rtol=1e-10, atol=0)
    jx = sd.jacobian(x @ w, [w])[0]
    assert jx.shape == (None, 4, 3, 4)


def test_jacobian_of_a_tanh_layer_matches_the_closed_form_and_central_differences() -> None:
    x, w, b = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 2)), sd.Param("b", shape=(2,))
    y = sd.tanh(x @ w + b)
    jw, jb = sd.jacobian(y, [w, b])
    assert jw.shape == (None, 2, 3, 2) and jb.shape == (None, 2, 2)
    rng = np.random.default_rng(2)
    values = {"x": rng.normal(size=(4, 3)), "W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    s = 1 - np.tanh(values["x"] @ values["W"] + values["b"]) ** 2
    np.testing.assert_allclose(_run(jb, values), np.einsum("nk,kj->nkj", s, np.eye(2)), rtol=1e-10)
    expected = np.einsum("nk,ni,kj->nkij", s, values["x"], np.eye(2))
    np.testing.assert_allclose(sd.compile(jw)(**values), expected, rtol=1e-10, atol=1e-15)
    f, h, numeric = sd.compile(y), 1e-6, np.zeros((4, 2, 3, 2))
    for i, j in np.ndindex(3, 2):
        step = np.zeros((3, 2))
        step[i, j] = h
        up, down = dict(values, W=values["W"] + step), dict(values, W=values["W"] - step)
        numeric[:, :, i, j] = (f(**up) - f(**down)) / (2 * h)
    np.testing.assert_allclose(sd.compile(jw)(**values), numeric, rtol=1e-6, atol=1e-9)


def _batch_graphs():
    x, labels = sd.Input("x", shape=(None, 3)), sd.Input("labels", shape=(None,), dtype="int64")
    w, b = sd.Param("W", shape=(3, 4)), sd.Param("b", shape=(4,))
    h = x @ w + b
    return {
        "broadcast+softmax": sd.softmax(h) * sd.max(h, axis=1, keepdims=True),
        "batch sum+reshape": sd.reshape(sd.sum(sd.tanh(h), axis=0, keepdims=True) * h, (-1, 2, 2)),
        "slice+concat": sd.concatenate([h[:, 1:3], sd.log_softmax(h)[:, ::-1]], axis=1)[1:],
        "pick+expand": sd.expand_dims(sd.pick(sd.log_softmax(h), labels), 1) * sd.logsumexp(h, axis=1, keepdims=True),
        "grad of a batch loss": sd.grad(sd.mean(sd.sigmoid(h[:, :1]) * h[:, 1:] ** 2), w),
    }, [w, b]


@pytest.mark.parametrize("name", list(_batch_graphs()[0]))
def test_jacobian_with_an_open_batch_axis_matches_central_differences(name: str) -> None:
    graphs, targets = _batch_graphs()
    y = graphs[name]
    rng = np.random.default_rng(6)
    values = {"x": rng.normal(size=(5, 3)), "labels": np.array([0, 3, 1, 1, 2]), "W": rng.normal(size=(3, 4))}
    values["b"] = rng.normal(size=4)
    for p in targets:
        jac = sd.jacobian(y, p)
        assert jac.shape == y.shape + p.shape
        got, h = _run(jac, values), 1e-6
        numeric = np.zeros(got.shape)
        for idx in np.ndindex(*p.shape):
            step = np.zeros(p.shape)
            step[idx] = h
            up, down = (
                dict(values, **{p.label: values[p.label] + step}),
                dict(values, **{p.label: values[p.label] - step}),
            )
            numeric[(...,) + idx] = (_run(y, up) - _run(y, down)) / (2 * h)
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)


def test_hessian_of_a_quadratic_form_is_a_plus_a_transpose() -> None:
    x, a = sd.Param("x", shape=(3,)), sd.Param("A", shape=(3, 3))
    hess = sd.hessian(x @ a @ x, x)
    assert hess.shape == (3, 3) and hess.name == "d2x"
    assert sd.to_text(hess).startswith("d2x = ")
    av = np.random.default_rng(3).normal(size=(3, 3))
    np.testing.assert_allclose(sd.compile(hess)(A=av), av + av.T, rtol=1e-10)


def test_hessian_of_the_logistic_loss_matches_its_closed_form() -> None:
    x, y, w = sd.Input("X", shape=(None, 3)), sd.Input("y", shape=(None,)), sd.Param("w", shape=(3,))
    loss = sd.sigmoid_cross_entropy(x @ w, y)
    hess = sd.hessian(loss, w)
    rng = np.random.default_rng(4)
    xv, yv, wv = rng.normal(size=(20, 3)), (rng.uniform(size=20) > 0.5).astype(float), rng.normal(size=3)
    p = 1 / (1 + np.exp(-xv @ wv))
    expected = xv.T @ ((p * (1 - p))[:, None] * xv) / 20
    np.testing.assert_allclose(_run(hess, {"X": xv, "y": yv, "w": wv}), expected, rtol=1e-10)


def test_hessian_of_rosenbrock_matches_its_closed_form() -> None:
    x = sd.Param("x", shape=(2,))
    f = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    hess = sd.compile(sd.hessian(f, x))
    a, b = 0.7, -0.4
    expected = np.array([[2 - 400 * (b - a**2) + 800 * a**2, -400 * a], [-400 * a, 200]])
    np.testing.assert_allclose(hess(x=np.array([a, b])), expected, rtol=1e-10)


def test_hessian_blocks_of_several_targets_have_mixed_names() -> None:
    x, y = sd.Param("x", shape=(2,)), sd.Param("y", shape=(3,))
    f = sd.sum(sd.sin(x)) * sd.sum(y**2)
    blocks = sd.hessian(f, [x, y])
    assert [[h.name for h in row] for row in blocks] == [["d2x", "dx_dy"], ["dy_dx", "d2y"]]
    assert [[h.shape for h in row] for row in blocks] == [[(2, 2), (2, 3)], [(3, 2), (3, 3)]]
    xv, yv = np.array([0.3, 1.1]), np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(_run(blocks[0][1], {"x": xv, "y": yv}), np.outer(np.cos(xv), 2 * yv), rtol=1e-12)
    np.testing.assert_allclose(_run(blocks[1][0], {"x": xv, "y": yv}), np.outer(2 * yv, np.cos(xv)), rtol=1e-12)


def test_hvp_equals_the_hessian_times_the_direction() -> None:
    x, a = sd.Param("x", shape=(4,)), sd.Param("A", shape=(4, 4))
    v = sd.Param("v", shape=(4,))
    f = sd.sum(sd.tanh(a @ x) ** 2) + sd.logsumexp(x)
    hv = sd.hvp(f, x, v)
    assert hv.shape == (4,)
    rng = np.random.default_rng(5)
    values = {"x": rng.normal(size=4), "A": rng.normal(size=(4, 4)), "v": rng.normal(size=4)}
    hess = _run(sd.hessian(f, x), values)
    np.testing.assert_allclose(sd.compile(hv)(**values), hess @ values["v"], rtol=1e-10)


def test_hvp_of_a_quadratic_form_prints_without_a_hessian() -> None:
    x, a, v = sd.Param("x", shape=(3,)), sd.Param("A", shape=(3, 3)), sd.Param("v", shape=(3,))
    # the book's (A + A^T) v: the sum A + A.T (n^2 adds) replaces the second product v @ A (n^2 multiply-adds)
    assert sd.to_text(sd.hvp(x @ a @ x, x, v)) == "(A + A.T) @ v"


# -- matrix calculus: the new ops' tangent rules against closed forms ----------------------------------------------
def _matrix(rng, *stack: int) -> np.ndarray:
    """A well-conditioned random 3 x 3 matrix (a stack of them)."""
    return rng.normal(size=(*stack, 3, 3)) + 4 * np.eye(3)


def test_jacobian_of_inv_is_minus_the_inverse_on_both_sides() -> None:
    """d inv(A)[i, j] / dA[k, l] = -inv(A)[i, k] inv(A)[l, j], single and stacked (rtol 1e-10)."""
    rng = np.random.default_rng(20)
    for stack in ((), (2,)):
        a = sd.Param("A", shape=(*stack, 3, 3))
        jac = sd.jacobian(sd.linalg.inv(a), a)
        assert jac.shape == a.shape + a.shape
        av = _matrix(rng, *stack)
        ai = np.linalg.inv(av)
        if stack:  # the matrices of the stack do not mix
            expected = -np.einsum("sik,slj,st->sijtkl", ai, ai, np.eye(2))
        else:
            expected = -np.einsum("ik,lj->ijkl", ai, ai)
        np.testing.assert_allclose(sd.compile(jac)(A=av), expected, rtol=1e-10, atol=1e-14)


def test_hessian_of_logabsdet_is_minus_the_inverse_pairs() -> None:
    """ln|det A| has the gradient inv(A).T and the Hessian H[i, j, k, l] = -inv(A)[j, k] inv(A)[l, i]."""
    a = sd.Param("A", shape=(3, 3))
    hess = sd.hessian(sd.linalg.slogdet(a)[1], a)
    assert hess.shape == (3, 3, 3, 3) and hess.name == "d2A"
    av = _matrix(np.random.default_rng(21)) * [1, -1, 1]  # a negative determinant
    ai = np.linalg.inv(av)
    np.testing.assert_allclose(sd.compile(hess)(A=av), -np.einsum("jk,li->ijkl", ai, ai), rtol=1e-10, atol=1e-14)


def test_hessian_of_det_matches_its_closed_form() -> None:
    """d2 det(A) / dA[i, j] dA[k, l] = det(A) (inv(A)[l, k] inv(A)[j, i] - inv(A)[j, k] inv(A)[l, i])."""
    a = sd.Param("A", shape=(3, 3))
    av = _matrix(np.random.default_rng(22))
    ai, d = np.linalg.inv(av), np.linalg.det(av)
    expected = d * (np.einsum("lk,ji->ijkl", ai, ai) - np.einsum("jk,li->ijkl", ai, ai))
    np.testing.assert_allclose(sd.compile(sd.hessian(sd.linalg.det(a), a))(A=av), expected, rtol=1e-10, atol=1e-12)


def test_det_and_logabsdet_tangents_solve_instead_of_inverting() -> None:
    a, ta = sd.Param("A", shape=(3, 3)), sd.Param("TA", shape=(3, 3))
    assert sd.to_text(sd.jvp(sd.linalg.slogdet(a)[1], a, ta)) == "trace(solve(A, TA))"
    det = sd.jvp(sd.linalg.det(a), a, ta)  # <cof(A), TA>: the cofactor matrix from an SVD, no inverse or solve
    assert sd.to_text(det) == "sum(TA * (det(A) * inv(A.T)))"
    src = sd.codegen({"t": det})
    assert "_cofactor(A)" in src and "np.linalg.inv(" not in src


def test_jacobian_of_solve_with_an_open_stack_axis_matches_the_closed_forms() -> None:
    """x = solve(A, b): dx/db = inv(A) for every matrix of an open stack; dx[n, i, j] / dA[k, l] = -inv(A)[i, k]
    x[n, l, j] for a fixed A and an open stack of right-hand sides."""
    rng = np.random.default_rng(23)
    stack, b = sd.Input("S", shape=(None, 3, 3)), sd.Param("b", shape=(3,))
    jb = sd.jacobian(sd.linalg.solve(stack, b), b)
    assert jb.shape == (None, 3, 3)
    sv = _matrix(rng, 4)
    np.testing.assert_allclose(sd.compile(jb)(S=sv), np.linalg.inv(sv), rtol=1e-10, atol=1e-14)
    a, rhs = sd.Param("A", shape=(3, 3)), sd.Input("B", shape=(None, 3, 2))
    ja = sd.jacobian(sd.linalg.solve(a, rhs), a)
    assert ja.shape == (None, 3, 2, 3, 3)
    av, bv = _matrix(rng), rng.normal(size=(5, 3, 2))
    x = np.linalg.solve(av, bv)
    expected = -np.einsum("ik,nlj->nijkl", np.linalg.inv(av), x)
    np.testing.assert_allclose(sd.compile(ja)(A=av, B=bv), expected, rtol=1e-10, atol=1e-14)


def test_jacobian_of_solve_through_a_matrix_built_from_a_vector() -> None:
    """x = solve(Q + diag(w), c): dx/dw[k] = -inv(A)[:, k] x[k] (a batch of tangents of A with one batch axis)."""
    rng = np.random.default_rng(28)
    w, q, c = sd.Param("w", shape=(3,)), _matrix(rng), rng.normal(size=3)
    jac = sd.jacobian(sd.linalg.solve(q + sd.diag(w), c), w)
    wv = rng.normal(size=3)
    ai = np.linalg.inv(q + np.diag(wv))
    np.testing.assert_allclose(sd.compile(jac)(w=wv), -ai * (ai @ c), rtol=1e-10)


def test_hessian_of_a_norm_is_the_projector_over_the_norm() -> None:
    """d2 ||x|| = (I - x x^T / ||x||^2) / ||x||; per row for norm(X, axis=1) (rtol 1e-10)."""
    x = sd.Param("x", shape=(4,))
    xv = np.random.default_rng(24).normal(size=4)
    r = np.linalg.norm(xv)
    expected = (np.eye(4) - np.outer(xv, xv) / r**2) / r
    np.testing.assert_allclose(sd.compile(sd.hessian(sd.linalg.norm(x), x))(x=xv), expected, rtol=1e-10)
    m = sd.Param("M", shape=(2, 3))
    jac = sd.jacobian(sd.linalg.norm(m, axis=1, keepdims=True), m)
    assert jac.shape == (2, 1, 2, 3)
    mv = np.random.default_rng(25).normal(size=(2, 3))
    rows = mv / np.linalg.norm(mv, axis=1, keepdims=True)
    np.testing.assert_allclose(sd.compile(jac)(M=mv), np.einsum("ij,ik->ikj", rows, np.eye(2))[:, None], rtol=1e-10)


def test_jacobians_of_trace_diag_and_outer_are_their_index_patterns() -> None:
    """trace of a (3, 3, 2) stack, diag of a vector, the diagonal of a tall matrix, outer(a, b) (rtol 1e-10)."""
    rng = np.random.default_rng(26)
    t, v, m = sd.Param("T", shape=(3, 3, 2)), sd.Param("v", shape=(3,)), sd.Param("M", shape=(4, 3))
    a, b = sd.Param("a", shape=(2,)), sd.Param("b", shape=(3,))
    values = {"T": rng.normal(size=(3, 3, 2)), "a": rng.normal(size=2), "b": rng.normal(size=3)}
    expected = np.einsum("ij,kl->kijl", np.eye(3), np.eye(2)) * 2 * values["T"]  # d tr(T*T)[k] / dT[i, j, l]
    np.testing.assert_allclose(_run(sd.jacobian(sd.trace(t * t), t), values), expected, rtol=1e-10)
    np.testing.assert_array_equal(
        _run(sd.jacobian(sd.diag(v), v), values), np.einsum("ij,ik->ijk", np.eye(3), np.eye(3))
    )
    diagonal = np.einsum("ki,kl->kil", np.eye(3, 4), np.eye(3))  # d M[k, k] / d M[i, l]
    np.testing.assert_array_equal(_run(sd.jacobian(sd.diag(m), m), values), diagonal)
    ja, jb = sd.jacobian(sd.outer(a, b), [a, b])
    np.testing.assert_allclose(_run(ja, values), np.einsum("ik,j->ijk", np.eye(2), values["b"]), rtol=1e-10)
    np.testing.assert_allclose(_run(jb, values), np.einsum("i,jk->ijk", values["a"], np.eye(3)), rtol=1e-10)


def test_jacobian_of_diag_of_a_vector_with_an_open_length() -> None:
    """diag(x * w) with x of open length: the batch of tangents becomes a batch of diagonal matrices."""
    x, w = sd.Input("x", shape=(None,)), sd.Param("w", shape=(1,))
    jac = sd.jacobian(sd.diag(x * w), w)
    assert jac.shape == (None, None, 1)
    xv = np.random.default_rng(27).normal(size=5)
    np.testing.assert_allclose(sd.compile(jac)(x=xv)[..., 0], np.diag(xv), rtol=1e-12)


# -- refusals ---------------------------------------------------------------------------------------------------------
def test_jacobian_refuses_a_target_with_an_open_axis_or_too_many_elements() -> None:
    x = sd.Input("x", shape=(None, 3))
    with pytest.raises(sd.UnsupportedError, match=r"jacobian: the target x has an open axis \(shape \(None, 3\)\)"):
        sd.jacobian(sd.exp(x), x)
    big = sd.Param("big", shape=(MAX_ELEMENTS + 1,))
    with pytest.raises(sd.UnsupportedError, match=f"hessian: the target big .* has {MAX_ELEMENTS + 1} elements"):
        sd.hessian(sd.sum(big**2), big)


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda x: sd.jvp(sd.exp(x), x, np.ones(4)), sd.ShapeError, r"jvp: the direction v has shape \(4,\)"),
        (lambda x: sd.vjp(sd.exp(x), x, np.ones(2)), sd.ShapeError, r"vjp: the cotangent u has shape \(2,\)"),
        (lambda x: sd.jvp(sd.exp(x), [x], []), ValueError, "jvp: 1 targets but 0 directions"),
        (lambda x: sd.jvp(x > 0, x, np.ones(3)), ValueError, "jvp: y must have a float dtype"),
        (lambda x: sd.hessian(sd.exp(x), x), ValueError, "hessian: f must be a scalar"),
        (lambda x: sd.hvp(sd.exp(x), x, np.ones(3)), ValueError, "hvp: f must be a scalar"),
        (lambda x: sd.jacobian("x", x), TypeError, "jacobian: y must be a symdiff expression"),
    ],
)
def test_derivative_toolkit_errors_name_the_function_and_the_shapes(call, error, needle) -> None:
    with pytest.raises(error, match=needle):
        call(sd.Param("x", shape=(3,)))


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda x: sd.jacobian(sd.argmax(x) * 1, x), sd.DTypeError, "jacobian: y must have a float dtype, got int64"),
        (lambda x: sd.jvp(sd.argmax(x) * 1, x, np.ones(3)), sd.DTypeError, "jvp: y must have a float dtype"),
        (lambda x: sd.vjp(x > 0, x, np.ones(3)), sd.DTypeError, "vjp: y must have a float dtype, got bool"),
        (
            lambda x: sd.jvp(sd.argmax(x) * 1.0, sd.argmax(x), 1),
            sd.DTypeError,
            "jvp: cannot differentiate with respect to an expression of dtype int64",
        ),
        (lambda x: sd.jvp(sd.exp(x), x, None), sd.DTypeError, "jvp: the direction v has dtype object"),
        (lambda x: sd.hessian(x * x, x), sd.ShapeError, r"hessian: f must be a scalar, got shape \(3,\)"),
        (lambda x: sd.hvp(x * x, x, np.ones(3)), sd.ShapeError, r"hvp: f must be a scalar, got shape \(3,\)"),
        (lambda x: sd.jvp(sd.exp(x), [x], [np.ones(3)] * 2), sd.InputError, "jvp: 1 targets but 2 directions"),
        (lambda x: sd.hvp(sd.sum(x), [x], np.ones(3)), sd.InputError, "hvp: 1 targets need a list of as many"),
        (
            lambda x: sd.jacobian(x, 3.0),
            sd.InputError,
            "jacobian: x must be an Input or Param, or a list of them, got 3.0",
        ),
        (lambda x: sd.jacobian(x, None), sd.InputError, "jacobian: x must be an Input or Param, .* got None"),
        (lambda x: sd.hessian(sd.sum(x), [x, "y"]), sd.InputError, "hessian: x must be an Input or Param"),
        (lambda x: sd.vjp("y", x, 1), sd.InputError, "vjp: y must be a symdiff expression, got str"),
    ],
)
def test_derivative_toolkit_raises_symdiff_errors_naming_the_function_and_the_culprit(call, error, needle) -> None:
    """Each refusal is a symdiff error (still the ValueError or TypeError it was before) whose message names the
    function and the argument at fault."""
    with pytest.raises(error, match=needle) as caught:
        call(sd.Param("x", shape=(3,)))
    assert isinstance(caught.value, sd.SymdiffError)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda x, v: sd.jvp(sd.sin(x), x, v), r"jvp: the direction v has shape \(None,\), expected \(3,\)"),
        (lambda x, v: sd.jvp(sd.sin(x), [x], [v]), r"jvp: the direction v\[0\] has shape \(None,\), expected \(3,\)"),
        (lambda x, v: sd.vjp(sd.sin(x), x, v), r"vjp: the cotangent u has shape \(None,\), expected \(3,\)"),
        (lambda x, v: sd.hvp(sd.sum(sd.sin(x)), x, v), r"hvp: the direction v has shape \(None,\), expected \(3,\)"),
        (lambda x, v: sd.vjp(sd.sin(v), v, np.ones(3)), r"vjp: the cotangent u has shape \(3,\), expected \(None,\)"),
    ],
)
def test_direction_with_an_open_axis_against_a_fixed_length_is_refused_by_name(call, needle) -> None:
    """An open axis fits only an open axis (and a fixed length only that length): the error names the toolkit
    function and the direction, not the multiply that a later op would have failed at."""
    with pytest.raises(sd.ShapeError, match=needle):
        call(sd.Param("x", shape=(3,)), sd.Input("v", shape=(None,)))
