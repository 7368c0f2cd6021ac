"""Readable formulas: text in NumPy-like notation, LaTeX, and the conversion to SymPy.

Printing and code generation share one *layout* (:func:`layout`): the nodes that deserve a line of
their own (user-named nodes, shared subexpressions, outputs, long pieces) get one, named after the user's
label, the gradient's symbol (``dW1``) or the op; everything else is written inline with the minimal
parentheses Python's precedence needs. The same graph always gives the same text.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .graph import (
    HOOKS,
    Expr,
    check_unique_symbols,
    const_value,
    constant,
    dtype_operand,
    dtype_source,
    make,
    topo_order,
)
from .naming import NameAllocator, grad_name, grad_order, latex_name, mixed_grad_name
from .ops.leaves import is_identity, scalar_text
from .ops.registry import ATOM, UNARY, Fmt, xp_dtype

CODE_DIALECTS = ("numpy", "xp")  # the dialects that generate code (xp: the Array API form of other libraries)
INLINE_LIMIT = 72  # a single-use subexpression longer than this gets its own line
LATEX_INLINE_LIMIT = 200  # LaTeX markup is about three times as long as the formula it draws


@dataclass
class Layout:
    """The lines of a printed graph: ``lines`` are ``(node, name, text)`` in dependency order."""

    lines: list[tuple[Expr, str, str]] = field(default_factory=list)
    fmts: dict[int, Fmt] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    kernels: set[str] = field(default_factory=set)
    constants: list[tuple[str, Expr]] = field(default_factory=list)
    generators: list[tuple[str, Expr]] = field(default_factory=list)  # (name, random node): code dialects

    def fmt(self, node: Expr) -> Fmt:
        """How ``node`` appears inside another expression (its name if it has a line)."""
        return self.fmts[id(node)]


def layout(
    roots: Sequence[Expr],
    root_names: Sequence[str | None],
    dialect: str = "text",
    reserved: Sequence[str] = (),
    statements: bool = False,
) -> Layout:
    """Decide which nodes get a line, name them, and format every line in ``dialect``.

    With ``statements`` every array-valued computation gets a line of its own (only views such as
    ``.T`` and single-use scalars stay inline), as the memory planner of :mod:`symdiff.codegen` needs.

    ``dialect`` is ``"text"``, ``"latex"``, ``"numpy"`` or ``"xp"`` (the formatter each op entry provides).
    ``root_names[i]`` names root ``i``'s line (``None``: the root's own label, or no name at all).
    """
    order = topo_order(roots)
    uses: Counter[int] = Counter()
    for node in order:
        for a in node.args:
            uses[id(a)] += 1
    root_ids = {id(r) for r in roots}
    for r in roots:
        uses[id(r)] += 1
    forced = {id(a) for n in order if n.op == "sympy_fn" for a in n.args}
    code = dialect in CODE_DIALECTS
    typed = _typed_scalars(order) if code else set()
    integral = _integral_candidates(order, roots) if not code else set()

    check_unique_symbols(order)
    alloc = NameAllocator([*(n.label for n in order if n.is_symbol), *reserved])
    out = Layout()
    labels = _take_labels(roots, root_names, order, alloc)
    for node in order:
        opdef = node.opdef
        formatter = getattr(opdef, dialect)
        if formatter is None:
            raise NotImplementedError(f"op {node.op!r} has no {dialect} form")
        if node.is_symbol:
            out.fmts[id(node)] = Fmt(latex_name(node.label) if dialect == "latex" else node.label, ATOM)
            out.names[id(node)] = node.label
            continue
        if node.op == "const" and code and node.ndim > 0:
            name = alloc.take("_c", numbered=True)
            out.constants.append((name, node))
            out.fmts[id(node)] = Fmt(name, ATOM)
            out.names[id(node)] = name
            continue
        if dialect == "numpy":
            out.kernels.update(opdef.kernels)
        if node.op == "cast" and node.dtype == node.args[0].dtype and not code:
            fmt = out.fmts[id(node.args[0])]  # a label on a symbol (see label_gradients): no operation to show
        else:
            args = [out.fmts[id(a)] for a in node.args]
            if dialect == "xp":
                args = _xp_operands(node, args)
            if opdef.random and dialect in CODE_DIALECTS:  # the generator the module keeps for this node first
                out.generators.append((alloc.take("_rng", numbered=True), node))
                args.insert(0, Fmt(out.generators[-1][0], ATOM))
            fmt = formatter(node, args)
        if id(node) in integral:
            fmt = _integral_float(node) or fmt
        elif node.op == "const" and node.ndim and not code:
            fmt = _array_constant(node, dialect) or fmt
        if id(node) in typed:  # a 0-d constant whose dtype must win over a narrower operand's
            dtype = xp_dtype(node.dtype) if dialect == "xp" else dtype_source(node.dtype)
            fmt = Fmt(f"xp.asarray({fmt.text}, dtype={dtype})" if dialect == "xp" else f"{dtype}({fmt.text})", ATOM)
        needs_line = (
            id(node) in labels
            or id(node) in forced
            or id(node) in root_ids
            or _wants_line(node, fmt, uses[id(node)], dialect, statements)
        )
        if needs_line and not (node.op == "const" and id(node) not in root_ids):
            name = labels.get(id(node)) or alloc.take(node.opdef.hint or node.op, numbered=node.op != "dim")
            out.lines.append((node, name, fmt.text))
            out.names[id(node)] = name
            out.fmts[id(node)] = Fmt(latex_name(name) if dialect == "latex" else name, ATOM)
        else:
            out.fmts[id(node)] = fmt
    return out


def _wants_line(node: Expr, fmt: Fmt, uses: int, dialect: str, statements: bool) -> bool:
    """Whether ``node`` (formatted as ``fmt``, read ``uses`` times) gets a line of its own for what it is: a length,
    a shared computation, a long formula, or (``statements``) an array computation or a reduction to a scalar by an
    op with an ``out=`` form (``np.add.reduce(d, axis=0)``, which skips ``np.sum``'s Python wrapper)."""
    opdef = node.opdef
    cheap = node.op == "const" or (opdef.inline_view and (node.args[0].is_symbol or node.args[0].op == "const"))
    return (
        node.op == "dim"
        or (uses > 1 and not cheap)
        or (len(fmt.text) > (LATEX_INLINE_LIMIT if dialect == "latex" else INLINE_LIMIT) and node.op != "const")
        or (statements and node.ndim > 0 and not opdef.view)
        or (
            statements
            and node.ndim == 0
            and opdef.out is not None
            and not opdef.inplace
            and any(a.ndim for a in node.args)
        )
    )


def _xp_operands(node: Expr, args: list[Fmt]) -> list[Fmt]:
    """The Array API operands of ``node``: a boolean operand of arithmetic cast to the result's dtype, a scalar
    constant of a non-element-wise op an array (the standard mixes neither Python scalars nor booleans in)."""
    out = []
    for a, fmt in zip(node.args, args):
        if (
            a.dtype.kind == "b"
            and node.dtype.kind != "b"
            and node.opdef.elementwise
            and node.op not in ("where", "cast")
        ):
            fmt = Fmt(f"xp.astype({fmt.text}, {xp_dtype(node.dtype)})", ATOM)
        elif a.op == "const" and a.ndim == 0 and not node.opdef.elementwise:
            fmt = Fmt(f"xp.asarray({fmt.text}, dtype={xp_dtype(a.dtype)}, device=_device)", ATOM)
        out.append(fmt)
    return out


def _array_constant(node: Expr, dialect: str) -> Fmt | None:
    """How a formula writes an array constant that has a name: an identity as ``eye(n)``, a fill too large to list
    as ``broadcast_to(0.0, (3, 3))`` (``\\mathbf{0}_{3 \\times 3}``), like the ops that build them."""
    arr = const_value(node)
    if node.shape[0] > 1 and node.ndim == 2 and node.shape[0] == node.shape[1] and arr.dtype.kind == "f":
        k = arr[0, 0]
        if k not in (0, 1) and np.array_equal(arr, k * np.eye(node.shape[0], dtype=arr.dtype)):  # 24 * eye(2)
            shown = make("mul", (constant(k), constant(np.eye(node.shape[0], dtype=arr.dtype))))
            scale = getattr(shown.args[0].opdef, dialect)(shown.args[0], [])
            scale = _integral_float(shown.args[0]) or scale
            return getattr(shown.opdef, dialect)(shown, [scale, _array_constant(shown.args[1], dialect)])
    if node.shape[0] > 1 and is_identity(node):
        shown = make("eye", (), {"n": node.shape[0], "m": None, "dtype": node.dtype.str})
        return getattr(shown.opdef, dialect)(shown, [])
    if arr.size <= 8 and (dialect == "text" or arr.ndim == 1) or not np.all(arr == arr.flat[0]):
        return None  # listed in full, or not a fill
    value = constant(arr.flat[0])
    shown = make("broadcast_to", (value,), {"shape": node.shape})
    return getattr(shown.opdef, dialect)(shown, [getattr(value.opdef, dialect)(value, [])])


def _integral_candidates(order: list[Expr], roots: Sequence[Expr]) -> set[int]:
    """The 0-d float constants that formulas may write as integers (``2 * x``, not ``2.0 * x``): those used only
    by element-wise ops with a float operand that is not a constant, which then decides the dtype. Where the
    literal alone is the dtype (an output ``3.0``, ``broadcast_to(1.0, s)``) it keeps its point."""
    ok, kept = set(), {id(r) for r in roots}
    for n in order:
        for a in n.args:
            if a.op == "const" and a.ndim == 0 and a.dtype.kind == "f":
                floats = n.opdef.elementwise and any(b.op != "const" and b.dtype.kind == "f" for b in n.args)
                (ok if floats else kept).add(id(a))
    return ok - kept


def _integral_float(node: Expr) -> Fmt | None:
    """A 0-d float constant with an integral value as an integer (``2``, not ``2.0``): formulas write numbers
    one way; generated code keeps the float literal, whose dtype matters there."""
    value = node.attrs["value"].array[()]
    if node.dtype.kind != "f" or not np.isfinite(value) or value != np.round(value) or abs(value) >= 2.0**53:
        return None
    if value == 0 and np.signbit(value):  # -0.0 keeps its sign
        return None
    text = str(int(value))
    return Fmt(text, UNARY if text.startswith("-") else ATOM)


def _take_labels(
    roots: Sequence[Expr], root_names: Sequence[str | None], order: list[Expr], alloc: NameAllocator
) -> dict[int, str]:
    """The names of labelled lines: unlabelled outputs take the output's name, then user labels, all before
    any automatic name is handed out so that none takes them."""
    labels: dict[int, str] = {}
    for r, rname in zip(roots, root_names):
        if rname and not r.name and id(r) not in labels and not r.is_symbol:
            labels[id(r)] = alloc.take(rname)
    for node in order:
        if node.name and id(node) not in labels and not node.is_symbol:
            labels[id(node)] = alloc.take(node.name)
    return labels


def _typed_scalars(order: list[Expr]) -> set[int]:
    """Strong 0-d constants that NumPy would treat as weak Python scalars if printed bare.

    Printing ``0.5`` for a float64 constant is exact unless it meets a narrower float operand
    (float32 * float64(0.5) is float64, float32 * 0.5 is float32); those get ``np.float64(0.5)``.
    """
    typed: set[int] = set()
    for n in order:
        typed.update(_python_arithmetic_unsafe(n))
        for a in n.args:
            if a.op == "const" and a.ndim == 0 and not a.weak:
                literal = a.attrs["value"].array.item()
                if not n.opdef.elementwise:  # the constant's own dtype decides (broadcast_to(0.0, ...))
                    if np.asarray(literal).dtype != a.dtype:
                        typed.add(id(a))
                    continue
                others = [dtype_operand(b) for b in n.args if b is not a]
                if others and np.result_type(*others, a.dtype) != np.result_type(*others, literal):
                    typed.add(id(a))
                    continue
                value = a.attrs["value"].array[()]
                if a.dtype.kind == "f" and np.isfinite(value):  # the text, read in the dtype it will compute in
                    read = np.asarray(float(scalar_text(value))).astype(np.result_type(*others, 0.0))
                    if read != value:  # float32 3.1 printed "3.1" reads as the float64 3.1 (another number)
                        typed.add(id(a))
    return typed


def _python_arithmetic_unsafe(n: Expr) -> list[int]:
    """The 0-d constants of ``n`` to write as NumPy scalars so that Python arithmetic does not compute ``n``.

    An operator whose operands all print as bare literals runs in Python: ``100 * 3`` is 300 where int8
    wraps, ``0.0 ** -1`` and ``1.0 / 0.0`` raise where NumPy gives inf, ``(-8.0) ** (1 / 3)`` is complex
    where NumPy gives nan. Such a node gets its strong constants (or, all being weak, its first) typed.
    """
    args = n.args
    if not n.opdef.elementwise or not args or not all(a.op == "const" and a.ndim == 0 for a in args):
        return []
    literals = [a.attrs["value"].array.item() for a in args]
    unsafe = (
        any(a.dtype.kind == "b" or np.asarray(v).dtype != a.dtype for a, v in zip(args, literals))
        or (n.op == "pow" and n.dtype.kind in "fc")
        or (n.op == "div" and literals[1] == 0)
    )
    if not unsafe:
        return []
    strong = [id(a) for a in args if not a.weak]
    return strong or [id(args[0])]


# gradient -> the labels of the targets it is a derivative with respect to, in order (d2x: ("x", "x"))
_DERIVATIVE_OF: weakref.WeakKeyDictionary[Expr, tuple[str, ...]] = weakref.WeakKeyDictionary()


def gradient_name(loss: Expr, target: Expr) -> str | None:
    """The name of ``d loss / d target``.

    The name lists the derivatives taken, in order, a run of one target as its order: ``dx``; ``d2x`` when
    ``loss`` is ``dx`` itself (``d3x`` next); a mixed derivative names both targets, ``dxs_da`` for the
    derivative of ``dxs`` with respect to ``a`` (``d2x_da``, ``dxs_d2a`` ...).
    """
    if target.label is None:
        return None
    runs: list[list] = []
    for label in _derivative_targets(loss, target):
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    return mixed_grad_name(runs)


def _derivative_targets(loss: Expr, target: Expr) -> tuple[str, ...]:
    """The labels of the targets of ``d loss / d target``, in order: those ``loss`` is a derivative of, then
    ``target``'s (a ``loss`` labelled ``d2x`` that grad did not label counts as ``("x", "x")``)."""
    parts = _DERIVATIVE_OF.get(loss, ())
    if not parts:
        parts = (target.label,) * grad_order(loss.name or "", target.label)
    return (*parts, target.label)


def label_gradients(loss: Expr, targets: Sequence[Expr], grads: Sequence[Expr]) -> list[Expr]:
    """Each gradient labelled with its :func:`gradient_name`, so that printing it always names its target.

    A gradient that is a symbol (``d(a * x)/dx`` is ``a``) or a node labelled otherwise gets the label on a
    same-dtype cast, which prints as its argument and which simplification (and so code generation) removes.
    """
    out = []
    for t, g in zip(targets, grads):
        name = gradient_name(loss, t)
        if name is not None and (g.name != name or g.is_symbol):  # a symbol named dx is not d/dx
            # a node with another label (the user's, or another node's adjoint) keeps it: a renamed copy would be
            # computed twice; only the default d<target> label of this very gradient is replaced (d2x, dxs_da)
            relabel = g.is_symbol or (g.name is not None and g.name != grad_name(t.label))
            g = make("cast", (g,), {"dtype": g.dtype.str}, name=name) if relabel else g.named(name)
        if name is not None:
            _DERIVATIVE_OF[g] = _derivative_targets(loss, t)
        out.append(g)
    return out


def nested_roots(expr: Any, who: str) -> tuple[list[Expr], Any]:
    """The expressions of ``expr`` (one, or a list or tuple of them nested to any depth, such as the blocks of
    ``sd.hessian(f, [x, y])``) in order, and its nesting: ``expr`` with each expression replaced by its index.

    Raises ``TypeError`` (prefixed with ``who``) for anything else.
    """
    roots: list[Expr] = []

    def walk(item: Any) -> Any:
        if isinstance(item, (list, tuple)):
            return [walk(v) for v in item]
        if not isinstance(item, Expr):
            raise TypeError(
                f"{who} takes an expression, a list of them (nested lists too) or a dict name -> expression, "
                f"got {item!r}"
            )
        roots.append(item)
        return len(roots) - 1

    return roots, walk(expr)


def to_text(expr: Expr | Sequence[Any] | dict[str, Expr]) -> str:
    """A readable formula for ``expr`` (a list of expressions, nested lists such as a Hessian's blocks, or named
    outputs): shared and named subexpressions on lines first.

    >>> x, W = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3,))
    >>> loss = sd.mean(sd.tanh(x @ W) ** 2)
    >>> print(sd.to_text({"loss": loss, "dW": sd.grad(loss, W)}))
    tanh1 = tanh(x @ W)
    pow1 = tanh1**2
    n = x.shape[0]
    loss = sum(pow1) / n
    dW = x.T @ (2 * tanh1 / n * (1 - pow1))
    """
    if isinstance(expr, dict):
        return to_text_many(expr)
    roots, _ = nested_roots(expr, "to_text")
    lay = layout(roots, [None] * len(roots))
    root_ids = {id(r) for r in roots}
    lines = []
    for node, name, text in lay.lines:
        if id(node) in root_ids and not node.name:
            lines.append(text)
        else:
            lines.append(f"{name} = {text}")
    with_line = {id(node) for node, _, _ in lay.lines}
    lines += [lay.fmt(r).text for r in roots if id(r) not in with_line]
    return "\n".join(lines)


def to_text_many(outputs: dict[str, Expr]) -> str:
    """Readable formulas for several named outputs, sharing their common subexpressions."""
    names = list(outputs)
    roots = [outputs[k] for k in names]
    lay = layout(roots, names)
    lines = [f"{name} = {text}" for _, name, text in lay.lines]
    for k, r in zip(names, roots):
        if lay.names.get(id(r)) != k:
            lines.append(f"{k} = {lay.fmt(r).text}")
    return "\n".join(lines)


def latex(expr: Expr | Sequence[Any] | dict[str, Expr]) -> str:
    r"""LaTeX for an expression (a list of expressions, nested lists such as a Hessian's blocks, or named
    outputs); several lines become an ``aligned`` block.

    >>> x, A = sd.Param("x", shape=(3,)), sd.Input("A", shape=(3, 3))
    >>> print(sd.latex(sd.grad(sd.sum(sd.tanh(A @ x)), x)))
    \mathrm{dx} = {A}^\top (1 - {\tanh\left(A x\right)}^{2})
    """
    if isinstance(expr, dict):
        names: list[str | None] = list(expr)
        roots = [expr[k] for k in expr]
    else:
        roots, _ = nested_roots(expr, "latex")
        names = [None] * len(roots)
    lay = layout(roots, names, dialect="latex")
    bare = set() if isinstance(expr, dict) else {id(r) for r in roots}  # unnamed roots: no "name ="
    rows = []
    for node, name, text in lay.lines:
        if id(node) in bare and not node.name:
            rows.append(f"&{text}")
        else:
            rows.append(f"{latex_name(name)} &= {text}")
    with_line = {id(node) for node, _, _ in lay.lines}
    for name, r in zip(names, roots):
        if id(r) not in with_line or (name is not None and lay.names.get(id(r)) != name):
            rows.append(f"{latex_name(name) + ' ' if name else ''}&{'= ' if name else ''}{lay.fmt(r).text}")
    if len(rows) == 1:
        return rows[0].replace("&", "", 1)
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


HOOKS.to_text, HOOKS.latex = to_text, latex  # str(expr), repr(expr) and Jupyter's LaTeX


# -- SymPy -------------------------------------------------------------------------------------
def to_sympy(expr: Expr) -> Any:
    """The SymPy form (a ``sympy.Basic``) of an expression SymPy can hold: scalars element-wise, 2-D matrices.

    Raises ``UnsupportedError`` naming the first op SymPy cannot express this way.

    >>> x = sd.Input("x")
    >>> sd.to_sympy(2 * sd.exp(x) + x**2)
    x**2 + 2*exp(x)
    """
    import sympy as sp

    def symbol(n: Expr):
        if n.ndim == 0:
            return sp.Symbol(n.label, real=True)
        if n.ndim == 2 and None not in n.shape:
            return sp.MatrixSymbol(n.label, *n.shape)
        if n.ndim == 1 and None not in n.shape:
            return sp.MatrixSymbol(n.label, 1, n.shape[0])
        raise UnsupportedError(f"to_sympy: symbol {n.label!r} of shape {n.shape} has no SymPy form")

    memo: dict[int, object] = {}
    for n in topo_order([expr]):
        if n.is_symbol:
            memo[id(n)] = symbol(n)
            continue
        form = n.opdef.sympy
        value = None
        if form is not None:
            args = [memo[id(a)] for a in n.args]
            if not n.opdef.sympy_matrix and any(isinstance(v, sp.MatrixExpr) for v in args):
                raise UnsupportedError(f"to_sympy: op {n.op!r} on matrices has no SymPy form")
            value = form(sp, *args, **n.attrs)
        if value is None:
            raise UnsupportedError(f"to_sympy: op {n.op!r} has no SymPy form")
        memo[id(n)] = value
    return memo[id(expr)]
