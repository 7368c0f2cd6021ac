"""The expression graph: one immutable, hash-consed node type.

Every expression is an :class:`Expr`: an op name, argument expressions, hashable attributes and an
optional user-given name. Nodes are interned, so two structurally identical expressions are the same
Python object; shared work is therefore represented (and later printed and computed) once.

Each node knows its static ``shape`` (a tuple of ints, ``None`` for an axis of open length such as the
batch axis) and its NumPy ``dtype``. Shapes and dtypes are inferred by the op's rule in the op table
(:mod:`symdiff.ops`) when the node is built, so a shape error surfaces at build time.

This module sits low in the package: it imports only the op table (:mod:`symdiff.ops.registry`, whose
entries register themselves later), :mod:`symdiff.errors` and :mod:`symdiff.naming`. Expr's operators and
NumPy-like methods build nodes with :mod:`symdiff.functions`, and its ``str``/``repr``/LaTeX come from
:mod:`symdiff.printing`; both build on the graph, so instead of importing them, ``Expr`` calls them through
:data:`HOOKS`, which each of them fills when it is imported. ``import symdiff`` (which runs before any
``import symdiff.graph``) imports both.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from .errors import ConstantOverflowError, DTypeError, InputError, ShapeError
from .naming import validate_name
from .ops.registry import OPS, OpDef

Dim = int | None
Shape = tuple[Dim, ...]

# The ops of named leaves (``sd.Input`` and ``sd.Param``): their values are arguments of a compiled function.
SYMBOL_OPS = ("input", "param")


def normalize_shape(shape: Any, what: str = "shape") -> Shape:
    """Turn an int, ``None`` or a sequence of ints/``None`` into a shape tuple, validating each dim."""
    if shape is None:
        return ()
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"{what} {shape!r} is not a tuple of ints") from None
    out: list[Dim] = []
    for d in dims:
        if d is None:
            out.append(None)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            out.append(int(d))
        else:
            raise ValueError(f"{what} {shape!r}: each dim must be a non-negative int or None, got {d!r}")
    return tuple(out)


def format_shape(shape: Shape) -> str:
    """``(None, 64)`` -> ``'(None, 64)'``; ``(3,)`` -> ``'(3,)'``."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def broadcast_shapes(op: str, *shapes: Shape) -> Shape:
    """NumPy broadcasting of static shapes; ``None`` (open length) matches ``None`` and 1, not a fixed length.

    Raises :class:`ShapeError` naming ``op`` and the shapes when they cannot broadcast.
    """
    ndim = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(ndim):
        dims = [s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            listed = " and ".join(format_shape(s) for s in shapes)
            raise ShapeError(f"{op}: shapes {listed} cannot be broadcast together (axis {i - ndim})")
        if known and any(d is None for d in dims):
            # NOTE: NumPy would accept a run-time length of 1 or k here, with different gradients for each;
            # an open axis is a batch axis, so its length is refused as ambiguous when the graph is built.
            listed = " and ".join(format_shape(s) for s in shapes)
            raise ShapeError(
                f"{op}: shapes {listed} cannot be broadcast together: an open-length axis (None) "
                f"against length {next(iter(known))} (axis {i - ndim}); give both the same axis"
            )
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def check_contraction(op: str, a: Expr, b: Expr, pairs: list[tuple[int, int]]) -> None:
    """Raise ``ShapeError`` unless each summed axis pair ``(i of a, j of b)`` has one length.

    An open-length axis (``None``) only contracts with another open axis: against a fixed length its
    run-time length is unknown until the call, so the product is refused when the graph is built.
    """
    for i, j in pairs:
        da, db = a.shape[i], b.shape[j]
        if da == db:
            continue
        shapes = f"{format_shape(a.shape)} and {format_shape(b.shape)}"
        where = f"axis {i % a.ndim} of the first, axis {j % b.ndim} of the second"
        if da is None or db is None:
            raise ShapeError(
                f"{op}: shapes {shapes} cannot be contracted: an open-length axis (None) against length "
                f"{da if db is None else db} ({where}); give both the same length"
            )
        raise ShapeError(f"{op}: shapes {shapes} are not aligned: {da} != {db} ({where})")


def matmul_pairs(a: Expr, b: Expr) -> list[tuple[int, int]]:
    """The axes ``a @ b`` sums over: a's last with b's only (1-D) or second-to-last axis."""
    return [(-1, 0 if b.ndim == 1 else -2)]


def normalize_axis(axis: Any, ndim: int, op: str, shape: Shape | None = None) -> tuple[int, ...]:
    """Normalize an int / tuple / ``None`` axis argument to a sorted tuple of non-negative axes.

    Raises ``DTypeError`` (a ``TypeError``) for an axis that is not an int, ``ShapeError`` for one out of range.
    """
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        axes = tuple(axis)
    elif _is_int(axis):
        axes = (axis,)
    else:
        raise DTypeError(f"{op}: axis {axis!r} is not an int, a tuple of ints or None")
    out = []
    for a in axes:
        if not _is_int(a):
            raise DTypeError(f"{op}: axis {a!r} in {axis!r} is not an int")
        if not -ndim <= a < ndim:
            where = f" of shape {format_shape(shape)}" if shape is not None else f" of ndim {ndim}"
            raise ShapeError(f"{op}: axis {a!r} is out of range for an operand{where}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class ConstValue:
    """A NumPy array made hashable by value, so constants can be hash-consed."""

    __slots__ = ("array", "_key")

    def __init__(self, array: np.ndarray):
        array = np.array(array, copy=True)
        array.setflags(write=False)
        self.array = array
        self._key = (array.dtype.str, array.shape, array.tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConstValue) and self._key == other._key

    def __repr__(self) -> str:
        return f"ConstValue({self.array!r})"


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


# The intern table: structural key -> the one node with that structure.
_TABLE: weakref.WeakValueDictionary[tuple, Expr] = weakref.WeakValueDictionary()
_TABLE_LOCK = threading.Lock()  # makes lookup-and-insert atomic, so threads share one node per structure


class Expr:
    """An immutable node of the expression graph.

    Attributes:
        op: name of the op in the op table (``"add"``, ``"matmul"``, ``"param"``, ...).
        args: argument expressions.
        attrs: op attributes (axis, index, the constant's value, the symbol's name, ...).
        name: the symbol's name for an Input or Param, else the user-given label (``.named("h1")``) or
            ``None``; printing and code generation keep it.
        shape: static shape; ``None`` marks an axis whose length is known only at run time.
        dtype: NumPy dtype of the values.
        weak: True for scalars made only of Python numbers and run-time lengths; like Python scalars
            in NumPy 2 they take the other operand's dtype (``float32 * (1 / n)`` stays float32).

    >>> x = sd.Input("x", shape=(None, 3))
    >>> y = (2 * x).sum(axis=1)
    >>> y.shape, y.ndim, y.dtype
    ((None,), 1, dtype('float64'))
    >>> print(y)
    sum(2 * x, axis=1)
    """

    __slots__ = ("op", "args", "attrs", "_label", "shape", "dtype", "weak", "_key", "__weakref__")

    op: str
    args: tuple[Expr, ...]
    attrs: Mapping[str, Any]
    _label: str | None  # the user label given by .named (None for symbols, whose name is in attrs)
    shape: Shape
    dtype: np.dtype

    # NumPy must defer to Expr's reflected operators (np_array + expr -> Expr.__radd__).
    __array_ufunc__ = None

    def __new__(cls, *a: Any, **k: Any) -> Expr:
        raise TypeError("build expressions with sd.Input, sd.Param, operators and sd functions")

    # -- identity ---------------------------------------------------------------------------
    def __hash__(self) -> int:
        return id(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "the truth value of a symbolic expression is unknown until it runs; "
            "use sd.where(cond, a, b) instead of if/and/or"
        )

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("symbolic expressions are not iterable; index them with e[i]")

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d expression")
        if self.shape[0] is None:
            raise TypeError("len() of an expression whose first axis has open length (None)")
        return self.shape[0]

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def size(self) -> int | None:
        """Number of elements, or ``None`` when an axis has open length."""
        if any(d is None for d in self.shape):
            return None
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def opdef(self) -> OpDef:
        """This node's entry in the op table."""
        return OPS[self.op]

    @property
    def is_symbol(self) -> bool:
        """True for an Input or Param (a named leaf)."""
        return self.op in SYMBOL_OPS

    def named(self, name: str) -> Expr:
        """Return this expression labelled ``name``; printing and generated code keep the label."""
        name = validate_name(name, "expression")
        if self.op in SYMBOL_OPS:
            raise ValueError(f"{self.op} {self.attrs['name']!r} already has a name; cannot rename it to {name!r}")
        return make(self.op, self.args, dict(self.attrs), name=name)

    def unnamed(self) -> Expr:
        """This expression without a user label."""
        return self if self._label is None else make(self.op, self.args, dict(self.attrs), name=None)

    @property
    def name(self) -> str | None:
        """The symbol's name for an Input or Param, else the user label (``None`` when unlabelled)."""
        if self.op in SYMBOL_OPS:
            return self.attrs["name"]
        return self._label

    @property
    def label(self) -> str | None:
        """The same as :attr:`name` (the name printing uses for this node)."""
        return self.name

    # -- printing ---------------------------------------------------------------------------
    def __str__(self) -> str:
        return HOOKS.to_text(self)

    def __repr__(self) -> str:
        if self.op in SYMBOL_OPS:
            kind = "Input" if self.op == "input" else "Param"
            return f"{kind}({self.attrs['name']!r}, shape={format_shape(self.shape)}, dtype={self.dtype.name!r})"
        body = HOOKS.to_text(self)
        if "\n" in body:
            body = "\n  " + body.replace("\n", "\n  ") + "\n"
        return f"<Expr shape={format_shape(self.shape)} dtype={self.dtype.name}: {body}>"

    def _repr_latex_(self) -> str:
        return "$\\displaystyle " + HOOKS.latex(self) + "$"

    # -- operators (delegating to symdiff.functions) -------------------------------------------
    def __add__(self, other: Any) -> Expr:
        return HOOKS.functions.add(self, other)

    def __radd__(self, other: Any) -> Expr:
        return HOOKS.functions.add(other, self)

    def __sub__(self, other: Any) -> Expr:
        return HOOKS.functions.subtract(self, other)

    def __rsub__(self, other: Any) -> Expr:
        return HOOKS.functions.subtract(other, self)

    def __mul__(self, other: Any) -> Expr:
        return HOOKS.functions.multiply(self, other)

    def __rmul__(self, other: Any) -> Expr:
        return HOOKS.functions.multiply(other, self)

    def __truediv__(self, other: Any) -> Expr:
        return HOOKS.functions.divide(self, other)

    def __rtruediv__(self, other: Any) -> Expr:
        return HOOKS.functions.divide(other, self)

    def __pow__(self, other: Any) -> Expr:
        return HOOKS.functions.power(self, other)

    def __rpow__(self, other: Any) -> Expr:
        return HOOKS.functions.power(other, self)

    def __matmul__(self, other: Any) -> Expr:
        return HOOKS.functions.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Expr:
        return HOOKS.functions.matmul(other, self)

    def __neg__(self) -> Expr:
        return HOOKS.functions.negative(self)

    def __pos__(self) -> Expr:
        return self

    def __abs__(self) -> Expr:
        return HOOKS.functions.abs(self)

    def __gt__(self, other: Any) -> Expr:
        return HOOKS.functions.greater(self, other)

    def __ge__(self, other: Any) -> Expr:
        return HOOKS.functions.greater_equal(self, other)

    def __lt__(self, other: Any) -> Expr:
        return HOOKS.functions.less(self, other)

    def __le__(self, other: Any) -> Expr:
        return HOOKS.functions.less_equal(self, other)

    def __getitem__(self, index: Any) -> Expr:
        return HOOKS.functions.getitem(self, index)

    # -- NumPy-like methods -----------------------------------------------------------------
    @property
    def T(self) -> Expr:  # noqa: N802 - NumPy's name
        """Axes reversed (matrix transpose for 2-D)."""
        return HOOKS.functions.transpose(self)

    def transpose(self, *axes: Any) -> Expr:
        """Permute axes like ``ndarray.transpose``."""
        if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], int)):
            axes = axes[0]
        return HOOKS.functions.transpose(self, axes or None)

    def reshape(self, *shape: Any) -> Expr:
        """Reshape like ``ndarray.reshape`` (one ``-1`` allowed)."""
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = shape[0]
        return HOOKS.functions.reshape(self, shape)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Expr:
        """Sum over ``axis`` (all axes when ``None``)."""
        return HOOKS.functions.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Expr:
        """Mean over ``axis`` (all axes when ``None``)."""
        return HOOKS.functions.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Expr:
        """Maximum over ``axis`` (all axes when ``None``)."""
        return HOOKS.functions.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Expr:
        """Minimum over ``axis`` (all axes when ``None``)."""
        return HOOKS.functions.min(self, axis=axis, keepdims=keepdims)

    def var(self, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Expr:
        """Variance over ``axis`` (all axes when ``None``), divided by ``n - ddof``."""
        return HOOKS.functions.var(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def std(self, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Expr:
        """Standard deviation over ``axis`` (all axes when ``None``), from the variance divided by ``n - ddof``."""
        return HOOKS.functions.std(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def argmax(self, axis: int | None = None, keepdims: bool = False) -> Expr:
        """Index of the largest element along ``axis`` (of the flattened array when ``None``)."""
        return HOOKS.functions.argmax(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis: int | None = None, keepdims: bool = False) -> Expr:
        """Index of the smallest element along ``axis`` (of the flattened array when ``None``)."""
        return HOOKS.functions.argmin(self, axis=axis, keepdims=keepdims)

    def clip(self, lo: Any, hi: Any) -> Expr:
        """``self`` limited to ``[lo, hi]`` element-wise."""
        return HOOKS.functions.clip(self, lo, hi)

    def trace(self) -> Expr:
        """Sum of the diagonal (of the first two axes)."""
        return HOOKS.functions.trace(self)

    def astype(self, dtype: Any) -> Expr:
        """Cast to ``dtype``."""
        return HOOKS.functions.astype(self, dtype)

    def dot(self, other: Any) -> Expr:
        """``np.dot`` semantics."""
        return HOOKS.functions.dot(self, other)


class Hooks:
    """What :class:`Expr` calls in the layers above the graph; each fills its part when it is imported.

    Attributes:
        functions: :mod:`symdiff.functions`, whose NumPy-named builders Expr's operators and methods call.
        to_text: :func:`symdiff.printing.to_text`, for ``str`` and ``repr``.
        latex: :func:`symdiff.printing.latex`, for ``_repr_latex_`` (Jupyter).
    """

    functions: ModuleType
    to_text: Callable[[Expr], str]
    latex: Callable[[Expr], str]


HOOKS = Hooks()


def with_args(node: Expr, args: tuple[Expr, ...]) -> Expr:
    """``node`` with the arguments ``args`` (its label kept): the node itself when they are its own."""
    if all(a is b for a, b in zip(args, node.args)):
        return node
    return make(node.op, args, node.attrs, node._label)


def make(op: str, args: Iterable[Expr], attrs: Mapping[str, Any] | None = None, name: str | None = None) -> Expr:
    """Build (or find) the node ``op(*args; attrs)``; its shape and dtype come from the op's rule."""
    args = tuple(args)
    attrs = {k: _freeze(v) for k, v in (attrs or {}).items()}
    key = (op, args, tuple(sorted(attrs.items())), name)
    try:
        node = _TABLE.get(key)
    except TypeError as exc:  # an unhashable attribute
        raise TypeError(f"{op}: attributes must be hashable: {attrs!r}") from exc
    if node is not None:
        return node
    try:
        opdef = OPS[op]
    except KeyError:
        raise NotImplementedError(f"no op named {op!r} in the op table") from None
    shape, dtype = opdef.infer(args, attrs)  # outside the lock: it may build nodes itself
    node = object.__new__(Expr)
    node.op = op
    node.args = args
    node.attrs = attrs
    node._label = name
    node.shape = tuple(shape)
    node.dtype = np.dtype(dtype)
    node.weak = (
        (op == "const" and bool(attrs.get("weak")))
        or op == "dim"
        or (opdef.elementwise and op != "cast" and bool(args) and all(a.weak for a in args) and node.shape == ())
    )
    node._key = key
    with _TABLE_LOCK:  # another thread may have interned the same node meanwhile: that one wins
        return _TABLE.setdefault(key, node)


def topo_order(roots: Iterable[Expr], stop: Container[int] = ()) -> list[Expr]:
    """All nodes reachable from ``roots``, each after its arguments (iterative, no recursion limit).

    Nodes whose ``id`` is in ``stop`` are neither listed nor descended into.
    """
    order: list[Expr] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen or id(root) in stop:
            continue
        stack: list[tuple[Expr, int]] = [(root, 0)]
        seen.add(id(root))
        while stack:
            node, i = stack[-1]
            if i < len(node.args):
                stack[-1] = (node, i + 1)
                child = node.args[i]
                if id(child) not in seen and id(child) not in stop:
                    seen.add(id(child))
                    stack.append((child, 0))
            else:
                stack.pop()
                order.append(node)
    return order


def leaves(roots: Iterable[Expr]) -> list[Expr]:
    """The Input and Param nodes the roots depend on, in first-use order."""
    return [n for n in topo_order(roots) if n.op in SYMBOL_OPS]


def symbol_clash(used: Expr, other: Expr, joiner: str = "not this one") -> str:
    """How ``other`` differs from ``used``, a different symbol of the same name.

    ``Param 'o_W' (init 'glorot'), not this one (init None)``: only the attributes that differ are shown.
    """

    def show(key: str, n: Expr) -> str:
        value = n.attrs.get(key)
        if key == "shape":
            return f"shape {format_shape(value)}"
        return f"{key} {np.dtype(value).name if key == 'dtype' else repr(value)}"

    keys = [k for k in ("shape", "dtype", "init") if used.attrs.get(k) != other.attrs.get(k)]
    if used.op != other.op:
        keys = ["kind"]

    def fields(n: Expr) -> str:
        return ", ".join(n.op.capitalize() if k == "kind" else show(k, n) for k in keys)

    return f"{used.op.capitalize()} {used.attrs['name']!r} ({fields(used)}), {joiner} ({fields(other)})"


def check_unique_symbols(nodes: Iterable[Expr]) -> None:
    """Raise ``InputError`` if two different symbols among ``nodes`` share a name (they would print alike)."""
    seen: dict[str, Expr] = {}
    for n in nodes:
        if n.op in SYMBOL_OPS:
            other = seen.setdefault(n.attrs["name"], n)
            if other is not n:
                raise InputError(
                    f"two different symbols are named {n.attrs['name']!r}: {symbol_clash(other, n, 'and another')}; "
                    "give them different names"
                )


def check_targets_used(roots: Iterable[Expr], targets: Iterable[Expr], who: str) -> None:
    """Raise ``InputError`` if a symbol in ``targets`` is not the one the roots use under its name.

    ``sd.Param("o_W", shape=(2, 2))`` next to the ``o_W`` that ``sd.dense`` made (init ``"glorot"``) is
    another symbol: its gradient would be zeros, silently.
    """
    used = {n.attrs["name"]: n for n in leaves(roots)}
    for t in targets:
        other = used.get(t.attrs["name"]) if t.op in SYMBOL_OPS else None
        if other is not None and other is not t:
            raise InputError(
                f"{who}: the loss uses {symbol_clash(other, t)}; pass the loss's own symbol (see sd.params(loss))"
            )


def params(expr: Expr | Iterable[Expr]) -> list[Expr]:
    """The Params an expression (or several) depends on, in first-use order.

    >>> x, y, W = sd.Input("x", shape=(None, 3)), sd.Input("y", shape=(None,)), sd.Param("W", shape=(3,))
    >>> [v.name for v in sd.params(sd.sum((x @ W - y) ** 2))]
    ['W']
    """
    roots = [expr] if isinstance(expr, Expr) else list(expr)
    return [n for n in leaves(roots) if n.op == "param"]


def inputs(expr: Expr | Iterable[Expr]) -> list[Expr]:
    """The Inputs an expression (or several) depends on, in first-use order.

    >>> x, y, W = sd.Input("x", shape=(None, 3)), sd.Input("y", shape=(None,)), sd.Param("W", shape=(3,))
    >>> [v.name for v in sd.inputs(sd.sum((x @ W - y) ** 2))]
    ['x', 'y']
    """
    roots = [expr] if isinstance(expr, Expr) else list(expr)
    return [n for n in leaves(roots) if n.op == "input"]


def dtype_source(dtype: Any) -> str:
    """How generated code names a dtype: ``np.float32``, ``np.bool_`` (valid in NumPy 1 and 2)."""
    dt = np.dtype(dtype)
    return "np.bool_" if dt.kind == "b" else f"np.{dt.name}"


def as_dtype(dtype: Any) -> np.dtype:
    """A NumPy dtype from a name/type, rejecting kinds symdiff does not compute with."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}") from None
    if dt.kind not in "biuf":
        raise DTypeError(f"dtype {dt} is not supported (use a float, int or bool dtype)")
    if dt.kind == "f" and dt.itemsize > 8:  # generated code writes float64 literals; NumPy's ops differ per platform
        raise DTypeError(f"dtype {dt} (long double) is not supported; use float64, float32 or float16")
    return dt


def _symbol(op: str, name: str, shape: Any, dtype: Any) -> Expr:
    name = validate_name(name)
    return make(
        op, (), {"name": name, "shape": normalize_shape(shape, f"shape of {name!r}"), "dtype": as_dtype(dtype).str}
    )


def Input(name: str, shape: Any = (), dtype: Any = "float64") -> Expr:  # noqa: N802 - public class-like API
    """A data placeholder named ``name``; ``None`` in ``shape`` marks an axis of any length (the batch).

    >>> x = sd.Input("x", shape=(None, 784))
    >>> x
    Input('x', shape=(None, 784), dtype='float64')
    >>> (x @ sd.Param("W", shape=(784, 10))).shape
    (None, 10)
    """
    return _symbol("input", name, shape, dtype)


INITS = ("glorot", "he", "zeros", "ones", "normal")


def Param(name: str, shape: Any = (), dtype: Any = "float64", init: str | None = None) -> Expr:  # noqa: N802
    """A trainable parameter named ``name``; ``shape=()`` is a scalar parameter.

    ``init`` picks how :func:`symdiff.init_params` fills it: ``"glorot"`` (uniform, the default for
    weights with two or more axes), ``"he"`` (normal, for layers followed by ReLU), ``"zeros"`` (the
    default for biases and scalars), ``"ones"`` or ``"normal"`` (standard deviation 0.01).

    >>> W = sd.Param("W", shape=(784, 10), init="he")
    >>> W
    Param('W', shape=(784, 10), dtype='float64')
    >>> W.T.shape
    (10, 784)
    """
    if init is not None and init not in INITS:
        raise ValueError(f"param {name!r}: init {init!r} is not one of {', '.join(INITS)}")
    node = _symbol("param", name, shape, dtype)
    if init is not None:
        node = make("param", (), {**node.attrs, "init": init})
    if any(d is None for d in node.shape):
        raise ValueError(f"param {name!r}: shape {format_shape(node.shape)} must be fully known (no None)")
    if node.dtype.kind != "f":
        raise TypeError(f"param {name!r}: dtype {node.dtype} is not a float dtype")
    return node


def constant(value: Any, dtype: Any = None) -> Expr:
    """A constant node from a Python scalar or array-like.

    Python scalars are *weak* like in NumPy 2: ``float32_expr * 2.0`` stays float32.

    >>> c = sd.constant([1, 2, 3])
    >>> c.shape, c.dtype
    ((3,), dtype('int64'))
    >>> (sd.Input("x", shape=(3,), dtype="float32") * 2.0).dtype
    dtype('float32')
    """
    if isinstance(value, Expr):
        return value
    weak = isinstance(value, (bool, int, float)) and not isinstance(value, np.generic) and dtype is None
    if isinstance(value, int) and not isinstance(value, bool) and dtype is None and not -(2**63) <= value < 2**63:
        raise ConstantOverflowError(f"constant {value} does not fit in int64; write it as a float ({float(value):g})")
    arr = np.asarray(value, dtype=dtype)
    if arr.dtype.kind not in "biuf":
        raise DTypeError(f"constant {value!r} has unsupported dtype {arr.dtype}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        what = f"constant {value!r}" if arr.ndim == 0 else f"a constant array of shape {format_shape(arr.shape)}"
        raise DTypeError(
            f"{what} has dtype {arr.dtype} (long double), which is not supported; convert it to float64 first"
        )
    return make("const", (), {"value": ConstValue(arr), "weak": weak})


def const_value(e: Expr) -> np.ndarray:
    """The array of a constant node."""
    return e.attrs["value"].array


def dtype_operand(e: Expr) -> Any:
    """What ``np.result_type`` should see for ``e``: a Python scalar for weak constants."""
    if e.weak:
        return {"b": False, "i": 0, "u": 0, "f": 0.0}[e.dtype.kind]
    return e.dtype


def result_dtype(*args: Expr) -> np.dtype:
    """NumPy's promotion of the operands' dtypes (weak Python scalars included)."""
    return np.result_type(*(dtype_operand(a) for a in args))


def float_dtype(*args: Expr) -> np.dtype:
    """The dtype of NumPy's float functions (exp, log, ...): small ints and bools give float16/float32."""
    dt = result_dtype(*args)
    return dt if dt.kind == "f" else np.promote_types(dt, np.float16)


def true_divide_dtype(*args: Expr) -> np.dtype:
    """The dtype of ``a / b``: integers and bools divide to float64."""
    dt = result_dtype(*args)
    return dt if dt.kind == "f" else np.dtype("float64")
