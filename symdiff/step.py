"""The generated training step: loss, gradients and the optimizer's update in one NumPy function.

``codegen_step(loss, params, optimizer)`` returns the standalone source of
``train_step(params, state, lr, t, *, <inputs>) -> loss``, which computes the loss and every gradient
once, refuses (changing nothing) when any of them is not finite, and then updates the arrays of
``params`` and of the optimizer ``state`` in place. ``compile_step`` wraps it in a callable
``step(x=..., y=...) -> loss`` bound to a params dict.

The step is composed from :mod:`symdiff.codegen`: one body for the loss and gradients (buffers kept between
calls), the guard, and one body for the optimizer's update expressions whose outputs are written into the param
and state arrays (see ``emit_body(into=...)``).
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import numpy as np

from .autodiff import grad
from .backends import Backend, check_supported, namespace_of, resolve
from .codegen import Body, SymbolSpec, collect_symbols, emit_body, function_source, module_source, xp_module_source
from .errors import DTypeError, InputError, SymdiffError
from .fused import fused_step_source, require_numba
from .graph import Expr, Input, constant, format_shape, leaves
from .lower import lower, pool_before_increasing
from .naming import NameAllocator, grad_name, validate_name
from .optim import SGD, Optimizer
from .runtime import check_arrays, fast_check, load_source, refuse_masked, to_backend
from .simplify import simplify

__all__ = [
    "BackendTrainStep",
    "DivergenceError",
    "FusedTrainStep",
    "TrainStep",
    "codegen_step",
    "compile_step",
    "generator_state",
    "set_generator_state",
]

RESERVED = ("params", "state", "lr", "t", "bad", "loss")
_DIVERGED = "_FloatingPointError"  # the generated step's module-level alias of the builtin it raises
_FINITE = "_isfinite"  # math.isfinite (imported by the module as that): one scalar's test, a tenth of np.isfinite's
_NOT_FINITE = "not finite: "  # how the generated guard's message starts (then the arrays at fault)


class DivergenceError(SymdiffError, FloatingPointError):
    """The loss or a gradient stopped being finite; the params keep their last finite values.

    ``found`` says which arrays were not finite (``"not finite: loss, dW"``).

    >>> import numpy as np
    >>> import symdiff as sd
    >>> x, w = sd.Input("x", shape=(2,)), sd.Param("w", shape=(2,))
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> step = sd.compile_step(sd.sum(sd.square(x * w)), params, sd.optim.SGD(lr=0.1))
    >>> try:
    ...     step(x=np.array([np.nan, 1.0]))
    ... except sd.DivergenceError as e:
    ...     print(e.found)
    not finite: loss, lr * dw (lr=0.1)
    >>> params["w"]
    array([1., 2.])
    """

    def __init__(self, message: str, found: str = "") -> None:
        super().__init__(message)
        self.found = found


def _is_generator(value: Any) -> bool:
    """Whether ``value`` is a generator a generated module keeps: NumPy's, or a ``torch.Generator``."""
    kind = type(value)
    return isinstance(value, np.random.Generator) or (kind.__module__ == "torch._C" and kind.__name__ == "Generator")


def generator_state(generator: Any) -> Any:
    """The state of a step's generator as JSON data: NumPy's bit-generator dict, or ``{"torch": <base64 bytes>}``."""
    if isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    return {"torch": base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii")}


def set_generator_state(generator: Any, state: Any, *, check_only: bool = False) -> None:
    """Give ``generator`` the saved ``state`` (of :func:`generator_state`); ``check_only``: try it on a fresh
    generator of the same kind instead, so that a damaged state raises (TypeError, ValueError, KeyError,
    RuntimeError) while nothing changes."""
    if isinstance(generator, np.random.Generator):
        target = np.random.Generator(type(generator.bit_generator)()) if check_only else generator
        target.bit_generator.state = state
        return
    import torch

    raw = base64.b64decode(state["torch"], validate=True)
    target = torch.Generator(device=generator.device) if check_only else generator
    target.set_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))


def _trainable(loss: Expr, params: Mapping[str, Any] | Sequence[Expr]) -> list[Expr]:
    """The Param nodes of ``loss`` that ``params`` names (all of them must be given)."""
    found = {e.label: e for e in leaves([loss]) if e.op == "param"}
    names = [p.label if isinstance(p, Expr) else p for p in params]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"params {unknown} are not used by the loss (its params: {sorted(found)})")
    missing = [n for n in found if n not in names]
    if missing:
        raise ValueError(f"the loss uses params {missing} that are not in the params dict")
    return [found[n] for n in names]


def codegen_step(
    loss: Expr,
    params: Mapping[str, Any] | Sequence[Expr],
    optimizer: Optimizer | None = None,
    name: str = "train_step",
    *,
    optimize: bool = True,
    guard: bool = True,
    backend: Any = "numpy",
    device: Any = None,
    jit: bool | None = None,
) -> str:
    """Standalone NumPy source of one training step (forward, backward, update) for ``loss``.

    With ``optimize`` (the default) the step runs lowered ops with buffers kept between calls, and an
    optimizer that uses only ``lr * g`` (SGD, momentum, Nesterov) gets ``lr`` folded into the backward
    pass, so its update is one in-place subtraction per parameter. ``guard=False`` drops the check that
    refuses non-finite losses and gradients (``fit`` always keeps it; benchmarks measure both).

    Another ``backend`` (``device``, ``jit``: see :func:`symdiff.codegen`) gets a pure function of that library,
    ``train_step(params, state, lr, t, *, <inputs>) -> (loss, params, state)``, returning new dicts: its guard
    keeps every param and slot as it was from the first step whose loss or gradient is not finite on, and
    clears ``state["ok"]`` (read once per logging interval, so that no step waits for the device).

    >>> import symdiff as sd
    >>> x, w = sd.Input("x", shape=(None, 3)), sd.Param("w", shape=(3,))
    >>> source = sd.codegen_step(sd.mean(sd.square(x @ w - 1)), [w], sd.optim.SGD(lr=0.1))
    >>> print(*[line for line in source.splitlines() if "w -=" in line or "dw =" in line], sep="\\n")
        dw = np.matmul(x.T, prod1, out=_ws[2])
        w -= dw
    """
    name = validate_name(name, "function")
    optimizer = optimizer if optimizer is not None else SGD()
    target = resolve(backend, device, jit)
    if target is not None:
        return _backend_step_source(loss, _trainable(loss, params), optimizer, name, optimize, guard, target)
    st = _step_body(loss, _trainable(loss, params), optimizer, name, optimize)
    body, v = st.body, st.v
    lines = [*body.setup, *(f'{p} = {v["params"]}["{p}"]' for p in st.pnames), *body.lines]
    lines += _copy_view_gradients(st)
    if guard:
        lines += _guard_lines(st)
    bind, update = _update_body(st, optimizer)
    lines += [*bind, *update.setup, *update.lines, f"return {body.results['loss']}"]

    inputs = [s for s in body.symbols if s.kind == "input" and s.name != v["lr"]]
    head = f"{name}({v['params']}, {v['state']}, {v['lr']}, {v['t']}"
    sig = head + (f", *, {', '.join(s.name for s in inputs)})" if inputs else ")")
    # The builtin, bound to a name no symbol can take (symbol names never start with "_").
    alias = [f"{_DIVERGED} = FloatingPointError"] if guard else []
    doc = _step_doc(st, optimizer, inputs, guard)
    return module_source(name, [body, update], [*alias, function_source(sig, doc, lines)])


@dataclass
class _Step:
    """What the parts of a generated step share: the forward and backward ``body``, the step's own variable
    names ``v`` (``v["lr"]`` is the learning rate's), whether ``lr`` is folded into the gradients, the
    ``params`` (Param nodes), each one's name and gradient (its output name in ``gnames``, its variable in
    ``gvars``) and the allocator of later locals."""

    body: Body
    v: dict[str, str]
    fold: bool
    params: list[Expr]
    pnames: list[str]
    gnames: dict[str, str]
    gvars: list[str]
    local: NameAllocator
    copied: set[str] = field(default_factory=set)  # gradient variables that are copies made by the step
    # update output -> (dict, key, variable): "params" or "state", the array's key there, the variable holding it
    updates: dict[str, tuple[str, str, str]] = field(default_factory=dict)


def _step_body(
    loss: Expr, targets: list[Expr], optimizer: Optimizer, name: str, optimize: bool, backend: Backend | None = None
) -> _Step:
    """Differentiate ``loss``, lower it (``optimize``) and emit the forward and backward statements (in the Array
    API forms of ``backend``, without buffers or a folded ``lr``, when given)."""
    symbol_names = {e.label for e in leaves([loss])}
    alloc = NameAllocator([name, *symbol_names, "np"])
    v = {k: alloc.take(k) for k in RESERVED}  # the step's own variables, never a symbol's name
    fold = optimize and optimizer.folds_lr and backend is None
    lr_symbol = Input(v["lr"], dtype=loss.dtype) if fold else None
    if optimize:  # max pooling before the activation: the same values and gradients, on a quarter of the data
        (loss,) = pool_before_increasing([loss])
    grads = grad(loss, targets, seed=lr_symbol)
    gnames = {t.label: grad_name(t.label) for t in targets}
    # Last layer first, as backpropagation runs: each activation dies as soon as its weight gradient is done.
    outs = {"loss": loss, **{gnames[t.label]: g for t, g in reversed(list(zip(targets, grads)))}}
    if backend is not None:  # refused by the op the user wrote (conv2d), not by the op it lowers to (im2col)
        check_supported(list(outs.values()), backend)
    if optimize:
        # the guard refuses inf losses anyway; another library runs convolutions whole, with its own
        outs = dict(zip(outs, lower(list(outs.values()), exact_inf=False, patches=backend is None)))
    reserved = [name, *(v[k] for k in RESERVED if k != "loss")]
    memory = "workspace" if optimize and backend is None else None
    body = emit_body(outs, reserved=reserved, own_outputs=False, memory=memory, backend=backend)
    pnames = [t.label for t in targets]
    # Every later local of the step (gradient copies, optimizer slots, scratch) gets a name no symbol, no
    # variable of the body and no other local has: a param named m_W next to W's Adam slot m_W stays apart.
    local = NameAllocator([*body.taken, *v.values()])
    return _Step(body, v, fold, targets, pnames, gnames, [body.results[gnames[p]] for p in pnames], local)


def _copy_view_gradients(st: _Step) -> list[str]:
    """A gradient that is a symbol or a view of one (dW = x.T, dW = V) aliases a caller's array or a param
    that an earlier update may change: copy it before any update runs."""
    lines = []
    for i, p in enumerate(st.pnames):
        if st.body.roots[st.gnames[p]].opdef.view:
            var = st.local.take(f"{st.gnames[p]}_copy")
            lines.append(f"{var} = np.array({st.gvars[i]})")
            st.gvars[i] = var
            st.copied.add(var)
    return lines


def _guard_lines(st: _Step) -> list[str]:
    """The check that raises (changing nothing) when the loss or a gradient is not finite."""
    body, v, pnames, gnames, gvars = st.body, st.v, st.pnames, st.gnames, st.gvars
    loss_var = body.results["loss"]
    covered = {k for _, names_ in body.flat for k in names_}
    # NOTE: a BLAS dot of the flat gradient array with itself is nan/inf when an element is, at a third of
    # np.sum's cost. It also overflows for large finite values (|g| > ~1e19 in float32, > 256 in float16):
    # only then does the exact per-array test run, so only non-finite values count as divergence.
    sums = [f"np.dot({buf}, {buf})" for buf, _ in body.flat]
    sums += [f"np.sum({g})" for p, g in zip(pnames, gvars) if gnames[p] not in covered]
    check = " + ".join([loss_var, *dict.fromkeys(sums)])
    # A folded step's gradients hold lr * dloss/dp: a huge lr can overflow them while dloss/dp is finite, so the
    # message names the product and the rate (formatted on the failure path only).
    shown = {p: f"lr * {gnames[p]}" if st.fold else gnames[p] for p in pnames}
    listing = ", ".join(f'("{shown[p]}", {g})' for p, g in zip(pnames, gvars))
    bad = v["bad"]
    rate = f' + (f" (lr={{{v["lr"]}!r}})" if {bad}[-1] != "loss" else "")' if st.fold else ""
    return [
        f"if not {_FINITE}({check}):",
        f'    {bad} = [_k for _k, _v in [("loss", {loss_var}), {listing}] if not np.all(np.isfinite(_v))]',
        f"    if {bad}:",
        f'        raise {_DIVERGED}({_NOT_FINITE!r} + ", ".join({bad}){rate})',
    ]


def _update_body(st: _Step, optimizer: Optimizer, backend: Backend | None = None) -> tuple[list[str], Body]:
    """The optimizer's update of every param, generated from its expressions as a body that writes each new value
    into the array of its param or state slot (with a ``backend``: computes it as a new array, output ``<slot>_new``
    of the slot's symbol); and the lines binding those arrays first."""
    lines: list[str] = []
    scalars = _scalars(st, lines)
    donor = _donors(st)
    outs: dict[str, Expr] = {}
    into: dict[str, Expr] = {}
    donate: list[Expr] = []
    for p, g, node in zip(st.pnames, st.gvars, st.params):
        if not g.isidentifier():  # an expression (a constant gradient): named, so that the update can read it
            var = st.local.take(f"{st.gnames[p]}_value")
            lines.append(f"{var} = {g}")
            g = var
        root = st.body.roots[st.gnames[p]]
        grad = Input(g, root.shape, root.dtype)
        donate += [grad] if g in donor else []
        slots = {s: Input(st.local.take(f"{s}_{p}"), node.shape, node.dtype) for s in optimizer.slots}
        lines += [f'{e.label} = {st.v["state"]}["{s}_{p}"]' for s, e in slots.items()]
        lr, t = scalars[node.dtype]
        news = optimizer.checked_update(node, grad, slots, constant(1.0) if st.fold else lr, t)
        for k, e in news.items():
            target = node if k == "p" else slots[k]
            out = f"{target.label}_new"  # unique: so are the labels; the layout renames it if taken
            outs[out], into[out] = e, target
            st.updates[out] = ("params", p, p) if k == "p" else ("state", f"{k}_{p}", target.label)
    if st.fold:  # the gradients hold lr * g already: lr = 1, simplified away (in one pass over every update)
        outs = dict(zip(outs, simplify(list(outs.values()))))
    if backend is not None:
        return lines, emit_body(outs, reserved=sorted(st.local.taken), own_outputs=False, backend=backend)
    update = emit_body(
        outs, reserved=sorted(st.local.taken), own_outputs=False, memory="static", into=into, donate=donate
    )
    return lines, update


def _backend_step_source(
    loss: Expr, targets: list[Expr], optimizer: Optimizer, name: str, optimize: bool, guard: bool, backend: Backend
) -> str:
    """The standalone module of a training step on ``backend``: a pure function returning the loss and the new
    params and state dicts (see :func:`codegen_step`)."""
    st = _step_body(loss, targets, optimizer, name, optimize, backend)
    body, v = st.body, st.v
    lines = [*(f'{p} = {v["params"]}["{p}"]' for p in st.pnames), *body.lines]
    bind, update = _update_body(st, optimizer, backend)
    ok = st.local.take("ok")
    if guard:
        finite = " & ".join(f"xp.all(xp.isfinite({g}))" for g in [body.results["loss"], *st.gvars])
        lines.append(f'{ok} = {v["state"]}["ok"] & {finite}')
    lines += [*bind, *update.lines]
    new: dict[str, dict[str, str]] = {"params": {}, "state": {}}
    for out, var in update.results.items():
        kind, key, old = st.updates[out]
        new[kind][key] = f"xp.where({ok}, {var}, {old})" if guard else var
    if guard:
        new["state"]["ok"] = ok
    dicts = ["{" + ", ".join(f'"{k}": {e}' for k, e in new[kind].items()) + "}" for kind in ("params", "state")]
    lines.append(f"return {body.results['loss']}, {dicts[0]}, {dicts[1]}")
    inputs = [s for s in body.symbols if s.kind == "input"]
    head = f"{name}({v['params']}, {v['state']}, {v['lr']}, {v['t']}"
    sig = head + (f", *, {', '.join(s.name for s in inputs)})" if inputs else ")")
    doc = _step_doc(st, optimizer, inputs, guard, pure=True)
    function = function_source(sig, doc, lines)
    wrapped = [f"{name} = {backend.wrap}({name})"] if backend.wrap else []
    x64 = any(p.dtype.itemsize == 8 for p in targets) or any(s.dtype.itemsize == 8 for s in body.symbols)
    return xp_module_source(name, backend, [body, update], [function, *wrapped], x64)


def _scalars(st: _Step, lines: list[str]) -> dict[np.dtype, tuple[Expr, Expr]]:
    """The learning rate and step number as symbols of each param dtype (the step's own ``lr`` and ``t`` for the
    first, an alias bound in ``lines`` for any other), so that they never widen an update's dtype."""
    out: dict[np.dtype, tuple[Expr, Expr]] = {}
    for dtype in dict.fromkeys(p.dtype for p in st.params):
        names = [st.v[k] if not out else st.local.take(st.v[k]) for k in ("lr", "t")]
        lines += [f"{n} = {st.v[k]}" for n, k in zip(names, ("lr", "t")) if n != st.v[k]]
        out[dtype] = (Input(names[0], (), dtype), Input(names[1], (), dtype))
    return out


def _donors(st: _Step) -> set[str]:
    """The gradient variables whose arrays the update may overwrite: arrays this step computed that no other
    output shares and that are not a param's."""
    body = st.body
    own = {line.split(" = ", 1)[0] for line, node in zip(body.lines, body.line_nodes) if not node.opdef.view}
    own |= st.copied
    counts = Counter(st.gvars)
    return {
        g
        for p, g in zip(st.pnames, st.gvars)
        if g in own and counts[g] == 1 and g not in st.pnames and body.roots[st.gnames[p]].ndim > 0
    }


def _step_doc(st: _Step, optimizer: Optimizer, inputs: list[SymbolSpec], guard: bool, pure: bool = False) -> list[str]:
    """The generated step's docstring: its arguments, the update rule and what it returns (``pure``: a step that
    returns new params and state, as the other backends' do)."""
    v = st.v
    formula = optimizer.formula().replace("\n", "\n        ")
    if pure:
        returns = ["Returns the loss before the update, and the new params and state dicts."]
        if guard:
            returns.append(
                'From a step whose loss or gradient is not finite on, nothing changes and state["ok"] is false.'
            )
    elif guard:
        returns = [
            "Returns the loss before the update. When the loss or a gradient is not finite it raises",
            "FloatingPointError and changes nothing.",
        ]
    else:
        returns = ["Returns the loss before the update (no check for nan/inf: generated with guard=False)."]
    how = "returns them updated" if pure else "updates params and state in place"
    return [
        f"One training step of {optimizer!r}; {how}.",
        "",
        f"params: dict name -> array{'' if pure else ', updated in place'}:",
        *(f"    {s.name}: shape {format_shape(s.shape)}, {s.dtype.name}" for s in st.body.symbols if s.kind == "param"),
        f"state: dict of optimizer slots{'' if pure else ', updated in place'}: "
        + (", ".join(sorted(f"{s}_{p}" for p in st.pnames for s in optimizer.slots)) or "none"),
        "inputs (None in a shape is an axis of any length):",
        *([f"    {s.describe()}" for s in inputs]),
        f"{v['lr']}: the learning rate of this step; {v['t']}: the step number (1, 2, ...).",
        "Update rule, for each parameter p with gradient g:",
        f"        {formula}",
        *returns,
    ]


def _check_params(targets: list[Expr], params: dict[str, np.ndarray]) -> None:
    """Refuse params that a step cannot train: not a plain, writable, finite array of its Param's dtype and shape."""
    for node in targets:
        name_ = node.label
        arr = params[name_]
        if not isinstance(arr, np.ndarray) or arr.dtype != node.dtype or not arr.flags.writeable:
            # the step updates the caller's arrays in place, so it cannot quietly work on a converted copy
            what = (
                "read-only"
                if isinstance(arr, np.ndarray) and arr.dtype == node.dtype
                else (f"of dtype {np.asarray(arr).dtype}")
            )
            raise DTypeError(
                f"param {name_!r} must be a writable {node.dtype} array (it is {what}); "
                "start from sd.init_params(loss) or convert it with np.array(..., dtype=...)"
            )
        if arr.shape != node.shape:
            raise InputError(
                f"param {name_!r} must have shape {format_shape(node.shape)}, got {format_shape(arr.shape)}"
            )
        refuse_masked(f"param {name_!r}", arr)
        if type(arr) is not np.ndarray:  # np.matrix would turn * into a product, an unmasked mask could grow
            raise DTypeError(
                f"param {name_!r} is a {type(arr).__name__}, not a plain ndarray: pass np.asarray(value) "
                "(it shares the data) or a copy"
            )
        if not np.isfinite(arr).all():  # once, here: the guard then keeps every later step finite
            raise InputError(
                f"param {name_!r} holds nan or inf values, so training would diverge at once: "
                "start from finite values (e.g. sd.init_params(loss))"
            )


class StepOptions(TypedDict, total=False):
    """The options of :func:`compile_step`, as :class:`TrainStep` takes them."""

    name: str
    optimize: bool
    guard: bool


class BackendOptions(StepOptions, total=False):
    """The options of :func:`compile_step`: :class:`StepOptions` and the array library to train on."""

    backend: Any
    device: Any
    jit: bool | None


class TrainStep:
    """A compiled training step bound to a params dict: ``step(x=Xb, y=yb) -> loss`` (a float).

    Updates the arrays of ``params`` and of ``state`` in place; ``t`` counts the steps taken.
    ``source`` holds the generated module. A step whose loss or gradient is not finite raises
    :class:`DivergenceError` (a ``FloatingPointError``) and changes nothing: no param, no state, not ``t``.
    Params must be plain, writable, finite arrays of their Param's dtype and shape (checked once, here).

    Limit: the guard checks the loss and the gradients, not the update computed from them. An update that
    overflows on its own (``Adam(lr=1e308)``, ``RMSprop(lr=1e308)``: finite gradients, an infinite
    step) is applied, and the next step then refuses its non-finite loss. Checking every update exactly would
    cost a pass over each param per step, more than the benchmarks allow (and a refusal could not undo the
    optimizer state already advanced); a learning rate that overflows the params is far outside any useful one.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> x, w = sd.Input("x", shape=(None, 3)), sd.Param("w", shape=(3,))
    >>> step = sd.compile_step(sd.mean(sd.square(x @ w - 1)), {"w": np.zeros(3)}, sd.optim.SGD(lr=0.1))
    >>> step(x=np.ones((2, 3))), step.t
    (1.0, 1)
    >>> try:
    ...     step(x=np.full((2, 3), np.inf))
    ... except sd.DivergenceError as e:
    ...     print(e)
    training step 2 diverged, not finite: loss, lr * dw (lr=0.1); the params and the optimizer state are unchanged
    >>> step.params["w"], step.t
    (array([0.2, 0.2, 0.2]), 1)
    """

    def __init__(
        self,
        loss: Expr,
        params: dict[str, np.ndarray],
        optimizer: Optimizer | None = None,
        name: str = "train_step",
        optimize: bool = True,
        guard: bool = True,
    ) -> None:
        name = validate_name(name, "function")
        self.optimizer = optimizer if optimizer is not None else SGD()
        if not isinstance(params, dict):
            raise TypeError("compile_step: params must be a dict name -> array, e.g. sd.init_params(loss)")
        _check_params(_trainable(loss, params), params)
        self.params = params
        self.loss = loss
        self.source = self._source(loss, list(params), name, optimize, guard)
        self.fn = load_source(self.source, name, cached=self.cached)
        self.state = self.optimizer.init_state(params)
        self.t = 0
        self._lock = threading.Lock()
        self.inputs = {e.label: e for e in leaves([loss]) if e.op == "input"}
        self._specs = [s for s in collect_symbols([loss]) if s.kind == "input"]  # with the class count of labels
        self._accepts = fast_check(self._specs)

    cached = False  # whether the module's file is the same in every process (a compiler caches beside it)

    def _source(self, loss: Expr, params: list[str], name: str, optimize: bool, guard: bool) -> str:
        """The generated module of this step."""
        return codegen_step(loss, params, self.optimizer, name=name, optimize=optimize, guard=guard)

    def check(self, data: Mapping[str, Any], /) -> dict[str, np.ndarray]:
        """Validate a batch: every input present, known dims matching, dtypes castable, batch lengths equal."""
        return check_arrays(self._specs, data, "the loss")

    def run(self, data: Mapping[str, np.ndarray], /) -> float:
        """One step on already-checked arrays (the driver's fast path).

        Thread-safe: the step's buffers, params and counter are shared, so one call runs at a time.
        """
        with self._lock:
            t = self.t + 1
            try:
                loss = self.fn(self.params, self.state, self.optimizer.lr_at(t), t, **data)
            except FloatingPointError as exc:  # costs nothing unless raised
                found = str(exc)
                if not found.startswith(_NOT_FINITE):  # NumPy's own (np.seterr(all="raise")), not the guard
                    raise
                raise DivergenceError(
                    f"training step {t} diverged, {found}; the params and the optimizer state are unchanged", found
                ) from None
            self.t = t
            return float(loss)

    def __call__(self, /, **data: Any) -> float:
        """One step on the batch ``data`` (every Input of the loss, by name); returns the loss before it."""
        return self.run(data if self._accepts(data) else self.check(data))

    @property
    def generators(self) -> dict[str, Any]:
        """The random generators the generated module keeps (one per dropout mask, by its name there: NumPy's, or
        on torch a ``torch.Generator``): a checkpoint saves their states (:func:`generator_state`), so that a
        resumed run draws the masks an uninterrupted one would."""
        space = getattr(self.fn, "__globals__", {})
        return {k: v for k, v in sorted(space.items()) if k.startswith("_rng") and _is_generator(v)}

    def pull(self) -> None:
        """Bring ``params`` and ``state`` up to date (a step on another library keeps them on its device)."""

    def push(self) -> None:
        """Take ``params`` and ``state`` as changed by the caller (a checkpoint, a callback) for the next step."""


def to_host(value: Any) -> np.ndarray:
    """An array of any backend as a NumPy array (from a GPU: copied to the host)."""
    for move in ("cpu", "get"):  # torch, cupy
        if hasattr(value, move) and not isinstance(value, np.ndarray):
            value = getattr(value, move)()
            break
    return np.asarray(value)


class BackendTrainStep(TrainStep):
    """A training step on another array library (``compile_step(..., backend="torch")``).

    The params and optimizer state live as that library's arrays on its device (``device_params``,
    ``device_state``) from construction on; :meth:`run` returns the loss as a device scalar without waiting for it,
    and :meth:`pull` copies the arrays back into ``params`` and ``state`` (NumPy, the caller's arrays) and raises
    :class:`DivergenceError` if a step met a non-finite loss or gradient (the params are then those before it).
    Calling the step (``step(x=..., y=...)``) does both after the step, and returns a float.
    """

    def __init__(
        self,
        loss: Expr,
        params: dict[str, np.ndarray],
        optimizer: Optimizer | None = None,
        *,
        backend: Any,
        device: Any = None,
        jit: bool | None = None,
        **options: Unpack[StepOptions],
    ) -> None:
        self.target = {"backend": backend, "device": device, "jit": jit}
        self.guard = options.get("guard", True)
        super().__init__(loss, params, optimizer, **options)
        self._xp, self._device = namespace_of(self.fn)
        self.push()

    def _source(self, loss: Expr, params: list[str], name: str, optimize: bool, guard: bool) -> str:
        return codegen_step(loss, params, self.optimizer, name, optimize=optimize, guard=guard, **self.target)

    def push(self) -> None:
        """Copy ``params`` and ``state`` (NumPy) to the device; the guard starts afresh."""
        self.device_params = to_backend(self.fn, self.params)
        self.device_state = to_backend(self.fn, self.state)
        if self.guard:
            self.device_state["ok"] = to_backend(self.fn, {"ok": np.True_})["ok"]

    def pull(self) -> None:
        """Copy the device's params and state into ``params`` and ``state``; raise :class:`DivergenceError` when a
        step since the last pull met a non-finite loss or gradient (no step updated anything from it on)."""
        for host, device in ((self.params, self.device_params), (self.state, self.device_state)):
            for k, arr in host.items():
                np.copyto(arr, to_host(device[k]))
        if self.guard and not bool(to_host(self.device_state["ok"])):
            self.push()  # the device arrays are the last finite ones: the next step starts from them
            raise DivergenceError(
                "not finite: a step's loss or gradient; the params and the optimizer state keep their values "
                "from before it",
                "not finite: loss or gradient",
            )

    def run(self, data: Mapping[str, np.ndarray], /) -> Any:
        """One step on already-checked arrays; returns the loss as the library's scalar (no wait for the device)."""
        with self._lock:
            t = self.t + 1
            batch = {k: self._xp.asarray(v, device=self._device) for k, v in data.items()}
            loss, self.device_params, self.device_state = self.fn(
                self.device_params, self.device_state, self.optimizer.lr_at(t), t, **batch
            )
            self.t = t
            return loss

    def __call__(self, /, **data: Any) -> float:
        """One step on the batch ``data``, then :meth:`pull`; returns the loss before it as a float."""
        loss = self.run(self.check(data))
        self.pull()
        return float(to_host(loss))


class FusedTrainStep(TrainStep):
    """A training step on the fused backend (``backend="numba"``): forward, backward, guard and update as one
    function compiled by Numba (see :mod:`symdiff.fused`); called and checked as :class:`TrainStep` is. Numba
    compiles it on the first call (``compile_seconds`` says how long) and keeps the machine code on disk."""

    def __init__(self, loss: Expr, params: dict[str, np.ndarray], optimizer: Optimizer | None = None, **options: Any):
        require_numba()
        unknown = sorted(k for k, v in options.items() if k in ("device", "jit") and v not in (None, False))
        if unknown:
            raise TypeError(f"compile_step(backend='numba') takes no option {unknown[0]!r} (it runs on the CPU)")
        options = {k: v for k, v in options.items() if k not in ("device", "jit")}
        super().__init__(loss, params, optimizer, **options)
        self.compile_seconds: float | None = None

    cached = True  # Numba's cache=True keeps the machine code beside the module: a second process compiles nothing

    def _source(self, loss: Expr, params: list[str], name: str, optimize: bool, guard: bool) -> str:
        return fused_step_source(loss, _trainable(loss, params), self.optimizer, name, guard)

    def run(self, data: Mapping[str, np.ndarray], /) -> float:
        if self.compile_seconds is None:  # the first call compiles (or loads the cached machine code)
            start = time.perf_counter()
            loss = super().run(data)
            self.compile_seconds = time.perf_counter() - start
            return loss
        return super().run(data)


def compile_step(
    loss: Expr, params: dict[str, np.ndarray], optimizer: Optimizer | None = None, **options: Unpack[BackendOptions]
) -> TrainStep:
    """A callable ``step(**batch) -> loss`` that also updates ``params`` (and optimizer state) in place.

    ``options``: ``name`` of the generated function, and ``optimize`` and ``guard`` (see :func:`codegen_step`).
    With the guard, a step whose loss or a gradient is not finite raises :class:`DivergenceError` (a
    ``FloatingPointError``, as in ``fit``) and changes nothing. ``backend`` (``device``, ``jit``) trains on another
    array library: a :class:`BackendTrainStep`.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> x, w = sd.Input("x", shape=(None, 3)), sd.Param("w", shape=(3,))
    >>> params = {"w": np.zeros(3)}
    >>> step = sd.compile_step(sd.mean(sd.square(x @ w - 1)), params, sd.optim.SGD(lr=0.1))
    >>> step(x=np.ones((2, 3)))
    1.0
    >>> params["w"]
    array([0.2, 0.2, 0.2])
    """
    if options.get("backend") == "numba":
        return FusedTrainStep(loss, params, optimizer, **{k: v for k, v in options.items() if k != "backend"})
    if resolve(options.get("backend", "numpy"), options.get("device"), options.get("jit")) is not None:
        return BackendTrainStep(loss, params, optimizer, **options)
    options = {k: v for k, v in options.items() if k not in ("backend", "device", "jit")}
    return TrainStep(loss, params, optimizer, **options)
