"""Code generation: graph in, standalone NumPy module source out (pure: no execution here).

The module imports only NumPy and defines one function with keyword-only arguments named after the
symbols (parameters first, then inputs, each in first-use order). Its body is one statement per
intermediate that deserves a name (shared, user-named, an output, or long), every intermediate computed
once; helpers for ops without a one-call NumPy form (stable softmax, ...) are copied in. The same graph
always gives byte-identical source.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backends import ARRAY_API, Backend, check_supported, has_64bit, helpers_used, resolve
from .graph import Expr, check_unique_symbols, const_value, dtype_source, format_shape, topo_order
from .naming import validate_name
from .ops.dropout import without_dropout
from .ops.kernels import KERNELS
from .ops.leaves import scalar_text
from .ops.registry import xp_dtype
from .printing import Layout, layout, nested_roots

__all__ = [
    "Body",
    "Signature",
    "codegen",
    "collect_symbols",
    "emit_body",
    "function_source",
    "module_source",
    "normalize_outputs",
]


@dataclass(frozen=True)
class SymbolSpec:
    """One argument of a generated function."""

    name: str
    kind: str  # "param" or "input"
    shape: tuple
    dtype: np.dtype
    classes: int | None = None  # class labels (picked or one-hot encoded): each must lie in [0, classes)

    def describe(self) -> str:
        """``W: param, shape (64, 10), float64``."""
        return f"{self.name}: {self.kind}, shape {format_shape(self.shape)}, {self.dtype.name}"


@dataclass(frozen=True)
class Signature:
    """What a generated function takes and returns."""

    symbols: tuple[SymbolSpec, ...]
    outputs: tuple[tuple[str, tuple, np.dtype], ...]
    kind: str  # "dict", "single" or "tuple" (a list, nested lists too): how the caller passed the outputs


def normalize_outputs(outputs: Expr | Sequence[Any] | Mapping[str, Expr]) -> tuple[dict[str, Expr], str, Any]:
    """``outputs`` as an ordered ``{name: expr}``, how they were given, and for a list its nesting (the same
    lists, nested lists such as a Hessian's blocks too, with each expression replaced by its index)."""
    if isinstance(outputs, Expr):
        return {"out": outputs}, "single", None
    if isinstance(outputs, Mapping):
        out = {}
        for k, v in outputs.items():
            k = validate_name(k, "output")
            if not isinstance(v, Expr):
                raise TypeError(f"output {k!r} is a {type(v).__name__}, not a symdiff expression")
            out[k] = v
        if not out:
            raise ValueError("codegen: no outputs given")
        return out, "dict", None
    items, nesting = nested_roots(list(outputs), "codegen")
    if not items:
        raise TypeError("outputs must be an expression, a list of expressions or a dict name -> expression")
    return dict(zip(_output_names(nesting), items)), "tuple", nesting


def _output_names(nesting: Any, path: tuple[int, ...] = ()) -> list[str]:
    """The names of a list's outputs, in order: ``out<i>``, and ``out<i>_<j>`` in nested lists."""
    if isinstance(nesting, int):
        return ["out" + "_".join(map(str, path))]
    return [name for i, sub in enumerate(nesting) for name in _output_names(sub, (*path, i))]


def _tuple_source(nesting: Any, results: Sequence[str]) -> str:
    """The tuple display of a list's outputs (their ``results`` in ``nesting``): ``(a, b)``, ``(a,)``,
    ``((a, b), (c, d))``."""
    if isinstance(nesting, int):
        return results[nesting]
    inner = ", ".join(_tuple_source(sub, results) for sub in nesting)
    return "(" + inner + ("," if len(nesting) == 1 else "") + ")"


# ops whose argument at this index holds class labels; the class count is the op's last output axis
LABEL_ARGS = {"pick": 1, "onehot": 0, "onehot_sub": 1}


def collect_symbols(roots: Sequence[Expr]) -> tuple[SymbolSpec, ...]:
    """The symbols the roots need: params first, then inputs, each in first-use order; names unique.

    An integer symbol that an op uses directly as class labels gets its class count (the smallest, if several).
    """
    found: dict[str, Expr] = {}
    classes: dict[int, int] = {}
    order = topo_order(roots)
    check_unique_symbols(order)
    for node in order:
        if node.is_symbol:
            name = node.attrs["name"]
            found[name] = node
        elif node.op in LABEL_ARGS:
            labels = node.args[LABEL_ARGS[node.op]]
            count = node.args[0].shape[-1] if node.op == "pick" else node.shape[-1]
            if count is not None:
                classes[id(labels)] = min(count, classes.get(id(labels), count))
    ordered = [e for e in found.values() if e.op == "param"] + [e for e in found.values() if e.op == "input"]
    return tuple(SymbolSpec(e.attrs["name"], e.op, e.shape, e.dtype, classes.get(id(e))) for e in ordered)


_NONFINITE = {"nan": "np.nan", "inf": "np.inf", "-inf": "-np.inf"}
_CONST_WIDTH = 96  # soft line width of an array constant's rows


def _item_source(value: np.generic) -> str:
    """One array element as exact Python source: shortest round-trip text, ``np.inf``/``np.nan`` by name."""
    text = scalar_text(value)
    return _NONFINITE.get(text, text)


def _rows_source(arr: np.ndarray, indent: int) -> str:
    """``arr`` as nested list source, wrapped at :data:`_CONST_WIDTH`; ``indent`` is its column."""
    if arr.ndim > 1:
        rows = [_rows_source(sub, indent + 1) for sub in arr]
        return "[" + (",\n" + " " * (indent + 1)).join(rows) + "]"
    lines: list[str] = []
    line = ""
    for item in map(_item_source, arr):
        if line and indent + len(line) + len(item) + 3 > _CONST_WIDTH:
            lines.append(line + ",")
            line = ""
        line = f"{line}, {item}" if line else item
    lines.append(line)
    return "[" + ("\n" + " " * (indent + 1)).join(lines) + "]"


def _const_source(arr: np.ndarray, column: int = 0) -> str:
    """An array constant as source that rebuilds it exactly (never NumPy's printer: print options vary).

    ``column`` is where the source starts on its line (continuation lines align under the first row).
    """
    dtype = dtype_source(arr.dtype)
    if arr.size == 0:
        return f"np.zeros({arr.shape!r}, dtype={dtype})"
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1] > 1 and np.array_equal(arr, np.eye(len(arr))):
        return f"np.eye({len(arr)}, dtype={dtype})"  # the identity of the gradients of det, slogdet (sd.linalg)
    return f"np.array({_rows_source(arr, column + len('np.array('))}, dtype={dtype})"


@dataclass
class Body:
    """Statements computing some outputs, ready to be placed in a function.

    ``lines`` compute every output; ``results[name]`` is the expression (usually a variable) holding
    output ``name``; ``kernels`` and ``constants`` must be emitted at module level.
    """

    symbols: tuple[SymbolSpec, ...]
    lines: list[str]
    results: dict[str, str]
    roots: dict[str, Expr]
    kernels: set[str]
    constants: list[tuple[str, Expr]]
    taken: set[str]
    setup: list[str] = field(default_factory=list)
    module: list[str] = field(default_factory=list)
    flat: list[tuple[str, set[str]]] = field(default_factory=list)  # (flat array, output names viewing it)
    line_nodes: list[Expr] = field(default_factory=list)  # the node each of ``lines`` computes
    generators: list[tuple[str, Expr]] = field(default_factory=list)  # module-level generators of random nodes


def emit_body(
    outs: Mapping[str, Expr],
    reserved: Sequence[str] = (),
    own_outputs: bool = True,
    memory: str | None = None,
    *,
    into: Mapping[str, Expr] | None = None,
    donate: Sequence[Expr] = (),
    backend: Backend | None = None,
) -> Body:
    """Lay out the statements that compute ``outs`` (a dict output name -> expression).

    With ``own_outputs`` every output is an array of its own (a symbol or a repeated output is copied).
    ``memory`` plans buffers (see :mod:`symdiff.memory`): ``None`` for one readable line per named
    intermediate, ``"fresh"`` to reuse dead buffers within a call, ``"workspace"`` to keep buffers
    between calls (then outputs other than scalars must not escape the function), ``"static"`` to allocate
    them once when the module loads (every shape known).

    ``into`` (with ``memory``) maps output names to symbols whose arrays receive those outputs in place (a
    param its update); ``donate`` lists symbols whose arrays the statements may overwrite after their last use.
    With a ``backend`` (not NumPy) the statements are its Array API forms, one readable line per named
    intermediate (no memory planning: ``memory`` must be ``None``); an op without one is refused.
    """
    if backend is not None:
        check_supported(list(outs.values()), backend)
    xp = backend is not None
    lib = "xp" if xp else "np"
    reserved = [*reserved, *ARRAY_API, "xp", "_device"] if xp else reserved
    names = list(outs)
    targets = [(into or {}).get(k) for k in names]
    if into:  # outputs reading another's target before it is written come first
        from .memory import write_order

        order = write_order([outs[k] for k in names], targets)
        names, targets = [names[i] for i in order], [targets[i] for i in order]
    roots = [outs[k] for k in names]
    symbols = collect_symbols(roots)
    dialect = "xp" if xp else "numpy"
    lay = layout(roots, names, dialect=dialect, reserved=[*reserved, *KERNELS, lib], statements=memory is not None)
    for i, (node, var, text) in enumerate(lay.lines):
        if node.op in ("broadcast_like", "broadcast_to") and any(node is r for r in roots):
            fresh = f"xp.asarray({text}, copy=True)" if xp else f"np.array({text})"
            lay.lines[i] = (node, var, fresh)  # outputs are fresh, writable arrays, not views
    setup: list[str] = []
    module: list[str] = []
    flat: list[tuple[str, set[str]]] = []
    if memory is None:
        lines = [f"{var} = {text}" for _, var, text in lay.lines]
    else:
        from .memory import Into, plan

        planned = plan(lay, roots, memory, Into(tuple(targets), tuple(donate)))
        lines, setup, module = planned.lines, planned.setup, planned.module
        flat = [(buf, {k for k, r in zip(names, roots) if id(r) in ids}) for buf, ids in planned.flat]
    results = _results(lay, dict(zip(names, roots)), targets, xp, own_outputs)
    taken = {*lay.names.values(), *reserved, *KERNELS, lib, *(s.name for s in symbols)}
    line_nodes = [node for node, _, _ in lay.lines]
    return Body(
        symbols,
        lines,
        results,
        dict(outs),
        set(lay.kernels),
        list(lay.constants),
        taken,
        setup,
        module,
        flat,
        line_nodes,
        lay.generators,
    )


def _results(
    lay: Layout, outs: Mapping[str, Expr], targets: Sequence[Expr | None], xp: bool, own_outputs: bool
) -> dict[str, str]:
    """The expression each output of :func:`emit_body` returns: the array that received it (a ``target``), a
    constant as an array, a copy where it would alias the caller's array or another output (``own_outputs``)."""
    results: dict[str, str] = {}
    for (k, r), target in zip(outs.items(), targets):
        expr = lay.fmt(r).text
        if target is not None:
            expr = target.label  # the array that received it
        elif r.op == "const":
            expr = (
                f"xp.asarray({expr}, dtype={xp_dtype(r.dtype)}, device=_device)"
                if xp
                else f"np.asarray({expr}, dtype={dtype_source(r.dtype)})"
            )
        elif own_outputs and (r.opdef.view and "broadcast" not in r.op or expr in results.values()):  # W, W.T alias
            # never hand back the caller's array, or one array twice
            expr = f"xp.asarray({expr}, copy=True)" if xp else f"{expr}.copy()"
        results[k] = expr
    return results


# Standard-library functions a generated module may call, by the alias it calls them as (imported when it does).
_STDLIB = {"_isfinite": "from math import isfinite as _isfinite"}


def module_source(title: str, bodies: Sequence[Body], functions: Sequence[str]) -> str:
    """A standalone module: docstring, ``import numpy as np``, constants, helper kernels, then ``functions``."""
    header = (
        f'"""{title}: generated by symdiff from a symbolic graph; needs only NumPy.\n\n'
        'Regenerate it with symdiff rather than editing it by hand.\n"""\n\n'
    )
    used = " ".join(functions)
    stdlib = [line for alias, line in _STDLIB.items() if alias + "(" in used]
    parts = [header + "\n".join([*stdlib, *([""] if stdlib else []), "import numpy as np"])]
    constants = [c for b in bodies for c in b.constants]
    if constants:
        parts.append("\n".join(f"{cname} = {_const_source(const_value(c), len(cname) + 3)}" for cname, c in constants))
    rows = _generator_rows(bodies, "np.random.default_rng({seed})")
    if rows:
        parts.append("\n".join(rows))
    code = [*functions, *(m for b in bodies for m in b.module)]
    for kname in _kernels_used({k for b in bodies for k in b.kernels}, code):
        parts.append(inspect.getsource(KERNELS[kname]).rstrip())
    parts.extend(m for b in bodies for m in b.module)
    parts.extend(functions)
    return "\n\n\n".join(parts) + "\n"


def _generator_rows(bodies: Sequence[Body], source: str) -> list[str]:
    """Random nodes: one generator each (``source`` with the node's ``{seed}``), kept between calls, so that every
    call draws anew."""
    return [
        f"{gname} = {source.format(seed=n.attrs['seed'])}  # {n.op}: new values each call"
        for b in bodies
        for gname, n in b.generators
    ]


def xp_module_source(title: str, backend: Backend, bodies: Sequence[Body], functions: Sequence[str], x64: bool) -> str:
    """A standalone module for ``backend``: docstring, its imports, ``_device``, constants, the helpers the
    ``functions`` call (the backend's own or the Array API's), then ``functions``."""
    compat = " (and array-api-compat)" if any("array_api_compat" in line for line in backend.imports) else ""
    header = (
        f'"""{title}: generated by symdiff from a symbolic graph; needs only {backend.library}{compat}.\n\n'
        'Regenerate it with symdiff rather than editing it by hand.\n"""\n\n' + "\n".join(backend.imports)
    )
    parts = [header]
    if x64 and backend.x64:
        parts[0] += "\n\n" + backend.x64
    parts[0] += f"\n\n_device = {backend.device}"
    constants = [c for b in bodies for c in b.constants]
    if constants:
        parts.append(
            "\n".join(f"{cname} = {_xp_const_source(const_value(c), len(cname) + 3)}" for cname, c in constants)
        )
    rows = _generator_rows(bodies, backend.generator or "")
    if rows:
        parts.append("\n".join(rows))
    parts.extend(backend.helper(h) or "" for h in helpers_used(functions, backend))
    parts.extend(functions)
    return "\n\n\n".join(parts) + "\n"


def _xp_const_source(arr: np.ndarray, column: int = 0) -> str:
    """An array constant as Array API source on ``_device`` (rebuilt exactly, as :func:`_const_source` does)."""
    dtype = xp_dtype(arr.dtype)
    if arr.size == 0:
        return f"xp.zeros({arr.shape!r}, dtype={dtype}, device=_device)"
    rows = (
        _rows_source(arr, column + len("xp.asarray("))
        .replace("np.inf", "float('inf')")
        .replace("np.nan", "float('nan')")
    )
    return f"xp.asarray({rows}, dtype={dtype}, device=_device)"


def _kernels_used(declared: set[str], code: Sequence[str]) -> list[str]:
    """The kernels among ``declared`` (those the ops used name) that ``code`` calls, or that a called kernel calls:
    an op whose NumPy form calls a kernel only for some arguments (sum over leading axes) adds none otherwise."""
    calls = re.compile(r"\b(" + "|".join(map(re.escape, sorted(declared))) + r")\(") if declared else None
    used: set[str] = set()
    todo = list(code)
    while todo and calls is not None:
        for kname in set(calls.findall(todo.pop())) - used:
            used.add(kname)
            todo.append(inspect.getsource(KERNELS[kname]))
    return sorted(used)


def function_source(signature: str, doc: Sequence[str], lines: Sequence[str]) -> str:
    """``def <signature>:`` with a docstring and an indented body."""
    text = "\n".join(doc).replace("\\", "\\\\").replace('"', '\\"')  # user text (a schedule's name) stays text
    docstring = textwrap.indent('"""' + text + '\n"""', "    ")
    return f"def {signature}:\n{docstring}\n" + textwrap.indent("\n".join(lines), "    ")


def symbols_doc(symbols: Sequence[SymbolSpec]) -> list[str]:
    """Docstring lines listing the arguments with their shapes and dtypes."""
    return [
        "Arguments (keyword-only; None in a shape is an axis of any length):",
        *(f"    {s.describe()}" for s in symbols),
    ]


def codegen(
    outputs: Expr | Sequence[Any] | Mapping[str, Expr],
    name: str = "fn",
    *,
    signature: bool = False,
    optimize: bool = False,
    training: bool = False,
    backend: Any = "numpy",
    device: Any = None,
    jit: bool | None = None,
) -> Any:
    """Source of a standalone NumPy module defining ``name(*, <symbols>) -> outputs``.

    Parameters:
        outputs: a dict ``{output name: expression}`` (the function returns a dict), a list (returns a
            tuple; nested lists, such as the blocks of ``sd.hessian(f, [x, y])``, return tuples nested alike)
            or one expression (returns one array).
        name: the function's name (a Python identifier).
        signature: also return the :class:`Signature` (``(source, signature)``).
        optimize: generate code for speed rather than for reading: lowered ops (shared softmax
            exponentials, no one-hot matrices) and one statement per array with dead buffers reused.
        training: keep the random masks of ``sd.dropout`` (a fresh one each call); by default the code
            evaluates, with dropout the identity.
        backend: ``"numpy"`` (the default), ``"torch"``, ``"jax"``, ``"cupy"`` or an Array API namespace: the module
            then imports only that library (and ``array_api_compat`` where its namespace needs it) and is written
            against the Array API standard (see :mod:`symdiff.backends`); ``optimize`` lowers the graph alike.
        device: that library's device (``"cpu"``, ``"cuda"``) for the arrays the code creates.
        jit: wrap the function in the library's compiler: ``jax.jit`` (JAX's default) or ``torch.compile``.

    Returns:
        The module source as a string.

    >>> import symdiff as sd
    >>> x, w = sd.Input("x", shape=(3,)), sd.Param("w", shape=(3,))
    >>> source = sd.codegen(sd.grad(sd.sum(sd.tanh(x * w)), [w])[0], "dw")
    >>> print(*source.splitlines()[-2:], sep="\\n")
        dw1 = (1 - np.tanh(x * w)**2) * x
        return dw1
    """
    name = validate_name(name, "function")
    target = resolve(backend, device, jit)
    outs, kind, nesting = normalize_outputs(outputs)
    if not training:
        outs = dict(zip(outs, without_dropout(list(outs.values()))))
    if target is not None:  # refused by the op the user wrote (conv2d), not by the op it lowers to (im2col)
        check_supported(list(outs.values()), target)
    if optimize:
        from .lower import lower

        outs = dict(zip(outs, lower(list(outs.values()), patches=target is None)))
    memory = "fresh" if optimize and target is None else None
    body = emit_body(outs, reserved=[name], memory=memory, backend=target)
    names = list(outs)
    returns = {"dict": "a dict with", "single": "one array:", "tuple": "a tuple of"}[kind]
    doc = [
        f"Compute {', '.join(names) if kind != 'single' else 'the output'} from the symbols.",
        "",
        *symbols_doc(body.symbols),
        f"Returns {returns}",
        *(f"    {k}: shape {format_shape(r.shape)}, {r.dtype.name}" for k, r in outs.items()),
    ]
    results = body.results
    if kind == "dict":
        ret = "return {" + ", ".join(f'"{k}": {results[k]}' for k in names) + "}"
    elif kind == "tuple":
        ret = "return " + _tuple_source(nesting, [results[k] for k in names])
    else:
        ret = f"return {results[names[0]]}"
    arg_list = ", ".join(s.name for s in body.symbols)
    sig = f"{name}(*, {arg_list})" if body.symbols else f"{name}()"
    function = function_source(sig, doc, [*body.setup, *body.lines, ret])
    if target is None:
        source = module_source(name, [body], [function])
    else:
        wrapped = [f"{name} = {target.wrap}({name})"] if target.wrap else []
        x64 = has_64bit(list(outs.values()))
        source = xp_module_source(name, target, [body], [function, *wrapped], x64)
    if signature:
        outspec = tuple((k, r.shape, r.dtype) for k, r in outs.items())
        return source, Signature(body.symbols, outspec, kind)
    return source
