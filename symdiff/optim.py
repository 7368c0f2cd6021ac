"""Optimizers: update rules that generate their own in-place NumPy code.

Each optimizer names its per-parameter state slots (``v`` for momentum, ``m`` and ``v`` for Adam, ...),
creates that state, prints its rule as a formula, and emits the NumPy statements that apply it to one
parameter array in place, so the whole training step (forward, backward, update) is one generated
function. The learning rate is a constant or a schedule: a callable of the step number ``t`` (1, 2, ...).
A constant rate must be > 0 (a constant 0 would train nothing, so it is taken for a mistake); a schedule may
return 0 on some steps (a warm-up from 0, a decay to 0), but never a negative, nan or infinite rate.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

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
    """
    return _decay_schedule("step_decay", lr, "drop", drop, every, lambda t, every: (t - 1) // every)


def exponential_decay(lr: float, rate: float = 0.96, every: int = 1000) -> Schedule:
    """``lr * rate ** ((t - 1) / every)``: smooth exponential decay.

    ``lr`` is a finite number > 0, ``rate`` a number in (0, 1], ``every`` an int >= 1; anything else is an
    :class:`~symdiff.InputError` naming the argument, raised here rather than at the first step.
    """
    return _decay_schedule("exponential_decay", lr, "rate", rate, every, lambda t, every: (t - 1) / every)


def _num(x: float) -> str:
    """A hyperparameter as an exact literal for generated code (``repr``: it reads back as the same float)."""
    return repr(float(x))


def _complement(x: float) -> str:
    """``1 - x`` for generated code: ``(1 - 0.9)``, which Python folds to exactly ``1 - x`` when compiling."""
    return f"(1 - {_num(x)})"


def _short(x: float) -> str:
    """A hyperparameter as a readable literal for formulas: the fewest digits within a few ulps of ``x``.

    ``1 - 0.9`` prints as ``0.1``, but ``1 - 1e-13`` stays ``0.9999999999999`` rather than becoming ``1``.
    """
    x = float(x)
    for digits in range(1, 17):
        text = format(x, f".{digits}g")
        if abs(float(text) - x) <= 4 * math.ulp(x):
            return text
    return repr(x)


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


@dataclass
class UpdateCode:
    """Statements that update one parameter: ``pre`` once per step, ``lines`` per parameter."""

    pre: list[str]
    lines: list[str]


_LR_RULE = "a finite number > 0 or a schedule t -> rate (a constant 0 trains nothing; a schedule may return 0)"


class Optimizer:
    """Base class: a learning rate (constant or schedule) and per-parameter state slots.

    ``lr`` is a finite number > 0, or a schedule ``t -> rate`` whose rates are finite and >= 0: a constant
    rate of 0 trains nothing and is refused as a likely mistake, while a schedule may warm up from or decay
    to 0. Float hyperparameters (``lr``, momentum, ``rho``, betas, ``eps``) take Python or NumPy real numbers
    (not bools) and are stored as Python floats; a bad one is an :class:`~symdiff.InputError` naming it.
    """

    slots: tuple[str, ...] = ()
    # True when the rule uses the gradient only as lr * g: a training step may then scale the backward
    # pass by lr (fold it into the seed) and call code() with names["lr"] = None.
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

    def formula(self) -> str:
        """The update rule as a formula (``p`` a parameter, ``g`` its gradient, ``lr`` the learning rate)."""
        raise NotImplementedError

    def code(self, p: str, g: str, slot: Mapping[str, str], g_owned: bool, names: Mapping[str, str]) -> UpdateCode:
        """NumPy statements updating array ``p`` in place from gradient ``g``; ``slot[s]`` names the state arrays.

        ``slot["tmp"]`` names a free variable for a scratch array (see the ``_scratch`` kernel).
        ``g_owned``: the gradient array is a temporary of the step and may be overwritten. ``names`` maps
        ``"lr"``, ``"t"``, ``"c1"``, ``"c2"`` to the variables holding the learning rate, the step number and
        two scratch scalars.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        lr = getattr(self.lr, "__qualname__", None) if callable(self.lr) else self.lr
        extra = "".join(f", {k}={v!r}" for k, v in self.hyper().items())
        return f"{type(self).__name__}(lr={lr}{extra})"

    def hyper(self) -> dict[str, Any]:
        """Hyperparameters besides the learning rate."""
        return {}


def _scaled_descent(p: str, g: str, g_owned: bool, lr: str) -> list[str]:
    """``p -= lr * g`` without a full-size temporary when the gradient may be overwritten."""
    if g_owned:
        return [f"{g} *= {lr}", f"{p} -= {g}"]
    return [f"{p} -= {lr} * {g}"]


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with classical or Nesterov momentum.

    plain:     p <- p - lr * g
    momentum:  v <- mu * v - lr * g ;  p <- p + v
    Nesterov:  v <- mu * v - lr * g ;  p <- p + mu * v - lr * g
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

    def formula(self) -> str:
        mu = _short(self.momentum)
        if not self.momentum:
            return "p = p - lr * g"
        if self.nesterov:
            return f"v = {mu} * v - lr * g\np = p + {mu} * v - lr * g"
        return f"v = {mu} * v - lr * g\np = p + v"

    def code(self, p: str, g: str, slot: Mapping[str, str], g_owned: bool, names: Mapping[str, str]) -> UpdateCode:
        lr = names["lr"]
        v, mu = slot.get("v"), _num(self.momentum)
        if lr is None:  # the step folded lr into the gradient: g holds lr * dloss/dp
            if not self.momentum:
                return UpdateCode([], [f"{p} -= {g}"])
            if self.nesterov:  # p += mu * v - g, with mu * v formed in the gradient's (or a kept) buffer
                lines = [f"{v} *= {mu}", f"{v} -= {g}", f"{p} -= {g}"]
                buf = g if g_owned else slot["tmp"]
                if not g_owned:
                    lines.append(f'{buf} = _scratch("{p}", {v})')
                return UpdateCode([], [*lines, f"np.multiply({v}, {mu}, out={buf})", f"{p} += {buf}"])
            return UpdateCode([], [f"{v} *= {mu}", f"{v} -= {g}", f"{p} += {v}"])
        if not self.momentum:
            return UpdateCode([], _scaled_descent(p, g, g_owned, lr))
        lines = [f"{v} *= {mu}"]
        if g_owned:
            lines += [f"{g} *= {lr}", f"{v} -= {g}"]
            step = f"{p} += {mu} * {v} - {g}" if self.nesterov else f"{p} += {v}"
        else:
            lines += [f"{v} -= {lr} * {g}"]
            step = f"{p} += {mu} * {v} - {lr} * {g}" if self.nesterov else f"{p} += {v}"
        return UpdateCode([], [*lines, step])


class Adagrad(Optimizer):
    """Adagrad: per-coordinate rates shrinking with the accumulated squared gradient.

    G <- G + g**2 ;  p <- p - lr * g / (sqrt(G) + eps)
    """

    slots = ("G",)

    def __init__(self, lr: LearningRate = 0.01, eps: float = 1e-10) -> None:
        super().__init__(lr)
        self.eps = _eps("Adagrad", eps)

    def hyper(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def formula(self) -> str:
        return f"G = G + g**2\np = p - lr * g / (sqrt(G) + {_short(self.eps)})"

    def code(self, p: str, g: str, slot: Mapping[str, str], g_owned: bool, names: Mapping[str, str]) -> UpdateCode:
        lr = names["lr"]
        G, eps = slot["G"], _num(self.eps)
        if g_owned:  # a scratch array kept by the module (tmp) and the gradient's own buffer: no allocation
            tmp = slot["tmp"]
            return UpdateCode(
                [],
                [
                    f'{tmp} = _scratch("{p}", {g})',
                    f"np.multiply({g}, {g}, out={tmp})",
                    f"{G} += {tmp}",
                    f"np.sqrt({G}, out={tmp})",
                    f"{tmp} += {eps}",
                    f"{g} /= {tmp}",
                    f"{g} *= {lr}",
                    f"{p} -= {g}",
                ],
            )
        return UpdateCode([], [f"{G} += {g} * {g}", f"{p} -= {lr} * {g} / (np.sqrt({G}) + {eps})"])


class RMSprop(Optimizer):
    """RMSprop: divide by a running root-mean-square of recent gradients.

    s <- rho * s + (1 - rho) * g**2 ;  p <- p - lr * g / (sqrt(s) + eps)
    """

    slots = ("s",)

    def __init__(self, lr: LearningRate = 0.001, rho: float = 0.9, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.rho, self.eps = _decay("RMSprop", "rho", rho), _eps("RMSprop", eps)

    def hyper(self) -> dict[str, Any]:
        return {"rho": self.rho, "eps": self.eps}

    def formula(self) -> str:
        rho, rest, eps = _short(self.rho), _short(1 - self.rho), _short(self.eps)
        return f"s = {rho} * s + {rest} * g**2\np = p - lr * g / (sqrt(s) + {eps})"

    def code(self, p: str, g: str, slot: Mapping[str, str], g_owned: bool, names: Mapping[str, str]) -> UpdateCode:
        lr = names["lr"]
        s, rho, eps = slot["s"], _num(self.rho), _num(self.eps)
        if g_owned:  # a scratch array kept by the module (tmp) and the gradient's own buffer: no allocation
            tmp = slot["tmp"]
            return UpdateCode(
                [],
                [
                    f'{tmp} = _scratch("{p}", {g})',
                    f"np.multiply({g}, {g}, out={tmp})",
                    f"{tmp} *= {_complement(self.rho)}",
                    f"{s} *= {rho}",
                    f"{s} += {tmp}",
                    f"np.sqrt({s}, out={tmp})",
                    f"{tmp} += {eps}",
                    f"{g} /= {tmp}",
                    f"{g} *= {lr}",
                    f"{p} -= {g}",
                ],
            )
        return UpdateCode(
            [],
            [
                f"{s} *= {rho}",
                f"{s} += {_complement(self.rho)} * ({g} * {g})",
                f"{p} -= {lr} * {g} / (np.sqrt({s}) + {eps})",
            ],
        )


class Adam(Optimizer):
    """Adam: momentum on the gradient and on its square, with bias correction.

    m <- b1 * m + (1 - b1) * g ;  v <- b2 * v + (1 - b2) * g**2
    p <- p - lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)
    """

    slots = ("m", "v")

    def __init__(self, lr: LearningRate = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta1, self.beta2 = _decay("Adam", "beta1", beta1), _decay("Adam", "beta2", beta2)
        self.eps = _eps("Adam", eps)

    def hyper(self) -> dict[str, Any]:
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def formula(self) -> str:
        b1, b2 = _short(self.beta1), _short(self.beta2)
        return (
            f"m = {b1} * m + {_short(1 - self.beta1)} * g\n"
            f"v = {b2} * v + {_short(1 - self.beta2)} * g**2\n"
            f"p = p - lr * (m / (1 - {b1}**t)) / (sqrt(v / (1 - {b2}**t)) + {_short(self.eps)})"
        )

    def code(self, p: str, g: str, slot: Mapping[str, str], g_owned: bool, names: Mapping[str, str]) -> UpdateCode:
        m, v = slot["m"], slot["v"]
        lr, t, c1, c2 = names["lr"], names["t"], names["c1"], names["c2"]
        b1, b2, eps = _num(self.beta1), _num(self.beta2), _num(self.eps)
        pre = [f"{c1} = 1 / (1 - {b1}**{t})", f"{c2} = 1 / (1 - {b2}**{t})"]
        if g_owned:
            # No allocation: the gradient's buffer holds (1-b1) g, then (1-b2) g**2, then the denominator.
            k = f"{_complement(self.beta2)} / {_complement(self.beta1)}**2"
            return UpdateCode(
                pre,
                [
                    f"{m} *= {b1}",
                    f"{v} *= {b2}",
                    f"{g} *= {_complement(self.beta1)}",
                    f"{m} += {g}",
                    f"{g} *= {g}",
                    f"{g} *= {k}",
                    f"{v} += {g}",
                    f"np.multiply({v}, {c2}, out={g})",
                    f"np.sqrt({g}, out={g})",
                    f"{g} += {eps}",
                    f"np.divide({m}, {g}, out={g})",
                    f"{g} *= {lr} * {c1}",
                    f"{p} -= {g}",
                ],
            )
        return UpdateCode(
            pre,
            [
                f"{m} *= {b1}",
                f"{m} += {_complement(self.beta1)} * {g}",
                f"{v} *= {b2}",
                f"{v} += {_complement(self.beta2)} * ({g} * {g})",
                f"{p} -= {lr} * ({c1} * {m}) / (np.sqrt({c2} * {v}) + {eps})",
            ],
        )


_BY_NAME = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}


def get(name: str, **kwargs: Any) -> Optimizer:
    """An optimizer by name: ``sgd``, ``momentum``, ``nesterov``, ``adagrad``, ``rmsprop`` or ``adam``."""
    key = name.lower()
    if key == "momentum":
        return SGD(momentum=kwargs.pop("momentum", 0.9), **kwargs)
    if key == "nesterov":
        return SGD(momentum=kwargs.pop("momentum", 0.9), nesterov=True, **kwargs)
    if key not in _BY_NAME:
        raise ValueError(f"unknown optimizer {name!r}; choose from sgd, momentum, nesterov, adagrad, rmsprop, adam")
    return _BY_NAME[key](**kwargs)


def __dir__() -> list[str]:
    """``dir()`` lists the public names only (not ``np``, ``annotations`` or other imports)."""
    return sorted(__all__)
