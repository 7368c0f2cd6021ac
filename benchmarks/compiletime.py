"""Preparation time versus depth, each measured in a fresh process: ``python -m benchmarks.compiletime``.

The model is a width-64 ReLU MLP: ``depth`` hidden layers 64 -> 64, then a 64 -> 10 output layer,
softmax cross-entropy, batch 128. A fresh process per measurement keeps caches (symdiff's hash-consed
nodes, JAX's compilation cache) from carrying over between depths; imports are not timed.

symdiff phases: ``graph`` (building the model with ``sd.Input``/``sd.dense`` and the loss),
``compile_step`` (``sd.compile_step``: gradient, simplification, code generation, ``exec``), ``first`` (the
first ``step.run``). ``grad_only`` is ``sd.grad`` of a second, identically shaped but differently named model
in the same process, to show how much of ``compile_step`` the gradient takes.
JAX phases: ``first`` (``jax.jit`` of the update traced, compiled and run once).

The fused backend: ``python -m benchmarks.compiletime fused`` prints, for width-32 MLPs of 1, 2, 4 and 8 hidden
layers trained by SGD and Adam, the seconds of the first step (Numba's compile) in a process with an empty cache
(``SYMDIFF_CACHE`` a fresh folder: cold) and in a second process that loads the machine code (warm), as wall and
CPU seconds (the CPU seconds vary less on a shared machine). One depth alone: ``symdiff --backend numba``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _symdiff(depth: int, width: int, batch: int, dtype: str, backend: str = "numpy", optimizer: str = "sgd") -> dict:
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
    opt = sd.optim.SGD(lr=1e-4) if optimizer == "sgd" else sd.optim.Adam(lr=1e-4)
    step = sd.compile_step(loss, params, opt, backend=backend)
    t2, cpu = time.perf_counter(), time.process_time()
    step.run({"x": x, "y": y})
    t3 = time.perf_counter()
    out = {"graph": t1 - t0, "compile_step": t2 - t1, "first": t3 - t2, "total": t3 - t0}
    out["first_cpu"] = time.process_time() - cpu
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
    ap.add_argument("framework", choices=("symdiff", "jax", "fused"))
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "numba"))
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    a = ap.parse_args(argv)
    if a.framework == "fused":
        print(fused_table(width=32, batch=a.batch, dtype=a.dtype))
        return 0
    out = {"framework": a.framework, "depth": a.depth}
    try:
        if a.framework == "symdiff":
            out.update(_symdiff(a.depth, a.width, a.batch, a.dtype, a.backend, a.optimizer))
        else:
            out.update(_jax(a.depth, a.width, a.batch, a.dtype))
    except RecursionError as exc:
        out["error"] = f"RecursionError: {exc}"
    print(json.dumps(out))
    return 0


def measure(
    framework: str,
    depth: int,
    width: int = 64,
    batch: int = 128,
    dtype: str = "float32",
    timeout: float = 300.0,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> dict:
    """One measurement in a fresh process (``extra``: more options, ``env``: its environment)."""
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
        *extra,
    ]
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"framework": framework, "depth": depth, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"framework": framework, "depth": depth, "error": tail[:300]}
    return json.loads(lines[-1])


def fused_table(
    depths: tuple[int, ...] = (1, 2, 4, 8), width: int = 32, batch: int = 128, dtype: str = "float32"
) -> str:
    """The fused backend's compile time by depth: the first step cold (an empty cache) and warm (the cache the cold
    process filled), wall and CPU seconds, as a Markdown table."""
    rows = ["| optimizer | hidden layers | cold s (CPU s) | warm s (CPU s) |", "|---|---|---|---|"]
    for optimizer in ("sgd", "adam"):
        for depth in depths:
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "SYMDIFF_CACHE": cache}
                runs = [
                    measure(
                        "symdiff",
                        depth,
                        width,
                        batch,
                        dtype,
                        extra=("--backend", "numba", "--optimizer", optimizer),
                        env=env,
                    )
                    for _ in ("cold", "warm")
                ]
            cells = [f"{r['first']:.2f} ({r['first_cpu']:.2f})" if "first" in r else r.get("error", "?") for r in runs]
            rows.append(f"| {optimizer} | {depth} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
