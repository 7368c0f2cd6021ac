"""Names: what a symbol may be called, the gradient's name ``d<name>``, fresh local names and LaTeX names.

A leaf module (standard library only), so that the graph, the op table and the printers share one rule each.
"""

from __future__ import annotations

import keyword
import re
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

# Names the generated code uses for itself; a symbol may not take them.
RESERVED_NAMES = frozenset({"np", "numpy"})


def validate_name(name: Any, what: str = "symbol") -> str:
    """``name`` as a plain ``str`` if it is a usable identifier, else raise ``ValueError`` naming it.

    A ``str`` subclass (``np.str_``, or one overriding ``__format__``/``__str__``) is copied to a plain
    ``str`` first, so that what is checked is exactly what generated code contains. Callers use the
    returned name, never the object they were given.
    """
    if isinstance(name, str):
        name = str.__str__(name)  # str's own method: the characters, whatever the subclass overrides
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
        raise ValueError(f"{what} name {name!r} is not a Python identifier")
    if keyword.iskeyword(name):
        raise ValueError(f"{what} name {name!r} is a Python keyword; choose another name")
    if keyword.issoftkeyword(name) or name.startswith("_") or name in RESERVED_NAMES:
        raise ValueError(
            f"{what} name {name!r} is reserved: names may not start with '_', be a Python soft keyword "
            f"({', '.join(keyword.softkwlist)}) or be {' or '.join(sorted(RESERVED_NAMES))}"
        )
    return name


def grad_name(label: str, order: int = 1) -> str:
    """The name of the ``order``-th derivative with respect to ``label``: ``W`` -> ``dW`` (``d2W``, ``d3W`` ...)."""
    return f"d{order if order > 1 else ''}{label}"


def grad_order(name: str, label: str) -> int:
    """The ``order`` for which ``grad_name(label, order) == name``, else 0 (``grad_order("d2x", "x") == 2``)."""
    m = re.fullmatch(r"d(\d*)" + re.escape(label), name)
    return int(m.group(1) or 1) if m else 0


def mixed_grad_name(runs: Sequence[tuple[str, int]]) -> str:
    """The name of a derivative taken with respect to ``runs`` of targets in order: ``[("xs", 1), ("a", 1)]`` ->
    ``dxs_da``; one run is :func:`grad_name` (``d2x``)."""
    return "_".join(grad_name(label, order) for label, order in runs)


def is_grad_name(name: str, labels: Collection[str]) -> bool:
    """Whether ``name`` is a name :func:`mixed_grad_name` gives for some runs of ``labels`` (``dW``, ``d2x``,
    ``dxs_da``)."""
    if not labels:
        return False
    one = r"d\d*(?:" + "|".join(re.escape(s) for s in sorted(labels, key=len, reverse=True)) + ")"
    return re.fullmatch(f"{one}(?:_{one})*", name) is not None


class NameAllocator:
    """Hands out unique, valid, deterministic variable names."""

    def __init__(self, taken: Sequence[str] = ()) -> None:
        self.taken = set(taken)
        self.counters: Counter[str] = Counter()

    def take(self, base: str, numbered: bool = False) -> str:
        """``base`` if free (and not ``numbered``), else ``base1``, ``base2`` ... (``base_2`` if it ends in a digit)."""
        if not numbered and base not in self.taken:
            self.taken.add(base)
            return base
        sep = "_" if base[-1].isdigit() else ""
        while True:
            self.counters[base] += 1
            cand = f"{base}{sep}{self.counters[base]}"
            if cand not in self.taken:
                self.taken.add(cand)
                return cand


_GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
}


def latex_name(name: str) -> str:
    """LaTeX for a symbol name: ``W1`` -> ``W_{1}``, ``alpha`` -> ``\\alpha``, ``probs`` -> ``\\mathrm{probs}``,
    ``log_softmax1`` -> ``\\mathrm{log\\_softmax}_{1}``."""

    def base(s: str) -> str:
        if s in _GREEK:
            return "\\" + s
        return s if len(s) == 1 else f"\\mathrm{{{s}}}"

    m = re.fullmatch(r"([A-Za-z]+?)_?(\d+)", name) or re.fullmatch(r"([a-z]+(?:_[a-z]+)+)(\d+)", name)
    if m:  # a name and its number; a name of several words joined by _ is one upright name (log_softmax1)
        return f"{base(m.group(1).replace('_', chr(92) + '_'))}_{{{m.group(2)}}}"
    if "_" in name:
        head, _, tail = name.partition("_")
        return f"{base(head)}_{{{base(tail) if tail not in _GREEK else chr(92) + tail}}}"
    return base(name)
