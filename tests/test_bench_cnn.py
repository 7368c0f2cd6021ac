"""The CNN benchmark's baseline and peers compute the right gradients (``benchmarks/cnn.py``).

The expert hand-written NumPy step is checked against central differences of its own loss in float64, and the
float64 reference the harness checks every peer against is checked against the hand-written step; then each
peer (PyTorch, JAX, symdiff, where available) must pass the harness's check on a non-square two-block net.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives beside tests/, not in the package
from benchmarks import check, cnn  # noqa: E402

# two conv blocks on a non-square image with several channels: (8, 4, 2) -> (4, 2, 3) -> (2, 1, 4) -> 5 classes
MINI = cnn.CNNSpec("mini", (8, 4, 2), (3, 4), 5, 3)


def applied_gradient(peer, batch) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One step at lr = 1: the loss, the params before, and the gradient the step applied (before - after)."""
    before = peer.get_params()
    loss = peer.step(peer.convert(*batch))
    after = peer.get_params()
    return loss, before, {k: before[k] - after[k] for k in before}


def test_hand_cnn_gradients_match_central_differences_in_float64():
    p0 = cnn.init_params(MINI, "float64", seed=3)
    hand = cnn.HandCNN(MINI, p0, "float64", 1.0)
    ((x, y),) = cnn.make_batches(MINI, "float64", count=1, seed=4)
    loss0, before, grads = applied_gradient(hand, (x, y))

    def loss_at(params):  # the step returns the loss before its update; the params are reset each time
        hand.set_params(params)
        return hand.step((x, y))

    eps = 1e-6
    for name, g in grads.items():
        numeric = np.empty_like(g)
        for idx in np.ndindex(g.shape):
            plus = {k: v.copy() for k, v in before.items()}
            minus = {k: v.copy() for k, v in before.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric[idx] = (loss_at(plus) - loss_at(minus)) / (2 * eps)
        scale = max(np.max(np.abs(numeric)), 1e-6)
        assert np.max(np.abs(g - numeric)) / scale < 1e-7, name
        assert np.any(g != 0), name  # every parameter is reached by the gradient
    assert abs(loss_at(before) - loss0) < 1e-12


def test_cnn_reference_agrees_with_the_hand_step_on_both_sizes():
    for spec in (MINI, cnn.SIZES["small"]):
        p0 = cnn.init_params(spec, "float64")
        ((x, y),) = cnn.make_batches(spec, "float64", count=1, rows=5)
        loss, before, grads = applied_gradient(cnn.HandCNN(spec, p0, "float64", 1.0), (x, y))
        ref_loss, ref = cnn.reference_step(before, x, y)
        assert abs(loss - ref_loss) < 1e-12
        assert sorted(ref) == sorted(grads)
        for k, g in ref.items():
            np.testing.assert_allclose(grads[k], g, rtol=0, atol=1e-12 * np.max(np.abs(g)), err_msg=k)


def test_hand_cnn_routes_a_tied_window_once():
    """A channel whose inputs all died outputs its bias everywhere: every pooling window is a tie, and the
    bias gradient must count each window once (a mask ``window == max`` alone would count it four times)."""
    p0 = cnn.init_params(MINI, "float64")
    p0["W0"][:] = 0.0
    p0["b0"][:] = -1.0  # block 0's ReLU outputs are all zero: block 1 sees zeros
    p0["b1"][:] = 0.5  # so block 1's pre-activations are exactly its bias, positive
    ((x, y),) = cnn.make_batches(MINI, "float64", count=1)
    _, before, grads = applied_gradient(cnn.HandCNN(MINI, p0, "float64", 1.0), (x, y))
    _, ref = cnn.reference_step(before, x, y)
    assert np.any(ref["b1"] != 0)
    np.testing.assert_allclose(grads["b1"], ref["b1"], rtol=1e-12, atol=1e-15)


class WrongConvBias(cnn.HandCNN):
    """The hand-written step with a bug: the first conv bias moves twice as far as its gradient says."""

    def _step(self, batch):
        before = self.b[0].copy()
        loss = super()._step(batch)
        self.b[0] += self.b[0] - before
        return loss


def test_cnn_check_accepts_the_hand_step_and_rejects_a_wrong_one():
    spec = cnn.SIZES["small"]
    p0 = cnn.init_params(spec, "float32")
    good = check.check_peer(cnn.HandCNN(spec, p0, "float32", 0.01), spec, "float32", p0, 0.01, model=cnn)
    assert good.ok and good.grad_err < check.TOL["float32"]["grad"], good.message
    bad = check.check_peer(WrongConvBias(spec, p0, "float32", 0.01), spec, "float32", p0, 0.01, model=cnn)
    assert not bad.ok and bad.worst.startswith("b0") and "disagrees" in bad.message


@pytest.mark.parametrize("key", ["torch", "jax", "symdiff"])
@pytest.mark.parametrize("spec", [MINI, cnn.SIZES["small"]], ids=["mini", "small"])
def test_cnn_peer_agrees_with_the_reference(key, spec):
    cls = cnn.PEERS[key]
    missing = cls.missing()
    if missing:
        pytest.skip(missing)
    p0 = cnn.init_params(spec, "float32")
    res = check.check_peer(cls(spec, p0, "float32", 0.01), spec, "float32", p0, 0.01, model=cnn)
    assert res.ok, res.message


def test_cnn_spec_shapes_and_labels():
    small, large = cnn.SIZES["small"], cnn.SIZES["large"]
    assert small.shapes() == {"W0": (3, 3, 1, 16), "b0": (16,), "W1": (256, 10), "b1": (10,)}
    assert large.convs() == [(32, 32, 3, 32), (16, 16, 32, 64)] and large.features == 8 * 8 * 64
    assert large.batch == 128 and small.batch == 64
    assert small.label == "8×8×1: conv 3×3×16 → pool → dense 10, batch 64"
