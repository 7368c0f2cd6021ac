"""Element-wise ops: arithmetic, comparisons, selection and the scalar functions.

Every entry here broadcasts like NumPy. Gradient rules return values of the *output* shape; the
autodiff sweep sums them back to each operand's shape (one ``unbroadcast`` for all of them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functions as F
from ..errors import DTypeError
from ..graph import Expr, broadcast_shapes, dtype_source, float_dtype, make, result_dtype, true_divide_dtype
from .registry import ADD, ATOM, CMP, MUL, POW, UNARY, Fmt, binop, call, latex_call, register, ufunc_out, wrap


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


def _latex_div(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"\\frac{{{args[0].text}}}{{{args[1].text}}}", ATOM)


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


# -- arithmetic ------------------------------------------------------------------------------
# NOTE: rules return output-shaped gradients; autodiff unbroadcasts them to each operand.
register(
    "add",
    out=ufunc_out("np.add"),
    inplace=True,
    infer=_binary_rule("add"),
    impl=_np(np.add),
    vjp=(lambda g, n: g, lambda g, n: g),
    text=binop("+", ADD),
    numpy=binop("+", ADD),
    latex=_latex_infix("+", ADD),
    elementwise=True,
    sympy=lambda sp, a, b: a + b,
    sympy_matrix=True,
    dot="+",
    hint="s",
)
register(
    "sub",
    out=ufunc_out("np.subtract"),
    inplace=True,
    infer=_no_bool("subtract", _binary_rule("subtract")),
    impl=_np(np.subtract),
    vjp=(lambda g, n: g, lambda g, n: -g),
    text=binop("-", ADD),
    numpy=binop("-", ADD),
    latex=_latex_infix("-", ADD),
    elementwise=True,
    sympy=lambda sp, a, b: a - b,
    sympy_matrix=True,
    dot="-",
    hint="diff",
)
register(
    "mul",
    out=ufunc_out("np.multiply"),
    inplace=True,
    infer=_binary_rule("multiply"),
    impl=_np(np.multiply),
    vjp=(lambda g, n: g * n.args[1], lambda g, n: g * n.args[0]),
    text=binop("*", MUL),
    numpy=binop("*", MUL),
    latex=_latex_mul,
    elementwise=True,
    sympy=lambda sp, a, b: (
        sp.HadamardProduct(a, b) if isinstance(a, sp.MatrixExpr) and isinstance(b, sp.MatrixExpr) else a * b
    ),
    sympy_matrix=True,
    dot="*",
    hint="prod",
)
register(
    "div",
    out=ufunc_out("np.divide"),
    inplace=True,
    infer=_binary_rule("divide", true_divide_dtype),
    impl=_np(np.true_divide),
    # d(a/b) = da / b - a db / b**2
    vjp=(lambda g, n: g / n.args[1], lambda g, n: -(g * n.args[0]) / n.args[1] ** 2),
    text=binop("/", MUL),
    numpy=binop("/", MUL),
    latex=_latex_div,
    elementwise=True,
    sympy=lambda sp, a, b: a / b,
    sympy_matrix=True,
    dot="/",
    hint="q",
)
register(
    "pow",
    out=ufunc_out("np.power"),
    inplace=True,
    infer=_binary_rule("power"),
    impl=_np(np.power),
    # d(a**b) = b a**(b-1) da + a**b log(a) db
    vjp=(
        # make, not **: the exponent limit applies to the user's power, not to the one its derivative needs
        lambda g, n: g * n.args[1] * make("pow", (n.args[0], n.args[1] - 1)),
        lambda g, n: g * n * F.log(n.args[0]),
    ),
    text=binop("**", POW, right_assoc=True),
    numpy=binop("**", POW, right_assoc=True),
    latex=_latex_pow,
    elementwise=True,
    sympy=lambda sp, a, b: sp.HadamardPower(a, b) if isinstance(a, sp.MatrixExpr) else a**b,
    dot="**",
)
register(
    "neg",
    out=ufunc_out("np.negative"),
    inplace=True,
    infer=_no_bool("negative", _same),
    impl=_np(np.negative),
    vjp=(lambda g, n: -g,),
    text=_text_neg,
    numpy=_text_neg,
    latex=_latex_neg,
    elementwise=True,
    sympy=lambda sp, a: -a,
    sympy_matrix=True,
    dot="negate",
)
register(
    "maximum",
    out=ufunc_out("np.maximum"),
    inplace=True,
    infer=_binary_rule("maximum"),
    impl=_np(np.maximum),
    # NOTE: on ties the whole gradient goes to the first operand (a >= b), never to both.
    vjp=(lambda g, n: g * (n.args[0] >= n.args[1]), lambda g, n: g * (n.args[0] < n.args[1])),
    text=call("maximum"),
    numpy=call("np.maximum"),
    latex=latex_call("\\max"),
    elementwise=True,
    sympy=lambda sp, a, b: sp.Max(a, b),
)
register(
    "minimum",
    out=ufunc_out("np.minimum"),
    inplace=True,
    infer=_binary_rule("minimum"),
    impl=_np(np.minimum),
    vjp=(lambda g, n: g * (n.args[0] <= n.args[1]), lambda g, n: g * (n.args[0] > n.args[1])),
    text=call("minimum"),
    numpy=call("np.minimum"),
    latex=latex_call("\\min"),
    elementwise=True,
    sympy=lambda sp, a, b: sp.Min(a, b),
)

# -- comparisons (boolean results, no gradient) ----------------------------------------------
for _name, _sym, _f, _long, _relation in (
    ("gt", ">", np.greater, "greater", "Gt"),
    ("ge", ">=", np.greater_equal, "greater_equal", "Ge"),
    ("lt", "<", np.less, "less", "Lt"),
    ("le", "<=", np.less_equal, "less_equal", "Le"),
    ("eq", "==", np.equal, "equal", "Eq"),
):
    register(
        _name,
        out=ufunc_out(f"np.{_long}"),
        inplace=True,
        infer=_binary_rule(_long, _bool),
        impl=_np(_f),
        vjp=(None, None),
        text=binop(_sym, CMP),
        numpy=binop(_sym, CMP),
        latex=_latex_iverson({">=": "\\geq", "<=": "\\leq"}.get(_sym, _sym)),
        elementwise=True,
        sympy=lambda sp, a, b, _relation=_relation: getattr(sp, _relation)(a, b),
        dot=_sym,
    )


def _infer_where(args, attrs):
    cond, a, b = args
    return broadcast_shapes("where", cond.shape, a.shape, b.shape), result_dtype(a, b)


register(
    "where",
    infer=_infer_where,
    impl=_np(np.where),
    vjp=(None, lambda g, n: F.where(n.args[0], g, 0), lambda g, n: F.where(n.args[0], 0, g)),
    text=call("where"),
    numpy=call("np.where"),
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
    vjp=(lambda g, n: F.astype(g, n.args[0].dtype) if n.args[0].dtype.kind == "f" else None,),
    text=lambda node, args: Fmt(f"{wrap(args[0], ATOM)}.astype({np.dtype(node.attrs['dtype']).name})", ATOM),
    numpy=lambda node, args: Fmt(
        f"{dtype_source(node.attrs['dtype'])}({args[0].text})"  # a scalar may be a Python int (x.shape[0])
        if node.ndim == 0
        else f"{wrap(args[0], ATOM)}.astype({dtype_source(node.attrs['dtype'])})",
        ATOM,
    ),
    latex=lambda node, args: args[0],
    elementwise=True,
    sympy=lambda sp, a, dtype: a,
)


# -- scalar functions applied element-wise ----------------------------------------------------
def _sympy_fn(fname: str) -> Callable[..., Any]:
    """The SymPy form ``sympy.<fname>(a)`` of a one-argument function."""
    return lambda sp, a: getattr(sp, fname)(a)


def _unary(name, np_name, np_fn, rule, latex, *, sympy, infer=_floaty, kernels=(), out=None):
    register(
        name,
        infer=infer,
        impl=_np(np_fn),
        vjp=(rule,),
        text=call(name),
        numpy=np_name if callable(np_name) else call(np_name),
        latex=latex,
        kernels=kernels,
        elementwise=True,
        out=out,
        inplace=out is not None,
        sympy=sympy,
    )


def _latex_exp(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"e^{{{args[0].text}}}", POW)


def _latex_sqrt(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"\\sqrt{{{args[0].text}}}", ATOM)


def _latex_abs(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(f"\\left|{args[0].text}\\right|", ATOM)


def _sigmoid_ref(x):
    return np.exp(-np.logaddexp(0, -x))


_unary("exp", "np.exp", np.exp, lambda g, n: g * n, _latex_exp, out=ufunc_out("np.exp"), sympy=_sympy_fn("exp"))
_unary(
    "log",
    "np.log",
    np.log,
    lambda g, n: g / n.args[0],
    latex_call("\\log"),
    out=ufunc_out("np.log"),
    sympy=_sympy_fn("log"),
)
_unary(
    "sqrt",
    "np.sqrt",
    np.sqrt,
    lambda g, n: g / (2 * n),
    _latex_sqrt,
    out=ufunc_out("np.sqrt"),
    sympy=_sympy_fn("sqrt"),
)
_unary(
    "tanh",
    "np.tanh",
    np.tanh,
    lambda g, n: g * (1 - n**2),
    latex_call("\\tanh"),
    out=ufunc_out("np.tanh"),
    sympy=_sympy_fn("tanh"),
)
_unary(
    "sin",
    "np.sin",
    np.sin,
    lambda g, n: g * F.cos(n.args[0]),
    latex_call("\\sin"),
    out=ufunc_out("np.sin"),
    sympy=_sympy_fn("sin"),
)
_unary(
    "cos",
    "np.cos",
    np.cos,
    lambda g, n: -(g * F.sin(n.args[0])),
    latex_call("\\cos"),
    out=ufunc_out("np.cos"),
    sympy=_sympy_fn("cos"),
)
_unary(
    "abs",
    "np.abs",
    np.abs,
    lambda g, n: g * F.sign(n.args[0]),
    _latex_abs,
    infer=_same,
    out=ufunc_out("np.absolute"),
    sympy=_sympy_fn("Abs"),
)
_unary(
    "sign",
    "np.sign",
    np.sign,
    None,
    latex_call("sign"),
    infer=_same,
    out=ufunc_out("np.sign"),
    sympy=_sympy_fn("sign"),
)
_unary(
    "sigmoid",
    "_sigmoid",
    _sigmoid_ref,
    lambda g, n: g * n * (1 - n),
    latex_call("\\sigma"),
    kernels=("_sigmoid",),
    sympy=lambda sp, a: 1 / (1 + sp.exp(-a)),
)
_unary(
    "softplus",
    lambda node, args: Fmt(f"np.logaddexp(0, {args[0].text})", ATOM),
    lambda x: np.logaddexp(0, x),
    lambda g, n: g * F.sigmoid(n.args[0]),
    latex_call("softplus"),
    out=ufunc_out("np.logaddexp", "0, {0}"),
    sympy=lambda sp, a: sp.log(1 + sp.exp(a)),
)
register(
    "relu",
    infer=_same,
    impl=_np(lambda x: np.maximum(x, 0)),
    vjp=(lambda g, n: g * (n.args[0] > 0),),
    text=call("relu"),
    numpy=lambda node, args: Fmt(f"np.maximum({args[0].text}, 0)", ATOM),
    out=ufunc_out("np.maximum", "{0}, 0"),
    inplace=True,
    latex=latex_call("relu"),
    elementwise=True,
    sympy=lambda sp, a: sp.Max(a, 0),
)
