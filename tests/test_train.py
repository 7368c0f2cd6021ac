"""fit(): minibatches, determinism, metrics, callbacks, the divergence guard, checkpoints and layers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import symdiff as sd
from symdiff import optim


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]])
    return centers[y] + rng.normal(scale=0.6, size=(n, 2)), y


def classifier(hidden=8):
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.dense(x, hidden, "l1", activation="relu")
    return sd.softmax_cross_entropy(sd.dense(h, 3, "out"), y)


def test_fit_learns_and_reports_keras_style_history() -> None:
    X, Y = blobs()
    Xv, Yv = blobs(60, seed=1)
    loss = classifier()
    params = sd.init_params(loss, seed=0)
    arrays = {k: v for k, v in params.items()}
    hist = sd.fit(
        loss,
        params,
        {"x": X, "y": Y},
        optimizer=optim.SGD(lr=0.1, momentum=0.9),
        batch_size=16,
        epochs=5,
        validation_data={"x": Xv, "y": Yv},
        metrics=["accuracy"],
        progress=False,
    )
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 5 for v in hist.history.values()) and hist.epoch == [1, 2, 3, 4, 5]
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert hist.history["accuracy"][-1] > 0.9 and hist.history["val_accuracy"][-1] > 0.9
    assert all(params[k] is arrays[k] for k in params), "fit updates the arrays in place"
    assert hist.steps == 5 * 8  # 120 rows in batches of 16 -> 8 steps per epoch, last one partial
    ev = sd.evaluate(loss, params, {"x": Xv, "y": Yv}, metrics=["accuracy"])
    assert ev["loss"] == pytest.approx(hist.history["val_loss"][-1])


@pytest.mark.parametrize(("batch_size", "steps"), [(1, 120), (50, 3), (None, 1), (500, 1)])
def test_batch_sizes_true_sgd_minibatch_and_full_batch(batch_size, steps) -> None:
    X, Y = blobs()
    loss = classifier()
    hist = sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, batch_size=batch_size, epochs=1, progress=False)
    assert hist.steps == steps


def test_full_batch_epoch_equals_one_generated_step() -> None:
    X, Y = blobs()
    loss = classifier()
    p1, p2 = sd.init_params(loss), sd.init_params(loss)
    sd.fit(loss, p1, {"x": X, "y": Y}, optimizer=optim.SGD(lr=0.3), batch_size=None, epochs=1, progress=False)
    sd.compile_step(loss, p2, optim.SGD(lr=0.3))(x=X, y=Y)  # same data order does not matter for a full batch
    for k in p1:
        np.testing.assert_allclose(p1[k], p2[k], rtol=1e-12)


def test_same_seed_same_result_other_seed_other_result() -> None:
    X, Y = blobs()
    loss = classifier()
    runs = []
    for seed in (3, 3, 4):
        params = sd.init_params(loss, seed=0)
        sd.fit(loss, params, {"x": X, "y": Y}, batch_size=10, epochs=2, seed=seed, progress=False)
        runs.append(params)
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_data_errors_name_the_arrays() -> None:
    X, Y = blobs()
    loss = classifier()
    params = sd.init_params(loss)
    with pytest.raises(sd.InputError, match=r"x has 120, y has 119"):
        sd.fit(loss, params, {"x": X, "y": Y[:-1]}, progress=False)
    with pytest.raises(sd.InputError, match="misses input 'y'"):
        sd.fit(loss, params, {"x": X}, progress=False)
    with pytest.raises(sd.InputError, match="'z', which the loss does not use"):
        sd.fit(loss, params, {"x": X, "y": Y, "z": Y}, progress=False)
    with pytest.raises(sd.DTypeError, match="'y'"):
        sd.fit(loss, params, {"x": X, "y": Y + 0.5}, progress=False)
    with pytest.raises(ValueError, match="not in the params dict"):
        sd.fit(loss, {k: v for k, v in params.items() if k != "l1_b"}, {"x": X, "y": Y}, progress=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and nan on purpose
def test_divergence_stops_with_a_clear_error_and_keeps_finite_params() -> None:
    p = sd.Param("p", shape=(3,))
    x = sd.Input("x", shape=(None, 3))
    loss = sd.mean(sd.exp(x @ p) ** 2)
    params = {"p": np.full(3, 0.5)}
    data = {"x": np.random.default_rng(0).normal(size=(64, 3))}
    with pytest.raises(sd.DivergenceError, match=r"epoch \d+, step \d+: not finite: loss") as info:
        sd.fit(loss, params, data, optimizer=optim.SGD(lr=50.0), batch_size=8, epochs=20, progress=False)
    assert "last finite values" in str(info.value)
    assert np.all(np.isfinite(params["p"]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and nan on purpose
def test_a_step_with_a_non_finite_gradient_changes_nothing() -> None:
    p = sd.Param("p", shape=(2,))
    x = sd.Input("x", shape=(2,))
    params = {"p": np.array([4.0, -1.0])}
    step = sd.compile_step(sd.sum(sd.sqrt(p) * x), params, optim.Adam(lr=0.1))
    before = params["p"].copy()
    with pytest.raises(FloatingPointError, match="not finite: loss, dp"):
        step(x=np.ones(2))  # sqrt(-1) is nan
    np.testing.assert_array_equal(params["p"], before)
    assert step.t == 0 and not np.any(step.state["m_p"])


def test_early_stopping_restores_the_best_epoch() -> None:
    X, Y = blobs()
    Xv, Yv = blobs(60, seed=1)
    loss = classifier()
    params = sd.init_params(loss)
    stopper = sd.EarlyStopping(monitor="val_loss", patience=2)
    # a learning rate this large makes the validation loss bounce, so early stopping triggers
    hist = sd.fit(
        loss,
        params,
        {"x": X, "y": Y},
        optimizer=optim.SGD(lr=3.0),
        batch_size=8,
        epochs=30,
        validation_data={"x": Xv, "y": Yv},
        callbacks=[stopper],
        progress=False,
    )
    assert len(hist.epoch) < 30
    best = min(hist.history["val_loss"])
    assert stopper.best == best
    assert sd.evaluate(loss, params, {"x": Xv, "y": Yv})["loss"] == pytest.approx(best)


def test_early_stopping_on_an_unmeasured_key_says_what_is_measured() -> None:
    X, Y = blobs()
    loss = classifier()
    with pytest.raises(KeyError, match="val_loss"):
        sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, callbacks=[sd.EarlyStopping()], progress=False)


def test_binary_accuracy_and_metrics_need_a_classifier() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    T = (X[:, :1] + X[:, 1:] > 0).astype(float)
    x, t = sd.Input("x", shape=(None, 2)), sd.Input("t", shape=(None, 1))
    loss = sd.sigmoid_cross_entropy(sd.dense(x, 1, "lin"), t)
    hist = sd.fit(
        loss,
        sd.init_params(loss),
        {"x": X, "t": T},
        optimizer=optim.Adam(lr=0.1),
        batch_size=20,
        epochs=10,
        metrics=["accuracy"],
        progress=False,
    )
    assert hist.history["accuracy"][-1] > 0.9
    reg = sd.mse(sd.dense(x, 1, "lin"), t)
    with pytest.raises(ValueError, match="metrics need predictions"):
        sd.fit(reg, sd.init_params(reg), {"x": X, "t": T}, metrics=["accuracy"], progress=False)


def test_progress_bar_shows_running_loss(capsys) -> None:
    X, Y = blobs()
    loss = classifier()
    sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, epochs=2, progress=True)
    err = capsys.readouterr()
    assert "epoch 2/2: loss" in err.out + err.err


def test_save_and_load_params_round_trip_atomically(tmp_path) -> None:
    params = {"W": np.arange(6.0).reshape(2, 3), "b": np.ones(3, dtype=np.float32)}
    path = tmp_path / "p.npz"
    sd.save_params(params, path)
    back = sd.load_params(path)
    assert set(back) == {"W", "b"} and back["b"].dtype == np.float32
    np.testing.assert_array_equal(back["W"], params["W"])
    assert [f.name for f in tmp_path.iterdir()] == ["p.npz"], "no temporary file is left behind"


def test_init_params_glorot_he_zeros() -> None:
    x = sd.Input("x", shape=(None, 100))
    loss = sd.mean(sd.dense(sd.dense(x, 200, "a", activation="relu"), 50, "b") ** 2)
    p = sd.init_params(loss, seed=1)
    assert np.all(p["a_b"] == 0) and np.all(p["b_b"] == 0)
    assert abs(p["a_W"].std() - np.sqrt(2 / 100)) < 0.01  # He normal before a ReLU
    limit = np.sqrt(6 / (200 + 50))
    assert p["b_W"].max() <= limit and p["b_W"].min() >= -limit and p["b_W"].std() > limit / 2  # Glorot uniform
    assert all(np.array_equal(p[k], sd.init_params(loss, seed=1)[k]) for k in p)


def test_dense_layers_make_a_three_line_mlp_that_prints_layer_by_layer() -> None:
    x = sd.Input("x", shape=(None, 4))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h1 = sd.dense(x, 8, "h1", activation="relu")
    h2 = sd.dense(h1, 8, "h2", activation="tanh")
    loss = sd.softmax_cross_entropy(sd.dense(h2, 3, "out"), y)
    text = str(sd.grad(loss, sd.Param("h1_W", shape=(4, 8), init="he")))
    assert "dout = (softmax(out) - onehot(y, 3)) / n" in text
    assert "dh1_z = dh1 * (h1_z > 0)" in text and "dh1_W = x.T @ dh1_z" in text
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        sd.dense(x, 3, "bad", activation="gelu")


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import symdiff as sd

    class Slow(sd.Callback):
        def on_epoch_end(self, epoch, logs, trainer):
            time.sleep(float(sys.argv[3]))

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)); Y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    x = sd.Input("x", shape=(None, 2)); y = sd.Input("y", shape=(None,), dtype="int64")
    loss = sd.softmax_cross_entropy(sd.dense(sd.dense(x, 16, "l1", activation="relu"), 2, "out"), y)
    params = sd.init_params(loss, seed=0)
    ckpt = sys.argv[1] if sys.argv[1] != "-" else None
    sd.fit(loss, params, {"x": X, "y": Y}, optimizer=sd.optim.Adam(lr=0.01), batch_size=16, epochs=8, seed=5,
           checkpoint=ckpt, callbacks=[Slow()], progress=False)
    sd.save_params(params, sys.argv[2])
""")


def _epoch_in(path) -> int:
    try:
        with np.load(path) as f:
            return json.loads(str(f["meta"]))["epoch"]
    except (OSError, KeyError, ValueError):
        return -1


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_run_ends(tmp_path) -> None:
    script = tmp_path / "train.py"
    script.write_text(CHILD)
    ckpt, killed_out, full_out = tmp_path / "run.npz", tmp_path / "resumed.npz", tmp_path / "full.npz"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(killed_out), "0.4"], env=env)
    deadline = time.monotonic() + 60
    while _epoch_in(ckpt) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = _epoch_in(ckpt)
    assert 1 <= stopped_at < 7 and not killed_out.exists()
    subprocess.run([sys.executable, str(script), str(ckpt), str(killed_out), "0"], env=env, check=True)
    subprocess.run([sys.executable, str(script), "-", str(full_out), "0"], env=env, check=True)
    resumed, full = sd.load_params(killed_out), sd.load_params(full_out)
    for k in full:
        np.testing.assert_array_equal(resumed[k], full[k])


@pytest.mark.parametrize("bad", [-1, 3])
def test_labels_out_of_range_are_refused_naming_them(bad) -> None:
    X, Y = blobs()
    Y = Y.copy()
    Y[5] = bad
    loss = classifier()
    with pytest.raises(sd.InputError, match=r"labels 'y' must lie in \[0, 3\)"):
        sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, progress=False)


def test_empty_batches_and_wrong_param_arrays_are_refused() -> None:
    loss = classifier()
    step = sd.compile_step(loss, sd.init_params(loss))
    with pytest.raises(sd.InputError, match="input 'x' is empty"):
        step(x=np.zeros((0, 2)), y=np.zeros(0, dtype=np.int64))
    params = sd.init_params(loss)
    params["l1_W"] = params["l1_W"].astype(np.float32)
    with pytest.raises(sd.DTypeError, match="param 'l1_W' must be a writable float64 array"):
        sd.compile_step(loss, params)
    with pytest.raises(TypeError, match="params must be a dict"):
        sd.compile_step(loss, sd.params(loss))


def test_loss_shape_errors_name_the_loss() -> None:
    z = sd.Param("z", shape=(5, 3))
    with pytest.raises(sd.ShapeError, match=r"softmax_cross_entropy: labels of shape \(3,\)"):
        sd.softmax_cross_entropy(z, sd.Input("labels", shape=(3,), dtype="int64"))
    with pytest.raises(sd.ShapeError, match=r"mse: shapes \(5, 3\) and \(4,\)"):
        sd.mse(z, sd.Input("target", shape=(4,)))


def test_resuming_with_another_optimizer_or_model_is_refused(tmp_path) -> None:
    X, Y = blobs()
    loss = classifier()
    ckpt = tmp_path / "c.npz"
    sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, optimizer=optim.Adam(lr=0.1), epochs=1, checkpoint=ckpt,
           progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"saved by a run with Adam\(lr=0.1.*this run uses SGD"):
        sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, optimizer=optim.SGD(lr=0.1, momentum=0.9), epochs=2,
               checkpoint=ckpt, progress=False)  # fmt: skip
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    other = sd.softmax_cross_entropy(sd.dense(x, 3, "lin"), y)
    with pytest.raises(ValueError, match="belongs to another model"):
        sd.fit(other, sd.init_params(other), {"x": X, "y": Y}, optimizer=optim.Adam(lr=0.1), epochs=2,
               checkpoint=ckpt, progress=False)  # fmt: skip


def test_an_early_stopped_run_is_finished_and_a_missing_folder_is_reported_first(tmp_path) -> None:
    X, Y = blobs()
    Xv, Yv = blobs(60, seed=1)
    loss = classifier()
    ckpt = tmp_path / "e.npz"
    kw = dict(optimizer=optim.SGD(lr=3.0), batch_size=8, epochs=30, validation_data={"x": Xv, "y": Yv},
              checkpoint=ckpt, progress=False)  # fmt: skip
    first = sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, callbacks=[sd.EarlyStopping(patience=1)], **kw)
    assert len(first.epoch) < 30
    again = sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, callbacks=[sd.EarlyStopping(patience=1)], **kw)
    assert again.epoch == first.epoch and again.steps == first.steps
    with pytest.raises(sd.InputError, match="does not exist"):
        sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, checkpoint=tmp_path / "nope" / "c.npz", progress=False)


def test_metrics_are_checked_before_training_and_callables_work_for_regression() -> None:
    X, Y = blobs()
    loss = classifier()
    with pytest.raises(ValueError, match="unknown metric 'acc'"):
        sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, metrics=["acc"], progress=False)
    x, t = sd.Input("x", shape=(None, 2)), sd.Input("t", shape=(None, 1))
    reg = sd.mse(sd.dense(x, 1, "lin"), t)

    def mae(pred, target):
        return float(np.mean(np.abs(pred - target)))

    hist = sd.fit(reg, sd.init_params(reg), {"x": X, "t": X[:, :1] * 2}, optimizer=optim.Adam(lr=0.1), epochs=3,
                  metrics=[mae], progress=False)  # fmt: skip
    assert len(hist.history["mae"]) == 3 and hist.history["mae"][-1] < hist.history["mae"][0]


def test_a_loss_without_inputs_trains_one_step_per_epoch_and_evaluates() -> None:
    w = sd.Param("w", shape=(3,))
    loss = sd.sum(w**2)
    params = {"w": np.array([1.0, -2.0, 3.0])}
    hist = sd.fit(loss, params, {}, optimizer=optim.SGD(lr=0.1), epochs=3, progress=False)
    np.testing.assert_allclose(params["w"], np.array([1.0, -2.0, 3.0]) * 0.8**3)
    assert hist.epoch == [1, 2, 3] and hist.steps == 3
    assert hist.history["loss"][0] == pytest.approx(14.0)
    assert sd.evaluate(loss, params, {}) == {"loss": pytest.approx(float(np.sum(params["w"] ** 2)))}


def test_data_for_a_loss_without_inputs_is_refused_saying_the_loss_takes_no_data() -> None:
    w = sd.Param("w", shape=(2,))
    loss = sd.sum(w**2)
    params = {"w": np.ones(2)}
    needle = r"^data has 'x', but the loss takes no data \(it has no Inputs\): pass \{\}$"
    with pytest.raises(sd.InputError, match=needle):
        sd.fit(loss, params, {"x": np.ones((3, 3))}, progress=False)
    with pytest.raises(sd.InputError, match=needle):
        sd.evaluate(loss, params, {"x": np.ones(3)})
    with pytest.raises(sd.InputError, match=needle.replace("data", "validation_data", 1)):
        sd.fit(loss, params, {}, validation_data={"x": np.ones(3)}, progress=False)
    np.testing.assert_array_equal(params["w"], np.ones(2))


def test_batch_size_and_epochs_accept_numpy_integers_and_refuse_bools_and_floats() -> None:
    X, Y = blobs(20)
    loss = classifier()
    hist = sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, batch_size=np.int64(5), epochs=np.int32(2),
                  progress=False)  # fmt: skip
    assert hist.steps == 8
    for kw, needle in [({"batch_size": True}, "batch_size"), ({"batch_size": 2.0}, "batch_size"),
                       ({"epochs": 1.5}, "epochs"), ({"batch_size": 0}, "batch_size")]:  # fmt: skip
        with pytest.raises(sd.InputError, match=rf"{needle} must be an int of at least \d, got "):
            sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, progress=False, **kw)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an int of at least 1, got 0 (type int)"),
        ({"epochs": 1.5}, "epochs must be an int of at least 0, got 1.5 (type float)"),
        ({"batch_size": True}, "batch_size must be an int of at least 1, got True (type bool)"),
    ],
)
def test_a_refused_count_names_its_value_and_type_without_a_wrong_article(kw, message) -> None:
    X, Y = blobs(20)
    loss = classifier()
    with pytest.raises(sd.InputError) as info:
        sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, progress=False, **kw)
    assert str(info.value) == message


def test_the_progress_bar_stays_out_of_pipes_and_logs_but_epoch_lines_remain(capsys) -> None:
    X, Y = blobs()
    loss = classifier()
    sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, epochs=2)  # captured output is not a terminal
    out, err = capsys.readouterr()
    assert "\r" not in out + err and "step/s" not in out + err
    assert out.count("\n") == 2 and "epoch 1/2: loss" in out and "epoch 2/2: loss" in out
    sd.fit(loss, sd.init_params(loss), {"x": X, "y": Y}, epochs=1, progress=False)
    assert capsys.readouterr() == ("", "")


def test_history_plot_has_a_title_a_loss_axis_a_metric_axis_and_dashed_validation_curves() -> None:
    pytest.importorskip("matplotlib")
    hist = sd.History(
        history={"loss": [2.5, 1.5], "val_loss": [2.6, 1.8], "accuracy": [0.5, 0.9], "val_accuracy": [0.4, 0.8]},
        epoch=[1, 2],
    )
    fig = hist.plot()
    try:
        left, right = fig.axes
        assert left.get_title() and left.get_ylabel() == "loss" and right.get_ylabel() == "accuracy"
        lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
        assert [line.get_label() for line in left.get_lines()] == ["loss", "val_loss"]
        assert [line.get_label() for line in right.get_lines()] == ["accuracy", "val_accuracy"]
        for k in ("loss", "accuracy"):
            assert lines[k].get_linestyle() == "-" and lines[f"val_{k}"].get_linestyle() == "--"
            assert to_rgba(lines[f"val_{k}"].get_color()) == to_rgba(lines[k].get_color())
        assert to_rgba(lines["loss"].get_color()) != to_rgba(lines["accuracy"].get_color())
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_history_plot_draws_its_legend_on_the_top_most_axes_so_no_curve_covers_it(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    hist = sd.History(history={"loss": [2.5, 1.5], "val_loss": [2.6, 1.8], "accuracy": [0.5, 0.9]}, epoch=[1, 2])
    fig = hist.plot(tmp_path / "loss.png")
    try:
        left, right = fig.axes
        assert left.get_legend() is None and right.get_legend() is not None
        assert right.get_zorder() >= left.get_zorder()  # drawn after (above) the left axes and its curves
        assert [t.get_text() for t in right.get_legend().get_texts()] == ["loss", "val_loss", "accuracy"]
        only_losses = sd.History(history={"loss": [2.5, 1.5]}, epoch=[1, 2]).plot(tmp_path / "l.png")
        assert [ax.get_legend() is not None for ax in only_losses.axes] == [True]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def to_rgba(colour):
    from matplotlib.colors import to_rgba as rgba

    return rgba(colour)


def _trained_history() -> sd.History:
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,))
    w = sd.Param("w", shape=(2,))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    data = {"x": X, "y": X @ np.array([1.0, -2.0])}
    params = sd.init_params(sd.mse(x @ w, y), seed=0)
    return sd.fit(sd.mse(x @ w, y), params, data, epochs=3, batch_size=5, progress=False, validation_data=data)


def test_history_save_json_holds_meta_first_then_the_history(tmp_path):
    history = _trained_history()
    history.save(tmp_path / "h.json", model="m.py", seed=0)
    text = (tmp_path / "h.json").read_text(encoding="utf-8")
    record = json.loads(text)
    assert list(record) == ["model", "seed", "seconds", "steps", "epoch", "history"]
    assert record["epoch"] == [1, 2, 3] and record["steps"] == 12 and record["history"] == history.history
    assert text.endswith("}\n")


def test_history_save_csv_has_a_row_per_epoch_with_exact_values(tmp_path):
    import csv

    history = _trained_history()
    history.save(tmp_path / "h.csv")
    rows = list(csv.reader((tmp_path / "h.csv").open(encoding="utf-8")))
    assert rows[0] == ["epoch", "loss", "val_loss"] and len(rows) == 4
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3]
    assert [float(r[1]) for r in rows[1:]] == history.history["loss"]


def test_history_save_refuses_an_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"use a \.json or \.csv path"):
        _trained_history().save(tmp_path / "h.txt")
    assert not (tmp_path / "h.txt").exists()


def test_epoch_logger_prints_the_first_every_nth_and_the_last_epoch():
    lines: list[str] = []
    logger = sd.train.EpochLogger(10, every=4, write=lines.append)
    for epoch in range(1, 11):
        logger.on_epoch_end(epoch, {"loss": 1.0 / epoch}, None)
    assert lines == ["epoch 1/10: loss 1.0000", "epoch 4/10: loss 0.2500", "epoch 8/10: loss 0.1250",
                     "epoch 10/10: loss 0.1000"]  # fmt: skip


def _linear_losses() -> tuple[sd.Expr, dict]:
    """W, and kind -> (loss of the logits x @ W, target data, the accuracy of logits z) for each loss kind."""
    x, W = sd.Input("x", shape=(None, 2)), sd.Param("W", shape=(2, 3))
    y, p = sd.Input("y", shape=(None,), dtype="int64"), sd.Input("p", shape=(None, 3))
    labels, probs = np.array([0, 1, 2, 2, 0]), np.eye(3)[[1, 1, 2, 0, 0]]
    return W, {
        "labels": (sd.softmax_cross_entropy(x @ W, y), {"y": labels}, lambda z: np.mean(z.argmax(-1) == labels)),
        "probs": (sd.softmax_cross_entropy(x @ W, p), {"p": probs}, lambda z: np.mean(z.argmax(-1) == [1, 1, 2, 0, 0])),
        "binary": (sd.sigmoid_cross_entropy(x @ W, p), {"p": probs}, lambda z: np.mean((z > 0) == (probs > 0.5))),
        "values": (sd.mse(x @ W, p), {"p": probs}, None),
        "hand-built": (sd.mean((x @ W - p) ** 2), {"p": probs}, None),
    }


@pytest.mark.parametrize("penalty", [False, True], ids=["plain", "penalized"])
@pytest.mark.parametrize("kind", ["labels", "probs", "binary", "values", "hand-built"])
def test_metrics_see_the_predictions_and_targets_of_each_loss_kind(kind, penalty) -> None:
    W, losses = _linear_losses()
    loss, targets, accuracy = losses[kind]
    if penalty:
        loss = loss + 0.01 * sd.sum(W**2)
    X, Wv = np.random.default_rng(0).normal(size=(5, 2)), np.random.default_rng(1).normal(size=(2, 3))
    seen = {}

    def grab(pred, target):
        seen.update(pred=pred, target=target)
        return 0.0

    logs = sd.evaluate(loss, {"W": Wv}, {"x": X, **targets}, metrics=[grab] + (["accuracy"] if accuracy else []))
    np.testing.assert_allclose(seen["pred"], X @ Wv)
    np.testing.assert_array_equal(seen["target"], next(iter(targets.values())))
    if accuracy is None:
        with pytest.raises(ValueError, match="metrics need predictions"):
            sd.evaluate(loss, {"W": Wv}, {"x": X, **targets}, metrics=["accuracy"])
    else:
        assert logs["accuracy"] == pytest.approx(accuracy(X @ Wv))


def test_metrics_of_mse_after_a_squared_difference_penalty_see_the_mse_predictions() -> None:
    x, t = sd.Input("x", shape=(None, 2)), sd.Input("t", shape=(None, 1))
    W = sd.Param("W", shape=(2, 1))
    loss = 0.1 * sd.sum((W - 0.5) ** 2) + sd.mse(x @ W, t)
    X, T = np.ones((4, 2)), np.zeros((4, 1))

    def bias(pred, target):
        return float(np.mean(pred - target))

    logs = sd.evaluate(loss, {"W": np.ones((2, 1))}, {"x": X, "t": T}, metrics=[bias])
    assert logs["bias"] == 2.0  # x @ W - t, not W - 0.5 (a graph walk found the penalty's square first)
