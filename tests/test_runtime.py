"""sd.compile: argument checking, tracebacks into generated code, and gradient checking."""

from __future__ import annotations

import dataclasses
import gc
import linecache
import os
import re
import subprocess
import sys
import threading
import traceback

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symdiff as sd
from symdiff import runtime
from symdiff.codegen import SymbolSpec
from symdiff.ops.registry import OPS
from symdiff.runtime import check_arrays, fast_check
from symdiff.testing import numeric_grad

x = sd.Input("x", shape=(None, 4))
y = sd.Input("y", shape=(None,), dtype="int64")
W = sd.Param("W", shape=(4, 3))
b = sd.Param("b", shape=(3,))
LOSS = sd.softmax_cross_entropy(x @ W + b, y)


@pytest.fixture(scope="module")
def f():
    return sd.compile({"loss": LOSS, "dW": sd.grad(LOSS, W)})


def good_values(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W": rng.normal(size=(4, 3)),
        "b": rng.normal(size=3),
        "x": rng.normal(size=(n, 4)),
        "y": rng.integers(0, 3, size=n),
    }


def reference_loss(v):
    z = v["x"] @ v["W"] + v["b"]
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(v["y"])), v["y"]].mean()


def call_with(f, **changes):
    kw = good_values()
    kw.update(changes)
    return f(**{k: v for k, v in kw.items() if v is not None})


def test_good_call(f):
    v = good_values()
    out = f(**v)
    assert set(out) == {"loss", "dW"}
    assert out["loss"] == pytest.approx(reference_loss(v), rel=1e-12)
    assert out["dW"].shape == (4, 3)


def test_repr_and_inputs(f):
    assert f.inputs == ["W", "b", "x", "y"]
    assert repr(f) == "<CompiledFunction fn(*, W, b, x, y) -> loss, dW>"


def test_source_is_the_codegen_source(f):
    assert f.source == sd.codegen({"loss": LOSS, "dW": sd.grad(LOSS, W)}, optimize=True)
    assert f.fn.__doc__ == f.__doc__ and "x: input, shape (None, 4), float64" in f.__doc__


# -- argument checking ----------------------------------------------------------------------------
BAD_CALLS = [
    # (changes, error type, fragments every one of which the message must contain)
    ({"y": None}, sd.InputError, ["missing input 'y'", "(None,)", "int64"]),
    ({"W": None}, sd.InputError, ["missing input 'W'", "(4, 3)"]),
    ({"z": np.ones(3)}, sd.InputError, ["unexpected input 'z'", "W, b, x, y"]),
    ({"x": np.ones((5, 4, 1))}, sd.InputError, ["'x'", "(None, 4)", "(5, 4, 1)"]),
    ({"x": np.ones(4)}, sd.InputError, ["'x'", "(None, 4)", "(4,)"]),
    ({"x": np.ones((5, 5))}, sd.InputError, ["'x'", "(None, 4)", "(5, 5)"]),
    ({"W": np.ones((3, 4))}, sd.InputError, ["'W'", "(4, 3)", "(3, 4)"]),
    ({"b": 2.0}, sd.InputError, ["'b'", "(3,)", "()"]),
    ({"y": np.ones(5)}, sd.DTypeError, ["'y'", "int64", "float64"]),
    ({"y": np.array(["a"] * 5)}, sd.DTypeError, ["'y'", "int64"]),
    ({"x": np.full((5, 4), "1.0")}, sd.DTypeError, ["'x'", "float64"]),
    ({"x": np.ones((5, 4), dtype=complex)}, sd.DTypeError, ["'x'", "float64", "complex128"]),
    ({"x": np.ones((5, 4), dtype=object)}, sd.DTypeError, ["'x'", "float64", "object"]),
    ({"y": np.zeros(4, dtype=np.int64)}, sd.InputError, ["'y'", "'x'", "4", "5"]),
]


@pytest.mark.parametrize(
    "changes, err, fragments", BAD_CALLS, ids=[f"{k}-{i}" for i, (c, _, _) in enumerate(BAD_CALLS) for k in c]
)
def test_bad_argument_is_named(f, changes, err, fragments):
    with pytest.raises(err) as info:
        call_with(f, **changes)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_errors_are_symdiff_errors_and_builtin_kinds():
    assert issubclass(sd.InputError, sd.SymdiffError) and issubclass(sd.InputError, ValueError)
    assert issubclass(sd.DTypeError, sd.SymdiffError) and issubclass(sd.DTypeError, TypeError)


def test_open_batch_axes_must_agree_across_inputs(f):
    v = good_values(n=32)
    v["y"] = v["y"][:31]
    with pytest.raises(sd.InputError) as info:
        f(**v)
    msg = str(info.value)
    assert "'x'" in msg and "'y'" in msg and "32" in msg and "31" in msg


def test_open_axes_may_differ_between_calls(f):
    for n in (1, 7, 32):
        out = f(**good_values(n=n))
        assert np.isfinite(out["loss"])


SAFE_CASTS = [
    ({"W": np.ones((4, 3), dtype=np.int64)}, "W", np.float64),
    ({"W": np.ones((4, 3), dtype=np.float32)}, "W", np.float64),
    ({"x": [[1.0, 2.0, 3.0, 4.0]] * 5}, "x", np.float64),
    ({"x": np.ones((5, 4), dtype=bool)}, "x", np.float64),
    ({"y": np.ones(5, dtype=np.int32)}, "y", np.int64),
    ({"y": np.ones(5, dtype=np.uint8)}, "y", np.int64),
    ({"y": [0, 1, 2, 0, 1]}, "y", np.int64),
]


@pytest.mark.parametrize("changes, name, dtype", SAFE_CASTS, ids=[f"{i}-{c[1]}" for i, c in enumerate(SAFE_CASTS)])
def test_safe_casts_are_accepted(f, changes, name, dtype):
    v = good_values()
    v.update(changes)
    checked = f.check(v)
    assert checked[name].dtype == dtype
    np.testing.assert_array_equal(checked[name], np.asarray(changes[name]).astype(dtype))
    out = f(**v)
    ref = {k: np.asarray(val, dtype=np.float64 if k != "y" else np.int64) for k, val in v.items()}
    assert out["loss"] == pytest.approx(reference_loss(ref), rel=1e-12)


def test_float32_input_keeps_float32():
    x32 = sd.Input("x32", shape=(None, 2), dtype="float32")
    g = sd.compile(x32 * 2)
    for arr in [np.ones((3, 2), np.float32), np.ones((3, 2), np.float16), np.ones((3, 2), np.int16)]:
        out = g(x32=arr)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, np.full((3, 2), 2, np.float32))


def test_scalar_param_accepts_python_numbers():
    s = sd.Param("s")
    g = sd.compile(s * 3)
    assert g(s=2) == 6.0
    assert g(s=np.float64(1.5)) == 4.5
    with pytest.raises(sd.InputError, match="'s'"):
        g(s=[1.0])


# -- tracebacks show the generated line -------------------------------------------------------
def test_traceback_shows_generated_source_line():
    h = sd.tanh(x @ W).named("h")
    g = sd.compile({"out": h * 2}, name="layer", optimize=False)
    linecache.checkcache()  # must not drop the generated lines
    try:
        g.fn(W=np.ones((5, 3)), x=np.ones((2, 4)))  # bypasses the checks: NumPy fails inside
    except ValueError:
        tb = traceback.format_exc()
    else:  # pragma: no cover
        pytest.fail("mismatched matmul did not raise")
    assert "h = np.tanh(x @ W)" in tb
    assert re.search(r'File ".*layer_[0-9a-f]+\.py", line \d+, in layer', tb), tb


def test_generated_lines_are_in_linecache():
    g = sd.compile(sd.exp(W) + 1, name="expo", optimize=False)
    filename = g.fn.__code__.co_filename
    lines = linecache.getlines(filename)
    assert "".join(lines) == g.source
    assert any("np.exp(W) + 1" in line for line in lines)


def test_checked_call_rejects_before_numpy_runs():
    g = sd.compile(sd.tanh(x @ W))
    with pytest.raises(sd.InputError, match=r"input 'W' must have shape \(4, 3\), got \(5, 3\)"):
        g(W=np.ones((5, 3)), x=np.ones((2, 4)))


# -- check_grad -------------------------------------------------------------------------------
t = sd.Input("t", shape=(None, 3))
MODELS = {
    "softmax_ce": lambda: sd.softmax_cross_entropy(x @ W + b, y),
    "mse_tanh": lambda: sd.mse(sd.tanh(x @ W + b), t),
    "sigmoid_ce": lambda: sd.sigmoid_cross_entropy(x @ W + b, t),
    "sqrt_exp": lambda: sd.sum(sd.sqrt(sd.exp(x @ W) + b * b)),
    "relu_sq": lambda: sd.mean(sd.relu(x @ W + b) ** 2),
    "softmax_probs": lambda: sd.sum(sd.softmax(x @ W + b)[:, 0] * sd.log_softmax(x @ W)[:, 1]),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_check_grad_small_for_correct_gradients(name):
    v = good_values(n=6)
    v["t"] = np.random.default_rng(1).uniform(size=(6, 3))
    err = sd.check_grad(MODELS[name](), [W, b], v)
    assert isinstance(err, float)
    assert 0 <= err < 1e-6


def test_check_grad_float32_model_is_checked_in_float64():
    x32 = sd.Input("x", shape=(None, 4), dtype="float32")
    W32 = sd.Param("W", shape=(4, 3), dtype="float32")
    v = good_values()
    err = sd.check_grad(
        sd.sum(sd.tanh(x32 @ W32)), W32, {"W": v["W"].astype(np.float32), "x": v["x"].astype(np.float32)}
    )
    assert err < 1e-6


def test_check_grad_catches_a_wrong_gradient_rule(monkeypatch):
    loss = sd.sum(sd.tanh(x @ W + b))
    v = good_values()
    assert sd.check_grad(loss, [W, b], v) < 1e-6
    # d tanh = 1 - tanh**2; pretend it were 1 - tanh
    monkeypatch.setitem(OPS, "tanh", dataclasses.replace(OPS["tanh"], vjp=(lambda g, out, x: g * (1 - out),)))
    assert sd.check_grad(loss, [W, b], v) > 1e-2


def test_numeric_grad_tells_right_from_wrong():
    loss = sd.sum(sd.tanh(x @ W + b))
    v = good_values()
    kv = {k: v[k] for k in ("W", "b", "x")}
    f_loss = sd.compile(loss)
    num = numeric_grad(f_loss, kv, "W")
    right = sd.compile(sd.grad(loss, W))(**kv)
    wrong = sd.compile(x.T @ (1 - sd.tanh(x @ W + b)))(**kv)  # forgot to square
    hand = kv["x"].T @ (1 - np.tanh(kv["x"] @ kv["W"] + kv["b"]) ** 2)
    assert np.max(np.abs(num - hand)) < 1e-7
    assert np.max(np.abs(num - right)) < 1e-7
    assert np.max(np.abs(num - wrong)) > 1e-2


def test_numeric_grad_indices_leave_others_nan():
    f_sq = sd.compile(sd.sum(W * W))
    kv = {"W": np.arange(12.0).reshape(4, 3)}
    num = numeric_grad(f_sq, kv, "W", indices=[(0, 1), (3, 2)])
    assert num[0, 1] == pytest.approx(2.0, abs=1e-6) and num[3, 2] == pytest.approx(22.0, abs=1e-6)
    assert np.isnan(num).sum() == 10
    np.testing.assert_array_equal(kv["W"], np.arange(12.0).reshape(4, 3))  # the caller's array is unchanged


def test_check_grad_missing_value_is_named():
    with pytest.raises((ValueError, sd.InputError), match="'W'"):
        sd.check_grad(sd.sum(x @ W), [W], {"x": np.ones((2, 4))})


def test_optimized_traceback_shows_the_planned_line():
    g = sd.compile({"out": sd.tanh(x @ W) * 2}, name="fast")
    try:
        g.fn(W=np.ones((5, 3)), x=np.ones((2, 4)))
    except ValueError:
        tb = traceback.format_exc()
    else:  # pragma: no cover
        pytest.fail("mismatched matmul did not raise")
    assert "mm1 = x @ W" in tb


# -- issue 8 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimize", [True, False])
def test_grad_through_integer_index_compiles_and_runs(optimize):
    xv = sd.Param("xv", shape=(3,))
    Wm, v = sd.Param("Wm", shape=(2, 3)), sd.Param("v", shape=(3,))
    np.testing.assert_array_equal(sd.compile(sd.grad(xv[0], xv), optimize=optimize)(xv=np.ones(3)), [1, 0, 0])
    np.testing.assert_array_equal(sd.compile(sd.grad(2 * xv[0], xv), optimize=optimize)(xv=np.ones(3)), [2, 0, 0])
    x32 = sd.Param("x32", shape=(3,), dtype="float32")
    assert sd.compile(sd.grad(2 * x32[1], x32), optimize=optimize)(x32=np.ones(3, np.float32)).dtype == np.float32
    rng = np.random.default_rng(0)
    wv, vv = rng.normal(size=(2, 3)), rng.normal(size=3)
    row = sd.compile(sd.grad(sd.tanh(Wm @ v)[1], v), optimize=optimize)(Wm=wv, v=vv)
    np.testing.assert_allclose(row, (1 - np.tanh(wv @ vv)[1] ** 2) * wv[1])
    assert sd.check_grad(2 * xv[0], xv, {"xv": rng.normal(size=3)}) < 1e-6


def test_penalty_inside_batch_mean_compiles_checks_and_trains():
    X, y = sd.Input("X", shape=(None, 3)), sd.Input("t", shape=(None,))
    w, q = sd.Param("w", shape=(3,)), sd.Param("q", shape=(3,))
    rng = np.random.default_rng(0)
    vals = {"X": rng.normal(size=(5, 3)), "t": rng.normal(size=5), "w": rng.normal(size=3), "q": rng.normal(size=3)}
    ridge = sd.mean((X @ w - y) ** 2 + 0.01 * sd.sum(w**2))
    want = 2 * vals["X"].T @ (vals["X"] @ vals["w"] - vals["t"]) / 5 + 0.02 * vals["w"]
    for optimize in (True, False):
        f = sd.compile(sd.grad(ridge, w), optimize=optimize)
        np.testing.assert_allclose(f(**{k: vals[k] for k in f.inputs}), want)
    for loss, p in [(ridge, w), (sd.mean(y + sd.sum(q)), q), (sd.mean(y - sd.logsumexp(q)), q)]:
        assert sd.check_grad(loss, p, vals) < 1e-6
        params = {p.label: vals[p.label].copy()}
        step = sd.compile_step(loss, params, sd.optim.Adam(lr=0.1))
        step(**{k: vals[k] for k in step.inputs})
        np.testing.assert_allclose(np.abs(params[p.label] - vals[p.label]), 0.1, rtol=1e-6)  # Adam's first step


INF_ROWS = np.array([[-np.inf, -np.inf, -np.inf], [1.0, np.inf, 2.0], [1.0, -np.inf, 2.0], [np.nan, 1.0, 2.0]])


@pytest.mark.parametrize("optimize", [True, False])
def test_logsumexp_of_infinite_rows_matches_between_paths(optimize):
    z = sd.Input("z", shape=(None, 3))
    outs = {"lse": sd.logsumexp(z, axis=1), "sm": sd.softmax(z), "ls": sd.log_softmax(z)}
    with np.errstate(all="ignore"):
        got = sd.compile(outs, optimize=optimize)(z=INF_ROWS)
    lse2 = np.log(np.exp(-1.0) + 1.0) + 2.0  # logsumexp([1, -inf, 2])
    nan = np.nan
    # as scipy.special gives: a row's max that is infinite is its logsumexp; softmax of it is undefined
    np.testing.assert_allclose(got["lse"], [-np.inf, np.inf, lse2, nan], rtol=1e-15)
    sm2 = np.exp(np.array([1.0, -np.inf, 2.0]) - lse2)
    np.testing.assert_allclose(got["sm"], [[nan] * 3, [nan] * 3, sm2, [nan] * 3], rtol=1e-15)
    ls2 = np.array([1.0, -np.inf, 2.0]) - lse2
    np.testing.assert_allclose(got["ls"], [[nan] * 3, [-np.inf, nan, -np.inf], ls2, [nan] * 3], rtol=1e-15)


# names the generated modules use for their own locals, helpers and workspace (all of them must stay apart)
GENERATED_NAMES = (
    "self n fn out g like index labels mm1 max1 exp1 sum1 log1 s1 where1 d0 flat0 WORKSPACES workspace key ws "
    "scratch kwargs"
).split()


def test_symbols_named_like_generated_locals_or_self_work():
    syms = [sd.Input(k, shape=(None, 3)) for k in GENERATED_NAMES]
    Wp, labels = sd.Param("W", shape=(3, 3)), sd.Input("y", shape=(None,), dtype="int64")
    loss = sd.softmax_cross_entropy(sum(syms[1:], syms[0]) @ Wp, labels) + 2 * Wp[0, 0]
    rng = np.random.default_rng(0)
    data = {k: rng.normal(size=(4, 3)) for k in GENERATED_NAMES} | {"y": np.array([0, 1, 2, 1])}
    w0 = rng.normal(size=(3, 3))
    z = sum(data[k] for k in GENERATED_NAMES) @ w0
    want = reference_loss({"W": np.eye(3), "b": np.zeros(3), "x": z, "y": data["y"]}) + 2 * w0[0, 0]
    for optimize in (True, False):
        for name in ("fn", "self", "W"):
            f = sd.compile({"loss": loss, "dW": sd.grad(loss, Wp)}, name=name, optimize=optimize)
            np.testing.assert_allclose(f(W=w0, **data)["loss"], want, rtol=1e-12)
        step = sd.compile_step(loss, {"W": w0.copy()}, sd.optim.Adam(), optimize=optimize)
        assert step.run(step.check(data)) == pytest.approx(want, rel=1e-12)
    assert sd.check_grad(loss, Wp, {"W": w0, **data}) < 1e-6


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("optimize", [True, False])
def test_matrix_subclass_inputs_multiply_element_wise(optimize):
    a, c = sd.Input("a", shape=(None, 2)), sd.Input("c", shape=(None, 2))
    m = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    out = sd.compile({"prod": a * c, "sq": c**2}, optimize=optimize)(a=m, c=m)
    np.testing.assert_array_equal(out["prod"], np.asarray(m) ** 2)
    np.testing.assert_array_equal(out["sq"], np.asarray(m) ** 2)
    assert type(out["prod"]) is np.ndarray and type(out["sq"]) is np.ndarray


def test_masked_inputs_with_masked_entries_are_refused_in_every_path():
    X, Y = sd.Input("X", shape=(None, 2)), sd.Input("Y", shape=(None, 2))
    masked = np.ma.array([[1.0, 2.0], [3.0, 4.0]], mask=[[0, 1], [0, 0]])
    needle = r"input 'X' is a masked array with masked entries.*value\.filled\(0\.0\)\) or drop the masked rows"
    for optimize in (True, False):
        f = sd.compile(X * Y, optimize=optimize)
        with pytest.raises(sd.InputError, match=needle):
            f(X=masked, Y=np.ones((2, 2)))
        out = f(X=np.ma.array([[1.0, 2.0], [3.0, 4.0]], mask=False), Y=np.ones((2, 2)))  # nothing masked: kept
        assert type(out) is np.ndarray and out.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    w = sd.Param("w", shape=(2,))
    loss = sd.mean((X @ w) ** 2)
    params = {"w": np.ones(2)}
    step = sd.compile_step(loss, params)
    with pytest.raises(sd.InputError, match=needle):
        step(X=masked)
    with pytest.raises(sd.InputError, match=needle):
        sd.fit(loss, params, {"X": masked}, progress=False)
    with pytest.raises(sd.InputError, match=needle):
        sd.evaluate(loss, params, {"X": masked})
    np.testing.assert_array_equal(params["w"], np.ones(2))
    assert step.t == 0


@pytest.mark.parametrize("bad", [-1, 3])
def test_labels_out_of_range_are_refused_in_every_path(bad):
    data = good_values(n=4)
    data["y"][2] = bad
    message = rf"labels 'y' must lie in \[0, 3\) \(class indices\), got {bad}"
    for optimize in (True, False):
        for out in (LOSS, {"oh": sd.onehot(y, 3)}):
            f = sd.compile(out, optimize=optimize)
            with pytest.raises(sd.InputError, match=message):
                f(**{k: data[k] for k in f.inputs})
    params = {"W": data.pop("W"), "b": data.pop("b")}
    with pytest.raises(sd.InputError, match=message):
        sd.evaluate(LOSS, params, data)
    with pytest.raises(sd.InputError, match=message):
        sd.compile_step(LOSS, {k: v.copy() for k, v in params.items()})(**data)
    good = dict(data, y=np.array([0, 1, 2, 1]))
    with pytest.raises(sd.InputError, match=message):
        sd.fit(LOSS, {k: v.copy() for k, v in params.items()}, good, validation_data=data, progress=False)


def test_float_labels_are_refused_by_evaluate():
    data = good_values(n=4)
    params = {"W": data.pop("W"), "b": data.pop("b")}
    with pytest.raises(sd.DTypeError, match="input 'y' must have dtype int64, got float64"):
        sd.evaluate(LOSS, params, dict(data, y=data["y"].astype(np.float64)))


def test_compiled_function_shared_between_threads_returns_each_callers_result():
    f = sd.compile({"loss": LOSS, "dW": sd.grad(LOSS, W), "db": sd.grad(LOSS, b)})
    assert "_WORKSPACES" not in f.source and "_scratch" not in f.source  # nothing kept between calls
    cases = [good_values(n=3 + i % 5, seed=i) for i in range(16)]
    want = [f(**v) for v in cases]
    barrier, wrong = threading.Barrier(8), []

    def work(t):
        barrier.wait()
        for r in range(40):
            i = (t * 5 + r) % len(cases)
            got = f(**cases[i])
            wrong.extend((i, k) for k in got if not np.array_equal(got[k], want[i][k]))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


UNCAUGHT = """
import numpy as np
import symdiff as sd
x, W = sd.Input("x", shape=(None, 4)), sd.Param("W", shape=(4, 3))
f = sd.compile({"out": sd.tanh(x @ W).named("h") * 2}, name="layer", optimize=False)
f.fn(W=np.ones((5, 3)), x=np.ones((2, 4)))  # unchecked: NumPy fails inside the generated code
"""


def test_uncaught_error_in_generated_code_prints_its_line():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", UNCAUGHT], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "ValueError: matmul" in proc.stderr, proc.stderr
    assert re.search(r'File ".*layer_[0-9a-f]+\.py", line \d+, in layer\n +h = np\.tanh\(x @ W\)', proc.stderr), (
        proc.stderr
    )


def test_generated_source_is_released_with_its_function():
    g = sd.compile(sd.exp(W) * 7, name="released", optimize=False)
    filename = g.fn.__code__.co_filename
    twin = sd.compile(sd.exp(W) * 7, name="released", optimize=False)  # the same source: one file, two users
    assert twin.fn.__code__.co_filename == filename and os.path.exists(filename)
    del g
    gc.collect()
    assert filename in linecache.cache and os.path.exists(filename)
    del twin
    gc.collect()
    assert filename not in linecache.cache and not os.path.exists(filename)


@pytest.mark.skipif(os.name != "posix", reason="stale folders are recognized by a dead pid on POSIX")
def test_source_folder_of_a_killed_process_is_removed(tmp_path, monkeypatch):
    from symdiff import runtime

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    monkeypatch.setattr(runtime.tempfile, "gettempdir", lambda: str(tmp_path))
    stale, alive = tmp_path / f"symdiff-generated-{dead.pid}-x", tmp_path / f"symdiff-generated-{os.getpid()}-y"
    for folder in (stale, alive):
        folder.mkdir()
        (folder / "fn_0.py").write_text("")
    runtime._remove_stale_folders()
    assert not stale.exists() and alive.exists()


# -- the cheap public call: fast_check is true only where check_arrays would pass the arrays through unchanged ------
def _label_specs():
    x = sd.Input("x", shape=(None, 3), dtype="float32")
    y = sd.Input("y", shape=(None,), dtype="int64")
    W = sd.Param("W", shape=(3, 4), dtype="float32")
    f = sd.compile(sd.softmax_cross_entropy(x @ W, y))
    return f, {"x": np.ones((5, 3), np.float32), "y": np.array([0, 3, 1, 2, 0]), "W": np.ones((3, 4), np.float32)}


_MALFORMED = {
    "missing": lambda a: {k: v for k, v in a.items() if k != "y"},
    "unexpected": lambda a: {**a, "z": a["x"]},
    "wrong dtype (castable)": lambda a: {**a, "x": a["x"].astype(np.float64)},
    "wrong dtype (not castable)": lambda a: {**a, "y": a["y"].astype(np.float32)},
    "subclass": lambda a: {**a, "W": np.asmatrix(a["W"])},
    "masked": lambda a: {**a, "x": np.ma.masked_array(a["x"], mask=a["x"] > 0)},
    "list": lambda a: {**a, "x": a["x"].tolist()},
    "wrong fixed dim": lambda a: {**a, "W": np.ones((3, 5), np.float32)},
    "wrong ndim": lambda a: {**a, "x": a["x"][None]},
    "open lengths disagree": lambda a: {**a, "y": a["y"][:4]},
    "empty batch": lambda a: {**a, "x": a["x"][:0], "y": a["y"][:0]},
    "label too large": lambda a: {**a, "y": np.array([0, 4, 1, 2, 0])},
    "negative label": lambda a: {**a, "y": np.array([0, -1, 1, 2, 0])},
    "byte-swapped": lambda a: {**a, "x": a["x"].astype(">f4")},
}


def test_fast_check_accepts_well_formed_arrays_and_the_call_passes_them_unchanged(monkeypatch):
    f, args = _label_specs()
    assert f._accepts(args)
    assert f._accepts({**args, "x": np.ones((5, 3), np.float32)[:, ::-1]})  # any strides: the code takes views
    want = f.fn(**args)
    seen = []
    monkeypatch.setattr(f, "check", lambda kw: seen.append(kw) or runtime.check_arrays(f.signature.symbols, kw, "f"))
    assert f(**args) == want and not seen  # the full check did not run


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("fault", sorted(_MALFORMED))
def test_fast_check_sends_every_malformed_call_to_the_full_check(fault):
    f, args = _label_specs()
    bad = _MALFORMED[fault](args)
    assert not f._accepts(bad)
    try:
        converted = runtime.check_arrays(f.signature.symbols, bad, "f")
    except (sd.InputError, sd.DTypeError):
        with pytest.raises((sd.InputError, sd.DTypeError)):
            f(**bad)
        return
    # what the full check converts runs as the converted arrays do
    np.testing.assert_allclose(f(**bad), f.fn(**converted))


def test_fast_check_of_a_train_step_refuses_a_bad_label_by_name():
    x = sd.Input("x", shape=(None, 3))
    y = sd.Input("y", shape=(None,), dtype="int64")
    W = sd.Param("W", shape=(3, 4))
    step = sd.compile_step(sd.softmax_cross_entropy(x @ W, y), {"W": np.zeros((3, 4))})
    assert step(x=np.ones((2, 3)), y=np.array([0, 3])) == pytest.approx(np.log(4))
    with pytest.raises(sd.InputError, match="labels 'y' must lie in \\[0, 4\\)"):
        step(x=np.ones((2, 3)), y=np.array([0, -2]))
    assert step.t == 1


_DTYPES = [np.dtype(d) for d in ("float32", "float64", "int64", "int32")]


@st.composite
def _specs_and_values(draw):
    """Random input specs (open and fixed axes, label arrays) and values that fit them or miss them by one thing."""
    specs, values = [], {}
    n = draw(st.integers(0, 3))  # the shared open length
    for i in range(draw(st.integers(1, 4))):
        dtype = draw(st.sampled_from(_DTYPES))
        shape = tuple(draw(st.sampled_from([None, 1, 2, 3])) for _ in range(draw(st.integers(0, 2))))
        classes = draw(st.sampled_from([None, 3])) if dtype.kind == "i" and shape == (None,) else None
        specs.append(SymbolSpec(f"a{i}", "input", shape, dtype, classes))
        real = tuple(n if d is None else d for d in shape)
        if classes is not None:
            value = np.array(draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n)), dtype=dtype)
        else:
            value = np.arange(int(np.prod(real)), dtype=dtype).reshape(real)
        fault = draw(st.sampled_from(["none", "none", "dtype", "shape", "list", "missing"]))
        if fault == "dtype":
            value = value.astype(np.float16 if dtype.kind == "i" else np.int64)
        elif fault == "shape":
            value = value[None]
        elif fault == "list":
            value = value.tolist()
        if fault != "missing":
            values[f"a{i}"] = value
    if draw(st.booleans()):
        values["extra"] = np.zeros(1)
    return specs, values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_specs_and_values())
def test_fast_check_is_true_exactly_where_the_full_check_passes_every_array_through(case):
    """Never true where the full check would refuse or convert; true wherever it would pass every array unchanged
    (else the public call would pay for the full check on well-formed data)."""
    specs, values = case
    try:
        arrays = check_arrays(specs, values, "f")
        unchanged = all(arrays[k] is values[k] for k in arrays)
    except (sd.InputError, sd.DTypeError):
        unchanged = False
    assert bool(fast_check(specs)(values)) == unchanged
