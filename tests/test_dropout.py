"""sd.dropout: inverted dropout with a seeded mask drawn afresh on each training call, off in evaluation.

The mask is random, so it has no row in the central-difference table of test_ops_grad.py: these tests check the
scale, the seeding, that the gradient reads the forward pass's very mask, that evaluation leaves dropout out, and
that nothing (folding, hash-consing, the simplifier, the interpreter) turns a mask into a constant or merges two.
"""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.errors import DTypeError
from symdiff.graph import topo_order

RNG = np.random.default_rng(5)


def _masks(fn: sd.CompiledFunction, x: np.ndarray, calls: int = 3) -> list[np.ndarray]:
    """The kept-or-dropped pattern of ``calls`` successive calls of ``fn`` (whose output is dropout of x)."""
    return [fn(x=x) != 0 for _ in range(calls)]


def test_kept_values_are_scaled_by_one_over_one_minus_rate_and_the_rest_are_zero() -> None:
    x = sd.Input("x", shape=(None, 500))
    xv = RNG.uniform(0.5, 1.5, size=(400, 500))  # no zeros: a zero output is a dropped value
    for rate in (0.1, 0.5, 0.8):
        out = sd.compile(sd.dropout(x, rate, seed=1), training=True)(x=xv)
        kept = out != 0
        np.testing.assert_allclose(out[kept], xv[kept] / (1 - rate), rtol=1e-15)
        assert np.all(out[~kept] == 0)
        n = xv.size  # the kept fraction is binomial: within 5 standard deviations of 1 - rate
        assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)


def test_rate_zero_is_the_identity() -> None:
    x = sd.Input("x", shape=(3,))
    assert sd.dropout(x, 0) is x and sd.dropout(x, 0.0, seed=4) is x


def test_each_call_draws_a_fresh_mask_and_a_fresh_compile_repeats_the_sequence() -> None:
    x = sd.Input("x", shape=(None, 64))
    y = sd.dropout(x, 0.5, seed=7)
    xv = np.ones((8, 64))
    first = _masks(sd.compile(y, training=True), xv)
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    again = _masks(sd.compile(y, training=True), xv)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = _masks(sd.compile(sd.dropout(x, 0.5, seed=8), training=True), xv)
    assert not np.array_equal(first[0], other[0])
    # the same seed on another input of the same shape: the same masks (a mask is its seed's)
    same = _masks(sd.compile(sd.dropout(sd.Input("x", shape=(8, 64)), 0.5, seed=7), training=True), xv)
    assert all(np.array_equal(a, b) for a, b in zip(first, same))


def test_two_dropouts_without_a_seed_draw_different_masks_and_are_never_merged() -> None:
    x = sd.Input("x", shape=(None, 64))
    a, b = sd.dropout(x, 0.5), sd.dropout(x, 0.5)
    assert a is not b  # hash-consing does not make them one node
    masks = [n for n in topo_order([a, b]) if n.op == "dropout_mask"]
    assert len(masks) == 2 and masks[0].attrs["seed"] != masks[1].attrs["seed"]
    total = sd.simplify(a + b)  # nor does the simplifier (a + a would become 2 * a)
    assert len([n for n in topo_order([total]) if n.op == "dropout_mask"]) == 2
    f = sd.compile({"a": a, "b": b, "total": total}, training=True)
    out = f(x=np.ones((8, 64)))
    assert not np.array_equal(out["a"] != 0, out["b"] != 0)
    np.testing.assert_allclose(out["total"], out["a"] + out["b"], rtol=1e-15)
    # a seed of its own is part of the graph: a new compile of the same graph draws the same masks
    g = sd.compile({"a": a, "b": b}, training=True)(x=np.ones((8, 64)))
    np.testing.assert_array_equal(g["a"], out["a"])


def test_the_gradient_uses_the_forward_pass_mask_computed_once_per_call() -> None:
    x = sd.Input("x", shape=(None, 50))
    w = sd.Input("w", shape=(None, 50))
    rate = 0.3
    y = sd.dropout(sd.tanh(x), rate, seed=11)
    dx = sd.grad(sd.sum(y * w), x)
    f = sd.compile({"y": y, "dx": dx}, training=True)
    assert f.source.count("_dropout_mask(_rng") == 1  # one mask for the forward and the backward pass
    xv, wv = RNG.uniform(0.2, 1.0, size=(20, 50)), RNG.normal(size=(20, 50))
    for _ in range(3):
        out = f(x=xv, w=wv)
        keep = out["y"] != 0
        np.testing.assert_allclose(out["dx"], keep / (1 - rate) * wv * (1 - np.tanh(xv) ** 2), rtol=1e-14)
    text = sd.to_text({"y": y, "dx": dx})
    assert "mask1 = dropout_mask(tanh1.shape, rate=0.3, seed=11)" in text and "mask1" in text.splitlines()[-1]


def test_second_derivatives_see_the_mask_as_a_constant_factor() -> None:
    x = sd.Input("x", shape=(30,))
    y = sd.dropout(x, 0.5, seed=2)
    h = sd.grad(sd.sum(sd.grad(sd.sum(y**3), x)), x)  # d/dx sum(3 x**2 m**3) = 6 x m**3
    xv = RNG.uniform(0.5, 1.0, size=30)
    out = sd.compile({"y": y, "h": h}, training=True)(x=xv)
    mask = np.where(out["y"] != 0, 2.0, 0.0)
    np.testing.assert_allclose(out["h"], 6 * xv * mask**3, rtol=1e-14)


def test_forward_mode_multiplies_the_tangent_by_the_mask() -> None:
    x = sd.Input("x", shape=(40,))
    y = sd.dropout(sd.sin(x), 0.5, seed=3)
    v, xv = RNG.normal(size=40), RNG.uniform(0.5, 1.0, size=40)
    out = sd.compile({"y": y, "t": sd.jvp(y, x, v)}, training=True)(x=xv)
    np.testing.assert_allclose(out["t"], (out["y"] != 0) * 2.0 * v * np.cos(xv), rtol=1e-14)


def test_evaluation_leaves_dropout_out() -> None:
    x = sd.Input("x", shape=(None, 6))
    y = sd.dropout(sd.exp(x), 0.5, seed=1)
    dx = sd.grad(sd.sum(y), x)
    xv = RNG.normal(size=(4, 6))
    for optimize in (True, False):
        f = sd.compile({"y": y, "dx": dx}, optimize=optimize)
        out = f(x=xv)
        np.testing.assert_array_equal(out["y"], np.exp(xv))
        np.testing.assert_array_equal(out["dx"], np.exp(xv))
        assert "_dropout_mask" not in f.source and "default_rng" not in f.source
    assert sd.codegen(y) == sd.codegen(sd.exp(x)) and "default_rng" in sd.codegen(y, training=True)


def test_fit_trains_with_dropout_and_measures_without_it() -> None:
    x = sd.Input("x", shape=(None, 4))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.dropout(sd.dense(x, 16, "h", activation="relu"), 0.5, seed=0)
    loss = sd.softmax_cross_entropy(sd.dense(h, 2, "out"), y)
    xv = RNG.normal(size=(200, 4))
    data = {"x": xv, "y": (xv[:, 0] + xv[:, 1] > 0).astype(np.int64)}
    params = sd.init_params(loss)
    history = sd.fit(loss, params, data, optimizer=sd.optim.Adam(lr=0.02), epochs=40, batch_size=50, progress=False)
    measured = sd.evaluate(loss, params, data, metrics=["accuracy"])
    no_dropout = sd.softmax_cross_entropy(sd.dense(sd.dense(x, 16, "h", activation="relu"), 2, "out"), y)
    assert measured["loss"] == pytest.approx(sd.evaluate(no_dropout, params, data)["loss"], rel=1e-12)
    assert measured["accuracy"] > 0.9 and history.history["loss"][-1] < history.history["loss"][0]
    # the same seeds in a fresh run give the same training (shuffling and masks)
    again, fresh = sd.init_params(loss), sd.init_params(loss)
    for p in (again, fresh):
        sd.fit(loss, p, data, optimizer=sd.optim.Adam(lr=0.02), epochs=3, batch_size=50, progress=False)
    for k in again:
        np.testing.assert_array_equal(again[k], fresh[k])


def test_a_training_step_draws_its_mask_once_per_step() -> None:
    x = sd.Input("x", shape=(None, 5))
    loss = sd.mean(sd.dropout(x @ sd.Param("W", shape=(5, 3)), 0.5, seed=4) ** 2)
    params = {"W": np.ones((5, 3))}
    step = sd.compile_step(loss, params, sd.optim.SGD(lr=0.1))
    assert step.source.count("_dropout_mask(_rng") == 1
    f = sd.compile({"loss": loss, "dW": sd.grad(loss, sd.params(loss)[0])}, training=True)
    xv = RNG.normal(size=(6, 5))
    for _ in range(3):  # the step and a compiled function of the same graph draw the same sequence
        want = f(x=xv, W=params["W"])
        before = params["W"].copy()
        assert step(x=xv) == pytest.approx(float(want["loss"]), rel=1e-12)
        np.testing.assert_allclose(params["W"], before - 0.1 * want["dW"], rtol=1e-12)


def test_the_generated_module_keeps_its_generators_and_needs_only_numpy() -> None:
    x = sd.Input("x", shape=(None, 32))
    source = sd.codegen({"y": sd.dropout(x, 0.25, seed=9)}, name="drop", training=True)
    assert "_rng1 = np.random.default_rng(9)" in source and "symdiff" not in source.split('"""', 2)[2]
    lines = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert lines == ["import numpy as np"]
    runs = []
    for _ in range(2):
        namespace: dict = {}
        exec(source, namespace)  # noqa: S102 - generated by symdiff
        runs.append([namespace["drop"](x=np.ones((4, 32)))["y"] for _ in range(2)])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert not np.array_equal(runs[0][0], runs[0][1])


def test_folding_the_interpreter_and_the_simplifier_keep_the_mask_random() -> None:
    y = sd.dropout(np.ones((20, 20)), 0.5, seed=6)  # a constant operand: the mask is still drawn per call
    assert any(n.op == "dropout_mask" for n in topo_order([sd.simplify(y)]))  # ones * mask: the mask, not a constant
    f = sd.compile(y, training=True)
    first, second = f(), f()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(sd.testing.interpret(y, {}), first)  # the reference gives the first draw
    assert np.array_equal(sd.compile(y)(), np.ones((20, 20)))  # evaluation


def test_float32_dropout_keeps_its_dtype() -> None:
    x = sd.Input("x", shape=(10,), dtype="float32")
    y = sd.dropout(x, 0.5, seed=1)
    out = sd.compile(y, training=True)(x=np.ones(10, dtype=np.float32))
    assert y.dtype == np.float32 and out.dtype == np.float32 and set(np.unique(out)) <= {0.0, 2.0}


@pytest.mark.parametrize(
    ("rate", "seed", "error", "message"),
    [
        (1.0, None, ValueError, r"dropout: rate must be in \[0, 1\) \(the fraction dropped\), got 1.0"),
        (-0.1, None, ValueError, "got -0.1"),
        (float("nan"), None, ValueError, "got nan"),
        ("0.5", None, DTypeError, "dropout: rate must be a number"),
        (True, None, DTypeError, "got True"),
        (0.5, -1, ValueError, "dropout: seed must be a non-negative int or None, got -1"),
        (0.5, 1.5, ValueError, "got 1.5"),
    ],
)
def test_bad_rates_and_seeds_are_refused_clearly(rate, seed, error, message) -> None:
    with pytest.raises(error, match=message):
        sd.dropout(sd.Input("x", shape=(3,)), rate, seed=seed)


def test_dropout_of_integers_is_refused() -> None:
    with pytest.raises(DTypeError, match="dropout: x must have a float dtype, got int64"):
        sd.dropout(sd.Input("i", shape=(3,), dtype="int64"), 0.5)


def test_explain_lists_no_gradient_of_the_mask() -> None:
    """The mask reads only its argument's shape: the chain rule passes through x * mask to x, never into the mask."""
    x = sd.Param("x", shape=(4, 3))
    steps = sd.explain(sd.sum(sd.dropout(sd.tanh(x), 0.5, seed=1) ** 2), x)
    assert [s.formula for s in steps][-3:] == ["2 * dpow1 * prod1", "dprod1 * mask1", "dtanh1 * (1 - tanh1**2)"]
    assert steps.result is sd.grad(sd.sum(sd.dropout(sd.tanh(x), 0.5, seed=1) ** 2), x)


def _dropout_net():
    x, y = sd.Input("x", shape=(None, 4)), sd.Input("y", shape=(None,), dtype="int64")
    h = sd.dropout(sd.dense(x, 16, "h", activation="relu"), 0.5, seed=7)
    return sd.softmax_cross_entropy(sd.dense(h, 3, "out"), y)


def test_a_resumed_run_draws_the_masks_an_uninterrupted_run_draws(tmp_path) -> None:
    loss = _dropout_net()
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(40, 4)), "y": rng.integers(0, 3, size=40)}
    kw = {"optimizer": sd.optim.Adam(0.01), "batch_size": 8, "progress": False}
    full = sd.init_params(loss, seed=0)
    sd.fit(loss, full, data, epochs=3, checkpoint=str(tmp_path / "full.npz"), **kw)
    part = sd.init_params(loss, seed=0)
    sd.fit(loss, part, data, epochs=1, checkpoint=str(tmp_path / "part.npz"), **kw)  # then a new run resumes it
    resumed = sd.init_params(loss, seed=0)
    sd.fit(loss, resumed, data, epochs=3, checkpoint=str(tmp_path / "part.npz"), **kw)
    for k in full:
        np.testing.assert_array_equal(resumed[k], full[k])


def test_a_checkpoint_with_a_damaged_generator_state_changes_nothing(tmp_path) -> None:
    import json

    loss = _dropout_net()
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(16, 4)), "y": rng.integers(0, 3, size=16)}
    path = tmp_path / "run.npz"
    sd.fit(loss, sd.init_params(loss, seed=0), data, epochs=1, checkpoint=str(path), progress=False)
    saved = dict(np.load(path))
    meta = json.loads(str(saved["meta"]))
    (name,) = meta["generators"]
    meta["generators"][name]["state"] = "garbage"
    np.savez(path, **{**saved, "meta": np.array(json.dumps(meta))})
    params = sd.init_params(loss, seed=1)
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(sd.InputError, match=f"the state of generator '{name}' is invalid"):
        sd.fit(loss, params, data, epochs=2, checkpoint=str(path), progress=False)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
