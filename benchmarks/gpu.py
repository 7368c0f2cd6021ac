"""``python -m benchmarks.gpu [--device cuda]``: the large MLP and the issue-12 CNNs on a GPU, checked, then timed.

For each model and each installed GPU library (PyTorch, JAX) it first checks that symdiff's compiled loss and
gradients on the device equal the float64 NumPy reference (relative error below 1e-4 in float32), then times the
SGD training step (forward, backward, update; params and batches on the device) beside symdiff's NumPy step on the
CPU. The libraries compute in full float32, as NumPy does: TF32 (their default for GPU convolutions or matmuls, a
10-bit mantissa: errors near 1e-3) is turned off for the run. ``--device cpu`` runs the same script without a GPU
(the test suite does, with ``--size tiny --cnn small --steps 2``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any

from .backends import CNN, MLP, Model, check, time_steps
from .cnn import SIZES as CNN_SIZES
from .models import SIZES

LIBRARIES = ("torch", "jax")


def _full_float32(lib: str) -> None:
    """Turn off the library's TF32 arithmetic on GPUs (matmuls and convolutions then round as NumPy's float32)."""
    if lib == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif lib == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")


def report(
    device: str, mlp: str = "large", cnns: tuple[str, ...] = ("small", "large"), steps: int = 20, repeats: int = 5
) -> list[str]:
    """Markdown lines: one table row per model and library (NumPy on the CPU first), after each library's check
    against the float64 reference (an ``AssertionError`` names a library whose error exceeds 1e-4)."""
    runs: list[tuple[str, Model, Any]] = [(f"{mlp} MLP {SIZES[mlp].label}", MLP, SIZES[mlp])]
    runs += [(f"{name} CNN {CNN_SIZES[name].label}", CNN, CNN_SIZES[name]) for name in cnns]
    lines = [
        f"Float32 SGD training step (forward, backward, update), params and batches on the device ({device}); "
        "NumPy on the CPU.",
        "",
        "| model | library | µs/step | × NumPy CPU | max rel. error |",
        "|---|---|---:|---:|---:|",
    ]
    for title, model, spec in runs:
        timing = {"steps": steps, "repeats": repeats, "model": model}
        err = check(spec, "numpy", model=model)
        cpu = time_steps(spec, "numpy", **timing)
        lines.append(f"| {title} | numpy (CPU) | {cpu:.0f} | 1.00 | {err:.1e} |")
        for lib in LIBRARIES:
            if importlib.util.find_spec(lib) is None:
                lines.append(f"| {title} | {lib} | not installed | | |")
                continue
            _full_float32(lib)
            err = check(spec, lib, device=device, model=model)
            assert err < 1e-4, f"{title}, {lib}: loss/gradients differ from the float64 reference by {err:.2e}"
            us = time_steps(spec, lib, device=device, **timing)
            lines.append(f"| {title} | {lib} ({device}) | {us:.0f} | {us / cpu:.2f} | {err:.1e} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the device to run on (default cuda; cpu for a dry run)")
    parser.add_argument("--size", default="large", choices=sorted(SIZES), help="the MLP size (default large)")
    parser.add_argument("--cnn", nargs="*", default=["small", "large"], choices=sorted(CNN_SIZES), help="CNN sizes")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed run (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs, the median reported (default 5)")
    args = parser.parse_args(argv)
    print("\n".join(report(args.device, args.size, tuple(args.cnn), args.steps, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
