"""sd.conv2d, its gradients (conv2d_transpose, conv2d_filters) and the sd.conv layer.

Values and gradients are checked against a naive NumPy implementation written here with loops over the output
positions (independent of symdiff's im2col kernels) and against central differences, in float64.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.errors import DTypeError, ShapeError
from symdiff.ops import conv as conv_ops


# -- an independent reference: loops over the output positions ----------------------------------------------------
def _window(xp: np.ndarray, i: int, j: int, k: tuple, stride: tuple, dilation: tuple) -> tuple[slice, slice]:
    (kh, kw), (sh, sw), (dh, dw) = k, stride, dilation
    return (
        slice(i * sh, i * sh + dh * (kh - 1) + 1, dh),
        slice(j * sw, j * sw + dw * (kw - 1) + 1, dw),
    )


def _naive(x, w, dy, stride, pads, dilation):
    """conv2d(x, w), and the gradients of sum(conv2d(x, w) * dy) with respect to x and w, by loops (dy None: 0)."""
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    kh, kw, _, co = w.shape
    ho = (xp.shape[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (xp.shape[2] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((x.shape[0], ho, wo, co))
    dy = np.zeros_like(y) if dy is None else dy
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(ho):
        for j in range(wo):
            rows, cols = _window(xp, i, j, (kh, kw), stride, dilation)
            patch = xp[:, rows, cols, :]
            y[:, i, j, :] = np.einsum("nabc,abco->no", patch, w)
            dxp[:, rows, cols, :] += np.einsum("no,abco->nabc", dy[:, i, j, :], w)
            dw += np.einsum("nabc,no->abco", patch, dy[:, i, j, :])
    dx = dxp[:, pads[0][0] : xp.shape[1] - pads[0][1], pads[1][0] : xp.shape[2] - pads[1][1], :]
    return y, dx, dw


# (x shape, w shape, stride, padding, dilation, explicit pads that padding means)
CONFIGS = [
    ((1, 5, 4, 3), (3, 2, 3, 2), 1, "valid", 1, ((0, 0), (0, 0))),
    ((3, 7, 6, 2), (3, 3, 2, 4), 2, "valid", 1, ((0, 0), (0, 0))),
    ((3, 6, 5, 2), (3, 3, 2, 2), 1, "same", 1, ((1, 1), (1, 1))),
    ((1, 8, 7, 3), (2, 3, 3, 2), 2, "same", 1, ((0, 0), (1, 1))),
    ((3, 7, 8, 1), (3, 2, 1, 3), 1, "same", 2, ((2, 2), (1, 1))),
    ((3, 9, 6, 2), (3, 3, 2, 3), 2, "same", 2, ((2, 2), (1, 2))),
    ((1, 6, 9, 2), (2, 3, 2, 2), (2, 1), ((1, 0), (2, 1)), (2, 1), ((1, 0), (2, 1))),
    ((3, 5, 4, 3), (1, 1, 3, 2), 1, "valid", 1, ((0, 0), (0, 0))),  # 1 x 1: a GEMM without patches
    ((3, 5, 4, 3), (1, 1, 3, 2), 2, "same", 1, ((0, 0), (0, 0))),  # 1 x 1 and strided: patches
    ((1, 7, 5, 1), (3, 2, 1, 2), 2, 1, (1, 2), ((1, 1), (1, 1))),  # one channel: patches copied per filter tap
]


def _pair(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize(("xs", "ws", "stride", "padding", "dilation", "pads"), CONFIGS)
def test_conv2d_values_and_gradients_match_a_naive_loop_implementation(xs, ws, stride, padding, dilation, pads):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x = sd.Input("x", shape=(None, *xs[1:]))
    w = sd.Param("w", shape=ws)
    y = sd.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    assert y.attrs["padding"] == pads
    dy = sd.Input("dy", shape=y.shape)
    gx, gw = sd.grad(sd.sum(y * dy), [x, w])
    assert (gx.op, gw.op) == ("conv2d_transpose", "conv2d_filters")
    xv, wv = rng.normal(size=xs), rng.normal(size=ws)
    dyv = rng.normal(size=(xs[0], *y.shape[1:]))
    ref = _naive(xv, wv, dyv, _pair(stride), pads, _pair(dilation))
    assert ref[0].shape == (xs[0], *y.shape[1:])
    outs = {"y": y, "dx": gx, "dw": gw}
    namespace: dict = {}
    exec(sd.codegen(outs, name="readable"), namespace)  # the ops' own kernels
    for got in (sd.compile(outs)(x=xv, w=wv, dy=dyv), namespace["readable"](x=xv, w=wv, dy=dyv)):
        for key, expected in zip(outs, ref):
            np.testing.assert_allclose(got[key], expected, rtol=1e-9, atol=1e-12, err_msg=key)
    loss = sd.sum(sd.tanh(y) * dy)
    assert sd.check_grad(loss, [x, w], {"x": xv, "w": wv, "dy": dyv}) < 1e-7


@pytest.mark.parametrize("n", [1, 3])
def test_second_derivatives_of_a_convolution_match_central_differences(n: int) -> None:
    """The Hessian of a loss through a strided convolution: its rows are the gradient ops differentiated again."""
    rng = np.random.default_rng(n)
    w = sd.Param("w", shape=(2, 2, 2, 2))
    x = sd.constant(rng.normal(size=(n, 5, 4, 2)))
    loss = sd.sum(sd.tanh(sd.conv2d(x, w, stride=2, padding="same")))
    wv = rng.normal(size=(2, 2, 2, 2))
    (g,) = sd.grad(loss, [w])
    hessian = sd.compile(sd.hessian(loss, w))(w=wv).reshape(16, 16)
    numeric = np.stack(
        [
            (sd.compile(g)(w=wv + h) - sd.compile(g)(w=wv - h)).ravel() / 2e-6
            for h in np.eye(16).reshape(16, 2, 2, 2, 2) * 1e-6
        ]
    )
    np.testing.assert_allclose(hessian, numeric, rtol=1e-6, atol=1e-6)


def test_jacobians_push_batches_of_tangents_through_the_convolution_family() -> None:
    """Forward mode folds a batch of tangents into the batch or channel axis of an operand (and splits it off)."""
    rng = np.random.default_rng(5)
    x, w = sd.Input("x", shape=(2, 5, 4, 2)), sd.Param("w", shape=(2, 3, 2, 3))
    y = sd.conv2d(x, w, stride=(2, 1), padding="same")
    xv, wv = rng.normal(size=(2, 5, 4, 2)), rng.normal(size=(2, 3, 2, 3))
    pads = y.attrs["padding"]
    for wrt, value in ((x, xv), (w, wv)):
        jac = sd.compile(sd.jacobian(y, wrt))(**({"w": wv} if wrt is x else {"x": xv}))  # linear in each
        for idx in [(0,) * value.ndim, tuple(d - 1 for d in value.shape), (1, 2, 1, 1)[: value.ndim]]:
            e = np.zeros_like(value)
            e[idx] = 1.0
            args = (e, wv) if wrt is x else (xv, e)  # linear: the column is the convolution of the unit vector
            np.testing.assert_allclose(jac[(...,) + idx], _naive(*args, None, (2, 1), pads, (1, 1))[0])


def test_same_padding_follows_tensorflow_for_any_stride_and_dilation() -> None:
    """TensorFlow pads ``max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)``, the odd pixel at the bottom/right."""
    cases = {  # (size, kernel, stride, dilation) -> pads of one axis, from TensorFlow's rule worked by hand
        (8, 3, 1, 1): (1, 1),
        (8, 3, 2, 1): (0, 1),
        (7, 3, 2, 1): (1, 1),
        (8, 4, 1, 1): (1, 2),
        (8, 3, 1, 2): (2, 2),
        (5, 1, 3, 1): (0, 0),
        (9, 3, 3, 2): (1, 1),
        (6, 3, 2, 2): (1, 2),
    }
    for (n, k, s, d), pads in cases.items():
        x = sd.Input("x", shape=(None, n, n, 1))
        y = sd.conv2d(x, sd.Param("w", shape=(k, k, 1, 1)), stride=s, padding="same", dilation=d)
        assert y.attrs["padding"] == (pads, pads), (n, k, s, d)
        assert y.shape[1:3] == (-(-n // s),) * 2


def test_stride_and_dilation_take_an_int_or_a_pair_and_padding_explicit_pads() -> None:
    x, w = sd.Input("x", shape=(None, 8, 6, 2)), sd.Param("w", shape=(3, 3, 2, 4))
    assert sd.conv2d(x, w, stride=2) is sd.conv2d(x, w, stride=(2, 2))
    assert sd.conv2d(x, w, dilation=(2, 1)).shape == (None, 4, 4, 4)
    assert sd.conv2d(x, w, padding=1) is sd.conv2d(x, w, padding=((1, 1), (1, 1))) is sd.conv2d(x, w, padding="same")
    assert sd.conv2d(x, w, padding=(2, 0)).attrs["padding"] == ((2, 2), (0, 0))
    assert sd.conv2d(x, w, padding="SAME") is sd.conv2d(x, w, padding="same")  # TensorFlow's spelling
    assert sd.conv2d(x, w, padding="VALID") is sd.conv2d(x, w)
    assert sd.conv2d(x, w, padding=((1, 0), (0, 1))).shape == (None, 7, 5, 4)


@pytest.mark.parametrize(
    ("xs", "ws", "kwargs", "error", "message"),
    [
        ((None, 8, 8, 3), (3, 3, 2, 4), {}, ShapeError, r"conv2d: the images have 3 channels, the filters take 2.*"),
        ((None, 4, 8, 1), (5, 3, 1, 2), {}, ShapeError, r"conv2d: the filter .* larger than the padded image"),
        ((None, 4, 4, 1), (3, 3, 1, 2), {"dilation": 2}, ShapeError, r"conv2d: the filter \(spanning 5 pixels"),
        ((None, 8, 8), (3, 3, 1, 2), {}, ShapeError, r"conv2d: expected images x \(N, H, W, C_in\)"),
        ((None, 8, 8, 1), (3, 3, 2), {}, ShapeError, r"conv2d: expected images x .* filters w"),
        ((None, 8, 8, 1), (3, 3, 1, 2), {"stride": 0}, ValueError, "conv2d: stride must be a positive int"),
        ((None, 8, 8, 1), (3, 3, 1, 2), {"dilation": (1, -1)}, ValueError, "conv2d: dilation must be a positive"),
        ((None, 8, 8, 1), (3, 3, 1, 2), {"padding": "full"}, ValueError, 'conv2d: padding must be "valid", "same"'),
        ((None, 8, 8, 1), (3, 3, 1, 2), {"padding": -1}, ValueError, "conv2d: padding must be"),
    ],
)
def test_shape_errors_name_the_op_and_both_shapes(xs, ws, kwargs, error, message) -> None:
    x, w = sd.Input("x", shape=xs), sd.Param("w", shape=ws)
    with pytest.raises(error, match=message) as info:
        sd.conv2d(x, w, **kwargs)
    if error is ShapeError:
        text = str(info.value)
        assert sd.graph.format_shape(xs) in text and sd.graph.format_shape(ws) in text


def test_integer_images_or_filters_are_refused_with_a_dtype_error() -> None:
    x = sd.Input("x", shape=(None, 8, 8, 1), dtype="int64")
    with pytest.raises(DTypeError, match=r"conv2d: operands must be floats, got dtypes int64 \(x\) and float64 \(w\)"):
        sd.conv2d(x, sd.Param("w", shape=(3, 3, 1, 2)))


def test_gradient_ops_check_their_operands_too() -> None:
    conv = conv_ops
    dy, w = sd.Input("dy", shape=(None, 6, 6, 2)), sd.Param("w", shape=(3, 3, 1, 2))
    with pytest.raises(ShapeError, match=r"conv2d_transpose: shapes \(None, 6, 6, 2\) \(dy\) and \(3, 3, 1, 2\) \(w\)"):
        conv.conv2d_transpose(dy, w, (9, 9), **conv._DEFAULTS)
    with pytest.raises(ShapeError, match=r"conv2d_filters: shapes \(None, 9, 9, 1\) \(x\) and \(None, 6, 6, 2\)"):
        conv.conv2d_filters(sd.Input("x", shape=(None, 9, 9, 1)), dy, (3, 3), **conv._DEFAULTS)


def _tiny_cnn(dtype: str = "float64"):
    x = sd.Input("x", shape=(None, 6, 6, 1), dtype=dtype)
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.conv(x, 4, 3, "c1", activation="relu", dtype=dtype)
    h = sd.conv(h, 4, (3, 2), "c2", stride=2, activation="tanh", dtype=dtype)
    z = sd.dense(sd.reshape(h, (-1, 3 * 3 * 4)), 2, "out", dtype=dtype)
    return x, y, sd.softmax_cross_entropy(z, y)


def _bright_side(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images with one bright 2x2 square; the label is the half (left 0, right 1) it lies in."""
    rng = np.random.default_rng(seed)
    images = rng.normal(scale=0.1, size=(n, 6, 6, 1))
    labels = rng.integers(0, 2, size=n)
    for i, label in enumerate(labels):
        r, c = rng.integers(0, 5), rng.integers(0, 2) + 3 * label
        images[i, r : r + 2, c : c + 2, 0] += 1.0
    return images, labels


def test_generated_code_has_no_python_loop_over_positions() -> None:
    """The only Python loops are col2im's over the filter taps (kh * kw slice-adds), never over pixels."""
    x, y, loss = _tiny_cnn()
    params = sd.params(loss)
    x_grad = sd.grad(loss, [x, *params])
    sources = [
        sd.codegen(x_grad),
        sd.codegen(x_grad, optimize=True),
        sd.compile_step(loss, sd.init_params(loss), sd.optim.SGD(lr=0.1)).source,
    ]
    for source in sources:
        loops = {line.strip().split(":")[0] for line in source.splitlines() if re.match(r"\s*for\b", line)}
        assert loops <= {
            "for a in range(kernel[0])",  # _taps: a strided slice of every window per filter tap
            "for b in range(kernel[1])",
            "for a, b, rows, cols in _taps(kernel, stride, dilation, ho, wo)",
            "for a, b, rows, cols in _taps((kh, kw), stride, dilation, ho, wo)",
            "for rows, cols, part in parts",  # _add_taps: the slice-adds of those taps
            "for b in range(kw)",  # _im2col: per filter column, zeros where it falls left or right of the image
        }, loops
        assert "_taps" in source
    assert "_im2col" in sources[2] and "_col2im" in sources[2]  # the lowered patches and the image gradient


def test_lowered_code_computes_the_patches_once_for_a_convolution_and_its_filter_gradient() -> None:
    x = sd.Input("x", shape=(None, 6, 6, 1))
    w = sd.Param("w", shape=(3, 3, 1, 2))
    loss = sd.sum(sd.tanh(sd.conv2d(x, w, padding="same")))
    step = sd.compile_step(loss, {"w": np.ones((3, 3, 1, 2))}, sd.optim.SGD(lr=0.1))
    body = step.source[step.source.index("def train_step") :]
    assert body.count("= _im2col(x") == 1
    assert "transpose1 = np.transpose(cols1, (1, 2, 3, 0))" in body  # one row per window: a view of the patches
    assert re.search(r"= _conv2d\(transpose1, np.reshape\(w, \(1, 1, 9, 2\)\), out=_ws\[\d\]\)", body)
    assert re.search(r"= _conv2d_filters\(transpose1, \w+, \(1, 1\), out=_ws\[\d\]\)", body)


def test_the_memory_planner_gives_the_convolutions_buffers_and_reuses_them() -> None:
    """Every convolution statement of a CNN's step writes into a workspace buffer, through the flatten before the
    dense layer too (a reshape keeping the sizes around its open axis keeps its length), and dead buffers serve again
    (the image gradient of the second layer goes where the first layer's activations were)."""
    x, y, loss = _tiny_cnn("float32")
    source = sd.compile_step(loss, sd.init_params(loss), sd.optim.SGD(lr=0.1)).source
    body = source[source.index("def train_step") :].splitlines()
    calls = [line for line in body if re.search(r"= (_im2col|_col2im|_conv2d\w*|np\.matmul)\(", line)]
    assert len(calls) == 10 and all("out=_ws[" in line for line in calls), calls
    buffers = [re.search(r"out=_ws\[(\d+)\]", line)[1] for line in body if "out=_ws[" in line]
    assert len(set(buffers)) < len(buffers) - 10  # in-place element-wise ops and reused buffers
    image_grad = next(
        i for i, line in enumerate(body) if "= _conv2d_transpose(dc2_z, c2_W, (6, 6), stride=(2, 2)" in line
    )
    buffer = re.search(r"out=(_ws\[\d+\])", body[image_grad])[1]
    assert any(f"out={buffer}" in line for line in body[:image_grad])
    assert "n = x.shape[0]" in source  # the batch size read off the input, not off the flattened activations


def test_a_compiled_training_step_of_a_tiny_cnn_lowers_its_loss() -> None:
    x, y, loss = _tiny_cnn("float32")
    params = {k: v.astype("float32") for k, v in sd.init_params(loss, seed=1).items()}
    step = sd.compile_step(loss, params, sd.optim.Adam(lr=0.01))
    images, labels = _bright_side(64, seed=0)
    images = images.astype("float32")
    losses = [step(x=images, y=labels) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]
    logits = sd.compile(sd.nn.loss_info(loss).pred)(x=images, **params)
    assert np.mean(np.argmax(logits, axis=1) == labels) > 0.9


def test_explain_prints_the_textbook_rules_of_a_convolution_layer() -> None:
    x, y, loss = _tiny_cnn()
    text = str(sd.explain(loss, sd.params(loss)[0]))  # c1_W, through c2's input gradient
    assert re.search(r"dc1 = conv2d_transpose\(dc2_z, c2_W, stride=2, padding=\"same\"\)", text), text
    assert re.search(r"dc1_W = conv2d_filters\(x, dc1_z, padding=\"same\"\)", text), text
    assert "conv2d" in sd.latex(sd.grad(loss, sd.params(loss)[0]))


def test_gradient_ops_print_their_size_only_where_the_operands_leave_it_open() -> None:
    x, w = sd.Input("x", shape=(None, 8, 8, 1)), sd.Param("w", shape=(3, 3, 1, 2))
    for size, stride in (((7, 7), 2), ((8, 8), 2), ((8, 8), 1)):
        y = sd.conv2d(sd.Input("x", shape=(None, *size, 1)), w, stride=stride)
        gx, gw = sd.grad(sd.sum(y), [sd.Input("x", shape=(None, *size, 1)), w])
        shown = size == (8, 8) and stride == 2  # the 8th row fits no window: 7 rows give the same output
        assert ("size=(8, 8)" in sd.to_text(gx)) == shown, sd.to_text(gx)
        assert ("kernel=(3, 3)" in sd.to_text(gw)) == shown, sd.to_text(gw)  # 4 rows of taps would fit as well
    v = sd.Param("v", shape=(1, 1, 1, 1))  # 1x1 filters 3 pixels apart: 2x2 filters give 3x3 outputs as well
    assert sd.to_text(sd.grad(sd.sum(sd.conv2d(x, v, stride=3)), v)).endswith(", stride=3, kernel=(1, 1))")


def test_conv_layer_creates_its_params_like_dense() -> None:
    x = sd.Input("x", shape=(None, 8, 8, 3), dtype="float32")
    h = sd.conv(x, 16, (3, 2), "c1", stride=2, activation="relu")
    assert h.label == "c1" and h.args[0].label == "c1_z" and h.op == "relu"
    W, b = sd.params(h)
    assert (W.label, W.shape, W.dtype, W.attrs["init"]) == ("c1_W", (3, 2, 3, 16), np.float32, "he")
    assert (b.label, b.shape, b.attrs["init"]) == ("c1_b", (16,), "zeros")
    assert h.shape == (None, 4, 4, 16)
    values = sd.init_params([W], seed=0)
    assert values["c1_W"].std() == pytest.approx(np.sqrt(2 / (3 * 2 * 3)), rel=0.1)  # He: fan_in = kh * kw * C_in
    plain = sd.conv(x, 4, 5, "c2", padding="valid")
    assert plain.label == "c2" and plain.op == "add" and plain.shape == (None, 4, 4, 4)
    glorot = sd.init_params([sd.params(plain)[0]], seed=0)["c2_W"]
    assert np.abs(glorot).max() <= np.sqrt(6 / (25 * 3 + 25 * 4))  # Glorot: fans kh * kw * C_in, kh * kw * C_out
    with pytest.raises(ValueError, match="conv 'c3': unknown activation 'gelu2'"):
        sd.conv(x, 4, 3, "c3", activation="gelu2")
    with pytest.raises(ShapeError, match=r"conv 'c3': the input must be images"):
        sd.conv(sd.Input("v", shape=(None, 8)), 4, 3, "c3")
    with pytest.raises(ValueError, match="conv 'c3': kernel must be a positive int"):
        sd.conv(x, 4, 0, "c3")


# (x shape, kernel, stride, explicit pads, dilation): pads wider than a filter, windows wholly in the padding
PATCH_CONFIGS = [
    ((2, 5, 4, 1), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 6, 7, 3), (2, 3), (2, 2), ((0, 1), (1, 1)), (1, 1)),
    ((1, 7, 5, 2), (3, 2), (1, 2), ((2, 0), (0, 3)), (2, 1)),
    ((3, 4, 6, 1), (2, 2), (2, 3), ((3, 3), (4, 2)), (1, 2)),
    ((2, 5, 5, 4), (1, 3), (3, 1), ((0, 0), (0, 0)), (1, 2)),
    ((0, 5, 4, 1), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # an empty batch
]


@pytest.mark.parametrize(("xs", "kernel", "stride", "pads", "dilation"), PATCH_CONFIGS)
def test_im2col_in_both_layouts_holds_every_window_and_col2im_is_its_adjoint(xs, kernel, stride, pads, dilation):
    rng = np.random.default_rng(sum(xs))
    x = rng.normal(size=xs)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    geo = {"stride": stride, "padding": pads, "dilation": dilation}
    ho = (xp.shape[1] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (xp.shape[2] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    windows = np.empty((xs[0], ho, wo, kernel[0] * kernel[1] * xs[3]))  # the naive patches, one row per window
    for i in range(ho):
        for j in range(wo):
            rows, cols = _window(xp, i, j, kernel, stride, dilation)
            windows[:, i, j] = xp[:, rows, cols, :].reshape(windows.shape[0], windows.shape[3])
    expected = {"windows": windows, "taps": windows.transpose(3, 0, 1, 2)}
    for rows, patches in expected.items():
        got = conv_ops._im2col(x, kernel, rows=rows, **geo)
        np.testing.assert_array_equal(got, patches, err_msg=rows)
        node = conv_ops.im2col(sd.Input("x", shape=(None, *xs[1:])), kernel, rows, **geo)
        open_batch = list(patches.shape)
        open_batch[rows == "taps"] = None  # the batch axis: first, or second after the filter taps
        assert node.shape == tuple(open_batch), rows
        c = rng.normal(size=patches.shape)  # <im2col(x), c> = <x, col2im(c)>
        back = conv_ops._col2im(c, kernel, xs[1:3], rows=rows, **geo)
        np.testing.assert_allclose(np.vdot(got, c), np.vdot(x, back), rtol=1e-12)
    w = rng.normal(size=(*kernel, xs[3], 2))  # the image gradient (for one channel: a GEMM, then col2im) is the adjoint
    dy = rng.normal(size=(xs[0], ho, wo, 2))
    dx = conv_ops._conv2d_transpose(dy, w, xs[1:3], **geo)
    np.testing.assert_allclose(np.vdot(conv_ops._conv2d(x, w, **geo), dy), np.vdot(x, dx), rtol=1e-12)


def test_patches_are_one_row_per_filter_tap_for_few_channels_and_one_row_per_window_for_many() -> None:
    """Few channels: im2col copies runs of whole image rows, one row per filter tap, and the GEMMs read its
    transpose; many channels (a window's row of kw * C values fills a cache line): one row per window."""
    for channels, dtype, rows in ((1, "float32", "taps"), (5, "float32", "taps"), (6, "float32", "windows")):
        x = sd.Input("x", shape=(None, 6, 6, channels), dtype=dtype)
        w = sd.Param("w", shape=(3, 3, channels, 2), dtype=dtype)
        loss = sd.sum(sd.tanh(sd.conv2d(x, w, padding="same")))
        step = sd.compile_step(loss, sd.init_params(loss), sd.optim.SGD(lr=0.1))
        body = step.source[step.source.index("def train_step") :]
        layout = ', rows="windows"' if rows == "windows" else ""
        assert f"cols1 = _im2col(x, (3, 3), padding=((1, 1), (1, 1)){layout}, out=_ws[0])" in body, body
        assert ("np.transpose(cols1, (1, 2, 3, 0))" in body) == (rows == "taps")
    assert conv_ops._patch_rows(3, 2, 8) == "taps" and conv_ops._patch_rows(3, 3, 8) == "windows"  # float64
    with pytest.raises(ValueError, match="rows must be 'taps' .* or 'windows', got 'pixels'"):
        conv_ops.im2col(sd.Input("x", shape=(None, 6, 6, 1)), (3, 3), "pixels", **conv_ops._DEFAULTS)


def latex_examples() -> dict[str, list[sd.Expr]]:
    """Nodes of each op of the family that differ in its attributes (for tests/test_printing.py's LaTeX check)."""
    x, w = sd.Input("x", shape=(None, 8, 8, 2)), sd.Param("w", shape=(3, 3, 2, 4))
    ys = [sd.conv2d(x, w), sd.conv2d(x, w, stride=2, padding="same"), sd.conv2d(x, w, dilation=2)]
    grads = [sd.grad(sd.sum(y), [x, w]) for y in ys]
    patches = [conv_ops.im2col(x, (3, 3), **conv_ops._DEFAULTS), conv_ops.im2col(x, (2, 2), **conv_ops._DEFAULTS)]
    return {
        "conv2d": ys,
        "conv2d_transpose": [g[0] for g in grads],
        "conv2d_filters": [g[1] for g in grads],
        "im2col": patches,
        "col2im": [conv_ops.col2im(p, p.attrs["kernel"], (8, 8), **conv_ops._DEFAULTS) for p in patches],
    }


def test_latex_of_the_family_names_the_op_and_shows_the_attributes_the_text_shows() -> None:
    for op, nodes in latex_examples().items():
        name = "\\operatorname{" + op.replace("_", "\\_") + "}"
        assert all(n.op == op and name in sd.latex(n) for n in nodes), op
    assert sd.latex(sd.conv2d(sd.Input("x", shape=(None, 8, 8, 1)), sd.Param("w", shape=(3, 3, 1, 1)), stride=2)) == (
        "\\operatorname{conv2d}_{stride=2}\\left(x, w\\right)"
    )


def test_the_printed_convolution_parses_back() -> None:
    x, w = sd.Input("x", shape=(None, 8, 8, 2)), sd.Param("w", shape=(3, 3, 2, 4))
    symbols = {"x": x, "w": w}
    for y in (sd.conv2d(x, w), sd.conv2d(x, w, 2, "same", (1, 2)), sd.conv2d(x, w, padding=((1, 0), (0, 1)))):
        assert sd.parse(sd.to_text(y), symbols) is y
    with pytest.raises(sd.ParseError, match='padding= must be "valid", "same" or explicit pads, not \'full\''):
        sd.parse('conv2d(x, w, padding="full")', symbols)
