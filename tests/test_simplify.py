"""The simplifier off the happy path: deep and wide graphs, extreme constants, bounded constant folding."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import symdiff as sd
from symdiff.simplify import Simplifier


def _tanh_chain(x: sd.Expr, n: int) -> sd.Expr:
    h = x
    for _ in range(n):
        h = sd.tanh(h)
    return h


# -- deep and wide graphs (no recursion limit) ------------------------------------------------------
def test_gradient_of_5000_tanh_chain_compiles_in_under_5_seconds():
    x = sd.Param("x", shape=(3,))
    start = time.process_time()  # CPU time: other processes on the machine do not count
    g = sd.grad(sd.sum(_tanh_chain(x, 5000)), x)
    f = sd.compile(g)
    elapsed = time.process_time() - start
    x0 = np.array([0.1, -0.2, 0.3])
    h, want = x0, np.ones(3)
    for _ in range(5000):
        h = np.tanh(h)
        want = want * (1 - h**2)
    np.testing.assert_allclose(f(x=x0), want, rtol=1e-12)
    assert elapsed < 5, f"5000-op chain took {elapsed:.1f} s of CPU time"


def test_500_residual_blocks_get_a_gradient_that_compiles():
    x = sd.Param("x", shape=(3,))
    h = x
    for _ in range(500):
        h = h + 0.1 * sd.tanh(h)
    g = sd.grad(sd.sum(h), x)
    x0 = np.array([0.1, -0.2, 0.3])
    hv, jac = x0, np.ones(3)
    for _ in range(500):
        jac = jac * (1 + 0.1 * (1 - np.tanh(hv) ** 2))
        hv = hv + 0.1 * np.tanh(hv)
    np.testing.assert_allclose(sd.compile(g)(x=x0), jac, rtol=1e-10)
    np.testing.assert_allclose(sd.compile(g, optimize=False)(x=x0), jac, rtol=1e-10)


def test_sum_of_600_sine_terms_gets_a_gradient_that_compiles():
    x = sd.Param("x", shape=(3,))
    loss = sd.sum(sum(sd.sin(k * x) for k in range(1, 601)))
    g = sd.grad(loss, x)
    x0 = np.array([0.1, -0.2, 0.3])
    want = sum(k * np.cos(k * x0) for k in range(1, 601))
    np.testing.assert_allclose(sd.compile(g)(x=x0), want, rtol=1e-9, atol=1e-9)
    assert sd.check_grad(loss, x, {"x": x0}) < 1e-5


def test_sum_of_a_long_chain_of_scalar_factors_gets_a_gradient():
    x, s = sd.Param("x", shape=(3,)), sd.Param("s")
    h = x
    for _ in range(1000):  # sum(h * s) tries sum(h) * s at every level: the tries nest, within a bound
        h = h * s
    gx, gs = sd.grad(sd.sum(h), [x, s])
    out = sd.compile({"gx": gx, "gs": gs})(x=np.array([0.1, 0.2, 0.3]), s=np.array(1.0005))
    np.testing.assert_allclose(out["gx"], 1.0005**1000)
    np.testing.assert_allclose(out["gs"], 0.6 * 1000 * 1.0005**999)


def test_simplifier_work_grows_linearly_with_depth(monkeypatch):
    calls = {"n": 0}
    apply = Simplifier._apply

    def counting(self, n):
        calls["n"] += 1
        return apply(self, n)

    monkeypatch.setattr(Simplifier, "_apply", counting)
    work = []
    for depth in (200, 400, 800):
        x = sd.Param("x", shape=(3,))
        calls["n"] = 0
        sd.grad(sd.sum(_tanh_chain(x, depth)), x)
        work.append(calls["n"])
    assert work[2] / work[1] < 2.2 and work[1] / work[0] < 2.2, work


def test_rewrite_cycle_in_extra_rules_terminates():
    x = sd.Input("x", shape=(3,))
    rules = {"sin": [lambda n, ctx: sd.cos(n.args[0])], "cos": [lambda n, ctx: sd.sin(n.args[0])]}
    out = sd.simplify(sd.sin(x), extra=rules)
    assert out.op in ("sin", "cos") and out.args[0] is x


def test_rules_get_the_running_simplifier_as_ctx():
    """A rule is called as ``rule(node, ctx)``; ``ctx.candidate`` simplifies a subgraph in the same run."""
    x = sd.Input("x", shape=(3,))
    contexts = []

    def sin_of_simplified_arg(n, ctx):
        contexts.append(ctx)
        inner = ctx.candidate(n.args[0] * 1)  # x * 1 -> x, memoized in this run
        return sd.cos(inner) if inner is x else None

    out = sd.simplify(sd.sin(x), extra={"sin": [sin_of_simplified_arg]})
    assert out is sd.cos(x)
    (ctx,) = contexts
    assert isinstance(ctx, Simplifier) and ctx.memo[id(x * 1)][1] is x


# -- float constants of any magnitude ---------------------------------------------------------------
@pytest.mark.parametrize("c", [1e-30, 3e-300, 1e-20, 2.0**-70, 5e-324, -1e-30, 1e30])
def test_float_constant_of_extreme_magnitude_stays_a_float(c):
    x, w = sd.Input("x", shape=(3,)), sd.Param("w", shape=(3,))
    g = sd.grad(sd.sum(x * w) * c, w)
    x0 = np.array([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(sd.compile(g)(x=x0), c * x0)
    np.testing.assert_array_equal(sd.compile(g, optimize=False)(x=x0), c * x0)


# -- threads ------------------------------------------------------------------------------------------
def test_simplifiers_in_two_threads_keep_their_own_rules():
    z, w, s = sd.Input("z", shape=(3,)), sd.Input("w", shape=(3,)), sd.Param("s")
    first_paused, second_started, first_done = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first_rule(n, ctx):  # pause the first simplifier until the second one runs
        first_paused.set()
        second_started.wait(10)

    def second_rule(n, ctx):  # the second simplifier's own rule records every node it is asked about
        seen.append(n)
        if len(seen) == 1:
            second_started.set()
            first_done.wait(10)

    expr = sd.sum(sd.exp(sd.tanh(z)) * s)  # sum(x * s) simplifies sum(x) on the side
    first = threading.Thread(target=lambda: sd.simplify(expr, extra={"tanh": [first_rule]}))
    second = threading.Thread(target=lambda: sd.simplify(sd.exp(w), extra={"exp": [second_rule]}))
    first.start()
    first_paused.wait(10)
    second.start()
    first.join(10)
    first_done.set()
    second.join(10)
    assert len(seen) == 1 and seen[0] is sd.exp(w)


# -- bounded constant folding and the exponent limit ----------------------------------------------------
_HUGE_POWER = """
import symdiff as sd
from symdiff.graph import constant, make
x = sd.Input("x", shape=(3,))
try:  # make, not sd.power (which refuses the exponent): the folding itself must also stay bounded
    sd.simplify(x * make("pow", (constant(3), constant(9223372036854775807))))
except OverflowError as exc:
    print("refused:", type(exc).__name__, isinstance(exc, sd.SymdiffError), exc)
"""


def test_folding_a_huge_integer_power_is_refused_without_computing_it():
    # in a subprocess with a deadline: computing 3 ** (2**63 - 1) exactly would never finish
    proc = subprocess.run([sys.executable, "-c", _HUGE_POWER], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "refused: ConstantOverflowError True pow: integer constants overflow int64 (3 ** 9223372036854775807" in (
        proc.stdout
    )


@pytest.mark.parametrize(
    "build, value",
    [
        (lambda: sd.power(sd.constant(3), sd.constant(2**62)), "4611686018427387904"),
        (lambda: sd.power(sd.constant(2.0), sd.constant(1e10)), "10000000000.0"),
        (lambda: sd.constant(3) ** sd.constant(-(2**63)), "-9223372036854775808"),
    ],
)
def test_constant_exponent_limit_applies_to_a_power_of_constants(build, value):
    with pytest.raises(sd.UnsupportedError, match="^power: the constant exponent " + re.escape(value) + " is too"):
        build()


def test_readable_codegen_never_writes_an_overflowing_power_of_integer_constants():
    x = sd.Param("x", shape=(3,))
    with pytest.raises(sd.UnsupportedError, match=r"pow: integer constants overflow int64 \(12157665459056928801") as e:
        sd.codegen(x * sd.power(sd.constant(3), sd.constant(40)), name="f")
    assert isinstance(e.value, OverflowError)  # callers that catch OverflowError keep working
    src = sd.codegen(x * sd.power(sd.constant(3), sd.constant(39)), name="f")  # 3**39 fits int64
    assert "x * 3**39" in src


@pytest.mark.parametrize(
    "build, hint",
    [
        (lambda x: x * sd.power(sd.constant(2), sd.constant(-1)), "write a float base, e.g. 2.0 ** -1"),
        (lambda x: x * sd.constant(2) ** -3, "write a float base, e.g. 2.0 ** -3"),
        (lambda x: sd.Input("k", shape=(3,), dtype="int64") ** -2, "write a float exponent, e.g. x ** -2.0"),
    ],
)
def test_integer_to_a_negative_integer_power_is_refused_when_built_with_a_hint(build, hint):
    x = sd.Param("x", shape=(3,))
    with pytest.raises(sd.DTypeError, match="^power: an integer to the negative integer power .*" + re.escape(hint)):
        build(x)
    np.testing.assert_allclose(sd.compile(x * sd.power(sd.constant(2.0), sd.constant(-1)))(x=np.ones(3)), 0.5)


def test_folding_the_int64_minimum_keeps_its_value():
    x = sd.Param("x", shape=(3,))
    for optimize in (True, False):
        out = sd.compile(x * sd.power(sd.constant(-2), sd.constant(63)), optimize=optimize)(x=np.ones(3))
        np.testing.assert_array_equal(out, np.full(3, float(-(2**63))))
    with pytest.raises(OverflowError) as info:
        sd.compile(x * sd.power(sd.constant(2), sd.constant(63)))
    assert isinstance(info.value, sd.SymdiffError)


@pytest.mark.parametrize(
    "build, value",
    [
        (lambda x: x**2000, "2000"),
        (lambda x: sd.power(x, 1e300), "1e+300"),
        (lambda x: x ** sd.power(10, 6), "1000000"),
        (lambda x: sd.power(x, np.array([2.0, 3.0, -5000.0])), "-5000.0"),
    ],
)
def test_constant_exponent_limit_applies_to_power_and_pow_operator(build, value):
    x = sd.Param("x", shape=(3,))
    with pytest.raises(
        sd.UnsupportedError, match="^power: the constant exponent " + re.escape(value) + " is too large"
    ):
        build(x)
    # at the limit, derivatives (whose exponents pass it: -1001, -1002) still build
    g2 = sd.grad(sd.sum(sd.grad(sd.sum(x**-1000), x)), x)
    np.testing.assert_allclose(sd.compile(g2)(x=np.ones(3)), 1000 * 1001)


# -- shapes come from the inputs' lengths, never from computing a product -------------------------------
def _mask(index):
    m = np.zeros((4, 10))
    m[index] = 1
    return m


@pytest.mark.parametrize(
    "build, text, mask",
    [
        (lambda x, W: sd.sum(x @ W), "dW = x.T @ broadcast_to(1.0, (n, 10))", _mask(np.s_[:])),
        (lambda x, W: sd.sum((x @ W).T), "dW = x.T @ broadcast_to(1.0, (n, 10))", _mask(np.s_[:])),
        (
            lambda x, W: sd.sum((x @ W)[:, 0]),
            "dW = x.T @ scatter(broadcast_to(1.0, (n,)), (n, 10), [:, 0])",
            _mask(np.s_[:, 0]),
        ),
        (
            lambda x, W: sd.sum((x @ W)[::-1, 2:5]),
            "dW = x.T @ scatter(broadcast_to(1.0, (n, 3)), (n, 10), [::-1, 2:5])",
            _mask(np.s_[:, 2:5]),
        ),
    ],
)
def test_gradient_reads_shapes_from_input_lengths_not_from_a_product(build, text, mask):
    x, W = sd.Input("x", shape=(None, 5)), sd.Param("W", shape=(5, 10))
    g = sd.grad(build(x, W), W)
    assert str(g) == "n = x.shape[0]\n" + text
    x0 = np.random.default_rng(0).normal(size=(4, 5))
    for optimize in (False, True):
        f = sd.compile(g, optimize=optimize)
        assert "@ W" not in f.source and f.inputs == ["x"], f.source  # x @ W is never computed
        np.testing.assert_allclose(f(x=x0), x0.T @ mask)


@pytest.mark.parametrize(
    "build, mask",
    [
        (lambda x, W: sd.sum((x @ W)[::2, ::-1]), lambda m: m[::2]),  # QA 26: this one asked for W
        (lambda x, W: sd.sum((x @ W)[1:]), lambda m: m[1:]),
        (lambda x, W: sd.sum((x @ W)[1:][::-2, 3]), lambda m: m[1:][::-2, 3]),
        (lambda x, W: sd.sum(sd.concatenate([x @ W, x @ sd.Param("V", shape=(5, 2))], axis=1)[1:]), lambda m: m[1:]),
        (lambda x, W: sd.sum(sd.reshape(x @ W, (-1, 2))), lambda m: m),
    ],
    ids=["step-slices", "slice", "slice-of-slice", "concatenate", "reshape"],
)
def test_gradient_through_sliced_concatenated_or_reshaped_product_needs_only_the_input(build, mask):
    x, W = sd.Input("x", shape=(None, 5)), sd.Param("W", shape=(5, 10))
    g = sd.grad(build(x, W), W)
    x0 = np.random.default_rng(0).normal(size=(5, 5))
    ones = np.zeros((5, 10))
    mask(ones)[...] = 1  # a view: the entries of x @ W that the loss sums
    for optimize in (False, True):
        f = sd.compile(g, optimize=optimize)
        assert "@ W" not in f.source and f.inputs == ["x"], f.source  # x @ W is never computed
        np.testing.assert_allclose(f(x=x0), x0.T @ ones)


def test_static_shape_of_a_product_is_written_out():
    x, W = sd.Input("x", shape=(8, 5)), sd.Param("W", shape=(5, 10))
    assert str(sd.grad(sd.sum(x @ W), W)) == "dW = x.T @ broadcast_to(1.0, (8, 10))"


def test_mean_count_through_a_slice_of_a_product_reads_the_input_slice():
    """n = (x @ W)[::-2].shape[0] would make the gradient compute x @ W (and need W) only to count rows."""
    x, W = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 4))
    g = sd.grad(sd.sum(sd.mean((x @ W)[::-2], axis=0)), W)
    text = sd.to_text(g)
    assert "n = x[::-2].shape[0]" in text and "x @ W" not in text
    f = sd.compile(g)
    assert f.inputs == ["x"]
    X = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(f(x=X), np.tile(X[::-2].mean(axis=0)[:, None], (1, 4)))


def test_lowering_rules_share_the_simplifier_rule_decorator():
    """simplify and lower register rewrites through one decorator; a table without element-wise rules refuses '*'."""
    from symdiff import lower
    from symdiff.simplify import RULES, rule_decorator

    assert lower.rule.__qualname__ == "rule_decorator.<locals>.rule"
    table: dict = {}
    add = rule_decorator(table)

    def swap(n, ctx):
        return None

    assert add("sin", "cos")(swap) is swap and table == {"sin": [swap], "cos": [swap]}
    with pytest.raises(ValueError, match="swap.*element-wise"):
        add("*")(swap)
    assert "softmax" in lower.RULES and "softmax" not in RULES  # lowering rewrites stay out of the simplifier's


# -- textbook rules (The Matrix Cookbook's forms) ----------------------------------------------------------
_u, _v = sd.Param("u", shape=(3,)), sd.Param("v", shape=(3,))
_M, _P = sd.Input("M", shape=(3, 3)), sd.Input("P", shape=(3, 3))
_s = sd.Param("s")
_I = sd.eye(3)
_Ic = sd.constant(np.eye(3))  # a constant that equals an identity counts as one


@pytest.mark.parametrize(
    "build, text",
    [
        (lambda: _I @ _M, "M"),
        (lambda: _M @ _Ic, "M"),
        (lambda: _Ic @ _u, "u"),
        (lambda: _u @ _I, "u"),
        (lambda: _I.T, "eye(3)"),
        (lambda: _Ic.T @ _M.T, "M.T"),
        (lambda: sd.sum(_M * _I), "trace(M)"),
        (lambda: sd.sum(_Ic * (_M @ _P)), "trace(M @ P)"),
        (lambda: sd.trace(_M.T @ _I), "trace(M)"),
        (lambda: _I * _u, "diag(u)"),
        (lambda: sd.expand_dims(_u, 1) * _I, "diag(u)"),
        (lambda: (2.0 * _I) * _u, "2 * diag(u)"),
        (lambda: sd.diag(_u).T, "diag(u)"),
        (lambda: _u * (_I - sd.expand_dims(_v, 1)), "diag(u) - outer(v, u)"),
        (lambda: (_Ic + _M) * _u, "diag(u) + u * M"),
        (lambda: sd.sum(sd.diag(_u), axis=0), "u"),
        (lambda: sd.sum(_I, axis=1), "[1.0, 1.0, 1.0]"),
        (lambda: sd.expand_dims(_u, -1) * sd.expand_dims(_v, 0), "outer(u, v)"),
        (lambda: sd.expand_dims(_v, 0) * sd.expand_dims(_u, 1), "outer(u, v)"),
        (lambda: sd.expand_dims(_u, 1) * _v, "outer(u, v)"),
        (lambda: sd.outer(_u, _v).T, "outer(v, u)"),
        (lambda: (_M + _M.T).T, "M + M.T"),
        (lambda: _M.T + _M, "M + M.T"),
        (lambda: (_M.T - 2 * sd.outer(_u, _v)).T, "M - 2 * outer(v, u)"),
        (lambda: (_M.T @ _P).T, "P.T @ M"),
        (lambda: sd.linalg.inv(_M).T, "inv(M.T)"),
        (lambda: _u @ _M.T, "M @ u"),
        (lambda: _M @ _u + _P @ _u, "(M + P) @ u"),
        (lambda: _u @ _M - _u @ _P, "u @ (M - P)"),
        (lambda: _u @ _M + _M @ _u, "(M + M.T) @ u"),
        (lambda: _P @ _u - _u @ _M, "(P - M.T) @ u"),
        (lambda: _M @ (2.0 * _u), "2 * (M @ u)"),
        (lambda: (3.0 * _u) @ _M, "3 * (u @ M)"),
        (lambda: 2.0 * _u / (2 * sd.sum(_v)), "u / sum(v)"),
        (lambda: 6.0 * _u / (2 * sd.sum(_v)), "3 * u / sum(v)"),
        (lambda: 2.0 * _u / (6 * sd.sum(_v)), "u / (3 * sum(v))"),
        (lambda: 2.0 * _u / (3 * sd.sum(_v)), "2 * u / (3 * sum(v))"),  # neither divides the other: kept
        (lambda: _s * _u + 3 * _s * _u, "4 * s * u"),
        (lambda: 3 * _u - _u, "2 * u"),
        (lambda: 2.5 * _u + 0.5 * _u, "3 * u"),
        (lambda: 2 * sd.linalg.norm(_u) * _v / sd.linalg.norm(_u), "2 * v"),
        (lambda: sd.linalg.norm(_u) * _v / sd.linalg.norm(_u), "v"),
    ],
)
def test_textbook_rule_rewrites_to_the_book_form_with_the_same_value(build, text):
    e = build()
    s = sd.simplify(e)
    assert sd.to_text(s) == text
    assert s.shape == e.shape and s.dtype == e.dtype
    rng = np.random.default_rng(0)
    vals = {"u": rng.normal(size=3), "v": rng.normal(size=3), "M": rng.normal(size=(3, 3))}
    vals.update(P=rng.normal(size=(3, 3)), s=np.float64(0.7))
    vals = {n.label: vals[n.label] for n in sd.graph.topo_order([e]) if n.is_symbol}
    want = sd.testing.interpret(e, vals)
    np.testing.assert_allclose(sd.testing.interpret(s, vals), want, rtol=1e-12)
    f = sd.compile(s)
    np.testing.assert_allclose(f(**{k: v for k, v in vals.items() if k in f.inputs}), want, rtol=1e-12)


def test_constant_folding_across_a_quotient_keeps_float32():
    u32, v32 = sd.Param("u", shape=(3,), dtype="float32"), sd.Param("v", dtype="float32")
    s = sd.simplify(6.0 * u32 / (2 * v32))
    assert sd.to_text(s) == "3 * u / v" and s.dtype == np.float32
    assert "3.0 * u / v" in sd.codegen(s)  # generated code keeps the float literal


def test_like_terms_of_integers_are_left_alone():
    """Collecting like terms is float algebra: integer terms (which may wrap) keep their form."""
    i = sd.Input("i", shape=(3,), dtype="int8")
    assert sd.to_text(sd.simplify(i + 3 * i)) == "i + 3 * i"


# -- constant factors across nested products and quotients; like terms across a chain of + and - -----------
_x = sd.Param("x", shape=(3,))
_ui, _vi = sd.Input("u", shape=(3,)), sd.Input("v", shape=(3,))
_X = sd.Input("X", shape=(3, 3))
_vp = sd.Input("vp", shape=(3,))
_x2 = sd.Param("x", shape=(2,))


@pytest.mark.parametrize(
    "build, text",
    [
        (lambda: sd.hessian(sd.sum(_x * _x) / 2, _x), "d2x = eye(3)"),
        (lambda: sd.grad(sd.sum(2.0 * _x * _ui / (2 * _vi)), _x), "dx = u / v"),
        (lambda: sd.hessian(sd.sum(_x * _x) + _x @ _X @ _x, _x), "d2x = X + X.T + 2 * eye(3)"),
        (
            lambda: sd.hessian(sd.sum(sd.hvp(sd.sum(_x**4), _x, _vp) ** 2), _vp),
            "pow1 = x**2\nd2vp = 288 * diag(pow1) * pow1",
        ),
        (lambda: sd.grad(sd.sum(sd.grad(sd.sum(sd.sin(_x) * _x), _x)), _x), "dx = 2 * cos(x) - x * sin(x)"),
        # whole numbers inside constants: diag(2 * diag(broadcast_to(12.0, (2, 2)))) before
        (lambda: sd.hessian(sd.sum(sd.hessian(sd.sum(_x2**4), _x2)), _x2), "d2x = 24 * eye(2)"),
        (lambda: sd.hessian(sd.sum(sd.diag(sd.hessian(sd.sum(_x2**4), _x2))), _x2), "d2x = 24 * eye(2)"),
    ],
)
def test_qa_derivatives_print_with_constants_folded_and_like_terms_collected(build, text):
    assert str(build()) == text


def _check_against_unsimplified(e: sd.Expr, s: sd.Expr, dtype: str) -> None:
    rng = np.random.default_rng(1)
    vals = {n.label: rng.normal(size=n.shape).astype(dtype) for n in sd.graph.topo_order([e]) if n.is_symbol}
    want = sd.testing.interpret(e, vals)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(sd.testing.interpret(s, vals), want, rtol=rtol)
    f = sd.compile(s)
    got = f(**{k: v for k, v in vals.items() if k in f.inputs})
    assert np.asarray(got).dtype == e.dtype
    np.testing.assert_allclose(got, want, rtol=rtol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "build, text",
    [
        # fold_nested_constant_factors
        (lambda u, v, M: 2 * (M / 2), "M"),
        (lambda u, v, M: 6 * (u / 3), "2 * u"),
        (lambda u, v, M: 2 * (u / 6), "u / 3"),
        (lambda u, v, M: 3 * (u / 2), "3 * (u / 2)"),  # neither divides the other: kept
        (lambda u, v, M: 2 * (u / (2 * v)), "u / v"),
        (lambda u, v, M: 6 * (u / (2 * v)), "3 * u / v"),
        (lambda u, v, M: 2 * (u / (6 * v)), "u / (3 * v)"),
        (lambda u, v, M: 3 * (96 * M * u * v), "288 * M * u * v"),
        # collect_like_terms
        (lambda u, v, M: u - v + u, "2 * u - v"),
        (lambda u, v, M: u + v + 3 * u, "4 * u + v"),
        (lambda u, v, M: M + M.T + u + u, "M + M.T + 2 * u"),
        (lambda u, v, M: u + v - u / 2, "u / 2 + v"),
        (lambda u, v, M: -u + v + u, "v"),
        (lambda u, v, M: u - (v - u), "2 * u - v"),
        # diag_textbook, diagonal_textbook
        (lambda u, v, M: sd.diag(3 * u), "3 * diag(u)"),
        (lambda u, v, M: sd.diag(sd.diag(M) * 2), "2 * diag(diag(M))"),
        (lambda u, v, M: sd.diag(2 * M), "2 * diag(M)"),
        (lambda u, v, M: sd.diag(sd.diag(u)), "u"),
        (lambda u, v, M: u * sd.diag(sd.eye(3, dtype=u.dtype)), "u"),
        (lambda u, v, M: sd.diag(sd.broadcast_to(sd.constant(np.asarray(2, M.dtype)), (3,))) + M, "2 * eye(3) + M"),
        (lambda u, v, M: sd.diag(sd.broadcast_to(sd.constant(np.asarray(1, M.dtype)), (3,))) @ M, "M"),
    ],
)
def test_constant_and_like_term_rule_keeps_value_and_dtype(build, text, dtype):
    u, v = sd.Param("u", shape=(3,), dtype=dtype), sd.Param("v", shape=(3,), dtype=dtype)
    M = sd.Input("M", shape=(3, 3), dtype=dtype)
    e = build(u, v, M)
    s = sd.simplify(e)
    assert sd.to_text(s) == text.replace("eye(3)", sd.to_text(sd.eye(3, dtype=dtype)))  # eye(3, dtype=float32)
    assert s.shape == e.shape and s.dtype == e.dtype
    _check_against_unsimplified(e, s, dtype)


def test_like_terms_in_a_chain_of_integers_are_left_alone():
    i, j = sd.Input("i", shape=(3,), dtype="int8"), sd.Input("j", shape=(3,), dtype="int8")
    assert sd.to_text(sd.simplify(i + j + i)) == "i + j + i"


def test_like_terms_do_not_collect_through_a_user_label():
    u, v = sd.Param("u", shape=(3,)), sd.Param("v", shape=(3,))
    h = (u + v).named("h")
    assert sd.to_text(sd.simplify(h + u)) == "h = u + v\nh + u"
