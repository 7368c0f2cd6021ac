"""Counting the NumPy operations and FLOPs a function executes, by rewriting its source.

The function's module source is parsed with ``ast`` and every place where NumPy work can happen is wrapped in
a counting helper, then the rewritten module is executed and the function called on real arrays:

- operators (``a @ b``, ``a + b``, ``-a``, ``a > 0``, ``a -= b``) whose operand is a NumPy array or scalar;
- calls of ``np.<name>`` (``np.sum``, ``np.maximum(..., out=...)``, ``np.add.reduce``, ...);
- method calls on arrays (``a.sum()``, ``a.astype(...)``, ``a.copy()``);
- fancy indexing (an index containing an array or a list) read or written, and slice assignment.

Basic slicing, ``.T`` and other views are not counted (they move no data). Module-level helper functions
(``_softmax``, ...) are rewritten too, so their operations count where they are called; a call of any other
non-NumPy function (e.g. a compiled kernel) is counted as one ``opaque`` operation whose FLOPs are unknown.
Since it counts what executes, loops and untaken branches are handled: the ``if not finite`` branch of a
training step, never taken, costs only its condition.

FLOP convention: matmul ``2 * m * k * n``; element-wise (arithmetic, comparison, ``exp``, ``log``,
``maximum``, ``where``, casts excluded) one per output element; reductions one per input element;
allocation, copies, casts and indexing zero (they are counted as operations, category ``data``).
"""

from __future__ import annotations

import ast
import builtins
import inspect
import operator
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BIN = {
    ast.Add: ("add", operator.add, operator.iadd),
    ast.Sub: ("subtract", operator.sub, operator.isub),
    ast.Mult: ("multiply", operator.mul, operator.imul),
    ast.Div: ("divide", operator.truediv, operator.itruediv),
    ast.FloorDiv: ("floor_divide", operator.floordiv, operator.ifloordiv),
    ast.Mod: ("remainder", operator.mod, operator.imod),
    ast.Pow: ("power", operator.pow, operator.ipow),
    ast.MatMult: ("matmul", operator.matmul, operator.imatmul),
    ast.BitAnd: ("bitwise_and", operator.and_, operator.iand),
    ast.BitOr: ("bitwise_or", operator.or_, operator.ior),
    ast.BitXor: ("bitwise_xor", operator.xor, operator.ixor),
}
UN = {
    ast.USub: ("negative", operator.neg),
    ast.Invert: ("invert", operator.invert),
    ast.UAdd: ("positive", operator.pos),
}
CMP = {
    ast.Gt: ("greater", operator.gt),
    ast.GtE: ("greater_equal", operator.ge),
    ast.Lt: ("less", operator.lt),
    ast.LtE: ("less_equal", operator.le),
    ast.Eq: ("equal", operator.eq),
    ast.NotEq: ("not_equal", operator.ne),
}
MATMUL = {"matmul", "dot", "vdot", "inner", "tensordot", "einsum", "outer"}
REDUCE = {"sum", "max", "min", "amax", "amin", "mean", "prod", "argmax", "argmin", "any", "all", "nansum", "std", "var"}
ELEMENTWISE_FUNCS = {"where", "clip", "logaddexp"}


def _is_np(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def _size(x: Any) -> int:
    return int(np.size(x)) if _is_np(x) or isinstance(x, (list, tuple)) else 1


def _matmul_flops(a: Any, b: Any, out: Any) -> int:
    sa, sb, so = np.shape(a), np.shape(b), np.shape(out)
    if len(sa) == 0 or len(sb) == 0:
        return _size(out)
    return 2 * int(np.prod(so, dtype=np.int64)) * sa[-1]


def _fancy(idx: Any) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return any(isinstance(i, (np.ndarray, list)) for i in items)


@dataclass
class Tally:
    """Operations and FLOPs per category and per operation name."""

    ops: Counter = field(default_factory=Counter)  # category -> count
    flops: Counter = field(default_factory=Counter)  # category -> FLOPs
    names: Counter = field(default_factory=Counter)  # "category:name" -> count
    recording: bool = True

    def add(self, cat: str, name: str, flops: int) -> None:
        if self.recording:
            self.ops[cat] += 1
            self.flops[cat] += int(flops)
            self.names[f"{cat}:{name}"] += 1

    def reset(self) -> None:
        self.ops.clear()
        self.flops.clear()
        self.names.clear()

    @property
    def total_ops(self) -> int:
        return sum(self.ops.values())

    @property
    def total_flops(self) -> int:
        return sum(self.flops.values())


class Helpers:
    """The functions the rewritten code calls; each performs the operation and records it."""

    def __init__(self, tally: Tally, opaque: Any) -> None:
        self.t = tally
        self.opaque = opaque

    def binop(self, name, fn, a, b):
        r = fn(a, b)
        if _is_np(a) or _is_np(b):
            if name == "matmul":
                self.t.add("matmul", "@", _matmul_flops(a, b, r))
            else:
                self.t.add("elementwise", name, _size(r))
        return r

    def unop(self, name, fn, a):
        r = fn(a)
        if _is_np(a):
            self.t.add("elementwise", name, _size(r))
        return r

    def getitem(self, obj, idx):
        r = obj[idx]
        if isinstance(obj, np.ndarray) and _fancy(idx):
            self.t.add("data", "gather", 0)
        return r

    def setitem(self, obj, idx, value):
        if isinstance(obj, np.ndarray):
            self.t.add("data", "scatter" if _fancy(idx) else "slice-assign", 0)
        obj[idx] = value

    def augitem(self, name, fn, obj, idx, value):
        cur = self.getitem(obj, idx)
        new = fn(cur, value)
        if _is_np(cur) or _is_np(value):
            self.t.add("elementwise", name, _size(new))
        self.setitem(obj, idx, new)

    def npcall(self, name, fn, args, kwargs):
        r = fn(*args, **kwargs)
        base = name.split(".")[-1]
        if name.endswith((".reduce", ".accumulate")) or base in REDUCE:
            self.t.add("reduction", name, _size(args[0]) if args else 0)
        elif base in MATMUL:
            if base in ("matmul", "dot") and len(args) >= 2:
                flops = _matmul_flops(args[0], args[1], r)
            else:
                sizes = [_size(a) for a in args if _is_np(a)]
                flops = int(2 * np.sqrt(float(np.prod(sizes[:2])) * _size(r))) if len(sizes) >= 2 else _size(r)
            self.t.add("matmul", name, flops)
        elif isinstance(fn, np.ufunc) or base in ELEMENTWISE_FUNCS:
            out = kwargs.get("out")
            out = out[0] if isinstance(out, tuple) else out
            self.t.add("elementwise", name, _size(r if out is None else out))
        else:
            self.t.add("data", name, 0)
        return r

    def method(self, obj, name, args, kwargs):
        r = getattr(obj, name)(*args, **kwargs)
        if _is_np(obj):
            if name in REDUCE:
                self.t.add("reduction", "." + name, _size(obj))
            else:
                self.t.add("data", "." + name, 0)
        return r

    def call(self, fname, fn, args, kwargs):
        """A call of a plain name: an opaque kernel unless it is a helper of the module or a builtin."""
        if fname in self.opaque:
            self.t.add("opaque", fname, 0)
        return fn(*args, **kwargs)


def _slice_expr(node: ast.AST) -> ast.AST:
    """A subscript's index as an ordinary expression (``a:b`` -> ``slice(a, b, None)``)."""
    if isinstance(node, ast.Slice):
        parts = [node.lower, node.upper, node.step]
        return ast.Call(ast.Name("slice", ast.Load()), [p if p is not None else ast.Constant(None) for p in parts], [])
    if isinstance(node, ast.Tuple):
        return ast.Tuple([_slice_expr(e) for e in node.elts], ast.Load())
    return node


def _np_name(node: ast.AST) -> str | None:
    """``np.add.reduce`` -> ``"add.reduce"``; None when the chain is not rooted at ``np``/``numpy``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in ("np", "numpy") and parts:
        return ".".join(reversed(parts))
    return None


def _h(name: str) -> ast.Attribute:
    return ast.Attribute(ast.Name("__opcount__", ast.Load()), name, ast.Load())


def _args(node: ast.Call) -> tuple[ast.AST, ast.AST]:
    args = ast.Tuple(list(node.args), ast.Load())
    kwargs = ast.Dict([k.arg and ast.Constant(k.arg) for k in node.keywords], [k.value for k in node.keywords])
    return args, kwargs


class _NotIn:
    """``name in _NotIn(excluded)`` is true for every name outside ``excluded``."""

    def __init__(self, excluded: set[str]) -> None:
        self.excluded = excluded

    def __contains__(self, name: str) -> bool:
        return name not in self.excluded


class _Rewrite(ast.NodeTransformer):
    def visit_BinOp(self, node):
        self.generic_visit(node)
        if type(node.op) not in BIN:
            return node
        name, fn, _ = BIN[type(node.op)]
        return ast.Call(_h("binop"), [ast.Constant(name), self._op(fn), node.left, node.right], [])

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if type(node.op) not in UN:
            return node
        name, fn = UN[type(node.op)]
        return ast.Call(_h("unop"), [ast.Constant(name), self._op(fn), node.operand], [])

    def visit_Compare(self, node):
        self.generic_visit(node)
        if len(node.ops) != 1 or type(node.ops[0]) not in CMP:
            return node
        name, fn = CMP[type(node.ops[0])]
        return ast.Call(_h("binop"), [ast.Constant(name), self._op(fn), node.left, node.comparators[0]], [])

    def visit_Subscript(self, node):
        self.generic_visit(node)
        if not isinstance(node.ctx, ast.Load):
            return node
        return ast.Call(_h("getitem"), [node.value, _slice_expr(node.slice)], [])

    def visit_AugAssign(self, node):
        node.value = self.visit(node.value)
        if type(node.op) not in BIN:
            return node
        name, _, ifn = BIN[type(node.op)]
        if isinstance(node.target, ast.Name):
            load = ast.Name(node.target.id, ast.Load())
            call = ast.Call(_h("binop"), [ast.Constant(name), self._op(ifn), load, node.value], [])
            return ast.Assign([ast.Name(node.target.id, ast.Store())], call)
        if isinstance(node.target, ast.Subscript):
            t = node.target
            obj = self.visit(t.value)
            call = ast.Call(
                _h("augitem"),
                [ast.Constant(name), self._op(ifn), obj, _slice_expr(self.visit(t.slice)), node.value],
                [],
            )
            return ast.Expr(call)
        return node

    def visit_Assign(self, node):
        node.value = self.visit(node.value)
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Subscript):
            t = node.targets[0]
            call = ast.Call(_h("setitem"), [self.visit(t.value), _slice_expr(self.visit(t.slice)), node.value], [])
            return ast.Expr(call)
        node.targets = [self.visit(t) for t in node.targets]
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        args, kwargs = _args(node)
        npname = _np_name(node.func)
        if npname is not None:
            return ast.Call(_h("npcall"), [ast.Constant(npname), node.func, args, kwargs], [])
        if isinstance(node.func, ast.Attribute):
            return ast.Call(_h("method"), [node.func.value, ast.Constant(node.func.attr), args, kwargs], [])
        if isinstance(node.func, ast.Name):
            return ast.Call(_h("call"), [ast.Constant(node.func.id), node.func, args, kwargs], [])
        return node

    @staticmethod
    def _op(fn) -> ast.AST:
        return ast.Attribute(ast.Name("__operator__", ast.Load()), fn.__name__, ast.Load())


def instrument(source: str, name: str, tally: Tally, namespace: dict[str, Any] | None = None):
    """Execute the rewritten ``source`` (a module, or one function) and return its function ``name``."""
    tree = ast.parse(source)
    defined = {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda)) and hasattr(n, "name")
    }
    # opaque: a plain-name call of neither a builtin nor a function this source defines (e.g. a compiled kernel)
    opaque_exclude = defined | set(dir(builtins))
    tree = ast.fix_missing_locations(_Rewrite().visit(tree))
    ns: dict[str, Any] = dict(namespace or {})
    ns.setdefault("__name__", f"opcount_{name}")
    opaque = _NotIn(opaque_exclude)
    ns["__opcount__"] = Helpers(tally, opaque)
    ns["__operator__"] = operator
    exec(compile(tree, f"<opcount:{name}>", "exec"), ns)  # noqa: S102 - rewritten symdiff/benchmark code
    return ns[name]


def instrument_function(fn, tally: Tally):
    """Rewrite a plain Python function (e.g. the hand-written step) using its module's globals."""
    source = textwrap.dedent(inspect.getsource(fn))
    return instrument(source, fn.__name__, tally, namespace=dict(fn.__globals__))
