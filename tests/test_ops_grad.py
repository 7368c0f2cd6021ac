"""One generic numerical gradient check over the whole op table (float64, central differences).

Every op in ``symdiff.ops.OPS`` must have a spec row here or be declared non-differentiable; a new op
without a row fails ``tests/test_op_table.py``. Each row is crossed with its shape group
(broadcasting included), checked to first order, and smooth rows to second order (Hessian-vector).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff.graph import make
from symdiff.ops import conv as conv_ops

BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (3,))]
UNARY_SHAPES = [((3, 4),), ((5,),), ((),)]


@dataclass
class Spec:
    op: str
    build: Callable[..., Any]
    shapes: list
    domain: str = "real"  # real | positive | nonzero
    smooth: bool = True  # also check second derivatives
    tol: float = 1e-6


def _t(expr_fn):
    t = sp.Symbol("t")
    return lambda a: sd.from_sympy(expr_fn(t), {t: a})


SPECS = [
    Spec("add", lambda a, b: a + b, BINARY_SHAPES),
    Spec("sub", lambda a, b: a - b, BINARY_SHAPES),
    Spec("mul", lambda a, b: a * b, BINARY_SHAPES),
    Spec("div", lambda a, b: a / b, BINARY_SHAPES, domain="nonzero"),
    Spec("pow", lambda a, b: a**b, BINARY_SHAPES, domain="positive"),
    Spec("pow", lambda a: a**3, UNARY_SHAPES),
    Spec("neg", lambda a: -a, UNARY_SHAPES),
    Spec("maximum", sd.maximum, BINARY_SHAPES, smooth=False),
    Spec("minimum", sd.minimum, BINARY_SHAPES, smooth=False),
    Spec("where", lambda a, b: sd.where(a > b, a * b, a - b), BINARY_SHAPES, smooth=False),
    Spec("cast", lambda a: sd.astype(a, "float32") * 1.0, UNARY_SHAPES, tol=1e-3),
    Spec("exp", sd.exp, UNARY_SHAPES),
    Spec("log", sd.log, UNARY_SHAPES, domain="positive"),
    Spec("log1p", sd.log1p, UNARY_SHAPES, domain="positive"),
    Spec("sqrt", sd.sqrt, UNARY_SHAPES, domain="positive"),
    Spec("tanh", sd.tanh, UNARY_SHAPES),
    Spec("sin", sd.sin, UNARY_SHAPES),
    Spec("cos", sd.cos, UNARY_SHAPES),
    Spec("arctan", sd.arctan, UNARY_SHAPES),
    Spec("abs", sd.abs, UNARY_SHAPES, domain="nonzero", smooth=False),
    Spec("sigmoid", sd.sigmoid, UNARY_SHAPES),
    Spec("softplus", sd.softplus, UNARY_SHAPES),
    Spec("relu", sd.relu, UNARY_SHAPES, domain="nonzero", smooth=False),
    Spec("sum", lambda a: sd.sum(a), UNARY_SHAPES),
    Spec("sum", lambda a: sd.sum(a * a, axis=0, keepdims=True), [((3, 4),), ((2, 3, 4),)]),
    Spec("sum", lambda a: sd.sum(sd.exp(a), axis=(0, 2)), [((2, 3, 4),)]),
    Spec("max", lambda a: sd.max(a, axis=1), [((3, 4),), ((2, 3, 4),)], smooth=False),
    Spec("max", lambda a: sd.max(a), UNARY_SHAPES[:2], smooth=False),
    Spec("logsumexp", lambda a: sd.logsumexp(a), UNARY_SHAPES[:2]),
    Spec("logsumexp", lambda a: sd.logsumexp(a, axis=1, keepdims=True), [((3, 4),), ((2, 3, 4),)]),
    Spec("softmax", lambda a: sd.softmax(a), [((3, 4),), ((5,),)]),
    Spec("softmax", lambda a: sd.softmax(a, axis=0), [((3, 4),)]),
    Spec("log_softmax", lambda a: sd.log_softmax(a), [((3, 4),), ((2, 3, 4),)]),
    # issue 10: more element-wise functions, reductions and matrix structure
    Spec("expm1", sd.expm1, UNARY_SHAPES),
    Spec("erf", sd.erf, UNARY_SHAPES),
    Spec("clip", lambda a: sd.clip(a, -0.5, 1.0), UNARY_SHAPES, smooth=False),
    Spec("clip", sd.clip, [((3, 4), (4,), (3, 1)), ((5,), (), ())], smooth=False),  # lo > hi at some points too
    Spec("min", lambda a: sd.min(a, axis=1), [((3, 4),), ((2, 3, 4),)], smooth=False),
    Spec("min", lambda a: a.min(), UNARY_SHAPES[:2], smooth=False),
    Spec("var", lambda a: sd.var(a), UNARY_SHAPES[:2]),
    Spec("var", lambda a: sd.var(a, axis=(0, 2), keepdims=True, ddof=1), [((2, 3, 4),)]),
    Spec("std", lambda a: sd.std(a, axis=1), [((3, 4),), ((2, 3, 4),)]),
    Spec("std", lambda a: sd.std(a, ddof=1, keepdims=True), UNARY_SHAPES[:2]),
    Spec("trace", sd.trace, [((3, 3),), ((3, 4),), ((3, 3, 2),)]),
    Spec("diag", sd.diag, [((4,),)]),
    Spec("diagonal", sd.diag, [((3, 3),), ((3, 4),), ((4, 3),)]),
    Spec("outer", sd.outer, [((3,), (4,)), ((2, 3), ())]),
    Spec("pick", lambda a: sd.pick(a, np.array([0, 3, 1])), [((3, 4),)]),
    Spec(
        "onehot_sub", lambda a, v: make("onehot_sub", (sd.exp(a), sd.constant(np.array([0, 3, 1])), v)), [((3, 4), ())]
    ),
    Spec("getitem", lambda a: a[1:, ::-2] * a[0, 1:3], [((3, 4),)]),
    Spec("getitem", lambda a: a[..., None, -1], [((2, 3, 4),)]),
    Spec("scatter", lambda a: sd.sum(sd.exp(a[:2]) ** 2, axis=0), [((3, 4),)]),
    Spec("reshape", lambda a: sd.sin(a.reshape(2, -1)) @ np.ones((6, 2)), [((3, 4),)]),
    Spec("transpose", lambda a: sd.transpose(a, (2, 0, 1)) * np.arange(24.0).reshape(4, 2, 3), [((2, 3, 4),)]),
    Spec("expand_dims", lambda a: sd.expand_dims(a, 1) * np.ones((3, 2, 4)), [((3, 4),)]),
    Spec("squeeze", lambda a: sd.squeeze(sd.tanh(a), 1), [((3, 1, 4),)]),
    Spec("broadcast_to", lambda a: sd.broadcast_to(a, (2, 3, 4)) ** 2, [((3, 1),), ((4,),)]),
    Spec("concatenate", lambda a, b: sd.concatenate([a, sd.exp(b), a], axis=1), [((3, 2), (3, 4))]),
    Spec("concatenate", lambda a, b: sd.stack([a, b * a], axis=0), [((3, 4), (3, 4))]),
    Spec(
        "matmul",
        lambda a, b: a @ b,
        [
            ((3, 4), (4, 2)),
            ((4,), (4, 2)),
            ((3, 4), (4,)),
            ((4,), (4,)),
            ((2, 3, 4), (4, 5)),
            ((2, 1, 3, 4), (5, 4, 2)),
        ],
    ),
    Spec("tensordot", lambda a, b: sd.tensordot(a, b, axes=1), [((2, 3), (3, 4))]),
    Spec("tensordot", lambda a, b: sd.tensordot(a, b, axes=((0, 2), (2, 0))), [((2, 3, 4), (4, 5, 2))]),
    Spec("tensordot", lambda a, b: sd.dot(a, b), [((2, 3, 4, 5), (5,)), ((2, 3, 4, 5), (5, 2))]),
    Spec("sympy_fn", _t(lambda t: t * sp.tanh(sp.log(1 + sp.exp(t)))), UNARY_SHAPES),
    Spec(
        "sympy_fn",
        lambda a, b: sd.from_sympy(
            sp.Symbol("u") ** 2 * sp.sin(sp.Symbol("v")), {sp.Symbol("u"): a, sp.Symbol("v"): b}
        ),
        BINARY_SHAPES,
    ),
    Spec("broadcast_like", lambda a: sd.sum(a, axis=1, keepdims=True) * a, [((3, 4),)]),
    # sd.linalg: well-conditioned matrices (diagonally dominant), single and stacked
    Spec("inv", lambda a: sd.linalg.inv(_wc(a)), [((3, 3),), ((2, 3, 3),)]),
    Spec("det", lambda a: sd.linalg.det(_wc(a) / 8), [((3, 3),), ((2, 3, 3),)]),
    Spec("cofactor", lambda a: sd.linalg.cofactor(_wc(a) / 8), [((3, 3),), ((2, 3, 3),)]),
    Spec("logabsdet", lambda a: sd.linalg.slogdet(_wc(a))[1], [((3, 3),), ((2, 3, 3),)]),
    Spec("signdet", lambda a: _signed_logdet(_wc(a) * [1, -1, 1]), [((3, 3),), ((2, 3, 3),)]),
    Spec(
        "solve",
        lambda a, b: sd.linalg.solve(_wc(a), b),
        [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (3,)), ((2, 3, 3), (3, 2)), ((3, 3), (2, 3, 2))],
    ),
    Spec("norm", lambda a: sd.linalg.norm(a), [((5,),), ((3, 4),), ((2, 3, 4),)]),
    Spec("norm", lambda a: sd.linalg.norm(a, axis=1, keepdims=True) * a, [((3, 4),)]),
    Spec("norm", lambda a: sd.linalg.norm(a, axis=(0, 2)), [((2, 3, 4),)]),
    # issue 12: embeddings (repeated and negative ids, ids of two axes, axis != 0); second derivatives go
    # take -> scatter_add -> take. The dropout mask has no row: see NOT_DIFFERENTIABLE.
    Spec("take", lambda a: sd.take(sd.sin(a), np.array([[2, 0], [2, 2], [-1, 1]])), [((4, 3),), ((5,),)]),
    Spec("take", lambda a: sd.take(sd.exp(a), np.array([1, 1, 0, 3]), axis=1), [((2, 4, 3),)]),
    Spec("scatter_add", lambda a: sd.scatter_add(sd.sin(a), np.array([0, 2, 0]), 4, axis=1), [((2, 3, 5),)]),
    Spec("scatter_add", lambda a: sd.scatter_add(a**2, np.array([[1, 1], [0, -1]]), 3), [((2, 2, 3),), ((2, 2),)]),
    # issue 12: pooling and normalization (squared pools: the second order goes through the gradients' gradients)
    Spec("max_pool2d", lambda a: sd.max_pool2d(sd.sin(a), 2) ** 2, [((2, 5, 4, 3),), ((1, 6, 7, 2),)]),
    Spec("max_pool2d", lambda a: sd.max_pool2d(a, (3, 2), stride=(2, 1)) ** 2, [((3, 7, 5, 2),)]),
    Spec("max_pool2d_grad", lambda a: sd.grad(sd.sum(sd.max_pool2d(a, 2) ** 3), a), [((2, 4, 5, 2),)]),
    Spec("max_pool2d_grad", lambda a: sd.grad(sd.sum(sd.max_pool2d(a, 3, stride=1) ** 3), a), [((1, 5, 4, 2),)]),
    Spec("max_pool2d_tangent", lambda a: _max_pool_tangent(a, sd.exp(a), (2, 2), (1, 2)), [((2, 5, 4, 3),)]),
    Spec("avg_pool2d", lambda a: sd.avg_pool2d(sd.sin(a), 2) ** 2, [((2, 5, 4, 3),), ((1, 6, 7, 2),)]),
    Spec("avg_pool2d", lambda a: sd.avg_pool2d(a, (2, 3), stride=(1, 2)) ** 2, [((3, 4, 7, 2),)]),
    Spec("avg_pool2d_grad", lambda a: sd.grad(sd.sum(sd.avg_pool2d(a, 2) ** 3), a), [((2, 5, 4, 2),)]),
    Spec("avg_pool2d_grad", lambda a: sd.grad(sd.sum(sd.avg_pool2d(a, 2, stride=1) ** 3), a), [((1, 4, 5, 2),)]),
    Spec("layer_norm", sd.layer_norm, [((3, 4),), ((2, 3, 4),)]),
    Spec("layer_norm", lambda a: sd.layer_norm(a, axis=(1, 2), eps=0.1), [((2, 3, 4),)]),
    Spec("batch_norm", sd.batch_norm, [((5, 3),), ((4, 2, 3),)]),
    Spec("batch_norm", lambda a: sd.batch_norm(a, axis=(0, 1, 2)), [((3, 2, 2, 2),)]),
    # issue 12: convolution (each op of the family is bilinear: its second derivatives are the family again)
    Spec("conv2d", sd.conv2d, [((2, 5, 4, 3), (3, 2, 3, 2)), ((1, 4, 4, 1), (2, 2, 1, 3))]),
    Spec(
        "conv2d",
        lambda x, w: sd.conv2d(x, w, stride=2, padding="same", dilation=(1, 2)),
        [((3, 6, 7, 2), (3, 2, 2, 2))],
    ),
    Spec("conv2d_transpose", lambda x, w: _conv_grads(x, w)[0], [((2, 5, 6, 2), (3, 2, 2, 3))]),
    Spec("conv2d_filters", lambda x, w: _conv_grads(x, w)[1], [((2, 5, 6, 2), (3, 2, 2, 3))]),
    Spec("im2col", lambda x: conv_ops.im2col(x, (2, 3), **_GEOMETRY), [((2, 5, 4, 2),)]),
    Spec("col2im", lambda c: conv_ops.col2im(sd.tanh(c), (2, 3), (5, 4), **_GEOMETRY), [((12, 2, 3, 3),)]),
    Spec("im2col", lambda x: conv_ops.im2col(x, (2, 3), "windows", **_GEOMETRY), [((2, 5, 4, 2),)]),
    Spec("col2im", lambda c: conv_ops.col2im(sd.tanh(c), (2, 3), (5, 4), "windows", **_GEOMETRY), [((2, 3, 3, 12),)]),
]


def _max_pool_tangent(x, t, size, stride):
    """The tangent of ``y = max_pool2d(x, size, stride)`` given the tangent ``t`` of ``x`` (the op built directly),
    plus ``y``: the gradient reaches ``x`` through ``y`` too (the op has none for its ``x`` and ``y``)."""
    y = sd.max_pool2d(x, size, stride)
    return make("max_pool2d_tangent", (x, y, t), {"size": size, "stride": stride}) + y


_GEOMETRY = {"stride": (2, 1), "padding": ((1, 0), (0, 1)), "dilation": (1, 1)}  # of the lowered patches


def _conv_grads(x, w):
    """The gradients of a strided, padded convolution with respect to its images and its filters, of a loss that
    depends on both again (so that the gradient ops take every kind of argument)."""
    y = sd.conv2d(x, w, stride=(2, 1), padding="same")
    return sd.grad(sd.sum(sd.tanh(y) * y), [x, w])


def _wc(a):
    """``a`` (entries in [-2, 2]) plus 8 on the diagonal: diagonally dominant, so well-conditioned."""
    return a + 8 * np.eye(a.shape[-1])


def _signed_logdet(a):
    """``sign * logabsdet`` of ``slogdet(a)``: the sign (a negative one here) scales the gradient, having none."""
    sign, logabsdet = sd.linalg.slogdet(a)
    return sign * logabsdet


# Ops with no gradient to check: leaves, boolean results, integer results, and shape references.
NOT_DIFFERENTIABLE = {
    *("input", "param", "const", "dim", "shape", "gt", "ge", "lt", "le", "eq", "sign", "onehot"),
    *("argmax", "argmin", "eye"),  # integer indices; a constant matrix
    # issue 12: sd.dropout's mask reads only its argument's shape (no gradient), and it is random: central
    # differences of a training run would compare two different masks, and evaluation leaves it out, so
    # tests/test_dropout.py checks x * mask, its gradient dy * mask and the mask itself directly
    "dropout_mask",
}


def _values(shapes, domain: str, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        if domain == "positive":
            v = rng.uniform(0.5, 2.0, size=shape)
        elif domain == "nonzero":
            v = rng.uniform(0.3, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        else:
            v = rng.uniform(-2.0, 2.0, size=shape)
        out.append(np.asarray(v, dtype=np.float64))
    return out


def _loss(spec: Spec, shapes, seed: int):
    params = [sd.Param(f"p{i}", shape=s) for i, s in enumerate(shapes)]
    out = spec.build(*params)
    weights = np.random.default_rng(seed + 100).normal(size=out.shape)
    loss = sd.sum(out * weights)
    values = {p.label: v for p, v in zip(params, _values(shapes, spec.domain, seed))}
    return loss, params, values


CASES = [
    pytest.param(spec, shapes, id=f"{spec.op}-{i}-{'x'.join(map(str, shapes))}")
    for spec in SPECS
    for i, shapes in enumerate(spec.shapes)
]


@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_gradient_matches_central_differences(spec: Spec, shapes) -> None:
    loss, params, values = _loss(spec, shapes, seed=len(shapes))
    for g, p in zip(sd.grad(loss, params), params):
        assert g.shape == p.shape and g.dtype == p.dtype
    assert sd.check_grad(loss, params, values) < spec.tol


@pytest.mark.parametrize(("spec", "shapes"), [c for c in CASES if c.values[0].smooth])
def test_second_derivative_matches_central_differences(spec: Spec, shapes) -> None:
    """Hessian-vector products: d/dp sum(grad(loss, p) * v) for a fixed direction v."""
    loss, params, values = _loss(spec, shapes, seed=7)
    rng = np.random.default_rng(3)
    grads = sd.grad(loss, params)
    hvp_loss = sd.sum(sd.stack([sd.sum(g * rng.normal(size=p.shape)) for g, p in zip(grads, params)]))
    assert sd.check_grad(hvp_loss, params, values) < 1e-5


@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_compiled_forward_matches_reference_implementation(spec: Spec, shapes) -> None:
    """The generated NumPy code agrees with the op table's reference implementation, node by node."""
    loss, params, values = _loss(spec, shapes, seed=1)
    got = sd.compile(loss)(**values)
    np.testing.assert_allclose(got, sd.testing.interpret(loss, values), rtol=1e-10, atol=1e-10)


def test_shared_subexpression_gradient_accumulates() -> None:
    x = sd.Param("x", shape=(3,))
    s = sd.sin(x)
    loss = sd.sum(s * s + s)  # s is used three times
    (g,) = sd.grad(loss, [x])
    xv = np.array([0.1, -0.7, 1.3])
    np.testing.assert_allclose(sd.compile(g)(x=xv), (2 * np.sin(xv) + 1) * np.cos(xv))
    assert sd.check_grad(loss, x, {"x": xv}) < 1e-8
    assert str(g).count("sin(x)") == 1  # computed (and printed) once


def test_gradient_with_respect_to_an_input_and_broadcast_param() -> None:
    x = sd.Input("x", shape=(None, 3))
    b = sd.Param("b", shape=(1, 3))
    loss = sd.mean(sd.tanh(x + b) ** 2)
    gx, gb = sd.grad(loss, [x, b])
    assert gx.shape == (None, 3) and gb.shape == (1, 3)
    values = {"x": np.random.default_rng(0).normal(size=(5, 3)), "b": np.array([[0.1, -0.2, 0.3]])}
    assert sd.check_grad(loss, [x, b], values) < 1e-7


def test_gradient_of_unreachable_target_is_zeros_of_its_shape() -> None:
    a, b = sd.Param("a", shape=(2, 3)), sd.Param("b", shape=(4,))
    g = sd.grad(sd.sum(a), b)
    np.testing.assert_array_equal(sd.compile(g)(b=np.ones(4)), np.zeros(4))


def test_losses_have_closed_form_gradients_and_pass_check_grad() -> None:
    rng = np.random.default_rng(0)
    z = sd.Param("z", shape=(6, 4))
    y = sd.Input("y", shape=(None,), dtype="int64")
    t = sd.Input("t", shape=(6, 4))
    values = {"z": rng.normal(size=(6, 4)), "y": rng.integers(0, 4, size=6), "t": rng.uniform(size=(6, 4))}
    for loss in (
        sd.softmax_cross_entropy(z, y),
        sd.sigmoid_cross_entropy(z, t),
        sd.mse(z, t),
        sd.softmax_cross_entropy(z, sd.softmax(t)),
    ):
        assert sd.check_grad(loss, z, values) < 1e-7


def test_large_logits_give_finite_losses_and_gradients() -> None:
    z = sd.Param("z", shape=(2, 3))
    y = sd.Input("y", shape=(2,), dtype="int64")
    t = sd.Input("t", shape=(2, 3))
    big = np.array([[1000.0, -1000.0, 0.0], [-800.0, 900.0, 5.0]])
    for loss in (sd.softmax_cross_entropy(z, y), sd.sigmoid_cross_entropy(z, t)):
        f = sd.compile({"loss": loss, "g": sd.grad(loss, z)})
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out = f(z=big, **({"y": np.array([0, 2])} if "y" in f.inputs else {"t": np.ones((2, 3))}))
        assert np.isfinite(out["loss"]) and np.all(np.isfinite(out["g"]))
