"""``python -m benchmarks.gpu [--device cuda] [--size large]``: the MLP training step on a GPU, checked, then timed.

For each installed GPU library (PyTorch, JAX) it first checks that symdiff's compiled loss and gradients on the
device equal the float64 NumPy reference (relative error below 1e-4 in float32), then times the SGD training step
(forward, backward, update; params and batches on the device) beside symdiff's NumPy step on the CPU. The
issue-12 CNNs are listed as not runnable: convolution and pooling have no Array API form yet, so a GPU backend
refuses them by name. ``--device cpu`` runs the same script without a GPU (the test suite does).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

import symdiff as sd
from symdiff.errors import UnsupportedError

from .backends import check, time_steps
from .cnn import SIZES as CNN_SIZES
from .cnn import symdiff_cnn
from .models import SIZES

LIBRARIES = ("torch", "jax")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the device to run on (default cuda; cpu for a dry run)")
    parser.add_argument("--size", default="large", choices=sorted(SIZES), help="the MLP size (default large)")
    args = parser.parse_args(argv)
    spec = SIZES[args.size]
    print(f"{args.size} MLP {spec.label}, float32, SGD step; device {args.device}")
    cpu = time_steps(spec, "numpy")
    print(f"  numpy (CPU) {cpu:10.0f} us/step")
    for lib in LIBRARIES:
        if importlib.util.find_spec(lib) is None:
            print(f"  {lib:11s} skipped: not installed")
            continue
        err = check(spec, lib, device=args.device)
        assert err < 1e-4, f"{lib}: loss/gradients differ from the float64 reference by {err:.2e}"
        us = time_steps(spec, lib, device=args.device)
        print(f"  {lib:11s} {us:10.0f} us/step  x{us / cpu:5.2f} of numpy on the CPU  (max rel. error {err:.1e})")
    for name in CNN_SIZES:
        loss = symdiff_cnn(CNN_SIZES[name], "float32")[0]
        try:
            sd.codegen(loss, backend=LIBRARIES[0], device=args.device)
        except (sd.BackendError, UnsupportedError) as exc:
            print(f"  {name} CNN: not runnable on {LIBRARIES[0]}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
