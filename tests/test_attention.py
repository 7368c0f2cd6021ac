"""Causal self-attention from plain ops: ``@`` on 3-D tensors, ``softmax(axis=-1)`` and the mask as ``sd.where``.

Its values match an independent NumPy implementation, its gradients (float64) match central differences
(``sd.check_grad``), and the causal mask really cuts the gradient: position t's output does not depend on any
input at a later position, so that gradient is exactly zero, not merely small.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import symdiff as sd
from symdiff.testing import random_values

STEPS, FEATURES, WIDTH = 5, 3, 4


def attention(x: sd.Expr) -> tuple[sd.Expr, list[sd.Expr]]:
    """One causal self-attention head with a residual: ``x + softmax(mask(q k^T / sqrt(d))) v W_o``."""
    W_q, W_k, W_v = (sd.Param(f"W_{c}", shape=(FEATURES, WIDTH), dtype="float64") for c in "qkv")
    W_o = sd.Param("W_o", shape=(WIDTH, FEATURES), dtype="float64")
    q, k, v = x @ W_q, x @ W_k, x @ W_v
    scores = q @ sd.swapaxes(k, 1, 2) / math.sqrt(WIDTH)
    causal = sd.constant(np.tril(np.ones((STEPS, STEPS), dtype=bool)))
    attn = sd.softmax(sd.where(causal, scores, -1e9), axis=-1)
    return x + (attn @ v) @ W_o, [W_q, W_k, W_v, W_o]


def numpy_attention(values: dict[str, np.ndarray]) -> np.ndarray:
    x = values["x"]
    q, k, v = x @ values["W_q"], x @ values["W_k"], x @ values["W_v"]
    scores = np.einsum("ntd,nsd->nts", q, k) / np.sqrt(WIDTH)
    scores[:, ~np.tril(np.ones((STEPS, STEPS), dtype=bool))] = -np.inf
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return x + (e / e.sum(axis=-1, keepdims=True)) @ v @ values["W_o"]


def block():
    x = sd.Input("x", shape=(None, STEPS, FEATURES), dtype="float64")
    out, params = attention(x)
    return x, out, params


def test_attention_values_match_numpy():
    x, out, _ = block()
    values = random_values([out], seed=1, batch=3)
    got = sd.compile({"out": out})(**values)["out"]
    np.testing.assert_allclose(got, numpy_attention(values), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attention_gradients_match_central_differences(seed):
    x, out, params = block()
    r = sd.constant(np.random.default_rng(10 + seed).normal(size=(STEPS, FEATURES)))
    loss = sd.sum(sd.tanh(out) * r)  # every output element weighted differently
    values = random_values([loss], seed=seed, batch=3)
    assert sd.check_grad(loss, [*params, x], values) < 1e-7


def test_attention_gradients_through_a_softmax_cross_entropy():
    x, out, params = block()
    y = sd.Input("y", shape=(None, STEPS), dtype="int64")
    loss = sd.softmax_cross_entropy(out, y)  # per token: logits (N, STEPS, FEATURES)
    values = random_values([loss], seed=4, batch=2)
    values["y"] = np.random.default_rng(5).integers(0, FEATURES, size=(2, STEPS))
    assert sd.check_grad(loss, [*params, x], values) < 1e-7


def test_causal_mask_blocks_gradients_from_future_positions():
    x, out, _ = block()
    values = random_values([out], seed=3, batch=2)
    weights = np.random.default_rng(6).normal(size=FEATURES)
    for t in range(STEPS):
        loss = sd.sum(out[:, t, :] * weights)  # position t's output alone
        dx = sd.compile({"dx": sd.grad(loss, x)})(**values)["dx"]
        assert np.all(dx[:, t + 1 :, :] == 0.0), t  # exactly zero: no path from later inputs
        assert np.all(np.abs(dx[:, : t + 1, :]).sum(axis=2) > 0), t  # every earlier input (and t itself) counts
