"""sd.take (NumPy's take: an embedding lookup), its gradient scatter_add, and the sd.embedding layer.

Values are compared with NumPy (``np.take``, ``np.add.at``) exactly, and gradients with central differences in
float64 to ``rtol=1e-9``: the losses here are linear in the table, so central differences are exact up to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.errors import DTypeError, ShapeError
from symdiff.ops.kernels import KERNELS

RNG = np.random.default_rng(12)

# (table shape, ids, axis): repeated ids, negative ids (counted from the end, as in NumPy), ids of 0, 1, 2 and 3 axes
CASES = [
    ((6, 3), np.array([1, 4, 1, 1, 0]), 0),
    ((6, 3), np.array([[5, 0], [2, 5], [-1, -6]]), 0),
    ((6,), np.array([[[3, 3]], [[0, 2]]]), 0),
    ((6, 3), np.array(4), 0),
    ((2, 5, 4), np.array([[0, 4, 4], [1, -2, 0]]), 1),
    ((2, 5, 4), np.array([3, 3, 0]), -1),
    ((3, 4), np.array([11, 0, 11]), None),
]
IDS = [f"{shape}-ids{ids.shape}-axis{axis}" for shape, ids, axis in CASES]


def _graph(shape, ids, axis):
    W = sd.Param("W", shape=shape)
    i = sd.Input("ids", shape=ids.shape, dtype=ids.dtype)
    return W, i, sd.take(W, i, axis=axis)


def _call(f: sd.CompiledFunction, **values: np.ndarray):
    """``f`` on the values it takes (a gradient linear in the table does not take the table)."""
    return f(**{k: v for k, v in values.items() if k in f.inputs})


def _numeric_grad(f, w: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    out = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        wp, wm = w.copy(), w.copy()
        wp[idx] += eps
        wm[idx] -= eps
        out[idx] = (f(wp) - f(wm)) / (2 * eps)
    return out


@pytest.mark.parametrize(("shape", "ids", "axis"), CASES, ids=IDS)
def test_take_matches_numpy_take_for_any_ids_shape_and_axis(shape, ids, axis) -> None:
    W, i, y = _graph(shape, ids, axis)
    w = RNG.normal(size=shape)
    want = np.take(w, ids, axis=axis)
    assert y.shape == want.shape and y.dtype == np.float64
    np.testing.assert_array_equal(sd.compile(y)(W=w, ids=ids), want)
    np.testing.assert_array_equal(sd.compile(y, optimize=False)(W=w, ids=ids), want)
    np.testing.assert_array_equal(sd.testing.interpret(y, {"W": w, "ids": ids}), want)


@pytest.mark.parametrize(("shape", "ids", "axis"), CASES, ids=IDS)
def test_take_gradient_is_a_scatter_add_matching_central_differences_and_np_add_at(shape, ids, axis) -> None:
    W, i, y = _graph(shape, ids, axis)
    c = RNG.normal(size=y.shape)
    loss = sd.sum(y * c)
    dW = sd.grad(loss, W)
    w = RNG.normal(size=shape)
    got = _call(sd.compile(dW), W=w, ids=ids)
    f = sd.compile(loss)
    np.testing.assert_allclose(got, _numeric_grad(lambda v: f(W=v, ids=ids), w), rtol=1e-9, atol=1e-12)
    # the independent form: np.add.at of the upstream gradient at the ids (on the flattened table for axis=None)
    flat = w.reshape(-1) if axis is None else w
    ax = 0 if axis is None else axis % w.ndim
    want = np.zeros_like(flat)
    np.add.at(want, (slice(None),) * ax + (ids,), c)
    np.testing.assert_allclose(got, want.reshape(shape), rtol=1e-12, atol=1e-15)
    assert "scatter_add(" in sd.to_text(dW)


def test_repeated_ids_accumulate_their_gradients() -> None:
    W = sd.Param("W", shape=(5, 2))
    ids = sd.Input("ids", shape=(None,), dtype="int64")
    g = np.arange(8.0).reshape(4, 2) + 1
    dW = sd.grad(sd.sum(sd.take(W, ids) * sd.Input("g", shape=(None, 2))), W)
    got = _call(sd.compile(dW), W=np.zeros((5, 2)), ids=np.array([1, 4, 1, 1]), g=g)
    want = np.zeros((5, 2))
    want[1] = g[0] + g[2] + g[3]
    want[4] = g[1]
    np.testing.assert_array_equal(got, want)


def test_the_gradient_prints_as_the_textbook_scatter_add_and_parses_back() -> None:
    W = sd.Param("W", shape=(10, 4))
    ids = sd.Input("ids", shape=(None, 3), dtype="int64")
    dy = sd.Input("dy", shape=(None, 3, 4))
    dW = sd.grad(sd.sum(sd.take(W, ids) * dy), W)
    assert sd.to_text(dW) == "dW = scatter_add(dy, ids, 10)"
    assert sd.parse("scatter_add(dy, ids, 10)", {"dy": dy, "ids": ids}) is dW.unnamed()
    V = sd.Param("V", shape=(2, 6, 3))
    dV = sd.grad(sd.sum(sd.take(V, sd.Input("j", shape=(4,), dtype="int64"), axis=1) ** 2), V)
    assert "scatter_add(" in sd.to_text(dV) and ", 6, axis=1)" in sd.to_text(dV)
    assert sd.to_text(sd.take(V, ids, axis=1)) == "take(V, ids, axis=1)"
    assert r"\operatorname{scatter\_add}_{10}" in sd.latex(dW)
    assert "scatter_add(·, ·, 10)" in sd.to_dot(sd.sum(sd.take(W, ids) * dy), wrt=[W])
    step = sd.explain(sd.sum(sd.take(W, ids) * dy), W)[-1]
    assert step.rule == "take" and step.formula == "scatter_add(dtake1, ids, 10)"


def test_the_vjp_of_scatter_add_is_take_so_second_derivatives_work() -> None:
    g = sd.Param("g", shape=(4, 3))
    ids = sd.constant(np.array([2, 0, 2, 1]))
    c = sd.Input("c", shape=(5, 3))
    assert sd.grad(sd.sum(sd.scatter_add(g, ids, 5) * c), g).unnamed() is sd.take(c, ids)
    W = sd.Param("W", shape=(5, 3))
    loss = sd.sum(sd.sin(sd.take(W, ids)) ** 2)
    values = {"W": RNG.normal(size=(5, 3))}
    v = RNG.normal(size=(5, 3))
    assert sd.check_grad(sd.sum(sd.grad(loss, W) * v), W, values) < 1e-7  # a Hessian-vector product


def test_forward_mode_and_jacobian_go_through_take_and_scatter_add() -> None:
    W = sd.Param("W", shape=(4, 2))
    ids = np.array([[3, 0], [3, 3]])
    y = sd.take(W, ids, axis=0)
    jac = _call(sd.compile(sd.jacobian(y, W)), W=np.zeros((4, 2)))
    want = np.zeros((2, 2, 2, 4, 2))
    for (a, b), k in np.ndenumerate(ids):
        want[a, b, :, k, :] = np.eye(2)
    np.testing.assert_array_equal(jac, want)
    v = RNG.normal(size=(4, 2))
    np.testing.assert_array_equal(_call(sd.compile(sd.jvp(y, W, v)), W=np.zeros((4, 2))), np.take(v, ids, axis=0))
    g = sd.Param("g", shape=(3, 2))
    s = sd.scatter_add(g, np.array([1, 1, 0]), 3)
    u = RNG.normal(size=(3, 2))
    want = np.zeros((3, 2))
    np.add.at(want, np.array([1, 1, 0]), u)
    np.testing.assert_allclose(_call(sd.compile(sd.jvp(s, g, u)), g=np.zeros((3, 2))), want, rtol=1e-15)
    jac = _call(sd.compile(sd.jacobian(s, g)), g=np.zeros((3, 2)))
    assert jac.shape == (3, 2, 3, 2) and jac[1, 0, 0, 0] == 1 and jac[1, 0, 1, 0] == 1 and jac[0, 0, 0, 0] == 0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    ("lead", "ids", "trail"), [((), (7,), (3,)), ((2,), (3, 2), (4,)), ((3,), (5,), ()), ((), (), (2,))]
)
def test_scatter_add_kernel_is_np_add_at(dtype, lead, ids, trail) -> None:
    size = 4
    idx = RNG.integers(-size, size, size=ids)
    values = RNG.normal(size=(*lead, *ids, *trail)).astype(dtype)
    want = np.zeros((*lead, size, *trail), dtype=dtype)
    np.add.at(want, (slice(None),) * len(lead) + (idx,), values)
    got = KERNELS["_scatter_add"](values, idx, size, len(lead))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-15)


def test_scatter_add_refuses_ids_out_of_range_when_it_runs() -> None:
    with pytest.raises(IndexError, match="scatter_add: id 4 is out of bounds for axis 0 with size 4"):
        KERNELS["_scatter_add"](np.ones((2, 3)), np.array([1, 4]), 4)
    with pytest.raises(IndexError, match="id -5"):
        KERNELS["_scatter_add"](np.ones((2, 3)), np.array([-5, 0]), 4)


def test_negative_ids_count_from_the_end_and_ids_out_of_range_raise() -> None:
    W = sd.Param("W", shape=(3, 2))
    ids = sd.Input("ids", shape=(None,), dtype="int64")
    f = sd.compile({"y": sd.take(W, ids), "dW": sd.grad(sd.sum(sd.take(W, ids)), W)})
    w = np.arange(6.0).reshape(3, 2)
    out = f(W=w, ids=np.array([-1, 2, -3]))
    np.testing.assert_array_equal(out["y"], w[[2, 2, 0]])
    np.testing.assert_array_equal(out["dW"], [[1, 1], [0, 0], [2, 2]])
    with pytest.raises(IndexError, match="out of bounds"):
        f(W=w, ids=np.array([0, 3]))
    with pytest.raises(IndexError, match="take: id 3 is out of bounds for axis 0 with size 3"):
        sd.take(W, [0, 3])  # constant ids are checked when the graph is built
    with pytest.raises(IndexError, match="take: id -4"):
        sd.take(W, np.array([-4]))


def test_ids_must_be_integers_and_the_table_an_array_when_the_graph_is_built() -> None:
    W = sd.Param("W", shape=(3, 2))
    with pytest.raises(DTypeError, match="take: ids must have an integer dtype, got float64"):
        sd.take(W, sd.Input("ids", shape=(None,)))
    with pytest.raises(DTypeError, match="take: ids must have an integer dtype, got bool"):
        sd.take(W, np.array([True, False]))
    with pytest.raises(DTypeError, match="scatter_add: ids must have an integer dtype"):
        sd.scatter_add(W, np.array([0.0, 1.0, 2.0]), 4)
    with pytest.raises(ShapeError, match="take: the table must have at least one axis"):
        sd.take(sd.Param("s"), [0])
    with pytest.raises(ShapeError, match="take: axis 2 is out of range"):
        sd.take(W, [0], axis=2)
    with pytest.raises(ShapeError, match="scatter_add: ids of shape"):
        sd.scatter_add(W, np.array([0, 1]), 4)
    with pytest.raises(ValueError, match="scatter_add: size must be a non-negative int"):
        sd.scatter_add(W, np.array([0, 1, 2]), -1)


def test_open_length_ids_give_open_length_lookups_with_their_provenance() -> None:
    W = sd.Param("W", shape=(7, 3))
    ids = sd.Input("ids", shape=(None, 4), dtype="int32")
    y = sd.take(W, ids)
    assert y.shape == (None, 4, 3)
    assert sd.dims.axis_source(y, 0) == (ids, 0) and sd.dims.axis_source(y, 2) == (W, 1)
    loss = sd.mean(y**2)  # the mean counts ids.shape[0] rows
    assert "ids.shape[0]" in sd.codegen(loss)
    values = {"W": RNG.normal(size=(7, 3)), "ids": RNG.integers(0, 7, size=(5, 4)).astype(np.int32)}
    assert sd.check_grad(loss, W, values) < 1e-9
    with pytest.raises(ShapeError, match="take: axis 0 of the table must have a known length to differentiate"):
        sd.grad(sd.sum(sd.take(sd.Input("T", shape=(None, 3)), ids)), sd.Input("T", shape=(None, 3)))


def test_embedding_layer_makes_a_glorot_table_and_looks_up_its_rows() -> None:
    ids = sd.Input("tokens", shape=(None, 5), dtype="int64")
    emb = sd.embedding(ids, 12, 4, "emb")
    (W,) = sd.params(emb)
    assert W.label == "emb_W" and W.shape == (12, 4) and W.attrs["init"] == "glorot" and emb.name == "emb"
    assert emb.shape == (None, 5, 4) and sd.nn.embedding is sd.embedding
    w = sd.init_params(emb)["emb_W"]
    limit = np.sqrt(6 / (12 + 4))
    assert np.all(np.abs(w) <= limit) and w.std() > limit / 4
    tokens = RNG.integers(0, 12, size=(3, 5))
    np.testing.assert_array_equal(sd.compile(emb)(emb_W=w, tokens=tokens), w[tokens])
    assert sd.embedding(ids, 12, 4, "e32", dtype="float32").dtype == np.float32
    with pytest.raises(ValueError, match="embedding 'emb': vocab must be a positive int, got 0"):
        sd.embedding(ids, 0, 4, "emb")
    with pytest.raises(DTypeError, match="embedding 'emb': ids must have an integer dtype, got float64"):
        sd.embedding(sd.Input("t", shape=(None,)), 12, 4, "emb")


def test_an_embedding_model_trains_with_fit_and_its_step_matches_the_compiled_gradient() -> None:
    ids = sd.Input("ids", shape=(None, 2), dtype="int64")
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.reshape(sd.embedding(ids, 6, 3, "emb"), (-1, 6))
    loss = sd.softmax_cross_entropy(sd.dense(h, 2, "out"), y)
    data = {"ids": RNG.integers(0, 6, size=(64, 2)), "y": np.zeros(64, dtype=np.int64)}
    data["y"] = (data["ids"][:, 0] < 3).astype(np.int64)  # the class is read off the first token
    params = sd.init_params(loss)
    before = {k: v.copy() for k, v in params.items()}
    grads = _call(sd.compile(sd.grad(loss, sd.params(loss))), **before, **data)
    step = sd.compile_step(loss, params, sd.optim.SGD(lr=0.5))
    step(**data)
    for (k, v), g in zip(before.items(), grads):
        np.testing.assert_allclose(params[k], v - 0.5 * g, rtol=1e-12, atol=1e-15)
    history = sd.fit(
        loss, params, data, optimizer=sd.optim.Adam(lr=0.05), epochs=30, progress=False, metrics=["accuracy"]
    )
    assert history.history["accuracy"][-1] == 1.0 and history.history["loss"][-1] < 0.1


def test_random_test_data_draws_ids_over_the_whole_table() -> None:
    ids = sd.Input("ids", shape=(None,), dtype="int64")
    loss = sd.sum(sd.take(sd.Param("W", shape=(9, 2)), ids) ** 2)
    assert sd.testing.label_bounds([loss]) == {"ids": 9}
    values = sd.testing.random_values([loss], batch=200)
    assert values["ids"].min() >= 0 and values["ids"].max() == 8
