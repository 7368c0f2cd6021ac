"""``from_sympy``: any scalar SymPy expression, applied element-wise to tensors.

The node keeps the SymPy expression itself. Its derivative with respect to each argument comes from
``sympy.diff`` (simplified) and is again a ``sympy_fn`` node, so higher derivatives work too. Lowering
uses SymPy's NumPy printer; a function that printer cannot express in NumPy is refused when the node is
built, with an error naming it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .graph import Expr, broadcast_shapes, float_dtype, make
from .ops.registry import ADD, ATOM, MUL, POW, Fmt, PerArgument, register

__all__ = ["from_sympy"]

SIMPLIFY_LIMIT = 400  # derivatives bigger than this (in SymPy ops) are not passed through sympy.simplify


class _LazySympy:
    """SymPy, imported on first use: most programs never build a SymPy node, and importing it is slow."""

    def __getattr__(self, name: str) -> Any:
        import sympy

        globals()["sp"] = sympy
        return getattr(sympy, name)


sp: Any = _LazySympy()


@functools.cache
def _printer_class() -> type:
    from sympy.printing.numpy import NumPyPrinter

    class _Printer(NumPyPrinter):
        """NumPy printer with element-wise Max/Min (no functools) and nothing outside NumPy."""

        def _print_Max(self, expr: Any) -> str:
            return functools.reduce(lambda a, b: f"numpy.maximum({a}, {b})", (self._print(a) for a in expr.args))

        def _print_Min(self, expr: Any) -> str:
            return functools.reduce(lambda a, b: f"numpy.minimum({a}, {b})", (self._print(a) for a in expr.args))

    return _Printer


def _numpy_text(expr: sp.Basic) -> str:
    """NumPy source for ``expr`` (``np.`` prefix); raises UnsupportedError for anything else."""
    printer = _printer_class()({"strict": True})
    try:
        text = printer.doprint(expr)
    except Exception as exc:  # SymPy raises PrintMethodNotImplementedError (and others) for unknown functions
        first = str(exc.args[0] if exc.args else exc).splitlines()[0]
        raise UnsupportedError(f"from_sympy: {first} (no NumPy form)") from None
    other = {m: sorted(fs) for m, fs in printer.module_imports.items() if m != "numpy"}
    if other:
        names = ", ".join(f"{m}.{f}" for m, fs in other.items() for f in fs)
        raise UnsupportedError(f"from_sympy: {names} is not a vectorized NumPy function")
    return re.sub(r"\bnumpy\.", "np.", text)


@functools.lru_cache(maxsize=1024)
def _derivative(expr: sp.Basic, sym: sp.Symbol) -> sp.Basic:
    d = sp.diff(expr, sym)
    if sp.count_ops(d) <= SIMPLIFY_LIMIT:
        d = sp.simplify(d)
    return d


@functools.lru_cache(maxsize=1024)
def _lambdified(expr: sp.Basic, symbols: tuple) -> Any:
    return sp.lambdify(symbols, expr, modules="numpy")


def from_sympy(expr: sp.Basic, mapping: Mapping[sp.Symbol, Any]) -> Expr:
    """Apply the scalar SymPy expression ``expr`` element-wise, substituting ``mapping[symbol]`` tensors.

    ``sd.from_sympy(t * sp.tanh(sp.log(1 + sp.exp(t))), {t: x @ W + b})`` is the Mish activation of a
    layer. The tensors of the symbols ``expr`` uses broadcast together (a constant ``expr`` takes the shape
    of all mapped tensors). Symbols are treated as real. Strings are refused (they are never parsed).

    >>> import sympy as sp
    >>> t, x = sp.Symbol("t"), sd.Input("x", shape=(None, 4))
    >>> swish = sd.from_sympy(t / (1 + sp.exp(-t)), {t: x})
    >>> swish.shape
    (None, 4)
    >>> print(sd.compile(swish)(x=np.array([[0.0, 1.0, 2.0, 3.0]])).round(4))
    [[0.     0.7311 1.7616 2.8577]]
    """
    from .functions import as_expr, astype

    if isinstance(expr, str):
        raise TypeError("from_sympy needs a SymPy expression, not a string (symdiff never parses strings with sympify)")
    if not isinstance(expr, sp.Basic):
        if isinstance(expr, (int, float)):
            expr = sp.Float(expr) if isinstance(expr, float) else sp.Integer(expr)
        else:
            raise TypeError(f"from_sympy needs a SymPy expression, got {type(expr).__name__}")
    for s in mapping:
        if not isinstance(s, sp.Symbol):
            raise TypeError(f"from_sympy: mapping keys must be sympy Symbols, got {s!r}")
    for s in (*mapping, *expr.atoms(sp.Symbol)):  # bound symbols too: SymPy's printer writes their names
        if type(s.name) is not str:
            raise TypeError(
                f"from_sympy: symbol names must be plain str, got a {type(s.name).__name__}; "
                "create the symbol with a plain str name"
            )
    missing = sorted(str(s) for s in expr.free_symbols if s not in mapping)
    if missing:
        raise ValueError(f"from_sympy: symbols {', '.join(missing)} of {expr} have no tensor in the mapping")
    if isinstance(expr, sp.logic.boolalg.Boolean) and not isinstance(expr, sp.Symbol):
        raise UnsupportedError(f"from_sympy: {expr} is a condition, not a number")
    tensors = {s: as_expr(v) for s, v in mapping.items()}
    # SymPy formulas compute in floats: integer tensors are converted, as NumPy's float functions do.
    tensors = {s: t if t.dtype.kind == "f" else astype(t, float_dtype(t)) for s, t in tensors.items()}
    # Tensors hold real numbers: differentiate with real symbols (d|t|/dt = sign(t), not re/im parts).
    real = {s: s if s.is_real else sp.Symbol(s.name, real=True) for s in expr.free_symbols}
    expr = expr.xreplace(real)
    used = sorted(expr.free_symbols, key=lambda s: s.name)
    if not used:  # a constant: broadcast it to the shape the mapped tensors give
        from .functions import broadcast_like, constant

        shape = broadcast_shapes("from_sympy", *(t.shape for t in tensors.values()))
        value = constant(float(expr))
        full = [t for t in tensors.values() if t.shape == shape]
        return broadcast_like(value, full[0]) if full else value
    originals = {r: s for s, r in real.items()}
    args = tuple(tensors[originals[s]] for s in used)
    if isinstance(expr, sp.Symbol):  # the identity: the (float) tensor itself, not an alias of it
        from .functions import broadcast_like

        shape = broadcast_shapes("from_sympy", *(t.shape for t in tensors.values()))
        full = [t for t in tensors.values() if t.shape == shape]
        return args[0] if args[0].shape == shape else broadcast_like(args[0], full[0]) if full else args[0]
    _numpy_text(expr)  # refuse unsupported functions now, not at code generation
    return make("sympy_fn", args, {"expr": expr, "symbols": tuple(used)})


def _infer(args: tuple[Expr, ...], attrs: Mapping[str, Any]) -> tuple[tuple, np.dtype]:
    return broadcast_shapes("from_sympy", *(a.shape for a in args)), float_dtype(*args)


def _impl(attrs: Mapping[str, Any], *arrays: np.ndarray) -> np.ndarray:
    out = _lambdified(attrs["expr"], attrs["symbols"])(*arrays)
    shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
    return np.broadcast_to(out, shape)


def _rule(i: int):
    """The VJP (and tangent) rule of argument ``i``: ``g * d expr / d symbol_i`` (from ``sympy.diff``)."""

    def rule(g: Expr, out: Expr, *args: Expr, expr: sp.Basic, symbols: tuple) -> Expr | None:
        d = _derivative(expr, symbols[i])
        if d == 0:
            return None
        mapping = dict(zip(symbols, args))
        if not d.free_symbols:
            return g * float(d)
        return g * from_sympy(d, mapping)

    return rule


def _substituted(node: Expr, args: list[Fmt]) -> sp.Basic:
    return node.attrs["expr"].xreplace(
        {s: sp.Symbol(a.text if a.prec >= ATOM else f"({a.text})") for s, a in zip(node.attrs["symbols"], args)}
    )


def _prec(expr: sp.Basic) -> int:
    """symdiff's precedence level of SymPy's printed form of ``expr``."""
    from sympy.printing.precedence import PRECEDENCE, precedence

    p = precedence(expr)
    if p >= PRECEDENCE["Func"]:
        return ATOM
    if p >= PRECEDENCE["Pow"]:
        return POW
    if p >= PRECEDENCE["Mul"]:
        return MUL
    return ADD


def _text(node: Expr, args: list[Fmt]) -> Fmt:
    expr = _substituted(node, args)
    return Fmt(sp.sstr(expr), _prec(expr))


def _numpy(node: Expr, args: list[Fmt]) -> Fmt:
    expr = _substituted(node, args)
    return Fmt(_numpy_text(expr), _prec(expr))


# The Array API standard's element-wise functions (and constants) that NumPy's printed forms map to, by NumPy's name.
_XP_RENAMED = {
    **{f"arc{f}": f"a{f}" for f in ("sin", "cos", "tan", "sinh", "cosh", "tanh", "tan2")},
    **{"power": "pow", "absolute": "abs", "conjugate": "conj"},
}
_XP_NAMES = frozenset(
    "abs acos acosh asin asinh atan atan2 atanh ceil clip conj cos cosh exp expm1 floor hypot log log1p log2 log10 "
    "logaddexp maximum minimum pow remainder round sign sin sinh sqrt square tan tanh trunc pi e inf nan".split()
)


def _xp(node: Expr, args: list[Fmt]) -> Fmt:
    """The NumPy form with the Array API's names (``xp.asin``); ``UnsupportedError`` for a NumPy function that the
    standard lacks (``np.select`` of a Piecewise)."""
    expr = _substituted(node, args)

    def standard(match: re.Match) -> str:
        name = _XP_RENAMED.get(match.group(1), match.group(1))
        if name not in _XP_NAMES:
            raise UnsupportedError(
                f"op 'sympy_fn' calls np.{match.group(1)}, which the Array API standard lacks, so only backend "
                f"'numpy' runs {sp.sstr(node.attrs['expr'])}"
            )
        return f"xp.{name}"

    return Fmt(re.sub(r"\bnp\.(\w+)", standard, _numpy_text(expr)), _prec(expr))


def _latex(node: Expr, args: list[Fmt]) -> Fmt:
    names = {s: a.text for s, a in zip(node.attrs["symbols"], args)}
    return Fmt("\\left(" + sp.latex(node.attrs["expr"], symbol_names=names) + "\\right)", ATOM)


# A scalar SymPy expression applied element-wise to its (broadcast) arguments.
register(
    "sympy_fn",
    infer=_infer,
    impl=_impl,
    vjp=PerArgument(_rule),  # type: ignore[arg-type]
    jvp=PerArgument(_rule),  # type: ignore[arg-type]  # element-wise: t * d expr / d symbol_i
    text=_text,
    numpy=_numpy,
    xp=_xp,  # the other array libraries (SymPy's NumPy printer, renamed), as lambdify(modules="jax") prints
    latex=_latex,
    elementwise=True,
    sympy=lambda sp, *args, expr, symbols: expr.subs(dict(zip(symbols, args))),
    sympy_matrix=True,  # no matrix check: the expression decides
    hint="f",
)
