"""The fused backend (``backend="numba"``): the training step as one Numba function equals the NumPy step."""

from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
import pytest

import symdiff as sd

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")


def _mlp(dtype="float64"):
    x = sd.Input("x", shape=(None, 5), dtype=dtype)
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.nn.dense(x, 7, activation="relu", name="h", dtype=dtype)
    h = sd.nn.dense(h, 6, activation="tanh", name="g", dtype=dtype)
    return sd.softmax_cross_entropy(sd.nn.dense(h, 3, name="out", dtype=dtype), y) + 1e-3 * sd.sum(h**2) / 7


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 5)), "y": rng.integers(0, 3, size=n)}


@pytest.mark.parametrize(
    "optimizer",
    [sd.optim.SGD(0.1), sd.optim.SGD(0.05, momentum=0.9), sd.optim.Adam(0.01)],
    ids=["sgd", "momentum", "adam"],
)
def test_fused_step_updates_params_and_state_as_the_numpy_step_does(optimizer):
    loss = _mlp()
    want, got = sd.init_params(loss, seed=1), sd.init_params(loss, seed=1)
    numpy_step = sd.compile_step(loss, want, optimizer)
    fused = sd.compile_step(loss, got, optimizer, backend="numba")
    for seed in range(3):  # batches of two lengths: the loops read the batch length at run time
        data = _data(24 if seed != 1 else 9, seed)
        assert fused(**data) == pytest.approx(numpy_step(**data), rel=1e-12)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-11, atol=1e-13, err_msg=k)
    for k in numpy_step.state:
        np.testing.assert_allclose(fused.state[k], numpy_step.state[k], rtol=1e-11, atol=1e-13, err_msg=k)
    assert fused.compile_seconds is not None and fused.t == 3


def test_fused_module_is_standalone_numba_code_with_one_loop_per_fused_chain():
    loss = _mlp()
    step = sd.compile_step(loss, sd.init_params(loss), sd.optim.SGD(0.1), backend="numba")
    src = step.source
    assert "@numba.njit(cache=True, error_model='numpy')" in src and "import symdiff" not in src
    # relu(x @ W + b): the product calls BLAS, then one loop with the bias add inlined writes into the product's
    # own array (read by that loop alone), in a helper the driver calls with the layer's arrays
    assert "    v0 = np.dot(a0, a1)\n    v1 = v0\n" in src
    assert "v1[_i0, _i1] = np.maximum(v0[_i0, _i1] + a2[_i1], 0)" in src
    assert "h = _relu(x, h_W, h_b, x.shape[0], 7)" in src


def _deep(layers, width=8):
    x, y = sd.Input("x", shape=(None, width)), sd.Input("y", shape=(None,), dtype="int64")
    h = x
    for i in range(layers):
        h = sd.dense(h, width, f"h{i}", activation="relu")
    return sd.softmax_cross_entropy(sd.dense(h, 3, "out"), y)


def _functions(source):
    """The njit functions of a fused module: name -> body."""
    parts = re.split(r"@numba\.njit\([^)]*\)\ndef ", source)[1:]
    return {part.split("(", 1)[0]: part.split("\n\n\n", 1)[0] for part in parts}


@pytest.mark.parametrize("optimizer", [sd.optim.SGD(0.1), sd.optim.Adam(0.01)], ids=["sgd", "adam"])
def test_a_deeper_model_reuses_the_same_helpers_and_its_driver_has_no_loop(optimizer):
    """Numba's compile time grows faster than linearly with one function's size: the driver only calls BLAS and
    helpers, and the helpers of a layer (its forward and backward loops, its guard and update) are the same
    functions for every layer of the same shape, so that a deeper model compiles no new function."""
    sources = {}
    for layers in (2, 6):
        loss = _deep(layers)
        sources[layers] = sd.compile_step(loss, sd.init_params(loss), optimizer, backend="numba").source
    shallow, deep = _functions(sources[2]), _functions(sources[6])
    assert shallow.keys() == deep.keys() and len(deep) <= 12
    driver = deep.pop("_train_step")
    assert "for " not in driver and all("for " in body for body in deep.values())
    assert driver.count("= _relu(") == 6


def test_a_fused_step_that_diverges_changes_nothing():
    loss = _mlp()
    params = sd.init_params(loss, seed=2)
    step = sd.compile_step(loss, params, sd.optim.Adam(0.01), backend="numba")
    step(**_data())
    before = {k: v.copy() for k, v in params.items()}
    state = {k: v.copy() for k, v in step.state.items()}
    bad = _data()
    bad["x"][3, 2] = np.inf
    with pytest.raises(sd.DivergenceError, match="not finite: loss"):
        step(**bad)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    for k in state:
        np.testing.assert_array_equal(step.state[k], state[k])
    assert step.t == 1


def test_fit_on_the_fused_backend_matches_numpys_history():
    loss = _mlp("float32")
    data = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in _data(96).items()}
    kw = {"optimizer": sd.optim.SGD(0.1), "epochs": 3, "batch_size": 32, "progress": False}
    want = sd.fit(loss, sd.init_params(loss, seed=0), data, **kw)
    got = sd.fit(loss, sd.init_params(loss, seed=0), data, backend="numba", **kw)
    np.testing.assert_allclose(got.history["loss"], want.history["loss"], rtol=1e-5)


def test_an_op_the_fused_backend_cannot_write_is_refused_by_name():
    ids = sd.Input("ids", shape=(None,), dtype="int64")
    table = sd.Param("table", shape=(10, 4))
    loss = sd.mean(sd.take(table, ids) ** 2)
    with pytest.raises(sd.UnsupportedError, match="op 'take' cannot run on backend 'numba' yet"):
        sd.compile_step(loss, {"table": np.ones((10, 4))}, backend="numba")


def test_the_fused_module_lives_at_one_path_per_source_and_a_tampered_copy_is_replaced(tmp_path, monkeypatch):
    from symdiff.runtime import cache_file

    monkeypatch.setenv("SYMDIFF_CACHE", str(tmp_path / "cache"))
    source = "def f():\n    return 1\n"
    path = cache_file(source, "f")
    assert path is not None and path == cache_file(source, "f")  # the same file: Numba's cache beside it is reused
    stamp = os.stat(path).st_mtime_ns
    assert cache_file(source, "f") == path and os.stat(path).st_mtime_ns == stamp  # not rewritten
    with open(path, "w") as fh:
        fh.write("def f():\n    return 2\n")  # not what symdiff generated: replaced before anything reads it
    assert cache_file(source, "f") == path and open(path).read() == source
    (tmp_path / "ro").write_text("a file, not a folder")
    monkeypatch.setenv("SYMDIFF_CACHE", str(tmp_path / "ro"))
    assert cache_file(source, "f") is None  # unwritable: the step falls back to a temporary file


def test_a_fused_step_runs_from_a_temporary_file_when_the_cache_folder_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "ro").write_text("a file, not a folder")
    monkeypatch.setenv("SYMDIFF_CACHE", str(tmp_path / "ro"))
    loss = _mlp()
    step = sd.compile_step(loss, sd.init_params(loss), sd.optim.SGD(0.1), backend="numba")
    assert np.isfinite(step(**_data()))


def test_codegen_refuses_the_fused_backend_saying_what_takes_it():
    loss = _mlp()
    with pytest.raises(sd.BackendError, match=r"backend 'numba' compiles functions and training steps \(sd.compile, "):
        sd.codegen(loss, backend="numba")


def _loss_and_grads(dtype):
    loss = _mlp(dtype)
    params = sd.init_params(loss, seed=4)
    targets = [e for e in sd.graph.leaves([loss]) if e.op == "param"]
    outs = {"loss": loss, **{f"d{p.label}": g for p, g in zip(targets, sd.grad(loss, targets))}}
    data = {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in _data(11, seed=5).items()}
    return outs, {**params, **data}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compile_on_the_fused_backend_returns_what_the_numpy_function_returns(dtype):
    outs, args = _loss_and_grads(dtype)
    want, fused = sd.compile(outs), sd.compile(outs, backend="numba")
    got = fused(**args)
    assert isinstance(fused, sd.runtime.FusedFunction) and fused.compile_seconds is not None
    assert fused.inputs == want.inputs and fused.signature == want.signature
    expected = want(**args)
    assert list(got) == list(expected)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-14}
    for k in expected:
        assert type(got[k]) is type(expected[k]) and got[k].dtype == expected[k].dtype, k
        np.testing.assert_allclose(got[k], expected[k], err_msg=k, **tol)
    as_list = sd.compile([outs["loss"], [outs["dh_W"]]], backend="numba")(**args)  # nested lists: nested tuples
    assert isinstance(as_list, tuple) and isinstance(as_list[1], tuple)
    np.testing.assert_allclose(as_list[1][0], expected["dh_W"], **tol)
    single = sd.compile(outs["dout_b"], backend="numba")(**args)
    np.testing.assert_allclose(single, expected["dout_b"], **tol)


def test_compile_on_the_fused_backend_refuses_bad_arguments_as_the_numpy_function_does():
    outs, args = _loss_and_grads("float64")
    want, fused = sd.compile(outs), sd.compile(outs, backend="numba")
    bad = [
        {k: v for k, v in args.items() if k != "x"},  # missing
        {**args, "z": np.ones(3)},  # unexpected
        {**args, "x": np.ones((11, 4))},  # shape
        {**args, "x": args["x"].astype(np.complex128)},  # dtype
        {**args, "y": args["y"][:5]},  # open axes disagree
        {**args, "y": np.full(11, 3)},  # label out of range
    ]
    for case in bad:
        with pytest.raises(sd.SymdiffError) as expected:
            want(**case)
        with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
            fused(**case)
    converted = {**args, "x": args["x"].tolist()}  # converted as the NumPy function converts it
    np.testing.assert_allclose(fused(**converted)["dh_W"], want(**args)["dh_W"], rtol=1e-12)


def test_the_raw_fused_function_refuses_a_label_out_of_range_before_reading_past_an_array():
    outs, args = _loss_and_grads("float64")
    fused = sd.compile(outs, backend="numba")
    with pytest.raises(IndexError, match="labels out of range"):
        fused.fn(**{**args, "y": np.full(11, 10**9)})


def test_compile_on_the_fused_backend_refuses_an_op_it_cannot_write_by_name():
    ids = sd.Input("ids", shape=(None,), dtype="int64")
    table = sd.Param("table", shape=(10, 4))
    with pytest.raises(sd.UnsupportedError, match="op 'take' cannot run on backend 'numba' yet"):
        sd.compile(sd.mean(sd.take(table, ids) ** 2), backend="numba")
    with pytest.raises(TypeError, match="compile\\(backend='numba'\\) takes no option 'device'"):
        sd.compile(_mlp(), backend="numba", device="cuda")
    dropped = sd.dropout(sd.Input("x", shape=(None, 3)), 0.5)
    with pytest.raises(sd.UnsupportedError, match=r"op 'dropout\w*' cannot run on backend 'numba' yet"):
        sd.compile(sd.sum(dropped), backend="numba", training=True)


_SECOND_PROCESS = """
import json, numpy as np, symdiff as sd
x = sd.Input("x", shape=(None, 3)); w = sd.Param("w", (3, 2))
loss = sd.sum(sd.tanh(x @ w) ** 2)
f = sd.compile({"loss": loss, "dw": sd.grad(loss, [w])[0]}, backend="numba")
out = f(x=np.ones((4, 3)), w=np.full((3, 2), 0.1))
kernel = f.fn.__globals__["_fn"]
print(json.dumps({"hits": sum(kernel.stats.cache_hits.values()), "misses": sum(kernel.stats.cache_misses.values()),
                  "loss": float(out["loss"])}))
"""


def test_a_second_process_loads_the_fused_function_from_the_cache(tmp_path):
    import json
    import subprocess
    import sys

    env = {**os.environ, "SYMDIFF_CACHE": str(tmp_path / "cache")}
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", _SECOND_PROCESS], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert (runs[0]["hits"], runs[0]["misses"]) == (0, 1)
    assert (runs[1]["hits"], runs[1]["misses"]) == (1, 0) and runs[1]["loss"] == runs[0]["loss"]


def test_symbols_named_like_the_steps_own_arguments_and_modules_keep_their_meaning():
    x, s = sd.Input("params", shape=(None, 3)), sd.Input("lr", shape=(None, 3))
    labels = sd.Input("state", shape=(None,), dtype="int64")
    w, b = sd.Param("t", shape=(3, 3)), sd.Param("numba", shape=(3,))
    loss = sd.softmax_cross_entropy(x @ w + s * b, labels)
    want, got = {"t": np.eye(3), "numba": np.ones(3)}, {"t": np.eye(3), "numba": np.ones(3)}
    ref = sd.compile_step(loss, want, sd.optim.Adam(0.1))
    fused = sd.compile_step(loss, got, sd.optim.Adam(0.1), backend="numba")
    rng = np.random.default_rng(0)
    data = {"params": rng.normal(size=(6, 3)), "lr": rng.normal(size=(6, 3)), "state": rng.integers(0, 3, 6)}
    assert fused(**data) == pytest.approx(ref(**data), rel=1e-12)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12)


def test_every_op_of_the_table_is_written_by_the_fused_backend_or_refused_by_name():
    """Each op's gradient case, lowered as the step lowers it, is either fusable or refused naming an op. (Running
    every fusable case is a sweep by hand: one Numba compile per op, too slow for the suite.)"""
    from test_ops_grad import SPECS

    from symdiff.fused import check_fusable
    from symdiff.lower import lower

    fused_ops = set()
    for k, spec in enumerate(SPECS):
        ps = [sd.Param(f"p{k}_{i}", shape=s) for i, s in enumerate(spec.shapes[0])]
        w = sd.Param(f"w{k}", shape=spec.build(*ps).shape)
        term = sd.sum(spec.build(*ps) * w)
        try:
            check_fusable(lower([term, *sd.grad(term, [*ps, w])], exact_inf=False))  # as the step lowers it
        except sd.UnsupportedError as exc:
            assert re.match(r"op '\w+' cannot run on backend 'numba' yet: ", str(exc)), str(exc)
            continue
        fused_ops.add(spec.op)
    assert {"add", "mul", "exp", "log", "tanh", "maximum", "where", "matmul", "softmax", "cast", "clip"} <= fused_ops


@pytest.mark.parametrize("bad", [3, -1, 10**9])
def test_a_label_out_of_range_is_refused_before_anything_changes_even_unchecked(bad):
    """``step.run`` takes arrays it trusts, but a label outside [0, classes) must not read past an array (NumPy's
    indexing raises there): the kernel checks its labels first and changes nothing."""
    loss = _mlp()
    params = sd.init_params(loss, seed=3)
    step = sd.compile_step(loss, params, sd.optim.Adam(0.01), backend="numba")
    before = {k: v.copy() for k, v in params.items()}
    data = _data(8)
    data["y"][5] = bad
    with pytest.raises(IndexError, match="labels out of range"):
        step.run(data)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert step.t == 0 and all(not v.any() for v in step.state.values())


def test_a_view_fed_to_a_matrix_product_gets_an_array_of_its_own():
    """An outer product a[:, None] @ b[None, :]: the views become arrays before np.dot reads them."""
    a, b = sd.Param("a", shape=(3,)), sd.Param("b", shape=(4,))
    loss = sd.sum(sd.tanh(sd.expand_dims(a, 1) @ sd.expand_dims(b, 0)))
    want = {"a": np.linspace(-1, 1, 3), "b": np.linspace(0, 1, 4)}
    got = {k: v.copy() for k, v in want.items()}
    ref = sd.compile_step(loss, want, sd.optim.SGD(0.1))
    fused = sd.compile_step(loss, got, sd.optim.SGD(0.1), backend="numba")
    assert fused() == pytest.approx(ref(), abs=1e-12)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12)


def test_a_division_by_zero_in_the_fused_step_diverges_as_numpys_does_instead_of_raising_zerodivisionerror():
    """NumPy's float semantics (error_model='numpy'): x / 0 is inf, which the guard refuses, changing nothing."""
    x, w = sd.Input("x", shape=(None, 2)), sd.Param("w", (2,))
    loss = sd.sum(x / w)
    params = {"w": np.array([1.0, 0.0])}
    step = sd.compile_step(loss, params, sd.optim.SGD(0.1), backend="numba")
    with pytest.raises(sd.DivergenceError, match="not finite: loss"):
        step(x=np.ones((3, 2)))
    np.testing.assert_array_equal(params["w"], [1.0, 0.0])


def test_a_product_read_after_the_loop_that_reads_it_keeps_its_own_array():
    x, w = sd.Input("x", shape=(None, 4)), sd.Param("w", shape=(4, 3))
    mm = x @ w
    outs = {"h": sd.relu(mm + 1.0), "total": sd.sum(mm), "g": sd.tanh(x @ sd.transpose(w @ w.T))}
    args = {"x": np.random.default_rng(0).normal(size=(6, 4)), "w": np.random.default_rng(1).normal(size=(4, 3))}
    want, fused = sd.compile(outs)(**args), sd.compile(outs, backend="numba")
    got = fused(**args)
    assert "= np.empty(" in fused.source  # relu(mm + 1) may not overwrite mm: the sum reads it afterwards
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_a_gradient_whose_sum_of_squares_overflows_is_finite_and_applied():
    # the guard sums squares through BLAS first: 1e25**2 overflows float32, every element is finite
    w, x = sd.Param("w", shape=(3,), dtype="float32"), sd.Input("x", shape=(3,), dtype="float32")
    params = {"w": np.zeros(3, dtype=np.float32)}
    fused = sd.compile_step(sd.sum(w * x), params, sd.optim.SGD(1.0), backend="numba")
    big = np.full(3, 1e25, dtype=np.float32)
    fused(x=big)
    np.testing.assert_array_equal(params["w"], -big)
    with pytest.raises(sd.DivergenceError):  # a non-finite gradient is still refused, changing nothing
        fused(x=np.array([1.0, np.inf, 1.0], dtype=np.float32))
    np.testing.assert_array_equal(params["w"], -big)
