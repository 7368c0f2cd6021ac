"""The ``symdiff`` command line, run as a real subprocess (``python -m symdiff``)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import symdiff as sd
from symdiff import cli

ROOT = Path(__file__).resolve().parents[1]

DEMO_MODEL = """\
h1_z = x @ h1_W + h1_b
h1 = relu(h1_z)
h2_z = h1 @ h2_W + h2_b
h2 = relu(h2_z)
out = h2 @ out_W + out_b
n = x.shape[0]
loss = sum(-pick(log_softmax(out), y)) / n
"""

DEMO_GRADIENTS = """\
dout = (softmax(out) - onehot(y, 2)) / n
dout_W = h2.T @ dout
dout_b = sum(dout, axis=0)
dh2 = dout @ out_W.T
dh2_z = dh2 * (h2_z > 0)
dh2_W = h1.T @ dh2_z
dh2_b = sum(dh2_z, axis=0)
dh1 = dh2_z @ h2_W.T
dh1_z = dh1 * (h1_z > 0)
dh1_W = x.T @ dh1_z
dh1_b = sum(dh1_z, axis=0)
"""

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("SYMDIFF_DEBUG", None)
    return env


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "symdiff", *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd or ROOT, timeout=120, check=False)  # fmt: skip


class Result:
    """What an in-process run of ``cli.main`` returned and printed (like a CompletedProcess)."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(capsys, *args):
    """``cli.main(args)`` in this process (fast), for the many error paths; SystemExit becomes a status."""
    capsys.readouterr()
    try:
        code = cli.main(list(args))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def assert_one_line_error(proc, needle, code=1):
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("symdiff: error: "), proc.stderr
    assert needle in lines[0], proc.stderr


LINREG = """\
import numpy as np
import symdiff as sd

x = sd.Input("x", shape=(None, 3))
y = sd.Input("y", shape=(None,))
w = sd.Param("w", shape=(3,))
b = sd.Param("b")
loss = sd.mse(x @ w + b, y)

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 3))
data = {"x": X, "y": X @ np.array([2.0, -3.0, 0.5]) + 1.5}
"""

CLASSIFIER = """\
import symdiff as sd
from symdiff.datasets import spirals

x = sd.Input("x", shape=(None, 2))
y = sd.Input("y", shape=(None,), dtype="int64")
h = sd.dense(x, 16, "h", activation="tanh")
loss = sd.softmax_cross_entropy(sd.dense(h, 2, "out"), y)


def load_data():
    X, Y = spirals(100, seed=0)
    Xv, Yv = spirals(50, seed=1)
    return {"x": X, "y": Y}, {"x": Xv, "y": Yv}
"""


@pytest.fixture
def models(tmp_path):
    (tmp_path / "linreg.py").write_text(LINREG, encoding="utf-8")
    (tmp_path / "classifier.py").write_text(CLASSIFIER, encoding="utf-8")
    return tmp_path


# -- demo ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = run_cli("demo", "--out", str(out))
    return proc, out


def test_demo_exits_zero(demo):
    proc, _ = demo
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal


def test_demo_prints_the_model_and_its_gradients_layer_by_layer(demo):
    proc, _ = demo
    assert DEMO_MODEL in proc.stdout
    assert DEMO_GRADIENTS in proc.stdout
    assert proc.stdout.index(DEMO_MODEL) < proc.stdout.index(DEMO_GRADIENTS)


def test_demo_reports_a_small_check_grad_error(demo):
    proc, _ = demo
    m = re.search(r"largest relative error of the gradients against central differences: (\S+)", proc.stdout)
    assert m, proc.stdout
    assert float(m.group(1)) < 1e-6
    m = re.search(r"loss at a random start: (\d+\.\d{4});", proc.stdout)
    assert m and 0 < float(m.group(1)) < 5


def test_demo_learns_the_spirals(demo):
    proc, _ = demo
    m = re.search(r"# accuracy (\d\.\d+) on the training spirals, (\d\.\d+) on 1000 fresh points", proc.stdout)
    assert m, proc.stdout
    assert float(m.group(1)) >= 0.97 and float(m.group(2)) >= 0.95
    assert "epoch 40/40: loss" in proc.stdout
    m = re.search(r"# done in (\d+\.\d+) s", proc.stdout)
    assert m and float(m.group(1)) < 30


def _demo_outputs():
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h1 = sd.dense(x, 64, "h1", activation="relu")
    h2 = sd.dense(h1, 64, "h2", activation="relu")
    loss = sd.softmax_cross_entropy(sd.dense(h2, 2, "out"), y)
    params = [n for n in sd.graph.leaves([loss]) if n.op == "param"]
    return {"loss": loss, **{f"d{p.label}": g for p, g in zip(params, sd.grad(loss, params))}}


def test_demo_writes_an_importable_module_and_says_where(demo):
    proc, out = demo
    code = out / "step.py"
    assert f"written to {code}" in proc.stdout
    assert "def step(" not in proc.stdout  # written, not printed
    source = code.read_text(encoding="utf-8")
    assert source == sd.codegen(_demo_outputs(), name="step")
    spec = importlib.util.spec_from_file_location("demo_step_under_test", code)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(3)
    vals = {"h1_W": rng.normal(size=(2, 64)), "h1_b": rng.normal(size=64), "h2_W": rng.normal(size=(64, 64)),
            "h2_b": rng.normal(size=64), "out_W": rng.normal(size=(64, 2)), "out_b": rng.normal(size=2),
            "x": rng.normal(size=(9, 2)), "y": rng.integers(0, 2, size=9)}  # fmt: skip
    got = mod.step(**vals)
    want = sd.compile(_demo_outputs(), name="step")(**vals)
    assert list(got) == ["loss", "dh1_W", "dh1_b", "dh2_W", "dh2_b", "dout_W", "dout_b"]
    for k in want:  # the same source; BLAS may round differently with different memory alignment
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)
    assert set(sd.load_params(out / "params.npz")) == {"h1_W", "h1_b", "h2_W", "h2_b", "out_W", "out_b"}


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
def test_demo_saves_valid_pngs(demo):
    proc, out = demo
    for name in ("loss.png", "boundary.png"):
        path = out / name
        assert str(path) in proc.stdout
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert data[12:16] == b"IHDR" and len(data) > 5000


def test_demo_without_matplotlib_says_how_to_get_pictures(tmp_path):
    out = tmp_path / "d"
    code = ("import sys; sys.modules['matplotlib'] = None; from symdiff.cli import main; "
            f"sys.exit(main(['demo', '--epochs', '1', '--out', {str(out)!r}]))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=ROOT,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pip install matplotlib" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["params.npz", "step.py"]


def test_demo_progress_bar_on_request(tmp_path):
    proc = run_cli("demo", "--epochs", "2", "--no-plots", "--progress", "--out", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    assert "training: 100%" in proc.stderr and "2/2" in proc.stderr
    assert "epoch 2/2" not in proc.stdout  # the bar replaces the epoch lines


def test_demo_out_unwritable_path_fails_cleanly(tmp_path):
    proc = run_cli("demo", "--out", str(tmp_path / "missing_dir" / "sub"))
    assert_one_line_error(proc, "does not exist")


def test_demo_without_out_writes_into_symdiff_demo_and_says_so(tmp_path):
    proc = run_cli("demo", "--epochs", "1", "--no-plots", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"go into symdiff-demo{os.sep}" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "symdiff-demo").iterdir()) == ["params.npz", "step.py"]
    assert run_cli("demo", "--epochs", "1", "--no-plots", cwd=tmp_path).returncode == 0  # reruns replace its files
    (tmp_path / "symdiff-demo" / "step.py").write_text("# mine\n", encoding="utf-8")
    assert_one_line_error(run_cli("demo", "--no-plots", cwd=tmp_path), "step.py' exists and was not generated")


def test_demo_refuses_a_folder_holding_files_it_did_not_write(tmp_path, capsys):
    (tmp_path / "params.npz").write_bytes(b"mine")
    result = run_main(capsys, "demo", "--no-plots", "--out", str(tmp_path))
    assert_one_line_error(result, "params.npz' exists and was not written by the demo")
    assert (tmp_path / "params.npz").read_bytes() == b"mine" and not (tmp_path / "step.py").exists()


def test_demo_out_must_be_a_folder(tmp_path):
    proc = run_cli("demo", "--out", str(tmp_path / "step.py"))
    assert_one_line_error(proc, "--out takes a folder")


def test_main_in_process(tmp_path, capsys):
    out = tmp_path / "d"
    assert cli.main(["demo", "--out", str(out), "--epochs", "1", "--no-plots"]) == 0
    assert "dout = (softmax(out) - onehot(y, 2)) / n" in capsys.readouterr().out
    assert (out / "step.py").read_text(encoding="utf-8").startswith('"""step: generated by symdiff')


# -- grad ----------------------------------------------------------------------------------------------
def test_grad_scalar_example():
    proc = run_cli("grad", "sin(x) * x**2", "--wrt", "x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "dx = 2 * sin(x) * x + x**2 * cos(x)\n"
    assert proc.stderr == ""


LINREG_ARGS = ["mean((x @ W + b - y)**2)", "--wrt", "W", "--wrt", "b",
               "--shape", "x=None,3", "--shape", "W=3,1", "--shape", "b=1", "--shape", "y=None,1"]  # fmt: skip


def test_grad_linear_regression_example():
    proc = run_cli("grad", *LINREG_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == textwrap.dedent("""\
        n = x.shape[0]
        q1 = 2 * (x @ W + b - y) / n
        dW = x.T @ q1
        db = sum(q1, axis=0)
        """)


def test_grad_latex_and_dot(tmp_path):
    dot = tmp_path / "g.dot"
    proc = run_cli("grad", *LINREG_ARGS, "--latex", "--dot", str(dot))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("\\begin{aligned}\n")
    assert "\\mathrm{dW} &= {x}^\\top q_{1}" in proc.stdout
    text = dot.read_text(encoding="utf-8")
    assert text.splitlines()[1] == "digraph symdiff {" and 'label="dW"' in text
    assert cli.GENERATED_MARKER in text.splitlines()[0] and text.startswith("//")  # a DOT comment


def test_dot_output_never_replaces_the_model_or_a_foreign_file(models, monkeypatch, capsys):
    monkeypatch.chdir(models)
    before = (models / "linreg.py").read_text(encoding="utf-8")
    assert_one_line_error(run_main(capsys, "show", "linreg.py", "--dot", "linreg.py"), "is the model file itself")
    assert (models / "linreg.py").read_text(encoding="utf-8") == before
    (models / "notes.dot").write_text("digraph mine {}\n", encoding="utf-8")
    result = run_main(capsys, "grad", "sin(x)", "--wrt", "x", "--dot", "notes.dot")
    assert_one_line_error(result, "--dot 'notes.dot' exists and was not generated by symdiff")
    assert (models / "notes.dot").read_text(encoding="utf-8") == "digraph mine {}\n"
    for _ in range(2):  # its own DOT file is rewritten
        assert run_main(capsys, "grad", "sin(x)", "--wrt", "x", "--dot", "g.dot").returncode == 0


def test_grad_integer_labels_and_a_leading_minus():
    proc = run_cli("grad", "softmax_cross_entropy(x @ W, y)", "--wrt", "W", "--shape", "x=None,4",
                   "--shape", "W=4,3", "--shape", "y=None", "--dtype", "y=int64")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "dW = x.T @ ((softmax(x @ W) - onehot(y, 3)) / n)" in proc.stdout
    proc = run_cli("grad", "--wrt", "x", "--", "-x**2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("dx = -")


def test_grad_with_respect_to_a_batch_input():
    proc = run_cli("grad", "sum(relu(x))", "--wrt", "x", "--shape", "x=None,2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("dx = ") and "x > 0" in proc.stdout


@pytest.mark.parametrize("args, needle, code", [
    (["sin(x", "--wrt", "x"], "cannot parse the expression", 1),
    (["frobnicate(x)", "--wrt", "x"], "unknown function 'frobnicate'", 1),
    (["x @ W", "--wrt", "W", "--shape", "x=None,3", "--shape", "W=4,1"], "matmul: shapes (None, 3) and (4, 1)", 1),
    (["x**2", "--wrt", "z"], "--wrt z: the expression has no symbol 'z' (its symbols: x)", 1),
    (["x**2", "--wrt", "x", "--shape", "q=3"], "--shape q: the expression has no symbol 'q'", 1),
    (["x**2", "--wrt", "x", "--shape", "x=3,a"], "--shape x=3,a: 'a' is not a length", 1),
    (["x**2", "--wrt", "x", "--shape", "x"], "expected NAME=VALUE", 1),
    (["x**2", "--wrt", "x", "--dtype", "x=str"], "--dtype x=str", 1),
    (["exp(x)", "--wrt", "x", "--dtype", "x=int64"], "cannot differentiate with respect to 'x' of dtype int64", 1),
    (["x * 2", "--wrt", "x", "--shape", "x=3"], "the expression has shape (3,); a gradient needs a scalar", 1),
    (["x > 0", "--wrt", "x"], "a gradient needs a float expression", 1),
    (["x**2"], "the following arguments are required: --wrt", 2),
    (["x**2", "--wrt", "x", "--dot", "/nonexistent-dir/g.dot"], "cannot write DOT file", 1),
])  # fmt: skip
def test_grad_errors(capsys, args, needle, code):
    assert_one_line_error(run_main(capsys, "grad", *args), needle, code)


def test_grad_error_in_a_subprocess():
    proc = run_cli("grad", "x @ W", "--wrt", "W", "--shape", "x=None,3", "--shape", "W=4,1")
    assert_one_line_error(proc, "matmul: shapes (None, 3) and (4, 1) are not aligned")
    assert proc.stdout == ""


HOSTILE = [
    "__import__('os').system('touch PWNED')",
    '__import__("os").system("touch PWNED")',
    "exp(__import__('os').system('touch PWNED'))",
    "().__class__.__base__.__subclasses__()",
    "().__class__.__base__",
    "x.__class__",
    "exp.__globals__",
    "getattr(x, '__class__')",
    "eval(\"__import__('os').system('touch PWNED')\")",
    "open('PWNED', 'w')",
    "lambda: __import__('os').system('touch PWNED')",
    "(lambda: __import__('os').system('touch PWNED'))()",
    "[__import__('os').system('touch PWNED') for _ in (1,)]",
    "{__import__('os').system('touch PWNED') for _ in (1,)}",
    "sum(x, axis=__import__('os').system('touch PWNED'))",
    "x[__import__('os').system('touch PWNED')]",
    "(x := __import__('os'))",
    "f\"{__import__('os').system('touch PWNED')}\"",
    "'touch PWNED'",
    "x if __import__('os').system('touch PWNED') else x",
    "breakpoint()",
    "9**9**9**9",
    "x * 9**9**9",
    "x * 10**1000",
    "(" * 10000 + "x" + ")" * 10000,
    "x" + "+x" * 10000,  # over the length limit
    "-" * 1500 + "x",
    "exp(" * 300 + "x" + ")" * 300,
    "x.T.__class__",
    "x; __import__('os').system('touch PWNED')",
]


HOSTILE_IN_A_SUBPROCESS = [HOSTILE[i] for i in (0, 2, 4, 5, 8, 9, 10, 12, 15, 17, 20, 21, 24, 25, 26)]


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    """Each hostile string through a real ``symdiff grad`` process (in parallel, to keep the tests fast)."""
    cwd = tmp_path_factory.mktemp("hostile")
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(lambda text: run_cli("grad", "--wrt", "x", "--", text, cwd=cwd), HOSTILE_IN_A_SUBPROCESS))
    return cwd, dict(zip(HOSTILE_IN_A_SUBPROCESS, procs))


@pytest.mark.parametrize("text", HOSTILE_IN_A_SUBPROCESS, ids=[f"hostile{i}" for i in range(15)])
def test_grad_refuses_hostile_text(hostile_runs, text):
    cwd, procs = hostile_runs
    proc = procs[text]
    assert_one_line_error(proc, "")
    assert proc.stdout == ""
    assert len(proc.stderr) < 400
    assert not (cwd / "PWNED").exists() and not (ROOT / "PWNED").exists()


@pytest.mark.parametrize("text", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_grad_refuses_hostile_text_in_process(tmp_path, monkeypatch, capsys, text):
    monkeypatch.chdir(tmp_path)
    result = run_main(capsys, "grad", "--wrt", "x", "--", text)
    assert_one_line_error(result, "")
    assert result.stdout == "" and len(result.stderr) < 400
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("text, needle", [
    ("exp(__import__('os').system('touch PWNED'))", "method calls ('.system(...)')"),
    ("open('PWNED', 'w')", "unknown function 'open'"),
    ("().__class__.__base__", "attribute access '.__base__'"),
    ("lambda: __import__('os').system('touch PWNED')", "a lambda is not allowed"),
    ("9**9**9**9", "exponent 387420489"),
    ("(" * 10000 + "x" + ")" * 10000, "too long"),
    ("-" * 1500 + "x", "nested too deeply"),
])  # fmt: skip
def test_hostile_messages_say_why(hostile_runs, text, needle):
    _, procs = hostile_runs
    assert needle in procs[text].stderr


# -- explain -------------------------------------------------------------------------------------------
MSE_STEP = (
    " 2. mean squared error (fused: the closed form of the mean of squares): "
    "ds1 = 2 * (s1 - y) / n; where n = s1.shape[0]"
)

LINREG_EXPLAIN_W = f"""\
dL/dW, by the chain rule from L down to W:
    where mm1 = x @ W; s1 = mm1 + b; L = mse(s1, y)
 1. the loss: dL = 1    shape ()
{MSE_STEP}    shape (None, 1)
 3. add, left operand: dmm1 = ds1    shape (None, 1)
 4. matmul, right operand: dW = x.T @ ds1    shape (3, 1)
"""

LINREG_EXPLAIN_B = f"""\
dL/db, by the chain rule from L down to b:
    where s1 = x @ W + b; L = mse(s1, y)
 1. the loss: dL = 1    shape ()
{MSE_STEP}    shape (None, 1)
 3. add, right operand: db = sum(ds1, axis=0)    shape (1,)
      sum over axis 0 undoes the broadcast of b (1,) to (None, 1)
"""


def test_explain_prints_the_chain_rule_step_by_step():
    proc = run_cli("explain", *LINREG_ARGS[:3], *LINREG_ARGS[5:])  # --wrt W only
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == LINREG_EXPLAIN_W
    assert proc.stderr == ""


def test_explain_prints_one_derivation_per_wrt_in_order(capsys):
    res = run_main(capsys, "explain", *LINREG_ARGS, "--wrt", "W")  # a repeated --wrt is explained once
    assert res.returncode == 0, res.stderr
    assert res.stdout == LINREG_EXPLAIN_W + "\n" + LINREG_EXPLAIN_B
    b_first = run_main(capsys, "explain", LINREG_ARGS[0], "--wrt", "b", "--wrt", "W", *LINREG_ARGS[5:])
    assert b_first.stdout == LINREG_EXPLAIN_B + "\n" + LINREG_EXPLAIN_W


def test_explain_latex_prints_an_align_environment_per_wrt(capsys):
    res = run_main(capsys, "explain", *LINREG_ARGS, "--latex")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\\begin{align}\n") == 2 and res.stdout.count("\\end{align}\n") == 2
    assert "\\end{align}\n\n\\begin{align}" in res.stdout
    lines = res.stdout.splitlines()
    dW = r"\frac{\partial L}{\partial W} &= {x}^\top \frac{\partial L}{\partial s_{1}} && \text{matmul, right operand}"
    assert lines[5] == dW
    assert "\\frac{\\partial L}{\\partial b} &= \\sum_{0}" in res.stdout


def test_explain_takes_an_expression_that_starts_with_a_minus(capsys):
    res = run_main(capsys, "explain", "-x**2", "--wrt", "x")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == " 3. pow: dx = 2 * dpow1 * x    shape ()"


@pytest.mark.parametrize("args, needle, code", [
    (["x**2", "--wrt", "z"], "--wrt z: the expression has no symbol 'z' (its symbols: x)", 1),
    (["x**2"], "the following arguments are required: --wrt", 2),
    (["x * 2", "--wrt", "x", "--shape", "x=3"], "the expression has shape (3,); a gradient needs a scalar", 1),
    (["x**2", "--wrt", "x", "--hessian"], "unrecognized arguments: --hessian", 2),
    (["x**2", "--wrt", "x", "--dot", "g.dot"], "unrecognized arguments: --dot g.dot", 2),
])  # fmt: skip
def test_explain_errors(capsys, args, needle, code):
    assert_one_line_error(run_main(capsys, "explain", *args), needle, code)


# -- show ----------------------------------------------------------------------------------------------
def test_show(models):
    proc = run_cli("show", "linreg.py", cwd=models)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == textwrap.dedent("""\
        # model linreg.py
        params (4 numbers):
          w  shape (3,), float64
          b  shape (), float64
        inputs:
          x  shape (None, 3), float64
          y  shape (None,), float64

        loss:
        diff1 = x @ w + b - y
        n = x.shape[0]
        loss = sum(diff1**2) / n

        gradients (derived by the chain rule and simplified):
        q1 = 2 * diff1 / n
        dw = x.T @ q1
        db = sum(q1)
        """)


def test_show_latex_and_dot(models):
    proc = run_cli("show", "classifier.py", "--latex", "--dot", "g.dot", cwd=models)
    assert proc.returncode == 0, proc.stderr
    assert "h_W    shape (2, 16), float64" in proc.stdout
    assert "\\begin{aligned}" in proc.stdout and "\\mathrm{dout}" in proc.stdout
    assert 'label="dh_W"' in (models / "g.dot").read_text(encoding="utf-8")


def test_show_explain_prints_the_derivation_after_the_listing(models):
    listing = run_cli("show", "linreg.py", cwd=models).stdout
    proc = run_cli("show", "linreg.py", "--explain", "b", "--explain", "w", cwd=models)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(listing)
    assert proc.stdout[len(listing) :] == textwrap.dedent(f"""
        dL/db, by the chain rule from L down to b:
            where s1 = x @ w + b; L = mse(s1, y)
         1. the loss: dL = 1    shape ()
        {MSE_STEP}    shape (None,)
         3. add, right operand: db = sum(ds1)    shape ()
              sum over axis 0 undoes the broadcast of b () to (None,)

        dL/dw, by the chain rule from L down to w:
            where mm1 = x @ w; s1 = mm1 + b; L = mse(s1, y)
         1. the loss: dL = 1    shape ()
        {MSE_STEP}    shape (None,)
         3. add, left operand: dmm1 = ds1    shape (None,)
         4. matmul, right operand: dw = x.T @ ds1    shape (3,)
        """)


def test_show_explain_latex_and_a_fused_classifier(models, monkeypatch, capsys):
    monkeypatch.chdir(models)
    res = run_main(capsys, "show", "classifier.py", "--explain", "h_W", "--latex")
    assert res.returncode == 0, res.stderr
    listing, derivation = res.stdout.split("\n\n\\begin{align}\n")
    assert "\\begin{aligned}" in listing and derivation.endswith("\\end{align}\n")
    assert "\\text{softmax cross-entropy (fused" in derivation
    assert derivation.splitlines()[-2].startswith("\\frac{\\partial L}{\\partial h_{W}} &= ")


@pytest.mark.parametrize("name, needle", [
    ("Q", "--explain Q: 'Q' is not a param of model file 'classifier.py' (its params: h_W, h_b, out_W, out_b)"),
    ("x", "--explain x: 'x' is an input, not a param of model file 'classifier.py' (its params: h_W, h_b, "),
])  # fmt: skip
def test_show_explain_of_a_name_that_is_not_a_param_is_a_one_line_error(models, monkeypatch, capsys, name, needle):
    monkeypatch.chdir(models)
    res = run_main(capsys, "show", "classifier.py", "--explain", "h_W", "--explain", name)
    assert_one_line_error(res, needle)
    assert res.stdout == ""  # refused before anything is printed


@pytest.mark.parametrize("source, needle", [
    (None, "model file 'model.py' does not exist"),
    ("x = 1\ny = 1 / 0\n", "model file 'model.py', line 2: ZeroDivisionError: division by zero"),
    ("def f(:\n", "model file 'model.py', line 1: syntax error"),
    ("y = 2\n", "defines no 'loss'"),
    ("loss = 3.0\n", "loss must be a symdiff expression, got float"),
    ("import symdiff as sd\nloss = sd.Param('w', shape=(3,)) * 2\n", "loss must be a scalar, got shape (3,)"),
    ("import symdiff as sd\nloss = sd.Input('x') ** 2\n", "the loss uses no sd.Param"),
    ("import sys\nsys.exit(3)\n", "exited (status 3)"),
    ("import symdiff as sd\nx = sd.Input('x', shape=(3,))\nW = sd.Param('W', shape=(4, 2))\nloss = sd.sum(x @ W)\n",
     "line 4: ShapeError: matmul"),
])  # fmt: skip
def test_model_file_errors(tmp_path, monkeypatch, capsys, source, needle):
    if source is not None:
        (tmp_path / "model.py").write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_main(capsys, "show", "model.py"), needle)


def test_model_file_error_in_a_subprocess(tmp_path):
    (tmp_path / "model.py").write_text("import symdiff as sd\n\nloss = sd.Input('x') @ 2\n", encoding="utf-8")
    proc = run_cli("show", "model.py", cwd=tmp_path)
    assert_one_line_error(proc, "model file 'model.py', line 3: ShapeError: matmul")
    assert_one_line_error(run_cli("show", str(tmp_path)), "is not a file")


# -- codegen -------------------------------------------------------------------------------------------
def test_codegen_to_stdout(models):
    proc = run_cli("codegen", "linreg.py", cwd=models)
    assert proc.returncode == 0, proc.stderr
    ns = {}
    exec(compile(proc.stdout, "generated", "exec"), ns)  # noqa: S102 - symdiff's own generated code
    assert "def loss_and_grads(*, w, b, x, y):" in proc.stdout
    assert "import symdiff" not in proc.stdout


def test_codegen_check_and_generated_tests_pass(models):
    proc = run_cli("codegen", "classifier.py", "-o", "clf.py", "--check", "--tests", "--name", "clf", cwd=models)
    assert proc.returncode == 0, proc.stderr
    assert "wrote clf.py" in proc.stdout and "clf(*, h_W, h_b, out_W, out_b, x, y) -> loss, dh_W" in proc.stdout
    m = re.search(
        r"check: clf\.py matches sd\.compile on 3 random data sets .*central differences to (\S+) ", proc.stdout
    )
    assert m and float(m.group(1)) < 1e-6, proc.stdout
    test_file = models / "test_clf.py"
    assert "wrote test_clf.py" in proc.stdout
    assert not re.search(r"^\s*(import|from) symdiff", test_file.read_text(encoding="utf-8"), re.M)  # numpy only
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                         capture_output=True, text=True, cwd=models, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "9 passed" in run.stdout


def test_generated_tests_catch_a_wrong_gradient(models):
    proc = run_cli("codegen", "linreg.py", "-o", "lin.py", "--tests", cwd=models)
    assert proc.returncode == 0, proc.stderr
    module = models / "lin.py"
    source = module.read_text(encoding="utf-8")
    broken = re.sub(r'"dw": (\w+)', r'"dw": 1.01 * \1', source)
    assert broken != source
    module.write_text(broken, encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_lin.py"],
                         capture_output=True, text=True, cwd=models, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 1 and "2 failed" in run.stdout, run.stdout
    assert "dw: relative error" in run.stdout


@pytest.mark.parametrize("args, needle", [
    (["linreg.py", "--check"], "--check and --tests need the module written to a file: add -o OUT.py"),
    (["linreg.py", "-o", "out.txt"], "must be a .py file"),
    (["linreg.py", "-o", "missing/out.py"], "the folder 'missing' does not exist"),
    (["linreg.py", "--name", "class"], "--name: function name 'class' is a Python keyword"),
    (["nope.py"], "model file 'nope.py' does not exist"),
])  # fmt: skip
def test_codegen_errors(models, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(models)
    assert_one_line_error(run_main(capsys, "codegen", *args), needle)


def test_codegen_error_in_a_subprocess(models):
    assert_one_line_error(run_cli("codegen", "linreg.py", "--tests", cwd=models), "add -o OUT.py")


def test_codegen_refuses_to_overwrite_the_model_file(models):
    before = (models / "linreg.py").read_text(encoding="utf-8")
    proc = run_cli("codegen", "linreg.py", "-o", "linreg.py", cwd=models)
    assert_one_line_error(proc, "-o 'linreg.py' is the model file itself")
    assert (models / "linreg.py").read_text(encoding="utf-8") == before


def test_codegen_refuses_to_overwrite_files_symdiff_did_not_write(models):
    (models / "mine.py").write_text("# my own code\n", encoding="utf-8")
    (models / "test_lin.py").write_text("def test_mine(): pass\n", encoding="utf-8")
    assert_one_line_error(run_cli("codegen", "linreg.py", "-o", "mine.py", cwd=models), "was not generated by symdiff")
    proc = run_cli("codegen", "linreg.py", "-o", "lin.py", "--tests", cwd=models)
    assert_one_line_error(proc, "--tests: test file 'test_lin.py' exists and was not generated by symdiff")
    assert (models / "mine.py").read_text(encoding="utf-8") == "# my own code\n"
    assert (models / "test_lin.py").read_text(encoding="utf-8") == "def test_mine(): pass\n"
    assert not (models / "lin.py").exists()  # nothing half-written


def test_codegen_rewrites_its_own_generated_files(models):
    for _ in range(2):
        proc = run_cli("codegen", "linreg.py", "-o", "lin.py", "--tests", cwd=models)
        assert proc.returncode == 0, proc.stderr
    for name in ("lin.py", "test_lin.py"):
        assert cli.GENERATED_MARKER in (models / name).read_text(encoding="utf-8").splitlines()[0]


@pytest.mark.parametrize("name", ["numpy", "pytest", "math", "importlib"])
def test_codegen_refuses_a_module_name_that_shadows_an_import(models, monkeypatch, capsys, name):
    monkeypatch.chdir(models)
    assert_one_line_error(run_main(capsys, "codegen", "linreg.py", "-o", f"{name}.py"), f"would shadow the {name!r}")
    assert not (models / f"{name}.py").exists()


def test_train_refuses_to_overwrite_an_earlier_run_without_force(models):
    args = ("train", "linreg.py", "--epochs", "1", "--out", "run")
    assert run_cli(*args, cwd=models).returncode == 0
    first = (models / "run" / "params.npz").read_bytes()
    assert_one_line_error(run_cli(*args, "--seed", "3", cwd=models), "output folder 'run' is not empty")
    assert (models / "run" / "params.npz").read_bytes() == first
    proc = run_cli(*args, "--seed", "3", "--force", cwd=models)
    assert proc.returncode == 0, proc.stderr
    assert (models / "run" / "params.npz").read_bytes() != first
    assert "--force" in run_cli("train", "--help").stdout


# -- train ---------------------------------------------------------------------------------------------
def test_train_regression(models):
    proc = run_cli("train", "linreg.py", "--epochs", "30", "--lr", "0.1", "--optimizer", "adam", "--out", "run",
                   cwd=models)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("# training linreg.py: 200 samples, Adam(lr=0.1")
    assert "epoch 30/30: loss" in proc.stdout
    m = re.search(r"final: loss (\S+) \(", proc.stdout)
    assert m and float(m.group(1).rstrip(",")) < 0.01, proc.stdout
    run = models / "run"
    params = sd.load_params(run / "params.npz")
    np.testing.assert_allclose(params["w"], [2.0, -3.0, 0.5], atol=0.05)
    record = json.loads((run / "history.json").read_text(encoding="utf-8"))
    assert record["epoch"] == list(range(1, 31)) and len(record["history"]["loss"]) == 30
    assert record["optimizer"].startswith("Adam(lr=0.1")
    rows = list(csv.reader((run / "history.csv").open(encoding="utf-8")))
    assert rows[0] == ["epoch", "loss"] and len(rows) == 31
    assert float(rows[-1][1]) == record["history"]["loss"][-1]


def test_train_classifier_with_load_data(models):
    proc = run_cli("train", "classifier.py", "--epochs", "3", "--batch-size", "full", "--optimizer", "sgd",
                   "--lr", "0.5", "--seed", "1", cwd=models)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "SGD(lr=0.5" in proc.stdout and "full batch" in proc.stdout
    assert re.search(r"final: loss \S+, accuracy \S+, val_loss \S+, val_accuracy \S+ \(3 steps", proc.stdout)
    assert (models / "classifier-run" / "params.npz").exists()  # the default output folder


def test_train_progress_bar(models):
    proc = run_cli("train", "linreg.py", "--epochs", "2", "--progress", cwd=models)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/2" in proc.stderr  # the driver's per-step bar
    assert "epoch 2/2: loss" in proc.stdout


@pytest.mark.parametrize("source, args, needle, code", [
    (LINREG.replace("data =", "other ="), [], "defines no training data", 1),
    (LINREG.replace('"y": X', '"target": X'), [], "data misses input 'y'", 1),
    (LINREG.replace("data = {", "data = [{").replace("+ 1.5}", "+ 1.5}]"), [], "data must be a dict", 1),
    (LINREG, ["--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'", 2),
    (LINREG, ["--epochs", "0"], "argument --epochs: '0' must be at least 1", 2),
    (LINREG, ["--lr", "-1"], "argument --lr: '-1' must be a positive number", 2),
    (LINREG, ["--out", "a/b"], "cannot create output folder 'a/b'", 1),
    (LINREG + "def load_data():\n    raise OSError('no network')\ndel data\n", [],
     "load_data() raised OSError: no network", 1),
])  # fmt: skip
def test_train_errors(tmp_path, monkeypatch, capsys, source, args, needle, code):
    (tmp_path / "m.py").write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_main(capsys, "train", "m.py", *args), needle, code)


@pytest.mark.parametrize("text", ["1e400", "inf", "nan"])
def test_train_lr_that_reads_as_inf_or_nan_is_reported_as_not_finite(tmp_path, monkeypatch, capsys, text):
    (tmp_path / "m.py").write_text(LINREG, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    needle = f"argument --lr: '{text}' is not finite (it reads as"
    assert_one_line_error(run_main(capsys, "train", "m.py", "--lr", text), needle, 2)


def test_train_error_in_a_subprocess(tmp_path):
    (tmp_path / "m.py").write_text(LINREG.replace('"y": X', '"target": X'), encoding="utf-8")
    assert_one_line_error(run_cli("train", "m.py", cwd=tmp_path), "data misses input 'y'")
    assert not (tmp_path / "m-run" / "params.npz").exists()


# -- the command line itself ---------------------------------------------------------------------------
@pytest.mark.parametrize("args, needles", [
    (["--help"], ["usage: symdiff", "demo", "grad", "explain", "show", "codegen", "train"]),
    (["demo", "--help"], ["usage: symdiff demo", "--out DIR", "examples:"]),
    (["grad", "--help"], ["usage: symdiff grad", "--wrt NAME", "examples:", "softmax_cross_entropy"]),
    (["explain", "--help"], ["usage: symdiff explain", "--wrt NAME", "--latex", "examples:", "symdiff explain"]),
    (["show", "--help"], ["usage: symdiff show", "examples:", "loss = sd.mse", "--explain NAME"]),
    (["codegen", "--help"], ["usage: symdiff codegen", "--tests", "examples:"]),
    (["train", "--help"], ["usage: symdiff train", "--batch-size", "examples:", "load_data()"]),
])  # fmt: skip
def test_help(args, needles):
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    for needle in needles:
        assert needle in proc.stdout


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"symdiff {sd.__version__}"


def test_unknown_command_fails():
    proc = run_cli("frobnicate")
    assert_one_line_error(proc, "invalid choice: 'frobnicate'", 2)


def test_no_command_prints_usage_and_fails(capsys):
    assert cli.main([]) != 0
    assert "usage: symdiff" in capsys.readouterr().out


def test_errors_in_process(capsys, tmp_path):
    assert cli.main(["grad", "x.__class__", "--wrt", "x"]) == 1
    err = capsys.readouterr().err
    assert err == "symdiff: error: attribute access '.__class__' is not allowed (only .T) (at column 1)\n"


def test_unexpected_errors_are_one_line(monkeypatch, capsys):
    def boom(args):
        raise AttributeError("something broke")

    monkeypatch.setattr(cli, "_cmd_grad", boom)
    assert cli.main(["grad", "x", "--wrt", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("symdiff: error: internal error (AttributeError: something broke)") and err.count("\n") == 1
    monkeypatch.setenv("SYMDIFF_DEBUG", "1")
    with pytest.raises(AttributeError):
        cli.main(["grad", "x", "--wrt", "x"])


def test_parse_shape():
    assert cli.parse_shape("None,3") == (None, 3)
    assert cli.parse_shape("(None, 3)") == (None, 3)
    assert cli.parse_shape("3") == (3,)
    assert cli.parse_shape("3,") == (3,)
    assert cli.parse_shape("") == ()
    assert cli.parse_shape("()") == ()
    with pytest.raises(ValueError, match="'-3' is not a length"):
        cli.parse_shape("-3")


def test_grad_takes_an_expression_that_starts_with_a_minus():
    proc = run_cli("grad", "-x**2", "--wrt", "x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "dx = -(2 * x)"


def test_grad_refuses_a_huge_exponent_on_a_symbol():
    proc = run_cli("grad", "x**99999999999", "--wrt", "x")
    assert proc.returncode == 1 and "exponent 99999999999 is too large" in proc.stderr


@pytest.mark.parametrize("text, needle", [
    ("x * power(3, 9223372036854775807)", "exponent 9223372036854775807 of a power of constants is too large"),
    ("x**power(10, 6)", "the exponent 1000000 is too large"),
    ("power(x, 1e300)", "the exponent 1e+300 is too large"),
])  # fmt: skip
def test_grad_refuses_huge_powers_written_with_power_quickly(text, needle):
    proc = subprocess.run([sys.executable, "-m", "symdiff", "grad", text, "--wrt", "x"], capture_output=True,
                          text=True, env=_env(), cwd=ROOT, timeout=20, check=False)  # fmt: skip
    assert_one_line_error(proc, needle)


def test_grad_differentiates_a_flat_sum_of_many_terms():
    proc = run_cli("grad", "+".join(["x"] * 300), "--wrt", "x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "dx = 300.0"


@pytest.mark.parametrize("text, needle", [
    ("sin(x * x**2", "cannot parse the expression: '(' was never closed (at column 4)"),
    ("x^2", "use ** for a power"),
    ("max(x, 0)", "write maximum(a, b)"),
    ("sinn(x)", "did you mean 'sin'?"),
    ("x * 2**-1", "write a float base, e.g. 2.0 ** -1"),
])  # fmt: skip
def test_grad_errors_say_what_was_meant(capsys, text, needle):
    assert_one_line_error(run_main(capsys, "grad", text, "--wrt", "x"), needle)


def test_grad_hessian_prints_the_gradient_and_the_second_derivative(capsys):
    res = run_main(capsys, "grad", "x**3", "--wrt", "x", "--hessian")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "dx = 3 * x**2\nd2x = 6 * x\n"
    res = run_main(capsys, "grad", "sum(x * y)", "--wrt", "x", "--wrt", "y", "--shape", "x=2", "--shape", "y=2",
                   "--hessian")  # fmt: skip
    assert "dx_dy = eye(2)\ndy_dx = eye(2)\n" in res.stdout


def test_jacobian_command_prints_the_jacobian_of_a_batch_shaped_expression(capsys):
    res = run_main(capsys, "jacobian", "tanh(x @ W)", "--wrt", "W", "--shape", "x=None,3", "--shape", "W=3,2")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "dW = transpose(x @ reshape(eye(6), (3, 2, 3, 2)) * (1 - tanh(x @ W)**2), (2, 3, 0, 1))\n"
    res = run_main(capsys, "jacobian", "-x**2", "--wrt", "x", "--shape", "x=2")  # a leading minus, like grad
    assert res.stdout == "dx = -(2 * diag(x))\n"
    res = run_main(capsys, "jacobian", "exp(x)", "--wrt", "x", "--shape", "x=None,3")
    assert res.returncode == 1 and "jacobian: the target x has an open axis (shape (None, 3))" in res.stderr
    res = run_main(capsys, "jacobian", "exp(x)", "--wrt", "x", "--hessian")
    assert res.returncode == 2 and "unrecognized arguments: --hessian" in res.stderr
