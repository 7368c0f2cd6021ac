"""Preparation time versus depth, each measured in a fresh process: ``python -m benchmarks.compiletime``.

The model is a width-64 ReLU MLP: ``depth`` hidden layers 64 -> 64, then a 64 -> 10 output layer,
softmax cross-entropy, batch 128. A fresh process per measurement keeps caches (symdiff's hash-consed
nodes, JAX's compilation cache) from carrying over between depths; imports are not timed.

symdiff phases: ``graph`` (building the model with ``sd.Input``/``sd.dense`` and the loss),
``compile_step`` (``sd.compile_step``: gradient, simplification, code generation, ``exec``), ``first`` (the
first ``step.run``). ``grad_only`` is ``sd.grad`` of a second, identically shaped but differently named model
in the same process, to show how much of ``compile_step`` the gradient takes.
JAX phases: ``first`` (``jax.jit`` of the update traced, compiled and run once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _symdiff(depth: int, width: int, batch: int, dtype: str) -> dict:
    import numpy as np

    import symdiff as sd

    from .models import deep_spec, init_params, make_batches

    spec = deep_spec(depth, width, batch)
    p0 = init_params(spec, dtype)
    ((x, y),) = make_batches(spec, dtype, count=1)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))  # the default; symdiff must live with it

    def build(prefix: str):
        xin = sd.Input("x", shape=(None, width), dtype=dtype)
        yin = sd.Input("y", shape=(None,), dtype="int64")
        h = xin
        for i in range(spec.layers):
            last = i == spec.layers - 1
            h = sd.dense(h, spec.dims[i + 1], f"{prefix}{i}", activation=None if last else "relu", dtype=dtype)
        return sd.softmax_cross_entropy(h, yin)

    t0 = time.perf_counter()
    loss = build("l")
    t1 = time.perf_counter()
    params = {f"l{i}_{k}": np.array(p0[f"{k}{i}"]) for i in range(spec.layers) for k in ("W", "b")}
    step = sd.compile_step(loss, params, sd.optim.SGD(lr=1e-4))
    t2 = time.perf_counter()
    step.run({"x": x, "y": y})
    t3 = time.perf_counter()
    out = {"graph": t1 - t0, "compile_step": t2 - t1, "first": t3 - t2, "total": t3 - t0}
    out["source_lines"] = step.source.count("\n")
    loss2 = build("m")
    targets = [e for e in sd.graph.leaves([loss2]) if e.op == "param"]
    t4 = time.perf_counter()
    sd.grad(loss2, targets)
    out["grad_only"] = time.perf_counter() - t4
    return out


def _jax(depth: int, width: int, batch: int, dtype: str) -> dict:
    import jax
    import jax.numpy as jnp

    from .models import deep_spec, init_params, make_batches

    spec = deep_spec(depth, width, batch)
    p0 = init_params(spec, dtype)
    ((x, y),) = make_batches(spec, dtype, count=1)
    L = spec.layers
    t0 = time.perf_counter()
    p = [jnp.asarray(p0[f"{k}{i}"]) for i in range(L) for k in ("W", "b")]

    def loss_fn(p, x, y):
        h = x
        for i in range(L - 1):
            h = jax.nn.relu(h @ p[2 * i] + p[2 * i + 1])
        z = h @ p[2 * L - 2] + p[2 * L - 1]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))

    @jax.jit
    def update(p, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        return [a - 1e-4 * b for a, b in zip(p, g)], loss

    p, loss = update(p, x, y)
    float(loss)
    t1 = time.perf_counter()
    return {"first": t1 - t0, "total": t1 - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compiletime")
    ap.add_argument("framework", choices=("symdiff", "jax"))
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args(argv)
    fn = _symdiff if a.framework == "symdiff" else _jax
    out = {"framework": a.framework, "depth": a.depth}
    try:
        out.update(fn(a.depth, a.width, a.batch, a.dtype))
    except RecursionError as exc:
        out["error"] = f"RecursionError: {exc}"
    print(json.dumps(out))
    return 0


def measure(
    framework: str, depth: int, width: int = 64, batch: int = 128, dtype: str = "float32", timeout: float = 300.0
) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.compiletime",
        framework,
        "--depth",
        str(depth),
        "--width",
        str(width),
        "--batch",
        str(batch),
        "--dtype",
        dtype,
    ]
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"framework": framework, "depth": depth, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"framework": framework, "depth": depth, "error": tail[:300]}
    return json.loads(lines[-1])


if __name__ == "__main__":
    sys.exit(main())
