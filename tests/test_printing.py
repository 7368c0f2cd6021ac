"""Readable formulas: exact text goldens, layout of named/shared nodes, LaTeX, and the SymPy conversion."""

from __future__ import annotations

import ast
import gc
import operator
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapecases import mlp
from test_conv import latex_examples as conv_latex_examples

import symdiff as sd
from symdiff.printing import to_text_many

ROOT = Path(__file__).resolve().parents[1]

a, b, c = sd.Param("a"), sd.Param("b"), sd.Param("c")
x = sd.Input("x", shape=(None, 8))
W = sd.Param("W", shape=(8, 4))
bias = sd.Param("bias", shape=(4,))


# -- exact text of small expressions ------------------------------------------------------------
TEXT_GOLDENS = [
    (lambda: a - (b - c), "a - (b - c)"),
    (lambda: (a - b) - c, "a - b - c"),
    (lambda: a + (b - c), "a + (b - c)"),
    (lambda: (a + b) * c, "(a + b) * c"),
    (lambda: a * (b + c), "a * (b + c)"),
    (lambda: a + b * c, "a + b * c"),
    (lambda: -(a**2), "-a**2"),
    (lambda: (-a) ** 2, "(-a)**2"),
    (lambda: (a + b) ** 2, "(a + b)**2"),
    (lambda: a / (b * c), "a / (b * c)"),
    (lambda: (a / b) * c, "a / b * c"),
    (lambda: a / b / c, "a / b / c"),
    (lambda: a ** (b**c), "a**b**c"),
    (lambda: (a**b) ** c, "(a**b)**c"),
    (lambda: (a * b) ** c, "(a * b)**c"),
    (lambda: -(a + b), "-(a + b)"),
    (lambda: a - (-b), "a - -b"),
    (lambda: a * (b > c), "a * (b > c)"),
    (lambda: sd.exp(a) * 2, "exp(a) * 2"),
    (lambda: 2 * a, "2 * a"),
    (lambda: sd.exp(-a), "exp(-a)"),
    (lambda: -sd.exp(a), "-exp(a)"),
    (lambda: sd.tanh(a + b), "tanh(a + b)"),
    (lambda: sd.where(a > 0, a, b), "where(a > 0, a, b)"),
    (lambda: x @ W + bias, "x @ W + bias"),
    (lambda: sd.relu(x @ W), "relu(x @ W)"),
    (lambda: x.T, "x.T"),
    (lambda: W.T @ x.T, "W.T @ x.T"),
    (lambda: (x @ W).T, "(x @ W).T"),
    (lambda: -x.T, "-x.T"),
    (lambda: x[:, 1:-1], "x[:, 1:-1]"),
    (lambda: x[:, ::2], "x[:, ::2]"),
    (lambda: x[1:3, 2], "x[1:3, 2]"),
    (lambda: x[0], "x[0]"),
    (lambda: sd.sum(x, axis=0), "sum(x, axis=0)"),
    (lambda: x.max(axis=1, keepdims=True), "max(x, axis=1, keepdims=True)"),
    (lambda: sd.softmax(x), "softmax(x)"),
]


@pytest.mark.parametrize("build, expected", TEXT_GOLDENS, ids=[g[1] for g in TEXT_GOLDENS])
def test_text_golden(build, expected):
    assert str(build()) == expected


def test_named_intermediate_gets_its_own_line():
    h = sd.tanh(x @ W + bias).named("h")
    assert str(h * 2) == "h = tanh(x @ W + bias)\nh * 2"
    assert str(h) == "h = tanh(x @ W + bias)"


def test_shared_subexpression_printed_once_as_a_named_line():
    s = sd.exp(a + b)
    lines = str(s * s + s).splitlines()
    assert len(lines) == 2, lines
    m = re.fullmatch(r"(\w+) = exp\(a \+ b\)", lines[0])
    assert m, lines
    name = m.group(1)
    assert name not in ("a", "b")
    assert lines[1] == f"{name} * {name} + {name}"


def test_shared_subexpression_across_outputs():
    s = sd.exp(a + b)
    text = to_text_many({"u": s * 2, "v": s + 1})
    lines = text.splitlines()
    assert text.count("exp(a + b)") == 1
    name = re.fullmatch(r"(\w+) = exp\(a \+ b\)", lines[0]).group(1)
    assert lines[1:] == [f"u = {name} * 2", f"v = {name} + 1"]


# -- minimal parentheses, checked on random arithmetic trees -------------------------------------
_VALS = {"a": 1.3, "b": 0.7, "c": 2.1}
_BIN = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_leaf = st.sampled_from([("sym", "a"), ("sym", "b"), ("sym", "c"), ("const", 2), ("const", 3)])
_trees = st.recursive(
    _leaf,
    lambda kids: st.one_of(
        st.tuples(st.sampled_from(sorted(_BIN)), kids, kids),
        st.tuples(st.just("neg"), kids),
        st.tuples(st.just("sq"), kids),
    ),
    max_leaves=8,
)


def _build(t, env):
    kind = t[0]
    if kind == "sym":
        return env[t[1]]
    if kind == "const":
        return t[1]
    if kind == "neg":
        return -_build(t[1], env)
    if kind == "sq":
        return _build(t[1], env) ** 2
    return _BIN[kind](_build(t[1], env), _build(t[2], env))


def _grouping_parens(text):
    """(open, close) index pairs of parentheses that group (not call parentheses)."""
    stack, pairs = [], []
    for i, ch in enumerate(text):
        if ch == "(":
            stack.append(i)
        elif ch == ")":
            j = stack.pop()
            if j == 0 or not (text[j - 1].isalnum() or text[j - 1] in "_."):
                pairs.append((j, i))
    return pairs


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(_trees)
def test_printed_arithmetic_is_python_with_minimal_parentheses(tree):
    try:
        expr = _build(tree, {"a": a, "b": b, "c": c})
        want = _build(tree, _VALS)
    except ZeroDivisionError:
        return
    if not isinstance(expr, sd.Expr):
        return
    lines = str(expr).splitlines()
    env = dict(_VALS)
    bodies = []
    for line in lines[:-1]:
        name, _, body = line.partition(" = ")
        env[name] = eval(body, {}, env)  # noqa: S307 - our own printed formula
        bodies.append(body)
    bodies.append(lines[-1])
    got = eval(lines[-1], {}, env)  # noqa: S307
    assert got == pytest.approx(want, rel=1e-12), lines
    for body in bodies:
        tree_dump = ast.dump(ast.parse(body, mode="eval"))
        for i, j in _grouping_parens(body):
            stripped = body[:i] + body[i + 1 : j] + body[j + 1 :]
            try:
                other = ast.dump(ast.parse(stripped, mode="eval"))
            except SyntaxError:
                continue
            assert other != tree_dump, f"redundant parentheses in {body!r}"


# -- the MLP golden -------------------------------------------------------------------------------
def build_mlp():
    loss, params = mlp()
    return loss, params, sd.grad(loss, params)


MLP_GRADIENTS = """\
z1 = x @ W1 + b1
h1 = relu(z1)
z2 = h1 @ W2 + b2
n = x.shape[0]
dz2 = (softmax(z2) - onehot(y, 10)) / n
dh1 = dz2 @ W2.T
dz1 = dh1 * (z1 > 0)
dW1 = x.T @ dz1
db1 = sum(dz1, axis=0)
dW2 = h1.T @ dz2
db2 = sum(dz2, axis=0)"""


def _mlp_text():
    _, params, grads = build_mlp()
    return to_text_many({f"d{p.label}": g for p, g in zip(params, grads)})


def test_mlp_gradients_golden():
    assert _mlp_text() == MLP_GRADIENTS


@pytest.mark.parametrize(
    "i, last",
    [(0, "dW1 = x.T @ dz1"), (1, "db1 = sum(dz1, axis=0)"), (2, "dW2 = h1.T @ dz2"), (3, "db2 = sum(dz2, axis=0)")],
)
def test_mlp_single_gradient_text(i, last):
    _, _, grads = build_mlp()
    lines = str(grads[i]).splitlines()
    assert lines[-1] == last
    assert "dz2 = (softmax(z2) - onehot(y, 10)) / n" in lines
    assert len(lines) == len(set(lines))


def test_mlp_loss_text():
    loss, _, _ = build_mlp()
    assert to_text_many({"loss": loss}).splitlines()[-1] == "loss = sum(-pick(log_softmax(z2), y)) / n"


def test_readme_single_layer_gradient():
    x = sd.Input("x", shape=(None, 64))
    y = sd.Input("y", shape=(None,), dtype="int64")
    W, b = sd.Param("W", shape=(64, 10)), sd.Param("b", shape=(10,))
    gW, gb = sd.grad(sd.softmax_cross_entropy(x @ W + b, y), [W, b])
    assert str(gW) == "n = x.shape[0]\ndW = x.T @ ((softmax(x @ W + b) - onehot(y, 10)) / n)"
    assert str(gb) == "n = x.shape[0]\ndb = sum((softmax(x @ W + b) - onehot(y, 10)) / n, axis=0)"


# -- closed forms of loss gradients ------------------------------------------------------------
def test_sigmoid_cross_entropy_gradient_closed_form():
    z, t = sd.Input("z", shape=(None,)), sd.Input("t", shape=(None,))
    assert str(sd.grad(sd.sigmoid_cross_entropy(z, t), z)) == "n = z.shape[0]\ndz = (sigmoid(z) - t) / n"


def test_sigmoid_cross_entropy_gradient_2d():
    z, t = sd.Input("z", shape=(None, 3)), sd.Input("t", shape=(None, 3))
    assert str(sd.grad(sd.sigmoid_cross_entropy(z, t), z)) == "n = z.shape[0]\ndz = (sigmoid(z) - t) / (3 * n)"


def test_mse_gradient_closed_form():
    z, t = sd.Input("z", shape=(None,)), sd.Input("t", shape=(None,))
    lines = str(sd.grad(sd.mse(z, t), z)).splitlines()
    assert lines[0] == "n = z.shape[0]"
    assert re.fullmatch(r"dz = 2(\.0)? \* \(z - t\) / n", lines[1]), lines


@pytest.mark.parametrize(
    "loss_fn, target, pattern",
    [
        (
            sd.softmax_cross_entropy,
            sd.Input("y", shape=(8,), dtype="int64"),
            r"dz = (\(softmax\(z\) - onehot\(y, 10\)\) / 8|0\.125 \* \(softmax\(z\) - onehot\(y, 10\)\))",
        ),
        (
            sd.sigmoid_cross_entropy,
            sd.Input("t", shape=(8, 10)),
            r"dz = (\(sigmoid\(z\) - t\) / 80|0\.0125 \* \(sigmoid\(z\) - t\))",
        ),
    ],
    ids=["softmax", "sigmoid"],
)
def test_closed_form_with_static_batch(loss_fn, target, pattern):
    """With a static batch length the closed form must survive (divided by the constant count)."""
    z = sd.Param("z", shape=(8, 10))
    text = str(sd.grad(loss_fn(z, target), z))
    assert re.fullmatch(pattern, text), text


# -- simplification identities -----------------------------------------------------------------
SIMPLIFY_TO_X = [
    ("x*1", lambda: x * 1),
    ("1*x", lambda: 1 * x),
    ("x*1.0", lambda: x * 1.0),
    ("x+0", lambda: x + 0),
    ("0+x", lambda: 0 + x),
    ("x-0", lambda: x - 0),
    ("x/1", lambda: x / 1),
    ("x**1", lambda: x**1),
    ("x.T.T", lambda: x.T.T),
    ("-(-x)", lambda: -(-x)),  # noqa: B002 - double negation on purpose
    ("transpose(transpose(x))", lambda: sd.transpose(sd.transpose(x))),
]


@pytest.mark.parametrize("build", [s[1] for s in SIMPLIFY_TO_X], ids=[s[0] for s in SIMPLIFY_TO_X])
def test_simplify_identity_to_symbol(build):
    e = build()
    assert e is not x  # the identity really is in the graph before simplification
    s = sd.simplify(e)
    assert s is x
    assert str(s) == "x"


@pytest.mark.parametrize(
    "build, sym, shape, dtype",
    [
        (lambda: x * 0, x, (None, 8), np.float64),
        (lambda: 0 * x, x, (None, 8), np.float64),
        (lambda: x - x, x, (None, 8), np.float64),
        (lambda: W * 0, W, (8, 4), np.float64),
        (lambda: sd.Input("f", shape=(None, 2), dtype="float32") * 0, None, (None, 2), np.float32),
        (lambda: sd.Input("k", shape=(3,), dtype="int64") * 0, None, (3,), np.int64),
    ],
    ids=["x*0", "0*x", "x-x", "W*0", "float32", "int64"],
)
def test_simplify_times_zero_keeps_shape_and_dtype(build, sym, shape, dtype):
    e = build()
    s = sd.simplify(e)
    assert s.shape == shape and s.dtype == dtype
    assert all(n.op != "mul" and n.op != "sub" for n in _nodes(s))
    if sym is not None:
        assert str(s) == f"broadcast_to(0{'.0' if dtype == np.float64 else ''}, {sym.label}.shape)"
    if None not in shape:
        out = sd.compile(s)(**{n.label: np.ones(n.shape, n.dtype) for n in _nodes(s) if n.is_symbol})
        np.testing.assert_array_equal(out, np.zeros(shape, dtype))
    else:
        out = sd.compile(s)(**{n.label: np.ones((5, *n.shape[1:]), n.dtype) for n in _nodes(s) if n.is_symbol})
        assert out.shape == (5, *shape[1:]) and out.dtype == dtype and not out.any()


def _nodes(e):
    from symdiff.graph import topo_order

    return topo_order([e])


def test_simplify_scalar_zero_and_constant_folding():
    assert str(sd.simplify(a * 0)) == "0.0"
    assert str(sd.simplify((x * 2) * 3)) == "6 * x"
    assert str(sd.simplify(sd.constant(2.0) * 3)) == "6.0"


# -- determinism ------------------------------------------------------------------------------
def test_printing_is_deterministic_within_a_process():
    first = _mlp_text()
    assert _mlp_text() == first
    gc.collect()  # the intern table is weak: the rebuilt graph is made of new nodes
    assert _mlp_text() == first


_SUBPROCESS_PRINT = """
import sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import test_printing as tp
sys.stdout.write(tp._mlp_text())
"""


@pytest.mark.parametrize("seed", ["1", "12345"])
def test_printing_is_deterministic_across_processes(seed):
    env = dict(os.environ, PYTHONHASHSEED=seed)
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_PRINT, str(ROOT), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == MLP_GRADIENTS


# -- LaTeX -----------------------------------------------------------------------------------
W1 = sd.Param("W1", shape=(8, 3))
b1 = sd.Param("b1", shape=(3,))


def test_latex_fraction():
    assert sd.latex(a / b) == r"\frac{a}{b}"


def test_latex_transpose():
    assert r"^\top" in sd.latex(W.T)


@pytest.mark.parametrize(
    "build", [lambda: x @ W1 + b1, lambda: W1.T, lambda: sd.tanh(x @ W1)], ids=["affine", "transpose", "tanh"]
)
def test_latex_subscripts_symbol_names(build):
    """Symbols named like ``W1`` read as ``W_{1}`` wherever they appear, not only on the left of a line."""
    text = sd.latex(build())
    assert "W_{1}" in text, text
    assert "W1" not in text, text


def test_latex_multiline_is_an_aligned_block():
    _, params, grads = build_mlp()
    text = sd.latex(grads[0])
    assert text.startswith("\\begin{aligned}\n") and text.endswith("\n\\end{aligned}")
    rows = text[len("\\begin{aligned}\n") : -len("\n\\end{aligned}")].split(" \\\\\n")
    assert len(rows) >= 5 and all("&" in r for r in rows)
    assert r"^\top" in text and r"\frac" in text
    assert "W_{1}" in text


def test_latex_dict_outputs():
    expected = "\\begin{aligned}\nu &= a \\cdot b \\\\\nv &= e^{a}\n\\end{aligned}"
    assert sd.latex({"u": a * b, "v": sd.exp(a)}) == expected


def test_repr_latex():
    r = (a / b)._repr_latex_()
    assert r.startswith("$") and r.endswith("$")
    assert r"\frac{a}{b}" in r
    _, _, grads = build_mlp()
    r = grads[0]._repr_latex_()
    assert r.startswith("$") and r.endswith("$") and "aligned" in r


# -- SymPy ----------------------------------------------------------------------------------
_sa, _sb, _sc = (sp.Symbol(n, real=True) for n in "abc")
TO_SYMPY = [
    (lambda: a * b + c, _sa * _sb + _sc),
    (lambda: sd.exp(a) / b, sp.exp(_sa) / _sb),
    (lambda: sd.sin(a) ** 2, sp.sin(_sa) ** 2),
    (lambda: sd.sigmoid(a), 1 / (1 + sp.exp(-_sa))),
    (lambda: sd.relu(a), sp.Max(_sa, 0)),
    (lambda: sd.tanh(a) - sd.log(b), sp.tanh(_sa) - sp.log(_sb)),
    (lambda: sd.sqrt(a * a + 1), sp.sqrt(_sa**2 + 1)),
    (lambda: sd.maximum(a, b), sp.Max(_sa, _sb)),
    (lambda: sd.abs(a - b), sp.Abs(_sa - _sb)),
    (lambda: a**b, _sa**_sb),
    (lambda: sd.softplus(a), sp.log(1 + sp.exp(_sa))),
    (lambda: -(a / (b * c)), -_sa / (_sb * _sc)),
    (lambda: sd.cos(a) * 3 - 1, 3 * sp.cos(_sa) - 1),
]


@pytest.mark.parametrize("build, want", TO_SYMPY, ids=[str(t[1]) for t in TO_SYMPY])
def test_to_sympy_matches_hand_built(build, want):
    got = sd.to_sympy(build())
    assert sp.simplify(got - want) == 0, got


def test_to_sympy_where_is_piecewise():
    got = sd.to_sympy(sd.where(a > b, a, b))
    assert got == sp.Piecewise((_sa, _sa > _sb), (_sb, True))


def test_to_sympy_of_a_gradient():
    g = sd.grad(sd.tanh(a * b), a)
    assert sp.simplify(sd.to_sympy(g) - sp.diff(sp.tanh(_sa * _sb), _sa)) == 0


@pytest.mark.parametrize(
    "build, needle",
    [
        (lambda: sd.sum(sd.Param("v", shape=(3,))), "'sum'"),
        (lambda: sd.softmax(sd.Param("M", shape=(2, 3))), "'softmax'"),
        (lambda: sd.relu(sd.Param("M", shape=(2, 3))), "'relu'"),
        (lambda: x * 2, "'x'"),
        (lambda: sd.Param("v", shape=(3,)) * np.ones(3), "constant"),
    ],
    ids=["sum", "softmax", "relu-matrix", "open-shape", "array-const"],
)
def test_to_sympy_unsupported(build, needle):
    with pytest.raises(sd.UnsupportedError, match=re.escape(needle)):
        sd.to_sympy(build())


# -- every printed gradient names its target; lists print; LaTeX means what the text means (issue 8) ----------
def test_printed_gradient_names_its_target_when_it_is_a_symbol_or_a_constant():
    a, p = sd.Input("a"), sd.Param("p")
    assert str(sd.grad(a * p, p)) == "dp = a"
    assert str(sd.grad(3 * p, p)) == "dp = 3.0"
    assert str(sd.grad(p, p)) == "dp = 1.0"
    assert sd.latex(sd.grad(a * p, p)) == "\\mathrm{dp} = a"
    h = sd.tanh(a).named("h")
    assert str(sd.grad(h * p, p)).splitlines()[-1] == "dp = h"


def test_a_gradient_label_costs_nothing_in_generated_code():
    a, p = sd.Input("a", shape=(3,)), sd.Param("p", shape=(3,))
    g = sd.grad(sd.sum(a * p), p)
    assert "astype" not in sd.codegen({"dp": g}, optimize=True)
    np.testing.assert_array_equal(sd.compile(g)(a=np.arange(3.0)), np.arange(3.0))


def test_second_and_third_derivatives_are_named_d2_d3():
    p = sd.Param("p")
    g1 = sd.grad(p**4, p)
    g2 = sd.grad(g1, p)
    assert str(g1).startswith("dp = ") and str(g2).startswith("d2p = ")
    assert str(sd.grad(g2, p)).splitlines()[-1].startswith("d3p = ")


def test_mixed_second_derivative_names_both_targets():
    xs, a = sd.Param("xs"), sd.Param("a")
    assert str(sd.grad(sd.grad(xs**2 * a, xs), a)) == "dxs_da = 2 * xs"
    assert str(sd.grad(sd.grad(xs**2 * a, a), xs)) == "da_dxs = 2 * xs"
    assert str(sd.grad(sd.grad(sd.grad(xs**3 * a, xs), xs), a)) == "d2xs_da = 6 * xs"
    assert str(sd.grad(sd.grad(sd.grad(xs**3 * a**2, xs), a), a)) == "dxs_d2a = 6 * xs**2"
    assert sd.latex(sd.grad(sd.grad(xs**2 * a, xs), a)).startswith(r"\mathrm{dxs}_{\mathrm{da}} = ")


def test_to_text_and_latex_accept_lists_and_tuples():
    a, p, q = sd.Input("a"), sd.Param("p"), sd.Param("q")
    gp, gq = sd.grad(a * p * sd.sin(q), [p, q])
    text = sd.to_text([gp, gq])
    assert text == sd.to_text((gp, gq))
    assert text.splitlines()[-2:] == ["dp = sin(q) * a", "dq = a * p * cos(q)"]
    assert "\\mathrm{dp} &= \\sin\\left(q\\right) \\cdot a" in sd.latex([gp, gq])
    with pytest.raises(TypeError, match="to_text takes an expression"):
        sd.to_text([gp, "dq"])


def _latex_examples():
    """Per op of the op table: nodes that differ only in that op's attributes (or one node)."""
    from symdiff.graph import make

    m, v, u = sd.Param("m", shape=(3, 4)), sd.Param("v", shape=(4,)), sd.Param("u", shape=(3,))
    t = sd.Param("t", shape=(2, 3, 4))
    s, r, lab = sd.Param("s"), sd.Param("r"), sd.Input("lab", shape=(3,), dtype="int64")
    k = sp.Symbol("k")
    return {
        **{  # sd.<public>(x) or sd.<public>(a, b) of an entry
            name: [getattr(sd, opdef.public or name)(*(s, r)[: len(opdef.vjp)])]
            for name, opdef in sd.ops.OPS.items()
            if opdef.doc
        },
        "abs": [sd.abs(s)], "add": [s + r], "sub": [s - r], "mul": [s * r], "div": [s / r], "pow": [s**r],
        "neg": [-s], "exp": [sd.exp(s)], "log": [sd.log(s)], "sqrt": [sd.sqrt(s)], "tanh": [sd.tanh(s)],
        "sin": [sd.sin(s)], "cos": [sd.cos(s)], "sign": [sd.sign(s)], "sigmoid": [sd.sigmoid(s)],
        "softplus": [sd.softplus(s)], "relu": [sd.relu(s)], "maximum": [sd.maximum(s, r)],
        "minimum": [sd.minimum(s, r)], "gt": [s > r], "ge": [s >= r], "lt": [s < r], "le": [s <= r],
        "eq": [sd.equal(s, r)], "where": [sd.where(s > 0, s, r)], "cast": [sd.astype(s, "float32")],
        "input": [lab], "param": [s], "const": [sd.constant(np.array([1.0, 2.0]))],
        "dim": [make("dim", (sd.Input("z", shape=(None,)),), {"axis": 0})], "matmul": [m @ v],
        "shape": [make("shape", (make("dim", (sd.Input("z", shape=(None,)),), {"axis": 0}),), {"shape": (None, 4)}),
                  make("shape", (), {"shape": (3, 4)})],
        "tensordot": [sd.tensordot(t, m, axes=((1, 2), (0, 1))), sd.tensordot(t, m, axes=((1,), (0,)))],
        "sum": [sd.sum(m, axis=0), sd.sum(m, axis=1)], "max": [sd.max(m, axis=0), sd.max(m, axis=1)],
        "logsumexp": [sd.logsumexp(m, axis=0), sd.logsumexp(m, axis=1)],
        "softmax": [sd.softmax(m, axis=0), sd.softmax(m, axis=1)],
        "log_softmax": [sd.log_softmax(m, axis=0), sd.log_softmax(m, axis=1)],
        "pick": [sd.pick(m, lab)], "onehot": [sd.onehot(lab, 4), sd.onehot(lab, 5)],
        "onehot_sub": [make("onehot_sub", (m, lab, s))],
        "getitem": [m[0], m[1], m[:, 0]], "scatter": [make("scatter", (v, m), {"index": (("int", 0),)}),
                                                       make("scatter", (v, m), {"index": (("int", 1),)})],
        "reshape": [m.reshape(4, 3), m.reshape(2, 6)], "transpose": [m.T, sd.transpose(t, (1, 0, 2))],
        "expand_dims": [sd.expand_dims(u, 0), sd.expand_dims(u, 1)],
        "squeeze": [sd.squeeze(sd.Param("c", shape=(1, 3, 1)), 0), sd.squeeze(sd.Param("c", shape=(1, 3, 1)), 2)],
        "broadcast_to": [sd.broadcast_to(v, (3, 4)), sd.broadcast_to(s, (2, 3)), sd.broadcast_to(1.0, (2, 3))],
        "broadcast_like": [make("broadcast_like", (v, m)), make("broadcast_like", (sd.constant(1.0), m))],
        "concatenate": [sd.concatenate([m, m], axis=0), sd.concatenate([m, m], axis=1)],
        "sympy_fn": [sd.from_sympy(k * sp.tanh(k), {k: s})],
        "inv": [sd.linalg.inv(m[:, :3])], "det": [sd.linalg.det(m[:, :3])], "solve": [sd.linalg.solve(m[:, :3], u)],
        "cofactor": [sd.linalg.cofactor(m[:, :3])],
        "signdet": [sd.linalg.slogdet(m[:, :3])[0]], "logabsdet": [sd.linalg.slogdet(m[:, :3])[1]],
        "norm": [sd.linalg.norm(m), sd.linalg.norm(m, axis=0), sd.linalg.norm(m, axis=1), sd.linalg.norm(v)],
        "clip": [sd.clip(s, 0, r)], "min": [sd.min(m, axis=0), sd.min(m, axis=1)],
        "var": [sd.var(m), sd.var(m, axis=0), sd.var(m, axis=0, ddof=1)], "std": [sd.std(m, axis=1), sd.std(m, ddof=1)],
        "argmax": [sd.argmax(m), sd.argmax(m, axis=1)], "argmin": [sd.argmin(m, axis=0), sd.argmin(m, axis=1)],
        "trace": [sd.trace(m)], "diag": [sd.diag(v)], "diagonal": [sd.diag(m)], "outer": [sd.outer(u, v)],
        "eye": [sd.eye(3), sd.eye(3, 4)],
        "take": [sd.take(m, lab), sd.take(m, lab, axis=1)],
        "scatter_add": [sd.scatter_add(m, lab, 5), sd.scatter_add(m, lab, 6)],
        "dropout_mask": [make("dropout_mask", (m,), {"rate": r, "seed": k}) for r, k in ((0.5, 1), (0.2, 1), (0.5, 2))],
        **_pool_and_norm_latex_examples(m),
        **conv_latex_examples(),
    }  # fmt: skip


def _pool_and_norm_latex_examples(m):
    """Issue 12: pooling and normalization."""
    from symdiff.graph import make

    p = sd.Param("p", shape=(2, 7, 7, 3))
    y, window = sd.max_pool2d(p, 2), {"size": (2, 2), "stride": (2, 2)}
    return {
        "max_pool2d": [sd.max_pool2d(p, 2), sd.max_pool2d(p, (2, 3), stride=1)],
        "avg_pool2d": [sd.avg_pool2d(p, 2), sd.avg_pool2d(p, 3, stride=2)],
        "max_pool2d_grad": [make("max_pool2d_grad", (p, y, y), window)],
        "max_pool2d_tangent": [make("max_pool2d_tangent", (p, y, p), window)],
        "avg_pool2d_grad": [make("avg_pool2d_grad", (y,), {"image": hw, **window}) for hw in ((6, 6), (7, 7))],
        "layer_norm": [sd.layer_norm(m), sd.layer_norm(m, axis=0), sd.layer_norm(m, eps=0.1)],
        "batch_norm": [sd.batch_norm(m), sd.batch_norm(m, axis=(0, 1))],
    }


# ops whose LaTeX may show only their argument: they change no element's value, nor the result's shape
LATEX_TRANSPARENT = {"cast"}


def test_latex_of_every_op_shows_the_op_and_its_attributes():
    examples = _latex_examples()
    assert set(examples) == set(sd.ops.OPS), "add the new op to _latex_examples"
    for op, nodes in examples.items():
        assert all(n.op == op for n in nodes), op
        latexes = [sd.latex(n) for n in nodes]
        assert all(latexes), op
        for n, tex in zip(nodes, latexes):
            if op not in LATEX_TRANSPARENT:  # the op must not vanish into one of its arguments
                assert all(tex != sd.latex(a) for a in n.args), (op, tex)
        texts = [sd.to_text(n) for n in nodes]  # attributes the text shows, the LaTeX shows too
        assert len(set(latexes)) == len(set(texts)), (op, texts, latexes)


def test_latex_shows_a_broadcast_and_the_shape_it_broadcasts_to():
    u, s = sd.Param("u", shape=(3,)), sd.Param("s")
    x, W = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 4))
    tex = sd.latex(sd.sum(sd.broadcast_to(u, (2, 3))))
    assert tex == r"\sum\left(\operatorname{broadcast}_{2 \times 3}\left(u\right)\right)"
    assert sd.latex(sd.broadcast_to(s, (2, 3))) == r"s\,\mathbf{1}_{2 \times 3}"
    tex = sd.latex(sd.grad(sd.sum(x @ W), W))
    assert tex.endswith(r"\mathrm{dW} &= {x}^\top \mathbf{1}_{n \times 4}" + "\n\\end{aligned}")


def test_latex_outer_product_is_not_an_elementwise_product_of_vectors():
    u, v = sd.Param("u", shape=(3,)), sd.Param("v", shape=(4,))
    tex = sd.latex(sd.expand_dims(u, 1) * sd.expand_dims(v, 0))
    assert tex != "u \\odot v" and "expand" in tex
    assert sd.latex(sd.tensordot(u, v, axes=0)) == "u \\otimes v"


def test_printing_two_different_symbols_of_one_name_is_refused():
    """Both would print as ``o_W``; the message says how they differ."""
    x = sd.Input("x", shape=(None, 2))
    loss = sd.sum(sd.dense(x, 2, "o"))
    with pytest.raises(sd.InputError, match=r"two different symbols are named 'o_W': .*\(init None\)"):
        sd.to_text([loss, sd.Param("o_W", shape=(2, 2))])


def test_gradient_that_is_a_symbol_named_like_the_gradient_gets_its_own_name():
    """d(x * dx)/dx is the param ``dx``: printing it bare would read as the gradient's name, not a symbol."""
    x, dx = sd.Param("x", shape=(3,)), sd.Param("dx", shape=(3,))
    assert sd.to_text(sd.grad(sd.sum(x * dx), x)) == "dx1 = dx"
    assert sd.to_text(sd.grad(sd.sum(x * dx), dx)) == "ddx = x"


def test_gradient_names_come_from_one_rule():
    """d<name> and d<k><name> are built and read back by symdiff.naming only: dW, d2x, and dxs_da."""
    from symdiff.naming import grad_name, grad_order

    assert [grad_name("W"), grad_name("x", 2), grad_name("x", 3)] == ["dW", "d2x", "d3x"]
    assert [grad_order("dW", "W"), grad_order("d2x", "x"), grad_order("dx", "W"), grad_order("W", "W")] == [1, 2, 0, 0]
    x = sd.Input("x", shape=())
    (g,) = sd.grad(sd.sin(x), [x])
    (g2,) = sd.grad(g, [x])
    assert (g.name, g2.name) == (grad_name("x"), grad_name("x", 2))


# -- one style for numbers: integral floats print as integers ---------------------------------------------
_xf, _xi = sd.Param("x", shape=(3,)), sd.Input("i", shape=(3,), dtype="int64")


@pytest.mark.parametrize(
    "build, text, tex",
    [
        (lambda: 2.0 * _xf, "2 * x", "2 \\cdot x"),
        (lambda: _xf**2.0, "x**2", "{x}^{2}"),
        (lambda: _xf / 4.0, "x / 4", "\\frac{x}{4}"),
        (lambda: 0.5 * _xf, "0.5 * x", "0.5 \\cdot x"),  # not integral: unchanged
        (lambda: 1e20 * _xf, "1e+20 * x", "1e+20 \\cdot x"),  # beyond 2**53: unchanged
        (lambda: _xf * -0.0, "x * -0.0", "x \\cdot -0.0"),  # the sign of zero is kept
    ],
)
def test_integral_float_constants_print_as_integers_in_text_and_latex(build, text, tex):
    e = build()
    assert sd.to_text(e) == text and sd.latex(e) == tex


@pytest.mark.parametrize(
    "build, text",
    [
        (lambda: sd.constant(3.0), "3.0"),  # the output itself: the literal is its dtype
        (lambda: sd.broadcast_to(1.0, (3,)), "broadcast_to(1.0, (3,))"),
        (lambda: _xi * 2.0, "i * 2.0"),  # i * 2 would be an integer product
    ],
)
def test_float_constant_keeps_its_point_where_the_literal_decides_the_dtype(build, text):
    assert sd.to_text(build()) == text


def test_generated_code_keeps_float_literals_where_text_prints_integers():
    assert "out = 2.0 * x" in sd.codegen(2.0 * _xf)


@pytest.mark.parametrize(
    "value, text, tex",
    [
        (np.eye(3), "eye(3)", "I_{3}"),
        (np.eye(3, dtype="float32"), "eye(3, dtype=float32)", "I_{3}"),
        (np.zeros((3, 3)), "broadcast_to(0.0, (3, 3))", "\\mathbf{0}_{3 \\times 3}"),
        (np.ones(12), "broadcast_to(1.0, (12,))", "\\mathbf{1}_{12}"),
        (np.arange(9.0).reshape(3, 3), "const(3, 3)", "C_{3\\times 3}"),  # no closed form: unchanged
        (np.eye(1), "[[1.0]]", "\\mathbf{1}_{1 \\times 1}"),  # small enough to list in text
        (24 * np.eye(2), "24 * eye(2)", "24 \\cdot I_{2}"),  # a scaled identity, small or not
        (np.eye(3, dtype="float32") / 4, "0.25 * eye(3, dtype=float32)", "0.25 \\cdot I_{3}"),
        (-2 * np.eye(3), "-2 * eye(3)", "-2 \\cdot I_{3}"),
    ],
)
def test_array_constant_prints_as_the_identity_or_fill_it_is(value, text, tex):
    c = sd.constant(value)
    assert sd.to_text(c) == text and sd.latex(c) == tex


def test_zero_and_identity_hessian_blocks_print_without_an_opaque_constant():
    x, y = sd.Param("x", shape=(3,)), sd.Param("y", shape=(3,))
    h = sd.hessian(sd.sum(x * y) + sd.sum(x**2), [x, y])
    assert sd.to_text([g for row in h for g in row]) == (
        "d2x = 2 * eye(3)\ndx_dy = eye(3)\ndy_dx = eye(3)\nd2y = broadcast_to(0.0, (3, 3))"
    )
