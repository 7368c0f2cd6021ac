"""symdiff against an earlier symdiff, side by side: ``python -m benchmarks.versus REV``.

``REV`` is a git revision of this repository (``main``, ``HEAD~3``, a commit) or a folder holding another
symdiff checkout. Each round runs one fresh worker process per version and size, in alternating order, so
both versions see the same drift of a shared machine; a worker times blocks of steps of the benchmark MLP
(float32 by default) and reports the median block. The table gives, per size and call path, both medians
and the median of the per-round ratios (this tree / REV):

- ``step.run``: the training step as ``sd.fit`` calls it (arrays already checked);
- ``step(**batch)``: the public call of a training step, argument checks included;
- ``compiled``: ``sd.compile`` of the loss and its gradients, called with params and a batch.

The OpenBLAS variables the harness unsets (``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``) are unset here too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("step.run", "step(**batch)", "compiled")


def _worker(size: str, dtype: str, seconds: float) -> dict[str, float]:
    """Median µs per call of each path, timed in this process against whichever symdiff it imports."""
    import gc

    import numpy as np

    import symdiff as sd
    from benchmarks.models import SIZES, init_params, make_batches
    from benchmarks.peers import symdiff_mlp
    from benchmarks.timing import calibrate

    spec = SIZES[size]
    loss, names = symdiff_mlp(spec, dtype)
    params = {names[k]: v for k, v in init_params(spec, dtype).items()}
    step = sd.compile_step(loss, params, sd.optim.SGD(lr=1e-3))
    targets = sd.params(loss)
    fn = sd.compile({"loss": loss, **{f"d{p.label}": g for p, g in zip(targets, sd.grad(loss, targets))}})
    batches = [{"x": x, "y": y} for x, y in make_batches(spec, dtype)]
    checked = [step.check(b) for b in batches]

    def looped(call):
        def loop(k: int) -> None:
            for i in range(k):
                call(i % len(batches))

        return loop

    loops = {
        "step.run": looped(lambda i: step.run(checked[i])),
        "step(**batch)": looped(lambda i: step(**batches[i])),
        "compiled": looped(lambda i: fn(**params, **batches[i])),
    }
    out = {}
    for path, loop in loops.items():
        k = calibrate(loop, 0.02)
        blocks = []
        end = time.perf_counter() + seconds
        gc.disable()
        try:
            while time.perf_counter() < end or len(blocks) < 3:
                t0 = time.perf_counter()
                loop(k)
                blocks.append((time.perf_counter() - t0) / k * 1e6)
        finally:
            gc.enable()
        out[path] = float(np.median(blocks))
    return out


def _checkout(rev: str, into: str) -> str:
    """A folder whose ``symdiff/`` is that of ``rev`` (a folder as it is, or a git revision exported)."""
    if os.path.isdir(os.path.join(rev, "symdiff")):
        return os.path.abspath(rev)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "symdiff"], capture_output=True, check=False
    )
    if archive.returncode:
        raise SystemExit(f"versus: {rev!r} is neither a symdiff folder nor a git revision: {archive.stderr.decode()}")
    with tempfile.TemporaryFile() as fh:
        fh.write(archive.stdout)
        fh.seek(0)
        with tarfile.open(fileobj=fh) as tar:
            tar.extractall(into, filter="data")
    return into


def _run_worker(tree: str, size: str, dtype: str, seconds: float, keep_env: bool) -> dict[str, float]:
    env = dict(os.environ)
    if not keep_env:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    env["PYTHONPATH"] = os.pathsep.join([tree, str(ROOT)])  # that symdiff first, then benchmarks/ of this tree
    cmd = [sys.executable, __file__, "--worker", size, "--dtype", dtype, "--seconds", str(seconds)]
    proc = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"versus: the worker for {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def compare(rev: str, sizes: list[str], rounds: int, dtype: str, seconds: float, keep_env: bool) -> str:
    """The markdown table of this tree against ``rev`` (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="symdiff-versus-") as tmp:
        trees = {"this tree": str(ROOT), rev: _checkout(rev, tmp)}
        times: dict[tuple[str, str, str], list[float]] = {}
        for r in range(rounds):
            for size in sizes:
                order = list(trees) if r % 2 == 0 else list(trees)[::-1]
                for who in order:
                    for path, us in _run_worker(trees[who], size, dtype, seconds, keep_env).items():
                        times.setdefault((size, path, who), []).append(us)
                print(f"[versus] round {r + 1}/{rounds} {size} done", file=sys.stderr, flush=True)
    lines = [
        f"symdiff (this tree) against {rev}, {dtype}, {rounds} rounds: median µs per call; ratio = median of per-round"
        " ratios (this tree / that)",
        "",
        f"| size | call | this tree | {rev} | ratio |",
        "|---|---|---|---|---|",
    ]
    for size in sizes:
        for path in PATHS:
            new, old = times[(size, path, "this tree")], times[(size, path, rev)]
            ratio = statistics.median(a / b for a, b in zip(new, old))
            row = f"| {size} | `{path}` | {statistics.median(new):.1f} | {statistics.median(old):.1f} | {ratio:.3f} |"
            lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versus", description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", nargs="?", help="a git revision of this repository, or a folder with another symdiff")
    parser.add_argument("--sizes", default="tiny,medium,large", help="comma-separated: tiny, medium, large")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of alternating workers (default 6)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per call path in one worker (default 1)")
    parser.add_argument("--keep-openblas-env", action="store_true", help="leave OPENBLAS_* variables as they are")
    parser.add_argument("--worker", metavar="SIZE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.dtype, args.seconds)))
        return 0
    if not args.rev:
        parser.error("give a git revision or a folder to compare against")
    sizes = args.sizes.split(",")
    from benchmarks.models import SIZES

    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r} (sizes: {', '.join(SIZES)})")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print(compare(args.rev, sizes, args.rounds, args.dtype, args.seconds, args.keep_openblas_env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
