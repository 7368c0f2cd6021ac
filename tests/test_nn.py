"""Layers and losses (symdiff/nn.py): targets must have the prediction's shape."""

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
