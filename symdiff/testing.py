"""Numerical gradient checking (central differences in float64) for users and for the tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .autodiff import grad
from .graph import Expr, check_targets_used, constant, make, topo_order

__all__ = ["check_grad", "numeric_grad", "to_float64"]


def to_float64(exprs: Sequence[Expr]) -> list[Expr]:
    """The same graphs with every float symbol, constant and cast in float64 (for precise checks)."""
    memo: dict[int, Expr] = {}
    for n in topo_order(exprs):
        if n.op in ("input", "param") and n.dtype.kind == "f" and n.dtype != np.float64:
            attrs = dict(n.attrs, dtype=np.dtype("float64").str)
            new = make(n.op, (), attrs)
        elif n.op == "const" and n.dtype.kind == "f" and n.dtype != np.float64 and not n.attrs["weak"]:
            new = constant(n.attrs["value"].array.astype(np.float64))
        elif n.op == "cast" and np.dtype(n.attrs["dtype"]).kind == "f":
            new = make("cast", (memo[id(n.args[0])],), dict(n.attrs, dtype=np.dtype("float64").str))
        else:
            args = tuple(memo[id(a)] for a in n.args)
            new = n if all(a is b for a, b in zip(args, n.args)) else make(n.op, args, n.attrs, n.name)
        memo[id(n)] = new
    return [memo[id(e)] for e in exprs]


def numeric_grad(
    f: Any, values: Mapping[str, np.ndarray], name: str, eps: float = 1e-6, indices: Sequence[tuple] | None = None
) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f(**values)`` with respect to ``values[name]``.

    Only the elements at ``indices`` are computed when given (the others are left as NaN).
    """
    base = {
        k: np.array(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
        for k, v in values.items()
    }
    x = base[name]
    out = np.full(x.shape, np.nan)
    for idx in indices if indices is not None else np.ndindex(x.shape):
        orig = x[idx]
        x[idx] = orig + eps
        fp = float(f(**base))
        x[idx] = orig - eps
        fm = float(f(**base))
        x[idx] = orig
        out[idx] = (fp - fm) / (2 * eps)
    return out


def check_grad(
    loss: Expr,
    wrt: Expr | Sequence[Expr],
    values: Mapping[str, Any],
    *,
    eps: float = 1e-6,
    max_points: int = 256,
    seed: int = 0,
) -> float:
    """Largest relative error between symdiff's gradients and central differences, in float64.

    For each target, ``max|analytic - numeric| / max(max|analytic|, max|numeric|, 1e-6)`` over up to
    ``max_points`` elements (all when the target is that small, else a seeded random sample); the maximum
    over targets is returned. Values below ~1e-6 mean the gradients agree to rounding.
    """
    from .runtime import compile as _compile

    targets = [wrt] if isinstance(wrt, Expr) else list(wrt)
    check_targets_used([loss], targets, "check_grad")
    graph = to_float64([loss, *targets])
    loss64, targets64 = graph[0], graph[1:]
    grads = grad(loss64, targets64)
    f_loss = _compile(loss64, name="loss")
    f_grads = _compile({f"g{i}": g for i, g in enumerate(grads)}, name="grads")
    names = {t.label for t in targets64}
    inputs = {k: v for k, v in values.items() if k in f_grads.inputs or k in f_loss.inputs or k in names}
    analytic = f_grads(**{k: v for k, v in inputs.items() if k in f_grads.inputs})
    rng = np.random.default_rng(seed)
    worst = 0.0

    def f(**kw: Any) -> Any:
        return f_loss(**{k: v for k, v in kw.items() if k in f_loss.inputs})

    for i, t in enumerate(targets64):
        name = t.label
        if name is None or name not in values:
            raise ValueError(f"check_grad: targets must be symbols with values, missing {name!r}")
        shape = np.shape(values[name])
        size = int(np.prod(shape))
        if size <= max_points:
            idx = list(np.ndindex(shape))
        else:
            idx = [np.unravel_index(j, shape) for j in rng.choice(size, max_points, replace=False)]
        num = numeric_grad(f, inputs, name, eps=eps, indices=idx)
        ana = np.broadcast_to(analytic[f"g{i}"], shape)
        sel = tuple(np.array(ix) for ix in zip(*idx)) if shape else ()
        a, n = np.asarray(ana[sel], dtype=np.float64), np.asarray(num[sel])
        scale = max(float(np.max(np.abs(a), initial=0)), float(np.max(np.abs(n), initial=0)), 1e-6)
        worst = max(worst, float(np.max(np.abs(a - n), initial=0)) / scale)
    return worst
