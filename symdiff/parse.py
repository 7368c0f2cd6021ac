"""A restricted parser for expressions typed as text (the ``symdiff grad`` command line).

The text is parsed by Python's own parser (:func:`ast.parse` in ``"eval"`` mode) and the tree is then
walked with an explicit allow-list; anything not on the list is refused with a :class:`ParseError` that
names it. Nothing is ever evaluated by Python: no ``eval``, no ``exec``, no SymPy ``sympify`` (which
evaluates Python). Allowed are

- numbers (int and float literals), symbol names (identifiers not starting with ``_``);
- the operators ``+ - * / ** @``, unary ``-`` and ``+``, and one comparison ``> >= < <=``;
- calls of the functions in :data:`FUNCTIONS` (NumPy names: ``exp``, ``sum``, ``softmax``, ``mse`` ...;
  ``sd.linalg``'s by their plain names, as symdiff prints them: ``inv(A)``, ``det(A)``, ``logabsdet(A)``,
  ``solve(A, b)``, ``norm(x)``), whose arguments are expressions or literals (ints, ``None``,
  ``True``/``False``, tuples and lists of them) and whose keywords are those in :data:`KEYWORDS` (``axis=0``,
  ``keepdims=True``, ...);
- basic subscripts with int, slice, ``None`` and ``...`` literals (``x[:, 1:-1]``, ``x[0]``);
- the attribute ``.T`` (transpose) and nothing else.

Hostile text is refused before anything is built: the text is at most :data:`MAX_LENGTH` characters,
the tree at most :data:`MAX_DEPTH` levels deep (checked without recursion; a flat chain such as
``a + b + c + ...`` is one level however long), integer literals fit int64, float literals are finite,
and every constant subexpression is tracked exactly so that a power of two integers has an exponent of
at most :data:`MAX_EXPONENT` (the limit of ``sd.power``) and every constant fits int64 / is a finite float64
(so ``9**9**9`` is refused rather than computed). The arithmetic functions (``power``, ``multiply`` ...) obey
the same rules as their operators, and the exponent of a power is a number of at most :data:`MAX_EXPONENT` or an
expression of symbols, never a constant the parser cannot see (so nothing is left for constant folding
to blow up).
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from . import functions as F
from . import linalg, nn
from .errors import SymdiffError
from .graph import Expr, Input, constant, leaves, validate_name

__all__ = [
    "FUNCTIONS",
    "KEYWORDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "ParseError",
    "check",
    "parse",
    "symbol_names",
]

MAX_LENGTH = 20_000  # characters of text (a sum of a few thousand terms fits)
MAX_DEPTH = 100  # levels of nesting of the syntax tree (a flat chain of binary operators is one level)
MAX_EXPONENT = F.MAX_EXPONENT  # |b| in any power x ** b with a constant exponent (one limit: sd.power)
INT64_MAX = 2**63 - 1


class ParseError(SymdiffError, ValueError):
    """The text is not an expression the restricted parser accepts (the message says why and where).

    >>> sd.parse("x +* 2")
    Traceback (most recent call last):
        ...
    symdiff.parse.ParseError: cannot parse the expression: ...
    """


FUNCTIONS: dict[str, Callable[..., Expr]] = {
    **{name: getattr(F, name) for name in F.PUBLIC},
    "mse": nn.mse,
    "sigmoid_cross_entropy": nn.sigmoid_cross_entropy,
    "softmax_cross_entropy": nn.softmax_cross_entropy,
    # sd.linalg by plain names; slogdet's pair is written as its second value, logabsdet(A), as symdiff prints it
    **{name: getattr(linalg, name) for name in (*(n for n in linalg.__all__ if n != "slogdet"), "logabsdet")},
}
"""The functions an expression may call, by name."""

KEYWORDS = frozenset(
    {"axis", "axes", "keepdims", "depth", "shape", "ddof", "dtype", "stride", "padding", "dilation", "eps"}
)
PADDINGS = frozenset({"valid", "same"})  # padding= takes one of these, quoted, or explicit pads (conv2d)
# dtype= takes one of these names, bare (eye(3, dtype=float32), as symdiff prints it) or quoted
DTYPE_NAMES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}
)
"""The keyword arguments a call may pass (their values must be literals)."""

_BINOPS: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", lambda a, b: a / b),
    ast.Pow: ("**", lambda a, b: a**b),
    ast.MatMult: ("@", lambda a, b: a @ b),
}
_COMPARE: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Gt: (">", F.greater),
    ast.GtE: (">=", F.greater_equal),
    ast.Lt: ("<", F.less),
    ast.LtE: ("<=", F.less_equal),
}
_REFUSED_COMPARE = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_CALL_BINOPS: dict[str, type] = {
    "add": ast.Add,
    "subtract": ast.Sub,
    "multiply": ast.Mult,
    "divide": ast.Div,
    "power": ast.Pow,
    "matmul": ast.MatMult,
}  # functions built exactly like their operator, so that the same limits apply
_BINOP_NAMES = {ast.FloorDiv: "//", ast.Mod: "%", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|"}
_BINOP_NAMES.update({ast.BitXor: "^", ast.BitAnd: "&"})
_BINOP_HINTS = {ast.BitXor: " (use ** for a power, e.g. x**2)"}
_LINALG = ("linalg", "np.linalg", "sd.linalg", "numpy.linalg")  # ``linalg.inv(A)`` is refused with a hint
_FUNCTION_HINTS = {  # names users reach for that mean something else here
    "pow": "power(x, y) or x**y",
    "ln": "log(x)",
}
_WHAT = {
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.NamedExpr: "an assignment expression (:=)",
    ast.Starred: "a starred argument (*args)",
    ast.IfExp: "a conditional expression (use where(cond, a, b))",
    ast.BoolOp: "'and'/'or' (use where(cond, a, b))",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


_MARKERS = (ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.expr_context)  # not levels of nesting


def _fail(message: str, node: ast.AST | None = None) -> ParseError:
    col = getattr(node, "col_offset", None)
    where = f" (at column {col + 1})" if isinstance(col, int) else ""
    return ParseError(message + where)


def _describe(node: ast.AST) -> str:
    if type(node) in _WHAT:
        return _WHAT[type(node)]
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, bytes)):
            return "a string"
        return f"the constant {node.value!r}"
    return f"{type(node).__name__} syntax"


def check(text: str) -> ast.Expression:
    """Parse ``text`` with Python's parser and apply the size limits; returns the syntax tree.

    Raises :class:`ParseError` for text that is too long, not an expression, or nested too deeply.
    Only the limits are checked here; :func:`parse` checks the allow-list while it builds.
    """
    if not isinstance(text, str):
        raise ParseError(f"the expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"the expression is too long ({len(text)} characters; the limit is {MAX_LENGTH})")
    if not text.strip():
        raise ParseError("the expression is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings ("is" with a literal, escapes) are not ours
            tree = _ast_parse(text.strip())
    except SyntaxError as exc:
        msg = re.sub(r"\s*\(detected at line \d+\)$", "", exc.msg or "") or "invalid syntax"
        where = f" (at column {exc.offset})" if exc.offset else ""
        raise ParseError(f"cannot parse the expression: {msg}{where}") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, (RecursionError, MemoryError)):
            reason = f"it is nested too deeply for Python's parser ({reason or type(exc).__name__})"
        raise ParseError(f"cannot parse the expression: {reason}") from None
    # depth, without recursion (Python's parser accepts far deeper trees than a recursive walk can); the left
    # operand of a binary operator is on its level: Python makes a flat chain a + b + c + ... left-deep
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _fail(f"the expression is nested too deeply (more than {MAX_DEPTH} levels)", node)
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _MARKERS):
                flat = isinstance(node, ast.BinOp) and child is node.left and isinstance(child, ast.BinOp)
                stack.append((child, depth if flat else depth + 1))
    return tree


_RECURSION_LOCK = threading.Lock()


def _ast_parse(text: str) -> ast.Expression:
    """``ast.parse`` in eval mode, with room for a left-deep chain of every term that :data:`MAX_LENGTH` allows.

    NOTE: CPython builds the tree recursively and limits its depth to three times the recursion limit, so a sum
    of 3000 terms fails under the default limit of 1000; the limit is raised while parsing (the parser itself
    refuses deeply nested parentheses and operators with SyntaxError or MemoryError, never by crashing).
    """
    with _RECURSION_LOCK:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, old + len(text) // 2))
        try:
            return ast.parse(text, mode="eval")
        finally:
            sys.setrecursionlimit(old)


# -- exact constants: tracked while building, to refuse huge values before anything computes them ---------
Number = int | float


def _const_check(value: Number, node: ast.AST) -> Number:
    if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise _fail("a constant in the expression does not fit a 64-bit integer; write a float (3.0, not 3)", node)
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail("a constant in the expression overflows (it is not a finite float)", node)
    return value


def _const_binop(op: ast.operator, a: Number, b: Number, node: ast.AST) -> Number:
    if isinstance(op, ast.Pow):
        if isinstance(a, int) and isinstance(b, int) and abs(b) > MAX_EXPONENT:
            raise _fail(f"the exponent {b!r} of a power of constants is too large (the limit is {MAX_EXPONENT})", node)
        if isinstance(a, int) and isinstance(b, int) and b >= 0:
            return _const_check(a**b, node)  # |a| < 2**63 and b <= 1000: at most ~63000 bits, instant
        try:
            return _const_check(math.pow(a, b), node)
        except (OverflowError, ValueError, ZeroDivisionError):
            raise _fail("a power of constants has no finite real value", node) from None
    if isinstance(op, ast.Div):
        if b == 0:
            raise _fail("division of constants by zero", node)
        return _const_check(a / b, node)
    fn = _BINOPS[type(op)][1]
    return _const_check(fn(a, b), node)


class _Builder:
    """Walks a checked tree and builds the expression; refuses everything not on the allow-list."""

    def __init__(self, lookup: Callable[[str], Expr]) -> None:
        self.lookup = lookup
        # id(expr built from constants only) -> (the expr, kept alive so its id stays unique; its exact value)
        self.consts: dict[int, tuple[Expr, Number]] = {}

    # expressions ---------------------------------------------------------------------------------
    def expr(self, node: ast.AST) -> Expr:
        """Build the expression of ``node`` (an Expr, never a Python number)."""
        value = self._expr(node)
        if isinstance(value, Expr):
            return value
        out = constant(value)
        self.consts[id(out)] = (out, value)
        return out

    def _number(self, node: ast.Constant) -> Number:
        v = node.value
        if isinstance(v, bool) or v is None or v is Ellipsis:
            raise _fail(f"{v!r} is not allowed here (only in keyword arguments and subscripts)", node)
        if isinstance(v, (int, float)):
            return _const_check(v, node)
        if isinstance(v, complex):
            raise _fail("complex numbers are not supported", node)
        raise _fail(f"{_describe(node)} is not allowed in an expression", node)

    def _expr(self, node: ast.AST) -> Expr | Number:
        if isinstance(node, ast.Constant):
            return self._number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, (ast.USub, ast.UAdd)):
                operand = self._expr(node.operand)
                if isinstance(operand, Expr):
                    return -operand if isinstance(node.op, ast.USub) else operand
                return _const_check(-operand if isinstance(node.op, ast.USub) else operand, node)
            op = {ast.Not: "not", ast.Invert: "~"}.get(type(node.op), "?")
            raise _fail(f"the operator {op!r} is not allowed", node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                raise _fail(f"attribute access '.{node.attr}' is not allowed (only .T)", node)
            return self.expr(node.value).T
        if isinstance(node, (ast.Tuple, ast.List)):
            raise _fail("a tuple or list is allowed only as a function argument", node)
        raise _fail(f"{_describe(node)} is not allowed", node)

    def name(self, node: ast.Name) -> Expr:
        name = node.id
        if name in FUNCTIONS:
            raise _fail(f"{name!r} is a function; call it, e.g. {name}(x)", node)
        try:
            validate_name(name, "symbol")
        except ValueError as exc:
            raise _fail(str(exc), node) from None
        return self.lookup(name)

    def binop(self, node: ast.BinOp) -> Expr | Number:
        # a flat chain a + b - c ... is left-deep: walk down its left operands without recursion
        chain = []
        while isinstance(node, ast.BinOp):
            chain.append(node)
            node = node.left
        acc = self._expr(node)
        for op_node in reversed(chain):
            if type(op_node.op) not in _BINOPS:
                name = _BINOP_NAMES.get(type(op_node.op), "?")
                hint = _BINOP_HINTS.get(type(op_node.op), "")
                raise _fail(f"the operator {name!r} is not allowed{hint}", op_node)
            acc = self.apply(op_node.op, acc, self._expr(op_node.right), op_node)
        return acc

    def _value(self, operand: Expr | Number) -> Number | None:
        """The exact value of a constant operand (a number, or an expr built from numbers), else ``None``."""
        return operand if not isinstance(operand, Expr) else self.consts.get(id(operand), (None, None))[1]

    def apply(self, op: ast.operator, left: Expr | Number, right: Expr | Number, node: ast.AST) -> Expr:
        """``left op right`` with the constant limits: folds tracked constants exactly, refuses huge powers."""
        lc, rc = self._value(left), self._value(right)
        folded = None
        if isinstance(op, ast.Pow) and rc is None and isinstance(right, Expr) and not _has_symbols(right):
            raise _fail("the exponent of a power must be a number or depend on a symbol; write its value", node)
        if isinstance(op, ast.Pow) and lc is None and rc is not None and abs(rc) > MAX_EXPONENT:
            raise _fail(f"the exponent {rc!r} is too large (the limit is {MAX_EXPONENT})", node)
        if lc is not None and rc is not None:
            if isinstance(op, ast.MatMult):
                raise _fail("'@' needs arrays, not numbers", node)
            folded = _const_binop(op, lc, rc, node)  # refuses what is too large; never computes it
        a = left if isinstance(left, Expr) else constant(left)  # Python never computes number op number
        b = right if isinstance(right, Expr) else constant(right)
        out = _BINOPS[type(op)][1](a, b)
        if folded is not None:
            self.consts[id(out)] = (out, folded)
        return out

    def compare(self, node: ast.Compare) -> Expr:
        if len(node.ops) != 1:
            raise _fail("chained comparisons are not allowed (write one comparison)", node)
        op = node.ops[0]
        if type(op) not in _COMPARE:
            raise _fail(f"the comparison {_REFUSED_COMPARE.get(type(op), '?')!r} is not allowed", node)
        return _COMPARE[type(op)][1](self.expr(node.left), self.expr(node.comparators[0]))

    # calls ----------------------------------------------------------------------------------------
    def call(self, node: ast.Call) -> Expr:
        if not isinstance(node.func, ast.Name):
            func = node.func
            if isinstance(func, ast.Attribute) and ast.unparse(func.value) in _LINALG and func.attr in FUNCTIONS:
                raise _fail(f"write {func.attr}(...), not {ast.unparse(func)}(...): functions are called by name", node)
            if isinstance(func, ast.Attribute):
                raise _fail(f"method calls ('.{node.func.attr}(...)') are not allowed; use the function form", node)
            raise _fail(f"only named functions can be called, not {_describe(node.func)}", node)
        fname = node.func.id
        fn = FUNCTIONS.get(fname)
        if fn is None:
            raise _fail(f"unknown function {fname!r}{_suggest(fname, FUNCTIONS)}", node)
        if fname in ("max", "amax", "min", "amin") and len(node.args) > 1 and not node.keywords:
            which = ("larger", "maximum") if "max" in fname else ("smaller", "minimum")
            raise _fail(
                f"{fname}(a, b) is a reduction over axis b, as in NumPy; for the {which[0]} of a and b write "
                f"{which[1]}(a, b), for a reduction write {fname}(a, axis=b)",
                node,
            )
        if fname in _CALL_BINOPS and len(node.args) == 2 and not node.keywords:
            op = _CALL_BINOPS[fname]()
            return self.apply(op, self._expr(node.args[0]), self._expr(node.args[1]), node)
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise _fail("starred arguments (*args) are not allowed", a)
            args.append(self.argument(a))
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise _fail("keyword unpacking (**kwargs) is not allowed", kw.value)
            if kw.arg not in KEYWORDS:
                raise _fail(f"{fname}() keyword {kw.arg!r} is not allowed (allowed: {', '.join(sorted(KEYWORDS))})", kw)
            if kw.arg == "padding" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                if kw.value.value not in PADDINGS:
                    raise _fail(f'padding= must be "valid", "same" or explicit pads, not {kw.value.value!r}', kw.value)
                kwargs[kw.arg] = kw.value.value
            else:
                kwargs[kw.arg] = self.dtype_name(kw.value) if kw.arg == "dtype" else self.literal(kw.value)
        try:
            return fn(*args, **kwargs)
        except TypeError as exc:
            text = str(exc)
            prefix = f"{getattr(fn, '__name__', fname)}()"
            if text.startswith(prefix):  # wrong arity or keyword: name the function as the user wrote it
                raise _fail(f"{fname}(){text[len(prefix) :]}", node) from None
            raise

    def argument(self, node: ast.AST) -> Any:
        """A call argument: a literal stays a Python value (ints, tuples); anything else is an expression."""
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(self.argument(e) for e in node.elts)
        if _is_literal(node):
            return self.literal(node)
        return self.expr(node)

    def dtype_name(self, node: ast.AST) -> str:
        """The value of ``dtype=``: a dtype name of :data:`DTYPE_NAMES`, bare or quoted (never looked up)."""
        name = node.id if isinstance(node, ast.Name) else node.value if isinstance(node, ast.Constant) else None
        if not isinstance(name, str) or name not in DTYPE_NAMES:
            what = repr(node.id) if isinstance(node, ast.Name) else _describe(node)
            raise _fail(f"dtype= must be one of {', '.join(sorted(DTYPE_NAMES))}, not {what}", node)
        return name

    def literal(self, node: ast.AST) -> Any:
        """The Python value of a literal: int, float, bool, None, ``...``, or a tuple of literals."""
        if isinstance(node, ast.Constant):
            v = node.value
            if v is None or isinstance(v, bool) or v is Ellipsis:
                return v
            if isinstance(v, (int, float)):
                return _const_check(v, node)
            raise _fail(f"{_describe(node)} is not allowed as an argument", node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = node.operand
            if isinstance(inner, ast.Constant) and type(inner.value) in (int, float):
                return _const_check(-inner.value, node)
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(self.literal(e) for e in node.elts)
        what = _describe(node)
        raise _fail(f"this argument must be a literal (an int, None, True/False or a tuple), not {what}", node)

    # subscripts -----------------------------------------------------------------------------------
    def subscript(self, node: ast.Subscript) -> Expr:
        base = self.expr(node.value)
        index = node.slice
        items = index.elts if isinstance(index, ast.Tuple) else [index]
        key = tuple(self.index_item(i) for i in items)
        return base[key if isinstance(index, ast.Tuple) else key[0]]

    def index_item(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self.index_int(p) for p in (node.lower, node.upper, node.step)]
            return slice(*parts)
        if isinstance(node, ast.Constant) and (node.value is None or node.value is Ellipsis):
            return node.value
        return self.index_int(node)

    def index_int(self, node: ast.AST) -> int | None:
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        value = self.literal(node) if _is_literal(node) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail("an index must be an int literal, a slice of int literals, None or ...", node)
        return value


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return not isinstance(node.value, (str, bytes))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_is_literal(e) for e in node.elts)
    return False


def _has_symbols(expr: Expr) -> bool:
    return any(n.is_symbol for n in leaves([expr]))


def _suggest(name: str, known: Mapping[str, Any] | list[str]) -> str:
    """``"; did you mean 'sin'?"`` for ``"sinn"``: the closest known name, or a hint for a name from elsewhere."""
    if name in _FUNCTION_HINTS:
        return f"; use {_FUNCTION_HINTS[name]}"
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _names(tree: ast.Expression) -> list[str]:
    """Names used as symbols (not called), in order of first appearance in the text."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    found = [
        (n.col_offset, n.id)
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and id(n) not in called and n.id not in FUNCTIONS
    ]
    out: list[str] = []
    for _, name in sorted(found):
        if name not in out:
            out.append(name)
    return out


def symbol_names(text: str) -> list[str]:
    """The symbol names ``text`` uses, in order of first appearance (after the size checks)."""
    return _names(check(text))


def parse(text: str, symbols: Mapping[str, Expr] | Callable[[str], Expr] | None = None) -> Expr:
    """Build the expression written in ``text`` with the restricted grammar (see the module docstring).

    Parameters:
        text: e.g. ``"mean((x @ W + b - y)**2)"``.
        symbols: what each name stands for: a dict name -> expression (an unknown name is an error),
            a function name -> expression (called once per name), or ``None``: every name is a scalar
            ``sd.Input``.

    Raises:
        ParseError: the text is too long, nested too deeply, not an expression, or uses something the
            grammar does not allow (the message names it and its column).
        ShapeError, ValueError, TypeError: from building the expression (e.g. shapes that do not fit).

    >>> x = sd.Input("x", shape=(None, 3))
    >>> y = sd.parse("mean(tanh(x) ** 2)", {"x": x})
    >>> y.shape
    ()
    >>> print(sd.grad(y, x))
    tanh1 = tanh(x)
    n = x.shape[0]
    dx = 2 * tanh1 / (3 * n) * (1 - tanh1**2)
    """
    tree = check(text)
    cache: dict[str, Expr] = {}
    if symbols is None:
        make_symbol: Callable[[str], Expr] = lambda name: Input(name)
    elif isinstance(symbols, Mapping):
        table = dict(symbols)

        def make_symbol(name: str) -> Expr:
            if name not in table:
                known = ", ".join(table) or "none"
                raise ParseError(f"unknown name {name!r} (known symbols: {known}){_suggest(name, list(table))}")
            return table[name]

    else:
        make_symbol = symbols

    def lookup(name: str) -> Expr:
        if name not in cache:
            value = make_symbol(name)
            if not isinstance(value, Expr):
                raise ParseError(f"symbol {name!r} is not a symdiff expression")
            cache[name] = value
        return cache[name]

    return _Builder(lookup).expr(tree.body)
