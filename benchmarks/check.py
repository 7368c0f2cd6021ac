"""Before timing: every peer must compute the reference loss and gradients from the same params and batches.

Each peer takes three steps with a large learning rate (a full batch, a partial batch of a different size,
then a full batch again, so stale per-shape workspaces are caught); before each step its params are read
back, and the gradient it applied is recovered as ``(p_before - p_after) / lr``. The float64 reference
(``models.reference_step``) is evaluated on the peer's own ``p_before``. Errors are relative to the largest
reference magnitude of each array. In float32 the gradient tolerance is the larger of a fixed one and ten
times the error that the same reference evaluated in float32 makes (deep networks accumulate rounding: at
depth 256 every correct float32 peer is ~1e-3 off the float64 gradients). A peer over the tolerance, or whose
params changed dtype, is excluded.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import models

TOL = {"float32": {"loss": 1e-5, "grad": 1e-4}, "float64": {"loss": 1e-12, "grad": 1e-10}}
CHECK_LR = 1.0


@dataclass
class CheckResult:
    ok: bool
    loss_err: float = 0.0
    grad_err: float = 0.0
    worst: str = ""
    message: str = ""
    grad_tol: float = 0.0


def check_peer(
    peer, spec: Any, dtype: str, params0: dict[str, np.ndarray], lr: float, model: ModuleType = models
) -> CheckResult:
    """Run the check on ``peer`` (then restore ``params0`` and the timing learning rate ``lr``).

    ``model``: the module whose ``make_batches`` and ``reference_step`` serve ``spec`` (``models`` for the
    MLPs, ``cnn`` for the convolutional nets).
    """
    make_batches, reference_step = model.make_batches, model.reference_step
    if not peer.checked:
        return CheckResult(True, message="not checked (computes no gradient)")
    n = spec.batch
    batches = make_batches(spec, dtype, count=2, seed=7)
    ((xp, yp),) = make_batches(spec, dtype, count=1, seed=8, rows=max(1, n // 2 + 1))
    tol = dict(TOL[dtype])
    res = CheckResult(True)
    try:
        peer.set_lr(CHECK_LR)
        for x, y in (batches[0], (xp, yp), batches[1]):
            before = peer.get_params()
            loss = peer.step(peer.convert(x, y))
            after = peer.get_params()
            ref_loss, ref_g = reference_step(before, x, y)
            if dtype == "float32":  # the rounding error a plain float32 evaluation makes on this step
                _, g32 = reference_step(before, x, y, dtype="float32")
                e32 = max(float(np.max(np.abs(g32[k] - g)) / max(np.max(np.abs(g)), 1e-30)) for k, g in ref_g.items())
                tol["grad"] = max(tol["grad"], 10 * e32)
            lerr = abs(float(loss) - ref_loss) / max(1.0, abs(ref_loss))
            res.loss_err = max(res.loss_err, lerr)
            for k, g in ref_g.items():
                if after[k].dtype != np.dtype(dtype):
                    return CheckResult(False, message=f"{k} became {after[k].dtype} (expected {dtype})")
                got = (before[k].astype(np.float64) - after[k].astype(np.float64)) / CHECK_LR
                err = float(np.max(np.abs(got - g)) / max(np.max(np.abs(g)), 1e-30))
                if not np.isfinite(err):
                    err = np.inf
                if err > res.grad_err:
                    res.grad_err, res.worst = err, f"{k} (batch of {x.shape[0]})"
    except Exception as exc:  # a peer that fails is reported, not fatal
        return CheckResult(False, message=f"{type(exc).__name__}: {exc}")
    finally:
        try:
            peer.set_params(params0)
            peer.set_lr(lr)
        except Exception:  # noqa: BLE001
            pass
    res.grad_tol = tol["grad"]
    if res.loss_err > tol["loss"] or res.grad_err > tol["grad"]:
        res.ok = False
        res.message = (
            f"disagrees: loss error {res.loss_err:.1e} (tol {tol['loss']:.0e}), "
            f"gradient error {res.grad_err:.1e} at {res.worst} (tol {tol['grad']:.1e})"
        )
    return res
