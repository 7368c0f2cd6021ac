"""Does GEMM-level fusion through SciPy's BLAS pay? ``python -m benchmarks.blas_fusion [--sizes medium]``.

The question behind a design choice of the NumPy backend. BLAS ``gemm`` computes ``C = alpha * A @ B + beta * C``,
so an SGD update can run inside the weight-gradient product (``W -= lr/n * h.T @ d`` as one call with
``alpha=-1, beta=1, c=W``: no gradient array, no separate pass over ``W``), a bias gradient inside its GEMV
(``b -= ones @ d``), and a bias add inside the forward product (``C`` preloaded with the broadcast bias). NumPy's
``matmul`` has no ``beta``; SciPy exposes ``gemm`` (``scipy.linalg.blas``).

Three hand-written steps of the benchmark MLP, timed side by side:

- ``numpy``: :class:`benchmarks.peers.HandNumpy`, the stronger hand-written baseline;
- ``scipy fused``: the same step with every product through SciPy's ``gemm``/``gemv``, the updates and bias
  gradients fused into them (no gradient arrays, no update passes);
- ``scipy fused + bias``: also the forward bias add folded into the product.

Two timings: **steady**, a long pause before each block (each peer finds the machine as a program that runs only
it does), and **switching**, no pause, so that one library's BLAS threads still spin when the other starts. NumPy
and SciPy wheels each bundle their own OpenBLAS, with their own thread pools: a process that calls both pays for
it (see ``RESULTS.md``). The ratio column is the median of the per-round ratios to ``numpy``.
"""

from __future__ import annotations

import argparse

import numpy as np

from .models import SIZES, init_params, make_batches
from .peers import HandNumpy
from .timing import interleave, median, quartiles, round_ratios


def _blas(dtype: np.dtype):
    from scipy.linalg import blas

    return (blas.sgemm, blas.sgemv) if dtype == np.float32 else (blas.dgemm, blas.dgemv)


class HandScipyFused(HandNumpy):
    """HandNumpy's step with the products through SciPy's BLAS, the SGD updates and bias gradients inside them.

    Arrays are C-ordered; Fortran's ``gemm`` sees their transposes, so ``C = A @ B`` runs as ``C.T = B.T @ A.T``
    (every operand a transposed view, nothing copied).
    """

    bias_in_gemm = False

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        self.gemm, self.gemv = _blas(np.dtype(dtype))
        self.step = self._fused_step

    def _matmul(self, a, b, c, alpha=1.0, beta=0.0, a_transposed=False):
        """``c = alpha * op(a) @ b + beta * c`` in place, ``op(a)`` = ``a.T`` when ``a_transposed``."""
        return self.gemm(alpha, b.T, a.T, beta=beta, c=c.T, trans_b=int(a_transposed), overwrite_c=1)

    def _fused_step(self, batch):
        x, y = batch
        n = x.shape[0]
        ws = self._ws.get(n) or self._workspace(n)
        acts, deltas, masks, _, _, _, _, ones = ws
        W, b, L, gemm = self.W, self.b, self.layers, self.gemm
        h = x
        for i in range(L):
            a = acts[i]
            if self.bias_in_gemm:
                a[...] = b[i]
                self._matmul(h, W[i], a, beta=1.0)
            else:
                self._matmul(h, W[i], a)
                np.add(a, b[i], out=a)
            if i < L - 1:
                np.maximum(a, 0, out=a)
            h = a
        z = acts[L - 1]
        loss = self._softmax_ce(z, y, ws)
        d = z
        for i in range(L - 1, -1, -1):
            h = x if i == 0 else acts[i - 1]
            if i > 0:  # the input gradient reads W before its update
                g = deltas[i - 1]
                gemm(1.0, W[i].T, d.T, c=g.T, trans_a=1, overwrite_c=1)  # g = d @ W.T
            self._matmul(h, d, W[i], alpha=-1.0, beta=1.0, a_transposed=True)  # W -= h.T @ d
            self.gemv(-1.0, d, ones, beta=1.0, y=b[i], trans=1, overwrite_y=1)  # b -= ones @ d
            if i > 0:
                np.greater(h, 0, out=masks[i - 1])
                np.multiply(g, masks[i - 1], out=g)
                d = g
        return float(loss)


class HandScipyFusedBias(HandScipyFused):
    bias_in_gemm = True


def measure(size: str, dtype: str, rounds: int, pause_s: float) -> dict[str, tuple[float, float, float, float]]:
    """Per peer: median µs per step, median per-round ratio to ``numpy`` and its quartiles."""
    spec = SIZES[size]
    params = init_params(spec, dtype)
    batches = make_batches(spec, dtype)
    lr = 1e-3
    peers = {
        "numpy": HandNumpy(spec, params, dtype, lr),
        "scipy fused": HandScipyFused(spec, params, dtype, lr),
        "scipy fused + bias": HandScipyFusedBias(spec, params, dtype, lr),
    }
    reference = None
    for name, peer in peers.items():  # the same step: equal losses and parameters after one step
        loss = peer.make_loop([batches[0]])(1)
        after = peer.get_params()
        if reference is None:
            reference = (loss, after)
        else:
            scale = max(float(np.abs(v).max()) for v in reference[1].values())
            err = max(float(np.abs(after[k] - reference[1][k]).max()) for k in after) / scale
            tol = 1e-5 if dtype == "float32" else 1e-12
            if abs(loss - reference[0]) > tol * abs(reference[0]) or err > tol:
                raise AssertionError(f"{name} differs from numpy: loss {loss} vs {reference[0]}, params {err:.1e}")
        peer.set_params(params)
    times, _ = interleave({k: p.make_loop(batches) for k, p in peers.items()}, rounds, pause_s=pause_s)
    out = {}
    for name, ts in times.items():
        ratios = round_ratios(ts, times["numpy"])
        lo, hi = quartiles(ratios)
        out[name] = (median(ts) * 1e6, median(ratios), lo, hi)
    return out


HEADING = "## GEMM-level fusion through SciPy's BLAS: does it pay?"
PEERS = ("numpy", "scipy fused", "scipy fused + bias")


def report(sizes=("tiny", "medium", "large"), dtype: str = "float32", rounds: int = 12) -> list[str]:
    """The markdown section: per size, both timings of the three hand-written steps."""
    lines = [
        HEADING,
        "",
        "Hand-written steps of the benchmark MLP (`python -m benchmarks.blas_fusion`): NumPy's, and the same step with "
        "every product through SciPy's `gemm`/`gemv`, the SGD update and the bias gradient fused into them (no "
        "gradient arrays, no update passes), and also the forward bias add folded in. Steady: a 0.4 s pause before "
        "each block; switching: no pause, so one library's BLAS threads still spin when the other starts (NumPy and "
        f"SciPy each bundle their own OpenBLAS). {dtype}, µs per step (median per-round ratio to NumPy, IQR).",
        "",
        f"| size | timing | {' | '.join(PEERS)} |",
        "|---|---|---|---|---|",
    ]
    for size in sizes:
        for timing, pause in (("steady", 0.4), ("switching", 0.0)):
            res = measure(size, dtype, rounds, pause)
            cells = [f"{us:.1f} ({r:.2f}, {lo:.2f}–{hi:.2f})" for us, r, lo, hi in res.values()]
            lines.append(f"| {size} | {timing} | {' | '.join(cells)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blas_fusion", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,medium,large")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args(argv)
    print("\n".join(report(tuple(args.sizes.split(",")), args.dtype, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
