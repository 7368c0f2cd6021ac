"""The non-NumPy backends (symdiff.backends): the same graphs compiled for PyTorch and JAX give NumPy's values.

Every installed backend runs the generic op table's gradient cases (tests/test_ops_grad.py: the loss and its
gradients, lowered as ``sd.compile`` lowers them); a backend that is not installed is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import symdiff as sd
from symdiff.errors import UnsupportedError

from test_ops_grad import CASES, SPECS, _loss

BACKENDS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not installed"),
    )
    for name, module in (("torch", "torch"), ("jax", "jax"), ("cupy", "cupy"))
]

# Ops that have no Array API form in this increment: refused by name at compile time (test below), skipped here.
NUMPY_ONLY = {
    "sympy_fn",  # SymPy's printer writes NumPy calls
    *("conv2d", "conv2d_transpose", "conv2d_filters", "im2col", "col2im"),
    *("max_pool2d", "max_pool2d_grad", "max_pool2d_tangent", "avg_pool2d", "avg_pool2d_grad"),
    *("layer_norm", "batch_norm", "dropout_mask"),
}
# Cases one library cannot run as written: torch has no negative slice steps (x[::-2]).
LIBRARY_LIMITS = {("torch", "getitem", 0)}


def _gradient_outputs(spec, shapes, dtype):
    loss, params, values = _loss(spec, shapes, seed=1)
    outs = {"loss": loss, **{f"d{p.label}": g for p, g in zip(params, sd.grad(loss, params))}}
    return outs, {k: v.astype(dtype) for k, v in values.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_backend_matches_numpy_over_the_op_table(backend: str, spec, shapes) -> None:
    if spec.op in NUMPY_ONLY:
        pytest.skip(f"op {spec.op!r} has no Array API form yet (refused by name)")
    if (backend, spec.op, SPECS.index(spec) - SPECS.index(next(s for s in SPECS if s.op == spec.op))) in LIBRARY_LIMITS:
        pytest.skip(f"{backend} cannot run this {spec.op} case (a negative slice step)")
    outs, values = _gradient_outputs(spec, shapes, np.float64)
    want = sd.compile(outs)(**values)
    got = sd.compile(outs, backend=backend)(**values)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-12, atol=1e-12, err_msg=k)
