"""The non-NumPy backends (symdiff.backends): the same graphs compiled for PyTorch and JAX give NumPy's values.

Every installed backend runs the generic op table's gradient cases (tests/test_ops_grad.py: the loss and its
gradients, lowered as ``sd.compile`` lowers them); a backend that is not installed is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from test_ops_grad import CASES, _loss

import symdiff as sd
from symdiff.errors import UnsupportedError
from symdiff.graph import make
from symdiff.ops import conv as conv_ops

BACKENDS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not installed"),
    )
    for name, module in (("torch", "torch"), ("jax", "jax"), ("cupy", "cupy"))
]

# Ops that have no Array API form in this increment: refused by name at compile time (test below), skipped here.
NUMPY_ONLY = {"im2col", "col2im"}  # NumPy's lowering of a convolution: other libraries run conv2d whole
# Second-order convolution cases (the gradient ops of a loss of the gradients, values up to 40) whose float32 results
# lose digits to cancellation in any order of summation: NumPy's own are up to 1.6e-5 from the float64 values, so
# two float32 results cannot agree to 1e-6. The backends' are held to the float64 values instead, within 1e-6 of the
# largest value (NumPy's float32 results are, too).
FLOAT32_ILL_CONDITIONED = {"conv2d_transpose", "conv2d_filters"}


def _gradient_outputs(spec, shapes, dtype):
    loss, params, values = _loss(spec, shapes, seed=1)
    outs = {"loss": loss, **{f"d{p.label}": g for p, g in zip(params, sd.grad(loss, params))}}
    return outs, {k: v.astype(dtype) for k, v in values.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_backend_matches_numpy_over_the_op_table(backend: str, spec, shapes) -> None:
    if spec.op in NUMPY_ONLY:
        pytest.skip(f"op {spec.op!r} has no Array API form yet (refused by name)")
    outs, values = _gradient_outputs(spec, shapes, np.float64)
    want = sd.compile(outs)(**values)
    got = sd.compile(outs, backend=backend)(**values)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-12, atol=1e-12, err_msg=k)


IMAGE_OPS = {
    *("conv2d", "conv2d_transpose", "conv2d_filters", "layer_norm", "batch_norm"),
    *("max_pool2d", "max_pool2d_grad", "max_pool2d_tangent", "avg_pool2d", "avg_pool2d_grad"),
}


@pytest.mark.parametrize(("spec", "shapes"), [c for c in CASES if c.values[0].op in IMAGE_OPS])
def test_array_api_definitions_of_the_image_ops_match_numpy(spec, shapes) -> None:
    """The standard-only helpers (symdiff.backends.ARRAY_API: what CuPy and any namespace run, where torch and JAX
    have convolutions of their own), on array-api-compat's namespace of NumPy."""
    namespace = pytest.importorskip("array_api_compat.numpy")
    outs, values = _gradient_outputs(spec, shapes, np.float64)
    want = sd.compile(outs)(**values)
    got = sd.compile(outs, backend=namespace)(**values)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-12, atol=1e-12, err_msg=k)


def _float32_cases():
    """The op table's cases whose loss stays float32 when its params are float32 (no float64 constants)."""
    out = []
    for case in CASES:
        spec, shapes = case.values
        params = [sd.Param(f"p{i}", shape=s, dtype="float32") for i, s in enumerate(shapes)]
        if spec.op not in NUMPY_ONLY and spec.build(*params).dtype == np.float32:
            out.append(case)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("spec", "shapes"), _float32_cases())
def test_backend_matches_numpy_in_float32(backend: str, spec, shapes) -> None:
    params = [sd.Param(f"p{i}", shape=s, dtype="float32") for i, s in enumerate(shapes)]
    out = spec.build(*params)
    weights = np.random.default_rng(101).normal(size=out.shape).astype(np.float32)
    loss = sd.sum(out * weights)
    outs = {"loss": loss, **{f"d{p.label}": g for p, g in zip(params, sd.grad(loss, params))}}
    _, _, values = _loss(spec, shapes, seed=1)
    values = {k: v.astype(np.float32) for k, v in values.items()}
    want = sd.compile(outs)(**values)
    got = sd.compile(outs, backend=backend)(**values)
    exact = _float64_outputs(spec, shapes, weights, values) if spec.op in FLOAT32_ILL_CONDITIONED else None
    for k in want:
        assert np.asarray(got[k]).dtype == want[k].dtype == np.float32
        if exact is None:
            np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-6, atol=1e-6, err_msg=k)
        else:
            scale = max(np.max(np.abs(v)) for v in exact.values())
            np.testing.assert_allclose(want[k], exact[k], rtol=0, atol=1e-6 * scale, err_msg=k)
            np.testing.assert_allclose(np.asarray(got[k]), exact[k], rtol=0, atol=1e-6 * scale, err_msg=k)


def _float64_outputs(spec, shapes, weights, values):
    """The float32 test's outputs computed in float64 (the exact values, to float32's eyes)."""
    params = [sd.Param(f"p{i}", shape=s) for i, s in enumerate(shapes)]
    loss = sd.sum(spec.build(*params) * weights.astype(np.float64))
    outs = {"loss": loss, **{f"d{p.label}": g for p, g in zip(params, sd.grad(loss, params))}}
    return sd.compile(outs)(**{k: v.astype(np.float64) for k, v in values.items()})


def _mlp():
    x = sd.Input("x", shape=(None, 4))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.nn.dense(x, 16, activation="tanh", name="h")
    loss = sd.softmax_cross_entropy(sd.nn.dense(h, 3, name="out"), y)
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(200, 4)), "y": rng.integers(0, 3, size=200)}
    return loss, sd.init_params(loss, seed=0), data


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", [sd.optim.SGD(lr=0.1, momentum=0.9), sd.optim.Adam(lr=0.01)], ids=repr)
def test_fit_on_a_backend_matches_numpy_history(backend: str, optimizer) -> None:
    loss, params, data = _mlp()
    mine = {k: v.copy() for k, v in params.items()}
    kw = {"optimizer": optimizer, "epochs": 3, "batch_size": 32, "progress": False, "metrics": ["accuracy"]}
    want = sd.fit(loss, params, data, **kw)
    got = sd.fit(loss, mine, data, backend=backend, **kw)
    assert got.history.keys() == want.history.keys() and got.steps == want.steps
    for k in want.history:
        np.testing.assert_allclose(got.history[k], want.history[k], rtol=1e-5, atol=1e-5, err_msg=k)
        assert all(type(v) is float for v in got.history[k])
    for k in params:  # the caller's arrays hold the trained params
        np.testing.assert_allclose(mine[k], params[k], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_step_keeps_params_on_the_device_until_pulled(backend: str) -> None:
    loss, params, data = _mlp()
    start = {k: v.copy() for k, v in params.items()}
    step = sd.compile_step(loss, params, sd.optim.Adam(lr=0.01), backend=backend)
    value = step.run(step.check(data))
    assert not isinstance(value, float)
    assert type(step.device_params["h_W"]).__module__.split(".")[0] in {
        "torch": ("torch",),
        "jax": ("jax", "jaxlib"),
    }.get(backend, (backend,))
    assert all(np.array_equal(params[k], start[k]) for k in params)  # nothing came back yet
    step.pull()
    assert not np.array_equal(params["h_W"], start["h_W"]) and step.state["m_h_W"].any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_step_divergence_keeps_the_last_finite_params(backend: str) -> None:
    x = sd.Input("x", shape=(None, 2))
    w = sd.Param("w", shape=(2,))
    loss = sd.mean(sd.log(x @ w))
    params = {"w": np.array([1.0, 1.0])}
    step = sd.compile_step(loss, params, sd.optim.SGD(lr=0.1), backend=backend)
    step.run(step.check({"x": np.ones((3, 2))}))
    after_first = step.device_params["w"]
    step.run(step.check({"x": -np.ones((3, 2))}))  # log of a negative number: nan
    step.run(step.check({"x": np.ones((3, 2))}))  # finite again, but the guard holds from the first nan on
    with pytest.raises(sd.DivergenceError, match="not finite"):
        step.pull()
    np.testing.assert_array_equal(params["w"], np.asarray(after_first))


@pytest.mark.parametrize("backend", BACKENDS)
def test_standalone_module_imports_only_its_library(backend: str, tmp_path) -> None:
    loss, params, data = _mlp()
    module = tmp_path / "model.py"
    module.write_text(sd.codegen({"loss": loss}, name="model", backend=backend, optimize=True))
    step = tmp_path / "step.py"
    step.write_text(sd.codegen_step(loss, params, sd.optim.Adam(), backend=backend))
    script = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guarded(name, *a, **k):\n"
        "    if name.split('.')[0] in ('numpy', 'symdiff') and sys._getframe(1).f_globals.get('__name__') in "
        "('model', 'step'):\n"
        "        raise ImportError('generated module imports ' + name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guarded\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import model, step\n"
        "imports = [l for m in (model, step) for l in open(m.__file__) if l.startswith(('import ', 'from '))]\n"
        "print(sorted(set(l.split()[1].split('.')[0] for l in imports)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    library = {"torch": ["array_api_compat", "torch"], "jax": ["jax"], "cupy": ["array_api_compat", "cupy"]}[backend]
    assert out.strip() == repr(library)


@pytest.mark.parametrize("backend", BACKENDS)
def test_op_without_an_array_api_form_is_refused_by_name(backend: str) -> None:
    x = sd.Param("x", shape=(2, 4, 4, 3))
    with pytest.raises(UnsupportedError, match=f"op 'im2col'.*backend '{backend}'"):
        sd.compile(
            sd.sum(conv_ops.im2col(x, (2, 2), stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1))),
            backend=backend,
        )


def test_helper_a_namespace_lacks_is_refused_by_name() -> None:
    """erf is no Array API function: a plain namespace (no table of its own) refuses it, naming op and helper."""
    import types

    ns = types.ModuleType("plain_namespace")
    ns.__array_api_version__ = "2024.12"
    x = sd.Param("x", shape=(3,))
    with pytest.raises(UnsupportedError, match=r"op 'erf' needs _erf\(\).*backend 'plain_namespace'"):
        sd.codegen(sd.erf(x), backend=ns)
    assert "import plain_namespace as xp" in sd.codegen(sd.tanh(x), backend=ns)


def test_unknown_backend_is_refused() -> None:
    x = sd.Param("x", shape=(3,))
    with pytest.raises(sd.BackendError, match="unknown backend 'tensorflow'"):
        sd.compile(sd.tanh(x), backend="tensorflow")
    with pytest.raises(sd.BackendError, match="not an Array API namespace|nor an Array API namespace"):
        sd.compile(sd.tanh(x), backend=object())
    with pytest.raises(sd.BackendError, match="CPU only"):
        sd.compile(sd.tanh(x), device="cuda")


def test_missing_library_is_refused_with_the_extra_to_install(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(sd.BackendError, match=r"needs the 'torch' package.*symdiff\[torch\]"):
        sd.compile(sd.tanh(sd.Param("x", shape=(3,))), backend="torch")


def test_numpy_backend_source_is_unchanged() -> None:
    loss, params, _ = _mlp()
    assert sd.codegen({"loss": loss}, backend="numpy", optimize=True) == sd.codegen({"loss": loss}, optimize=True)
    assert sd.codegen_step(loss, params, backend="numpy") == sd.codegen_step(loss, params)
    import numpy

    assert sd.codegen({"loss": loss}, backend=numpy) == sd.codegen({"loss": loss})


@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_device_is_passed_through(backend: str) -> None:
    source = sd.codegen(sd.eye(3) * sd.Param("x", shape=(3, 3)), backend=backend, device="cuda")
    assert {"torch": "torch.device('cuda')", "jax": "jax.devices('gpu')[0]", "cupy": "cupy.cuda.Device(0)"}[
        backend
    ] in source


def test_jax_function_is_jitted_and_torch_compile_is_an_option() -> None:
    x = sd.Param("x", shape=(3,))
    if importlib.util.find_spec("jax") is not None:
        assert sd.codegen(sd.tanh(x), backend="jax").rstrip().endswith("fn = jax.jit(fn)")
        assert "jax.jit" not in sd.codegen(sd.tanh(x), backend="jax", jit=False)
    if importlib.util.find_spec("torch") is not None:
        assert "torch.compile" not in sd.codegen(sd.tanh(x), backend="torch")
        assert sd.codegen(sd.tanh(x), backend="torch", jit=True).rstrip().endswith("fn = torch.compile(fn)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_slice_steps_run_on_every_backend(backend: str) -> None:
    """torch tensors take no negative step: its code slices with positive steps and flips (getitem, scatter)."""
    x = sd.Param("x", shape=(3, 5, 4))
    sliced = x[::-1, 1::-2, None, 2] * x[0, 3:0:-1, None, ::-3]
    g = sd.functions.make_scatter(
        sd.Param("g", shape=(2, 2)), x[:, :, 0], (("slice", 1, None, None), ("slice", None, None, -3))
    )
    outs = {"sliced": sliced, "scattered": g, "dx": sd.grad(sd.sum(sliced * sliced), x)}
    rng = np.random.default_rng(0)
    values = {"x": rng.normal(size=(3, 5, 4)), "g": rng.normal(size=(2, 2))}
    want = sd.compile(outs)(**values)
    got = sd.compile(outs, backend=backend)(**values)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("backend", ["numpy", *BACKENDS])
def test_backend_benchmark_checks_then_times_the_mlp_step(backend: str) -> None:
    from benchmarks.backends import check, time_steps
    from benchmarks.models import SIZES

    assert check(SIZES["tiny"], backend) < 1e-5
    assert time_steps(SIZES["tiny"], backend, steps=2, repeats=1) > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_conv_net_runs_the_library_convolution_not_numpys_patches(backend: str) -> None:
    x, w = sd.Input("x", shape=(None, 8, 8, 3)), sd.Param("w", shape=(3, 3, 3, 4))
    loss = sd.sum(sd.tanh(sd.conv2d(x, w, padding="same")))
    source = sd.codegen_step(loss, {"w": np.zeros((3, 3, 3, 4))}, backend=backend)
    assert "_conv2d(" in source and "_conv2d_filters(" in source and "im2col" not in source
    assert "im2col" in sd.codegen_step(loss, {"w": np.zeros((3, 3, 3, 4))})  # NumPy's own lowering


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("size", "stride"), [((2, 2), (2, 2)), ((3, 2), (1, 2))], ids=["blocks", "overlapping"])
def test_max_pool_ties_share_the_gradient_as_numpy_does(backend: str, size, stride) -> None:
    """Windows with several maxima share their gradient equally among them (NumPy's rule, not torch's first
    index); a window holding a nan gives nan; overlapping windows add up."""
    x = sd.Input("x", shape=(2, 7, 6, 3))
    t = sd.Input("t", shape=(2, 7, 6, 3))
    y = sd.max_pool2d(x, size, stride=stride)
    g = sd.Input("g", shape=y.shape)
    outs = {
        "y": y,
        "dx": sd.grad(sd.sum(y * g), x),
        "tangent": make("max_pool2d_tangent", (x, y, t), {"size": size, "stride": stride}),
    }
    rng = np.random.default_rng(0)
    values = {"x": rng.integers(0, 3, size=(2, 7, 6, 3)).astype(float), "t": rng.normal(size=(2, 7, 6, 3))}  # ties
    values["x"][0, 0, 0, 0] = np.nan
    values["g"] = rng.normal(size=y.shape)
    with np.errstate(divide="ignore", invalid="ignore"):  # the nan's window: its gradient over no maximum
        want = sd.compile(outs)(**values)
    got = sd.compile(outs, backend=backend)(**values)
    assert np.isnan(want["dx"]).any()
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_images_pool_to_numpys_dtypes(backend: str) -> None:
    x = sd.Input("x", shape=(2, 4, 5, 3), dtype="int64")
    outs = {"avg": sd.avg_pool2d(x, 2), "max": sd.max_pool2d(x, 2, stride=1)}
    values = {"x": np.arange(120).reshape(2, 4, 5, 3) % 7}
    want = sd.compile(outs)(**values)
    got = sd.compile(outs, backend=backend)(**values)
    for k in want:
        assert np.asarray(got[k]).dtype == want[k].dtype and np.array_equal(np.asarray(got[k]), want[k]), k


@pytest.mark.parametrize("backend", BACKENDS)
def test_cnn_fit_on_a_backend_matches_numpy_history(backend: str) -> None:
    """conv2d (same, bias) + ReLU + 2x2 max-pool + dense + softmax cross-entropy, trained in float64."""
    from benchmarks.cnn import CNNSpec, symdiff_cnn

    spec = CNNSpec("tiny", (6, 6, 2), (4,), 3, 16)
    loss, _ = symdiff_cnn(spec, "float64")
    params = sd.init_params(loss, seed=0)
    mine = {k: v.copy() for k, v in params.items()}
    rng = np.random.default_rng(0)
    data = {"x": rng.random((48, *spec.image)), "y": rng.integers(0, spec.classes, size=48)}
    kw = {"optimizer": sd.optim.Adam(lr=0.01), "epochs": 2, "batch_size": 16, "progress": False}
    want = sd.fit(loss, params, data, **kw)
    got = sd.fit(loss, mine, data, backend=backend, **kw)
    assert got.steps == want.steps and got.history.keys() == want.history.keys()
    for k in want.history:
        np.testing.assert_allclose(got.history[k], want.history[k], rtol=1e-5, atol=1e-5, err_msg=k)
    for k in params:
        np.testing.assert_allclose(mine[k], params[k], rtol=1e-5, atol=1e-8, err_msg=k)


TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


@TORCH
def test_torch_dropout_draws_each_call_from_a_generator_seeded_by_the_mask_seed() -> None:
    """torch's own generator on the device, seeded by the mask's seed: a new compile repeats the sequence of masks
    (not NumPy's: another generator), each call draws a new mask, keeping 1 - rate of the values, scaled."""
    x = sd.Input("x", shape=(None, 1000), dtype="float32")
    out = sd.dropout(x, 0.3, seed=7)
    ones = {"x": np.ones((100, 1000), dtype=np.float32)}
    first, again = (sd.compile(out, backend="torch", training=True) for _ in range(2))
    masks = [np.asarray(first(**ones)) for _ in range(2)]
    np.testing.assert_array_equal(np.asarray(again(**ones)), masks[0])
    assert not np.array_equal(masks[0], masks[1])
    for m in masks:
        assert set(np.unique(m)) == {0, np.float32(1 / 0.7)} and m.dtype == np.float32
        assert abs(np.mean(m == 0) - 0.3) < 0.01  # 1e5 draws: the standard error is 0.0015
    other = sd.compile(sd.dropout(x, 0.3, seed=8), backend="torch", training=True)
    assert not np.array_equal(np.asarray(other(**ones)), masks[0])


@TORCH
def test_torch_dropout_gradient_uses_the_mask_of_its_forward_pass() -> None:
    x = sd.Param("x", shape=(50, 40))
    w = np.random.default_rng(0).normal(size=(50, 40))
    out = sd.dropout(x, 0.5, seed=1)
    f = sd.compile({"out": out, "dx": sd.grad(sd.sum(out * w), x)}, backend="torch", training=True)
    for _ in range(2):
        got = f(x=np.ones((50, 40)))
        np.testing.assert_array_equal(np.asarray(got["dx"]), w * np.asarray(got["out"]))  # dy * mask, mask = out


@TORCH
def test_a_dropout_model_fits_on_torch() -> None:
    x = sd.Input("x", shape=(None, 4))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.dropout(sd.nn.dense(x, 32, activation="relu", name="h"), 0.2, seed=0)
    loss = sd.softmax_cross_entropy(sd.nn.dense(h, 3, name="out"), y)
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(300, 4))}
    data["y"] = np.argmax(data["x"][:, :3], axis=1)
    params = sd.init_params(loss, seed=0)
    kw = {
        "optimizer": sd.optim.Adam(lr=0.02),
        "epochs": 8,
        "batch_size": 32,
        "progress": False,
        "metrics": ["accuracy"],
    }
    result = sd.fit(loss, params, data, backend="torch", **kw)
    again = sd.fit(loss, sd.init_params(loss, seed=0), data, backend="torch", **kw)
    assert result.history["loss"][-1] < 0.5 * result.history["loss"][0]
    assert result.history["accuracy"][-1] > 0.9
    assert again.history == result.history  # the same seed, the same masks


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_a_resumed_torch_run_draws_the_masks_an_uninterrupted_run_draws(tmp_path) -> None:
    """A checkpoint saves the states of the module's torch generators: resuming draws the masks the uninterrupted
    run draws; a damaged state is refused before anything changes."""
    import json

    x, y = sd.Input("x", shape=(None, 4)), sd.Input("y", shape=(None,), dtype="int64")
    h = sd.dropout(sd.nn.dense(x, 16, activation="relu", name="h"), 0.5, seed=7)
    loss = sd.softmax_cross_entropy(sd.nn.dense(h, 3, name="out"), y)
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(40, 4)), "y": rng.integers(0, 3, size=40)}
    kw = {"optimizer": sd.optim.Adam(0.01), "batch_size": 8, "progress": False, "backend": "torch"}
    full = sd.init_params(loss, seed=0)
    sd.fit(loss, full, data, epochs=3, checkpoint=str(tmp_path / "full.npz"), **kw)
    sd.fit(loss, sd.init_params(loss, seed=0), data, epochs=1, checkpoint=str(tmp_path / "part.npz"), **kw)
    resumed = sd.init_params(loss, seed=0)
    sd.fit(loss, resumed, data, epochs=3, checkpoint=str(tmp_path / "part.npz"), **kw)
    for k in full:
        np.testing.assert_array_equal(resumed[k], full[k])
    path = tmp_path / "part.npz"
    saved = dict(np.load(path))
    meta = json.loads(str(saved["meta"]))
    (name,) = meta["generators"]
    assert set(meta["generators"][name]) == {"torch"}
    meta["generators"][name] = {"torch": "AAAA"}  # valid base64, not a generator's state
    np.savez(path, **{**saved, "meta": np.array(json.dumps(meta))})
    params = sd.init_params(loss, seed=1)
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(sd.InputError, match=f"the state of generator '{name}' is invalid"):
        sd.fit(loss, params, data, epochs=4, checkpoint=str(path), **kw)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_refuses_dropout_by_name() -> None:
    """A jitted JAX function keeps no generator between calls: training with dropout is refused by the op's name;
    evaluation (dropout the identity) runs."""
    x = sd.Param("x", shape=(3, 4))
    with pytest.raises(UnsupportedError, match="op 'dropout_mask' draws anew.*jax modules keep none.*backend 'jax'"):
        sd.compile(sd.dropout(x, 0.5, seed=0), backend="jax", training=True)
    np.testing.assert_array_equal(
        np.asarray(sd.compile(sd.dropout(x, 0.5, seed=0), backend="jax")(x=np.ones((3, 4)))), 1
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_sympy_functions_run_by_their_array_api_names(backend: str) -> None:
    import sympy as sp

    u, v = sp.symbols("u v")
    a, b = sd.Param("a", shape=(4,)), sd.Param("b", shape=(4,))
    f = sd.from_sympy(sp.asin(u / 2) * sp.atan2(v, u) + sp.Abs(v) * sp.exp(-(u**2)) * sp.pi, {u: a, v: b})
    outs = {"f": f, "da": sd.grad(sd.sum(f), a)}
    values = {"a": np.array([0.5, -1.2, 1.9, 0.1]), "b": np.array([1.0, 0.3, -0.7, 2.0])}
    want = sd.compile(outs)(**values)
    got = sd.compile(outs, backend=backend)(**values)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-12, atol=1e-12, err_msg=k)
    piecewise = sd.from_sympy(sp.Piecewise((u, u > 0), (0, True)), {u: a})
    with pytest.raises(UnsupportedError, match="op 'sympy_fn' calls np.select, which the Array API standard lacks"):
        sd.compile(piecewise, backend=backend)
