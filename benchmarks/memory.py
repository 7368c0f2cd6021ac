"""Peak memory of training steps, measured in a fresh process: ``python -m benchmarks.memory PEER ...``.

The process (started through a trampoline, see ``TRAMPOLINE``) imports only NumPy, the benchmark's model
module and the peer's own framework, builds the peer, runs ``--steps`` steps on one batch and prints a JSON
line with ``ru_maxrss`` (the peak resident set size, imports included) in MiB, after setup and after the
steps, and ``VmHWM`` from /proc as a cross-check. ``PEER`` may be ``numpy-only``: the interpreter with NumPy
imported and the parameters and batch created, as a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def maxrss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024.0 if sys.platform != "darwin" else kib / 2**20


def vmhwm_mib() -> float | None:
    """The peak RSS of this process image from /proc (Linux), a cross-check of ru_maxrss."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# Linux carries the parent's peak RSS into a child's ru_maxrss when the child is started with vfork/fork
# + exec (the old address space's high-water mark is kept at exec). The measured interpreter is therefore
# started by a small trampoline interpreter (no site, no NumPy) that forks it: what it inherits is the
# trampoline's few MiB, below any measurement.
TRAMPOLINE = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    ap.add_argument("peer")
    ap.add_argument("--size", default="large")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.01)
    a = ap.parse_args(argv)
    from .models import SIZES, init_params, make_batches

    spec = SIZES[a.size]
    params = init_params(spec, a.dtype)
    ((x, y),) = make_batches(spec, a.dtype, count=1)
    out = {"peer": a.peer, "size": a.size, "dtype": a.dtype, "steps": a.steps}
    if a.peer != "numpy-only":
        from .peers import ALL

        peer = ALL[a.peer](spec, params, a.dtype, a.lr)
        del params
        batch = peer.convert(x, y)
        out["setup_mib"] = maxrss_mib()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            peer.step(batch)
        out["seconds"] = time.perf_counter() - t0
    out["peak_mib"] = maxrss_mib()
    out["vmhwm_mib"] = vmhwm_mib()
    print(json.dumps(out))
    return 0


def measure(peer: str, size: str, dtype: str, steps: int, timeout: float = 600.0) -> dict:
    """Run the measurement in a fresh interpreter; ``{"error": ...}`` when it fails."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [
        sys.executable,
        "-S",
        "-c",
        TRAMPOLINE,
        sys.executable,
        "-m",
        "benchmarks.memory",
        peer,
        "--size",
        size,
        "--dtype",
        dtype,
        "--steps",
        str(steps),
    ]
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"peer": peer, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"peer": peer, "error": tail[:200]}
    return json.loads(lines[-1])


if __name__ == "__main__":
    sys.exit(main())
