"""Smoke tests of the example scripts: each runs as a subprocess (quick settings) and prints its key lines.

scikit-learn (digits.py) and matplotlib (optimizers.py) are optional: with them the examples use them,
without them they say how to install them and exit 0; both paths are tested (the missing package is
simulated by blocking its import).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def run_example(name: str, *args: str, block: str | None = None, cwd: Path | None = None) -> str:
    """Run ``examples/<name>`` with ``args``; assert exit status 0 and return its stdout.

    ``block``: a top-level package made unimportable for the run (as if it were not installed).
    """
    path = str(EXAMPLES / name)
    if block is None:
        cmd = [sys.executable, path, *args]
    else:
        code = (
            f"import runpy, sys; sys.modules[{block!r}] = None; sys.argv = [{path!r}, *{list(args)!r}]; "
            f"runpy.run_path({path!r}, run_name='__main__')"
        )
        cmd = [sys.executable, "-c", code]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_tensors():
    out = run_example("tensors.py")
    assert re.search(r"x\[:2, :1, :4\]\s+shape \(2, 1, 4\)", out)
    assert "shape (64, 3, 32, 10)" in out  # broadcasting (64, 3, 32, 10) against (32, 10)
    assert "cannot be broadcast" in out  # a refused shape pair, reported
    assert re.search(r"tensordot\(t4, d, axes=\(\[3\], \[0\]\)\)\s+shape \(2, 3, 4\)", out)
    assert re.search(r"shape \(2, 3, 4, 6\)", out)
    assert "def layer(*, W, b, x):" in out  # the generated NumPy code
    assert re.search(r"all \d+ symbolic results match NumPy", out)


def test_derivatives():
    # The full run is well under a second; its own asserts check the rolling-ball claim.
    out = run_example("derivatives.py")
    assert "dx = 3.0 * x**2" in out or "dx = 3 * x**2" in out
    assert "dx = -sin(x)" in out
    assert re.search(r"f = a \* x\s+dx = a\b", out)
    assert re.search(r"plain gradient descent .* -> local minimum", out)
    assert re.search(r"momentum 0\.9 .* -> global minimum", out)
    assert "momentum rolled over the hump" in out


def test_derivatives_quick():
    out = run_example("derivatives.py", "--steps", "5")
    assert "after 5 steps" in out


def test_linear_regression():
    out = run_example("linear_regression.py")  # 30 epochs of a 3-feature model: a fraction of a second
    assert "dw = x.T @ " in out
    assert "db = sum(" in out
    assert "| w[0] | +2.0000 |" in out
    assert "recovered coefficients are within 0.05 of the true ones" in out


def test_linear_regression_quick():
    out = run_example("linear_regression.py", "--epochs", "2", "--show-code")
    assert "def train_step(" in out
    assert "| b | +1.5000 |" in out


def test_spirals():
    out = run_example("spirals.py")  # its own asserts: linear < 0.75, MLP >= 0.97 training accuracy
    lin = re.search(r"logistic regression \(one dense layer\): training accuracy ([0-9.]+)", out)
    mlp = re.search(r"ReLU MLP 2-64-64-2: training accuracy ([0-9.]+)", out)
    assert lin and mlp, out
    assert float(lin.group(1)) < 0.75
    assert float(mlp.group(1)) >= 0.97
    assert "dx = dh1_z @ h1_W.T" in out  # backpropagation printed layer by layer


def test_spirals_quick():
    out = run_example("spirals.py", "--epochs", "2")
    assert "| ReLU MLP 2-64-64-2 |" in out


def test_matrix_calculus():
    out = run_example("matrix_calculus.py")  # 15 derivatives derived, printed and compiled: well under a second
    # f | w.r.t. | the book's form | relative error | symdiff's printed derivative (whatever it prints today)
    rows = re.findall(r"^  (\S.*?) {2,}(X|x|x, x) {2,}(\S.*?) {2,}(\d\.\de[+-]\d\d)  (\S.*)$", out, re.M)
    assert len(rows) == 15, out
    book = {f: form for f, _, form, _, _ in rows}
    assert book["a^T X b"] == "a b^T"
    assert book["tr(A X B X^T C)"] == "A^T C^T X B^T + C A X B"
    assert book["ln|det(X)|"] == "X^-T"
    assert ("x^T B x", "x, x", "B + B^T") in {r[:3] for r in rows}  # the Hessian row
    assert all(float(r[3]) < 1e-10 for r in rows), rows  # the compiled gradient equals the book's closed form
    assert "dX = outer(a, b)" in out
    assert re.search(r"all 15 derivatives match the book's closed forms \(largest relative error", out)


def test_newton_quick():
    # Gradient descent capped at 2000 iterations: Rosenbrock's does not converge (reported), the others do.
    out = run_example("newton.py", "--max-iters", "2000")
    table = re.findall(r"^\| (.+?) \| (.+?) \| (\d+) \| [0-9.]+ \| (\S+) \| (yes|no \(iteration cap\)) \|$", out, re.M)
    rows = {(problem, method): (int(iters), float(norm), reached) for problem, method, iters, norm, reached in table}
    assert len(rows) == 7, out
    for (problem, method), (iters, norm, reached) in rows.items():
        if method != "gradient descent":  # Newton and Gauss-Newton: a handful of steps to a gradient norm of 1e-10
            assert iters < 50 and norm <= 1e-10 and reached == "yes", (problem, method, iters, norm)
    assert rows["Rosenbrock (2-D)", "gradient descent"][0] == 2000
    assert rows["Rosenbrock (2-D)", "gradient descent"][2] == "no (iteration cap)"
    assert ("exponential fit (A, k)", "Gauss-Newton (sd.jacobian)") in rows
    hessian = out.split("its Hessian, sd.hessian(loss, w), a 5x5 matrix:")[1].split("exponential decay fit")[0]
    assert "sigmoid(" in hessian and "x.T" in hessian  # the logistic loss's Hessian, printed as a formula
    assert "sd.jacobian(r, theta), shape (None, 2)" in out
    assert re.search(r"the fitted decay: A = 3\.0\d+, k = 0\.7\d+", out)


def test_backprop_by_hand(tmp_path):
    png = tmp_path / "chain.png"  # five derivations of a 2-16-2 network, and a picture: about a second
    out = run_example("backprop_by_hand.py", "--png", str(png))
    sections = re.findall(r"^(\d)\. ", out, re.M)
    assert sections == ["1", "2", "3", "4", "5", *["6"] * HAS_MATPLOTLIB], out
    assert png.exists() == HAS_MATPLOTLIB and (not HAS_MATPLOTLIB or png.read_bytes().startswith(b"\x89PNG"))
    # the derivations run from the loss down to the param asked for, as numbered steps with shapes
    for param in ("h1_W", "h1_b", "out_W"):
        assert f"by the chain rule from L down to {param}:" in out
    text = out.split("\n1. ")[1].split("\n2. ")[0]
    steps = re.findall(r"^ ?(\d+)\. (.+?): (d\w+) = .+    shape (\(.*\))$", text, re.M)
    assert [int(s[0]) for s in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 4, text
    assert steps[0][2] == "dL" and steps[-1][2:] == ("dh1_W", "(2, 16)")
    assert "relu" in [s[1] for s in steps] and "fused" in steps[1][1]
    assert "undoes the broadcast of h1_b" in out  # the bias's sum over the batch, named as such
    assert "\\begin{align}" in out and "\\end{align}" in out and "\\text{relu}" in out
    # with numbers: every step has a value, the NumPy by hand agrees, and so do central differences
    numeric = out.split("\n4. ")[1].split("\n5. ")[0]
    assert numeric.count("value: [") == len(steps)
    assert re.search(r"of shape \(8, 16\)", numeric)
    assert "by hand in NumPy: dout, dh1, dh1_z, dh1_W agree with the steps' values" in numeric
    error = re.search(r"central differences agree with dh1_W to a relative error of (\S+)", numeric)
    assert error and float(error.group(1)) < 1e-6, numeric
    unfused = out.split("\n5. ")[1]
    assert "log_softmax" in unfused and "fused" in unfused  # the loss's own steps, and how they agree


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn is not installed")
def test_digits():
    out = run_example("digits.py", "--epochs", "3")
    acc = re.search(r"test accuracy ([0-9.]+) \(test loss", out)
    assert acc, out
    assert float(acc.group(1)) > 0.8
    assert "training time" in out
    assert "confusion matrix" in out


def test_digits_without_sklearn():
    out = run_example("digits.py", "--epochs", "1", block="sklearn")
    assert "pip install scikit-learn" in out


def test_optimizers(tmp_path):
    png = tmp_path / "curves.png"
    out = run_example("optimizers.py", "--epochs", "2", "--out", str(png), cwd=tmp_path)
    for name in ("SGD", "momentum", "Nesterov", "Adagrad", "RMSprop", "Adam"):
        assert re.search(rf"^\| {name} \| `.*` \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$", out, re.M), name
    if HAS_MATPLOTLIB:
        assert f"loss curves saved to {png}" in out
        assert png.read_bytes().startswith(b"\x89PNG")
    else:
        assert "matplotlib is not installed" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == (["curves.png"] if HAS_MATPLOTLIB else [])


def test_optimizers_without_matplotlib(tmp_path):
    png = tmp_path / "curves.png"
    out = run_example("optimizers.py", "--epochs", "1", "--out", str(png), block="matplotlib")
    assert "matplotlib is not installed" in out
    assert "| Adam |" in out
    assert not png.exists()


def test_attention_quick():
    # 3 epochs of 4000 sequences (under a second of training): the block must already reverse held-out sequences
    out = run_example("attention.py", "--epochs", "3")
    acc = re.search(r"held-out token accuracy ([0-9.]+)", out)
    assert acc, out
    assert float(acc.group(1)) >= 0.95
    assert "4000 training and 1000 held-out sequences, inputs (4000, 10, 11) one-hot" in out
    # the query weights' gradient, derived step by step and as formulas, through softmax, the mask and the scaling
    derivation = out.split("(sd.explain):")[1].split("(sd.grad, printed with sd.to_text):")[0]
    assert "softmax: dmasked = attn * (dattn - sum(dattn * attn, axis=2, keepdims=True))" in derivation
    assert re.search(r"where, .*: dscores = where\(const\(10, 10\), dmasked, 0\)", derivation)
    assert re.search(r"dW_q = sum\(transpose\(h, \(0, 2, 1\)\) @ dq, axis=0\)\s+shape \(32, 32\)", derivation)
    assert "dW_q = sum(transpose(h, (0, 2, 1)) @ dq, axis=0)" in out.split("(sd.grad, printed with sd.to_text):")[1]
    # each answer position looks back at the mirrored digit, and the causal mask gives the future no weight
    rows = re.findall(r"position (\d) \(answers b\d\) looks at position (\d) .* weight on later positions (\S+)", out)
    assert [(int(t), int(s)) for t, s, _ in rows] == [(5, 4), (6, 3), (7, 2), (8, 1), (9, 0)], out
    assert all(float(w) == 0.0 for _, _, w in rows)


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn is not installed (the digits data set ships with it)")
def test_digits_cnn(tmp_path):
    png = tmp_path / "filters.png"  # 12 epochs of the small CNN: about a second of training
    out = run_example("digits_cnn.py", "--png", str(png))
    acc = re.search(r"test accuracy ([0-9.]+) \(test loss", out)
    assert acc and float(acc.group(1)) >= 0.98, out
    assert "conv = relu(conv_z)\npool = max_pool2d(conv, 2)\nflat = reshape(pool, (-1, 256))" in out
    for line in (  # the layer-by-layer gradients, the convolution's and the pooling's as the textbook writes them
        "dpool = reshape(dflat, (-1, 4, 4, 16))",
        "dconv = max_pool2d_grad(conv, pool, dpool, 2)",
        'dconv_W = conv2d_filters(x, dconv_z, padding="same")',
        "dconv_b = sum(dconv_z, axis=(0, 1, 2))",
    ):
        assert f"\n{line}\n" in out, line
    assert png.exists() == HAS_MATPLOTLIB


def test_digits_cnn_without_sklearn():
    out = run_example("digits_cnn.py", "--epochs", "1", block="sklearn")
    assert "pip install scikit-learn" in out


HAS_DASK_ML = importlib.util.find_spec("dask_ml") is not None


@pytest.fixture(scope="module")
def distributed_quick() -> str:
    """The output of the Dask example's quick run (run once for the tests that read it)."""
    if importlib.util.find_spec("distributed") is None:
        pytest.skip('needs Dask: pip install ".[dask]"')
    return run_example("distributed_logistic.py", "--quick")


def test_distributed_logistic(distributed_quick):
    out = distributed_quick
    assert re.search(r"logistic regression \(L-BFGS, \d+ iterations\): test accuracy 0\.9\d", out), out
    assert re.search(r"symdiff MLP 20-32-1 .* training accuracy 0\.\d+, test accuracy 0\.\d+", out), out
    if not HAS_DASK_ML:
        assert 'dask-ml is not installed (pip install "symdiff[dask-ml]")' in out, out


@pytest.mark.skipif(not HAS_DASK_ML, reason='needs dask-ml: pip install ".[dask-ml]"')
def test_distributed_logistic_compares_with_dask_ml_on_the_same_objective(distributed_quick):
    out = distributed_quick
    ours = re.search(r"symdiff logistic regression .*: test accuracy (0\.\d+), objective ([0-9.]+), [0-9.]+ s", out)
    theirs = re.search(r"dask-ml LogisticRegression \(lbfgs, C=.*\): test accuracy (0\.\d+), objective ([0-9.]+)", out)
    assert ours and theirs, out
    assert abs(float(ours[1]) - float(theirs[1])) <= 0.005, out  # the same model, fitted alike
    assert abs(float(ours[2]) - float(theirs[2])) <= 1e-5, out  # the same optimum of the same objective
    assert re.search(r"dask-ml's wall time / symdiff's: \d+\.\d\d", out), out


def test_distributed_logistic_without_dask_says_how_to_install_it():
    out = run_example("distributed_logistic.py", "--quick", block="distributed")
    assert 'pip install "symdiff[dask]"' in out


def test_every_example_has_a_test_here():
    source = Path(__file__).read_text()
    missing = [p.name for p in sorted(EXAMPLES.glob("*.py")) if f'run_example("{p.name}"' not in source]
    assert not missing, f"examples without a smoke test: {missing}"
