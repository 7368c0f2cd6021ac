"""``python -m benchmarks.backends [medium large]``: the MLP training step on each installed array backend.

For every size it first checks that the compiled loss and gradients on each backend equal the float64 reference
(``models.reference_step``), then times ``steps`` training steps (SGD) of each, the NumPy step included, and prints
one line per backend: microseconds per step (median of ``repeats``) and the ratio to NumPy's.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import symdiff as sd

from . import cnn, models
from .models import SIZES, Spec

BACKENDS = ("numpy", "torch", "jax")


def mlp_loss(spec: Spec, dtype: str = "float32") -> sd.Expr:
    """The benchmarked ReLU MLP with softmax cross-entropy, params named ``W0, b0, ...``."""
    h = sd.Input("x", shape=(None, spec.dims[0]), dtype=dtype)
    y = sd.Input("y", shape=(None,), dtype="int64")
    for i in range(spec.layers):
        w = sd.Param(f"W{i}", shape=(spec.dims[i], spec.dims[i + 1]), dtype=dtype)
        b = sd.Param(f"b{i}", shape=(spec.dims[i + 1],), dtype=dtype)
        h = h @ w + b
        h = sd.relu(h) if i < spec.layers - 1 else h
    return sd.softmax_cross_entropy(h, y)


@dataclass(frozen=True)
class Model:
    """A benchmarked model family: ``build(spec)`` gives its float32 symdiff loss and the map of the neutral param
    names (``W0, b0, ...``) to its own; the rest come from its benchmark module (neutral names, float64
    reference)."""

    build: Callable[[Any], tuple[sd.Expr, dict[str, str]]]
    init_params: Callable[..., dict[str, np.ndarray]]
    make_batches: Callable[..., list]
    reference_step: Callable[..., tuple[float, dict[str, np.ndarray]]]


def _mlp(spec: Spec) -> tuple[sd.Expr, dict[str, str]]:
    loss = mlp_loss(spec)
    return loss, {p.label: p.label for p in sd.params(loss)}


MLP = Model(_mlp, models.init_params, models.make_batches, models.reference_step)
CNN = Model(lambda spec: cnn.symdiff_cnn(spec, "float32"), cnn.init_params, cnn.make_batches, cnn.reference_step)


def check(spec: Any, backend: str, device: str | None = None, model: Model = MLP) -> float:
    """The largest relative difference of the backend's loss and gradients from the float64 reference."""
    loss, names = model.build(spec)
    params = model.init_params(spec)
    by_label = {p.label: p for p in sd.params(loss)}
    targets = [by_label[names[k]] for k in params]
    f = sd.compile({"loss": loss, **dict(zip(params, sd.grad(loss, targets)))}, backend=backend, device=device)
    ((x, y),) = model.make_batches(spec, count=1)
    out = f(**{names[k]: v for k, v in params.items()}, x=x, y=y)
    want_loss, want = model.reference_step(params, x, y)
    worst = abs(float(np.asarray(out["loss"])) - want_loss) / abs(want_loss)
    for k in params:
        got = np.asarray(out[k], dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(got - want[k])) / np.max(np.abs(want[k]))))
    return worst


def time_steps(
    spec: Any, backend: str, steps: int = 20, repeats: int = 5, device: str | None = None, model: Model = MLP
) -> float:
    """Median microseconds per training step (SGD) over ``repeats`` runs of ``steps`` steps, after a warm-up."""
    loss, names = model.build(spec)
    params = {names[k]: v for k, v in model.init_params(spec).items()}
    options = {"backend": backend} if device is None else {"backend": backend, "device": device}
    step = sd.compile_step(loss, params, sd.optim.SGD(lr=0.01), **options)
    batches = [step.check({"x": x, "y": y}) for x, y in model.make_batches(spec)]
    if backend != "numpy":  # the data on the device once, as a training run keeps its batches
        from symdiff.runtime import to_backend

        batches = [to_backend(step.fn, b) for b in batches]
    run = step.run
    value = run(batches[0])  # warm-up: jit compilation, allocations
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            value = run(batches[i % len(batches)])
        float(np.asarray(value))  # waits for the device
        times.append((time.perf_counter() - t0) / steps * 1e6)
    step.pull()
    return statistics.median(times)


def main(argv: list[str]) -> int:
    sizes = argv or ["medium"]
    installed = [b for b in BACKENDS if b == "numpy" or importlib.util.find_spec(b) is not None]
    for size in sizes:
        spec = SIZES[size]
        print(f"{size} MLP {spec.label}, float32, SGD step (forward, backward, update)")
        base = None
        for backend in installed:
            err = check(spec, backend)
            assert err < 1e-4, f"{backend}: loss/gradients differ from the reference by {err:.2e}"
            us = time_steps(spec, backend)
            base = base or us
            print(f"  {backend:6s} {us:9.0f} us/step  x{us / base:5.2f} of numpy   (max rel. error {err:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
