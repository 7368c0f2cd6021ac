"""The OpenBLAS environment variables that slow NumPy on some machines, and re-running without them.

``OPENBLAS_CORETYPE`` forces OpenBLAS's kernel choice (e.g. ``Haswell`` on an AVX-512 machine) and
``OPENBLAS_L2_SIZE`` its blocking; both are read once when the library loads. For measurement the harness
re-executes itself (and so all its subprocesses) without them, unless ``--keep-openblas-env`` is given,
and records what was set in ``SYMDIFF_BENCH_UNSET`` so the report can say so. Imports no NumPy.
"""

from __future__ import annotations

import os
import sys

VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MARK = "SYMDIFF_BENCH_UNSET"


def reexec_without_openblas_env(argv: list[str]) -> None:
    """Replace this process by ``python -m benchmarks ARGV`` without the variables, when any is set."""
    if "--keep-openblas-env" in argv or "-h" in argv or "--help" in argv:
        return
    found = {k: os.environ[k] for k in VARS if k in os.environ}
    if not found or MARK in os.environ:
        return
    env = {k: v for k, v in os.environ.items() if k not in VARS}
    env[MARK] = ";".join(f"{k}={v}" for k, v in found.items())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *argv], env)


def describe() -> str:
    """What was set in the caller's environment and what this process runs with."""
    unset = os.environ.get(MARK)
    now = {k: os.environ[k] for k in VARS if k in os.environ}
    if unset:
        was = ", ".join(unset.split(";"))
        return f"set in the calling environment ({was}); unset by the harness for all its measurements"
    if now:
        return "set and kept for the measurements (" + ", ".join(f"{k}={v}" for k, v in now.items()) + ")"
    return "not set"
