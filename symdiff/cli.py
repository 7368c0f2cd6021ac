"""The ``symdiff`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

DEMO_EPILOG = """examples:
  symdiff demo                 build a 2-layer ReLU MLP, print its gradients and generated code
  symdiff demo --out step.py   also write the generated module to step.py
"""


def _demo(args: argparse.Namespace) -> int:
    import symdiff as sd
    from symdiff.printing import to_text_many

    t0 = time.perf_counter()
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    W1, b1 = sd.Param("W1", shape=(2, 16)), sd.Param("b1", shape=(16,))
    W2, b2 = sd.Param("W2", shape=(16, 2)), sd.Param("b2", shape=(2,))
    z1 = (x @ W1 + b1).named("z1")
    h1 = sd.relu(z1).named("h1")
    z2 = (h1 @ W2 + b2).named("z2")
    loss = sd.softmax_cross_entropy(z2, y)
    params = [W1, b1, W2, b2]
    grads = sd.grad(loss, params)

    print("# the model\n" + to_text_many({"loss": loss}))
    print(
        "\n# its gradients, derived by the chain rule and simplified\n"
        + to_text_many({f"d{p.label}": g for p, g in zip(params, grads)})
    )
    outputs = {"loss": loss, **{f"d{p.label}": g for p, g in zip(params, grads)}}
    source = sd.codegen(outputs, name="step")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(source)
        print(f"\n# generated NumPy code written to {args.out}")
    else:
        print("\n# the generated NumPy code\n" + source)

    rng = np.random.default_rng(0)
    n = 64
    X = rng.normal(size=(n, 2))
    Y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    values = {
        "W1": rng.normal(scale=0.5, size=(2, 16)),
        "b1": np.zeros(16),
        "W2": rng.normal(scale=0.5, size=(16, 2)),
        "b2": np.zeros(2),
        "x": X,
        "y": Y,
    }
    err = sd.check_grad(loss, params, values)
    step = sd.compile(outputs, name="step")
    out = step(**values)
    print(
        f"# loss at a random start: {float(out['loss']):.4f}; largest relative error of the gradients "
        f"against central differences: {err:.1e}"
    )
    print(f"# done in {time.perf_counter() - t0:.2f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``symdiff`` command."""
    parser = argparse.ArgumentParser(
        prog="symdiff",
        description="Symbolic tensor expressions -> readable chain-rule gradients -> NumPy code.",
    )
    from symdiff import __version__

    parser.add_argument("--version", action="version", version=f"symdiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="show the whole pipeline on a small ReLU network",
        description="Build a 2-layer ReLU MLP symbolically, print its derived gradients, "
        "generate NumPy code and check it against central differences.",
        epilog=DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", metavar="FILE", help="write the generated module to FILE instead of printing it")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:
        print(f"symdiff: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
