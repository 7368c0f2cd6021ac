"""Model files: a Python file that defines ``loss`` (and, to train, its data), as ``symdiff show``,
``codegen`` and ``train`` read them; the formula listing of a loss and its gradients, and their derivations
step by step; and the files symdiff writes next to them (marked as generated, never written over a file
symdiff did not write).

A model file is trusted code: :func:`load_model` runs it like a script. Every problem is one
:class:`~symdiff.errors.InputError` naming the file (and the line, for an error inside it).
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import derivatives
from .autodiff import check_loss, grad
from .errors import InputError
from .explain import explain
from .graph import Expr, Input, Param, as_dtype, format_shape, inputs, params, topo_order
from .naming import grad_name
from .parse import parse
from .printing import latex_name, layout
from .train import evaluate

MODEL_FILE_HELP = """\
A model file is a Python file (trusted code: it runs like any script) that defines `loss`, a scalar
symdiff expression, e.g.

  import symdiff as sd
  x = sd.Input("x", shape=(None, 3))
  y = sd.Input("y", shape=(None,))
  w = sd.Param("w", shape=(3,))
  b = sd.Param("b")
  loss = sd.mse(x @ w + b, y)

Every sd.Param the loss uses is a parameter; every sd.Input is data.
"""

__all__ = [
    "DOT_HEADER",
    "Declarations",
    "GENERATED_MARKER",
    "MODEL_FILE_HELP",
    "check_replaceable",
    "derivations",
    "latex_block",
    "listing",
    "load_model",
    "make_dir",
    "model_data",
    "model_loss",
    "model_metrics",
    "model_params",
    "params_of",
    "module_path",
    "parse_shape",
    "split_lines",
    "write_dot",
    "write_text",
]


def load_model(path: str) -> dict[str, Any]:
    """Run a model file (trusted code, like any script) and return its globals."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"model file {path!r} does not exist")
    if not p.is_file():
        raise InputError(f"model file {path!r} is not a file")
    folder = str(p.resolve().parent)
    sys.path.insert(0, folder)  # like running the script: it may import its neighbours
    try:
        return runpy.run_path(str(p), run_name="__symdiff_model__")
    except SyntaxError as exc:
        raise InputError(f"model file {path!r}, line {exc.lineno}: syntax error: {exc.msg}") from None
    except SystemExit as exc:
        raise InputError(f"model file {path!r} exited (status {exc.code!r}) while loading") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: report where it failed, in one line
        line = ""
        resolved = str(p.resolve())
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename and os.path.abspath(frame.filename) == resolved:
                line = f", line {frame.lineno}"
                break
        raise InputError(f"model file {path!r}{line}: {type(exc).__name__}: {exc}") from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)


def model_loss(ns: Mapping[str, Any], path: str) -> Expr:
    """The scalar ``loss`` a loaded model file defines (``path`` names it in errors)."""
    if "loss" not in ns:
        raise InputError(
            f"model file {path!r} defines no 'loss' (it must set loss = a scalar symdiff expression, "
            "e.g. loss = sd.mse(x @ w + b, y))"
        )
    loss = ns["loss"]
    try:
        check_loss(loss, f"model file {path!r}")
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from None
    return loss


def model_metrics(
    ns: Mapping[str, Any], loss: Expr, data: Mapping[str, Any], params: Mapping[str, np.ndarray]
) -> list[Any]:
    """The model file's ``metrics``; by default ``["accuracy"]`` for a classifier (when accuracy can be
    measured on two rows of ``data``), else none."""
    metrics = ns.get("metrics")
    if metrics is not None:
        return metrics
    try:
        evaluate(loss, params, {k: np.asarray(v)[:2] for k, v in data.items()}, metrics=["accuracy"])
    except (ValueError, TypeError, KeyError, IndexError):
        return []
    return ["accuracy"]


def model_data(ns: Mapping[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The training data a loaded model file defines (``data`` or ``load_data()``) and its validation data."""
    validation = ns.get("validation_data")
    if "data" in ns:
        data = ns["data"]
    elif callable(ns.get("load_data")):
        try:
            data = ns["load_data"]()
        except Exception as exc:  # noqa: BLE001 - the user's code
            raise InputError(f"model file {path!r}: load_data() raised {type(exc).__name__}: {exc}") from None
        if isinstance(data, tuple) and len(data) == 2:
            data, validation = data
    else:
        raise InputError(
            f"model file {path!r} defines no training data: set data = {{'x': X, 'y': Y}} "
            "(one array per sd.Input) or define load_data()"
        )
    data = _data_dict(data, "data", path)
    if validation is not None:
        validation = _data_dict(validation, "validation_data", path)
    return data, validation


def _data_dict(value: Any, what: str, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"model file {path!r}: {what} must be a dict name -> array, got {type(value).__name__}")
    return dict(value)


def split_lines(loss: Expr, grads: Mapping[str, Expr], dialect: str = "text") -> tuple[list[str], list[str]]:
    """The formula lines (``name = text``, or LaTeX ``name &= text`` rows) of the loss and its forward
    intermediates, and those only the gradients ``grads`` (name -> expression) need."""

    names = ["loss", *grads]
    roots = [loss, *grads.values()]
    lay = layout(roots, names, dialect=dialect)
    forward = {id(n) for n in topo_order([loss])}

    def line(name: str, text: str) -> str:
        return f"{latex_name(name)} &= {text}" if dialect == "latex" else f"{name} = {text}"

    fwd: list[str] = []
    back: list[str] = []
    for node, name, text in lay.lines:
        (fwd if id(node) in forward else back).append(line(name, text))
    for k, r in zip(names, roots):
        if lay.names.get(id(r)) != k:
            (fwd if r is loss else back).append(line(k, lay.fmt(r).text))
    return fwd, back


def latex_block(rows: list[str]) -> str:
    """LaTeX rows as one ``aligned`` block."""
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def listing(path: str, loss: Expr, grads: Mapping[str, Expr], latex: bool = False) -> str:
    """What ``symdiff show`` prints for model file ``path``: its params and inputs with shapes, the loss
    formula and each gradient in ``grads`` (``"d<param>"`` -> expression), as text or LaTeX."""
    ps, xs = params(loss), inputs(loss)
    width = max(len(n.label) for n in [*ps, *xs])
    total = sum(int(np.prod(p.shape, dtype=np.int64)) for p in ps)
    lines = [f"# model {path}", f"params ({total} numbers):"]
    lines += [f"  {p.label:<{width}}  shape {format_shape(p.shape)}, {p.dtype.name}" for p in ps]
    if xs:
        lines.append("inputs:")
        lines += [f"  {x.label:<{width}}  shape {format_shape(x.shape)}, {x.dtype.name}" for x in xs]
    fwd, back = split_lines(loss, grads, "latex" if latex else "text")
    if latex:
        lines += ["\nloss:\n" + latex_block(fwd), "\ngradients:\n" + latex_block(back)]
    else:
        lines.append("\nloss:\n" + "\n".join(fwd))
        lines.append("\ngradients (derived by the chain rule and simplified):\n" + "\n".join(back))
    return "\n".join(lines)


def params_of(loss: Expr) -> list[Expr]:
    """The params of ``loss``; a loss without any is an InputError (there is nothing to differentiate or train)."""
    found = params(loss)
    if not found:
        raise InputError("the loss uses no sd.Param, so there is nothing to differentiate or train")
    return found


def model_params(loss: Expr, names: Sequence[str], path: str, option: str = "--explain") -> list[Expr]:
    """The params of ``loss`` named ``names`` (in that order, once each); a name that is not one of its params is
    an InputError naming it (and ``option``, which gave it) and listing the params."""
    by_name = {p.label: p for p in params(loss)}
    for name in names:
        if name not in by_name:
            what = "an input, not a param" if name in {x.label for x in inputs(loss)} else "not a param"
            raise InputError(
                f"{option} {name}: {name!r} is {what} of model file {path!r} (its params: {', '.join(by_name)})"
            )
    return [by_name[n] for n in dict.fromkeys(names)]


def derivations(loss: Expr, targets: Sequence[Expr], latex: bool = False) -> str:
    """The derivation (:func:`symdiff.explain`) of ``loss``'s gradient with respect to each of ``targets``, in
    order, as numbered text lines or LaTeX ``align`` environments, separated by blank lines."""
    return "\n\n".join(d.latex() if latex else d.text() for d in (explain(loss, t) for t in targets))


GENERATED_MARKER = "generated by symdiff"  # on the first line of every file symdiff generates (module, tests)
DOT_HEADER = f"// {GENERATED_MARKER}: the graph of the expression and its gradients\n"


def write_dot(path: str | Path, outputs: Mapping[str, Expr]) -> Path:
    """Write the Graphviz DOT picture of ``outputs`` (name -> expression) to ``path``, marked as generated."""
    from .pictures import to_dot

    return write_text(path, DOT_HEADER + to_dot(dict(outputs)), "DOT file")


def check_replaceable(path: Path, option: str, inputs: Sequence[str] = ()) -> None:
    """Refuse to write ``path`` over one of ``inputs`` or over an existing file that symdiff did not generate.

    ``option`` starts the messages (e.g. ``"-o"``, the option that named the path).
    """
    if any(os.path.exists(i) and path.exists() and os.path.samefile(path, i) for i in inputs):
        raise InputError(f"{option} {str(path)!r} is the model file itself: choose another output name")
    if not path.exists():
        return
    if not path.is_file():
        raise InputError(f"{option} {str(path)!r} exists and is not a file")
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if GENERATED_MARKER not in first:
        raise InputError(
            f"{option} {str(path)!r} exists and was not generated by symdiff: move it away or choose another name"
        )


def write_text(path: str | Path, text: str, what: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``; an OS error becomes one InputError naming ``what`` and the path."""
    p = Path(path)
    try:
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {what} {str(p)!r}: {exc.strerror or exc}") from None
    return p


# modules that generated code (or pytest running its tests) imports: an output module of that name would shadow them
_SHADOWED = frozenset(sys.stdlib_module_names) | {"numpy", "pytest", "symdiff"}


def module_path(path: str, option: str) -> Path:
    """``path`` as the file of a generated module: a ``.py`` file named like a module that shadows none
    that generated code, Python or pytest imports, in an existing folder (``option`` starts the messages)."""
    out = Path(path)
    if out.suffix != ".py" or not out.stem.isidentifier():
        raise InputError(f"{option} {path}: the output must be a .py file named like a Python module")
    if out.stem in _SHADOWED:
        raise InputError(
            f"{option} {path}: a module named {out.stem!r} would shadow the {out.stem!r} module that the "
            "generated code (or Python, or pytest) imports; choose another name"
        )
    if not out.parent.is_dir():
        raise InputError(f"{option} {path}: the folder {str(out.parent)!r} does not exist")
    return out


def make_dir(path: str, empty: bool = False) -> Path:
    """Create the folder ``path`` (its parent must exist) or accept it if it exists (and, with ``empty``, is empty)."""
    p = Path(path)
    if p.is_dir():
        if empty and any(p.iterdir()):
            raise InputError(
                f"output folder {path!r} is not empty (an earlier run?): choose another --out, or pass --force "
                "to replace its files"
            )
        return p
    if p.exists():
        raise InputError(f"output folder {path!r} exists and is not a folder")
    if not p.parent.is_dir():
        raise InputError(f"cannot create output folder {path!r}: {str(p.parent)!r} does not exist")
    try:
        p.mkdir()
    except OSError as exc:
        raise InputError(f"cannot create output folder {path!r}: {exc.strerror or exc}") from None
    return p


# -- expressions typed on the command line ------------------------------------------------------------
def _parse_assignments(items: Sequence[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"{option} {item!r}: expected NAME=VALUE, e.g. {option} x=None,3")
        if name in out:
            raise InputError(f"{option} is given twice for {name!r}")
        out[name] = value.strip()
    return out


def parse_shape(text: str) -> tuple[int | None, ...]:
    """``"None,3"`` -> ``(None, 3)``; ``"3"`` -> ``(3,)``; ``""`` or ``"()"`` -> ``()`` (a scalar)."""
    body = text.strip()
    if body.startswith("(") and body.endswith(")"):
        body = body[1:-1]
    parts = [p.strip() for p in body.split(",")]
    if parts and parts[-1] == "":
        parts.pop()  # "3," is (3,)
    dims: list[int | None] = []
    for p in parts:
        if p in ("None", "none", "?", "-1"):
            dims.append(None)
        elif p.isdigit() and len(p) <= 9:
            dims.append(int(p))
        else:
            raise ValueError(f"{p!r} is not a length (use a non-negative int or None)")
    if len(dims) > 32:
        raise ValueError("more than 32 axes")
    return tuple(dims)


def named_derivatives(expr: Expr, targets: Sequence[Expr], *, jacobian: bool = False, hessian: bool = False) -> dict:
    """What ``symdiff grad`` prints (the gradients ``dx``, and with ``hessian`` the Hessian blocks ``d2x``,
    ``dx_dy``) or ``symdiff jacobian`` (the Jacobians), by name."""
    if jacobian:
        return {j.name: j for j in derivatives.jacobian(expr, list(targets))}
    out = {grad_name(t.label): g for t, g in zip(targets, grad(expr, list(targets)))}
    if hessian:
        out.update({h.name: h for row in derivatives.hessian(expr, list(targets)) for h in row})
    return out


@dataclass
class Declarations:
    """The shapes and dtypes declared for the symbols of an expression typed as text (``symdiff grad``).

    ``texts`` keeps what was written per option (``{"--shape": {"x": "None,3"}, "--dtype": {...}}``) so that
    a declaration of a name the expression lacks is refused by option. Undeclared names are float64 scalars.
    """

    shapes: dict[str, tuple[int | None, ...]]
    dtypes: dict[str, np.dtype]
    texts: dict[str, dict[str, str]]

    @classmethod
    def from_options(cls, shapes: Sequence[str], dtypes: Sequence[str]) -> Declarations:
        """From ``NAME=DIMS`` items (``x=None,3``) and ``NAME=DTYPE`` items (``y=int64``)."""
        shape_texts = _parse_assignments(shapes, "--shape")
        dtype_texts = _parse_assignments(dtypes, "--dtype")

        def convert(option: str, texts: dict[str, str], parse: Callable[[str], Any], errors: Any) -> dict:
            out = {}
            for name, text in texts.items():
                try:
                    out[name] = parse(text)
                except errors as exc:
                    raise InputError(f"{option} {name}={text}: {exc}") from None
            return out

        return cls(
            convert("--shape", shape_texts, parse_shape, ValueError),
            convert("--dtype", dtype_texts, as_dtype, TypeError),
            {"--shape": shape_texts, "--dtype": dtype_texts},
        )

    def parse_scalar(self, text: str, wrt: Sequence[str], scalar: bool = True) -> tuple[Expr, list[Expr]]:
        """Parse ``text`` into a scalar (unless ``scalar=False``: any shape) float expression and its symbols named
        by ``wrt`` (in that order).

        The ``wrt`` names with a fixed shape and a float dtype become Params, every other name an Input.
        """
        symbols: dict[str, Expr] = {}

        def make_symbol(name: str) -> Expr:
            shape = self.shapes.get(name, ())
            dtype = self.dtypes.get(name, np.dtype("float64"))
            trainable = name in wrt and None not in shape and dtype.kind == "f"
            symbols[name] = (Param if trainable else Input)(name, shape=shape, dtype=dtype)
            return symbols[name]

        expr = parse(text, make_symbol)
        self._check(expr, symbols, wrt, scalar)
        return expr, [symbols[n] for n in wrt]

    def _check(self, expr: Expr, symbols: dict[str, Expr], wrt: Sequence[str], scalar: bool) -> None:
        listed = ", ".join(symbols) or "none"
        for option, names in (("--wrt", wrt), *self.texts.items()):
            for name in names:
                if name not in symbols:
                    raise InputError(f"{option} {name}: the expression has no symbol {name!r} (its symbols: {listed})")
        if scalar and expr.shape != ():
            raise InputError(
                f"the expression has shape {format_shape(expr.shape)}; a gradient needs a scalar: "
                "wrap it in sum(...) or mean(...)"
            )
        if expr.dtype.kind != "f":
            raise InputError(f"the expression has dtype {expr.dtype}; a gradient needs a float expression")
        for name in wrt:
            if symbols[name].dtype.kind != "f":
                dtype = symbols[name].dtype
                raise InputError(f"--wrt {name}: cannot differentiate with respect to {name!r} of dtype {dtype}")
