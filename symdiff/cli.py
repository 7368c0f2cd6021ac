"""The ``symdiff`` command line: ``grad``, ``show``, ``codegen``, ``train`` and ``demo``.

Every command prints its results on stdout. A problem the user can fix (a bad file, an unknown name, a
shape mismatch, a parse error ...) prints one line ``symdiff: error: ...`` on stderr, no traceback, and the
exit status is 1 (2 for a malformed command line). Set ``SYMDIFF_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import runpy
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

__all__ = ["CLIError", "build_parser", "main"]


class CLIError(Exception):
    """A problem with what the user asked for; ``main`` prints its message as one line."""


# -- argument parsing ---------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``symdiff: error: ... (see 'symdiff grad --help')``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"symdiff: error: {message} (see '{self.prog} --help')\n")


GRAD_EPILOG = """\
examples:
  symdiff grad "sin(x) * x**2" --wrt x
  symdiff grad "mean((x @ W + b - y)**2)" --wrt W --wrt b \\
      --shape x=None,3 --shape W=3,1 --shape b=1 --shape y=None,1
  symdiff grad "softmax_cross_entropy(x @ W, y)" --wrt W --shape x=None,4 --shape W=4,3 \\
      --shape y=None --dtype y=int64 --latex
  symdiff grad --wrt x -- "-x**2"       (an expression starting with '-' goes after --)

The expression uses NumPy-like syntax: numbers, names, + - * / ** @, unary -, one comparison
(> >= < <=), x[...] with int/slice literals, x.T, and the functions
  {functions}
with literal keyword arguments (axis=0, keepdims=True, ...). Nothing else is accepted, and nothing in
the text is ever executed. Names without --shape are scalars; None in a shape is a batch axis of any
length. Names given to --wrt are differentiated with respect to; the others are inputs.
"""

SHOW_EPILOG = """\
examples:
  symdiff show model.py
  symdiff show model.py --latex

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

CODEGEN_EPILOG = """\
examples:
  symdiff codegen model.py                          print the generated module
  symdiff codegen model.py -o model_grad.py --check --tests
  python -m pytest -q test_model_grad.py            the generated gradients against central differences

The module defines one function (named by --name) that takes the params and inputs as keyword arrays
and returns a dict with "loss" and "d<param>" for every param. It imports only numpy.
"""

TRAIN_EPILOG = """\
examples:
  symdiff train model.py
  symdiff train model.py --epochs 20 --batch-size 64 --optimizer adam --lr 0.01 --out run1

Besides `loss`, the model file defines its training data: `data = {"x": X, "y": Y}` (one array per
sd.Input) or a function `load_data()` returning such a dict (or a pair: training and validation data).
Optional: `validation_data` (a dict) and `metrics` (e.g. ["accuracy"]; classifiers get accuracy by
default). The params start from sd.init_params(loss, seed). DIR receives params.npz (sd.load_params
reads it), history.json and history.csv. A DIR that is not empty (an earlier run) is refused, so that
no run is lost: choose another --out, or pass --force to replace its files.
"""

DEMO_DIR = "symdiff-demo"
DEMO_FILES = ("step.py", "params.npz", "loss.png", "boundary.png")  # what the demo writes (and may rewrite)

DEMO_EPILOG = f"""\
examples:
  symdiff demo                 train a ReLU network on two spirals, printing its gradients on the way;
                               the generated code (and the PNG pictures) go into ./{DEMO_DIR}
  symdiff demo --out demo      write them into the folder demo instead

With matplotlib installed (pip install matplotlib) the demo also saves the loss curve and the
decision boundary as PNG files. Running it again replaces the files of the earlier demo; a folder
whose step.py, params.npz, loss.png or boundary.png the demo did not write is refused.
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88)


def _add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``symdiff`` command."""
    from symdiff import __version__
    from symdiff.parse import FUNCTIONS

    parser = _Parser(
        prog="symdiff",
        description=_wrap("Symbolic tensor expressions -> readable chain-rule gradients -> NumPy code."),
        epilog="Run 'symdiff COMMAND --help' for a command's options and examples. Start with: symdiff demo",
    )
    parser.add_argument("--version", action="version", version=f"symdiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    raw = argparse.RawDescriptionHelpFormatter
    funcs = textwrap.fill(" ".join(sorted(FUNCTIONS)), width=96, subsequent_indent="  ")
    grad = sub.add_parser(
        "grad",
        help="differentiate an expression typed on the command line",
        description=_wrap(
            "Parse EXPR (a restricted, NumPy-like syntax) and print its gradient with respect to "
            "each --wrt name as a readable formula."
        ),
        epilog=GRAD_EPILOG.format(functions=funcs),
        formatter_class=raw,
    )
    grad.add_argument("expr", metavar="EXPR", help='the expression, e.g. "sin(x) * x**2" (quote it)')
    grad.add_argument(
        "--wrt", metavar="NAME", action="append", required=True, help="differentiate with respect to NAME (repeat)"
    )
    grad.add_argument(
        "--shape",
        metavar="NAME=DIMS",
        action="append",
        default=[],
        help="shape of NAME, e.g. x=None,3 (None: any length); names without one are scalars",
    )
    grad.add_argument(
        "--dtype",
        metavar="NAME=DTYPE",
        action="append",
        default=[],
        help="dtype of NAME, e.g. y=int64 (default float64)",
    )
    grad.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    grad.add_argument("--dot", metavar="FILE", help="also write the graph (expression and gradients) as Graphviz DOT")
    grad.set_defaults(func=_cmd_grad)

    show = sub.add_parser(
        "show",
        help="print a model file's params, loss and gradients",
        description=_wrap(
            "Load MODEL.py and print its params with shapes, the loss formula and each derived gradient."
        ),
        epilog=SHOW_EPILOG,
        formatter_class=raw,
    )
    show.add_argument("model", metavar="MODEL.py", help="a Python file defining loss")
    show.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    show.add_argument("--dot", metavar="FILE", help="also write the graph (loss and gradients) as Graphviz DOT")
    show.set_defaults(func=_cmd_show)

    cg = sub.add_parser(
        "codegen",
        help="generate a NumPy module computing a model's loss and gradients",
        description=_wrap("Write the generated NumPy module of MODEL.py's loss and gradients (to stdout without -o)."),
        epilog=CODEGEN_EPILOG,
        formatter_class=raw,
    )
    cg.add_argument("model", metavar="MODEL.py", help="a Python file defining loss")
    cg.add_argument("-o", "--output", metavar="OUT.py", help="write the module to OUT.py")
    cg.add_argument("--name", default="loss_and_grads", help="the generated function's name (default loss_and_grads)")
    cg.add_argument("--check", action="store_true", help="import OUT.py and compare it with sd.compile on random data")
    cg.add_argument(
        "--tests",
        action="store_true",
        help="also write test_OUT.py: pytest checks of the gradients against central differences (numpy only)",
    )
    cg.set_defaults(func=_cmd_codegen)

    tr = sub.add_parser(
        "train",
        help="train a model file's params with the generated training step",
        description=_wrap(
            "Train the params of MODEL.py's loss on its data with sd.fit, print the final metrics "
            "and save the params and the history."
        ),
        epilog=TRAIN_EPILOG,
        formatter_class=raw,
    )
    tr.add_argument("model", metavar="MODEL.py", help="a Python file defining loss and data (or load_data())")
    tr.add_argument("--epochs", type=_positive_int, default=10, help="passes over the data (default 10)")
    tr.add_argument(
        "--batch-size", type=_batch_size, default=32, help="rows per step, or 'full' for full-batch (default 32)"
    )
    tr.add_argument(
        "--optimizer",
        default="adam",
        choices=["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"],
        help="the update rule (default adam)",
    )
    tr.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default: the optimizer's)")
    tr.add_argument("--seed", type=int, default=0, help="seed of the initialization and the shuffling (default 0)")
    tr.add_argument(
        "--out",
        metavar="DIR",
        help="folder for params.npz, history.json, history.csv (default MODEL-run); it must be new or empty",
    )
    tr.add_argument(
        "-f", "--force", action="store_true", help="write into --out DIR even if it is not empty (replacing a run)"
    )
    _add_progress(tr)
    tr.set_defaults(func=_cmd_train)

    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on a ReLU network that learns two spirals",
        description=_wrap(
            "Build a 2-64-64-2 ReLU network symbolically, print its derived gradients layer by layer, "
            "write the generated NumPy code, check it against central differences, train it on two interleaved "
            "spirals and report the accuracy."
        ),
        epilog=DEMO_EPILOG,
        formatter_class=raw,
    )
    demo.add_argument("--out", metavar="DIR", help=f"folder for the generated code and pictures (default ./{DEMO_DIR})")
    demo.add_argument("--epochs", type=_positive_int, default=40, help="passes over the data (default 40)")
    demo.add_argument("--no-plots", action="store_true", help="do not save PNG pictures even if matplotlib is present")
    _add_progress(demo)
    demo.set_defaults(func=_cmd_demo)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value):  # 1e400 reads as inf
        raise argparse.ArgumentTypeError(f"{text!r} is not finite (it reads as {value}): give a finite positive number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _batch_size(text: str) -> int | None:
    if text.lower() in ("full", "none", "all"):
        return None
    return _positive_int(text)


# -- shared helpers -------------------------------------------------------------------------------------
def _parse_assignments(items: Sequence[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CLIError(f"{option} {item!r}: expected NAME=VALUE, e.g. {option} x=None,3")
        if name in out:
            raise CLIError(f"{option} is given twice for {name!r}")
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


def _load_model(path: str) -> dict[str, Any]:
    """Run a model file (trusted code, like any script) and return its globals."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"model file {path!r} does not exist")
    if not p.is_file():
        raise CLIError(f"model file {path!r} is not a file")
    folder = str(p.resolve().parent)
    sys.path.insert(0, folder)  # like running the script: it may import its neighbours
    try:
        return runpy.run_path(str(p), run_name="__symdiff_model__")
    except SyntaxError as exc:
        raise CLIError(f"model file {path!r}, line {exc.lineno}: syntax error: {exc.msg}") from None
    except SystemExit as exc:
        raise CLIError(f"model file {path!r} exited (status {exc.code!r}) while loading") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: report where it failed, in one line
        line = ""
        resolved = str(p.resolve())
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename and os.path.abspath(frame.filename) == resolved:
                line = f", line {frame.lineno}"
                break
        raise CLIError(f"model file {path!r}{line}: {type(exc).__name__}: {exc}") from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)


def _model_loss(ns: Mapping[str, Any], path: str) -> Any:
    """The model's scalar loss and its params, with clear errors."""
    from symdiff.autodiff import check_loss

    if "loss" not in ns:
        raise CLIError(
            f"model file {path!r} defines no 'loss' (it must set loss = a scalar symdiff expression, "
            "e.g. loss = sd.mse(x @ w + b, y))"
        )
    loss = ns["loss"]
    try:
        check_loss(loss, f"model file {path!r}")
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    return loss


def _params_of(loss: Any) -> list[Any]:
    from symdiff.graph import leaves

    params = [n for n in leaves([loss]) if n.op == "param"]
    if not params:
        raise CLIError("the loss uses no sd.Param, so there is nothing to differentiate or train")
    return params


def _inputs_of(loss: Any) -> list[Any]:
    from symdiff.graph import leaves

    return [n for n in leaves([loss]) if n.op == "input"]


def _shape(shape: tuple) -> str:
    from symdiff.graph import format_shape

    return format_shape(shape)


def _split_lines(loss: Any, grads: Mapping[str, Any], dialect: str = "text") -> tuple[list[str], list[str]]:
    """The formula lines of the loss (and the forward intermediates) and those only the gradients need."""
    from symdiff.graph import topo_order
    from symdiff.printing import latex_name, layout

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


def _latex_block(rows: list[str]) -> str:
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


GENERATED_MARKER = "generated by symdiff"  # on the first line of every file symdiff generates (module, tests)
_DOT_HEADER = f"// {GENERATED_MARKER}: the graph of the expression and its gradients\n"
# modules that generated code (or pytest running its tests) imports: an output module of that name would shadow them
_SHADOWED = frozenset(sys.stdlib_module_names) | {"numpy", "pytest", "symdiff"}


def _check_replaceable(path: Path, option: str, inputs: Sequence[str] = ()) -> None:
    """Refuse to write ``path`` over one of ``inputs`` or over an existing file that symdiff did not generate."""
    if any(os.path.exists(i) and path.exists() and os.path.samefile(path, i) for i in inputs):
        raise CLIError(f"{option} {str(path)!r} is the model file itself: choose another output name")
    if not path.exists():
        return
    if not path.is_file():
        raise CLIError(f"{option} {str(path)!r} exists and is not a file")
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    except OSError as exc:
        raise CLIError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if GENERATED_MARKER not in first:
        raise CLIError(
            f"{option} {str(path)!r} exists and was not generated by symdiff: move it away or choose another name"
        )


def _write_text(path: str | Path, text: str, what: str) -> Path:
    p = Path(path)
    try:
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot write {what} {str(p)!r}: {exc.strerror or exc}") from None
    return p


def _make_dir(path: str, empty: bool = False) -> Path:
    """Create the folder ``path`` (its parent must exist) or accept it if it exists (and, with ``empty``, is empty)."""
    p = Path(path)
    if p.is_dir():
        if empty and any(p.iterdir()):
            raise CLIError(
                f"output folder {path!r} is not empty (an earlier run?): choose another --out, or pass --force "
                "to replace its files"
            )
        return p
    if p.exists():
        raise CLIError(f"output folder {path!r} exists and is not a folder")
    if not p.parent.is_dir():
        raise CLIError(f"cannot create output folder {path!r}: {str(p.parent)!r} does not exist")
    try:
        p.mkdir()
    except OSError as exc:
        raise CLIError(f"cannot create output folder {path!r}: {exc.strerror or exc}") from None
    return p


def _progress_enabled(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_logs(logs: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in logs.items())


def _epoch_logger(epochs: int, every: int, bar: bool) -> Any:
    """A ``fit`` callback: a progress bar over epochs on stderr, or a line on stdout every ``every`` epochs."""
    import symdiff as sd

    class EpochProgress(sd.Callback):
        def __init__(self) -> None:
            self.bar = None

        def on_train_begin(self, trainer: Any) -> None:
            if bar:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=epochs, desc="training", unit="epoch", file=sys.stderr, leave=True)

        def on_epoch_end(self, epoch: int, logs: dict[str, float], trainer: Any) -> None:
            if self.bar is not None:
                self.bar.set_postfix_str(_fmt_logs(logs), refresh=False)
                self.bar.update(1)
            elif epoch == 1 or epoch % every == 0 or epoch == epochs:
                print(f"epoch {epoch}/{epochs}: {_fmt_logs(logs)}", flush=True)

        def close(self) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return EpochProgress()


# -- symdiff grad ---------------------------------------------------------------------------------------
def _cmd_grad(args: argparse.Namespace) -> int:
    import symdiff as sd
    from symdiff.graph import as_dtype
    from symdiff.parse import parse
    from symdiff.printing import to_text_many

    shapes = _parse_assignments(args.shape, "--shape")
    dtypes = _parse_assignments(args.dtype, "--dtype")
    parsed_shapes = {}
    for name, text in shapes.items():
        try:
            parsed_shapes[name] = parse_shape(text)
        except ValueError as exc:
            raise CLIError(f"--shape {name}={text}: {exc}") from None
    parsed_dtypes = {}
    for name, text in dtypes.items():
        try:
            parsed_dtypes[name] = as_dtype(text)
        except TypeError as exc:
            raise CLIError(f"--dtype {name}={text}: {exc}") from None
    wrt = list(dict.fromkeys(args.wrt))
    symbols: dict[str, Any] = {}

    def make_symbol(name: str) -> Any:
        shape = parsed_shapes.get(name, ())
        dtype = parsed_dtypes.get(name, np.dtype("float64"))
        trainable = name in wrt and None not in shape and dtype.kind == "f"
        symbols[name] = (sd.Param if trainable else sd.Input)(name, shape=shape, dtype=dtype)
        return symbols[name]

    # the grammar is checked (and refused) first; only then whether the options name the expression's symbols
    if args.dot:
        _check_replaceable(Path(args.dot), "--dot")
    expr = parse(args.expr, make_symbol)
    listed = ", ".join(symbols) or "none"
    for option, names in (("--wrt", wrt), ("--shape", shapes), ("--dtype", dtypes)):
        for name in names:
            if name not in symbols:
                raise CLIError(f"{option} {name}: the expression has no symbol {name!r} (its symbols: {listed})")
    if expr.shape != ():
        raise CLIError(
            f"the expression has shape {_shape(expr.shape)}; a gradient needs a scalar: "
            "wrap it in sum(...) or mean(...)"
        )
    if expr.dtype.kind != "f":
        raise CLIError(f"the expression has dtype {expr.dtype}; a gradient needs a float expression")
    for name in wrt:
        if symbols[name].dtype.kind != "f":
            dtype = symbols[name].dtype
            raise CLIError(f"--wrt {name}: cannot differentiate with respect to {name!r} of dtype {dtype}")
    targets = [symbols[n] for n in wrt]
    grads = dict(zip((f"d{n}" for n in wrt), sd.grad(expr, targets)))
    print(sd.latex(grads) if args.latex else to_text_many(grads))
    if args.dot:
        from symdiff.pictures import to_dot

        _write_text(args.dot, _DOT_HEADER + to_dot({"f": expr, **grads}), "DOT file")
        print(f"# graph written to {args.dot} (render it: dot -Tsvg {args.dot} -o graph.svg)", file=sys.stderr)
    return 0


# -- symdiff show ----------------------------------------------------------------------------------------
def _cmd_show(args: argparse.Namespace) -> int:
    import symdiff as sd

    if args.dot:
        _check_replaceable(Path(args.dot), "--dot", [args.model])
    loss = _model_loss(_load_model(args.model), args.model)
    params = _params_of(loss)
    inputs = _inputs_of(loss)
    grads = dict(zip((f"d{p.label}" for p in params), sd.grad(loss, params)))
    width = max(len(n.label) for n in [*params, *inputs])
    total = sum(int(np.prod(p.shape, dtype=np.int64)) for p in params)
    print(f"# model {args.model}")
    print(f"params ({total} numbers):")
    for p in params:
        print(f"  {p.label:<{width}}  shape {_shape(p.shape)}, {p.dtype.name}")
    if inputs:
        print("inputs:")
        for x in inputs:
            print(f"  {x.label:<{width}}  shape {_shape(x.shape)}, {x.dtype.name}")
    fwd, back = _split_lines(loss, grads, "latex" if args.latex else "text")
    if args.latex:
        print("\nloss:\n" + _latex_block(fwd))
        print("\ngradients:\n" + _latex_block(back))
    else:
        print("\nloss:\n" + "\n".join(fwd))
        print("\ngradients (derived by the chain rule and simplified):\n" + "\n".join(back))
    if args.dot:
        from symdiff.pictures import to_dot

        _write_text(args.dot, _DOT_HEADER + to_dot({"loss": loss, **grads}), "DOT file")
        print(f"\n# graph written to {args.dot}")
    return 0


# -- symdiff codegen -------------------------------------------------------------------------------------
def _label_bounds(roots: Sequence[Any]) -> dict[str, int]:
    """For integer inputs used as class labels (pick, onehot): the number of classes."""
    from symdiff.graph import topo_order

    bounds: dict[str, int] = {}
    for n in topo_order(roots):
        found = None
        if n.op == "pick" and n.args[1].op == "input" and n.args[0].shape and n.args[0].shape[-1]:
            found = (n.args[1].label, n.args[0].shape[-1])
        elif n.op == "onehot" and n.args[0].op == "input":
            found = (n.args[0].label, int(n.attrs["depth"]))
        if found:
            bounds[found[0]] = min(bounds.get(found[0], found[1]), found[1])
    return bounds


def random_values(roots: Sequence[Any], seed: int = 0, batch: int = 5) -> dict[str, np.ndarray]:
    """Random arrays for every symbol of ``roots``: ``None`` axes get length ``batch``; integer labels
    stay below the number of classes their ``pick``/``onehot`` uses (2 when unused as labels)."""
    from symdiff.graph import leaves

    rng = np.random.default_rng(seed)
    bounds = _label_bounds(roots)
    out: dict[str, np.ndarray] = {}
    for n in leaves(roots):
        shape = tuple(batch if d is None else d for d in n.shape)
        if n.dtype.kind == "f":
            arr = rng.normal(0.0, 0.5, size=shape) if n.op == "param" else rng.uniform(-1.0, 1.0, size=shape)
        elif n.dtype.kind == "b":
            arr = rng.random(size=shape) < 0.5
        else:
            arr = rng.integers(0, bounds.get(n.label, 2), size=shape)
        out[n.label] = np.array(arr, dtype=n.dtype)
    return out


def _import_file(path: Path, module_name: str) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TEST_TEMPLATE = '''\
"""pytest checks of {module}.py, generated by symdiff (`symdiff codegen --tests`): numpy and pytest only.

The gradients {module}.py computes are compared with central differences of the loss it computes, at
random points, so the generated code carries its own proof. Run: python -m pytest -q {test_file}
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("{module}_under_test", Path(__file__).with_name("{module}.py"))
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
FN = _module.{name}

# name: (kind, shape (None: the batch axis), dtype, number of classes for integer labels)
SYMBOLS = {symbols}
GRADIENTS = {gradients}  # param -> the output holding its gradient
BATCH = 5
EPS, TOLERANCE = {eps!r}, {tol!r}
MAX_POINTS = 48  # elements checked per param (a random sample of larger ones)


def make_values(seed):
    rng = np.random.default_rng(seed)
    values = {{}}
    for name, (kind, shape, dtype, classes) in SYMBOLS.items():
        shape = tuple(BATCH if d is None else d for d in shape)
        kind_code = np.dtype(dtype).kind
        if kind_code == "f":  # float64 everywhere: precise central differences
            arr = rng.normal(0.0, 0.5, size=shape) if kind == "param" else rng.uniform(-1.0, 1.0, size=shape)
            values[name] = np.array(arr, dtype=np.float64)
        elif kind_code == "b":
            values[name] = np.array(rng.random(size=shape) < 0.5)
        else:
            values[name] = np.array(rng.integers(0, classes, size=shape), dtype=dtype)
    return values


def test_outputs_have_the_right_shapes():
    values = make_values(0)
    out = FN(**values)
    assert set(out) == {{"loss", *GRADIENTS.values()}}
    assert np.ndim(out["loss"]) == 0 and np.isfinite(out["loss"])
    for name, key in GRADIENTS.items():
        assert np.shape(out[key]) == np.shape(values[name]), key
        assert np.all(np.isfinite(out[key])), key


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(GRADIENTS))
def test_gradient_matches_central_differences(name, seed):
    values = make_values(seed)
    analytic = np.array(np.broadcast_to(FN(**values)[GRADIENTS[name]], values[name].shape), dtype=np.float64)
    x = values[name]
    points = list(np.ndindex(x.shape))
    if len(points) > MAX_POINTS:
        pick = np.random.default_rng(1000 + seed).choice(len(points), MAX_POINTS, replace=False)
        points = [points[i] for i in pick]
    numeric = np.empty(len(points))
    for j, idx in enumerate(points):
        orig = x[idx]
        x[idx] = orig + EPS
        up = float(FN(**values)["loss"])
        x[idx] = orig - EPS
        down = float(FN(**values)["loss"])
        x[idx] = orig
        numeric[j] = (up - down) / (2 * EPS)
    got = np.array([analytic[idx] for idx in points])
    scale = max(np.max(np.abs(got), initial=0.0), np.max(np.abs(numeric), initial=0.0), 1e-6)
    error = np.max(np.abs(got - numeric), initial=0.0) / scale
    assert error < TOLERANCE, f"d{{name}}: relative error {{error:.2e}} against central differences"
'''


def _test_source(module: str, name: str, loss: Any, params: Sequence[Any], test_file: str) -> str:
    from symdiff.graph import leaves

    bounds = _label_bounds([loss])
    rows = []
    for n in leaves([loss]):
        rows.append(f"    {n.label!r}: ({n.op!r}, {n.shape!r}, {n.dtype.name!r}, {bounds.get(n.label, 2)!r}),")
    symbols = "{\n" + "\n".join(rows) + "\n}"
    gradients = "{" + ", ".join(f"{p.label!r}: {'d' + p.label!r}" for p in params) + "}"
    low = any(n.dtype.kind == "f" and n.dtype.itemsize < 8 for n in leaves([loss]))
    eps, tol = (1e-3, 2e-2) if low else (1e-6, 1e-5)
    return TEST_TEMPLATE.format(
        module=module, name=name, symbols=symbols, gradients=gradients, eps=eps, tol=tol, test_file=test_file
    )


def _cmd_codegen(args: argparse.Namespace) -> int:
    import symdiff as sd
    from symdiff.graph import validate_name

    if (args.check or args.tests) and not args.output:
        raise CLIError("--check and --tests need the module written to a file: add -o OUT.py")
    try:
        validate_name(args.name, "function")
    except ValueError as exc:
        raise CLIError(f"--name: {exc}") from None
    out = Path(args.output) if args.output else None
    if out is not None:
        if out.suffix != ".py" or not out.stem.isidentifier():
            raise CLIError(f"-o {args.output}: the output must be a .py file named like a Python module")
        if out.stem in _SHADOWED:
            raise CLIError(
                f"-o {args.output}: a module named {out.stem!r} would shadow the {out.stem!r} module that the "
                "generated code (or Python, or pytest) imports; choose another name"
            )
        if not out.parent.is_dir():
            raise CLIError(f"-o {args.output}: the folder {str(out.parent)!r} does not exist")
        _check_replaceable(out, "-o", [args.model])
        if args.tests:
            _check_replaceable(out.with_name(f"test_{out.name}"), "--tests: test file", [args.model])
    loss = _model_loss(_load_model(args.model), args.model)
    params = _params_of(loss)
    outputs = {"loss": loss, **{f"d{p.label}": g for p, g in zip(params, sd.grad(loss, params))}}
    source = sd.codegen(outputs, name=args.name)
    if out is None:
        print(source, end="")
        return 0
    _write_text(out, source, "module")
    args_list = ", ".join(n.label for n in [*params, *_inputs_of(loss)])
    print(f"wrote {out} ({source.count(chr(10))} lines): {args.name}(*, {args_list}) -> {', '.join(outputs)}")
    if args.check:
        module = _import_file(out, f"_symdiff_check_{out.stem}")
        fn = getattr(module, args.name, None)
        if fn is None:
            raise CLIError(f"{out} defines no function {args.name!r}")
        compiled = sd.compile(outputs, name=args.name)
        worst = 0.0
        for seed in range(3):
            values = random_values([loss], seed=seed)
            got, want = fn(**values), compiled(**values)
            if list(got) != list(want):
                raise CLIError(f"check failed: {out} returns {list(got)}, sd.compile returns {list(want)}")
            for k in want:
                a, b = np.asarray(got[k], dtype=np.float64), np.asarray(want[k], dtype=np.float64)
                if a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True):
                    raise CLIError(f"check failed: output {k!r} of {out} differs from sd.compile on random data")
                both = np.isfinite(a) & np.isfinite(b)
                worst = max(worst, float(np.max(np.abs(a[both] - b[both]), initial=0.0)))
        err = sd.check_grad(loss, params, random_values([loss], seed=0))
        print(
            f"check: {out} matches sd.compile on 3 random data sets (largest difference {worst:.1e}); "
            f"its gradients agree with central differences to {err:.1e} (relative)"
        )
    if args.tests:
        test_path = out.with_name(f"test_{out.name}")
        _write_text(test_path, _test_source(out.stem, args.name, loss, params, test_path.name), "test file")
        print(f"wrote {test_path}: run python -m pytest -q {test_path}")
    return 0


# -- symdiff train ---------------------------------------------------------------------------------------
def _data_dict(value: Any, what: str, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise CLIError(f"model file {path!r}: {what} must be a dict name -> array, got {type(value).__name__}")
    return dict(value)


def _cmd_train(args: argparse.Namespace) -> int:
    import symdiff as sd

    ns = _load_model(args.model)
    loss = _model_loss(ns, args.model)
    _params_of(loss)
    validation = ns.get("validation_data")
    if "data" in ns:
        data = ns["data"]
    elif callable(ns.get("load_data")):
        try:
            data = ns["load_data"]()
        except Exception as exc:  # noqa: BLE001 - the user's code
            raise CLIError(f"model file {args.model!r}: load_data() raised {type(exc).__name__}: {exc}") from None
        if isinstance(data, tuple) and len(data) == 2:
            data, validation = data
    else:
        raise CLIError(
            f"model file {args.model!r} defines no training data: set data = {{'x': X, 'y': Y}} "
            "(one array per sd.Input) or define load_data()"
        )
    data = _data_dict(data, "data", args.model)
    if validation is not None:
        validation = _data_dict(validation, "validation_data", args.model)
    out_dir = _make_dir(args.out or f"{Path(args.model).stem}-run", empty=not args.force)
    params = sd.init_params(loss, seed=args.seed)
    metrics = ns.get("metrics")
    if metrics is None:  # classifiers get accuracy by default
        try:
            sd.evaluate(loss, params, {k: np.asarray(v)[:2] for k, v in data.items()}, metrics=["accuracy"])
            metrics = ["accuracy"]
        except (ValueError, TypeError, KeyError, IndexError):
            metrics = []
    opt_kwargs = {"lr": args.lr} if args.lr is not None else {}
    optimizer = sd.optim.get(args.optimizer, **opt_kwargs)
    n = len(np.asarray(next(iter(data.values())))) if data else 0
    bs = "full batch" if args.batch_size is None or args.batch_size >= n else f"batch {args.batch_size}"
    epochs = f"{args.epochs} epoch" + ("s" if args.epochs != 1 else "")
    print(f"# training {args.model}: {n} samples, {optimizer}, {bs}, {epochs}, seed {args.seed}")
    bar = _progress_enabled(args.progress)
    logger = None if bar else _epoch_logger(args.epochs, 1, False)
    try:
        history = sd.fit(
            loss,
            params,
            data,
            optimizer=optimizer,
            batch_size=args.batch_size,
            epochs=args.epochs,
            seed=args.seed,
            validation_data=validation,
            metrics=metrics,
            callbacks=[logger] if logger else [],
            progress=bar,
        )
    finally:
        if logger is not None:
            logger.close()
    final = {k: v[-1] for k, v in history.history.items() if v}
    print(f"final: {_fmt_logs(final)} ({history.steps} steps in {history.seconds:.2f} s)")
    sd.save_params(params, out_dir / "params.npz")
    record = {
        "model": args.model,
        "optimizer": repr(optimizer),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "seed": args.seed,
        "seconds": history.seconds,
        "steps": history.steps,
        "epoch": history.epoch,
        "history": history.history,
    }
    (out_dir / "history.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    keys = list(history.history)
    with open(out_dir / "history.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", *keys])
        for i, epoch in enumerate(history.epoch):
            writer.writerow([epoch, *(repr(float(history.history[k][i])) for k in keys)])
    print(f"saved params to {out_dir / 'params.npz'}, history to {out_dir / 'history.json'} and history.csv")
    return 0


# -- symdiff demo ----------------------------------------------------------------------------------------
def _save_boundary(
    path: Path, predict: Callable[[np.ndarray], np.ndarray], points: np.ndarray, labels: np.ndarray, acc: float
) -> Any:
    """Save the decision boundary of ``predict`` (the probability of class 1) over the points; returns the figure."""
    from matplotlib.figure import Figure

    lim = 1.15
    grid = np.linspace(-lim, lim, 241)
    gx, gy = np.meshgrid(grid, grid)
    prob = predict(np.c_[gx.ravel(), gy.ravel()]).reshape(gx.shape)
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
    ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35)
    ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.2)
    for label, color in ((0, "#1d4ed8"), (1, "#b91c1c")):
        pts = points[labels == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=7, c=color, label=f"class {label}")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_0$ (first input feature)")
    ax.set_ylabel("$x_1$ (second input feature)")
    ax.legend(loc="upper right", fontsize=8, title="P(class 1) = 0.5: black line", title_fontsize=7)
    ax.set_title(f"decision boundary of the 2-64-64-2 ReLU network (accuracy {acc:.3f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def _cmd_demo(args: argparse.Namespace) -> int:
    import symdiff as sd
    from symdiff.datasets import spirals

    t0 = time.perf_counter()
    if args.out and args.out.endswith(".py") and not os.path.isdir(args.out):
        raise CLIError(f"--out takes a folder (the demo writes step.py and pictures into it), got {args.out!r}")
    out_dir = _make_dir(args.out or DEMO_DIR)
    _check_replaceable(out_dir / "step.py", "--out: the file")
    if not (out_dir / "step.py").exists():  # no earlier demo here: its other files would be someone else's
        taken = [name for name in DEMO_FILES if (out_dir / name).exists()]
        if taken:
            raise CLIError(
                f"--out: {str(out_dir / taken[0])!r} exists and was not written by the demo: choose another folder"
            )

    X, Y = spirals(500, seed=0)
    X_test, Y_test = spirals(500, seed=1)  # fresh points from the same spirals
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h1 = sd.dense(x, 64, "h1", activation="relu")
    h2 = sd.dense(h1, 64, "h2", activation="relu")
    logits = sd.dense(h2, 2, "out")
    loss = sd.softmax_cross_entropy(logits, y)
    params = _params_of(loss)
    backprop_order = [p for layer in ("out", "h2", "h1") for p in params if p.label.startswith(layer + "_")]
    backprop_order += [p for p in params if p not in backprop_order]
    grads = dict(zip((f"d{p.label}" for p in backprop_order), sd.grad(loss, backprop_order)))
    fwd, back = _split_lines(loss, grads)

    print("symdiff demo: a ReLU network learns two interleaved spirals (1000 points, 2 classes)")
    print(f"# its files (generated code, params, pictures) go into {out_dir}{os.sep} (--out DIR for another folder)\n")
    print("# the model: 2 -> 64 -> 64 -> 2, built with sd.dense; its loss is the softmax cross-entropy")
    print("\n".join(fwd))
    print("\n# its gradients, layer by layer: derived by the chain rule and simplified (nobody wrote these)")
    print("\n".join(back))

    outputs = {"loss": loss, **{f"d{p.label}": grads[f"d{p.label}"] for p in params}}
    source = sd.codegen(outputs, name="step")
    code_path = _write_text(out_dir / "step.py", source, "generated module")
    print(f"\n# generated NumPy code ({source.count(chr(10))} lines, imports only numpy) written to {code_path}")

    values = {**sd.init_params(loss, seed=0), "x": X[:64], "y": Y[:64]}
    err = sd.check_grad(loss, params, values)
    start = sd.compile(outputs, name="step")(**values)
    print(
        f"# loss at a random start: {float(start['loss']):.4f}; largest relative error of the gradients "
        f"against central differences: {err:.1e}"
    )

    optimizer = sd.optim.Adam(lr=0.01)
    print(f"\n# training with {optimizer}, batch 32, {args.epochs} epochs (the generated training step)")
    state = sd.init_params(loss, seed=0)
    bar = _progress_enabled(args.progress)
    logger = _epoch_logger(args.epochs, max(1, args.epochs // 4), bar)
    try:
        history = sd.fit(
            loss,
            state,
            {"x": X, "y": Y},
            optimizer=optimizer,
            batch_size=32,
            epochs=args.epochs,
            seed=0,
            metrics=["accuracy"],
            callbacks=[logger],
            progress=False,
        )
    finally:
        logger.close()
    train_acc = history.history["accuracy"][-1]
    test_acc = sd.evaluate(loss, state, {"x": X_test, "y": Y_test}, metrics=["accuracy"])["accuracy"]
    print(
        f"# accuracy {train_acc:.3f} on the training spirals, {test_acc:.3f} on 1000 fresh points "
        f"({history.steps} steps in {history.seconds:.2f} s)"
    )
    sd.save_params(state, out_dir / "params.npz")

    if args.no_plots:
        pass
    elif importlib.util.find_spec("matplotlib") is None:
        print("# pip install matplotlib to also get the loss curve and the decision boundary as PNG files")
    else:
        curve = out_dir / "loss.png"
        history.plot(str(curve))
        predict_fn = sd.compile({"p": sd.softmax(logits)}, name="predict")
        weights = {k: v for k, v in state.items() if k in predict_fn.inputs}

        def predict(points: np.ndarray) -> np.ndarray:
            return predict_fn(**weights, x=points)["p"][:, 1]

        boundary = out_dir / "boundary.png"
        _save_boundary(boundary, predict, X, Y, train_acc)
        print(f"# loss curve saved to {curve}; decision boundary saved to {boundary}")
    print(f"# done in {time.perf_counter() - t0:.2f} s (files in {out_dir})")
    return 0


# -- main ------------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _protect_leading_minus(argv: list[str]) -> list[str]:
    """``symdiff grad "-x**2" --wrt x``: an expression that starts with '-' is not an option.

    argparse would take it for one; wrapping it in parentheses keeps its meaning and makes it positional.
    """
    if not argv or argv[0] != "grad":
        return argv
    takes_value = {"--wrt", "--shape", "--dot", "--dtype"}
    out, skip = [argv[0]], False
    for arg in argv[1:]:
        if skip:
            out.append(arg)
            skip = False
        elif arg in takes_value:
            out.append(arg)
            skip = True
        elif arg.startswith("-") and len(arg) > 1 and not arg.startswith("--") and arg not in ("-h",):
            out.append(f"({arg})")
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 error, 2 bad command line)."""
    parser = build_parser()
    args = parser.parse_args(_protect_leading_minus(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from symdiff.errors import SymdiffError

    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("symdiff: interrupted", file=sys.stderr)
        return 130
    except (CLIError, SymdiffError, OSError, ValueError, TypeError, IndexError, KeyError, NotImplementedError) as exc:
        if os.environ.get("SYMDIFF_DEBUG"):
            raise
        print(f"symdiff: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (RecursionError, MemoryError, ArithmeticError) as exc:
        if os.environ.get("SYMDIFF_DEBUG"):
            raise
        print(f"symdiff: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user; SYMDIFF_DEBUG=1 shows it
        if os.environ.get("SYMDIFF_DEBUG"):
            raise
        print(
            f"symdiff: error: internal error ({type(exc).__name__}: {_one_line(exc)}); "
            "rerun with SYMDIFF_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
