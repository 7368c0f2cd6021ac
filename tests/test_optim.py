"""Optimizers: generated updates agree with hand-computed steps of the standard update rules."""

from __future__ import annotations

import ast
import re
import sys

import numpy as np
import pytest

import symdiff as sd
from symdiff import optim

A = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
P0 = np.array([[0.2, 0.1, -0.3], [0.0, 0.4, 0.9]])


def quadratic():
    """loss = 0.5 * sum((p - a)**2): its gradient is g = p - a."""
    p = sd.Param("p", shape=(2, 3))
    a = sd.Input("a", shape=(2, 3))
    return 0.5 * sd.sum((p - a) ** 2)


def reference(name: str, lr: float, steps: int, **hp) -> np.ndarray:
    """The textbook update rules, written independently of symdiff."""
    p = P0.copy()
    v = np.zeros_like(p)
    m = np.zeros_like(p)
    for t in range(1, steps + 1):
        g = p - A
        if name == "sgd":
            p = p - lr * g
        elif name == "momentum":
            v = hp["mu"] * v - lr * g
            p = p + v
        elif name == "nesterov":
            v = hp["mu"] * v - lr * g
            p = p + hp["mu"] * v - lr * g
        elif name == "adagrad":
            v = v + g**2
            p = p - lr * g / (np.sqrt(v) + 1e-10)
        elif name == "rmsprop":
            v = hp["rho"] * v + (1 - hp["rho"]) * g**2
            p = p - lr * g / (np.sqrt(v) + 1e-8)
        elif name == "adam":
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g**2
            p = p - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return p


CASES = [
    ("sgd", optim.SGD(lr=0.1), {}),
    ("momentum", optim.SGD(lr=0.1, momentum=0.9), {"mu": 0.9}),
    ("nesterov", optim.SGD(lr=0.1, momentum=0.8, nesterov=True), {"mu": 0.8}),
    ("adagrad", optim.Adagrad(lr=0.1), {}),
    ("rmsprop", optim.RMSprop(lr=0.01, rho=0.9), {"rho": 0.9}),
    ("adam", optim.Adam(lr=0.05), {}),
]


@pytest.mark.parametrize(("name", "opt", "hp"), CASES, ids=[c[0] for c in CASES])
def test_generated_update_matches_hand_computed_steps(name, opt, hp) -> None:
    params = {"p": P0.copy()}
    arr = params["p"]
    step = sd.compile_step(quadratic(), params, opt)
    for _ in range(5):
        step(a=A)
    assert params["p"] is arr, "params are updated in place"
    np.testing.assert_allclose(params["p"], reference(name, opt.lr_at(1), 5, **hp), rtol=1e-12, atol=1e-14)
    assert step.t == 5


def test_first_sgd_step_by_hand() -> None:
    params = {"p": P0.copy()}
    loss = sd.compile_step(quadratic(), params, optim.SGD(lr=0.5))(a=A)
    assert loss == pytest.approx(0.5 * np.sum((P0 - A) ** 2))
    np.testing.assert_allclose(params["p"], P0 - 0.5 * (P0 - A))


@pytest.mark.parametrize(
    ("opt", "expected"),
    [
        (optim.SGD(lr=0.1), "p = p - lr * g"),
        (optim.SGD(lr=0.1, momentum=0.9), "v = 0.9 * v - lr * g\np = p + v"),
        # The update expressions printed by sd.to_text. They differ from the old hand-written strings where the
        # expression is written for speed: g * g rather than g**2 (np.multiply is ~4x faster than np.power),
        # 1 - 0.9 kept as written (0.1 is not its exact value), and Nesterov's and Adam's terms in the orders that
        # update in place with no scratch array (Adam's m moves toward g by 1 - 0.9, reading the old m once; its bias
        # corrections are scalar factors, lr / (1 - 0.9**t) applied last: one array operation less).
        (optim.SGD(lr=0.1, momentum=0.9, nesterov=True), "v = 0.9 * v - lr * g\np = p - lr * g + 0.9 * v"),
        (optim.Adagrad(), "G = G + g * g\np = p - lr * g / (sqrt(G) + 1e-10)"),
        (optim.RMSprop(rho=0.9), "s = 0.9 * s + (1 - 0.9) * g * g\np = p - lr * g / (sqrt(s) + 1e-08)"),
        (
            optim.Adam(),
            "m = g + 0.9 * (m - g)\nv = 0.999 * v + (1 - 0.999) * (g * g)\n"
            "p = p - lr / (1 - 0.9**t) * (m / (sqrt(v / (1 - 0.999**t)) + 1e-08))",
        ),
    ],
)
def test_each_optimizer_prints_its_rule(opt, expected) -> None:
    assert opt.formula() == expected


def test_learning_rate_schedules() -> None:
    s = optim.step_decay(1.0, drop=0.5, every=2)
    assert [s(t) for t in range(1, 6)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    e = optim.exponential_decay(1.0, rate=0.5, every=1)
    assert e(1) == 1.0 and e(3) == pytest.approx(0.25)
    params = {"p": P0.copy()}
    step = sd.compile_step(quadratic(), params, optim.SGD(lr=s))
    for _ in range(3):
        step(a=A)
    p = P0.copy()
    for t in range(1, 4):
        p = p - s(t) * (p - A)
    np.testing.assert_allclose(params["p"], p)


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": -1.0}, {"lr": 0.0}, {"lr": float("nan")}, {"lr": 0.1, "momentum": 1.0}, {"lr": 0.1, "nesterov": True}],
)
def test_bad_hyperparameters_are_refused(kwargs) -> None:
    with pytest.raises(ValueError, match="SGD"):
        optim.SGD(**kwargs)


def test_optimizer_by_name() -> None:
    assert isinstance(optim.get("adam", lr=0.1), optim.Adam)
    assert optim.get("nesterov").nesterov
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        optim.get("adamw")


def test_step_source_is_standalone_and_readable(tmp_path) -> None:
    x = sd.Input("x", shape=(None, 3))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.dense(x, 4, "l1", activation="relu")
    loss = sd.softmax_cross_entropy(sd.dense(h, 2, "out"), y)
    params = sd.init_params(loss, seed=0)
    readable = sd.codegen_step(loss, params, optim.SGD(lr=0.1, momentum=0.9), optimize=False)
    assert "dout_z" not in readable and "dl1_z = dl1 * (l1_z > 0)" in readable
    assert "dout_W *= lr" in readable and "v_out_W -= dout_W" in readable
    src = sd.codegen_step(loss, params, optim.SGD(lr=0.1, momentum=0.9))
    tree = ast.parse(src)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = [n.module if isinstance(n, ast.ImportFrom) else a.name for n in imports for a in n.names]
    assert "numpy" in modules and all(m == "numpy" or m in sys.stdlib_module_names for m in modules), modules
    assert "def train_step(params, state, lr, t, *, x, y):" in src
    assert "dl1_z = np.multiply(dl1, gt1, out=" in src  # planned: written into a dead buffer
    assert "v_out_W -= dout_W" in src and "dout_W *= lr" not in src  # lr is folded into the gradient
    assert "raise _FloatingPointError(" in src and "_workspace(" in src
    # run it without symdiff: the same update as compile_step
    ns: dict = {}
    exec(compile(src, "train_step.py", "exec"), ns)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(8, 3)), rng.integers(0, 2, size=8)
    p1 = {k: v.copy() for k, v in params.items()}
    state = {f"v_{k}": np.zeros_like(v) for k, v in params.items()}
    loss1 = ns["train_step"](p1, state, 0.1, 1, x=X, y=Y)
    p2 = {k: v.copy() for k, v in params.items()}
    loss2 = sd.compile_step(loss, p2, optim.SGD(lr=0.1, momentum=0.9))(x=X, y=Y)
    assert loss1 == pytest.approx(loss2)
    for k in params:
        np.testing.assert_allclose(p1[k], p2[k])


def test_float32_training_stays_float32() -> None:
    p = sd.Param("p", shape=(2, 3), dtype="float32")
    a = sd.Input("a", shape=(2, 3), dtype="float32")
    params = {"p": P0.astype(np.float32)}
    step = sd.compile_step(sd.mean((p - a) ** 2), params, optim.Adam(lr=0.1))
    step(a=A.astype(np.float32))
    assert params["p"].dtype == np.float32
    assert all(v.dtype == np.float32 for v in step.state.values())


@pytest.mark.parametrize("opt", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_scalar_params_train_with_every_optimizer(opt) -> None:
    """A 0-d gradient is a NumPy scalar, not an array: updates must not write into it."""
    w, b = sd.Param("w", shape=(3,)), sd.Param("b")
    x, t = sd.Input("x", shape=(None, 3)), sd.Input("t", shape=(None,))
    params = {"w": np.zeros(3), "b": np.zeros(())}
    step = sd.compile_step(sd.mse(x @ w + b, t), params, opt)
    X = np.random.default_rng(0).normal(size=(16, 3))
    first = step(x=X, t=X @ [1.0, 2.0, 3.0] + 0.5)
    for _ in range(20):
        last = step(x=X, t=X @ [1.0, 2.0, 3.0] + 0.5)
    assert params["b"].shape == () and last < first


def test_guard_can_be_dropped_for_benchmarks_and_changes_nothing_else() -> None:
    p1, p2 = {"p": P0.copy()}, {"p": P0.copy()}
    guarded = sd.compile_step(quadratic(), p1, optim.Adam(lr=0.05))
    bare = sd.compile_step(quadratic(), p2, optim.Adam(lr=0.05), guard=False)
    assert "raise _FloatingPointError(" in guarded.source and "FloatingPointError" not in bare.source
    for _ in range(3):
        assert guarded(a=A) == bare(a=A)
    np.testing.assert_array_equal(p1["p"], p2["p"])


@pytest.mark.parametrize("optimize", [True, False])
@pytest.mark.parametrize("opt", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_a_step_never_writes_into_the_callers_data(opt, optimize) -> None:
    """dW = x.T is a view of the caller's input: the update must not use it as scratch."""
    x = sd.Input("x", shape=(3, 2))
    W = sd.Param("W", shape=(2, 3))
    X = np.arange(6.0).reshape(3, 2)
    before = X.copy()
    sd.compile_step(sd.sum(W * x.T), {"W": np.ones((2, 3))}, opt, optimize=optimize)(x=X)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("optimize", [True, False])
def test_gradients_that_are_other_params_are_read_before_any_update(optimize) -> None:
    W, V = sd.Param("W", shape=(2,)), sd.Param("V", shape=(2,))
    p = {"W": np.array([1.0, 2.0]), "V": np.array([3.0, 4.0])}
    sd.compile_step(sd.sum(W * V), p, optim.SGD(lr=0.5), optimize=optimize)()
    np.testing.assert_allclose(p["W"], [1 - 0.5 * 3, 2 - 0.5 * 4])
    np.testing.assert_allclose(p["V"], [3 - 0.5 * 1, 4 - 0.5 * 2])


def test_a_gradient_equal_to_the_learning_rate_compiles() -> None:
    c, x = sd.Param("c"), sd.Input("x", shape=(None, 3))
    params = {"c": np.array(0.5)}
    sd.compile_step(sd.mean(x) + c, params, optim.SGD(lr=0.1))(x=np.ones((2, 3)))
    assert params["c"] == pytest.approx(0.4)


@pytest.mark.parametrize("opt", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_a_warm_step_allocates_no_parameter_sized_array(opt) -> None:
    """Issue 3: the update adds no full-size temporary copies (buffers are kept between calls)."""
    import tracemalloc

    W = sd.Param("W", shape=(300, 300))
    x, t = sd.Input("x", shape=(None, 300)), sd.Input("t", shape=(None, 300))
    params = {"W": np.zeros((300, 300))}
    step = sd.compile_step(sd.mse(x @ W, t), params, opt)
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(4, 300)), rng.normal(size=(4, 300))
    step(x=X, t=T)
    step(x=X, t=T)  # warm: workspaces and scratch buffers exist now
    tracemalloc.start()
    step(x=X, t=T)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < params["W"].nbytes / 4, f"a step allocated {peak} bytes; W is {params['W'].nbytes}"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adam"])
def test_a_schedule_returning_nan_inf_or_a_negative_rate_is_refused_before_any_update(name, bad) -> None:
    schedule = lambda t: 0.1 if t < 3 else bad  # noqa: E731
    opt = optim.get(name, lr=schedule)
    params = {"p": P0.copy()}
    step = sd.compile_step(quadratic(), params, opt)
    step(a=A)
    step(a=A)
    needle = rf"schedule returned {bad!r} at step 3; it must return a finite number"
    _assert_refused_step_changes_nothing(step, params, needle)


def test_a_schedule_may_decay_to_zero() -> None:
    params = {"p": P0.copy()}
    sd.compile_step(quadratic(), params, optim.Adam(lr=lambda t: 0.0))(a=A)
    np.testing.assert_array_equal(params["p"], P0)


def test_hyperparameters_reach_the_step_exactly_and_print_readably() -> None:
    b2 = 1 - 1e-13
    opt = optim.Adam(lr=0.05, beta2=b2)
    params = {"p": P0.copy()}
    step = sd.compile_step(quadratic(), params, opt)
    p, m, v = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
    for t in range(1, 4):
        step(a=A)
        g = p - A
        m = 0.9 * m + (1 - 0.9) * g
        v = b2 * v + (1 - b2) * g**2
        p = p - 0.05 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
    np.testing.assert_allclose(params["p"], p, rtol=1e-9)
    assert "v = 0.9999999999999 * v" in opt.formula() and "1**t" not in opt.formula()
    mu = 0.99999999999999
    params = {"p": P0.copy()}
    step = sd.compile_step(quadratic(), params, optim.SGD(lr=0.1, momentum=mu), optimize=False)
    step(a=A)
    step(a=A)
    g1 = P0 - A
    p1 = P0 - 0.1 * g1
    np.testing.assert_array_equal(params["p"], p1 + (mu * (-0.1 * g1) - 0.1 * (p1 - A)))
    assert f"*= {mu!r}" in step.source


@pytest.mark.parametrize("eps", [float("nan"), float("inf"), -1e-8])
@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
def test_an_eps_that_would_not_compile_or_would_divide_by_zero_is_refused(name, eps) -> None:
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0"):
        optim.get(name, eps=eps)


@pytest.mark.parametrize("kind", [np.float16, np.float32, np.float64, np.longdouble, float, int])
def test_numpy_real_scalars_are_accepted_for_every_float_hyperparameter(kind) -> None:
    half = kind(1) / kind(2) if kind is not int else 1
    opts = [
        optim.SGD(lr=half, momentum=kind(0)),
        optim.SGD(lr=half, momentum=half if kind is not int else 0, nesterov=kind is not int),
        optim.Adagrad(lr=half, eps=kind(0)),
        optim.RMSprop(lr=half, rho=kind(0), eps=kind(0)),
        optim.Adam(lr=half, beta1=kind(0), beta2=kind(0), eps=kind(0)),
    ]
    for opt in opts:
        values = [opt.lr, *(v for k, v in opt.hyper().items() if k != "nesterov")]
        assert all(type(v) is float for v in values), (opt, [type(v) for v in values])
        sd.compile_step(quadratic(), {"p": P0.copy()}, opt)(a=A)


@pytest.mark.parametrize(
    ("make", "name", "value"),
    [
        (lambda v: optim.SGD(lr=v), "lr", True),
        (lambda v: optim.SGD(lr=v), "lr", np.float32(-1)),
        (lambda v: optim.SGD(lr=v), "lr", "0.1"),
        (lambda v: optim.SGD(lr=v), "lr", np.complex128(1)),
        (lambda v: optim.SGD(momentum=v), "momentum", np.float32(1)),
        (lambda v: optim.SGD(momentum=v), "momentum", np.True_),
        (lambda v: optim.RMSprop(rho=v), "rho", np.longdouble(1.5)),
        (lambda v: optim.Adam(beta1=v), "beta1", False),
        (lambda v: optim.Adam(beta2=v), "beta2", np.float64(-0.1)),
        (lambda v: optim.Adagrad(eps=v), "eps", np.float32("nan")),
    ],
)
def test_a_bad_hyperparameter_is_an_input_error_naming_it_and_its_value(make, name, value) -> None:
    with pytest.raises(sd.InputError, match=rf"{name} must be .*, got {re.escape(repr(value))}$"):
        make(value)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adam"])
def test_a_constant_rate_of_zero_is_refused_saying_why_while_a_schedule_may_reach_zero(name) -> None:
    with pytest.raises(sd.InputError, match=r"lr must be .*\(a constant 0 trains nothing; a schedule may return 0\)"):
        optim.get(name, lr=0.0)
    params = {"p": P0.copy()}
    step = sd.compile_step(quadratic(), params, optim.get(name, lr=lambda t: 0.0))
    step(a=A)
    np.testing.assert_array_equal(params["p"], P0)
    assert step.t == 1


@pytest.mark.parametrize("bad", [None, "x", "0.1", np.array([0.1, 0.2]), np.array([]), True, 1j, [0.1]])
def test_a_schedule_returning_a_non_number_is_an_input_error_naming_step_and_value_before_any_update(bad) -> None:
    params = {"p": P0.copy()}
    step = sd.compile_step(quadratic(), params, optim.Adam(lr=lambda t: 0.1 if t < 2 else bad))
    step(a=A)
    needle = rf"schedule returned {re.escape(repr(bad))} at step 2; it must return"
    _assert_refused_step_changes_nothing(step, params, needle)


def _assert_refused_step_changes_nothing(step, params, match: str) -> None:
    """The next step is an InputError matching ``match`` and leaves params, state and the step counter as they were."""
    before, t = {k: v.copy() for k, v in [*params.items(), *step.state.items()]}, step.t
    with pytest.raises(sd.InputError, match=match):
        step(a=A)
    for k, v in [*params.items(), *step.state.items()]:
        np.testing.assert_array_equal(v, before[k])
    assert step.t == t


@pytest.mark.parametrize("good", [np.float32(0.25), np.array(0.25), np.array([0.25]), 1, np.int64(1)])
def test_a_schedule_may_return_numpy_scalars_and_one_element_arrays(good) -> None:
    params = {"p": P0.copy()}
    opt = optim.SGD(lr=lambda t: good)
    assert type(opt.lr_at(1)) is float and opt.lr_at(1) == float(np.asarray(good).item())
    sd.compile_step(quadratic(), params, opt)(a=A)
    np.testing.assert_allclose(params["p"], P0 - float(np.asarray(good).item()) * (P0 - A))


@pytest.mark.parametrize(
    "make",
    [
        lambda: optim.SGD(lr=10**400),
        lambda: optim.SGD(lr=0.1, momentum=10**400),
        lambda: optim.Adam(beta2=-(10**400)),
        lambda: optim.RMSprop(eps=10**400),
        lambda: optim.step_decay(10**400),
    ],
    ids=["lr", "momentum", "beta2", "eps", "schedule-lr"],
)
def test_huge_python_ints_as_hyperparameters_are_input_errors_not_overflow(make) -> None:
    with pytest.raises(sd.InputError, match=r"must be .*got -?1000.*\.\.\."):
        make()


def test_a_schedule_returning_a_huge_python_int_is_an_input_error_before_any_update() -> None:
    p = sd.Param("p", shape=(2,))
    params = {"p": np.ones(2)}
    step = sd.compile_step(sd.sum(p**2), params, optim.Adam(lr=lambda t: 10**400))
    with pytest.raises(sd.InputError, match="schedule returned 1000.* at step 1"):
        step()
    assert step.t == 0 and (params["p"] == 1).all()


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: optim.step_decay(0.1, 0.5, every=0), "step_decay: every must be an int >= 1"),
        (lambda: optim.step_decay(0.1, 0.5, every=2.5), "step_decay: every must be an int >= 1"),
        (lambda: optim.exponential_decay(0.1, 0.5, every=-1), "exponential_decay: every must be an int >= 1"),
        (lambda: optim.step_decay("a", 0.5, 1), "step_decay: lr must be a finite number > 0"),
        (lambda: optim.step_decay(-0.1, 0.5, 10), "step_decay: lr must be a finite number > 0"),
        (lambda: optim.step_decay(0.1, -0.5, 1), r"step_decay: drop must be a number in \(0, 1\]"),
        (lambda: optim.exponential_decay(0.1, float("nan")), r"exponential_decay: rate must be a number in \(0, 1\]"),
        (lambda: optim.exponential_decay(float("inf")), "exponential_decay: lr must be a finite number > 0"),
    ],
)
def test_built_in_schedules_check_their_arguments_when_built(make, needle) -> None:
    with pytest.raises(sd.InputError, match=needle):
        make()


def test_a_schedule_returning_np_ma_masked_is_refused_before_any_update() -> None:
    p = sd.Param("p", shape=(2,))
    params = {"p": np.ones(2)}
    step = sd.compile_step(sd.sum(p**2), params, optim.Adam(lr=lambda t: np.ma.masked))
    with pytest.raises(sd.InputError, match="schedule returned masked at step 1"):
        step()
    assert step.t == 0 and (params["p"] == 1).all()


@pytest.mark.parametrize("lr", [np.array(0.1), np.array([0.1]), np.float32(0.1)], ids=["0-d", "1-element", "f32"])
def test_a_constant_rate_given_as_a_one_element_array_is_accepted_like_a_schedules_value(lr) -> None:
    opt = optim.Adam(lr=lr)
    assert type(opt.lr) is float and opt.lr == float(np.float32(0.1) if lr.dtype == np.float32 else 0.1)
    assert repr(opt).startswith("Adam(lr=0.1")


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_nesterov_must_be_a_bool(bad) -> None:
    with pytest.raises(sd.InputError, match="SGD: nesterov must be True or False"):
        optim.SGD(lr=0.1, momentum=0.9, nesterov=bad)
    assert optim.SGD(lr=0.1, momentum=0.9, nesterov=np.bool_(True)).nesterov is True


def reference_state(name: str, lr: float, steps: int, **hp) -> dict[str, np.ndarray]:
    """The param and every state slot after ``steps`` textbook updates (the slots as the optimizer names them)."""
    p, slots = P0.copy(), {}
    for t in range(1, steps + 1):
        g = p - A
        if name in ("momentum", "nesterov"):
            v = hp["mu"] * slots.get("v", 0.0) - lr * g
            p = p + (v if name == "momentum" else hp["mu"] * v - lr * g)
            slots = {"v": v}
        elif name == "adagrad":
            slots = {"G": slots.get("G", 0.0) + g**2}
            p = p - lr * g / (np.sqrt(slots["G"]) + 1e-10)
        elif name == "rmsprop":
            slots = {"s": hp["rho"] * slots.get("s", 0.0) + (1 - hp["rho"]) * g**2}
            p = p - lr * g / (np.sqrt(slots["s"]) + 1e-8)
        elif name == "adam":
            slots = {"m": 0.9 * slots.get("m", 0.0) + 0.1 * g, "v": 0.999 * slots.get("v", 0.0) + 0.001 * g**2}
            p = p - lr * (slots["m"] / (1 - 0.9**t)) / (np.sqrt(slots["v"] / (1 - 0.999**t)) + 1e-8)
        else:
            p = p - lr * g
    return {"p": p, **{f"{s}_p": value for s, value in slots.items()}}


@pytest.mark.parametrize("optimize", [True, False], ids=["lr-folded", "lr-symbol"])
@pytest.mark.parametrize(("name", "opt", "hp"), CASES, ids=[c[0] for c in CASES])
def test_update_expressions_run_through_the_step_match_numpy_for_params_and_state(name, opt, hp, optimize) -> None:
    params = {"p": P0.copy()}
    step = sd.compile_step(quadratic(), params, opt, optimize=optimize)
    arrays = {"p": params["p"], **step.state}
    for _ in range(6):
        step(a=A)
    want = reference_state(name, opt.lr_at(1), 6, **hp)
    assert sorted(step.state) == sorted(k for k in want if k != "p")  # checkpoint keys: <slot>_<param>
    for key, value in {"p": params["p"], **step.state}.items():
        assert value is arrays[key], f"{key} is updated in place"
        np.testing.assert_allclose(value, want[key], rtol=1e-12, atol=1e-14, err_msg=key)


class DecayedSGD(optim.Optimizer):
    """SGD with weight decay, written as a user would: a learning rate, a factor and one update expression."""

    def __init__(self, lr: float = 0.1, wd: float = 0.01) -> None:
        super().__init__(lr)
        self.wd = wd

    def update(self, p, g, state, lr, t):
        return {"p": p - lr * (g + self.wd * p)}


def test_a_five_line_custom_optimizer_trains_through_fit_like_its_numpy_rule() -> None:
    x = sd.Input("x", shape=(None, 3))
    y = sd.Input("y", shape=(None,))
    w = sd.Param("w", shape=(3,))
    loss = sd.mean((x @ w - y) ** 2)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=20)
    params = {"w": np.zeros(3)}
    hist = sd.fit(
        loss, params, {"x": X, "y": Y}, optimizer=DecayedSGD(lr=0.1, wd=0.5), batch_size=None, epochs=30, progress=False
    )
    w_ref = np.zeros(3)
    for _ in range(30):
        g = 2 * X.T @ (X @ w_ref - Y) / len(Y)
        w_ref = w_ref - 0.1 * (g + 0.5 * w_ref)
    np.testing.assert_allclose(params["w"], w_ref, rtol=1e-10)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert DecayedSGD(lr=0.1, wd=0.5).formula() == "p = p - lr * (g + 0.5 * p)"


_CODE_IN_A_STRING = re.compile(r"\bnp\.|\bout=|[-+*/]= |\b_scratch\b")


def _code_strings(source: str) -> list[str]:
    """String literals (f-string parts included) of ``source`` that hold NumPy code: ``np.``, ``out=``, an
    augmented assignment or the old scratch kernel."""
    parts = [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return [s for s in parts if _CODE_IN_A_STRING.search(s)]


def test_optimizers_hold_no_generated_code_strings() -> None:
    # the check catches what the hand-written updates looked like ...
    old = 'def code(p, g, v, mu):\n    return [f"{v} *= {mu}", f"{v} -= {g}", f"np.multiply({v}, {mu}, out={g})"]\n'
    assert _code_strings(old) == [" *= ", " -= ", "np.multiply(", ", out="]
    # ... and optim.py has none: its rules are expressions, compiled by the step's code generator
    source = open(optim.__file__, encoding="utf-8").read()
    assert _code_strings(source) == []
    assert not hasattr(optim.Optimizer, "code") and "UpdateCode" not in source


class _Returns(optim.Optimizer):
    slots = ("v",)

    def __init__(self, news) -> None:
        super().__init__(0.1)
        self.news = news

    def update(self, p, g, state, lr, t):
        return self.news(p, g, state)


@pytest.mark.parametrize(
    ("news", "error", "match"),
    [
        (lambda p, g, s: {"v": s["v"] - g}, TypeError, "new param under 'p'"),
        (lambda p, g, s: {"w": g, "p": p - g}, ValueError, "'w', which is neither 'p' nor a slot"),
        (lambda p, g, s: {"p": sd.sum(p - g)}, TypeError, "new 'p' must be an expression shaped"),
    ],
    ids=["no-p", "unknown-slot", "wrong-shape"],
)
def test_an_update_rule_returning_the_wrong_values_is_refused_naming_them(news, error, match) -> None:
    with pytest.raises(error, match=match):
        sd.compile_step(quadratic(), {"p": P0.copy()}, _Returns(news))
