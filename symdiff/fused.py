"""The fused backend: the whole training step as one function compiled by Numba (``backend="numba"``).

At small sizes the NumPy backend's time is the overhead of its calls, one per operation, not their arithmetic. This
backend writes the step -- forward, backward, the finiteness guard and the optimizer's update -- as one
``@numba.njit`` function:

* each element-wise op is inlined into the loop of the array it feeds, so a chain of them is one loop; its scalar
  form is its NumPy form applied to scalars (``np.maximum(a, 0)``, ``a * b``), one home for both;
* a reduction accumulates its (inlined) operand in one loop (in float64), ``pick`` and ``onehot_sub`` index the
  labels in the loop that reads them;
* matrix products call BLAS through ``np.dot``;
* the optimizer's update of a parameter and its slots is one loop, run after the guard has found every gradient
  finite, so that a refused step changes nothing.

The module stays standalone (it imports NumPy and Numba) and readable; ``cache=True`` keeps the machine code on disk
beside it. ``pip install "symdiff[numba]"``. An op outside this set is refused by name (:func:`check_fusable`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .autodiff import grad
from .codegen import dtype_source
from .errors import UnsupportedError
from .graph import Expr, Input, constant, topo_order
from .lower import lower, pool_before_increasing
from .memory import shape_source
from .naming import NameAllocator, grad_name
from .ops.registry import ATOM, Fmt
from .optim import Optimizer
from .printing import _take_labels
from .simplify import simplify

__all__ = ["check_fusable", "fused_step_source"]

VIEWS = ("transpose", "squeeze", "expand_dims")
INDEXED = ("pick", "onehot_sub")
REDUCTIONS = ("sum", "max")
# Element-wise ops whose NumPy form does not apply to scalars under Numba (x.astype(...), np.clip): their scalar form.
SCALAR_FORMS = {
    "cast": lambda n, a: f"{dtype_source(n.dtype)}({a[0]})",
    "clip": lambda n, a: f"np.minimum(np.maximum({a[0]}, {a[1]}), {a[2]})",
}


def _refuse(node: Expr, why: str) -> UnsupportedError:
    return UnsupportedError(f"op {node.op!r} cannot run on backend 'numba' yet: {why}")


def check_fusable(roots: Sequence[Expr]) -> None:
    """Refuse, by the op's name, a graph the fused backend cannot write yet."""
    for n in topo_order(list(roots)):
        if n.is_symbol or n.op == "dim" or n.op in REDUCTIONS or n.op in VIEWS:
            continue
        if n.op == "const":
            if n.ndim:
                raise _refuse(n, "array constants")
        elif n.op == "matmul":
            if n.args[0].ndim != 2 or n.args[1].ndim != 2:
                raise _refuse(n, "matrix products of 2-D arrays only")
        elif n.op in INDEXED:
            if n.args[1].ndim != 1 or n.args[0].ndim != 2 or not n.args[1].is_symbol:
                raise _refuse(n, "1-D labels (an input, checked in the loop) of 2-D arrays only")
        elif not n.opdef.elementwise or n.opdef.numpy is None or n.opdef.random or n.opdef.kernels:
            raise _refuse(n, "not an element-wise op of NumPy's ufuncs")
        if n.ndim > 2:
            raise _refuse(n, "arrays of more than 2 axes")


class _Writer:
    """The statements of one njit function computing ``roots`` (materialized) from its symbols."""

    def __init__(self, roots: Sequence[Expr], taken: Sequence[str], names: Sequence[str | None] = ()) -> None:
        self.order = topo_order(list(roots))
        self.uses: Counter[int] = Counter(id(a) for n in self.order for a in n.args)
        self.uses.update(id(r) for r in roots)
        self.consumer = {id(a): n for n in self.order for a in n.args}
        self.alloc = NameAllocator([*taken, *(n.label for n in self.order if n.is_symbol)])
        self.labels = _take_labels(list(roots), [*names] + [None] * (len(roots) - len(names)), self.order, self.alloc)
        self.var: dict[int, str] = {id(n): n.label for n in self.order if n.is_symbol}
        self.lines: list[str] = []
        self.roots = {id(r) for r in roots}

    # -- what gets an array of its own -------------------------------------------------------------------------
    def inlined(self, n: Expr) -> bool:
        """Whether ``n`` is computed inside the loop that reads it (a single-use element-wise or indexing op read
        by another of them or by a reduction, over the same shape)."""
        if id(n) in self.roots or self.uses[id(n)] != 1 or not (n.opdef.elementwise or n.op in INDEXED):
            return False
        user = self.consumer[id(n)]
        loop = user.args[0].shape if user.op in REDUCTIONS else user.shape
        return (user.opdef.elementwise or user.op in INDEXED or user.op in REDUCTIONS) and n.shape == loop

    # -- scalar and array forms --------------------------------------------------------------------------------
    def scalar(self, n: Expr, idx: Sequence[str]) -> Fmt:
        """The value of ``n`` at index ``idx`` (one entry per axis of ``n``) as a scalar expression."""
        if id(n) in self.var:
            name = self.var[id(n)]
            return Fmt(f"{name}[{', '.join(idx)}]" if n.ndim else name, ATOM)
        if n.op == "const":
            return n.opdef.numpy(n, [])
        if n.op == "transpose":
            return self.scalar(n.args[0], [idx[n.attrs["axes"].index(j)] for j in range(n.ndim)])
        if n.op == "squeeze":
            it = iter(idx)
            return self.scalar(n.args[0], [("0" if j in n.attrs["axis"] else next(it)) for j in range(n.args[0].ndim)])
        if n.op == "expand_dims":
            return self.scalar(n.args[0], [i for j, i in enumerate(idx) if j not in n.attrs["axis"]])
        if n.op == "pick":
            x, labels = n.args
            return self.scalar(x, [idx[0], self.scalar(labels, idx).text])
        if n.op == "onehot_sub":
            x, labels, v = n.args
            at = self.scalar(labels, idx[:1]).text
            return Fmt(f"{self.scalar(x, idx).text} - ({self.scalar(v, []).text} if {idx[1]} == {at} else 0)", 0)
        args = [self.scalar(a, _broadcast(idx, a.shape, n.shape)) for a in n.args]
        if n.op in SCALAR_FORMS:  # whose NumPy form is an array method or wrapper Numba has no scalar form of
            return Fmt(SCALAR_FORMS[n.op](n, [a.text for a in args]), ATOM)
        return n.opdef.numpy(n, args)

    def array(self, n: Expr) -> str:
        """``n`` as an array expression: a materialized array or a transpose of one (made first if need be)."""
        if n.op == "transpose" and id(n) not in self.var:
            return f"{self.array(n.args[0])}.T"
        if id(n) not in self.var:  # another view, or a computation inlined elsewhere: an array of its own here
            name = self.alloc.take(n.opdef.hint or n.op, numbered=True)
            self._loop(n, name)
            self.var[id(n)] = name
        return self.var[id(n)]

    # -- statements --------------------------------------------------------------------------------------------
    def emit(self) -> None:
        for n in self.order:
            if id(n) in self.var or (n.op in ("const", *VIEWS) and id(n) not in self.roots):
                continue
            if self.inlined(n):
                continue
            name = self.labels.get(id(n)) or self.alloc.take(n.opdef.hint or n.op, numbered=True)
            if n.op == "dim":
                self.lines.append(f"{name} = {self.array(n.args[0])}.shape[{n.attrs['axis']}]")
            elif n.op == "matmul":
                self.lines.append(f"{name} = np.dot({self.array(n.args[0])}, {self.array(n.args[1])})")
            elif n.op in REDUCTIONS:
                self._reduction(n, name)
            else:
                self._loop(n, name)
            self.var[id(n)] = name

    def _loop(self, n: Expr, name: str) -> None:
        if n.ndim == 0:
            self.lines.append(f"{name} = {self.scalar(n, []).text}")
            return
        self.lines.append(f"{name} = np.empty({_shape(n)}, dtype={dtype_source(n.dtype)})")
        idx = _index(n)
        self.lines += _nest(n, idx, [f"{name}[{', '.join(idx)}] = {self.scalar(n, idx).text}"])

    def _reduction(self, n: Expr, name: str) -> None:
        x, axes = n.args[0], n.attrs["axis"]
        idx = _index(x)
        kept = [("0" if n.attrs["keepdims"] else None) if k in axes else i for k, i in enumerate(idx)]
        kept = [k for k in kept if k is not None]
        value = self.scalar(x, idx).text
        start = "0.0" if n.op == "sum" else "-np.inf"
        if n.ndim == 0:
            acc = self.alloc.take(f"{name}_acc")
            self.lines.append(f"{acc} = {start}")
            step = f"{acc} += {value}" if n.op == "sum" else f"{acc} = max({acc}, {value})"
            self.lines += _nest(x, idx, [step])
            self.lines.append(f"{name} = {dtype_source(n.dtype)}({acc})")
            return
        fill = "np.zeros" if n.op == "sum" else "np.full"
        rest = "" if n.op == "sum" else ", -np.inf"
        self.lines.append(f"{name} = {fill}({_shape(n)}{rest}, dtype={dtype_source(n.dtype)})")
        at = f"{name}[{', '.join(kept)}]"
        step = f"{at} += {value}" if n.op == "sum" else f"{at} = max({at}, {value})"
        self.lines += _nest(x, idx, [step])


def _broadcast(idx: Sequence[str], shape: tuple, out: tuple) -> list[str]:
    """The index into an operand of ``shape`` broadcast to ``out`` at ``idx``."""
    lead = len(out) - len(shape)
    return ["0" if d == 1 and out[lead + k] != 1 else idx[lead + k] for k, d in enumerate(shape)]


def _index(n: Expr) -> list[str]:
    """The loop variables over the axes of ``n``: ``_i<k>``, or ``0`` for an axis of length 1 (no loop)."""
    return ["0" if d == 1 else f"_i{k}" for k, d in enumerate(n.shape)]


def _shape(n: Expr) -> str:
    dims = shape_source(n)
    if dims is None:
        raise _refuse(n, "an axis whose length no input gives")
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _nest(n: Expr, idx: Sequence[str], body: list[str]) -> list[str]:
    """``for`` loops over the shape of ``n`` around ``body``."""
    dims = shape_source(n)
    if dims is None:
        raise _refuse(n, "an axis whose length no input gives")
    loops = [f"for {i} in range({d}):" for i, d in zip(idx, dims) if i != "0"]
    return ["    " * depth + line for depth, line in enumerate(loops)] + ["    " * len(loops) + b for b in body]


def fused_step_source(loss: Expr, targets: list[Expr], optimizer: Optimizer, name: str, guard: bool) -> str:
    """The standalone module of a training step on the fused backend: ``name(params, state, lr, t, *, <inputs>)``
    updates the arrays of ``params`` and ``state`` in place and returns the loss, as the NumPy step does."""
    symbols = sorted({e.label for e in topo_order([loss]) if e.is_symbol})
    alloc = NameAllocator([name, *symbols, "np", "numba"])
    dicts = (alloc.take("params"), alloc.take("state"))  # the step's own arguments, never a symbol's name
    lr, t = Input(alloc.take("lr"), (), loss.dtype), Input(alloc.take("t"), (), loss.dtype)
    fold = optimizer.folds_lr
    (loss,) = pool_before_increasing([loss])
    grads = grad(loss, targets, seed=lr if fold else None)
    outs = lower([loss, *grads], exact_inf=False)
    check_fusable(outs)
    body = _Writer(outs, [*alloc.taken], ["loss", *(grad_name(p.label) for p in targets)])
    body.emit()
    loss_var = body.var[id(outs[0])]
    gvars = [body.array(g) if g.ndim else body.var.get(id(g), body.scalar(g, []).text) for g in outs[1:]]
    lines = [*_label_checks(outs), *body.lines]
    if guard:
        lines += _guard_lines(outs, [loss_var, *gvars])
    slots_of: dict[str, list[str]] = {}
    for p, gvar in zip(targets, gvars):
        slots = {s: Input(body.alloc.take(f"{s}_{p.label}"), p.shape, p.dtype) for s in optimizer.slots}
        slots_of[p.label] = [slots[s].label for s in optimizer.slots]
        news = optimizer.checked_update(p, Input(gvar, p.shape, p.dtype), slots, constant(1.0) if fold else lr, t)
        if fold:
            news = dict(zip(news, simplify(list(news.values()))))
        lines += _update_lines(news, p, slots, body.alloc)
    lines.append(f"return {loss_var}, -1")
    return _module(name, targets, slots_of, optimizer, (*dicts, lr.label, t.label), lines, loss)


def _label_checks(outs: list[Expr]) -> list[str]:
    """Return (0.0, -2) before anything is read when a label is outside ``[0, classes)``: the loops index with it
    unchecked (``step.run`` takes arrays it trusts; NumPy's fancy indexing would raise, Numba would read past the
    array)."""
    lines, seen = [], set()
    for n in topo_order(outs):
        if n.op not in INDEXED or not n.args[1].is_symbol or (n.args[1].label, n.args[0].shape[-1]) in seen:
            continue
        labels, classes = n.args[1], n.args[0].shape[-1]
        seen.add((labels.label, classes))
        at = f"{labels.label}[_i0]"
        lines += _nest(labels, ["_i0"], [f"if {at} < 0 or {at} >= {classes}:", "    return 0.0, -2"])
    return lines


def _guard_lines(outs: list[Expr], names: list[str]) -> list[str]:
    """Return (loss, k) before any update when output k (0: the loss, then the gradients) is not finite."""
    lines = []
    for k, (o, v) in enumerate(zip(outs, names)):
        if o.ndim == 0:
            lines += [f"if not np.isfinite({v}):", f"    return {names[0]}, {k}"]
            continue
        idx = _index(o)
        lines += _nest(o, idx, [f"if not np.isfinite({v}[{', '.join(idx)}]):", f"    return {names[0]}, {k}"])
    return lines


def _update_lines(news: dict[str, Expr], p: Expr, slots: dict[str, Input], alloc: NameAllocator) -> list[str]:
    """One loop over ``p``'s elements: every new value from the old ones, then written into ``p`` and its slots."""
    upd = _Writer(list(news.values()), [])
    upd.var.update({id(e): e.label for e in topo_order(list(news.values())) if e.is_symbol})
    for e in topo_order(list(news.values())):
        if not (e.is_symbol or e.op == "const" or e.opdef.elementwise):
            raise _refuse(e, "an optimizer update that is not element-wise")
    idx = _index(p)
    target = {"p": p.label, **{s: slots[s].label for s in slots}}
    at = f"[{', '.join(idx)}]" if p.ndim else "[()]"
    if len(news) == 1:  # the new value reads the old one at the same index only: written in place
        body = [f"{target[k]}{at} = {upd.scalar(e, idx).text}" for k, e in news.items()]
    else:  # every new value from the old ones first (Adam's p reads the old m and v)
        new = {k: alloc.take(f"{k}_new") for k in news}
        body = [f"{new[k]} = {upd.scalar(e, idx).text}" for k, e in news.items()]
        body += [f"{target[k]}{at} = {new[k]}" for k in news]
    return _nest(p, idx, body) if p.ndim else body


def _module(
    name: str,
    targets: list[Expr],
    slots_of: dict[str, list[str]],
    optimizer: Optimizer,
    args: tuple[str, str, str, str],
    lines: list[str],
    loss: Expr,
) -> str:
    """The module: imports, the names the guard reports, the njit kernel and the step calling it; ``args`` are the
    names of the step's own arguments (params, state, lr, t)."""
    pv, sv, lr, t = args
    inputs = sorted(e.label for e in topo_order([loss]) if e.op == "input")
    kernel_args = [
        *(p.label for p in targets),
        *(v for p in targets for v in slots_of[p.label]),
        *inputs,
        lr,
        t,
    ]
    call_args = [
        *(f'{pv}["{p.label}"]' for p in targets),
        *(f'{sv}["{s}_{p.label}"]' for p in targets for s in optimizer.slots),
        *inputs,
        lr,
        t,
    ]
    fold = "lr * " if optimizer.folds_lr else ""
    names = ("loss", *(f"{fold}{grad_name(p.label)}" for p in targets))
    kernel = "\n".join(
        ["@numba.njit(cache=True)", f"def _{name}({', '.join(kernel_args)}):"] + [f"    {line}" for line in lines]
    )
    signature = f"{name}({pv}, {sv}, {lr}, {t}" + (f", *, {', '.join(inputs)})" if inputs else ")")
    doc = (
        f'    """One training step of {optimizer!r}, fused into one Numba function; updates params and state\n'
        "    in place.\n\n"
        "    Returns the loss before the update. When the loss or a gradient is not finite it raises\n"
        '    FloatingPointError and changes nothing.\n    """'
    )
    step = "\n".join(
        [
            f"def {signature}:",
            doc,
            f"    loss, bad = _{name}({', '.join(call_args)})",
            "    if bad == -2:",
            '        raise _IndexError("labels out of range: each must lie in [0, classes)")',
            "    if bad >= 0:",
            '        raise _FloatingPointError("not finite: " + _OUTPUTS[bad])',
            "    return loss",
        ]
    )
    header = (
        f'"""{name}: generated by symdiff from a symbolic graph, fused by Numba; needs NumPy and Numba.\n\n'
        'Regenerate it with symdiff rather than editing it by hand.\n"""\n\nimport numba\nimport numpy as np'
    )
    consts = f"_FloatingPointError = FloatingPointError\n_IndexError = IndexError\n_OUTPUTS = {names!r}"
    return "\n\n\n".join([header, consts, kernel, step]) + "\n"
