"""Pictures of expression graphs: Graphviz DOT text, and rendering it with the ``dot`` program.

``to_dot(loss, wrt=[W, b])`` draws the backpropagation picture: the forward graph (symbols, ops, the
loss) and the gradient graph symdiff derived from it, with each edge labelled by the shape that flows
along it. ``render(expr, "graph.svg")`` runs Graphviz's ``dot`` (a program, not a Python package) when it
is installed. The DOT text is deterministic: the same graph always gives the same text.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .errors import SymdiffError
from .graph import Expr, format_shape, topo_order
from .naming import grad_name, is_grad_name
from .ops.registry import ATOM, Fmt

__all__ = ["GraphvizNotFoundError", "render", "to_dot"]

FORMATS = ("svg", "png", "pdf", "ps", "eps", "jpg", "jpeg", "gif", "json", "plain")
INSTALL_HINT = (
    "install Graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; "
    "conda: conda install graphviz; pip does not provide the dot program), "
    "or write the DOT text with sd.to_dot(...) / a .dot path and render it elsewhere"
)

_STYLE = {
    "input": 'shape=box, style="rounded,filled", fillcolor="#dbeafe"',
    "param": 'shape=box, style="rounded,filled", fillcolor="#fef3c7"',
    "const": "shape=plaintext, fontsize=10",
    "forward": 'shape=ellipse, style=filled, fillcolor="#f3f4f6"',
    "gradient": 'shape=ellipse, style=filled, fillcolor="#fee2e2", color="#b91c1c"',
    "output": 'shape=note, style=filled, fillcolor="#e5e7eb"',
    "grad_output": 'shape=note, style=filled, fillcolor="#fecaca", color="#b91c1c"',
}
_PLACEHOLDER = Fmt("\u00b7", ATOM)  # a middle dot stands for each argument in an op's label


class GraphvizNotFoundError(SymdiffError, RuntimeError):
    """Rendering needs Graphviz's ``dot`` program, which is not installed (the message says how to get it).

    >>> import pathlib, tempfile
    >>> loss = sd.sum(sd.tanh(sd.Param("w", shape=(3,))))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     try:
    ...         path = sd.render(loss, pathlib.Path(tmp) / "loss.svg")
    ...     except sd.GraphvizNotFoundError:  # no Graphviz: write the DOT text instead
    ...         path = sd.render(loss, pathlib.Path(tmp) / "loss.dot")
    ...     print(path.suffix in (".svg", ".dot"))
    True
    """


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _op_label(node: Expr) -> str:
    if node.is_symbol:
        return f"{node.label}\n{format_shape(node.shape)}"
    if node.op == "const":
        from .printing import to_text

        text = to_text(node)
        return text if len(text) <= 24 else f"const {format_shape(node.shape)}"
    if node.opdef.dot is not None:
        label = node.opdef.dot
    else:
        try:
            fmt = node.opdef.text(node, [_PLACEHOLDER] * len(node.args)) if node.opdef.text else None
            label = fmt.text if fmt is not None else node.op
        except Exception:  # noqa: BLE001 - a label is cosmetic; fall back to the op's name
            label = node.op
        if len(label) > 40:
            label = node.op
    return f"{node.name}\n{label}" if node.name else label


def to_dot(
    expr: Expr | Mapping[str, Expr],
    wrt: Expr | Sequence[Expr] | None = None,
    *,
    grads: Iterable[str] | None = None,
    rankdir: str = "TB",
    title: str | None = None,
) -> str:
    """Graphviz DOT text for an expression, or a dict of named outputs.

    Parameters:
        expr: one expression or ``{name: expression}`` (e.g. ``{"loss": loss, "dW": gW}``).
        wrt: symbols to differentiate ``expr`` (a scalar) with respect to; their gradients are added as
            outputs ``d<name>``, so the picture shows the forward and the backward graph.
        grads: which output names are gradients (drawn in red). By default an output named ``d<symbol>``
            for a symbol of the graph is a gradient.
        rankdir: Graphviz layout direction (``"TB"`` top to bottom, ``"LR"`` left to right).
        title: a label for the whole picture.

    Nodes: Inputs (blue boxes), Params (yellow boxes), constants (plain text), ops (ellipses, labelled
    with the op, a middle dot per argument, and the user's name when it has one), outputs (notes).
    Nodes only the gradients need are red. Every edge is labelled with the shape of the value on it.

    >>> x, W = sd.Input("x", shape=(3,)), sd.Param("W", shape=(3, 2))
    >>> dot = sd.to_dot(sd.sum(sd.tanh(x @ W)), wrt=W)  # the forward graph and dW
    >>> print(dot.splitlines()[0])
    digraph symdiff {
    """
    if isinstance(expr, Mapping):
        outputs = dict(expr)
    elif isinstance(expr, Expr):
        outputs = {"loss" if wrt is not None else "out": expr}
    else:
        raise TypeError(f"to_dot takes an expression or a dict name -> expression, got {type(expr).__name__}")
    for k, v in outputs.items():
        if not isinstance(v, Expr):
            raise TypeError(f"to_dot: output {k!r} is a {type(v).__name__}, not a symdiff expression")
    if wrt is not None:
        from .autodiff import grad

        targets = [wrt] if isinstance(wrt, Expr) else list(wrt)
        if len(outputs) != 1:
            raise ValueError("to_dot: wrt= needs a single (scalar) expression to differentiate")
        (root,) = outputs.values()
        for t, g in zip(targets, grad(root, targets)):
            outputs[grad_name(t.label)] = g
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"to_dot: rankdir must be TB, LR, BT or RL, got {rankdir!r}")

    roots = list(outputs.values())
    order = topo_order(roots)
    symbols = {n.label for n in order if n.is_symbol}
    grad_names = set(grads) if grads is not None else {k for k in outputs if is_grad_name(k, symbols)}
    forward_roots = [v for k, v in outputs.items() if k not in grad_names]
    forward = {id(n) for n in topo_order(forward_roots)} if forward_roots else set()
    ids = {id(n): f"n{i}" for i, n in enumerate(order)}

    lines = [
        "digraph symdiff {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=12];',
        '  edge [fontname="Helvetica", fontsize=9, color="#4b5563", fontcolor="#4b5563"];',
    ]
    if title:
        lines.append(f"  label={_quote(title)}; labelloc=t;")
    single = not isinstance(expr, Mapping) and wrt is None
    for n in order:
        if n.op in ("input", "param", "const"):
            style = _STYLE[n.op]
        else:
            style = _STYLE["forward" if id(n) in forward else "gradient"]
        extra = ", peripheries=2" if single and n is roots[0] else ""
        lines.append(f"  {ids[id(n)]} [label={_quote(_op_label(n))}, {style}{extra}];")
    for n in order:
        for a in n.args:
            grad_edge = id(n) not in forward
            color = ', color="#b91c1c", fontcolor="#b91c1c"' if grad_edge else ""
            lines.append(f"  {ids[id(a)]} -> {ids[id(n)]} [label={_quote(format_shape(a.shape))}{color}];")
    if not single:
        for i, (k, v) in enumerate(outputs.items()):
            style = _STYLE["grad_output" if k in grad_names else "output"]
            lines.append(f"  out{i} [label={_quote(k)}, {style}];")
            lines.append(f"  {ids[id(v)]} -> out{i} [label={_quote(format_shape(v.shape))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(
    expr: Expr | Mapping[str, Expr],
    path: str | os.PathLike,
    wrt: Expr | Sequence[Expr] | None = None,
    *,
    format: str | None = None,  # noqa: A002 - Graphviz's word
    **kwargs: object,
) -> Path:
    """Draw ``expr`` (see :func:`to_dot`) into ``path`` with Graphviz; returns the path written.

    The format comes from the file's extension (``.svg``, ``.png``, ``.pdf`` ...) unless ``format`` is
    given; a ``.dot``/``.gv`` path gets the DOT text itself and needs no Graphviz. Other formats run the
    ``dot`` program (as a subprocess, no shell) and raise :class:`GraphvizNotFoundError`, which says how
    to install it, when it is missing.

    >>> import pathlib, tempfile
    >>> x, W = sd.Input("x", shape=(3,)), sd.Param("W", shape=(3, 2))
    >>> with tempfile.TemporaryDirectory() as tmp:  # a .dot file needs no Graphviz; .svg, .png, .pdf do
    ...     path = sd.render(sd.sum(sd.tanh(x @ W)), pathlib.Path(tmp) / "loss.dot", wrt=W)
    ...     print(path.name, path.read_text().splitlines()[0])
    loss.dot digraph symdiff {
    """
    path = Path(path)
    text = to_dot(expr, wrt, **kwargs)  # type: ignore[arg-type]
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt in ("dot", "gv"):
        path.write_text(text, encoding="utf-8")
        return path
    if fmt not in FORMATS:
        raise ValueError(
            f"render: cannot tell the format of {str(path)!r}; use an extension among "
            f".{', .'.join(FORMATS)}, .dot (or pass format=)"
        )
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFoundError(
            f"rendering {str(path)!r} needs the Graphviz 'dot' program, not found; {INSTALL_HINT}"
        )
    try:
        proc = subprocess.run(
            [exe, f"-T{fmt}", f"-o{os.fspath(path)}"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"Graphviz 'dot' took more than 120 s to render {str(path)!r}") from None
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(
            f"Graphviz 'dot' failed to render {str(path)!r} (exit {proc.returncode})"
            + (f": {reason[0]}" if reason else "")
        )
    return path
