"""Layers and losses (symdiff/nn.py): targets must have the prediction's shape; losses record what they are."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd


@pytest.mark.parametrize("loss", [sd.mse, sd.sigmoid_cross_entropy])
def test_loss_refuses_a_target_that_would_broadcast_to_an_n_by_n_loss(loss) -> None:
    pred = sd.Input("z", shape=(None, 1))
    with pytest.raises(sd.ShapeError, match=r"shapes \(None, 1\) and \(None,\).*y\.reshape\(-1, 1\)") as err:
        loss(pred, sd.Input("y", shape=(None,)))
    assert "sd.Input('y', shape=(None, 1))" in str(err.value)


@pytest.mark.parametrize("loss", [sd.mse, sd.sigmoid_cross_entropy])
def test_loss_refuses_a_target_that_broadcasts_along_an_axis(loss) -> None:
    with pytest.raises(sd.ShapeError, match=r"shapes \(None, 3\) and \(3,\)"):
        loss(sd.Input("z", shape=(None, 3)), np.zeros(3))
    with pytest.raises(sd.ShapeError, match=r"shapes \(None, 3\) and \(None, 1\)"):
        loss(sd.Input("z", shape=(None, 3)), sd.Input("t", shape=(None, 1)))
    with pytest.raises(sd.ShapeError, match=r"shapes \(2, 3\) and \(\)"):
        loss(sd.Param("z", shape=(2, 3)), 0.5)


def test_softmax_cross_entropy_refuses_labels_that_are_not_one_per_row() -> None:
    logits = sd.Input("z", shape=(None, 3))
    with pytest.raises(sd.ShapeError, match=r"labels of shape \(None, 1\).*y\.reshape\(-1\)"):
        sd.softmax_cross_entropy(logits, sd.Input("y", shape=(None, 1), dtype="int64"))


def test_softmax_cross_entropy_hints_int64_for_float_labels() -> None:
    logits = sd.Input("z", shape=(None, 3))
    with pytest.raises(sd.ShapeError, match=r"float targets of shape \(None,\).*dtype='int64'"):
        sd.softmax_cross_entropy(logits, sd.Input("y", shape=(None,)))


def test_softmax_cross_entropy_refuses_probabilities_of_another_shape() -> None:
    with pytest.raises(sd.ShapeError, match=r"targets of shape \(None, 1\) do not match logits of shape \(None, 3\)"):
        sd.softmax_cross_entropy(sd.Input("z", shape=(None, 3)), sd.Input("p", shape=(None, 1)))


def test_losses_accept_targets_of_the_prediction_shape() -> None:
    z = sd.Input("z", shape=(None, 3))
    assert sd.mse(z, sd.Input("t", shape=(None, 3))).shape == ()
    assert sd.sigmoid_cross_entropy(z, sd.Input("t", shape=(None, 3))).shape == ()
    assert sd.softmax_cross_entropy(z, sd.Input("y", shape=(None,), dtype="int64")).shape == ()
    assert sd.softmax_cross_entropy(z, sd.Input("p", shape=(None, 3))).shape == ()


def _kinds():
    """Each nn loss with its logits (or predictions) and targets."""
    z = sd.Input("z", shape=(None, 3), dtype="float32")
    y = sd.Input("y", shape=(None,), dtype="int64")
    p, t = sd.Input("p", shape=(None, 3)), sd.Input("t", shape=(None, 3))
    return [
        ("labels", sd.softmax_cross_entropy, z, y),
        ("probs", sd.softmax_cross_entropy, z, p),
        ("binary", sd.sigmoid_cross_entropy, z, t),
        ("values", sd.mse, z, t),
    ]


@pytest.mark.parametrize("kind, loss, pred, target", _kinds(), ids=[case[0] for case in _kinds()])
def test_each_nn_loss_records_its_kind_logits_and_targets(kind, loss, pred, target) -> None:
    info = sd.nn.loss_info(loss(pred, target))
    assert info == sd.nn.LossInfo(kind, pred, target) and info.pred is pred and info.target is target


def test_loss_record_follows_a_loss_through_a_penalty_and_a_scale() -> None:
    W = sd.Param("W", shape=(2, 3))
    x, y = sd.Input("x", shape=(None, 2)), sd.Input("y", shape=(None,), dtype="int64")
    z = x @ W
    for loss in [sd.softmax_cross_entropy(z, y) + 0.01 * sd.sum(W**2), 2.0 * sd.softmax_cross_entropy(z, y)]:
        assert sd.nn.loss_info(loss) == sd.nn.LossInfo("labels", z, y)


def test_loss_record_of_mse_beats_a_squared_difference_in_its_penalty() -> None:
    x, t = sd.Input("x", shape=(None, 2)), sd.Input("t", shape=(None, 1))
    W, W0 = sd.Param("W", shape=(2, 1)), sd.Input("W0", shape=(2, 1))
    loss = 0.1 * sd.sum((W - W0) ** 2) + sd.mse(x @ W, t)  # the graph walk used to take W and W0 as pred and target
    assert sd.nn.loss_info(loss) == sd.nn.LossInfo("values", x @ W, t)
    z = sd.Input("z", shape=(None, 1))
    assert sd.nn.loss_info(sd.sigmoid_cross_entropy(z, z)) == sd.nn.LossInfo("binary", z, z)  # z * z hid the target


def test_loss_info_recognises_hand_built_losses_and_nothing_else() -> None:
    x, w = sd.Input("x", shape=(None, 2)), sd.Param("w", shape=(2, 1))
    y = sd.Input("y", shape=(None, 1))
    assert sd.nn.loss_info(sd.mean((x @ w - y) ** 2)) == sd.nn.LossInfo("values", x @ w, y)
    z, labels = sd.Input("z", shape=(None, 3)), sd.Input("k", shape=(None,), dtype="int64")
    hand = sd.mean(-sd.pick(sd.log_softmax(z), labels))
    assert sd.nn.loss_info(hand + 0.5 * sd.sum(w**2)) == sd.nn.LossInfo("labels", z, labels)
    assert sd.nn.loss_info(sd.sum(sd.tanh(x @ w))) is None


def test_dense_activations_are_the_op_table_entries_marked_activation(monkeypatch) -> None:
    import dataclasses

    from symdiff.ops import OPS

    marked = [name for name, opdef in OPS.items() if opdef.activation]
    assert list(sd.nn.ACTIVATIONS) == marked
    assert set(marked) == {"relu", "tanh", "sigmoid", "softmax", "softplus"}
    x = sd.Input("x", shape=(None, 3))
    for name in marked:
        assert sd.dense(x, 2, f"l_{name}", activation=name).op == name
    with pytest.raises(ValueError, match="unknown activation 'gelu'; choose from " + ", ".join(marked)):
        sd.dense(x, 2, "l", activation="gelu")
    monkeypatch.setitem(OPS, "sin", dataclasses.replace(OPS["sin"], activation=True))  # read on use: no second list
    assert "sin" in sd.nn.ACTIVATIONS and sd.dense(x, 2, "l_sin", activation="sin").op == "sin"
