"""Optimizers: update rules written as expressions.

Each optimizer names its per-parameter state slots (``v`` for momentum, ``m`` and ``v`` for Adam, ...),
creates that state, and returns its rule as symdiff expressions of the param, its gradient, the slots, the
learning rate and the step number. The training step generates their NumPy code with the same generator as
the forward and backward passes, writing the new values into the param and state arrays in place, and
:meth:`Optimizer.formula` prints them as gradients are printed.

The learning rate is a constant or a schedule: a callable of the step number ``t`` (1, 2, ...).
A constant rate must be > 0 (a constant 0 would train nothing, so it is taken for a mistake); a schedule may
return 0 on some steps (a warm-up from 0, a decay to 0), but never a negative, nan or infinite rate.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import functions as F
from .errors import InputError
from .graph import Expr, Input, constant, topo_order, with_args
from .printing import to_text

Schedule = Callable[[int], float]
LearningRate = float | Schedule

__all__ = [
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adam",
    "Optimizer",
    "step_decay",
    "exponential_decay",
    "get",
    "NAMES",
]


def _every(owner: str, every: Any) -> int:
    """A schedule's period: a Python or NumPy int >= 1 (not a bool); refused with an InputError otherwise."""
    if isinstance(every, (bool, np.bool_)) or not isinstance(every, (int, np.integer)) or every < 1:
        raise InputError(f"{owner}: every must be an int >= 1 (steps), got {reprlib.repr(every)}")
    return int(every)


def _decay_schedule(
    kind: str, lr: Any, factor_name: str, factor: Any, every: Any, steps: Callable[[int, int], float]
) -> Schedule:
    """``lr * factor ** steps(t, every)``, its arguments checked here rather than at the first step."""
    rate0 = _real(kind, "lr", lr, "a finite number > 0", lambda x: 0 < x < math.inf)
    base = _real(kind, factor_name, factor, "a number in (0, 1]", lambda x: 0 < x <= 1)
    period = _every(kind, every)

    def schedule(t: int) -> float:
        return rate0 * base ** steps(t, period)

    # as given, not as converted: an optimizer's repr (which shows this) is stored in checkpoints
    schedule.__qualname__ = f"{kind}(lr={lr}, {factor_name}={factor}, every={every})"
    return schedule


def step_decay(lr: float, drop: float = 0.5, every: int = 1000) -> Schedule:
    """``lr * drop ** floor((t - 1) / every)``: the rate is multiplied by ``drop`` every ``every`` steps.

    ``lr`` is a finite number > 0, ``drop`` a number in (0, 1], ``every`` an int >= 1; anything else is an
    :class:`~symdiff.InputError` naming the argument, raised here rather than at the first step.

    >>> import symdiff as sd
    >>> schedule = sd.optim.step_decay(0.1, drop=0.5, every=2)
    >>> [schedule(t) for t in range(1, 7)]
    [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    >>> sd.optim.SGD(lr=schedule)
    SGD(lr=step_decay(lr=0.1, drop=0.5, every=2))
    """
    return _decay_schedule("step_decay", lr, "drop", drop, every, lambda t, every: (t - 1) // every)


def exponential_decay(lr: float, rate: float = 0.96, every: int = 1000) -> Schedule:
    """``lr * rate ** ((t - 1) / every)``: smooth exponential decay.

    ``lr`` is a finite number > 0, ``rate`` a number in (0, 1], ``every`` an int >= 1; anything else is an
    :class:`~symdiff.InputError` naming the argument, raised here rather than at the first step.

    >>> import symdiff as sd
    >>> schedule = sd.optim.exponential_decay(0.1, rate=0.5, every=2)
    >>> [round(schedule(t), 4) for t in range(1, 6)]
    [0.1, 0.0707, 0.05, 0.0354, 0.025]
    """
    return _decay_schedule("exponential_decay", lr, "rate", rate, every, lambda t, every: (t - 1) / every)


def _as_float(value: Any) -> float:
    """``value`` as a Python float when it is a real number (Python or NumPy, not a bool) or an array holding one
    (0-d or one element, not masked); nan for anything else. An int too large for a float becomes +-inf.
    """
    if isinstance(value, np.ndarray):
        if value.size != 1 or np.ma.is_masked(value) or value.dtype.kind not in "iuf":
            return math.nan
        value = value.item()  # a Python int or float: a masked array is not masked here, so a plain value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # 10**400: a number, but no float holds it
        return math.inf if value > 0 else -math.inf


def _real(owner: str, name: str, value: Any, rule: str, ok: Callable[[float], bool]) -> float:
    """Hyperparameter ``name`` as a Python float; refused unless a real number (Python or NumPy, not a bool, or a
    0-d/one-element array of one) that passes ``ok``. The refusal names ``name``, ``value`` and the ``rule``.
    """
    x = _as_float(value)
    if not ok(x):  # nan (also a refused type) fails every rule
        raise InputError(f"{owner}: {name} must be {rule}, got {reprlib.repr(value)}")
    return x


def _eps(owner: str, eps: Any) -> float:
    """``eps`` as a float, refused unless finite and not negative (it is written into the generated code)."""
    return _real(owner, "eps", eps, "a finite number >= 0", lambda x: 0 <= x < math.inf)


def _decay(owner: str, name: str, value: Any) -> float:
    """A decay factor (momentum, rho, beta1, beta2) as a float in [0, 1)."""
    return _real(owner, name, value, "a number in [0, 1)", lambda x: 0 <= x < 1)


_LR_RULE = "a finite number > 0 or a schedule t -> rate (a constant 0 trains nothing; a schedule may return 0)"


class Optimizer:
    """Base class: a learning rate (constant or schedule), per-parameter state slots and an update rule.

    A subclass names its ``slots`` and returns its rule from :meth:`update` as expressions; the training step
    generates their NumPy code, written in place into the param and state arrays.

    ``lr`` is a finite number > 0, or a schedule ``t -> rate`` whose rates are finite and >= 0: a constant
    rate of 0 trains nothing and is refused as a likely mistake, while a schedule may warm up from or decay
    to 0. Float hyperparameters (``lr``, momentum, ``rho``, betas, ``eps``) take Python or NumPy real numbers
    (not bools) and are stored as Python floats; a bad one is an :class:`~symdiff.InputError` naming it.

    A rule of one's own, e.g. sign descent (the training step generates its code like the built-in ones'):

    >>> import symdiff as sd
    >>> class SignSGD(sd.optim.Optimizer):
    ...     def update(self, p, g, state, lr, t):
    ...         return {"p": p - lr * sd.sign(g)}
    >>> print(SignSGD(lr=0.1).formula())
    p = p - lr * sign(g)
    """

    slots: tuple[str, ...] = ()
    # True when the rule uses the gradient only as lr * g: a training step may then scale the backward
    # pass by lr (fold it into the seed) and build the update with lr = 1.
    folds_lr: bool = False

    def __init__(self, lr: LearningRate) -> None:
        if not callable(lr):
            lr = _real(type(self).__name__, "lr", lr, _LR_RULE, lambda x: 0 < x < math.inf)
        self.lr = lr

    def lr_at(self, t: int) -> float:
        """The learning rate of step ``t`` (1-based), checked before any update uses it.

        A schedule must return a real number (or an unmasked array of one) that is finite and not negative;
        anything else is an :class:`~symdiff.InputError` naming the step and the value.
        """
        if not callable(self.lr):
            return self.lr
        value = self.lr(t)
        lr = _as_float(value)
        if not 0.0 <= lr < math.inf:  # nan (a refused type, np.ma.masked) fails too
            raise InputError(
                f"{type(self).__name__}: the learning-rate schedule returned {reprlib.repr(value)} at step {t}; "
                "it must return a finite number >= 0"
            )
        return lr

    def init_state(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Zero-initialized slots, keyed ``<slot>_<param name>``."""
        return {f"{s}_{name}": np.zeros_like(p) for name, p in params.items() for s in self.slots}

    def update(self, p: Expr, g: Expr, state: Mapping[str, Expr], lr: Expr, t: Expr) -> dict[str, Expr]:
        """The rule: the new value of each changed state slot (by name) and of the param (``"p"``), in the order
        they apply, from the param ``p``, its gradient ``g``, the slots' values ``state``, the learning rate
        ``lr`` and the step number ``t`` (1, 2, ...). A new value may use the new values before it."""
        raise NotImplementedError

    def checked_update(self, p: Expr, g: Expr, state: Mapping[str, Expr], lr: Expr, t: Expr) -> dict[str, Expr]:
        """:meth:`update`'s new values, checked: ``"p"`` and slot names only, each an expression shaped as ``p``."""
        news = self.update(p, g, state, lr, t)
        who = type(self).__name__
        if not isinstance(news, Mapping) or "p" not in news:
            raise TypeError(f"{who}.update must return a dict with the new param under 'p', got {news!r}")
        for k, e in news.items():
            if k != "p" and k not in self.slots:
                raise ValueError(f"{who}.update returned {k!r}, which is neither 'p' nor a slot of {self.slots}")
            if not isinstance(e, Expr) or e.shape != p.shape:
                raise TypeError(f"{who}.update: the new {k!r} must be an expression shaped {p.shape}, got {e!r}")
        return dict(news)

    def formula(self) -> str:
        """The update rule as formulas, one assignment per line in the order they apply (``p`` a parameter,
        ``g`` its gradient, ``lr`` the learning rate, ``t`` the step number), printed as gradients are.

        >>> import symdiff as sd
        >>> print(sd.optim.SGD(momentum=0.9).formula())
        v = 0.9 * v - lr * g
        p = p + v
        """
        p, g, lr, t = (Input(n) for n in ("p", "g", "lr", "t"))
        news = self.checked_update(p, g, {s: Input(s) for s in self.slots}, lr, t)
        named: dict[int, Expr] = {}  # a new value read by a later line: the name it was assigned to
        lines = []
        for k, e in news.items():
            *shared, last = to_text(_replace(e, named)).split("\n")  # shared subexpressions get lines first
            lines += [*shared, f"{k} = {last}"]
            named[id(e)] = Input(k)
        return "\n".join(lines)

    def __repr__(self) -> str:
        lr = getattr(self.lr, "__qualname__", None) if callable(self.lr) else self.lr
        extra = "".join(f", {k}={v!r}" for k, v in self.hyper().items())
        return f"{type(self).__name__}(lr={lr}{extra})"

    def hyper(self) -> dict[str, Any]:
        """Hyperparameters besides the learning rate."""
        return {}


def _replace(expr: Expr, swap: Mapping[int, Expr]) -> Expr:
    """``expr`` with the nodes whose ids ``swap`` holds replaced by their values."""
    new: dict[int, Expr] = {}
    for n in topo_order([expr]):
        new[id(n)] = swap[id(n)] if id(n) in swap else with_args(n, tuple(new[id(a)] for a in n.args))
    return new[id(expr)]


def _complement(x: float) -> Expr:
    """``1 - x`` as an expression, so that formulas show ``1 - 0.9`` and generated code its exact value."""
    return 1 - constant(x)


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with classical or Nesterov momentum.

    plain:     p <- p - lr * g
    momentum:  v <- mu * v - lr * g ;  p <- p + v
    Nesterov:  v <- mu * v - lr * g ;  p <- p - lr * g + mu * v

    >>> import symdiff as sd
    >>> opt = sd.optim.SGD(lr=0.1, momentum=0.9, nesterov=True)
    >>> opt, opt.slots
    (SGD(lr=0.1, momentum=0.9, nesterov=True), ('v',))
    >>> print(opt.formula())
    v = 0.9 * v - lr * g
    p = p - lr * g + 0.9 * v
    """

    folds_lr = True

    def __init__(self, lr: LearningRate = 0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        momentum = _decay("SGD", "momentum", momentum)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise InputError(f"SGD: nesterov must be True or False, got {nesterov!r}")
        if nesterov and momentum == 0:
            raise InputError("SGD: nesterov=True needs a momentum > 0")
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        self.slots = ("v",) if momentum else ()

    def hyper(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "nesterov": self.nesterov} if self.momentum else {}

    def update(self, p: Expr, g: Expr, state: Mapping[str, Expr], lr: Expr, t: Expr) -> dict[str, Expr]:
        if not self.momentum:
            return {"p": p - lr * g}
        v = self.momentum * state["v"] - lr * g
        return {"v": v, "p": p - lr * g + self.momentum * v if self.nesterov else p + v}


class Adagrad(Optimizer):
    """Adagrad: per-coordinate rates shrinking with the accumulated squared gradient.

    G <- G + g * g ;  p <- p - lr * g / (sqrt(G) + eps)

    >>> import symdiff as sd
    >>> print(sd.optim.Adagrad(lr=0.1).formula())
    G = G + g * g
    p = p - lr * g / (sqrt(G) + 1e-10)
    """

    slots = ("G",)

    def __init__(self, lr: LearningRate = 0.01, eps: float = 1e-10) -> None:
        super().__init__(lr)
        self.eps = _eps("Adagrad", eps)

    def hyper(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def update(self, p: Expr, g: Expr, state: Mapping[str, Expr], lr: Expr, t: Expr) -> dict[str, Expr]:
        G = state["G"] + g * g  # noqa: N806 - the rule's name
        return {"G": G, "p": p - lr * g / (F.sqrt(G) + self.eps)}


class RMSprop(Optimizer):
    """RMSprop: divide by a running root-mean-square of recent gradients.

    s <- rho * s + (1 - rho) * g * g ;  p <- p - lr * g / (sqrt(s) + eps)

    >>> import symdiff as sd
    >>> print(sd.optim.RMSprop(rho=0.9).formula())
    s = 0.9 * s + (1 - 0.9) * g * g
    p = p - lr * g / (sqrt(s) + 1e-08)
    """

    slots = ("s",)

    def __init__(self, lr: LearningRate = 0.001, rho: float = 0.9, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.rho, self.eps = _decay("RMSprop", "rho", rho), _eps("RMSprop", eps)

    def hyper(self) -> dict[str, Any]:
        return {"rho": self.rho, "eps": self.eps}

    def update(self, p: Expr, g: Expr, state: Mapping[str, Expr], lr: Expr, t: Expr) -> dict[str, Expr]:
        s = self.rho * state["s"] + _complement(self.rho) * g * g
        return {"s": s, "p": p - lr * g / (F.sqrt(s) + self.eps)}


class Adam(Optimizer):
    """Adam: momentum on the gradient and on its square, with bias correction.

    m <- g + b1 * (m - g) ;  v <- b2 * v + (1 - b2) * g * g
    p <- p - lr / (1 - b1**t) * (m / (sqrt(v / (1 - b2**t)) + eps))

    >>> import symdiff as sd
    >>> print(sd.optim.Adam(lr=0.001).formula())
    m = g + 0.9 * (m - g)
    v = 0.999 * v + (1 - 0.999) * (g * g)
    p = p - lr / (1 - 0.9**t) * (m / (sqrt(v / (1 - 0.999**t)) + 1e-08))
    """

    slots = ("m", "v")

    def __init__(self, lr: LearningRate = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta1, self.beta2 = _decay("Adam", "beta1", beta1), _decay("Adam", "beta2", beta2)
        self.eps = _eps("Adam", eps)

    def hyper(self) -> dict[str, Any]:
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def update(self, p: Expr, g: Expr, state: Mapping[str, Expr], lr: Expr, t: Expr) -> dict[str, Expr]:
        b1, b2 = self.beta1, self.beta2
        m = g + b1 * (state["m"] - g)  # b1 * m + (1 - b1) * g, reading m once: updated in place, g kept for v
        v = b2 * state["v"] + _complement(b2) * (g * g)
        return {"m": m, "v": v, "p": p - lr / (1 - b1**t) * (m / (F.sqrt(v / (1 - b2**t)) + self.eps))}


# name -> the optimizer with its defaults: what get() and the command line's --optimizer accept
_BY_NAME: dict[str, Callable[..., Optimizer]] = {
    "sgd": SGD,
    "momentum": lambda momentum=0.9, **kw: SGD(momentum=momentum, **kw),
    "nesterov": lambda momentum=0.9, **kw: SGD(momentum=momentum, nesterov=True, **kw),
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}
NAMES = tuple(_BY_NAME)
"""The optimizer names :func:`get` (and the command line's ``--optimizer``) accepts, in this order.

>>> import symdiff as sd
>>> sd.optim.NAMES
('sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam')
"""


def get(name: str, **kwargs: Any) -> Optimizer:
    """An optimizer by name (one of :data:`NAMES`): ``sgd``, ``momentum``, ``nesterov``, ``adagrad``, ``rmsprop``
    or ``adam``, built with ``kwargs``; ``momentum`` and ``nesterov`` are :class:`SGD` with ``momentum=0.9`` (classical,
    Nesterov's) unless ``kwargs`` give another.

    >>> import symdiff as sd
    >>> sd.optim.get("nesterov", lr=0.1)
    SGD(lr=0.1, momentum=0.9, nesterov=True)
    """
    key = name.lower()
    if key not in _BY_NAME:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(NAMES)}")
    return _BY_NAME[key](**kwargs)


def __dir__() -> list[str]:
    """``dir()`` lists the public names only (not ``np``, ``annotations`` or other imports)."""
    return sorted(__all__)
