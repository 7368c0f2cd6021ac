"""sd.distributed on a real Dask cluster (two worker processes on this machine): exactness against one process,
L-BFGS on dask arrays, data-parallel fit against sd.fit, the errors, and a worker killed mid-epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import symdiff as sd

pytest.importorskip("distributed", reason='sd.distributed needs Dask: pip install "symdiff[dask]"')
import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

sdd = sd.distributed


@pytest.fixture(scope="module")
def client():
    """One real cluster for the module: two worker processes, one thread each."""
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c


def blobs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[2.0, 0.0, 1.0], [-2.0, 1.0, 0.0], [0.0, -2.0, -1.0]])
    return centers[y] + rng.normal(scale=0.8, size=(n, 3)), y


def mlp():
    """A softmax classifier with a hidden layer and an L2 term of the params alone (it must not be weighted)."""
    x = sd.Input("x", shape=(None, 3))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.dense(x, 8, "l1", activation="tanh")
    logits = sd.dense(h, 3, "out")
    (W,) = [p for p in sd.params(logits) if p.label == "out_W"]
    return sd.softmax_cross_entropy(logits, y) + 1e-3 * sd.sum(W**2)


def chunked(arrays, chunks):
    return {k: da.from_array(v, chunks=(chunks, *v.shape[1:])) for k, v in arrays.items()}


def test_import_symdiff_does_not_import_dask() -> None:
    code = "import sys, symdiff; assert 'dask' not in sys.modules and 'distributed' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_value_and_grad_equals_one_process_in_float64(client) -> None:
    X, Y = blobs()
    loss = mlp()
    params = sd.init_params(loss, seed=1)
    value, grads = sdd.value_and_grad(loss, params, chunked({"x": X, "y": Y}, (100, 250, 7, 243)), client)
    ps = sd.params(loss)
    ref = sd.compile([loss, *sd.grad(loss, ps)])(**params, x=X, y=Y)
    assert abs(value - float(ref[0])) <= 1e-12 * abs(float(ref[0]))
    assert list(grads) == list(params)
    for p, want in zip(ps, ref[1:]):
        np.testing.assert_allclose(grads[p.label], want, rtol=1e-12, atol=1e-14)


def test_value_and_grad_without_client_uses_dasks_scheduler() -> None:
    X, Y = blobs(90)
    loss = mlp()
    params = sd.init_params(loss, seed=1)
    value, _ = sdd.value_and_grad(loss, params, chunked({"x": X, "y": Y}, 40))
    assert value == pytest.approx(sd.evaluate(loss, params, {"x": X, "y": Y})["loss"], rel=1e-12)


def _compiled_digests() -> list[str]:
    from symdiff import distributed

    return sorted(distributed._COMPILED)


def test_workers_compile_the_generated_source_once_and_keep_it(client) -> None:
    X, Y = blobs(400)
    loss = mlp()
    params = sd.init_params(loss, seed=3)
    data = chunked({"x": X, "y": Y}, 50)  # 8 chunks: both workers run several
    prog = sdd.program(loss, params)
    for _ in range(2):
        sdd.value_and_grad(loss, params, data, client)
    seen = client.run(_compiled_digests)
    assert len(seen) == 2 and all(digests.count(prog.digest) == 1 for digests in seen.values()), seen
    sources = client.run(lambda: sd.distributed._COMPILED[prog.digest].source)
    assert set(sources.values()) == {prog.source}


def test_fit_without_a_client_runs_on_dasks_local_scheduler(client) -> None:
    X, Y = blobs(150)
    loss = mlp()
    params = sd.init_params(loss, seed=0)
    data = chunked({"x": X, "y": Y}, 40)
    runs = []
    for where in (client, None):
        runs.append({k: v.copy() for k, v in params.items()})
        if where is None:
            import dask

            with dask.config.set(scheduler="threads"):  # not the module's client, which is the default one
                sdd.fit(loss, runs[-1], data, sd.optim.Adam(0.01), 32, 1, None, seed=2)
        else:
            sdd.fit(loss, runs[-1], data, sd.optim.Adam(0.01), 32, 1, where, seed=2)
    for k in params:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def logistic():
    x = sd.Input("x", shape=(None, 4))
    t = sd.Input("t", shape=(None,))
    w, b = sd.Param("w", (4,)), sd.Param("b", ())
    return sd.sigmoid_cross_entropy(x @ w + b, t) + 1e-2 * sd.sum(w**2)


def test_lbfgs_on_dask_arrays_reaches_the_in_memory_optimum(client) -> None:
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 4))
    T = (X @ np.array([1.5, -2.0, 0.5, 0.0]) + 0.3 + rng.normal(size=2000) > 0).astype(float)
    loss = logistic()
    params = {"w": np.zeros(4), "b": np.array(0.0)}
    fun, x0, unflatten = sdd.objective(loss, params, chunked({"x": X, "t": T}, 300), client)
    got = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", options={"gtol": 1e-10})
    f = sd.compile([loss, *sd.grad(loss, [sd.Param("w", (4,)), sd.Param("b", ())])])

    def in_memory(v):
        value, dw, db = f(w=v[:4], b=v[4], x=X, t=T)
        return float(value), np.concatenate([dw, [db]])

    want = optimize.minimize(in_memory, x0, jac=True, method="L-BFGS-B", options={"gtol": 1e-10})
    assert got.success and want.success
    np.testing.assert_allclose(got.x, want.x, atol=1e-7)
    assert got.fun == pytest.approx(want.fun, rel=1e-12)
    assert set(unflatten(got.x)) == {"w", "b"} and unflatten(got.x)["b"].shape == ()


@pytest.mark.parametrize("optimizer", [sd.optim.Adam(0.05), sd.optim.SGD(0.1, momentum=0.9)], ids=repr)
def test_fit_with_one_chunk_reproduces_sd_fit(client, optimizer) -> None:
    X, Y = blobs(300)
    loss = mlp()
    params = sd.init_params(loss, seed=2)
    ours = {k: v.copy() for k, v in params.items()}
    hist = sdd.fit(loss, ours, chunked({"x": X, "y": Y}, 300), optimizer, batch_size=64, epochs=3, client=client)
    theirs = {k: v.copy() for k, v in params.items()}
    want = sd.fit(loss, theirs, {"x": X, "y": Y}, optimizer=optimizer, batch_size=64, epochs=3, progress=False)
    assert hist.steps == want.steps == 15 and hist.epoch == want.epoch
    np.testing.assert_allclose(hist.history["loss"], want.history["loss"], rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-10, atol=1e-13)
        assert not np.array_equal(ours[k], params[k])


def test_fit_splits_each_batch_across_the_chunks_that_hold_its_rows(client) -> None:
    X, Y = blobs(250)
    lengths = (60, 90, 17, 83)  # batches of 40 rows: most straddle two chunks, one holds a whole chunk
    loss = mlp()
    params = sd.init_params(loss, seed=4)
    ours = {k: v.copy() for k, v in params.items()}
    hist = sdd.fit(loss, ours, chunked({"x": X, "y": Y}, lengths), sd.optim.Adam(0.02), 40, 2, client, seed=5)
    # the same batches, each whole, through sd.compile_step in this process
    theirs = {k: v.copy() for k, v in params.items()}
    step = sd.compile_step(loss, theirs, sd.optim.Adam(0.02))
    rng = np.random.default_rng(5)
    totals = []
    for _ in range(2):
        order = sdd.epoch_order(rng, lengths)
        totals.append(sum(step(x=X[order[i : i + 40]], y=Y[order[i : i + 40]]) * len(order[i : i + 40])
                          for i in range(0, 250, 40)) / 250)  # fmt: skip
    np.testing.assert_allclose(hist.history["loss"], totals, rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-10, atol=1e-13)


def test_epoch_order_shuffles_the_chunks_then_the_rows_within_each() -> None:
    lengths = (3, 5, 4)
    order = sdd.epoch_order(np.random.default_rng(0), lengths)
    rng = np.random.default_rng(0)
    chunks = rng.permutation(3)
    offsets = [0, 3, 8]
    want = np.concatenate([offsets[c] + rng.permutation(lengths[c]) for c in chunks])
    np.testing.assert_array_equal(order, want)
    assert sorted(order) == list(range(12)) and list(chunks) != [0, 1, 2]
    # one chunk: sd.fit's own order
    np.testing.assert_array_equal(
        sdd.epoch_order(np.random.default_rng(7), (10,)), np.random.default_rng(7).permutation(10)
    )


def test_fit_divergence_names_epoch_and_step_and_keeps_finite_params(client) -> None:
    X, Y = blobs(200)
    loss = mlp()
    params = sd.init_params(loss, seed=0)
    with pytest.raises(sd.DivergenceError, match=r"epoch 1, step \d+: not finite"):
        sdd.fit(loss, params, chunked({"x": X * 1e6, "y": Y}, 100), sd.optim.SGD(1e300), 50, 1, client)
    assert all(np.isfinite(v).all() for v in params.values())


def test_fit_without_persisting_the_data_gives_the_same_params(client) -> None:
    X, Y = blobs(200)
    loss = mlp()
    params = sd.init_params(loss, seed=0)
    data = chunked({"x": X, "y": Y}, 70)
    runs = []
    for persist in (True, False):
        runs.append({k: v.copy() for k, v in params.items()})
        sdd.fit(loss, runs[-1], data, sd.optim.Adam(0.01), 32, 2, client, seed=1, persist=persist)
    for k in params:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
        assert not np.array_equal(runs[0][k], params[k])


def test_fit_adds_large_gradient_sums_on_the_workers_in_the_same_order(client, monkeypatch) -> None:
    X, Y = blobs(200)
    loss = mlp()
    params = sd.init_params(loss, seed=0)
    data = chunked({"x": X, "y": Y}, 25)  # batches of 64 rows: 3 to 4 parts each
    runs = []
    for limit in (sdd._GATHER_BYTES, 0):  # the client adds the parts; the workers add them (the params' size)
        monkeypatch.setattr(sdd, "_GATHER_BYTES", limit)
        runs.append({k: v.copy() for k, v in params.items()})
        sdd.fit(loss, runs[-1], data, sd.optim.Adam(0.01), 64, 2, client, seed=1)
    for k in params:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
        assert not np.array_equal(runs[0][k], params[k])


def test_fit_resumes_from_its_checkpoint(client, tmp_path) -> None:
    X, Y = blobs(200)
    loss = mlp()
    data = chunked({"x": X, "y": Y}, 70)
    params = sd.init_params(loss, seed=0)
    once = {k: v.copy() for k, v in params.items()}
    sdd.fit(loss, once, data, sd.optim.Adam(0.01), 32, 3, client, seed=1)
    twice = {k: v.copy() for k, v in params.items()}
    path = tmp_path / "run.npz"
    sdd.fit(loss, twice, data, sd.optim.Adam(0.01), 32, 2, client, seed=1, checkpoint=path)
    hist = sdd.fit(loss, twice, data, sd.optim.Adam(0.01), 32, 3, client, seed=1, checkpoint=path)
    assert hist.epoch == [1, 2, 3]
    for k in params:
        np.testing.assert_array_equal(once[k], twice[k])


def test_fit_callbacks_see_val_loss_and_can_stop(client) -> None:
    X, Y = blobs(200)
    Xv, Yv = blobs(100, seed=1)
    loss = mlp()
    params = sd.init_params(loss, seed=0)
    stop = sd.EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0)
    hist = sdd.fit(loss, params, chunked({"x": X, "y": Y}, 100), sd.optim.Adam(0.01), 50, 10, client,
                   validation_data={"x": Xv, "y": Yv}, callbacks=[stop])  # fmt: skip
    assert hist.epoch == [1, 2] and len(hist.history["val_loss"]) == 2
    assert hist.history["val_loss"][0] == pytest.approx(sd.evaluate(loss, params, {"x": Xv, "y": Yv})["loss"])


X_OK, Y_OK = da.zeros((60, 3), chunks=30), da.zeros(60, chunks=30, dtype="int64")
BAD_DATA = {
    "chunked-along-features": (
        {"x": da.zeros((60, 3), chunks=(30, 2)), "y": Y_OK},
        "input 'x' is chunked along axis 1",
    ),
    "missing-input": ({"x": X_OK}, "data misses input 'y'"),
    "mismatched-chunks": ({"x": X_OK, "y": Y_OK.rechunk(20)}, "input 'y' has chunks .* input 'x' has"),
    "not-dask": ({"x": np.zeros((60, 3)), "y": Y_OK}, "input 'x' is a ndarray, not a dask array"),
    "wrong-shape": ({"x": da.zeros((60, 4), chunks=30), "y": Y_OK}, "input 'x' must have shape"),
    "unexpected": ({"x": X_OK, "y": Y_OK, "z": Y_OK}, "data has 'z'"),
}


@pytest.mark.parametrize(("data", "match"), list(BAD_DATA.values()), ids=list(BAD_DATA))
def test_data_errors_name_the_input(data, match) -> None:
    loss = mlp()
    params = sd.init_params(loss, seed=0)
    with pytest.raises(sd.InputError, match=match):
        sdd.value_and_grad(loss, params, data)
    with pytest.raises(sd.InputError, match=match):
        sdd.fit(loss, params, data, batch_size=10)


def test_fit_finishes_with_the_same_result_when_a_worker_is_killed_mid_epoch(client) -> None:
    X, Y = blobs(400)
    loss = mlp()
    params = sd.init_params(loss, seed=0)
    data = chunked({"x": X, "y": Y}, 50)
    calm = {k: v.copy() for k, v in params.items()}
    sdd.fit(loss, calm, data, sd.optim.Adam(0.01), 20, 2, client, seed=3)

    victim = client.run(os.getpid)  # worker address -> pid
    pid = next(iter(victim.values()))

    class KillMidEpoch(sd.Callback):
        def on_train_begin(self, trainer):
            def watch():
                while trainer.step.t < 25:  # epoch 2 of 20 steps each, half done
                    threading.Event().wait(0.005)
                os.kill(pid, signal.SIGKILL)

            threading.Thread(target=watch, daemon=True).start()

    hurt = {k: v.copy() for k, v in params.items()}
    sdd.fit(loss, hurt, data, sd.optim.Adam(0.01), 20, 2, client, seed=3, callbacks=[KillMidEpoch()])
    assert pid not in client.run(os.getpid).values()  # the worker was replaced
    for k in params:
        np.testing.assert_array_equal(calm[k], hurt[k])


def top2(pred, target):
    """A metric that needs every row at once (not a mean of per-chunk values)."""
    return float(np.mean((np.argsort(pred, axis=-1)[:, -2:] == target[:, None]).any(axis=-1)))


def test_fit_history_has_sd_fits_keys_and_values_on_one_chunk(client) -> None:
    X, Y = blobs(300)
    Xv, Yv = blobs(120, seed=1)
    loss = mlp()
    params = sd.init_params(loss, seed=2)
    metrics = ["accuracy", top2]
    ours = {k: v.copy() for k, v in params.items()}
    hist = sdd.fit(loss, ours, chunked({"x": X, "y": Y}, 300), sd.optim.Adam(0.05), 64, 3, client,
                   metrics=metrics, validation_data={"x": Xv, "y": Yv})  # fmt: skip
    theirs = {k: v.copy() for k, v in params.items()}
    want = sd.fit(loss, theirs, {"x": X, "y": Y}, optimizer=sd.optim.Adam(0.05), batch_size=64, epochs=3,
                  metrics=metrics, validation_data={"x": Xv, "y": Yv}, progress=False)  # fmt: skip
    assert list(hist.history) == list(want.history) == [
        "loss", "accuracy", "top2", "val_loss", "val_accuracy", "val_top2"
    ]  # fmt: skip
    for k, values in want.history.items():
        np.testing.assert_allclose(hist.history[k], values, rtol=1e-10, err_msg=k)
    assert len(set(hist.history["accuracy"])) > 1  # measured at each epoch's params, not once


def test_fit_metrics_cover_every_chunk_on_both_workers(client) -> None:
    X, Y = blobs(400)
    loss = mlp()
    params = sd.init_params(loss, seed=0)
    data = chunked({"x": X, "y": Y}, (100, 37, 150, 113))
    hist = sdd.fit(loss, params, data, sd.optim.Adam(0.01), 32, 1, client, metrics=["accuracy", top2])
    want = sd.evaluate(loss, params, {"x": X, "y": Y}, metrics=["accuracy", top2])
    assert hist.history["accuracy"] == [want["accuracy"]]  # right predictions counted per chunk, exactly
    assert hist.history["top2"] == pytest.approx([want["top2"]], rel=1e-12)
    assert 0.0 < want["accuracy"] < 1.0


@pytest.mark.parametrize("lengths", [(300,), (90, 110, 100)], ids=["one-chunk", "three-chunks"])
def test_fit_with_batch_size_none_takes_one_full_batch_step_per_epoch_like_sd_fit(client, lengths) -> None:
    X, Y = blobs(300)
    loss = mlp()
    params = sd.init_params(loss, seed=1)
    ours = {k: v.copy() for k, v in params.items()}
    hist = sdd.fit(loss, ours, chunked({"x": X, "y": Y}, lengths), sd.optim.SGD(0.5), None, 4, client)
    theirs = {k: v.copy() for k, v in params.items()}
    want = sd.fit(loss, theirs, {"x": X, "y": Y}, optimizer=sd.optim.SGD(0.5), batch_size=None, epochs=4,
                  progress=False)  # fmt: skip
    assert hist.steps == want.steps == 4
    np.testing.assert_allclose(hist.history["loss"], want.history["loss"], rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-10, atol=1e-13)
        assert not np.array_equal(ours[k], params[k])


def mse_loss():
    x, t = sd.Input("x", shape=(None, 3)), sd.Input("t", shape=(None,))
    return sd.mean((x @ sd.Param("w", (3,)) - t) ** 2)


FIT_ERRORS = {
    "unknown-metric": (mlp, {"metrics": ["f1"]}),
    "accuracy-of-mse": (mse_loss, {"metrics": ["accuracy"]}),
    "batch-size-zero": (mlp, {"batch_size": 0}),
    "batch-size-float": (mlp, {"batch_size": 8.0}),
    "epochs-negative": (mlp, {"epochs": -1}),
}


@pytest.mark.parametrize(("make", "kwargs"), list(FIT_ERRORS.values()), ids=list(FIT_ERRORS))
def test_fit_refuses_what_sd_fit_refuses_with_its_message(make, kwargs) -> None:
    X, Y = blobs(60)
    loss = make()
    params = sd.init_params(loss, seed=0)
    arrays = {"x": X, "y": Y} if make is mlp else {"x": X, "t": Y.astype(float)}
    with pytest.raises((ValueError, sd.InputError)) as want:
        sd.fit(loss, params, arrays, progress=False, **kwargs)
    with pytest.raises(want.type) as got:
        sdd.fit(loss, params, chunked(arrays, 30), **kwargs)
    assert str(got.value) == str(want.value)
