"""The generated training step off the happy path: user names, the divergence guard, threads."""

from __future__ import annotations

import builtins
import dis
import threading
import types

import numpy as np
import pytest

import symdiff as sd
from symdiff import optim

OPTIMIZERS = {
    "sgd": lambda: optim.SGD(lr=0.1),
    "momentum": lambda: optim.SGD(lr=0.1, momentum=0.9),
    "nesterov": lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
    "adagrad": lambda: optim.Adagrad(lr=0.1),
    "rmsprop": lambda: optim.RMSprop(lr=0.01),
    "adam": lambda: optim.Adam(lr=0.05),
}
# Every name a step gives its own locals for param W: optimizer slots, update scratch, gradient copies.
LOCAL_NAMES = ["m_W", "v_W", "G_W", "s_W", "tmp_W", "dW", "dW_copy"]


def _train_pair(first: str, second: str, opt: optim.Optimizer, optimize: bool) -> dict[str, np.ndarray]:
    """Params ``first`` and ``second`` of a small regression, after five steps; ``second`` is also a gradient."""
    x = sd.Input("x", shape=(None, 3))
    y = sd.Input("y", shape=(None,))
    W, M = sd.Param(first, shape=(3,)), sd.Param(second, shape=(3,))
    loss = sd.mean((x @ W + sd.tanh(x @ M) - y) ** 2) + sd.sum(W * M)
    rng = np.random.default_rng(0)
    params = {first: rng.normal(size=3), second: rng.normal(size=3)}
    step = sd.compile_step(loss, params, opt, optimize=optimize)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=8)
    for _ in range(5):
        step(x=X, y=Y)
    return params


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "readable"])
@pytest.mark.parametrize("other", LOCAL_NAMES)
@pytest.mark.parametrize("opt", list(OPTIMIZERS), ids=list(OPTIMIZERS))
def test_a_param_named_like_another_params_optimizer_state_trains_like_a_renamed_one(opt, other, optimize) -> None:
    got = _train_pair("W", other, OPTIMIZERS[opt](), optimize)
    want = _train_pair("W", "Q", OPTIMIZERS[opt](), optimize)
    np.testing.assert_array_equal(got["W"], want["W"])
    np.testing.assert_array_equal(got[other], want["Q"])


def test_symbols_named_self_or_after_builtins_do_not_break_a_step_or_its_guard() -> None:
    me = sd.Input("self", shape=(None, 3))
    names = ["FloatingPointError", "len", "float", "isinstance", "np_all"]
    ws = [sd.Param(n, shape=(3,)) for n in names]
    loss = sd.mean(sum(me @ w for w in ws) ** 2)
    params = {n: np.full(3, 0.1) for n in names}
    step = sd.compile_step(loss, params, optim.Adam(lr=0.01))
    assert np.isfinite(step(self=np.ones((4, 3))))
    assert step.t == 1
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(FloatingPointError, match="not finite: loss, dFloatingPointError, dlen"):
        step(self=np.full((4, 3), np.inf))
    for k, v in params.items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "readable"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS), ids=list(OPTIMIZERS))
def test_generated_steps_load_no_builtin_name_a_symbol_could_shadow(opt, optimize) -> None:
    x, y = sd.Input("x", shape=(None, 4)), sd.Input("y", shape=(None,), dtype="int64")
    h = sd.dense(x[:, 1:], 5, "h", activation="relu")
    loss = sd.softmax_cross_entropy(sd.dense(h, 3, "out"), y) + sd.mean(sd.logsumexp(x, axis=1))
    step = sd.compile_step(loss, sd.init_params(loss), OPTIMIZERS[opt](), optimize=optimize)

    def loaded(code: types.CodeType) -> set[str]:
        names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
        return names.union(*(loaded(c) for c in code.co_consts if isinstance(c, types.CodeType)))

    assert not loaded(step.fn.__code__) & set(dir(builtins))


@pytest.mark.parametrize(("dtype", "big"), [("float32", 1e20), ("float16", 300.0)])
def test_large_finite_gradients_are_not_divergence(dtype, big) -> None:
    W = sd.Param("W", shape=(3, 2), dtype=dtype)
    x = sd.Input("x", shape=(None, 3), dtype=dtype)
    params = {"W": np.zeros((3, 2), dtype=dtype)}
    step = sd.compile_step(sd.mean(sd.tanh(x @ W)), params, optim.Adam())  # Adam sees the raw gradient
    with np.errstate(over="ignore"):  # the cheap screen overflows; the exact test behind it does not
        loss = step(x=np.full((2, 3), big, dtype=dtype))
    assert loss == 0.0 and step.t == 1
    assert np.all(np.isfinite(params["W"]))


def test_a_diverged_step_names_exactly_the_non_finite_arrays() -> None:
    W, b = sd.Param("W", shape=(3, 2)), sd.Param("b", shape=(2,))
    x = sd.Input("x", shape=(None, 3))
    params = {"W": np.ones((3, 2)), "b": np.zeros(2)}
    step = sd.compile_step(sd.mean(sd.tanh(x @ W + b)), params, optim.Adam())
    with np.errstate(invalid="ignore"), pytest.raises(FloatingPointError, match=r"^not finite: dW$"):
        step.fn(params, step.state, 0.1, 1, x=np.array([[np.inf, 0.0, 0.0]]))  # tanh saturates: loss, db finite
    with np.errstate(invalid="ignore"), pytest.raises(sd.DivergenceError, match=r"diverged, not finite: dW; ") as e:
        step(x=np.array([[np.inf, 0.0, 0.0]]))
    assert e.value.found == "not finite: dW"
    assert step.t == 0 and (params["W"] == 1).all()


@pytest.mark.parametrize("optimize", [True, False])
def test_a_diverging_train_step_call_raises_divergence_error_like_fit_and_changes_nothing(optimize) -> None:
    p = sd.Param("p", shape=(2,))
    x = sd.Input("x", shape=(None, 2))
    params = {"p": np.array([1.0, 2.0])}
    step = sd.compile_step(sd.mean(x @ p), params, optim.Adam(lr=0.1), optimize=optimize)
    step(x=np.ones((3, 2)))
    before = {k: v.copy() for k, v in [*params.items(), *step.state.items()]}
    with np.errstate(all="ignore"), pytest.raises(sd.DivergenceError) as info:
        step(x=np.full((3, 2), np.inf))
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, sd.SymdiffError)
    assert str(info.value) == (
        "training step 2 diverged, not finite: loss, dp; the params and the optimizer state are unchanged"
    )
    with np.errstate(all="ignore"), pytest.raises(sd.DivergenceError, match="training step 2 diverged"):
        step.run(step.check({"x": np.full((3, 2), np.nan)}))
    for k, v in [*params.items(), *step.state.items()]:
        np.testing.assert_array_equal(v, before[k])
    assert step.t == 1
    with np.errstate(all="raise"), pytest.raises(FloatingPointError, match="overflow") as info:  # NumPy's own
        sd.compile_step(sd.sum(sd.exp(x @ p)), {"p": np.full(2, 1e3)})(x=np.ones((1, 2)))
    assert not isinstance(info.value, sd.DivergenceError)


def test_a_step_shared_between_threads_returns_each_callers_loss_and_counts_every_step() -> None:
    x = sd.Input("x", shape=(None, 64))
    W = sd.Param("W", shape=(64, 64))
    params = {"W": np.random.default_rng(1).normal(size=(64, 64)) / 8}
    # A schedule of 0 keeps the params still, so every batch has one known loss.
    step = sd.compile_step(sd.mean(sd.tanh(x @ W) ** 2), params, optim.SGD(lr=lambda t: 0.0))
    batches = [np.random.default_rng(i).normal(size=(256, 64)) for i in range(4)]
    want = [float(np.mean(np.tanh(b @ params["W"]) ** 2)) for b in batches]
    calls, wrong = 40, []

    def work(i: int) -> None:
        for _ in range(calls):
            got = step(x=batches[i])
            if got != pytest.approx(want[i], rel=1e-12):
                wrong.append((i, got))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not wrong
    assert step.t == calls * len(batches)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_params_are_refused_once_at_setup_naming_the_param(bad) -> None:
    W, b = sd.Param("W", shape=(2,)), sd.Param("b", shape=())
    x = sd.Input("x", shape=(None, 2))
    loss = sd.mean(x @ W + b)
    params = {"W": np.array([1.0, bad]), "b": np.zeros(())}
    with pytest.raises(sd.InputError, match=r"param 'W' holds nan or inf values.*start from finite values"):
        sd.compile_step(loss, params)
    with pytest.raises(sd.InputError, match=r"param 'W' holds nan or inf values"):
        sd.fit(loss, params, {"x": np.ones((4, 2))}, progress=False)


def test_masked_or_subclassed_params_are_refused_in_compile_step_and_fit() -> None:
    W = sd.Param("W", shape=(2,))
    x = sd.Input("x", shape=(None, 2))
    loss = sd.mean(x @ W)
    masked = {"W": np.ma.array([1.0, 2.0], mask=[False, True])}
    needle = r"param 'W' is a masked array with masked entries.*value\.filled\(0\.0\)\) or drop the masked rows"
    with pytest.raises(sd.InputError, match=needle):
        sd.compile_step(loss, masked)
    with pytest.raises(sd.InputError, match=needle):
        sd.fit(loss, masked, {"x": np.ones((4, 2))}, progress=False)
    assert masked["W"].data[1] == 2.0 and masked["W"].mask[1]
    with pytest.raises(sd.DTypeError, match=r"param 'W' is a MaskedArray, not a plain ndarray"):
        sd.compile_step(loss, {"W": np.ma.array([1.0, 2.0])})  # nothing masked yet, but np.ma ops would mask


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # lr * dW overflows on purpose
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_an_overflowing_lr_times_gradient_is_blamed_on_the_product_and_the_rate_not_on_the_gradient(momentum) -> None:
    w = sd.Param("w", shape=(2,))
    params = {"w": np.full(2, 1e10)}
    step = sd.compile_step(sd.sum(w**2), params, optim.SGD(lr=1e300, momentum=momentum))
    with pytest.raises(sd.DivergenceError, match=r"^training step 1 diverged, not finite: lr \* dw \(lr=1e\+300\); "):
        step()
    assert step.t == 0 and (params["w"] == 1e10).all()


def _quadratic_step(opt: optim.Optimizer, shape=(4, 3)):
    """A step of loss 0.5 * sum((p - a)**2) (gradient p - a), its params and its target ``a``."""
    p, a = sd.Param("p", shape=shape), sd.Input("a", shape=shape)
    rng = np.random.default_rng(1)
    params = {"p": rng.normal(size=shape)}
    return sd.compile_step(0.5 * sd.sum((p - a) ** 2), params, opt), params, rng.normal(size=shape)


class ReadsOldAndNewVelocity(optim.Optimizer):
    """Nesterov written as p - mu * v + (1 + mu) * v_new: the param's update reads both the old velocity and the
    new one, so the new one cannot go straight into v's array before the param is done."""

    slots = ("v",)

    def update(self, p, g, state, lr, t):
        v = 0.9 * state["v"] - lr * g
        return {"v": v, "p": p - 0.9 * state["v"] + 1.9 * v}


class ReadsOldVelocityOnly(optim.Optimizer):
    """p moves by the old velocity, listed after v's update: the step must write p before it overwrites v."""

    slots = ("v",)

    def update(self, p, g, state, lr, t):
        return {"v": 0.9 * state["v"] - lr * g, "p": p + state["v"] - lr * g}


class Swaps(optim.Optimizer):
    """p and v trade values every step: each output is the other's old array."""

    slots = ("v",)

    def update(self, p, g, state, lr, t):
        return {"v": p, "p": state["v"]}


def _numpy_updates(rule: str, p: np.ndarray, a: np.ndarray, steps: int, lr: float = 0.1) -> tuple:
    v = np.zeros_like(p)
    for _ in range(steps):
        g = p - a
        if rule == "swap":
            p, v = v, p
            continue
        v_new = 0.9 * v - lr * g
        p = p - 0.9 * v + 1.9 * v_new if rule == "old-and-new" else p + v - lr * g
        v = v_new
    return p, v


@pytest.mark.parametrize(
    ("rule", "opt", "copies"),
    [
        ("old-and-new", ReadsOldAndNewVelocity(0.1), 1),
        ("old-only", ReadsOldVelocityOnly(0.1), 0),
        ("swap", Swaps(0.1), 2),
    ],
    ids=["old-and-new", "old-only", "swap"],
)
def test_an_update_reading_an_array_another_update_overwrites_reads_its_old_value(rule, opt, copies) -> None:
    step, params, a = _quadratic_step(opt)
    p0 = params["p"].copy()
    for _ in range(4):
        step(a=a)
    p, v = _numpy_updates(rule, p0, a, 4)
    np.testing.assert_allclose(params["p"], p, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(step.state["v_p"], v, rtol=1e-12, atol=1e-15)
    # ordered where an order exists (old-only: p first, no copy); else computed aside and copied at the end
    assert step.source.count("np.copyto(") == copies


@pytest.mark.parametrize("opt", list(OPTIMIZERS), ids=list(OPTIMIZERS))
def test_a_step_allocates_no_array_after_the_first(opt) -> None:
    import tracemalloc

    step, params, a = _quadratic_step(OPTIMIZERS[opt](), shape=(100, 100))  # 80 kB per array
    data = step.check({"a": a})
    step.run(data)  # the first step may allocate its buffers
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            step.run(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - before < 8000, f"{opt}: {peak - before} bytes allocated during a step (an array is 80000)"


def test_the_update_phase_is_generated_code_writing_into_the_param_and_state_arrays() -> None:
    step, _, _ = _quadratic_step(optim.Adam(lr=0.05))
    src = step.source
    update = src[src.index('= state["v_p"]') :].splitlines()[1:]
    # as the hand-written Adam did: the gradient's buffer holds g * g, then the denominator, then the step
    assert update[:7] == [
        f"    {line}"
        for line in ("m_p -= dp", "m_p *= 0.9", "m_p += dp", "v_p *= 0.999", "dp *= dp", "dp *= 1 - 0.999", "v_p += dp")
    ]
    assert "    p -= q2" in update and "    q2 *= lr / (1 - 0.9**t)" in update  # bias corrections: scalars of t
    assert "_buf" not in src and "np.copyto(" not in src  # no scratch array, nothing copied over
