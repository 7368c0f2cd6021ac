"""The op table: one :class:`OpDef` per primitive, holding everything about that op in one place.

An entry carries
  * ``infer``  - shape/dtype rule ``(args, attrs) -> (shape, dtype)``; raises ``ShapeError`` naming the op;
  * ``impl``   - reference NumPy implementation ``(attrs, *arrays) -> array`` (constant folding, interpreter);
  * ``vjp``    - one rule per argument ``rule(g, out, *args, **attrs) -> Expr`` building the gradient *as graph
                 nodes*, as autograd's ``defvjp`` does: ``g`` is the upstream gradient, ``out`` the node itself,
                 then the node's arguments by position and its attributes by keyword (a rule names the
                 attributes it takes: ``lambda g, out, x, *, axis, keepdims: ...``). ``None`` marks an argument
                 that has no gradient (e.g. integer labels); a variadic op gives :class:`PerArgument`;
  * ``jvp``    - the tangent (forward-mode) rules, one per argument ``rule(t, out, *args, **attrs) -> Expr``:
                 the contribution of the argument's tangent ``t`` (the argument's shape) to the tangent of
                 ``out`` (``out``'s shape, or one that broadcasts to it: the forward sweep broadcasts);
                 ``None`` where the VJP rule is ``None``; ``None`` for the whole op exactly when ``vjp`` is.
                 ``t`` may be a batch of tangents, with leading batch axes in front of the argument's shape
                 (``sd.jacobian`` pushes the identity through): the contribution keeps them in front
                 (:mod:`symdiff.ops.batch` has the helpers; the sweep aligns element-wise ops' tangents).
                 Element-wise ops default to their VJP rules: their Jacobian is diagonal, so the tangent
                 rule is the same product ``t * df/dx`` as the gradient rule ``g * df/dx``;
  * ``text`` / ``latex`` / ``numpy`` - formatters ``(node, args) -> Fmt`` for the readable formula,
                 LaTeX and the generated NumPy source; ``kernels`` names helper functions the NumPy
                 form calls (their source is copied into generated modules);
  * ``xp``     - the Array API form ``(node, args) -> Fmt`` for the other array libraries (``sd.compile(...,
                 backend="torch")``): calls of the namespace ``xp`` and of helpers ``_<name>(...)`` that every backend
                 defines, from the standard or from that library's own function (:mod:`symdiff.backends`);
                 ``None``: the op runs on the NumPy backend only;
  * ``out`` / ``inplace`` - the NumPy form writing into an existing array (memory planning);
  * ``sympy``  - ``(sp, *args, **attrs) -> sympy.Basic`` building the SymPy form from the arguments' SymPy forms
                 (``sp`` is the ``sympy`` module); required, ``None`` stating that SymPy has no form;
                 ``sympy_matrix`` marks ops whose SymPy form also holds for matrix arguments;
  * ``axis_source`` - batch-length provenance ``(out, ax, *args, **attrs) -> (operand, axis) | None``: an
                 operand (and its axis) whose run-time length axis ``ax`` of the result has (:mod:`symdiff.dims`);
                 required, ``None`` stating that no axis has one; element-wise ops default to
                 :func:`broadcast_axis_source`;
  * ``view``   - the NumPy form is a view (or broadcast) of the first argument: no computation of its own;
                 ``inline_view``: a view short enough to stay inline on a symbol or constant (``W.T``);
  * ``hint``   - the name a line of this op gets in printed formulas (default: the op's name);
  * ``dot``    - the symbol labelling this op in DOT pictures (default: its text form with placeholders);
  * ``doc``    - for an element-wise function of one or two arguments, the docstring of its public wrapper
                 ``sd.<public>(x)`` / ``sd.<public>(a, b)``, which the entry defines (``functions.PUBLIC``, ``sd``
                 and the text parser pick it up); ``public`` is the wrapper's name (default: the op's name);
  * ``activation`` - ``sd.nn.dense(..., activation="<name>")`` may name the op;
  * ``random`` - each run draws the op's value afresh from a generator seeded by ``attrs["seed"]``: never folded
                 into a constant; a generated module keeps one ``np.random.default_rng(seed)`` per node, whose
                 name the NumPy form gets as an extra first argument, and ``impl`` gives the first draw.

Adding an op touches one place: a ``register(...)`` call in the ``symdiff.ops`` package (and a gradient-spec
row in ``tests/test_ops_grad.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - the graph builds on this table, so it is imported for types only
    from ..graph import Expr, Shape

Infer = Callable[[tuple["Expr", ...], Mapping[str, Any]], tuple["Shape", np.dtype]]
VJPRule = Callable[..., "Expr | None"]
JVPRule = Callable[..., "Expr | None"]
AxisSource = Callable[..., "tuple[Expr, int] | None"]


@dataclass(frozen=True)
class Fmt:
    """A formatted sub-expression and its precedence (higher binds tighter)."""

    text: str
    prec: int


# Python's precedence ladder, as far as printed formulas need it.
ATOM, POW, UNARY, MUL, ADD, CMP = 100, 90, 80, 70, 60, 50


@dataclass(frozen=True, kw_only=True)
class OpDef:
    """Everything symdiff knows about one primitive op."""

    name: str
    infer: Infer
    impl: Callable[..., Any] | None = None
    vjp: Sequence[VJPRule | None] | None = None
    jvp: Sequence[JVPRule | None] | None = None
    text: Callable[[Expr, list[Fmt]], Fmt] | None = None
    latex: Callable[[Expr, list[Fmt]], Fmt] | None = None
    numpy: Callable[[Expr, list[Fmt]], Fmt] | None = None
    kernels: tuple[str, ...] = ()
    xp: Callable[[Expr, list[Fmt]], Fmt] | None = None
    elementwise: bool = False
    # ``out(node, args, buf) -> str``: the NumPy form writing into array ``buf`` (memory planning);
    # ``inplace``: ``buf`` may be one of the op's own same-shaped arguments (element-wise ufuncs).
    out: Callable[[Expr, list[Fmt], str], str] | None = None
    inplace: bool = False
    sympy: Callable[..., Any] | None
    sympy_matrix: bool = False
    view: bool = False
    inline_view: bool = False
    axis_source: AxisSource | None
    hint: str | None = None
    dot: str | None = None
    doc: str | None = None
    public: str | None = None
    activation: bool = False
    random: bool = False
    increasing: bool = False

    def rule(self, i: int) -> VJPRule | None:
        """The VJP rule of argument ``i``; raises ``NotImplementedError`` naming the op if it has none."""
        if self.vjp is None:
            raise NotImplementedError(f"op {self.name!r} has no gradient rule")
        return self.vjp[i]

    def arg_grad(self, i: int, g: Expr, node: Expr) -> Expr | None:
        """The gradient flowing to argument ``i`` of ``node`` (an output-shaped expression), given the upstream
        gradient ``g``; ``None`` when that argument has no gradient. Calls ``rule(g, node, *args, **attrs)``."""
        rule = self.rule(i)
        return None if rule is None else rule(g, node, *node.args, **node.attrs)

    def arg_tangent(self, i: int, t: Expr, node: Expr) -> Expr | None:
        """The contribution of argument ``i``'s tangent ``t`` to the tangent of ``node``; ``None`` when that
        argument has no derivative. Calls ``rule(t, node, *args, **attrs)``."""
        if self.jvp is None:
            raise NotImplementedError(f"op {self.name!r} has no tangent (forward-mode) rule")
        rule = self.jvp[i]
        return None if rule is None else rule(t, node, *node.args, **node.attrs)

    def arg_axis(self, node: Expr, ax: int) -> tuple[Expr, int] | None:
        """An operand of ``node`` (and its axis) with the run-time length of axis ``ax`` of ``node``, if known."""
        if self.axis_source is None:
            return None
        return self.axis_source(node, ax, *node.args, **node.attrs)


class PerArgument:
    """The VJP rules of a variadic op: ``rules[i]`` is ``rule_of(i)``, the rule of argument ``i``."""

    def __init__(self, rule_of: Callable[[int], VJPRule | None]) -> None:
        self.rule_of = rule_of

    def __getitem__(self, i: int) -> VJPRule | None:
        return self.rule_of(i)


def broadcast_axis_source(out: Expr, ax: int, *args: Expr, **attrs: Any) -> tuple[Expr, int] | None:
    """Provenance of a broadcasting op: the first argument whose aligned axis is open (``None``)."""
    for a in args:
        lead = out.ndim - a.ndim
        if ax >= lead and a.shape[ax - lead] is None:
            return a, ax - lead
    return None


OPS: dict[str, OpDef] = {}


def register(name: str, **fields: Any) -> OpDef:
    """Add an op to the table (each name once); an element-wise op's ``axis_source`` defaults to
    :func:`broadcast_axis_source` and its ``jvp`` to its ``vjp`` (a diagonal Jacobian is its own transpose)."""
    if name in OPS:
        raise ValueError(f"op {name!r} is registered twice")
    if fields.get("elementwise"):
        fields.setdefault("axis_source", broadcast_axis_source)
        fields.setdefault("jvp", fields.get("vjp"))
    opdef = OpDef(name=name, **fields)
    OPS[name] = opdef
    return opdef


# -- formatter helpers shared by the op entries ------------------------------------------------
def wrap(arg: Fmt, min_prec: int) -> str:
    """``arg`` as text, parenthesized when it binds looser than ``min_prec``."""
    return arg.text if arg.prec >= min_prec else f"({arg.text})"


def binop(symbol: str, prec: int, right_assoc: bool = False) -> Callable[[Expr, list[Fmt]], Fmt]:
    """Formatter for an infix operator with minimal parentheses."""

    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        a, b = args
        if right_assoc:
            left, right = wrap(a, prec + 1), wrap(b, prec)
        else:
            left, right = wrap(a, prec), wrap(b, prec + 1)
        return Fmt(f"{left} {symbol} {right}" if symbol != "**" else f"{left}**{right}", prec)

    return fmt


def call(fname: str, *attr_kw: str, defaults: Mapping[str, Any] | None = None) -> Callable[[Expr, list[Fmt]], Fmt]:
    """Formatter ``fname(arg, ..., key=value)`` listing the named attributes (skipping defaults)."""
    defaults = defaults or {}

    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        parts = [a.text for a in args]
        for k in attr_kw:
            v = node.attrs[k]
            if k in defaults and defaults[k] == v:
                continue
            parts.append(f"{k}={format_attr(v)}")
        return Fmt(f"{fname}({', '.join(parts)})", ATOM)

    return fmt


def format_attr(v: Any) -> str:
    """An attribute value as Python source (axis tuples of one element print as the int)."""
    if isinstance(v, tuple) and len(v) == 1:
        return repr(v[0])
    return repr(v)


def ufunc_out(fname: str, template: str | None = None) -> Callable[[Expr, list[Fmt], str], str]:
    """``np.add(a, b, out=buf)``; ``template`` rearranges the arguments (``"0, {0}"`` for logaddexp(0, x))."""

    def fmt(node: Expr, args: list[Fmt], buf: str) -> str:
        inner = template.format(*(a.text for a in args)) if template else ", ".join(a.text for a in args)
        return f"{fname}({inner}, out={buf})"

    return fmt


def xp_dtype(dtype: Any) -> str:
    """The Array API name of a dtype in generated code: ``xp.float32``, ``xp.int64``, ``xp.bool``."""
    return f"xp.{np.dtype(dtype).name}"


def latex_call(fname: str) -> Callable[[Expr, list[Fmt]], Fmt]:
    """LaTeX formatter ``\\operatorname{fname}\\left(args\\right)``."""

    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        inner = ", ".join(a.text for a in args)
        head = fname if fname.startswith("\\") else f"\\operatorname{{{fname}}}"
        return Fmt(f"{head}\\left({inner}\\right)", ATOM)

    return fmt
