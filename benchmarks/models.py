"""The benchmarked model: a ReLU MLP with softmax cross-entropy, its sizes, data and initial parameters.

Parameters use neutral names ``W0, b0, W1, b1, ...`` (``W_i`` of shape ``(dims[i], dims[i+1])``); each peer
maps them to its own. ``reference_step`` is a plain float64 NumPy forward and backward used only to check
that every peer computes the same loss and gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spec:
    """An MLP ``dims[0] -> dims[1] -> ... -> dims[-1]`` (ReLU between layers) trained on batches of ``batch``."""

    name: str
    dims: tuple[int, ...]
    batch: int

    @property
    def layers(self) -> int:
        return len(self.dims) - 1

    @property
    def label(self) -> str:
        if len(self.dims) > 6:
            inner = sorted(set(self.dims[1:-1]))
            return (
                f"{self.dims[0]}-({'/'.join(map(str, inner))})x{len(self.dims) - 2}-{self.dims[-1]}, batch {self.batch}"
            )
        return "-".join(map(str, self.dims)) + f", batch {self.batch}"

    def gemm_flops(self) -> int:
        """FLOPs of the matmuls of one training step: forward, weight gradients, input gradients but the first."""
        n, d = self.batch, self.dims
        fwd = sum(2 * n * d[i] * d[i + 1] for i in range(self.layers))
        back_inputs = sum(2 * n * d[i] * d[i + 1] for i in range(1, self.layers))
        return 2 * fwd + back_inputs


SIZES: dict[str, Spec] = {
    "tiny": Spec("tiny", (64, 32, 10), 32),
    "medium": Spec("medium", (784, 256, 256, 10), 128),
    "large": Spec("large", (784, 1024, 1024, 10), 512),
}


def deep_spec(depth: int, width: int = 64, batch: int = 128, classes: int = 10) -> Spec:
    """``depth`` hidden ReLU layers of ``width`` units (input ``width``), then a ``classes``-way output layer."""
    return Spec(f"deep{depth}", (width,) * (depth + 1) + (classes,), batch)


def init_params(spec: Spec, dtype: str = "float32", seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal weights and small random biases (so a peer that drops a bias is caught by the check)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    dt = np.dtype(dtype)
    for i in range(spec.layers):
        fan_in, fan_out = spec.dims[i], spec.dims[i + 1]
        w = rng.standard_normal((fan_in, fan_out), dtype=dt)  # drawn in the dtype: no float64 temporary
        w *= dt.type(np.sqrt(2.0 / fan_in))
        out[f"W{i}"] = w
        out[f"b{i}"] = rng.standard_normal(fan_out, dtype=dt) * dt.type(0.01)
    return out


def make_batches(spec: Spec, dtype: str = "float32", count: int = 4, seed: int = 1, rows: int | None = None):
    """``count`` batches ``(x, y)``: x uniform in [0, 1) like pixel intensities, y integer labels (int64)."""
    rng = np.random.default_rng(seed)
    n = rows or spec.batch
    batches = []
    for _ in range(count):
        x = rng.random((n, spec.dims[0]), dtype=np.dtype(dtype))
        y = rng.integers(0, spec.dims[-1], size=n, dtype=np.int64)
        batches.append((x, y))
    return batches


def softmax_ce_reference(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean softmax cross-entropy of ``logits`` at labels ``y`` and its gradient w.r.t. the logits, plainly."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(n), y].mean()
    delta = np.exp(logp)
    delta[np.arange(n), y] -= 1
    return loss, delta / n


def reference_step(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, dtype: str = "float64"):
    """Loss and gradients (float64 unless told), written for clarity: ``(loss, {name: grad})``."""
    p = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    x = np.asarray(x, dtype=dtype)
    layers = len(p) // 2
    acts = [x]
    for i in range(layers):
        z = acts[-1] @ p[f"W{i}"] + p[f"b{i}"]
        acts.append(np.maximum(z, 0) if i < layers - 1 else z)
    loss, delta = softmax_ce_reference(acts[-1], y)
    grads: dict[str, np.ndarray] = {}
    for i in reversed(range(layers)):
        grads[f"W{i}"] = acts[i].T @ delta
        grads[f"b{i}"] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ p[f"W{i}"].T) * (acts[i] > 0)
    return float(loss), grads
