"""The fused backend: the whole training step as one function compiled by Numba (``backend="numba"``).

At small sizes the NumPy backend's time is the overhead of its calls, one per operation, not their arithmetic. This
backend writes the step -- forward, backward, the finiteness guard and the optimizer's update -- as one
``@numba.njit`` driver calling small ``@numba.njit`` helpers: one per matrix product and the loops that follow it
(a layer's forward or backward), one per guard and one per update of a parameter shape class:

* each element-wise op is inlined into the loop of the array it feeds, so a chain of them is one loop; its scalar
  form is its NumPy form applied to scalars (``np.maximum(a, 0)``, ``a * b``), one home for both;
* a reduction accumulates its (inlined) operand in one loop (in float64), ``pick`` and ``onehot_sub`` index the
  labels in the loop that reads them;
* matrix products call BLAS through ``np.dot``;
* the optimizer's update of a parameter and its slots is one loop, run after the guard has found every gradient
  finite, so that a refused step changes nothing;
* a helper takes its arrays, scalars and axis lengths as arguments, so that the same loop over another layer's
  arrays is the same source: one function, compiled once. Numba's compile time grows faster than linearly with
  the size of one function, and linearly with the number of functions.

The module stays standalone (it imports NumPy and Numba) and readable; ``cache=True`` keeps the machine code on disk
beside it. ``pip install "symdiff[numba]"``. An op outside this set is refused by name (:func:`check_fusable`).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .autodiff import grad
from .backends import BackendError
from .codegen import Signature, _tuple_source, collect_symbols, dtype_source, normalize_outputs, symbols_doc
from .errors import UnsupportedError
from .graph import Expr, Input, constant, format_shape, topo_order
from .lower import lower, pool_before_increasing
from .memory import shape_source
from .naming import NameAllocator, grad_name
from .ops.dropout import without_dropout
from .ops.registry import ATOM, Fmt
from .optim import Optimizer
from .printing import _take_labels
from .simplify import simplify

__all__ = ["check_fusable", "fused_function_source", "fused_step_source", "require_numba"]

VIEWS = ("transpose", "squeeze", "expand_dims")
INDEXED = ("pick", "onehot_sub")
# NumPy's float semantics (x / 0 is inf, which the guard then sees, not ZeroDivisionError); the helpers are called
# from the driver only, so Numba writes no Python or C entry point for them (less to compile)
_JIT = "@numba.njit(cache=True, error_model='numpy')"
_HELPER_JIT = "@numba.njit(cache=True, error_model='numpy', no_cpython_wrapper=True, no_cfunc_wrapper=True)"
REDUCTIONS = ("sum", "max")
# Element-wise ops whose NumPy form does not apply to scalars under Numba (x.astype(...), np.clip): their scalar form.
SCALAR_FORMS = {
    "cast": lambda n, a: f"{dtype_source(n.dtype)}({a[0]})",
    "clip": lambda n, a: f"np.minimum(np.maximum({a[0]}, {a[1]}), {a[2]})",
}


def require_numba() -> None:
    """Refuse the fused backend, saying what to install, where Numba is not installed."""
    if importlib.util.find_spec("numba") is None:
        raise BackendError('backend "numba" needs Numba: pip install "symdiff[numba]"')


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


class _Helpers:
    """The module's helper functions, one per distinct source: a loop written twice (the same update of another
    weight of the same shape class) is one function, compiled once and called twice."""

    def __init__(self, taken: Sequence[str]) -> None:
        self.alloc = NameAllocator(taken)
        self.names: dict[str, str] = {}  # parameters and body -> the function's name
        self.sources: list[str] = []

    def call(self, hint: str, args: _Args, body: Sequence[str]) -> str:
        """The call of the helper ``(args) -> body`` (defined on first use), with the caller's values."""
        text = f"({', '.join(args.params())}):\n" + "\n".join(f"    {line}" for line in body)
        if text not in self.names:
            self.names[text] = self.alloc.take(f"_{hint}")
            self.sources.append(f"{_HELPER_JIT}\ndef {self.names[text]}{text}")
        return f"{self.names[text]}({', '.join(args.call_args())})"


class _Args:
    """The arguments of one helper: each array or scalar it reads from its caller under a local name (``a0, a1,
    ...``, in order of first use), then the lengths of the axes it loops over (``n0, n1, ...``), so that the same
    loops over another layer's arrays have the same source; ``defined`` holds the values the helper computes
    itself (``v0, v1, ...``)."""

    def __init__(self, local: bool = True) -> None:
        self.local = local  # False: the values keep the caller's names (lines of the driver itself)
        self.values: dict[str, str] = {}  # the caller's name -> the local name
        self.lengths: dict[str, tuple[str, str]] = {}  # a length's key -> the caller's expression, the local name
        self.defined: dict[str, str] = {}  # the caller's name of a value computed here -> the local name

    def __call__(self, outer: str) -> str:
        if outer in self.defined:
            return self.defined[outer]
        return self.values.setdefault(outer, f"a{len(self.values)}" if self.local else outer)

    def define(self, outer: str) -> str:
        """The local name of a value the helper computes (``outer`` in the caller)."""
        return self.defined.setdefault(outer, f"v{len(self.defined)}" if self.local else outer)

    def dims(self, n: Expr) -> list[str]:
        """The lengths of ``n``'s axes (an axis of length 1 stays 1: the loops index it with 0). A length read off
        an input is one argument however often it is used; a fixed one is an argument per axis position, so that a
        (32, 32) and a (32, 10) array share loops."""
        dims = shape_source(n)
        if dims is None:
            raise _refuse(n, "an axis whose length no input gives")
        out = []
        for k, d in enumerate(dims):
            key = f"{d}@{k}" if d.isdigit() else d
            if d != "1" and key not in self.lengths:
                self.lengths[key] = (d, f"n{len(self.lengths)}")
            out.append("1" if d == "1" else self.lengths[key][1])
        return out

    def params(self) -> list[str]:
        return [*self.values.values(), *(local for _, local in self.lengths.values())]

    def call_args(self) -> list[str]:
        return [*self.values, *(outer for outer, _ in self.lengths.values())]


class _Segment:
    """A run of statements from a matrix product to the next: one helper when it loops, else lines of the driver."""

    def __init__(self) -> None:
        self.nodes: list[tuple[Expr, str]] = []  # each statement's node and its name in the driver


class _Writer:
    """The statements of one njit driver computing ``roots`` (materialized) from its symbols: each run from a
    matrix product to the next that loops is a call of a helper, the rest (a lone product, scalars) inline."""

    def __init__(
        self, roots: Sequence[Expr], taken: Sequence[str], helpers: _Helpers, names: Sequence[str | None] = ()
    ) -> None:
        self.order = topo_order(list(roots))
        self.uses: Counter[int] = Counter(id(a) for n in self.order for a in n.args)
        self.uses.update(id(r) for r in roots)
        self.consumer = {id(a): n for n in self.order for a in n.args}
        self.alloc = NameAllocator([*taken, *(n.label for n in self.order if n.is_symbol)])
        self.labels = _take_labels(list(roots), [*names] + [None] * (len(roots) - len(names)), self.order, self.alloc)
        self.var: dict[int, str] = {id(n): n.label for n in self.order if n.is_symbol}
        self.made: dict[int, int] = {}  # when each statement's value is made (its place among the statements)
        self.now = float("inf")  # while a statement is written: its place (it reads only values made before it)
        self.items: list[_Segment | tuple[str, set[str]]] = []  # a run of statements, or a driver line and its reads
        self.roots = {id(r) for r in roots}
        self.helpers = helpers
        self.args: _Args | None = None  # while a helper's body is written: its arguments

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
        if id(n) in self.var and self.made.get(id(n), -1) < self.now:
            name = self.var[id(n)] if self.args is None else self.args(self.var[id(n)])
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
            self._statement(n, self.alloc.take(n.opdef.hint or n.op, numbered=True))
        return self.var[id(n)]

    # -- statements --------------------------------------------------------------------------------------------
    def emit(self) -> None:
        """Plan the statements in runs, each from a matrix product to the next."""
        for n in self.order:
            if id(n) in self.var or (n.op in ("const", *VIEWS) and id(n) not in self.roots):
                continue
            if self.inlined(n):
                continue
            name = self.labels.get(id(n)) or self.alloc.take(n.opdef.hint or n.op, numbered=True)
            if n.op in ("matmul", "dim"):
                for a in n.args:
                    self.array(a)  # its operands first (a view gets an array of its own)
            if n.op == "matmul":  # starts a run: the product and the loops reading it
                self.items.append(_Segment())
            self._statement(n, name)

    def _statement(self, n: Expr, name: str) -> None:
        """``n`` computed by the current run of statements, in order."""
        if not self.items or not isinstance(self.items[-1], _Segment):
            self.items.append(_Segment())
        self.items[-1].nodes.append((n, name))
        self.var[id(n)] = name
        self.made[id(n)] = len(self.made)

    def finish(self) -> list[str]:
        """The driver's lines: each run of statements that loops a helper call, the rest as they are. A helper
        returns the values it computes that the driver reads later (or that are roots)."""
        written: list[tuple[_Segment, _Args, list[str]] | tuple[str, set[str]]] = []
        for item in self.items:
            if not isinstance(item, _Segment):
                written.append(item)
                continue
            loops = any((n.ndim and n.op != "matmul") or n.op in REDUCTIONS for n, _ in item.nodes)  # else no call
            self.args = args = _Args(local=loops)
            try:
                body = []
                for n, name in item.nodes:
                    self.now = self.made[id(n)]
                    body += self._body(n, args.define(name))
            finally:
                self.args, self.now = None, float("inf")
            written.append((item, args, body) if loops else ("\n".join(body), set(args.values)))
        later = {self.var[r] for r in self.roots if r in self.var}
        returns: list[list[str]] = []  # of each entry, backwards: the values read after it
        for entry in reversed(written):
            returns.append([name for _, name in entry[0].nodes if name in later] if len(entry) == 3 else [])
            later |= entry[1] if len(entry) == 2 else set(entry[1].values)
        lines: list[str] = []
        for entry, out in zip(written, reversed(returns)):
            if len(entry) == 2:
                lines += entry[0].split("\n")
                continue
            item, args, body = entry
            call = self.helpers.call(item.nodes[-1][0].op, args, [*body, f"return {', '.join(args(o) for o in out)}"])
            lines.append(f"{', '.join(out)} = {call}" if out else call)
        return lines

    def helper(self, hint: str, write: Callable[[_Args], list[str]]) -> str:
        """The call of a helper whose body ``write`` gives (reading this driver's values through the arguments)."""
        self.args = args = _Args()
        try:
            body = write(args)
        finally:
            self.args = None
        return self.helpers.call(hint, args, body)

    def _operand(self, n: Expr) -> str:
        """A matrix product's operand: an array, or a transpose of one."""
        text = self.array(n)
        base = text.split(".T")[0]
        return self.args(base) + text[len(base) :]

    def _text(self, n: Expr) -> str:
        """A statement without a loop: a length or a scalar."""
        if n.op == "dim":
            x = self.var[id(n.args[0])]
            return f"{x if self.args is None else self.args(x)}.shape[{n.attrs['axis']}]"
        return self.scalar(n, []).text

    def _body(self, n: Expr, out: str) -> list[str]:
        """The lines of a helper computing ``n`` into its local ``out``."""
        if n.op in REDUCTIONS:
            return self._reduction(n, out)
        if n.op == "matmul":
            return [f"{out} = np.dot({self._operand(n.args[0])}, {self._operand(n.args[1])})"]
        if n.ndim == 0:
            return [f"{out} = {self._text(n)}"]
        dims, idx = self.args.dims(n), _index(n)
        value = self.scalar(n, idx).text
        reused = self._dead_product(n)
        alloc = f"{out} = {reused or f'np.empty({_shape(dims)}, dtype={dtype_source(n.dtype)})'}"
        return [alloc, *_nest(idx, dims, [f"{out}[{', '.join(idx)}] = {value}"])]

    def _dead_product(self, n: Expr) -> str | None:
        """The local array of a matrix product that ``n`` alone reads, element by element (same shape and dtype),
        made in this helper: ``n`` is written into it (``mm = np.dot(x, W)`` then ``h[i, j] = relu(mm[i, j] + b[j])``
        in place), one array fewer to allocate and to stream through the cache."""
        for a in n.args:
            if a.shape != n.shape:
                continue
            if id(a) not in self.var and a.opdef.elementwise and self.inlined(a):  # read through the inlined chain
                found = self._dead_product(a) if a.dtype == n.dtype else None
                if found:
                    return found
                continue
            local = self.args.defined.get(self.var.get(id(a), ""))
            if a.op == "matmul" and local and self.uses[id(a)] == 1 and id(a) not in self.roots and a.dtype == n.dtype:
                return local
        return None

    def _reduction(self, n: Expr, out: str) -> list[str]:
        x, axes = n.args[0], n.attrs["axis"]
        dims, idx = self.args.dims(x), _index(x)
        value = self.scalar(x, idx).text
        start = "0.0" if n.op == "sum" else "-np.inf"
        if n.ndim == 0:
            step = f"acc += {value}" if n.op == "sum" else f"acc = max(acc, {value})"
            return [f"acc = {start}", *_nest(idx, dims, [step]), f"{out} = {dtype_source(n.dtype)}(acc)"]
        kept = [k for k in range(x.ndim) if n.attrs["keepdims"] or k not in axes]
        at = f"{out}[{', '.join('0' if k in axes else idx[k] for k in kept)}]"
        fill = "np.zeros" if n.op == "sum" else "np.full"
        rest = "" if n.op == "sum" else ", -np.inf"
        step = f"{at} += {value}" if n.op == "sum" else f"{at} = max({at}, {value})"
        shape = _shape(["1" if k in axes else dims[k] for k in kept])
        return [f"{out} = {fill}({shape}{rest}, dtype={dtype_source(n.dtype)})", *_nest(idx, dims, [step])]


def _broadcast(idx: Sequence[str], shape: tuple, out: tuple) -> list[str]:
    """The index into an operand of ``shape`` broadcast to ``out`` at ``idx``."""
    lead = len(out) - len(shape)
    return ["0" if d == 1 and out[lead + k] != 1 else idx[lead + k] for k, d in enumerate(shape)]


def _index(n: Expr) -> list[str]:
    """The loop variables over the axes of ``n``: ``_i<k>``, or ``0`` for an axis of length 1 (no loop)."""
    return ["0" if d == 1 else f"_i{k}" for k, d in enumerate(n.shape)]


def _shape(dims: Sequence[str]) -> str:
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _nest(idx: Sequence[str], dims: Sequence[str], body: list[str]) -> list[str]:
    """``for`` loops over the axes of lengths ``dims`` (indexed by ``idx``) around ``body``."""
    loops = [f"for {i} in range({d}):" for i, d in zip(idx, dims) if i != "0"]
    return ["    " * depth + line for depth, line in enumerate(loops)] + ["    " * len(loops) + b for b in body]


_OWN = ("np", "numba", "_FloatingPointError", "_OUTPUTS")  # the module's own globals


def fused_step_source(loss: Expr, targets: list[Expr], optimizer: Optimizer, name: str, guard: bool) -> str:
    """The standalone module of a training step on the fused backend: ``name(params, state, lr, t, *, <inputs>)``
    updates the arrays of ``params`` and ``state`` in place and returns the loss, as the NumPy step does."""
    symbols = sorted({e.label for e in topo_order([loss]) if e.is_symbol})
    alloc = NameAllocator([name, *symbols, *_OWN])
    dicts = (alloc.take("params"), alloc.take("state"))  # the step's own arguments, never a symbol's name
    lr, t = Input(alloc.take("lr"), (), loss.dtype), Input(alloc.take("t"), (), loss.dtype)
    fold = optimizer.folds_lr
    (loss,) = pool_before_increasing([loss])
    grads = grad(loss, targets, seed=lr if fold else None)
    outs = lower([loss, *grads], exact_inf=False)
    check_fusable(outs)
    helpers = _Helpers([name, f"_{name}", *_OWN])
    body = _Writer(outs, [*alloc.taken], helpers, ["loss", *(grad_name(p.label) for p in targets)])
    body.emit()
    loss_var = body.var[id(outs[0])]
    gvars = [body.array(g) if g.ndim else body.var.get(id(g), body.scalar(g, []).text) for g in outs[1:]]
    lines = [*_label_checks(outs, helpers), *body.finish()]
    if guard:
        lines += _guard_lines(outs, [loss_var, *gvars], helpers)
    slots_of: dict[str, list[str]] = {}
    for p, gvar in zip(targets, gvars):
        slots = {s: Input(body.alloc.take(f"{s}_{p.label}"), p.shape, p.dtype) for s in optimizer.slots}
        slots_of[p.label] = [slots[s].label for s in optimizer.slots]
        news = optimizer.checked_update(p, Input(gvar, p.shape, p.dtype), slots, constant(1.0) if fold else lr, t)
        if fold:
            news = dict(zip(news, simplify(list(news.values()))))
        lines.append(_update_call(news, p, slots, helpers, type(optimizer).__name__.lower()))
    lines.append(f"return {loss_var}, -1")
    return _module(name, targets, slots_of, optimizer, (*dicts, lr.label, t.label), lines, loss, helpers)


def fused_function_source(
    outputs: Expr | Sequence[Any] | Mapping[str, Expr], name: str, training: bool = False
) -> tuple[str, Signature]:
    """The standalone module of ``sd.compile(outputs, backend="numba")`` and its :class:`Signature`: ``name(*,
    <symbols>)`` returns what the NumPy function returns (a dict, a tuple or one array), computed by a Numba driver
    and its helpers. The graph is lowered as ``optimize=True`` lowers it; dropout is the identity unless
    ``training`` (then refused by its name: Numba draws no masks here)."""
    outs, kind, nesting = normalize_outputs(outputs)
    roots = lower(list(outs.values()) if training else without_dropout(list(outs.values())))
    check_fusable(roots)
    symbols = collect_symbols(roots)
    own = [name, f"_{name}", *_OWN]
    helpers = _Helpers(own)
    body = _Writer(roots, own, helpers, list(outs))
    body.emit()
    results = [body.var[id(r)] for r in roots]
    lines = [
        *_label_checks(roots, helpers),
        *body.finish(),
        f"return {_tuple_source(list(range(len(roots))), results)}",
    ]
    args = [s.name for s in symbols]
    kernel = _function(f"_{name}", args, lines, jit=_JIT)
    # a 0-d output as NumPy's scalar of its dtype, as the NumPy function returns it
    values = [r if n.ndim or n.is_symbol else f"{dtype_source(n.dtype)}({r})" for n, r in zip(roots, results)]
    if kind == "dict":
        ret = "return {" + ", ".join(f'"{k}": {v}' for k, v in zip(outs, values)) + "}"
    else:
        ret = f"return {_tuple_source(nesting, values) if kind == 'tuple' else values[0]}"
    returns = {"dict": "a dict with", "single": "one array:", "tuple": "a tuple of"}[kind]
    doc = [
        f'"""Compute {", ".join(outs) if kind != "single" else "the output"} from the symbols, fused by Numba.',
        "",
        *symbols_doc(symbols),
        f"Returns {returns}",
        *(f"    {k}: shape {format_shape(r.shape)}, {r.dtype.name}" for k, r in zip(outs, roots)),
        '"""',
    ]
    call = f"{', '.join(results)}{',' if len(results) == 1 else ''} = _{name}({', '.join(args)})"
    wrapper = _function(name, [f"*, {', '.join(args)}"] if args else [], [*doc, call, ret])
    source = "\n\n\n".join([_header(name), *helpers.sources, kernel, wrapper]) + "\n"
    return source, Signature(symbols, tuple((k, r.shape, r.dtype) for k, r in zip(outs, roots)), kind)


def _function(name: str, args: Sequence[str], lines: Sequence[str], jit: str | None = None) -> str:
    body = [f"    {line}" if line else "" for line in lines]
    return "\n".join([*([jit] if jit else []), f"def {name}({', '.join(args)}):", *body])


def _label_checks(outs: list[Expr], helpers: _Helpers) -> list[str]:
    """Raise IndexError before anything is read when a label is outside ``[0, classes)``: the loops index with it
    unchecked (``step.run`` and ``f.fn`` take arrays they trust; NumPy's fancy indexing would raise, Numba would
    read past the array)."""
    lines, seen = [], set()
    for n in topo_order(outs):
        if n.op not in INDEXED or not n.args[1].is_symbol or (n.args[1].label, n.args[0].shape[-1]) in seen:
            continue
        labels, classes = n.args[1], n.args[0].shape[-1]
        seen.add((labels.label, classes))

        def write(args: _Args, labels: Expr = labels, classes: int = classes) -> list[str]:
            dims, idx = args.dims(labels), _index(labels)
            at = f"{args(labels.label)}[{idx[0]}]"
            return [*_nest(idx, dims, [f"if {at} < 0 or {at} >= {classes}:", "    return False"]), "return True"]

        call = _Writer([], [], helpers).helper("labels_in_range", write)
        lines += [f"if not {call}:", '    raise IndexError("labels out of range: each must lie in [0, classes)")']
    return lines


def _guard_lines(outs: list[Expr], names: list[str], helpers: _Helpers) -> list[str]:
    """Return (loss, k) before any update when output k (0: the loss, then the gradients) is not finite."""
    lines = []
    for k, (o, v) in enumerate(zip(outs, names)):
        if o.ndim == 0:
            lines += [f"if not np.isfinite({v}):", f"    return {names[0]}, {k}"]
            continue

        def write(args: _Args, o: Expr = o, v: str = v) -> list[str]:
            # the sum of squares through BLAS first (finite: every element is); an element-wise loop with an exit
            # does not vectorize, and runs only when the sum is not finite (an overflow of the sum alone passes)
            dims, idx, a = args.dims(o), _index(o), args(v)
            test = [f"if not np.isfinite({a}[{', '.join(idx)}]):", "    return False"]
            fast = [f"if np.isfinite(np.dot({a}.ravel(), {a}.ravel())):", "    return True"]
            return [*fast, *_nest(idx, dims, test), "return True"]

        lines += [f"if not {_Writer([], [], helpers).helper('finite', write)}:", f"    return {names[0]}, {k}"]
    return lines


def _update_call(news: dict[str, Expr], p: Expr, slots: dict[str, Input], helpers: _Helpers, hint: str) -> str:
    """The call of the helper whose one loop over ``p``'s elements computes every new value from the old ones, then
    writes them into ``p`` and its slots."""
    upd = _Writer(list(news.values()), [], helpers)
    for e in topo_order(list(news.values())):
        if not (e.is_symbol or e.op == "const" or e.opdef.elementwise):
            raise _refuse(e, "an optimizer update that is not element-wise")

    def write(args: _Args) -> list[str]:
        dims, idx = args.dims(p), _index(p)
        target = {"p": args(p.label), **{s: args(slots[s].label) for s in slots}}
        at = f"[{', '.join(idx)}]" if p.ndim else "[()]"
        if len(news) == 1:  # the new value reads the old one at the same index only: written in place
            body = [f"{target[k]}{at} = {upd.scalar(e, idx).text}" for k, e in news.items()]
        else:  # every new value from the old ones first (Adam's p reads the old m and v)
            body = [f"{k}_new = {upd.scalar(e, idx).text}" for k, e in news.items()]
            body += [f"{target[k]}{at} = {k}_new" for k in news]
        return _nest(idx, dims, body) if p.ndim else body

    return upd.helper(hint, write)


def _module(
    name: str,
    targets: list[Expr],
    slots_of: dict[str, list[str]],
    optimizer: Optimizer,
    args: tuple[str, str, str, str],
    lines: list[str],
    loss: Expr,
    helpers: _Helpers,
) -> str:
    """The module: imports, the names the guard reports, the helpers, the njit driver and the step calling it;
    ``args`` are the names of the step's own arguments (params, state, lr, t)."""
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
    kernel = _function(f"_{name}", kernel_args, lines, jit=_JIT)
    signature = f"{name}({pv}, {sv}, {lr}, {t}" + (f", *, {', '.join(inputs)})" if inputs else ")")
    doc = (
        f'    """One training step of {optimizer!r}, fused by Numba; updates params and state in place.\n\n'
        "    Returns the loss before the update. When the loss or a gradient is not finite it raises\n"
        "    FloatingPointError and changes nothing; a label out of range raises IndexError.\n"
        '    """'
    )
    step = "\n".join(
        [
            f"def {signature}:",
            doc,
            f"    loss, bad = _{name}({', '.join(call_args)})",
            "    if bad >= 0:",
            '        raise _FloatingPointError("not finite: " + _OUTPUTS[bad])',
            "    return loss",
        ]
    )
    consts = f"_FloatingPointError = FloatingPointError\n_OUTPUTS = {names!r}"
    return "\n\n\n".join([_header(name), consts, *helpers.sources, kernel, step]) + "\n"


def _header(name: str) -> str:
    return (
        f'"""{name}: generated by symdiff from a symbolic graph, fused by Numba; needs NumPy and Numba.\n\n'
        'Regenerate it with symdiff rather than editing it by hand.\n"""\n\nimport numba\nimport numpy as np'
    )
