"""2-D pooling (``sd.max_pool2d``, ``sd.avg_pool2d``): values and gradients against an independent NumPy implementation
(every window one by one, written here) and central differences; ties; crops; errors; the generated code."""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest

import symdiff as sd
from symdiff import optim
from symdiff.errors import ShapeError


# -- an independent implementation: every window position one by one -------------------------------------------------
def _windows(shape, size, stride):
    """``(i, j, rows, cols)`` of every window of images of ``shape`` (N, H, W, C)."""
    (kh, kw), (sh, sw) = size, stride
    for i in range((shape[1] - kh) // sh + 1):
        for j in range((shape[2] - kw) // sw + 1):
            yield i, j, slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)


def np_pool(kind: str, x: np.ndarray, size, stride) -> np.ndarray:
    spots = list(_windows(x.shape, size, stride))
    out = np.empty((x.shape[0], spots[-1][0] + 1, spots[-1][1] + 1, x.shape[3]))
    for n, c in np.ndindex(x.shape[0], x.shape[3]):
        for i, j, rows, cols in spots:
            window = x[n, rows, cols, c]
            out[n, i, j, c] = window.max() if kind == "max" else window.sum() / window.size
    return out


def np_pool_grad(kind: str, x: np.ndarray, g: np.ndarray, size, stride) -> np.ndarray:
    """The gradient of ``sum(pool(x) * g)``: ``g`` to each window's maxima (ties share it) or spread evenly."""
    dx = np.zeros_like(x)
    for n, c in np.ndindex(x.shape[0], x.shape[3]):
        for i, j, rows, cols in _windows(x.shape, size, stride):
            window = x[n, rows, cols, c]
            weights = (window == window.max()) if kind == "max" else np.ones_like(window)
            dx[n, rows, cols, c] += g[n, i, j, c] * weights / weights.sum()
    return dx


POOLS = {"max": sd.max_pool2d, "avg": sd.avg_pool2d}
# (image shape, size, stride): side by side, cropped rows/columns, overlapping, non-square, gaps between windows
CASES = [
    ((3, 6, 6, 2), 2, None),
    ((1, 7, 5, 3), (3, 2), None),
    ((3, 7, 7, 2), 3, 2),
    ((1, 5, 8, 4), (2, 3), 1),
    ((3, 6, 9, 1), 2, (3, 4)),
    ((1, 4, 4, 2), 4, None),
]
IDS = ["2x2", "crop-3x2", "overlap-3/2", "nonsquare-2x3/1", "gaps-2/3x4", "whole-image"]


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def _graph(kind: str, shape, size, stride):
    """``pool(x)`` for images of any batch length (``None``), and the loss ``sum(pool(x) * g)``."""
    x = sd.Input("x", shape=(None, *shape[1:]))
    y = POOLS[kind](x, size, stride)
    g = sd.Input("g", shape=y.shape)
    return x, y, g, sd.sum(y * g)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("shape", "size", "stride"), CASES, ids=IDS)
def test_pooling_and_its_gradient_match_the_window_by_window_implementation(kind, shape, size, stride) -> None:
    x, y, g, loss = _graph(kind, shape, size, stride)
    outputs = {"y": y, "dx": sd.grad(loss, x)}
    readable, fast = sd.compile(outputs, optimize=False), sd.compile(outputs)
    rng = np.random.default_rng(len(shape) + shape[1])
    sizes, strides = _pair(size), _pair(size if stride is None else stride)
    for seed, values in enumerate((rng.normal(size=shape), rng.integers(0, 3, size=shape).astype(float))):  # ties
        gv = np.random.default_rng(seed).normal(size=(shape[0], *y.shape[1:]))
        for run in (readable, fast):
            out = run(x=values, g=gv)
            np.testing.assert_allclose(out["y"], np_pool(kind, values, sizes, strides), rtol=1e-9, atol=0)
            np.testing.assert_allclose(out["dx"], np_pool_grad(kind, values, gv, sizes, strides), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("shape", "size", "stride"), CASES, ids=IDS)
def test_pooling_gradient_matches_central_differences(kind, shape, size, stride) -> None:
    x = sd.Param("x", shape=shape)
    y = POOLS[kind](sd.sin(x), size, stride)
    weights = np.random.default_rng(1).normal(size=y.shape)
    values = {"x": np.random.default_rng(2).normal(size=shape)}
    assert sd.check_grad(sd.sum(y * weights), x, values) < 1e-7
    assert sd.check_grad(sd.sum(y**2 * weights), x, values) < 1e-7


@pytest.mark.parametrize("batch", [1, 3])
def test_max_pool_ties_share_the_gradient_exactly(batch) -> None:
    """Three equal maxima in a window get a third of its gradient each, side by side and overlapping (stride 1)."""
    image = np.array([[3.0, 3.0, 1.0, 7.0], [3.0, 0.0, 7.0, 7.0]])
    xv = np.broadcast_to(image[None, :, :, None], (batch, 2, 4, 1))
    x = sd.Input("x", shape=(None, 2, 4, 1))
    side = sd.grad(sd.sum(sd.max_pool2d(x, 2) * np.array([3.0, 6.0]).reshape(1, 1, 2, 1)), x)
    np.testing.assert_array_equal(sd.compile(side)(x=xv)[0, :, :, 0], [[1.0, 1.0, 0.0, 2.0], [1.0, 0.0, 2.0, 2.0]])
    overlapping = sd.grad(sd.sum(sd.max_pool2d(x, 2, stride=1) * 6.0), x)
    np.testing.assert_array_equal(
        sd.compile(overlapping)(x=xv)[0, :, :, 0], [[2.0, 2.0, 0.0, 2.0], [2.0, 0.0, 8.0, 2.0]]
    )
    flat = sd.Input("flat", shape=(None, 16, 16, 1))  # 256 ties: a count no 8-bit integer holds
    shares = sd.compile(sd.grad(sd.sum(sd.max_pool2d(flat, 16)), flat))(flat=np.ones((batch, 16, 16, 1)))
    np.testing.assert_array_equal(shares, np.full((batch, 16, 16, 1), 1 / 256))
    t = sd.Input("t", shape=x.shape)
    tangent = sd.compile(sd.jvp(sd.max_pool2d(x, 2), x, t))  # the mean of the tangent over the maxima
    tv = np.broadcast_to(np.arange(8.0).reshape(1, 2, 4, 1), xv.shape)
    np.testing.assert_array_equal(tangent(x=xv, t=tv)[..., 0], np.broadcast_to([[5 / 3, 16 / 3]], (batch, 1, 2)))


def test_a_max_pool_window_holding_a_nan_passes_nan_back_also_where_ties_elsewhere_make_up_the_count() -> None:
    """A window with a nan has no maximum and one with a tie two: together as many as one maximum per window."""
    x = sd.Input("x", shape=(None, 2, 4, 1))
    dx = sd.compile(sd.grad(sd.sum(sd.max_pool2d(x, 2)), x))
    image = np.array([[np.nan, 1.0, 5.0, 5.0], [0.0, 2.0, 0.0, 1.0]])
    with np.errstate(divide="ignore", invalid="ignore"):  # the nan window's gradient over its no maxima
        got = dx(x=image[None, :, :, None])[0, :, :, 0]
    assert np.isnan(got[:, :2]).all()
    np.testing.assert_array_equal(got[:, 2:], [[0.5, 0.5], [0.0, 0.0]])


def test_max_pool_second_derivatives_route_through_the_gradient_op() -> None:
    """d/dx of the max-pool gradient is the tangent op (the gradient's transpose), and the Hessian matches."""
    x = sd.Param("x", shape=(2, 5, 4, 3))
    loss = sd.sum(sd.max_pool2d(sd.sin(x), 2, stride=1) ** 3)
    values = {"x": np.random.default_rng(3).normal(size=x.shape)}
    v = np.random.default_rng(4).normal(size=x.shape)
    hv = sd.hvp(loss, x, v)
    assert "max_pool2d_tangent(" in sd.to_text(hv)
    (dx,) = sd.grad(loss, [x])
    np.testing.assert_allclose(
        sd.compile(hv)(**values), sd.numeric_grad(sd.compile(sd.sum(dx * v)), values, "x"), rtol=1e-6, atol=1e-8
    )


def test_pooling_gradients_print_as_their_own_ops() -> None:
    x = sd.Input("x", shape=(None, 8, 8, 3))
    loss = sd.sum(sd.max_pool2d(x, 2) ** 2) + sd.sum(sd.avg_pool2d(x, (2, 4), stride=2) ** 2)
    text = sd.to_text(sd.grad(loss, x))
    assert "max_pool2d_grad(x, pool1, 2 * pool1, 2)" in text
    assert "unpool1 = avg_pool2d_grad(2 * avg_pool2d(x, (2, 4), stride=2), (2, 4), stride=2, image=(8, 8))" in text
    assert sd.to_text(sd.max_pool2d(x, (2, 3), stride=1)) == "max_pool2d(x, (2, 3), stride=1)"
    assert sd.parse("max_pool2d(x, (2, 3), stride=1)", {"x": x}) is sd.max_pool2d(x, (2, 3), stride=1)
    assert sd.latex(sd.avg_pool2d(x, 2)) == "\\operatorname{avg\\_pool2d}_{2 \\times 2}\\left(x\\right)"
    explained = str(sd.explain(sd.sum(sd.max_pool2d(x, 2) ** 2), x))
    assert "max_pool2d: dx = max_pool2d_grad(x, pool1, dpool1, 2)" in explained


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_errors_name_the_op_and_the_shapes(kind) -> None:
    pool, op = POOLS[kind], f"{kind}_pool2d"
    with pytest.raises(
        ShapeError, match=rf"{op}: expected a batch of images of shape \(N, H, W, C\), got shape \(6, 6, 2\)"
    ):
        pool(sd.Input("x", shape=(6, 6, 2)), 2)
    with pytest.raises(
        ShapeError, match=rf"{op}: the 3x3 window is larger than the 2x5 image \(shape \(None, 2, 5, 1\)\)"
    ):
        pool(sd.Input("x", shape=(None, 2, 5, 1)), 3)
    with pytest.raises(ShapeError, match=rf"{op}: the image height and width must have known lengths"):
        pool(sd.Input("x", shape=(None, None, 5, 1)), 2)
    x = sd.Input("x", shape=(None, 4, 4, 1))
    for bad in (0, -1, (2, 0), (1, 2, 3), 1.5, True, "2"):
        with pytest.raises(ValueError, match=rf"{op}: size must be a positive int or a pair of them"):
            pool(x, bad)
        with pytest.raises(ValueError, match=rf"{op}: stride must be a positive int or a pair of them"):
            pool(x, 2, bad)


def test_generated_pooling_code_has_no_python_loop() -> None:
    x = sd.Input("x", shape=(None, 9, 8, 3))
    loss = sd.sum(sd.max_pool2d(x, 2) ** 2) + sd.sum(sd.avg_pool2d(x, 3, stride=(2, 1)) ** 2)
    loss = loss + sd.sum(sd.max_pool2d(x, 3, stride=2) ** 2) + sd.sum(sd.avg_pool2d(x, 2) ** 2)
    for source in (sd.codegen(sd.grad(loss, x)), sd.codegen(sd.grad(loss, x), optimize=True)):
        assert "_max_pool2d_grad(" in source and "_avg_pool2d_grad(" in source and "_pool_fold(" in source
        loops = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.For, ast.While, ast.comprehension))]
        assert not loops


def test_a_training_step_through_pooling_runs_and_writes_into_planned_buffers() -> None:
    x = sd.Input("x", shape=(None, 8, 8, 1))
    y = sd.Input("y", shape=(None,), dtype="int64")
    mix = sd.Param("mix", shape=(4,))
    h = sd.max_pool2d(sd.tanh(x * mix), 2)
    h = sd.avg_pool2d(h, 2, stride=1)
    logits = sd.dense(sd.reshape(h, (-1, 3 * 3 * 4)), 10, "out")
    loss = sd.softmax_cross_entropy(logits, y)
    params = sd.init_params(loss, seed=0)
    step = sd.compile_step(loss, params, optim.Adam(lr=0.05))
    assert re.search(r"_max_pool2d_grad\(.*out=", step.source) and re.search(r"_max_pool2d\(.*out=", step.source)
    rng = np.random.default_rng(0)
    xv, yv = rng.normal(size=(16, 8, 8, 1)), rng.integers(0, 10, size=16)
    first = float(step(x=xv, y=yv))
    for _ in range(30):
        last = float(step(x=xv, y=yv))
    assert np.isfinite(last) and last < first / 2


def test_derivative_ops_refuse_operands_that_do_not_fit_the_image() -> None:
    from symdiff.graph import make

    x = sd.Param("x", shape=(2, 6, 6, 3))
    y, window = sd.max_pool2d(x, 2), {"size": (2, 2), "stride": (2, 2)}
    with pytest.raises(ShapeError, match=r"max_pool2d_grad: pooled \(2, 3, 3, 3\) and gradient \(2, 6, 6, 3\) do not"):
        make("max_pool2d_grad", (x, y, x), window)
    with pytest.raises(ShapeError, match=r"max_pool2d_tangent: pooled \(2, 3, 3, 3\) and tangent \(2, 3, 3, 3\)"):
        make("max_pool2d_tangent", (x, y, y), window)
    with pytest.raises(ShapeError, match=r"avg_pool2d_grad: gradient \(2, 3, 3, 3\) is not the \(8, 8\) image pooled"):
        make("avg_pool2d_grad", (y,), {"image": (8, 8), **window})


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("size", "stride"), [(2, None), (3, 2), ((2, 3), 1)])
def test_pool_jacobian_and_hessian_carry_batches_of_tangents(kind, size, stride) -> None:
    """Forward mode pushes a batch of tangents (leading axes) through the pools and their gradients."""
    x = sd.Param("x", shape=(1, 5, 6, 2))
    xv = np.random.default_rng(5).normal(size=x.shape)
    y = POOLS[kind](sd.sin(x), size, stride)
    jac = sd.compile(sd.jacobian(y, x))(x=xv)
    rows = [sd.compile(sd.grad(sd.sum(y * e), x))(x=xv) for e in np.eye(y.size).reshape(-1, *y.shape)]
    np.testing.assert_allclose(jac, np.reshape(rows, y.shape + x.shape), rtol=1e-12, atol=1e-15)
    loss = sd.sum(y**3)
    hess = sd.compile(sd.hessian(loss, x))(x=xv)
    (dx,) = sd.grad(loss, [x])
    cols = [sd.numeric_grad(sd.compile(sd.sum(dx * e)), {"x": xv}, "x") for e in np.eye(x.size).reshape(-1, *x.shape)]
    np.testing.assert_allclose(hess, np.reshape(cols, x.shape + x.shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "softplus"])
def test_the_training_step_pools_before_an_increasing_activation_with_the_same_update(act) -> None:
    # max_pool2d(f(z)) runs as f(max_pool2d(z)): f and its derivative on a quarter of the data, the same update
    x, y = sd.Input("x", shape=(None, 6, 4, 2)), sd.Input("y", shape=(None,), dtype="int64")
    w = sd.Param("w", shape=(2, 3))
    z = (x @ w).named("z")  # windows of dead ReLUs (all z <= 0) tie: their gradient is 0 either way
    pool = sd.max_pool2d(getattr(sd, act)(z), 2).named("pool")
    loss = sd.softmax_cross_entropy(sd.dense(sd.reshape(pool, (-1, 18)), 3, "out"), y)
    params = sd.init_params(loss, seed=1)
    rng = np.random.default_rng(2)
    data = {"x": rng.normal(size=(5, 6, 4, 2)), "y": rng.integers(0, 3, size=5)}
    data["x"][0, :2, :2] = -abs(data["x"][0, :2, :2])  # a dead window, for ReLU (w is random: a few are)
    expected = sd.compile(sd.grad(loss, sd.params(loss)))(**data, **params)
    step = sd.compile_step(loss, {k: v.copy() for k, v in params.items()}, optim.SGD(lr=1.0))
    assert "= _max_pool2d(z," in step.source and "= _max_pool2d_grad(z, pool1," in step.source  # z pooled
    step(**data)
    for (name, before), g in zip(params.items(), expected):
        np.testing.assert_allclose(before - step.params[name], g, rtol=1e-10, atol=1e-13, err_msg=name)


def test_the_training_step_pools_before_a_channel_bias_only_with_the_same_update() -> None:
    # max_pool2d(relu(conv + b)) runs as relu(max_pool2d(conv) + b): the bias add and its gradient on pooled data
    x, y = sd.Input("x", shape=(None, 6, 4, 1)), sd.Input("y", shape=(None,), dtype="int64")
    pool = sd.max_pool2d(sd.conv(x, 3, 3, "c", activation="relu"), 2)
    loss = sd.softmax_cross_entropy(sd.dense(sd.reshape(pool, (-1, 18)), 3, "out"), y)
    params = sd.init_params(loss, seed=1)
    params["c_b"] = np.array([0.1, -0.2, 0.3])
    rng = np.random.default_rng(2)
    data = {"x": rng.normal(size=(5, 6, 4, 1)), "y": rng.integers(0, 3, size=5)}
    expected = sd.compile(sd.grad(loss, sd.params(loss)))(**data, **params)
    step = sd.compile_step(loss, {k: v.copy() for k, v in params.items()}, optim.SGD(lr=1.0))
    body = step.source[step.source.index("def train_step") :]
    pooled = re.search(r"(pool\d+) = _max_pool2d\(conv\d+, \(2, 2\), \(2, 2\), out=", body)
    assert pooled and re.search(rf"= np.add\({pooled[1]}, c_b, out=", body), body  # the bias after the pool
    assert re.search(r"dc_b = _sum_leading\(\w+, 3, out=", body)  # its gradient: a sum over the pooled gradient
    step(**data)
    for (name, before), g in zip(params.items(), expected):
        np.testing.assert_allclose(before - step.params[name], g, rtol=1e-10, atol=1e-13, err_msg=name)
    for across in (True, False):  # a shift that varies within a window, or that turns the order, is pooled after
        x = sd.Input("x", shape=(None, 4, 4, 2))
        c = sd.Param("c", shape=(4, 1) if across else (2,))  # varies along the width, or subtracts x
        loss = sd.sum(sd.max_pool2d(x * 2.0 + c if across else c - x * 2.0, 2))
        step = sd.compile_step(loss, {"c": np.ones(c.shape)}, optim.SGD(lr=0.1))
        assert re.search(r"= _max_pool2d\((s|diff)\d+, ", step.source), step.source


def test_an_activation_that_is_not_increasing_is_pooled_after() -> None:
    x = sd.Input("x", shape=(None, 4, 4, 1))
    loss = sd.sum(sd.max_pool2d(sd.sin(x * sd.Param("a", shape=(1,))), 2))
    step = sd.compile_step(loss, {"a": np.ones(1)}, optim.SGD(lr=0.1))
    assert "_max_pool2d(sin1" in step.source or re.search(r"_max_pool2d\(\w+, \(2, 2\)", step.source)
    assert not re.search(r"np\.sin\(pool", step.source)
