"""Generated NumPy modules: imports, signature, docstring, one statement per intermediate, determinism,
standalone execution in a fresh interpreter, and exact source for a tiny graph."""

from __future__ import annotations

import ast
import gc
import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from shapecases import mlp

import symdiff as sd
from symdiff.runtime import load_source

ROOT = Path(__file__).resolve().parents[1]


def build_mlp():
    loss, params = mlp()
    grads = sd.grad(loss, params)
    return {"loss": loss, **{f"d{p.label}": g for p, g in zip(params, grads)}}


def mlp_values(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.normal(scale=0.2, size=(64, 32)),
        "b1": rng.normal(size=32),
        "W2": rng.normal(scale=0.2, size=(32, 10)),
        "b2": rng.normal(size=10),
        "x": rng.normal(size=(n, 64)),
        "y": rng.integers(0, 10, size=n),
    }


def mlp_reference(v):
    """The MLP's loss and gradients written by hand in NumPy."""
    z1 = v["x"] @ v["W1"] + v["b1"]
    h1 = np.maximum(z1, 0)
    z2 = h1 @ v["W2"] + v["b2"]
    n = len(v["y"])
    z2s = z2 - z2.max(axis=1, keepdims=True)
    logp = z2s - np.log(np.exp(z2s).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(n), v["y"]].mean()
    dz2 = (np.exp(logp) - np.eye(10)[v["y"]]) / n
    dh1 = dz2 @ v["W2"].T
    dz1 = dh1 * (z1 > 0)
    return {"loss": loss, "dW1": v["x"].T @ dz1, "db1": dz1.sum(0), "dW2": h1.T @ dz2, "db2": dz2.sum(0)}


@pytest.fixture(scope="module")
def mlp_source():
    return sd.codegen(build_mlp(), name="step")


def _function_def(source, name):
    tree = ast.parse(source)
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    assert len(defs) == 1
    return tree, defs[0]


# -- module shape ------------------------------------------------------------------------------
def test_imports_only_numpy(mlp_source):
    tree = ast.parse(mlp_source)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert len(imports) == 1
    (imp,) = imports
    assert isinstance(imp, ast.Import)
    assert [(a.name, a.asname) for a in imp.names] == [("numpy", "np")]
    assert imp in tree.body  # at module level
    assert "__import__" not in mlp_source and "importlib" not in mlp_source
    assert "symdiff." not in mlp_source and "sympy" not in mlp_source


def test_signature_is_keyword_only_params_then_inputs(mlp_source):
    _, fn = _function_def(mlp_source, "step")
    assert fn.args.args == [] and fn.args.posonlyargs == [] and fn.args.vararg is None and fn.args.kwarg is None
    assert [a.arg for a in fn.args.kwonlyargs] == ["W1", "b1", "W2", "b2", "x", "y"]
    assert all(d is None for d in fn.args.kw_defaults)
    f = load_source(mlp_source, "step")
    params = inspect.signature(f).parameters
    assert list(params) == ["W1", "b1", "W2", "b2", "x", "y"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())


def test_docstring_lists_inputs_and_outputs(mlp_source):
    _, fn = _function_def(mlp_source, "step")
    doc = ast.get_docstring(fn)
    for line in [
        "W1: param, shape (64, 32), float64",
        "b1: param, shape (32,), float64",
        "W2: param, shape (32, 10), float64",
        "b2: param, shape (10,), float64",
        "x: input, shape (None, 64), float64",
        "y: input, shape (None,), int64",
        "loss: shape (), float64",
        "dW1: shape (64, 32), float64",
        "db1: shape (32,), float64",
        "dW2: shape (32, 10), float64",
        "db2: shape (10,), float64",
    ]:
        assert line in doc.splitlines() or f"    {line}" in doc.splitlines(), line
    assert doc.index("W1: param") < doc.index("x: input") < doc.index("loss: shape")


def _calls_in(fn, name):
    return [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name]


def test_each_intermediate_computed_once(mlp_source):
    _, fn = _function_def(mlp_source, "step")
    body = ast.get_source_segment(mlp_source, fn)
    assert len(_calls_in(fn, "_softmax")) == 1
    assert len(_calls_in(fn, "_log_softmax")) == 1
    assert body.count("x @ W1 + b1") == 1
    assert body.count("h1 @ W2 + b2") == 1
    assert body.count("np.maximum(") == 1
    # no statement is repeated, and every variable is assigned exactly once
    stmts = [ast.unparse(s) for s in fn.body[1:]]
    assert len(stmts) == len(set(stmts))
    targets = [t.id for s in fn.body if isinstance(s, ast.Assign) for t in s.targets]
    assert len(targets) == len(set(targets))
    for want in [
        "z1 = x @ W1 + b1",
        "h1 = np.maximum(z1, 0)",
        "z2 = h1 @ W2 + b2",
        "dW1 = x.T @ dz1",
        "db1 = np.sum(dz1, axis=0)",
        "dW2 = h1.T @ dz2",
        "db2 = np.sum(dz2, axis=0)",
    ]:
        assert want in stmts, want
    assert stmts[-1] == "return {'loss': loss, 'dW1': dW1, 'db1': db1, 'dW2': dW2, 'db2': db2}"


def test_kernels_are_module_level_functions(mlp_source):
    tree = ast.parse(mlp_source)
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert names[-1] == "step"
    assert set(names[:-1]) >= {"_softmax", "_log_softmax"}
    assert names[:-1] == sorted(names[:-1])
    assert len(names) == len(set(names))


# -- determinism --------------------------------------------------------------------------------
def test_byte_identical_across_calls_and_rebuilds(mlp_source):
    assert sd.codegen(build_mlp(), name="step") == mlp_source
    gc.collect()  # a graph rebuilt from scratch (the intern table holds its nodes weakly)
    assert sd.codegen(build_mlp(), name="step") == mlp_source


_SUBPROCESS_CODEGEN = """
import sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import symdiff as sd
import test_codegen as tc
sys.stdout.write(sd.codegen(tc.build_mlp(), name="step"))
"""


@pytest.mark.parametrize("seed", ["0", "4242"])
def test_byte_identical_across_processes(mlp_source, seed):
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_CODEGEN, str(ROOT), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONHASHSEED=seed),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == mlp_source


# -- the generated module runs on its own -----------------------------------------------------
_FRESH_RUNNER = """
import sys
sys.modules["symdiff"] = None  # the generated module must not need symdiff or sympy
sys.modules["sympy"] = None
import numpy as np
before = set(sys.modules)
import step_module
data = np.load(sys.argv[1])
kw = {k: data[k] for k in data.files}
out = step_module.step(**kw)
np.savez(sys.argv[2], **out)
print(sorted(m for m in set(sys.modules) - before if m.split(".")[0] not in ("numpy", *sys.stdlib_module_names)))
"""


def test_generated_module_runs_in_fresh_interpreter(tmp_path, mlp_source):
    (tmp_path / "step_module.py").write_text(mlp_source, encoding="utf-8")
    values = mlp_values()
    np.savez(tmp_path / "in.npz", **values)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_RUNNER, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['step_module']"
    fresh = np.load(tmp_path / "out.npz")
    compiled = sd.compile(build_mlp(), name="step")(**values)
    reference = mlp_reference(values)
    assert sorted(fresh.files) == sorted(compiled) == sorted(reference)
    for k in compiled:
        np.testing.assert_array_equal(fresh[k], compiled[k])
        np.testing.assert_allclose(compiled[k], reference[k], rtol=1e-10, atol=1e-12)


# -- exact source of a tiny graph ------------------------------------------------------------------
TINY_SOURCE = '''\
"""fn: generated by symdiff from a symbolic graph; needs only NumPy.

Regenerate it with symdiff rather than editing it by hand.
"""

import numpy as np


def fn(*, a):
    """Compute y from the symbols.

    Arguments (keyword-only; None in a shape is an axis of any length):
        a: param, shape (3,), float64
    Returns a dict with
        y: shape (3,), float64
    """
    y = np.exp(a) * 2
    return {"y": y}
'''


def test_tiny_golden():
    a = sd.Param("a", shape=(3,))
    assert sd.codegen({"y": sd.exp(a) * 2}) == TINY_SOURCE


def test_tiny_golden_with_input_and_name():
    a = sd.Param("a", shape=(3,))
    x = sd.Input("x", shape=(None, 3), dtype="float32")
    src = sd.codegen({"p": x * a.astype("float32"), "q": sd.tanh(x)}, name="step")
    _, fn = _function_def(src, "step")
    assert [k.arg for k in fn.args.kwonlyargs] == ["a", "x"]
    doc = ast.get_docstring(fn)
    assert "Compute p, q from the symbols." in doc
    assert "x: input, shape (None, 3), float32" in doc
    assert "p: shape (None, 3), float32" in doc
    assert ast.unparse(fn.body[-1]) == "return {'p': p, 'q': q}"


# -- output kinds -----------------------------------------------------------------------------
def test_list_outputs_return_a_tuple():
    a = sd.Param("a", shape=(3,))
    src = sd.codegen([sd.exp(a), a * 2], name="pair")
    _, fn = _function_def(src, "pair")
    assert ast.unparse(fn.body[-1]) == "return (out0, out1)"
    out = sd.compile([sd.exp(a), a * 2], name="pair")(a=np.arange(3.0))
    assert isinstance(out, tuple) and len(out) == 2
    np.testing.assert_allclose(out[0], np.exp(np.arange(3.0)))
    np.testing.assert_allclose(out[1], 2 * np.arange(3.0))


def test_one_element_list_returns_a_one_tuple():
    a = sd.Param("a", shape=(3,))
    out = sd.compile([sd.exp(a)])(a=np.zeros(3))
    assert isinstance(out, tuple) and len(out) == 1
    np.testing.assert_array_equal(out[0], np.ones(3))


def test_single_expression_returns_an_array():
    a = sd.Param("a", shape=(3,))
    src = sd.codegen(sd.exp(a), name="single")
    _, fn = _function_def(src, "single")
    assert ast.unparse(fn.body[-1]).startswith("return ")
    assert "Returns one array:" in ast.get_docstring(fn)
    out = sd.compile(sd.exp(a))(a=np.zeros(3))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, np.ones(3))


def test_dict_output_that_is_a_symbol_or_duplicate():
    a = sd.Param("a", shape=(3,))
    f = sd.compile({"same": a, "e1": sd.exp(a), "e2": sd.exp(a)})
    _, fn = _function_def(f.source, "fn")
    assert ast.unparse(fn.body[1:]).count("np.exp(a)") == 1
    out = f(a=np.arange(3.0))
    np.testing.assert_array_equal(out["same"], np.arange(3.0))
    np.testing.assert_array_equal(out["e1"], out["e2"])


def test_output_named_like_a_symbol():
    a = sd.Param("a", shape=(3,))
    out = sd.compile({"a": a * 2})(a=np.arange(3.0))
    np.testing.assert_array_equal(out["a"], [0.0, 2.0, 4.0])


def test_array_constant_is_emitted_exactly():
    v = sd.Param("v", shape=(3,))
    const = np.array([0.1, 1 / 3, 2.0])
    f = sd.compile({"y": v * const})
    assert "import" not in f.source.split("import numpy as np", 1)[1]
    np.testing.assert_array_equal(f(v=np.ones(3))["y"], const)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_output_dtypes_match_declared(dtype):
    """Every output has the dtype the docstring declares (float32 models stay float32, zeros too)."""
    x = sd.Input("x", shape=(None, 2), dtype=dtype)
    W = sd.Param("W", shape=(2, 3), dtype=dtype)
    U = sd.Param("U", shape=(2,), dtype=dtype)
    loss = sd.sum(sd.tanh(x @ W))
    gW, gU = sd.grad(loss, [W, U])  # U is unused: its gradient is zeros
    outs = {"loss": loss, "gW": gW, "gU": gU, "h": sd.sigmoid(x @ W), "zeros": sd.simplify(x * 0)}
    f = sd.compile(outs)
    res = f(x=np.ones((4, 2), dtype), W=np.ones((2, 3), dtype), U=np.ones(2, dtype))
    for k, e in outs.items():
        assert np.asarray(res[k]).dtype == e.dtype == np.dtype(dtype), k
        assert np.shape(res[k]) == tuple(4 if d is None else d for d in e.shape), k


# -- invalid names ------------------------------------------------------------------------------
BAD_NAMES = ["1x", "class", "_private", "np", "my-fn", "", "x y", 3, None]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_invalid_function_name(bad):
    a = sd.Param("a", shape=(3,))
    with pytest.raises(ValueError, match="function name"):
        sd.codegen({"y": a}, name=bad)


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_invalid_output_name(bad):
    a = sd.Param("a", shape=(3,))
    with pytest.raises(ValueError, match="output name"):
        sd.codegen({bad: a * 2})


@pytest.mark.parametrize("outputs", [{}, [], "a", {"y": 3.0}, [1, 2]], ids=repr)
def test_invalid_outputs(outputs):
    with pytest.raises((ValueError, TypeError)):
        sd.codegen(outputs)


def test_function_name_does_not_clash_with_variables():
    """A function named like an intermediate still compiles, and the intermediate is renamed."""
    a = sd.Param("a", shape=(3,))
    h = sd.exp(a).named("h")
    f = sd.compile({"y": h + 1}, name="h")
    np.testing.assert_allclose(f(a=np.zeros(3))["y"], 2.0)
    assert textwrap.dedent("def h(*, a):") in f.source


def test_simplification_and_lowering_keep_declared_dtypes():
    W32 = sd.Param("W32", shape=(2, 2), dtype="float32")
    e = W32 - W32 + 1.0
    assert sd.simplify(e).dtype == np.float32
    assert sd.compile(e)(W32=np.ones((2, 2), np.float32)).dtype == np.float32
    x32 = sd.Input("x32", shape=(None, 4), dtype="float32")
    labels = sd.Input("labels", shape=(None,), dtype="int64")
    e2 = (sd.softmax(x32) - sd.onehot(labels, 4)) * 0.5  # the float64 one-hot promotes
    out = sd.compile(e2)(x32=np.ones((2, 4), np.float32), labels=np.array([0, 1]))
    assert e2.dtype == out.dtype == np.float64


@pytest.mark.parametrize("optimize", [True, False])
def test_outputs_that_are_views_of_arguments_are_copies(optimize):
    W2 = sd.Param("W2", shape=(2, 3))
    xin = sd.Input("xin", shape=(None, 3))
    f = sd.compile({"WT": W2.T, "xr": xin.reshape(-1)}, optimize=optimize)
    W0, X = np.ones((2, 3)), np.ones((2, 3))
    out = f(W2=W0, xin=X)
    out["WT"][:] = 7
    out["xr"][:] = 5
    assert W0.max() == 1 and X.max() == 1


# -- issue 8 --------------------------------------------------------------------------------------
def _import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_array_constants_with_inf_and_nan_compile_and_import(tmp_path):
    v = sd.Input("v", shape=(4,))
    const = np.array([1.5, np.inf, -np.inf, np.nan])
    grid = np.array([[np.inf, 1e300], [5e-324, -0.0]], dtype=np.float64)
    out = {"y": v * const, "z": sd.constant(grid) @ v[:2]}
    values = np.array([2.0, 1.0, 3.0, 1.0])
    want = {"y": values * const, "z": grid @ values[:2]}
    for optimize in (True, False):
        got = sd.compile(out, optimize=optimize)(v=values)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        path = tmp_path / f"consts_{optimize}.py"
        path.write_text(sd.codegen(out, name="consts", optimize=optimize))
        got = _import_file(path, f"consts_{optimize}").consts(v=values)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize(
    "options",
    [{"formatter": {"float_kind": "{:.2f}".format}}, {"precision": 2}, {"legacy": "1.13"}, {"floatmode": "fixed"}],
    ids=["formatter", "precision", "legacy", "floatmode"],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_constants_are_exact_whatever_the_print_options(options, dtype):
    v = sd.Input("v", shape=(3,), dtype=dtype)
    arr = np.array([0.123456789, 1 / 3, 2.0**-40], dtype=dtype)
    with np.printoptions(**options):
        f = sd.compile({"a": v * arr, "s": v * np.asarray(0.123456789, dtype=dtype)}, optimize=False)
    out = f(v=np.ones(3, dtype=dtype))
    np.testing.assert_array_equal(out["a"], arr)
    np.testing.assert_array_equal(out["s"], np.full(3, 0.123456789, dtype=dtype))


def test_float32_array_constants_print_short():
    v = sd.Input("v", shape=(3,), dtype="float32")
    source = sd.codegen(v * np.array([0.1, 0.25, 1 / 3], dtype=np.float32))
    assert "np.array([0.1, 0.25, 0.33333334], dtype=np.float32)" in source


def test_readable_code_writes_constant_power_and_division_with_numpy_semantics():
    """``0.0 ** -1`` and ``1.0 / 0.0`` are inf in NumPy; printed bare, Python raises ZeroDivisionError."""
    x = sd.Input("x", shape=(3,))
    X = np.array([1.5, -2.0, 3.0])
    for e in (x * sd.power(sd.constant(0.0), sd.constant(-1)), x * (sd.constant(1.0) / sd.constant(0.0))):
        for optimize in (False, True):
            with np.errstate(divide="ignore"):
                np.testing.assert_array_equal(sd.compile(e, optimize=optimize)(x=X), [np.inf, -np.inf, np.inf])
    assert "np.int8(100)" in sd.codegen(x * (sd.constant(np.int8(100)) + sd.constant(np.int8(3))))


def test_integer_constant_arithmetic_that_overflows_is_refused_when_built():
    """int8(100) * int8(3) wraps in NumPy; readable code must not compute 300 while optimized code refuses."""
    with pytest.raises(sd.ConstantOverflowError, match="int8"):
        sd.constant(np.int8(100)) * sd.constant(np.int8(3))
    with pytest.raises(sd.ConstantOverflowError, match="uint8"):
        sd.constant(np.uint8(1)) - sd.constant(np.uint8(2))


def test_outputs_reading_the_old_value_of_another_outputs_target_are_written_first() -> None:
    from symdiff.memory import write_order

    p, v, g = (sd.Input(n, shape=(3,)) for n in ("p", "v", "g"))
    v_new = 0.9 * v - g
    # p reads the old v only: written before v's new value overwrites it
    assert write_order([v_new, p + v - g], [v, p]) == [1, 0]
    # p reads the new v: after it, as given
    assert write_order([v_new, p + v_new], [v, p]) == [0, 1]
    # each reads the other's old value: no order helps, the given one is kept (the planner copies instead)
    assert write_order([p, v], [v, p]) == [0, 1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, axes", [((3, 4, 5, 2), (0, 1, 2)), ((6, 7, 3), (0, 1)), ((0, 4, 2), (0, 1))])
def test_a_sum_over_leading_axes_is_one_matrix_vector_product(dtype, shape, axes) -> None:
    x = sd.Input("x", shape=shape, dtype=dtype)
    f = sd.compile({"s": sd.sum(x, axis=axes), "t": sd.sum(x.T, axis=axes)})  # x.T: a non-contiguous operand
    assert f"_sum_leading(x, {len(axes)})" in f.source and "def _sum_leading(" in f.source
    v = np.random.default_rng(0).normal(size=shape).astype(dtype)
    out = f(x=v)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out["s"], v.sum(axis=axes), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(out["t"], v.T.sum(axis=axes), rtol=rtol, atol=rtol)
    assert out["s"].dtype == dtype and out["s"].shape == shape[len(axes) :]


def test_kernels_are_emitted_only_when_the_code_calls_them() -> None:
    x = sd.Input("x", shape=(None, 3, 4))
    plain = sd.codegen({"s": sd.sum(x, axis=0), "m": sd.sum(x, axis=(1, 2))})  # not leading axes of a float
    assert "_sum_leading" not in plain
    both = sd.codegen({"s": sd.sum(x, axis=(0, 1))})
    assert both.count("def _sum_leading(") == 1
    conv = sd.codegen(sd.conv2d(sd.Input("im", shape=(2, 5, 5, 3)), sd.Param("w", shape=(3, 3, 3, 4))))
    assert "def _conv2d(" in conv and "def _im2col(" in conv  # a kernel's own callees come along
