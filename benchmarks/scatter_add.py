"""Scatter-add kernels for the gradient of ``take`` (an embedding lookup): ``out[ids[j]] += g[j]``.

``python -m benchmarks.scatter_add [--quick]`` times, for 4096 ids into a ``(vocab, dim)`` table, NumPy's
``np.add.at`` on the rows against the alternatives (``np.bincount`` per column or on flat indices, sorting and
``np.add.reduceat``, a one-hot GEMM) and the kernel symdiff generates (``np.add.at`` on a flat view with one flat
index per element), checking each against ``np.add.at``. Best of 5 runs, milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import symdiff  # noqa: E402, F401  (registers the kernels)
from symdiff.ops.kernels import KERNELS  # noqa: E402


def add_at_rows(g, ids, vocab):
    out = np.zeros((vocab, g.shape[1]), dtype=g.dtype)
    np.add.at(out, ids, g)
    return out


def bincount_columns(g, ids, vocab):
    cols = [np.bincount(ids, weights=g[:, c], minlength=vocab) for c in range(g.shape[1])]
    return np.stack(cols, axis=1).astype(g.dtype, copy=False)


def bincount_flat(g, ids, vocab):
    dim = g.shape[1]
    flat = (ids[:, None] * dim + np.arange(dim)).reshape(-1)
    return np.bincount(flat, weights=g.reshape(-1), minlength=vocab * dim).reshape(vocab, dim).astype(g.dtype)


def sort_reduceat(g, ids, vocab):
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    out = np.zeros((vocab, g.shape[1]), dtype=g.dtype)
    out[s[starts]] = np.add.reduceat(g[order], starts, axis=0)
    return out


def onehot_gemm(g, ids, vocab):
    return (ids == np.arange(vocab)[:, None]).astype(g.dtype) @ g


def symdiff_kernel(g, ids, vocab):
    return KERNELS["_scatter_add"](g, ids, vocab, 0)


KERNELS_TIMED = [add_at_rows, bincount_columns, bincount_flat, sort_reduceat, onehot_gemm, symdiff_kernel]


def best(f, *args, reps: int = 5) -> float:
    """The fastest of ``reps`` runs, in milliseconds."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    """Print the table (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small size only (a smoke run)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n = 4096
    sizes = [(50, 16)] if args.quick else [(v, d) for v in (50, 1000, 10000) for d in (16, 64, 256)]
    print(f"NumPy {np.__version__}, {n} ids, best of 5, ms")
    print("| dtype | vocab | dim | " + " | ".join(k.__name__ for k in KERNELS_TIMED) + " |")
    print("|---" * (3 + len(KERNELS_TIMED)) + "|")
    for dtype in (np.float64, np.float32):
        for vocab, dim in sizes:
            ids = rng.integers(0, vocab, size=n)
            g = rng.normal(size=(n, dim)).astype(dtype)
            want = add_at_rows(g, ids, vocab)
            row = []
            for k in KERNELS_TIMED:
                if k is onehot_gemm and vocab > 1000:
                    row.append("-")  # vocab x n x dim multiply-adds: seconds
                    continue
                low = dtype == np.float32  # float32 sums in another order: rounding of the sizes summed
                np.testing.assert_allclose(k(g, ids, vocab), want, rtol=1e-4 if low else 1e-9, atol=1e-3 if low else 0)
                row.append(f"{best(k, g, ids, vocab):.3f}")
            print(f"| {np.dtype(dtype).name} | {vocab} | {dim} | " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
