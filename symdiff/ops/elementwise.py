"""Element-wise ops: arithmetic, comparisons, selection and the scalar functions.

Every entry here broadcasts like NumPy. Gradient rules return values of the *output* shape; the
autodiff sweep sums them back to each operand's shape (one ``unbroadcast`` for all of them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functions as F
from ..errors import DTypeError
from ..graph import Expr, broadcast_shapes, dtype_source, float_dtype, make, result_dtype, true_divide_dtype
from . import kernels
from .registry import ADD, ATOM, CMP, MUL, POW, UNARY, Fmt, binop, call, latex_call, register, ufunc_out, wrap, xp_dtype


def _np(f):
    """Reference implementation from a NumPy function that takes the arrays only."""
    return lambda attrs, *xs: f(*xs)


# -- shape/dtype rules ---------------------------------------------------------------------
def _binary_rule(op, dtype_rule=result_dtype):
    def infer(args, attrs):
        return broadcast_shapes(op, *(a.shape for a in args)), dtype_rule(*args)

    return infer


def _bool(*args):
    return np.dtype(bool)


def _same(args, attrs):
    return args[0].shape, args[0].dtype


def _no_bool(op: str, rule):
    """NumPy refuses ``-`` on booleans (use logical operations); so does symdiff, at build time."""

    def infer(args, attrs):
        shape, dtype = rule(args, attrs)
        if dtype == np.bool_:
            raise DTypeError(f"{op}: boolean operands are not supported (NumPy refuses them too); cast first")
        return shape, dtype

    return infer


def _floaty(args, attrs):
    return args[0].shape, float_dtype(args[0])


# -- LaTeX helpers ---------------------------------------------------------------------------
def _latex_infix(symbol, prec):
    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        a, b = args
        return Fmt(f"{wrap(a, prec)} {symbol} {wrap(b, prec + 1)}", prec)

    return fmt


def _latex_mul(node: Expr, args: list[Fmt]) -> Fmt:
    a, b = args
    scalarish = node.args[0].ndim == 0 or node.args[1].ndim == 0
    symbol = "\\cdot" if scalarish else "\\odot"
    return Fmt(f"{wrap(a, MUL)} {symbol} {wrap(b, MUL + 1)}", MUL)


def _template(text: str, prec: int) -> Callable[[Expr, list[Fmt]], Fmt]:
    """Formatter filling ``text`` with the arguments' texts (``{0}``, ``{1}``), binding at ``prec``."""
    return lambda node, args: Fmt(text.format(*(a.text for a in args)), prec)


def _latex_pow(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"{{{wrap(args[0], ATOM)}}}^{{{args[1].text}}}", POW)


def _latex_neg(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"-{wrap(args[0], MUL)}", UNARY)


def _text_neg(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"-{wrap(args[0], UNARY)}", UNARY)


def _latex_iverson(symbol):
    def fmt(node: Expr, args: list[Fmt]) -> Fmt:
        return Fmt(f"\\left[{args[0].text} {symbol} {args[1].text}\\right]", ATOM)

    return fmt


# -- registering --------------------------------------------------------------------------------
def _elementwise(
    name: str,
    fn: Callable[..., Any],
    vjp: tuple,
    latex: str | Callable[[Expr, list[Fmt]], Fmt],
    *,
    sympy: str | Callable[..., Any],
    text: Callable[[Expr, list[Fmt]], Fmt] | None = None,
    numpy: Callable[[Expr, list[Fmt]], Fmt] | None = None,
    xp: Callable[[Expr, list[Fmt]], Fmt] | None = None,
    out: Callable[[Expr, list[Fmt], str], str] | None = None,
    infer: Callable | None = None,
    doc: str | None = None,
    public: str | None = None,
    example: str | None = None,
    **facts: Any,
) -> None:
    """Register the element-wise op ``name``, computed by the NumPy function ``fn`` of its arrays.

    ``vjp`` holds one rule ``(g, out, *args) -> Expr`` per argument; ``text`` defaults to ``name(x)``;
    ``latex`` is a LaTeX function name (``"\\tanh"``) or a formatter; ``sympy`` a SymPy function name
    (``"tanh"``) or ``(sp, *args) -> form``. A NumPy ufunc ``fn`` also gives the NumPy form (the text form
    when given, else ``np.<name>(x)``), the in-place form ``np.<ufunc>(..., out=buf)`` and the shape rule
    (``_floaty`` for one argument, broadcasting for two). With ``doc`` the entry also defines the public
    wrapper ``sd.<public>(x)`` or ``sd.<public>(a, b)`` (``public`` defaults to ``name``) with that docstring:
    the entry is the function's only home. Its docstring's example (a doctest) applies the wrapper to scalar inputs
    and prints the derivative (the expression and its dtype for an op without one): ``example`` is what it prints.
    A ufunc's Array API form ``xp`` is the operator (``text``) or ``xp.<name>(x)`` (the standard's name,
    :data:`ARRAY_API_NAMES`); any other ``fn`` states its own.
    """
    if doc is not None and example is None:
        raise ValueError(f"op {name!r}: a public function's entry gives its example's output (example=...)")
    if isinstance(fn, np.ufunc):
        xp = xp or text or call(f"xp.{ARRAY_API_NAMES.get(name, name)}")
        numpy = numpy or text or call(f"np.{name}")
        out = out or ufunc_out(f"np.{fn.__name__}")
        infer = infer or (_binary_rule(fn.__name__) if fn.nin == 2 else _floaty)
    register(
        name,
        infer=infer or _floaty,
        impl=_np(fn),
        vjp=vjp,
        text=text or call(name),
        numpy=numpy,
        xp=xp,
        latex=latex_call(latex) if isinstance(latex, str) else latex,
        sympy=_sympy_fn(sympy) if isinstance(sympy, str) else sympy,
        out=out,
        inplace=out is not None,
        elementwise=True,
        doc=doc,
        public=public,
        **facts,
    )
    if doc is not None:
        differentiable = any(rule is not None for rule in vjp)
        F.define_elementwise(name, public or name, doc, len(vjp), example, differentiable)


ARRAY_API_NAMES = {"arctan": "atan"}  # ops whose Array API function is named otherwise than NumPy's


def _sympy_fn(fname: str) -> Callable[..., Any]:
    """The SymPy form ``sympy.<fname>(*args)`` of a function."""
    return lambda sp, *args: getattr(sp, fname)(*args)


# -- arithmetic ------------------------------------------------------------------------------
# NOTE: rules return output-shaped gradients; autodiff unbroadcasts them to each operand.
_elementwise(
    "add",
    np.add,
    (lambda g, out, x, y: g, lambda g, out, x, y: g),
    _latex_infix("+", ADD),
    text=binop("+", ADD),
    sympy=lambda sp, a, b: a + b,
    sympy_matrix=True,
    dot="+",
    hint="s",
    doc="``a + b`` with broadcasting.",
    example="da = 1.0\ndb = 1.0",
)
_elementwise(
    "sub",
    np.subtract,
    (lambda g, out, x, y: g, lambda g, out, x, y: -g),
    _latex_infix("-", ADD),
    text=binop("-", ADD),
    infer=_no_bool("subtract", _binary_rule("subtract")),
    sympy=lambda sp, a, b: a - b,
    sympy_matrix=True,
    dot="-",
    hint="diff",
    public="subtract",
    doc="``a - b`` with broadcasting.",
    example="da = 1.0\ndb = -1.0",
)
_elementwise(
    "mul",
    np.multiply,
    (lambda g, out, x, y: g * y, lambda g, out, x, y: g * x),
    _latex_mul,
    text=binop("*", MUL),
    sympy=lambda sp, a, b: (
        sp.HadamardProduct(a, b) if isinstance(a, sp.MatrixExpr) and isinstance(b, sp.MatrixExpr) else a * b
    ),
    sympy_matrix=True,
    dot="*",
    hint="prod",
    public="multiply",
    doc="``a * b`` (element-wise) with broadcasting.",
    example="da = b\ndb = a",
)
# d(a/b) = da / b - a db / b**2
_elementwise(
    "div",
    np.true_divide,
    (lambda g, out, x, y: g / y, lambda g, out, x, y: -(g * x) / y**2),
    _template("\\frac{{{0}}}{{{1}}}", ATOM),
    text=binop("/", MUL),
    infer=_binary_rule("divide", true_divide_dtype),
    sympy=lambda sp, a, b: a / b,
    sympy_matrix=True,
    dot="/",
    hint="q",
    public="divide",
    doc="``a / b`` (true division) with broadcasting.",
    example="da = 1 / b\ndb = -(a / b**2)",
)
# d(a**b) = b a**(b-1) da + a**b log(a) db;
# make, not **: the exponent limit applies to the user's power, not to the one its derivative needs
_elementwise(
    "pow",
    np.power,
    (lambda g, out, x, y: g * y * make("pow", (x, y - 1)), lambda g, out, x, y: g * out * F.log(x)),
    _latex_pow,
    text=binop("**", POW, right_assoc=True),
    sympy=lambda sp, a, b: sp.HadamardPower(a, b) if isinstance(a, sp.MatrixExpr) else a**b,
    dot="**",
)
_elementwise(
    "neg",
    np.negative,
    (lambda g, out, x: -g,),
    _latex_neg,
    text=_text_neg,
    infer=_no_bool("negative", _same),
    sympy=lambda sp, a: -a,
    sympy_matrix=True,
    dot="negate",
    public="negative",
    doc="``-x``.",
    example="dx = -1.0",
)
# NOTE: on ties the whole gradient goes to the first operand (a >= b), never to both.
_elementwise(
    "maximum",
    np.maximum,
    (lambda g, out, x, y: g * (x >= y), lambda g, out, x, y: g * (x < y)),
    "\\max",
    sympy="Max",
    doc="Element-wise maximum (gradient goes to ``a`` on ties).",
    example="da = (a >= b).astype(float64)\ndb = (a < b).astype(float64)",
)
_elementwise(
    "minimum",
    np.minimum,
    (lambda g, out, x, y: g * (x <= y), lambda g, out, x, y: g * (x > y)),
    "\\min",
    sympy="Min",
    doc="Element-wise minimum (gradient goes to ``a`` on ties).",
    example="da = (a <= b).astype(float64)\ndb = (a > b).astype(float64)",
)

# -- comparisons (boolean results, no gradient) ----------------------------------------------
for _name, _sym, _f, _relation in (
    ("gt", ">", np.greater, "Gt"),
    ("ge", ">=", np.greater_equal, "Ge"),
    ("lt", "<", np.less, "Lt"),
    ("le", "<=", np.less_equal, "Le"),
    ("eq", "==", np.equal, "Eq"),
):  # public wrappers sd.greater, ..., sd.equal: NumPy's names
    _elementwise(
        _name,
        _f,
        (None, None),
        _latex_iverson({">=": "\\geq", "<=": "\\leq"}.get(_sym, _sym)),
        text=binop(_sym, CMP),
        infer=_binary_rule(_f.__name__, _bool),
        sympy=lambda sp, a, b, _relation=_relation: getattr(sp, _relation)(a, b),
        dot=_sym,
        public=_f.__name__,
        doc=f"``a {_sym} b`` as a boolean expression (no gradient).",
        example=f"a {_sym} b bool",
    )


def _infer_where(args, attrs):
    cond, a, b = args
    return broadcast_shapes("where", cond.shape, a.shape, b.shape), result_dtype(a, b)


register(
    "where",
    infer=_infer_where,
    impl=_np(np.where),
    vjp=(None, lambda g, out, c, x, y: F.where(c, g, 0), lambda g, out, c, x, y: F.where(c, 0, g)),
    text=call("where"),
    numpy=call("np.where"),
    xp=call("xp.where"),
    latex=latex_call("where"),
    elementwise=True,
    sympy=lambda sp, c, a, b: sp.Piecewise((a, c), (b, True)),
)


def _infer_cast(args, attrs):
    return args[0].shape, np.dtype(attrs["dtype"])


register(
    "cast",
    infer=_infer_cast,
    impl=lambda attrs, x: np.asarray(x).astype(attrs["dtype"]),
    vjp=(lambda g, out, x, *, dtype: F.astype(g, x.dtype) if x.dtype.kind == "f" else None,),
    jvp=(lambda t, out, x, *, dtype: F.astype(t, dtype) if out.dtype.kind == "f" else None,),
    text=lambda node, args: Fmt(f"{wrap(args[0], ATOM)}.astype({np.dtype(node.attrs['dtype']).name})", ATOM),
    numpy=lambda node, args: Fmt(
        f"{dtype_source(node.attrs['dtype'])}({args[0].text})"  # a scalar may be a Python int (x.shape[0])
        if node.ndim == 0
        else f"{wrap(args[0], ATOM)}.astype({dtype_source(node.attrs['dtype'])})",
        ATOM,
    ),
    xp=lambda node, args: Fmt(
        f"xp.asarray({args[0].text}, dtype={xp_dtype(node.attrs['dtype'])})"  # a scalar may be a Python int
        if node.ndim == 0
        else f"xp.astype({args[0].text}, {xp_dtype(node.attrs['dtype'])})",
        ATOM,
    ),
    latex=lambda node, args: args[0],
    elementwise=True,
    sympy=lambda sp, a, dtype: a,
)


# -- scalar functions applied element-wise ----------------------------------------------------
def _sigmoid_ref(x):
    return np.exp(-np.logaddexp(0, -x))


# One entry per function: name, NumPy function, VJP rule (g, out, x), LaTeX, SymPy form, docstring of sd.<name>.
_elementwise(
    "exp",
    np.exp,
    (lambda g, out, x: g * out,),
    _template("e^{{{0}}}", POW),
    sympy="exp",
    doc="Element-wise ``e**x``.",
    example="dx = exp(x)",
)
_elementwise(
    "log",
    np.log,
    (lambda g, out, x: g / x,),
    "\\log",
    sympy="log",
    doc="Element-wise natural logarithm.",
    example="dx = 1 / x",
)
_elementwise(
    "log1p",
    np.log1p,
    (lambda g, out, x: g / (1 + x),),
    _template("\\log\\left(1 + {0}\\right)", ATOM),
    sympy=lambda sp, a: sp.log(1 + a),
    doc="Element-wise ``log(1 + x)``, accurate for small ``x``.",
    example="dx = 1 / (1 + x)",
)
_elementwise(
    "expm1",
    np.expm1,
    (lambda g, out, x: g * F.exp(x),),
    _template("e^{{{0}}} - 1", ADD),
    sympy=lambda sp, a: sp.exp(a) - 1,
    doc="Element-wise ``exp(x) - 1``, accurate for small ``x``.",
    example="dx = exp(x)",
)
_elementwise(
    "sqrt",
    np.sqrt,
    (lambda g, out, x: g / (2 * out),),
    _template("\\sqrt{{{0}}}", ATOM),
    sympy="sqrt",
    doc="Element-wise square root.",
    example="dx = 1 / (2 * sqrt(x))",
)
_elementwise(
    "tanh",
    np.tanh,
    (lambda g, out, x: g * (1 - out**2),),
    "\\tanh",
    sympy="tanh",
    activation=True,
    increasing=True,
    doc="Element-wise hyperbolic tangent.",
    example="dx = 1 - tanh(x)**2",
)
_elementwise(
    "sin",
    np.sin,
    (lambda g, out, x: g * F.cos(x),),
    "\\sin",
    sympy="sin",
    doc="Element-wise sine.",
    example="dx = cos(x)",
)
_elementwise(
    "cos",
    np.cos,
    (lambda g, out, x: -(g * F.sin(x)),),
    "\\cos",
    sympy="cos",
    doc="Element-wise cosine.",
    example="dx = -sin(x)",
)
_elementwise(
    "arctan",
    np.arctan,
    (lambda g, out, x: g / (1 + x**2),),
    "\\arctan",
    sympy="atan",
    doc="Element-wise arctangent.",
    example="dx = 1 / (1 + x**2)",
)
_elementwise(
    "abs", np.abs, (lambda g, out, x: g * F.sign(x),), _template("\\left|{0}\\right|", ATOM), sympy="Abs", infer=_same
)
_elementwise(
    "sign",
    np.sign,
    (None,),
    "sign",
    sympy="sign",
    infer=_same,
    doc="Element-wise sign (no gradient: it is piecewise constant).",
    example="sign(x) float64",
)
_elementwise(
    "sigmoid",
    _sigmoid_ref,
    (lambda g, out, x: g * out * (1 - out),),
    "\\sigma",
    numpy=call("_sigmoid"),
    xp=call("_sigmoid"),
    kernels=("_sigmoid",),
    sympy=lambda sp, a: 1 / (1 + sp.exp(-a)),
    activation=True,
    increasing=True,
    doc="Logistic function ``1 / (1 + exp(-x))``, evaluated stably.",
    example="sigmoid1 = sigmoid(x)\ndx = sigmoid1 * (1 - sigmoid1)",
)
_elementwise(
    "softplus",
    lambda x: np.logaddexp(0, x),
    (lambda g, out, x: g * F.sigmoid(x),),
    "softplus",
    numpy=lambda node, args: Fmt(f"np.logaddexp(0, {args[0].text})", ATOM),
    xp=call("_softplus"),
    out=ufunc_out("np.logaddexp", "0, {0}"),
    sympy=lambda sp, a: sp.log(1 + sp.exp(a)),
    activation=True,
    increasing=True,
    doc="``log(1 + exp(x))``, evaluated stably as ``logaddexp(0, x)``.",
    example="dx = sigmoid(x)",
)
_elementwise(
    "relu",
    lambda x: np.maximum(x, 0),
    (lambda g, out, x: g * (x > 0),),
    "relu",
    numpy=lambda node, args: Fmt(f"np.maximum({args[0].text}, 0)", ATOM),
    xp=lambda node, args: Fmt(f"xp.maximum({args[0].text}, 0)", ATOM),
    out=ufunc_out("np.maximum", "{0}, 0"),
    infer=_same,
    sympy=lambda sp, a: sp.Max(a, 0),
    activation=True,
    increasing=True,
    doc="``maximum(x, 0)``; its gradient is ``g * (x > 0)``.",
    example="dx = (x > 0).astype(float64)",
)

TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)  # erf'(0)

# d erf(x) = 2 / sqrt(pi) * exp(-x**2); NumPy has no erf: the kernel uses SciPy's when it is installed
_elementwise(
    "erf",
    kernels._erf,
    (lambda g, out, x: g * TWO_OVER_SQRT_PI * F.exp(-(x**2)),),
    "erf",
    numpy=call("_erf"),
    xp=call("_erf"),
    kernels=("_erf",),
    sympy="erf",
    doc="Element-wise error function ``2 / sqrt(pi) * integral(exp(-t**2), t=0..x)`` (exact GELU: "
    "``x * (1 + erf(x / sqrt(2))) / 2``).",
    example="dx = 1.1283791670955126 * exp(-x**2)",
)


# clip(x, lo, hi) = minimum(maximum(x, lo), hi), as NumPy computes it (hi wins when lo > hi). The gradient
# follows that form, ties going to the first operand as in maximum/minimum: x gets g where lo <= x <= hi.
register(
    "clip",
    infer=_binary_rule("clip"),
    impl=_np(np.clip),
    vjp=(
        lambda g, out, x, lo, hi: g * (x >= lo) * (x <= hi),
        lambda g, out, x, lo, hi: g * (x < lo) * (lo <= hi),
        lambda g, out, x, lo, hi: g * (F.maximum(x, lo) > hi),
    ),
    text=call("clip"),
    numpy=call("np.clip"),
    xp=_template("xp.minimum(xp.maximum({0}, {1}), {2})", ATOM),  # NumPy's clip: hi wins where lo > hi
    latex=latex_call("clip"),
    out=ufunc_out("np.clip"),
    inplace=True,
    elementwise=True,
    sympy=lambda sp, a, lo, hi: sp.Min(sp.Max(a, lo), hi),
)
