"""Layers, losses and parameter initialization, written in graph ops: users of the compiler, not part of it.

Each loss is a scalar built from primitives whose gradients simplify to the textbook closed forms:
``softmax_cross_entropy`` -> ``(softmax(z) - onehot(y, k)) / n``, ``sigmoid_cross_entropy`` ->
``(sigmoid(z) - t) / n``, ``mse`` -> ``2 * (pred - target) / n``. Each loss records what it is (a
:class:`LossInfo`: its kind, predictions and targets) for :func:`loss_info`, which the training driver's metrics read.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import functions as F
from .errors import DTypeError, ShapeError
from .graph import Expr, Param, format_shape, leaves, topo_order
from .naming import validate_name
from .ops import OPS

__all__ = [
    "ACTIVATIONS",
    "LossInfo",
    "conv",
    "dense",
    "embedding",
    "init_params",
    "loss_info",
    "mse",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
]


class _Activations(Mapping[str, Callable[[Expr], Expr]]):
    """The ops ``dense(..., activation="<name>")`` may name: the op table entries marked ``activation``, by name.

    Read from the table on each use, so it holds every such entry whenever the entries were registered.
    """

    def _table(self) -> dict[str, Callable[[Expr], Expr]]:
        return {name: getattr(F, name) for name, op in OPS.items() if op.activation}

    def __getitem__(self, name: str) -> Callable[[Expr], Expr]:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"ACTIVATIONS({', '.join(self)})"


ACTIVATIONS: Mapping[str, Callable[[Expr], Expr]] = _Activations()
"""The activations a layer's ``activation=`` may name: name -> the public function (``sd.relu``, ``sd.tanh``, ...).

>>> import symdiff as sd
>>> "relu" in sd.nn.ACTIVATIONS, sd.nn.ACTIVATIONS["tanh"] is sd.tanh
(True, True)
"""


def dense(
    x: Expr,
    units: int,
    name: str,
    activation: str | Callable[[Expr], Expr] | None = None,
    dtype: Any = None,
) -> Expr:
    """A fully connected layer ``activation(x @ <name>_W + <name>_b)``, creating its two Params.

    The pre-activation is labelled ``<name>_z`` and the output ``<name>``, so printed gradients read
    layer by layer. Weights are initialized He-normal with ``activation="relu"`` and Glorot-uniform otherwise.
    ``activation`` is a name in :data:`ACTIVATIONS` or a function of an expression; the params have ``dtype``
    (default: ``x``'s float dtype, else float64).

    >>> import symdiff as sd
    >>> x = sd.Input("x", shape=(None, 3))
    >>> hidden = sd.dense(x, 4, name="hidden", activation="relu")
    >>> hidden.shape, [(p.label, p.shape) for p in sd.params(hidden)]
    ((None, 4), [('hidden_W', (3, 4)), ('hidden_b', (4,))])
    >>> print(sd.to_text(hidden))
    hidden_z = x @ hidden_W + hidden_b
    hidden = relu(hidden_z)
    """
    name = validate_name(name, "layer")  # a plain str before it is formatted into the params' names
    if x.ndim < 1 or x.shape[-1] is None:
        raise ShapeError(
            f"dense {name!r}: the input's last axis must have a known length, got shape {format_shape(x.shape)}"
        )
    if not isinstance(units, int) or units < 1:
        raise ValueError(f"dense {name!r}: units must be a positive int, got {units!r}")
    return _layer("dense", x, (x.shape[-1], units), name, activation, dtype, lambda w: x @ w)


def _fans(shape: tuple) -> tuple[int, int]:
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def init_params(params: Expr | Iterable[Expr], seed: int = 0) -> dict[str, np.ndarray]:
    """Initial values for ``params`` (a list of Params, or an expression: all of its Params), by name.

    Each Param's ``init`` decides (see :func:`symdiff.Param`); without one, weights (two or more axes)
    are Glorot-uniform and biases and scalars are zeros. The same seed gives the same arrays.

    >>> import symdiff as sd
    >>> x = sd.Input("x", shape=(None, 3))
    >>> params = sd.init_params(sd.dense(x, 4, name="hidden"), seed=0)
    >>> {name: value.shape for name, value in params.items()}
    {'hidden_W': (3, 4), 'hidden_b': (4,)}
    >>> sd.init_params([sd.Param("scale", shape=(2,), init="ones")])
    {'scale': array([1., 1.])}
    """
    nodes = [e for e in leaves([params]) if e.op == "param"] if isinstance(params, Expr) else list(params)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for p in nodes:
        if not isinstance(p, Expr) or p.op != "param":
            raise TypeError(f"init_params takes Params, got {p!r}")
        init = p.attrs.get("init") or ("glorot" if p.ndim >= 2 else "zeros")
        if init in ("glorot", "he") and p.ndim < 2:
            init = "zeros" if init == "glorot" else "normal"
        if init == "glorot":
            fan_in, fan_out = _fans(p.shape)
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-limit, limit, size=p.shape)
        elif init == "he":
            value = rng.normal(0.0, np.sqrt(2.0 / _fans(p.shape)[0]), size=p.shape)
        elif init == "normal":
            value = rng.normal(0.0, 0.01, size=p.shape)
        elif init == "ones":
            value = np.ones(p.shape)
        else:
            value = np.zeros(p.shape)
        out[p.label] = np.array(value, dtype=p.dtype, order="C")  # 0-d stays 0-d
    return out


# -- losses ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossInfo:
    """What a loss is: its ``kind``, and the graph nodes of its predictions and targets.

    ``kind`` is ``"labels"`` (softmax cross-entropy against integer class labels), ``"probs"`` (softmax
    cross-entropy against class probabilities), ``"binary"`` (sigmoid cross-entropy) or ``"values"`` (mse);
    ``pred`` is the logits of a cross-entropy or the predictions of mse.

    >>> import symdiff as sd
    >>> z, t = sd.Input("z", shape=(None,)), sd.Input("t", shape=(None,))
    >>> sd.nn.loss_info(sd.sigmoid_cross_entropy(z, t))  # doctest: +NORMALIZE_WHITESPACE
    LossInfo(kind='binary', pred=Input('z', shape=(None,), dtype='float64'),
             target=Input('t', shape=(None,), dtype='float64'))
    """

    kind: str
    pred: Expr
    target: Expr


_KINDS = ("labels", "probs", "binary", "values")  # loss_info's preference when a loss holds several losses

# The record of every loss built here, keyed by its (interned, immutable) node; the graph itself is unchanged.
_LOSSES: weakref.WeakKeyDictionary[Expr, LossInfo] = weakref.WeakKeyDictionary()


def _record(loss: Expr, kind: str, pred: Expr, target: Expr) -> Expr:
    _LOSSES[loss] = LossInfo(kind, pred, target)
    return loss


def loss_info(loss: Expr) -> LossInfo | None:
    """What ``loss`` is: the record of the nn loss it is or contains (a loss plus a penalty, a scaled loss).

    A loss without a record (built by hand, e.g. ``mean(-pick(log_softmax(z), y))`` or ``mean((p - t)**2)``)
    is recognised by the terms these losses are built from. Of several losses, the first kind in the order
    labels, probs, binary, values wins, then the first in the graph; ``None`` for a loss that is none of these.

    >>> import symdiff as sd
    >>> z, y = sd.Input("z", shape=(None, 3)), sd.Input("y", shape=(None,), dtype="int64")
    >>> info = sd.nn.loss_info(sd.mean(-sd.pick(sd.log_softmax(z), y)))  # by hand: recognised
    >>> info.kind, info.pred is z, info.target is y
    ('labels', True, True)
    """
    info = _LOSSES.get(loss)
    if info is not None:
        return info
    recorded: dict[str, LossInfo] = {}
    recognised: dict[str, LossInfo] = {}
    for n in topo_order([loss]):
        info = _LOSSES.get(n)
        if info is not None:
            recorded.setdefault(info.kind, info)
        elif (info := _recognise(n)) is not None:
            recognised.setdefault(info.kind, info)
    found = recorded or recognised
    return next((found[k] for k in _KINDS if k in found), None)


def _recognise(n: Expr) -> LossInfo | None:
    """The loss whose characteristic term ``n`` is, for losses built by hand out of the same primitives."""
    if n.op == "pick" and n.args[0].op == "log_softmax":
        return LossInfo("labels", n.args[0].args[0], n.args[1])
    if n.op == "mul" and any(a.op == "log_softmax" for a in n.args):
        z = next(a for a in n.args if a.op == "log_softmax").args[0]
        return LossInfo("probs", z, next(a for a in n.args if a.op != "log_softmax"))
    if n.op == "sub" and n.args[0].op == "softplus" and n.args[1].op == "mul":
        z = n.args[0].args[0]
        others = [a for a in n.args[1].args if a is not z]
        return LossInfo("binary", z, others[0]) if others else None
    if n.op == "pow" and n.args[0].op == "sub" and n.args[1].op == "const":
        return LossInfo("values", n.args[0].args[0], n.args[0].args[1])
    return None


def mse(pred: Any, target: Any) -> Expr:
    """Mean squared error over all elements: ``mean((pred - target)**2)``; ``target`` has ``pred``'s shape.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> pred, target = sd.Input("pred", shape=(None,)), sd.Input("target", shape=(None,))
    >>> loss = sd.mse(pred, target)
    >>> float(sd.compile(loss)(pred=np.array([1.0, 2.0]), target=np.array([0.0, 2.0])))
    0.5
    >>> print(sd.to_text(sd.grad(loss, [pred])[0]))
    n = pred.shape[0]
    dpred = 2 * (pred - target) / n
    """
    pred, target = F.as_expr(pred), F.as_expr(target)
    _check_target("mse", pred, target)
    return _record(F.mean(F.square(F.subtract(pred, target))), "values", pred, target)


def _same_shape(a: tuple, b: tuple) -> bool:
    """Equal ranks and lengths; an open length (``None``) matches any length (its value is known at run time)."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _target_fix(target: Expr, shape: tuple) -> str:
    """What to do about a target that lacks ``shape``: reshape the data, or declare the Input with that shape."""
    name = target.label if target.op == "input" else "y"
    if shape == (*target.shape, 1):
        data = f"{name}.reshape(-1, 1)"
    elif target.shape == (*shape, 1):
        data = f"{name}.reshape(-1)"
    else:
        data = f"an array of shape {format_shape(shape)}"
    if target.op != "input":
        return f"give the target that shape ({data})"
    dtype = "" if target.dtype == np.float64 else f", dtype={str(target.dtype)!r}"
    return f"declare sd.Input({name!r}, shape={format_shape(shape)}{dtype}) and pass {data}"


def _check_target(loss: str, pred: Expr, target: Expr) -> None:
    """Refuse a target whose shape is not the prediction's: broadcasting would silently pair every row with every
    target (a ``(None, 1)`` prediction against ``(None,)`` targets gives an n x n loss)."""
    if not _same_shape(pred.shape, target.shape):
        raise ShapeError(
            f"{loss}: shapes {format_shape(pred.shape)} and {format_shape(target.shape)} differ (prediction, target); "
            f"{_target_fix(target, pred.shape)}"
        )


def sigmoid_cross_entropy(logits: Any, targets: Any) -> Expr:
    """Mean over all elements of the binary cross-entropy of ``sigmoid(logits)`` against ``targets`` in [0, 1].

    ``targets`` has the logits' shape.

    NOTE: written as ``softplus(z) - z * t`` (= ``-t log s - (1 - t) log(1 - s)``), which never takes the
    log of a rounded-to-zero probability, so large logits give finite losses and gradients.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> z, t = sd.Input("z", shape=(None,)), sd.Input("t", shape=(None,))
    >>> loss = sd.sigmoid_cross_entropy(z, t)
    >>> round(float(sd.compile(loss)(z=np.array([0.0, 100.0]), t=np.array([1.0, 0.0]))), 4)  # (log 2 + 100) / 2
    50.3466
    >>> print(sd.to_text(sd.grad(loss, [z])[0]))
    n = z.shape[0]
    dz = (sigmoid(z) - t) / n
    """
    z, t = F.as_expr(logits), F.as_expr(targets)
    _check_target("sigmoid_cross_entropy", z, t)
    return _record(F.mean(F.softplus(z) - z * t), "binary", z, t)


def softmax_cross_entropy(logits: Any, labels: Any) -> Expr:
    """Mean over the batch of ``-log softmax(logits)[i, labels[i]]``.

    ``labels`` holds integer class indices (shape ``logits.shape[:-1]``) or, with a float dtype and the
    logits' shape, class probabilities (``-sum(labels * log_softmax(logits), axis=-1)`` per row).

    NOTE: uses ``log_softmax`` (max-shifted) rather than ``log(softmax(z))``, which underflows to
    ``log(0)`` for large logits.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> z, y = sd.Input("z", shape=(None, 3)), sd.Input("y", shape=(None,), dtype="int64")
    >>> loss = sd.softmax_cross_entropy(z, y)
    >>> round(float(sd.compile(loss)(z=np.zeros((2, 3)), y=np.array([0, 2]))), 4)  # log 3: equal logits
    1.0986
    >>> print(sd.to_text(sd.grad(loss, [z])[0]))
    n = z.shape[0]
    dz = (softmax(z) - onehot(y, 3)) / n
    """
    z, y = F.as_expr(logits), F.as_expr(labels)
    rows = z.shape[:-1]
    if y.dtype.kind in "iu":
        if not _same_shape(y.shape, rows):
            raise ShapeError(
                f"softmax_cross_entropy: labels of shape {format_shape(y.shape)} do not match the rows "
                f"of logits of shape {format_shape(z.shape)}; integer labels have shape {format_shape(rows)} "
                f"({_target_fix(y, rows)})"
            )
        return _record(F.mean(-F.pick(F.log_softmax(z, axis=-1), y)), "labels", z, y)
    if z.ndim >= 1 and _same_shape(y.shape, rows):
        hint = f"sd.Input({y.label!r}, shape={format_shape(rows)}, dtype='int64')" if y.op == "input" else "'int64'"
        raise ShapeError(
            f"softmax_cross_entropy: float targets of shape {format_shape(y.shape)} look like class labels for "
            f"logits of shape {format_shape(z.shape)}; labels need an integer dtype: {hint}"
        )
    if not _same_shape(y.shape, z.shape):
        raise ShapeError(
            f"softmax_cross_entropy: targets of shape {format_shape(y.shape)} do not match "
            f"logits of shape {format_shape(z.shape)}; pass integer labels of shape {format_shape(rows)} "
            f"or class probabilities of shape {format_shape(z.shape)}"
        )
    return _record(F.mean(-F.sum(y * F.log_softmax(z, axis=-1), axis=-1)), "probs", z, y)


# -- convolution -------------------------------------------------------------------------------
def conv(
    x: Expr,
    filters: int,
    kernel: int | tuple[int, int],
    name: str,
    stride: int | tuple[int, int] = 1,
    padding: Any = "same",
    activation: str | Callable[[Expr], Expr] | None = None,
    dtype: Any = None,
) -> Expr:
    """A 2-D convolution layer ``activation(conv2d(x, <name>_W, stride, padding) + <name>_b)`` on images ``x``
    ``(N, H, W, C_in)``, creating its two Params: filters ``<name>_W`` ``(kh, kw, C_in, filters)`` and a bias
    ``<name>_b`` ``(filters,)``.

    ``kernel`` is ``kh`` (square) or ``(kh, kw)``; ``stride`` and ``padding`` are :func:`symdiff.conv2d`'s. As in
    :func:`dense`, the pre-activation is labelled ``<name>_z`` and the output ``<name>``, and the filters are
    initialized He-normal with ``activation="relu"`` and Glorot-uniform otherwise (fans ``kh * kw * C_in`` and
    ``kh * kw * filters``).

    >>> import symdiff as sd
    >>> images = sd.Input("images", shape=(None, 28, 28, 1))
    >>> out = sd.conv(images, 8, 3, name="conv1", stride=2, padding="valid", activation="relu")
    >>> out.shape, [(p.label, p.shape) for p in sd.params(out)]
    ((None, 13, 13, 8), [('conv1_W', (3, 3, 1, 8)), ('conv1_b', (8,))])
    """
    name = validate_name(name, "layer")
    if x.ndim != 4 or x.shape[-1] is None:
        raise ShapeError(
            f"conv {name!r}: the input must be images (N, H, W, C_in) with a known number of channels, "
            f"got shape {format_shape(x.shape)}"
        )
    if not isinstance(filters, int) or filters < 1:
        raise ValueError(f"conv {name!r}: filters must be a positive int, got {filters!r}")
    kh, kw = F.spatial_pair(f"conv {name!r}", "kernel", kernel)
    shape = (kh, kw, x.shape[-1], filters)
    return _layer("conv", x, shape, name, activation, dtype, lambda w: F.conv2d(x, w, stride=stride, padding=padding))


def _layer(
    kind: str,
    x: Expr,
    shape: tuple,
    name: str,
    activation: str | Callable[[Expr], Expr] | None,
    dtype: Any,
    apply: Callable[[Expr], Expr],
) -> Expr:
    """``activation(apply(<name>_W) + <name>_b)`` with weights of ``shape`` (the bias: its last axis), labelled
    ``<name>_z`` (the pre-activation) and ``<name>`` (the output); ``kind`` names the layer in errors."""
    dt = dtype or (x.dtype if x.dtype.kind == "f" else "float64")
    act = ACTIVATIONS.get(activation, None) if isinstance(activation, str) else activation
    if isinstance(activation, str) and act is None:
        raise ValueError(f"{kind} {name!r}: unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    W = Param(f"{name}_W", shape=shape, dtype=dt, init="he" if activation == "relu" else "glorot")
    b = Param(f"{name}_b", shape=(shape[-1],), dtype=dt, init="zeros")
    z = apply(W) + b
    if act is None:
        return z.named(name)
    return act(z.named(f"{name}_z")).named(name)


def __dir__() -> list[str]:
    """``dir()`` lists the public names only (not ``np``, ``annotations`` or other imports)."""
    return sorted(__all__)


# -- embeddings -------------------------------------------------------------------------------
def embedding(ids: Any, vocab: int, dim: int, name: str, dtype: Any = "float64") -> Expr:
    """An embedding layer ``take(<name>_W, ids)``: row ``ids[...]`` of a ``(vocab, dim)`` table, creating the Param
    ``<name>_W``; the output (shape ``ids.shape + (dim,)``) is labelled ``<name>``.

    The lookup is the dense layer ``onehot(ids, vocab) @ <name>_W`` without the one-hot matrix, so the table is
    initialized Glorot-uniform like a dense layer's weights; its gradient is a scatter-add of the output's
    gradient at the ids.

    >>> import symdiff as sd
    >>> ids = sd.Input("ids", shape=(None, 5), dtype="int64")
    >>> words = sd.embedding(ids, vocab=100, dim=8, name="emb")
    >>> words.shape, [(p.label, p.shape) for p in sd.params(words)]
    ((None, 5, 8), [('emb_W', (100, 8))])
    """
    name = validate_name(name, "layer")
    ids = F.as_expr(ids)
    for what, v in (("vocab", vocab), ("dim", dim)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"embedding {name!r}: {what} must be a positive int, got {v!r}")
    if ids.dtype.kind not in "iu":
        raise DTypeError(f"embedding {name!r}: ids must have an integer dtype, got {ids.dtype}")
    W = Param(f"{name}_W", shape=(int(vocab), int(dim)), dtype=dtype, init="glorot")
    return F.take(W, ids).named(name)
