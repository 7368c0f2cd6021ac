"""Leaf ops: symbols (``input``, ``param``), constants, identity matrices (``eye``) and ``dim`` (an axis length
known at run time); :func:`is_identity` recognises an identity matrix, whichever leaf holds it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..graph import SYMBOL_OPS, Expr, const_value, dtype_source
from ..naming import latex_name
from .registry import ATOM, UNARY, Fmt, register, xp_dtype


def _infer_symbol(args, attrs):
    return attrs["shape"], np.dtype(attrs["dtype"])


def _fmt_symbol(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(node.attrs["name"], ATOM)


def _latex_symbol(node: Expr, args: list[Fmt]) -> Fmt:
    return Fmt(latex_name(node.attrs["name"]), ATOM)


def _leaf(name: str, **facts: Any) -> None:
    """Register a leaf: no arguments, so no gradient or tangent rules and no axis provenance."""
    register(name, vjp=(), jvp=(), axis_source=None, **facts)


# A named input or param symbol (a leaf); its value is an argument of the compiled function.
for _kind in SYMBOL_OPS:
    _leaf(
        _kind,
        sympy=None,  # a symbol: to_sympy names it (Symbol, or MatrixSymbol for 1-D/2-D)
        view=True,
        infer=_infer_symbol,
        text=_fmt_symbol,
        latex=_latex_symbol,
        numpy=_fmt_symbol,
        xp=_fmt_symbol,
    )


def _infer_const(args, attrs):
    arr = attrs["value"].array
    return arr.shape, arr.dtype


def scalar_text(value: np.generic | float | int | bool) -> str:
    """Shortest round-trip text of a scalar (``2``, ``0.5``, ``True``, ``inf``)."""
    if isinstance(value, np.floating) and value.dtype != np.float64 and np.isfinite(value):
        # the shortest text that round-trips in its own dtype (float32 0.1 prints as 0.1), whatever the print options
        return repr(float(np.format_float_scientific(value, unique=True)))
    v = value.item() if isinstance(value, np.generic) else value
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
    return repr(v)


def _fmt_const(node: Expr, args: list[Fmt]) -> Fmt:
    arr = const_value(node)
    if arr.ndim == 0:
        text = scalar_text(arr[()])
        return Fmt(text, UNARY if text.startswith("-") else ATOM)
    if arr.size <= 8:
        return Fmt(repr(arr.tolist()), ATOM)
    return Fmt(f"const{arr.shape}", ATOM)


def _numpy_const(node: Expr, args: list[Fmt]) -> Fmt:
    arr = const_value(node)
    if arr.ndim == 0:
        text = scalar_text(arr[()])
        if text in ("nan", "inf", "-inf"):
            text = {"nan": "np.nan", "inf": "np.inf", "-inf": "-np.inf"}[text]
        return Fmt(text, UNARY if text.startswith("-") else ATOM)
    # Arrays are hoisted to module level by the code generator; this form is for tiny ones.
    return Fmt(f"np.array({arr.tolist()!r}, dtype={dtype_source(arr.dtype)})", ATOM)


def _xp_const(node: Expr, args: list[Fmt]) -> Fmt:
    arr = const_value(node)
    if arr.ndim == 0:
        text = scalar_text(arr[()])
        text = {"nan": "float('nan')", "inf": "float('inf')", "-inf": "-float('inf')"}.get(text, text)
        return Fmt(text, UNARY if text.startswith("-") else ATOM)
    # Arrays are hoisted to module level by the code generator; this form is for tiny ones.
    return Fmt(f"xp.asarray({arr.tolist()!r}, dtype={xp_dtype(arr.dtype)}, device=_device)", ATOM)


def _latex_const(node: Expr, args: list[Fmt]) -> Fmt:
    arr = const_value(node)
    if arr.ndim == 0:
        text = scalar_text(arr[()]).replace("inf", "\\infty")
        return Fmt(text, UNARY if text.startswith("-") else ATOM)
    if arr.ndim == 1 and arr.size <= 8:
        return Fmt("\\begin{bmatrix}" + " & ".join(scalar_text(v) for v in arr) + "\\end{bmatrix}", ATOM)
    dims = "\\times ".join(str(d) for d in arr.shape)
    return Fmt(f"C_{{{dims}}}", ATOM)


def _sympy_const(sp, value, **_):
    arr = value.array
    if arr.ndim:
        raise UnsupportedError("to_sympy: array constants have no SymPy form")
    return sp.sympify(arr.item())


# A constant array; Python scalars are weak (they take the other operand's float dtype).
_leaf(
    "const",
    sympy=_sympy_const,
    view=True,
    infer=_infer_const,
    impl=lambda attrs: attrs["value"].array,
    text=_fmt_const,
    latex=_latex_const,
    numpy=_numpy_const,
    xp=_xp_const,
)


def _infer_dim(args, attrs):
    return (), np.dtype("int64")


def _fmt_dim(node: Expr, args: list[Fmt]) -> Fmt:
    from .registry import wrap

    return Fmt(f"{wrap(args[0], ATOM)}.shape[{node.attrs['axis']}]", ATOM)


# The run-time length of axis `axis` of its argument (used for means over the batch axis).
register(
    "dim",
    sympy=None,
    hint="n",
    infer=_infer_dim,
    impl=lambda attrs, x: np.int64(np.shape(x)[attrs["axis"]]),
    vjp=(None,),
    jvp=(None,),
    axis_source=None,
    text=_fmt_dim,
    latex=lambda node, args: Fmt(f"\\operatorname{{len}}_{{{node.attrs['axis']}}}\\left({args[0].text}\\right)", ATOM),
    numpy=_fmt_dim,
    xp=_fmt_dim,
)


def _infer_eye(args, attrs):
    n, m = attrs["n"], attrs["m"]
    return (n, n if m is None else m), np.dtype(attrs["dtype"])


def _eye_dims(node: Expr, sep: str) -> str:
    n, m = node.attrs["n"], node.attrs["m"]
    return str(n) if m is None else f"{n}{sep}{m}"


def _fmt_eye(node: Expr, args: list[Fmt]) -> Fmt:
    dtype = np.dtype(node.attrs["dtype"])
    return Fmt(f"eye({_eye_dims(node, ', ')}{'' if dtype == np.float64 else f', dtype={dtype.name}'})", ATOM)


# The n x m identity matrix (ones on the diagonal), np.eye(n, m, dtype=...): a constant that stays a node, so
# that it prints as eye(n) / I_n and the simplifier can see an identity (is_identity).
_leaf(
    "eye",
    sympy=lambda sp, *, n, m, dtype: sp.Identity(n) if m in (None, n) else None,
    infer=_infer_eye,
    impl=lambda attrs: np.eye(attrs["n"], attrs["m"], dtype=attrs["dtype"]),
    text=_fmt_eye,
    latex=lambda node, args: Fmt("I_{" + _eye_dims(node, " \\times ") + "}", ATOM),
    numpy=lambda node, args: Fmt(f"np.eye({_eye_dims(node, ', ')}, dtype={dtype_source(node.attrs['dtype'])})", ATOM),
    xp=lambda node, args: Fmt(
        f"xp.eye({_eye_dims(node, ', ')}, dtype={xp_dtype(node.attrs['dtype'])}, device=_device)", ATOM
    ),
)


def is_identity(e: Expr) -> bool:
    """True when ``e`` is an identity matrix: a square ``eye`` node, or a 2-D constant equal to ``np.eye(n)``
    (whatever its dtype). The simplifier's identity rules (``I @ A -> A``) ask this."""
    if e.op == "eye":
        return e.shape[0] == e.shape[1]
    if e.op != "const" or e.ndim != 2 or e.shape[0] != e.shape[1]:
        return False
    return bool(np.array_equal(const_value(e), np.eye(e.shape[0])))
