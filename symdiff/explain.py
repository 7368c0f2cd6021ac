"""The chain rule shown step by step: ``sd.explain(loss, wrt)`` derives a gradient the way a textbook does.

The derivation is recorded by the reverse sweep that ``sd.grad`` runs (:func:`symdiff.autodiff.backward` with a
recorder), and each step's formula is the op table's own VJP rule applied to placeholders named after the step's
nodes (``dh1_z`` for the adjoint of ``h1_z``, ``x`` for the argument ``x``) and printed by symdiff's printer: the
rule's text cannot drift from the rule. A loss that is one of :mod:`symdiff.nn`'s losses is explained by its
closed form (the step says that it is fused), as the simplifier rewrites its gradient.
"""

from __future__ import annotations

import html
import re
import reprlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import functions as F
from . import nn
from .autodiff import backward, check_loss, check_targets, gradients, unbroadcast
from .errors import ArgumentTypeError, InputError
from .graph import Expr, Input, Shape, format_shape, make, topo_order
from .naming import NameAllocator, grad_name, latex_name
from .printing import layout
from .simplify import simplify

__all__ = ["Contribution", "Derivation", "Step", "explain"]

LOSS_NAME = "L"  # the name of an unlabelled loss (the derivation reads dL/d...)


@dataclass(frozen=True)
class Contribution:
    """One path's share of a node's adjoint: the VJP rule of one consumer, applied to this node's slot."""

    source: str  # the consumer node's name
    rule: str  # the rule's label: the op as the table names it, and which operand ("matmul, right operand")
    formula: str  # the rule's result in the steps' names, simplified ("x.T @ dh1_z")
    latex: str
    reduction: str | None = None  # the sum undoing broadcasting, when the rule's result had to be reduced


@dataclass(frozen=True)
class Step:
    """One step of a derivation: the adjoint of one node, from the contributions of the nodes that use it."""

    name: str  # the node's name (its label, symbol name, or the printer's name for it)
    grad: str  # the adjoint's name, d<name>
    rule: str  # the rule applied ("relu"; "sum of 2 paths" where paths meet)
    formula: str  # the local formula: the adjoint in terms of the previous steps' adjoints
    latex: str
    expr: Expr  # the adjoint, simplified (for the last step: the very expression sd.grad returns)
    shape: Shape
    contributions: tuple[Contribution, ...] = ()
    value: np.ndarray | None = None  # the adjoint's value on the arrays given to explain(..., numeric=...)
    note: str | None = None  # what else there is to say (an nn loss's closed form, shown unfused)

    @property
    def paths(self) -> tuple[str, ...]:
        """The consumers whose contributions were summed here (empty unless paths meet)."""
        return tuple(c.source for c in self.contributions) if len(self.contributions) > 1 else ()

    @property
    def reduction(self) -> str | None:
        """The sums undoing broadcasting in this step, if any."""
        done = [c.reduction for c in self.contributions if c.reduction]
        return "; ".join(done) or None


@dataclass
class Derivation:
    """The steps from the loss down to the target, printable as text, LaTeX (``align``) and HTML.

    >>> x, W = sd.Input("x", shape=(3,)), sd.Param("W", shape=(3, 2))
    >>> derivation = sd.explain(sd.sum(sd.tanh(x @ W)), W)
    >>> len(derivation), derivation[-1].shape
    (4, (3, 2))
    >>> print(derivation.result)
    dW = outer(x, 1 - tanh(x @ W)**2)
    """

    loss: str
    wrt: str
    steps: list[Step] = field(default_factory=list)
    check: float | None = None  # numeric mode: the relative error of the result against central differences
    # what the names symdiff gave (not the user's labels) stand for: (name, text, LaTeX), in forward order
    names: list[tuple[str, str, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> Step:
        return self.steps[i]

    @property
    def result(self) -> Expr:
        """The gradient: the last step's expression (the one ``sd.grad(loss, wrt)`` returns)."""
        return self.steps[-1].expr

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:  # the REPL shows the derivation, as a notebook does
        return self.text()

    def _rows(self, fold: bool) -> Iterator[tuple[int, Step | str]]:
        """``(number, step)`` for each step shown, and ``(number, what was folded)`` for each folded run."""
        folded = _repeats(self.steps) if fold else {}
        k = 0
        while k < len(self.steps):
            if k in folded:
                period, end = folded[k]
                names = [self.steps[j].name for j in range(k, end, period)]
                rules = "; ".join(s.rule for s in self.steps[k - period : k])
                yield (
                    k + 1,
                    (
                        f"steps {k + 1} to {end}: {len(names)} more layers, {names[0]} ... {names[-1]}, each the "
                        f"same {period} steps as steps {k - period + 1} to {k} ({rules})"
                    ),
                )
                k = end
            else:
                k += 1
                yield k, self.steps[k - 1]

    def text(self, *, fold: bool = True) -> str:
        """Numbered lines, one per step (and the paths summed, the broadcasting undone, the values). With ``fold``,
        a run of three or more repeated layers (the same rules and formulas but for the numbers in the names) shows
        its first and last layers and one line for those between."""
        lines = [f"d{self.loss}/d{self.wrt}, by the chain rule from {self.loss} down to {self.wrt}:"]
        if where := self._where(fold):
            lines.append("    where " + "; ".join(f"{name} = {text}" for name, text, _ in where))
        for k, s in self._rows(fold):
            if isinstance(s, str):
                lines.append(f"    ... {s}")
                continue
            lines.append(f"{k:>2}. {s.rule}: {s.grad} = {s.formula}    shape {format_shape(s.shape)}")
            for c in s.contributions if len(s.contributions) > 1 else ():
                lines.append(f"      path via {c.source} ({c.rule}): {c.formula}")
            if s.reduction:
                lines.append(f"      {s.reduction}")
            if s.note:
                lines.append(f"      {s.note}")
            if s.value is not None:
                lines.append(f"      value: {_numbers(s.value)}")
        if self.check is not None:
            lines.append(f"central differences agree with d{self.wrt} to a relative error of {self.check:.1e}")
        return "\n".join(lines)

    def _where(self, fold: bool) -> list[tuple[str, str, str]]:
        """The definitions of the names that the steps shown read (a folded run's names are not shown)."""
        if not fold:
            return self.names
        shown = " ".join(f"{s.name}: {s.formula}" for _, s in self._rows(fold) if isinstance(s, Step))
        kept = []
        for name, text, tex in reversed(self.names):  # a definition may read an earlier one
            if re.search(rf"\b{re.escape(name)}\b", shown):
                kept.append((name, text, tex))
                shown += " " + text
        return kept[::-1]

    def latex_lines(self) -> list[tuple[str, str, str]]:
        """Each step as ``(left side, right side, rule)`` in LaTeX: ``∂L/∂x``, the formula, the rule as text."""
        partial = {latex_name(s.grad): _partial(self.loss, s.name) for s in self.steps}
        # an adjoint's placeholder (dh1) reads as the partial derivative; \mathrm{dh}_{1} is not part of a longer one
        found = re.compile("|".join(re.escape(k) + r"(?!_\{)" for k in sorted(partial, key=len, reverse=True)))
        return [(_partial(self.loss, s.name), found.sub(lambda m: partial[m[0]], s.latex), _text(s.rule)) for s in self]

    def latex(self, *, fold: bool = True) -> str:
        """The derivation as a LaTeX ``align`` environment, the rule of each step as a ``\\text{}`` annotation;
        ``fold`` as for :meth:`text` (a folded run is one ``\\vdots`` row)."""
        lines = self.latex_lines()
        rows = [
            f"&\\vdots && {_text(s)}" if isinstance(s, str) else "{} &= {} && {}".format(*lines[k - 1])
            for k, s in self._rows(fold)
        ]
        rows[:0] = [f"&\\text{{where }} {defs}" for defs in self._latex_where(fold)]
        return "\\begin{align}\n" + " \\\\\n".join(rows) + "\n\\end{align}"

    def plot(self, path: str | None = None, *, fold: bool = True) -> Any:
        """The derivation drawn as the board shows it (matplotlib's mathtext, an optional extra): the ``where``
        line, then one row per step, its formula in ∂L/∂· notation beside the rule. Saved to ``path`` (PNG, SVG,
        PDF by its suffix) when given. Returns the figure."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("Derivation.plot needs matplotlib: pip install 'symdiff[plot]'") from None
        from matplotlib.mathtext import MathTextParser

        parser = MathTextParser("path")

        def drawn(tex: str, text: str) -> str:  # what mathtext cannot draw (a matrix literal) shows as text
            try:
                parser.parse(tex)
            except ValueError:
                return text
            return tex

        lines = self.latex_lines()
        where = [f"{name} = {text}" for name, text, _ in self._where(fold)]
        rows = [drawn(f"$\\text{{where }} {x}$", "where " + "; ".join(where)) for x in self._latex_where(fold)]
        rules = [""] * len(rows)
        for k, s in self._rows(fold):
            if isinstance(s, str):
                rows.append("$\\vdots$")
            else:
                rows.append(drawn("${} = {}$".format(*lines[k - 1][:2]), f"{s.grad} = {s.formula}"))
            rules.append(s if isinstance(s, str) else f"{k}. {s.rule}")
        if path is None:  # interactive: a pyplot figure the notebook or window shows
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(12, 0.55 * len(rows) + 0.5))
        else:  # a file: a standalone figure, leaving pyplot's backend and state alone
            fig = Figure(figsize=(12, 0.55 * len(rows) + 0.5))
        fig.suptitle(f"$\\partial {latex_name(self.loss)} / \\partial {latex_name(self.wrt)}$ by the chain rule")
        for i, (row, rule) in enumerate(zip(rows, rules)):
            y = 1 - (i + 1) / (len(rows) + 1)
            fig.text(0.01, y, row, fontsize=13, va="center")
            fig.text(0.62, y, rule, fontsize=9, va="center", wrap=True)
        if path is not None:
            fig.savefig(path, dpi=100, bbox_inches="tight")
        return fig

    def _latex_where(self, fold: bool) -> list[str]:
        """The ``where`` line's definitions in LaTeX, as one string (none when no name needs one)."""
        where = self._where(fold)
        return [",\\quad ".join(f"{latex_name(name)} = {tex}" for name, _, tex in where)] if where else []

    def _repr_latex_(self) -> str:
        return self.latex()

    def _repr_html_(self) -> str:
        numeric = any(s.value is not None for s in self.steps)

        def row(k: int, s: Step) -> str:
            cells = [str(k), html.escape(s.rule), f"<code>{html.escape(f'{s.grad} = {s.formula}')}</code>"]
            cells.append(html.escape(format_shape(s.shape)))
            if numeric:
                cells.append(html.escape(_numbers(s.value)) if s.value is not None else "")
            return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

        head = "".join(f"<th>{h}</th>" for h in ["#", "rule", "formula", "shape"] + ["value"] * numeric)
        rows = "".join(row(k, s) for k, s in enumerate(self.steps, 1))
        summary = html.escape(f"d{self.loss}/d{self.wrt}: {len(self.steps)} steps")
        where = "; ".join(f"{name} = {text}" for name, text, _ in self.names)
        where = f"<p>where <code>{html.escape(where)}</code></p>" if where else ""
        return f"<details open><summary>{summary}</summary>{where}<table><tr>{head}</tr>{rows}</table></details>"


def _repeats(steps: list[Step], max_period: int = 8) -> dict[int, tuple[int, int]]:
    """The folded runs of repeated layers: ``{first folded step: (period, end)}``. A run of ``k >= 3`` blocks of
    ``period`` steps alike (rules and formulas equal but for the numbers in names) keeps its first and last
    blocks; the blocks between fold into one line."""
    shape = [(s.rule, re.sub(r"\d+", "#", s.formula), len(s.contributions)) for s in steps]
    folded, i = {}, 0
    while i < len(steps):
        for period in range(1, max_period + 1):
            block = shape[i : i + period]
            k = 1
            while len(block) == period and shape[i + k * period : i + (k + 1) * period] == block:
                k += 1
            if k >= 3:
                folded[i + period] = (period, i + (k - 1) * period)
                i += k * period
                break
        else:
            i += 1
    return folded


def _numbers(value: np.ndarray, count: int = 4) -> str:
    """A few of ``value``'s numbers and its shape: ``[0.1, -0.2, 0.3, 0.05, ...] of shape (5, 3)``."""
    flat = np.ravel(value)
    shown = ", ".join(f"{v:.4g}" for v in flat[:count]) + (", ..." if flat.size > count else "")
    return f"[{shown}] of shape {format_shape(np.shape(value))}"


def _partial(loss: str, name: str) -> str:
    return f"\\frac{{\\partial {latex_name(loss)}}}{{\\partial {latex_name(name)}}}"


def _text(rule: str) -> str:
    return "\\text{" + re.sub(r"([_&%$#{}])", r"\\\1", rule) + "}"


# -- the nn losses' closed forms: kind -> (the loss built on placeholders, what the fused step says) ------------
_FUSED: dict[str, tuple[Callable[[Expr, Expr], Expr], str]] = {
    "labels": (nn.softmax_cross_entropy, "softmax cross-entropy (fused: the closed form of softmax then -log-pick)"),
    "probs": (nn.softmax_cross_entropy, "softmax cross-entropy (fused: the closed form of softmax then -sum(t*log))"),
    "binary": (nn.sigmoid_cross_entropy, "sigmoid cross-entropy (fused: the closed form of sigmoid then -log)"),
    "values": (nn.mse, "mean squared error (fused: the closed form of the mean of squares)"),
}


def _operand(node: Expr, i: int) -> str:
    """The rule's label: the op as the table names it, and which operand when several are differentiable."""
    if sum(a.dtype.kind == "f" for a in node.args) == 1:
        return node.op
    which = ("left", "right")[i] if len(node.args) == 2 else f"number {i + 1}"
    return f"{node.op}, {which} operand"


class _Recorder:
    """Collects the sweep's contributions and adjoints (:class:`symdiff.autodiff.Recorder`) into steps."""

    def __init__(self, names: dict[int, str], loss: Expr, fused: _Fused | None):
        self.names, self.loss, self.fused = names, loss, fused
        self.taken = _taken(loss, names)
        self.skip = fused.head if fused is not None else frozenset()
        # each contribution, and its consumer's adjoint placeholder when it passes that on unchanged (None if not)
        self.pending: dict[int, list[tuple[Contribution, Expr | None]]] = {}
        self.seeds: dict[int, Expr] = {}  # the placeholder each node's adjoint appears as in later steps' formulas
        self.steps: list[Step] = []
        self.named: set[int] = set()  # the nodes whose names the formulas read (the steps', the placeholders')

    def contribution(self, node: Expr, i: int, local: Expr, reduced: Expr) -> None:
        if id(node) in self.skip or (self.fused is not None and node is self.fused.loss):
            return
        self.pending.setdefault(id(node.args[i]), []).append(self._contribution(node, i, local, reduced))

    def adjoint(self, node: Expr, g: Expr) -> None:
        if id(node) in self.skip:
            return
        pending = self.pending.pop(id(node), [])
        parts = [c for c, _ in pending]
        if self.fused is not None and node is self.fused.pred:
            parts.insert(0, self.fused.contribution(self.names, self.seeds[id(self.fused.loss)], self.taken))
        passed = pending[0][1] if len(parts) == 1 and pending else None
        name = self.names[id(node)]
        if node is self.loss:  # dL/dL = 1
            self.seeds[id(node)] = F.constant(np.ones((), dtype=node.dtype))
        elif passed is not None:  # an adjoint passed on unchanged (by add, a cast) keeps its name: dW1 = x.T @ dh1_z
            self.seeds[id(node)] = passed
        else:
            self.seeds[id(node)] = Input(self._grad(node), node.shape, node.dtype)
        self.named.add(id(node))
        if node is self.loss:  # the seed, 1 (as the textbook writes it, whatever the loss's dtype)
            rule, formula, tex = "the loss", "1", "1"
        elif len(parts) == 1:
            rule, formula, tex = parts[0].rule, parts[0].formula, parts[0].latex
        else:
            rule = f"sum of {len(parts)} paths"
            formula = " + ".join(c.formula for c in parts)
            tex = " + ".join(c.latex for c in parts)
        self.steps.append(Step(name, self._grad(node), rule, formula, tex, g, node.shape, tuple(parts)))

    def _grad(self, node: Expr) -> str:
        return grad_name(self.names[id(node)])

    def _placeholder(self, node: Expr) -> Expr:
        if node.is_symbol or node.op == "const":
            return node
        return Input(self.names[id(node)], node.shape, node.dtype)

    def _contribution(self, node: Expr, i: int, local: Expr, reduced: Expr) -> tuple[Contribution, Expr | None]:
        """The VJP rule of ``node``'s argument ``i`` applied to placeholders named after the steps."""
        arg = node.args[i]
        rule = _operand(node, i)
        g = self.seeds[id(node)]
        args = [self._placeholder(a) for a in node.args]
        out = make(node.op, args, dict(node.attrs), name=self.names[id(node)])
        formula = unbroadcast(node.opdef.arg_grad(i, g, out), args[i])  # the same rule, the same reduction
        if formula.dtype != arg.dtype:
            formula = F.astype(formula, arg.dtype)
        formula = simplify(formula)
        held = {id(p): id(a) for p, a in zip(args, node.args) if p is not a}
        self.named.update(held[id(n)] for n in topo_order([formula]) if id(n) in held)  # the names it reads
        reduction = _reduction(reduced, local, arg, self.names[id(arg)])
        text, tex = _fmt(formula, "text", self.taken), _fmt(formula, "latex", self.taken)
        return Contribution(self.names[id(node)], rule, text, tex, reduction), g if formula is g else None


def _reduction(reduced: Expr, local: Expr, arg: Expr, name: str) -> str | None:
    """How broadcasting was undone between the rule's ``local`` result and ``reduced`` (the sums
    :func:`~symdiff.autodiff.unbroadcast` made), or ``None`` when it was not."""
    sums = []
    r = reduced.args[0] if reduced.op == "cast" else reduced
    while r is not local and r.op == "sum":
        sums.append(r)
        r = r.args[0]
    if not sums or r is not local:
        return None
    lead = local.ndim - arg.ndim
    # the first sum removes the leading axes (or, with none, sums the length-1 ones); a second sums the length-1 ones
    axes = [*sums[-1].attrs["axis"], *(a + lead for s in sums[-2::-1] for a in s.attrs["axis"])]
    what = "axis" if len(axes) == 1 else "axes"
    return (
        f"sum over {what} {', '.join(map(str, axes))} undoes the broadcast of {name} {format_shape(arg.shape)} "
        f"to {format_shape(local.shape)}"
    )


def _fmt(expr: Expr, dialect: str, taken: Sequence[str] = ()) -> str:
    """``expr`` as one formula in ``dialect``; the lines of shared pieces follow as ``where`` clauses, named apart
    from ``taken`` (the derivation's names) and from the placeholders the formula reads."""
    root = expr if expr.is_symbol or expr.name is None else expr.unnamed()
    reads = {n.name for n in topo_order([root]) if n.name}  # placeholders and labelled nodes keep their names
    lay = layout([root], [None], dialect, reserved=[name for name in taken if name not in reads])
    if not lay.lines or lay.lines[-1][0] is not root:
        return lay.fmt(root).text
    *aux, (_, _, text) = lay.lines
    defs = [(name, t) for n, name, t in aux if n.name is None]  # not the placeholders' own nodes (labelled)
    if not defs:
        return text
    sep = "\\quad" if dialect == "latex" else ";"
    where = ", ".join(f"{latex_name(n) if dialect == 'latex' else n} = {t}" for n, t in defs)
    return f"{text}{sep} where {where}" if dialect == "text" else f"{text}{sep}\\text{{where }}{where}"


def _taken(loss: Expr, names: dict[int, str]) -> list[str]:
    """The names a formula's shared pieces may not take: the derivation's nodes and adjoints. The run-time lengths
    (``n = x.shape[0]``) are the exception: a formula's ``n`` is that same length."""
    nodes = [names[id(n)] for n in topo_order([loss]) if id(n) in names and n.op != "dim"]
    return [*nodes, *map(grad_name, names.values())]


def _definitions(
    loss: Expr, names: dict[int, str], named: set[int], fused: _Fused | None, taken: Sequence[str]
) -> list[tuple[str, str, str]]:
    """What the names symdiff made up (``mm1``, ``L``, ``n``) stand for, in the names of the steps: ``(name, text,
    LaTeX)`` for each such node a formula reads, in forward order. The user's labels and symbols need none."""
    lengths: set[int] = set()  # the run-time lengths (n = x.shape[0]) the definitions read

    def hold(a: Expr) -> Expr:
        if a.op == "dim":
            lengths.add(id(a))
        elif a.is_symbol or a.op == "const" or not (a.label or id(a) in named):
            return a
        return Input(names[id(a)], a.shape, a.dtype)

    order = topo_order([loss])
    defined: dict[int, tuple[str, str]] = {}
    for n in order:
        if id(n) not in named or n.label or n.op in ("const", "dim"):
            continue
        if fused is not None and n is fused.loss:  # the nn loss, by the call that built it
            args = [names[id(fused.pred)], names.get(id(fused.target), "target")]
            tex = "\\operatorname{{{}}}\\left({}\\right)".format(
                fused.build.__name__.replace("_", "\\_"), ", ".join(map(latex_name, args))
            )
            defined[id(n)] = (f"{fused.build.__name__}({', '.join(args)})", tex)
        else:
            expr = make(n.op, [hold(a) for a in n.args], dict(n.attrs))
            defined[id(n)] = (_fmt(expr, "text", taken), _fmt(expr, "latex", taken))
    defined.update((id(n), (_fmt(n, "text"), _fmt(n, "latex"))) for n in order if id(n) in lengths)
    return [(names[id(n)], *defined[id(n)]) for n in order if id(n) in defined]


def _names(loss: Expr) -> dict[int, str]:
    """A name for every node of the loss's graph: its label or symbol name, else the printer's kind of name."""
    order = topo_order([loss])
    alloc = NameAllocator([n.label for n in order if n.label])
    names = {}
    for n in order:
        if n is loss and not n.label:
            names[id(n)] = alloc.take(LOSS_NAME)
        elif n.label:
            names[id(n)] = n.label
        else:
            names[id(n)] = alloc.take(n.opdef.hint or n.op, numbered=n.op != "dim")
    return names


@dataclass(frozen=True)
class _Fused:
    """An :mod:`symdiff.nn` loss in the graph (the whole loss, or a term of it) explained by its closed form."""

    loss: Expr  # the nn loss's node
    pred: Expr
    target: Expr
    build: Callable[[Expr, Expr], Expr]
    rule: str
    head: frozenset[int]  # the nodes between the loss's node and its predictions, which the closed form replaces

    def contribution(self, names: dict[int, str], seed: Expr, taken: Sequence[str]) -> Contribution:
        """The closed form's step: the predictions' adjoint, given the loss node's adjoint ``seed``."""

        def hold(n: Expr) -> Expr:
            return n if n.is_symbol or n.op == "const" else Input(names[id(n)], n.shape, n.dtype)

        pred = hold(self.pred)
        loss = self.build(pred, hold(self.target))
        closed = simplify(backward(loss, [pred], seed)[id(pred)])
        text, tex = _fmt(closed, "text", taken), _fmt(closed, "latex", taken)
        return Contribution(names[id(self.loss)], self.rule, text, tex)


def _fused(loss: Expr) -> _Fused | None:
    """The nn loss that ``loss`` is or contains (:func:`symdiff.nn.loss_info`), if its node is in the graph."""
    info = nn.loss_info(loss)
    if info is None or info.kind not in _FUSED:
        return None
    build, rule = _FUSED[info.kind]
    node = build(info.pred, info.target)  # the loss's node (hash-consed), unless the loss was built by hand
    order = topo_order([loss])
    if not any(n is node for n in order):
        return None
    below = {id(n) for n in topo_order([info.pred, info.target])}
    head = frozenset(id(n) for n in topo_order([node]) if id(n) not in below and n is not node)
    return _Fused(node, info.pred, info.target, build, rule, head)


def explain(loss: Expr, wrt: Expr, *, fuse: bool = True, numeric: Mapping[str, Any] | None = None) -> Derivation:
    """The derivation of ``sd.grad(loss, wrt)``, step by step from the loss down to ``wrt``.

    Each step names the node, the rule applied (the op as the table names it, and which operand), the local
    formula in the steps' names (``dW1 = x.T @ dh1_z``), the simplified adjoint and its shape, the paths summed
    where several meet and the sums undoing broadcasting; a ``where`` line defines the names symdiff made up for
    unlabelled nodes (``mm1 = x @ W1``). With ``fuse`` (the default) the gradient of an
    :mod:`symdiff.nn` loss is one step, its closed form; ``fuse=False`` shows the loss's own ops. With ``numeric``
    (arrays by symbol name, as a compiled function takes them) each step also holds its value, computed by the
    compiled steps, and the derivation the result's relative error against central differences
    (:func:`symdiff.check_grad`).

    >>> x, W = sd.Input("x", shape=(3,)), sd.Param("W", shape=(3, 2))
    >>> print(sd.explain(sd.sum(sd.tanh(x @ W)), W))
    dL/dW, by the chain rule from L down to W:
        where mm1 = x @ W; tanh1 = tanh(mm1); L = sum(tanh1)
     1. the loss: dL = 1    shape ()
     2. sum: dtanh1 = broadcast_to(1.0, tanh1.shape)    shape (2,)
     3. tanh: dmm1 = dtanh1 * (1 - tanh1**2)    shape (2,)
     4. matmul, right operand: dW = outer(x, dmm1)    shape (3, 2)
    """
    check_loss(loss, "explain")
    if not isinstance(wrt, Expr):
        raise ArgumentTypeError(f"explain: wrt must be one Input or Param (one derivation), got {reprlib.repr(wrt)}")
    (target,) = check_targets(loss, [wrt], "explain")
    names = _names(loss)
    fused = _fused(loss)
    rec = _Recorder(names, loss, fused if fuse else None)
    adjoint = backward(loss, [target], recorder=rec)
    if id(target) not in names or rec.steps[-1].name != names[id(target)]:
        raise InputError(
            f"explain: the loss does not depend on {target.label} through differentiable ops, so its gradient is "
            "zero (sd.grad returns zeros): there is no chain to show"
        )
    result = gradients(loss, [target], adjoint)[0]
    *above, last = rec.steps  # the target comes last in reverse topological order
    simplified = simplify([s.expr for s in above]) if above else []  # one pass: the steps share their pieces
    steps = [replace(s, expr=e) for s, e in zip(above, simplified)] + [replace(last, expr=result)]
    if fused is not None and not fuse:  # the unfused chain, and the closed form it simplifies to
        pred, closed = names[id(fused.pred)], fused.contribution(names, rec.seeds[id(fused.loss)], rec.taken)
        note = "the steps so far simplify to what the fused step shows, "
        note += f"{closed.rule}: {grad_name(pred)} = {closed.formula}"
        steps = [replace(s, note=note) if s.name == pred else s for s in steps]
    defined = _definitions(loss, names, rec.named, fused if fuse else None, rec.taken)
    derivation = Derivation(names[id(loss)], names[id(target)], steps, names=defined)
    return derivation if numeric is None else _evaluate(derivation, loss, target, numeric)


def _evaluate(derivation: Derivation, loss: Expr, target: Expr, values: Mapping[str, Any]) -> Derivation:
    """``derivation`` with each step's value on ``values`` and the result's check against central differences."""
    from .runtime import compile as _compile
    from .testing import check_grad

    f = _compile([s.expr for s in derivation.steps], name="explain")
    out = f(**{k: v for k, v in values.items() if k in f.inputs})
    steps = [replace(s, value=np.asarray(v)) for s, v in zip(derivation.steps, out)]
    return replace(derivation, steps=steps, check=check_grad(loss, target, values))
