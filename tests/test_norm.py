"""``sd.layer_norm`` and ``sd.batch_norm``: values and gradients against NumPy written here and central differences,
over one axis and several, with a batch of run-time length; the gradient prints as the textbook's formula."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd


def np_normalize(x: np.ndarray, axis: tuple[int, ...], eps: float) -> np.ndarray:
    n = np.prod([x.shape[a] for a in axis])
    mu = x.sum(axis=axis, keepdims=True) / n
    return (x - mu) / np.sqrt(((x - mu) ** 2).sum(axis=axis, keepdims=True) / n + eps)


def np_normalize_grad(x: np.ndarray, g: np.ndarray, axis: tuple[int, ...], eps: float) -> np.ndarray:
    """The gradient of ``sum(normalize(x) * g)``, through the mean and the variance by the chain rule."""
    n = np.prod([x.shape[a] for a in axis])
    mu = x.sum(axis=axis, keepdims=True) / n
    var = ((x - mu) ** 2).sum(axis=axis, keepdims=True) / n
    inv = 1 / np.sqrt(var + eps)
    dvar = (g * (x - mu)).sum(axis=axis, keepdims=True) * -0.5 * inv**3
    dmu = -(g * inv).sum(axis=axis, keepdims=True) + dvar * (-2 * (x - mu)).sum(axis=axis, keepdims=True) / n
    return g * inv + dvar * 2 * (x - mu) / n + dmu / n


NORMS = {"layer": sd.layer_norm, "batch": sd.batch_norm}
CASES = [
    ("layer", (4, 5), -1, (1,)),
    ("layer", (3, 4, 5), (1, 2), (1, 2)),
    ("layer", (2, 3, 4, 2), (-3, -2, -1), (1, 2, 3)),
    ("batch", (6, 3), 0, (0,)),
    ("batch", (4, 3, 3, 2), (0, 1, 2), (0, 1, 2)),
]
IDS = ["layer-last", "layer-two-axes", "layer-image", "batch-features", "batch-per-channel"]


@pytest.mark.parametrize(("kind", "shape", "axis", "axes"), CASES, ids=IDS)
@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_normalization_and_its_gradient_match_numpy_and_central_differences(kind, shape, axis, axes, eps) -> None:
    x = sd.Param("x", shape=shape)
    y = NORMS[kind](x, axis=axis, eps=eps)
    g = np.random.default_rng(0).normal(size=shape)
    xv = np.random.default_rng(1).normal(size=shape) * 3 + 1
    outputs = {"y": y, "dx": sd.grad(sd.sum(y * g), x)}
    for f in (sd.compile(outputs), sd.compile(outputs, optimize=False)):
        out = f(x=xv)
        np.testing.assert_allclose(out["y"], np_normalize(xv, axes, eps), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(out["dx"], np_normalize_grad(xv, g, axes, eps), rtol=1e-9, atol=1e-12)
    assert sd.check_grad(sd.sum(sd.tanh(y) * g), x, {"x": xv}) < 1e-7


@pytest.mark.parametrize(("kind", "shape", "axis", "axes"), CASES, ids=IDS)
def test_normalization_tangents_and_second_derivatives(kind, shape, axis, axes) -> None:
    x = sd.Param("x", shape=shape)
    y = NORMS[kind](x, axis=axis)
    rng = np.random.default_rng(2)
    xv, v, w = rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=shape)
    step = 1e-6
    expected = (np_normalize(xv + step * v, axes, 1e-5) - np_normalize(xv - step * v, axes, 1e-5)) / (2 * step)
    np.testing.assert_allclose(sd.compile(sd.jvp(y, x, v))(x=xv), expected, rtol=1e-6, atol=1e-8)
    loss = sd.sum(y**3 * w)
    (dx,) = sd.grad(loss, [x])
    numeric = sd.numeric_grad(sd.compile(sd.sum(dx * v)), {"x": xv}, "x")
    np.testing.assert_allclose(sd.compile(sd.hvp(loss, x, v))(x=xv), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_batch_norm_counts_a_batch_of_run_time_length(batch) -> None:
    x = sd.Input("x", shape=(None, 4, 4, 2))
    W = sd.Param("W", shape=(2,))
    y = sd.batch_norm(sd.tanh(x * W), axis=(0, 1, 2))
    g = np.random.default_rng(batch).normal(size=(batch, 4, 4, 2))
    loss = sd.sum(y * sd.constant(g[0]))  # the same weights for every sample
    xv = np.random.default_rng(batch + 1).normal(size=(batch, 4, 4, 2))
    Wv = np.array([0.5, -2.0])
    out = sd.compile({"y": y, "dx": sd.grad(loss, x)})(x=xv, W=Wv)
    axes = (0, 1, 2)
    h = np.tanh(xv * Wv)
    np.testing.assert_allclose(out["y"], np_normalize(h, axes, 1e-5), rtol=1e-9, atol=1e-12)
    dh = np_normalize_grad(h, np.broadcast_to(g[0], xv.shape), axes, 1e-5)
    np.testing.assert_allclose(out["dx"], dh * (1 - h**2) * Wv, rtol=1e-9, atol=1e-12)
    assert sd.check_grad(loss, W, {"x": xv, "W": Wv}) < 1e-7


def test_normalization_gradient_prints_as_the_textbook_formula() -> None:
    x = sd.Input("x", shape=(None, 8))
    W = sd.Param("W", shape=(8, 4))
    h = sd.layer_norm(x @ W)
    assert sd.to_text(h) == "layer_norm(x @ W)"
    text = sd.to_text(sd.grad(sd.sum(sd.tanh(h)), W))
    assert text.splitlines()[1:] == [
        "ln1 = layer_norm(mm1)",
        "diff1 = 1 - tanh(ln1)**2",  # dy; dx = (dy - mean(dy) - y * mean(dy * y)) / sqrt(var + eps)
        "diff2 = diff1 - sum(diff1, axis=1, keepdims=True) / 4 - ln1 * (sum(diff1 * ln1, axis=1, keepdims=True) / 4)",
        "dW = x.T @ (diff2 / sqrt(var(mm1, axis=1, keepdims=True) + 1e-05))",
    ]
    b = sd.batch_norm(x @ W)
    explained = str(sd.explain(sd.sum(b**2), W))
    assert (
        "batch_norm: dmm1 = diff1 / sqrt(var(mm1, axis=0, keepdims=True) + 1e-05); where n = dbn1.shape[0], "
        in explained
    )
    assert (
        "diff1 = dbn1 - sum(dbn1, axis=0, keepdims=True) / n - bn1 * (sum(dbn1 * bn1, axis=0, keepdims=True) / n)"
        in explained
    )
    assert sd.to_text(sd.batch_norm(x, axis=(0, 1), eps=0.1)) == "batch_norm(x, axis=(0, 1), eps=0.1)"
    for expr in (h, sd.layer_norm(x, axis=0, eps=0.25), sd.batch_norm(x @ W, axis=1)):
        assert sd.parse(sd.to_text(expr), {"x": x, "W": W}) is expr
    assert sd.latex(h) == "\\operatorname{LayerNorm}_{1}\\left(x W\\right)"


def test_normalization_of_integers_is_in_float64_and_bad_arguments_are_refused() -> None:
    x = sd.Input("x", shape=(None, 3), dtype="int64")
    y = sd.layer_norm(x)
    assert y.dtype == np.float64
    expected = np.array([[-1.0, 0.0, 1.0]]) / np.sqrt(2 / 3 + 1e-5)
    np.testing.assert_allclose(sd.compile(y)(x=np.array([[1, 2, 3]])), expected, rtol=1e-12)
    for bad in (-1.0, "1e-5", None, float("nan")):
        with pytest.raises(ValueError, match="layer_norm: eps must be a non-negative number"):
            sd.layer_norm(x, eps=bad)
    with pytest.raises(Exception, match="batch_norm"):
        sd.batch_norm(x, axis=2)
