"""The ``symdiff`` command line: ``grad``, ``jacobian``, ``explain``, ``show``, ``codegen``, ``train`` and ``demo``.

Every command prints its results on stdout. A problem the user can fix (a bad file, an unknown name, a
shape mismatch, a parse error ...) prints one line ``symdiff: error: ...`` on stderr, no traceback, and the
exit status is 1 (2 for a malformed command line). Set ``SYMDIFF_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from symdiff import modelfile as mf
from symdiff.demo import DEMO_DIR, DEMO_EPILOG
from symdiff.modelfile import GENERATED_MARKER, parse_shape
from symdiff.naming import grad_name
from symdiff.optim import NAMES

__all__ = ["CLIError", "GENERATED_MARKER", "build_parser", "main", "parse_shape"]


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
  symdiff grad "logabsdet(X) + a @ solve(X, b)" --wrt X --shape X=3,3 --shape a=3 --shape b=3
  symdiff grad --wrt x -- "-x**2"       (an expression starting with '-' goes after --)
  symdiff grad "x @ A @ x" --wrt x --shape x=3 --shape A=3,3 --hessian
  symdiff jacobian "tanh(x @ W)" --wrt W --shape x=None,3 --shape W=3,2

The expression uses NumPy-like syntax: numbers, names, + - * / ** @, unary -, one comparison
(> >= < <=), x[...] with int/slice literals, x.T, and the functions
  {functions}
with literal keyword arguments (axis=0, keepdims=True, ...). Nothing else is accepted, and nothing in
the text is ever executed. Names without --shape are scalars; None in a shape is a batch axis of any
length. Names given to --wrt are differentiated with respect to; the others are inputs.
Linear algebra (sd.linalg) goes by plain names: inv(A), det(A), logabsdet(A) (the log|det| of
slogdet), solve(A, b), norm(x) (2-norm of a vector, Frobenius norm of a matrix; axis=, keepdims=).
"""

EXPLAIN_EPILOG = """\
examples:
  symdiff explain "sin(x) * x**2" --wrt x
  symdiff explain "mean((x @ W + b - y)**2)" --wrt W --wrt b \\
      --shape x=None,3 --shape W=3,1 --shape b=1 --shape y=None,1
  symdiff explain "softmax_cross_entropy(relu(x @ W1) @ W2, y)" --wrt W1 --shape x=None,2 \\
      --shape W1=2,8 --shape W2=8,2 --shape y=None --dtype y=int64 --latex

Each step names the node, the rule applied (the op's VJP, which operand), the local formula in terms of
the previous steps' adjoints (dW = x.T @ ds1) and its shape; where paths meet, the paths summed; where
broadcasting was undone, the sum undoing it. EXPR, --shape, --dtype: see 'symdiff grad --help'.
"""

SHOW_EPILOG = f"""\
examples:
  symdiff show model.py
  symdiff show model.py --latex
  symdiff show model.py --explain W1     also print the chain rule step by step down to param W1

{mf.MODEL_FILE_HELP}"""

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

    parser = _Parser(
        prog="symdiff",
        description=_wrap("Symbolic tensor expressions -> readable chain-rule gradients -> NumPy code."),
        epilog="Run 'symdiff COMMAND --help' for a command's options and examples. Start with: symdiff demo",
    )
    parser.add_argument("--version", action="version", version=f"symdiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    raw = argparse.RawDescriptionHelpFormatter
    for name, (summary, description, epilog, model) in COMMANDS.items():
        cmd = sub.add_parser(name, help=summary, description=_wrap(description), epilog=epilog, formatter_class=raw)
        cmd.set_defaults(func=globals()[f"_cmd_{name}"])
        if model is not None:
            cmd.add_argument("model", metavar="MODEL.py", help=model)
        globals()[f"_options_{name}"](cmd)
    return parser


# Each subcommand NAME: its one-line summary (symdiff --help), description, examples, and the help of its MODEL.py
# argument (None: it takes none). _options_NAME adds its options; _cmd_NAME runs it.
COMMANDS: dict[str, tuple[str, str, str, str | None]] = {
    "grad": (
        "differentiate an expression typed on the command line",
        "Parse EXPR (a restricted, NumPy-like syntax) and print its gradient with respect to "
        "each --wrt name as a readable formula.",
        GRAD_EPILOG,
        None,
    ),
    "jacobian": (
        "print the Jacobian of an expression typed on the command line",
        "Parse EXPR (any shape) like 'symdiff grad'; print its Jacobian (EXPR.shape + NAME.shape) for each --wrt.",
        GRAD_EPILOG,
        None,
    ),
    "explain": (
        "show the chain rule step by step for an expression typed on the command line",
        "Parse EXPR like 'symdiff grad' and print the derivation of its gradient with respect to each --wrt "
        "name, step by step from EXPR down to NAME, as numbered lines (or LaTeX).",
        EXPLAIN_EPILOG,
        None,
    ),
    "show": (
        "print a model file's params, loss and gradients",
        "Load MODEL.py and print its params with shapes, the loss formula and each derived gradient "
        "(and with --explain, a gradient's derivation step by step).",
        SHOW_EPILOG,
        "a Python file defining loss",
    ),
    "codegen": (
        "generate a NumPy module computing a model's loss and gradients",
        "Write the generated NumPy module of MODEL.py's loss and gradients (to stdout without -o).",
        CODEGEN_EPILOG,
        "a Python file defining loss",
    ),
    "train": (
        "train a model file's params with the generated training step",
        "Train the params of MODEL.py's loss on its data with sd.fit, print the final metrics "
        "and save the params and the history.",
        TRAIN_EPILOG,
        "a Python file defining loss and data (or load_data())",
    ),
    "demo": (
        "the whole pipeline on a ReLU network that learns two spirals",
        "Build a 2-64-64-2 ReLU network symbolically, print its derived gradients layer by layer, "
        "write the generated NumPy code, check it against central differences, train it on two interleaved "
        "spirals and report the accuracy.",
        DEMO_EPILOG,
        None,
    ),
}


def _add_formula_options(cmd: argparse.ArgumentParser, graph: str | None) -> None:
    """``--latex`` and (unless ``graph`` is None) ``--dot FILE`` of the commands that print formulas."""
    cmd.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    if graph is not None:
        cmd.add_argument("--dot", metavar="FILE", help=f"also write the graph ({graph}) as Graphviz DOT")


def _options_grad(grad: argparse.ArgumentParser, hessian: bool = True, dot: bool = True) -> None:
    from symdiff.parse import FUNCTIONS

    functions = textwrap.fill(" ".join(sorted(FUNCTIONS)), width=96, subsequent_indent="  ")
    grad.epilog = grad.epilog.format(functions=functions)  # GRAD_EPILOG lists them; EXPLAIN_EPILOG refers to it
    grad.add_argument("expr", metavar="EXPR", help='the expression, e.g. "sin(x) * x**2" (quote it)')
    wrt = "differentiate with respect to NAME (repeat)"
    grad.add_argument("--wrt", metavar="NAME", action="append", required=True, help=wrt)
    shape = "shape of NAME, e.g. x=None,3 (None: any length); names without one are scalars"
    grad.add_argument("--shape", metavar="NAME=DIMS", action="append", default=[], help=shape)
    dtype = "dtype of NAME, e.g. y=int64 (default float64)"
    grad.add_argument("--dtype", metavar="NAME=DTYPE", action="append", default=[], help=dtype)
    if hessian:
        grad.add_argument("--hessian", action="store_true", help="also print the Hessian (d2x, dx_dy for pairs)")
    _add_formula_options(grad, "expression and gradients" if dot else None)


def _options_show(show: argparse.ArgumentParser) -> None:
    _add_formula_options(show, "loss and gradients")
    explain = "after the listing, print the derivation of the loss's gradient w.r.t. param NAME step by step (repeat)"
    show.add_argument("--explain", metavar="NAME", action="append", default=[], help=explain)


def _options_codegen(cg: argparse.ArgumentParser) -> None:
    cg.add_argument("-o", "--output", metavar="OUT.py", help="write the module to OUT.py")
    cg.add_argument("--name", default="loss_and_grads", help="the generated function's name (default loss_and_grads)")
    cg.add_argument("--check", action="store_true", help="import OUT.py and compare it with sd.compile on random data")
    tests = "also write test_OUT.py: pytest checks of the gradients against central differences (numpy only)"
    cg.add_argument("--tests", action="store_true", help=tests)


def _options_train(tr: argparse.ArgumentParser) -> None:
    tr.add_argument("--epochs", type=_positive_int, default=10, help="passes over the data (default 10)")
    batch = "rows per step, or 'full' for full-batch (default 32)"
    tr.add_argument("--batch-size", type=_batch_size, default=32, help=batch)
    tr.add_argument("--optimizer", default="adam", choices=NAMES, help="the update rule (default adam)")
    tr.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default: the optimizer's)")
    tr.add_argument("--seed", type=int, default=0, help="seed of the initialization and the shuffling (default 0)")
    out = "folder for params.npz, history.json, history.csv (default MODEL-run); it must be new or empty"
    tr.add_argument("--out", metavar="DIR", help=out)
    force = "write into --out DIR even if it is not empty (replacing a run)"
    tr.add_argument("-f", "--force", action="store_true", help=force)
    _add_progress(tr)


def _options_demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--out", metavar="DIR", help=f"folder for the generated code and pictures (default ./{DEMO_DIR})")
    demo.add_argument("--epochs", type=_positive_int, default=40, help="passes over the data (default 40)")
    demo.add_argument("--no-plots", action="store_true", help="do not save PNG pictures even if matplotlib is present")
    _add_progress(demo)


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
def _progress_enabled(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# -- symdiff grad, jacobian and explain -----------------------------------------------------------------
def _cmd_grad(args: argparse.Namespace) -> int:
    import symdiff as sd
    from symdiff.printing import to_text_many

    declared = mf.Declarations.from_options(args.shape, args.dtype)
    # the grammar is checked (and refused) first; only then whether the options name the expression's symbols
    if args.dot:
        mf.check_replaceable(Path(args.dot), "--dot")
    wrt = list(dict.fromkeys(args.wrt))
    jacobian = args.command == "jacobian"
    expr, targets = declared.parse_scalar(args.expr, wrt, scalar=not jacobian)
    grads = mf.named_derivatives(expr, targets, jacobian=jacobian, hessian=not jacobian and args.hessian)
    print(sd.latex(grads) if args.latex else to_text_many(grads))
    if args.dot:
        mf.write_dot(args.dot, {"f": expr, **grads})
        print(f"# graph written to {args.dot} (render it: dot -Tsvg {args.dot} -o graph.svg)", file=sys.stderr)
    return 0


_options_jacobian, _cmd_jacobian = functools.partial(_options_grad, hessian=False), _cmd_grad  # see args.command
_options_explain = functools.partial(_options_grad, hessian=False, dot=False)


def _cmd_explain(args: argparse.Namespace) -> int:
    declared = mf.Declarations.from_options(args.shape, args.dtype)
    expr, targets = declared.parse_scalar(args.expr, list(dict.fromkeys(args.wrt)))
    print(mf.derivations(expr, targets, latex=args.latex))
    return 0


# -- symdiff show ----------------------------------------------------------------------------------------
def _cmd_show(args: argparse.Namespace) -> int:
    import symdiff as sd

    if args.dot:
        mf.check_replaceable(Path(args.dot), "--dot", [args.model])
    loss = mf.model_loss(mf.load_model(args.model), args.model)
    params = mf.params_of(loss)
    explained = mf.model_params(loss, args.explain, args.model)
    grads = dict(zip((grad_name(p.label) for p in params), sd.grad(loss, params)))
    print(mf.listing(args.model, loss, grads, latex=args.latex))
    if explained:
        print("\n" + mf.derivations(loss, explained, latex=args.latex))
    if args.dot:
        mf.write_dot(args.dot, {"loss": loss, **grads})
        print(f"\n# graph written to {args.dot}")
    return 0


# -- symdiff codegen -------------------------------------------------------------------------------------
def _codegen_output(args: argparse.Namespace) -> Path | None:
    """The -o path, checked before anything is generated (and the test file's, with --tests)."""
    from symdiff.graph import validate_name

    if (args.check or args.tests) and not args.output:
        raise CLIError("--check and --tests need the module written to a file: add -o OUT.py")
    try:
        validate_name(args.name, "function")
    except ValueError as exc:
        raise CLIError(f"--name: {exc}") from None
    if not args.output:
        return None
    out = mf.module_path(args.output, "-o")
    mf.check_replaceable(out, "-o", [args.model])
    if args.tests:
        mf.check_replaceable(out.with_name(f"test_{out.name}"), "--tests: test file", [args.model])
    return out


def _cmd_codegen(args: argparse.Namespace) -> int:
    import symdiff as sd
    from symdiff.testing import check_module, generated_tests

    out = _codegen_output(args)
    loss = mf.model_loss(mf.load_model(args.model), args.model)
    params = mf.params_of(loss)
    outputs = {"loss": loss, **{grad_name(p.label): g for p, g in zip(params, sd.grad(loss, params))}}
    source = sd.codegen(outputs, name=args.name)
    if out is None:
        print(source, end="")
        return 0
    mf.write_text(out, source, "module")
    args_list = ", ".join(n.label for n in [*params, *sd.inputs(loss)])
    print(f"wrote {out} ({source.count(chr(10))} lines): {args.name}(*, {args_list}) -> {', '.join(outputs)}")
    if args.check:
        worst = check_module(out, args.name, outputs, roots=[loss])
        err = sd.check_grad(loss, params, sd.testing.random_values([loss], seed=0))
        print(
            f"check: {out} matches sd.compile on 3 random data sets (largest difference {worst:.1e}); "
            f"its gradients agree with central differences to {err:.1e} (relative)"
        )
    if args.tests:
        test_path = out.with_name(f"test_{out.name}")
        mf.write_text(test_path, generated_tests(out.stem, args.name, loss, params, test_path.name), "test file")
        print(f"wrote {test_path}: run python -m pytest -q {test_path}")
    return 0


# -- symdiff train ---------------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    import symdiff as sd
    from symdiff.train import EpochLogger, format_logs

    ns = mf.load_model(args.model)
    loss = mf.model_loss(ns, args.model)
    mf.params_of(loss)
    data, validation = mf.model_data(ns, args.model)
    out_dir = mf.make_dir(args.out or f"{Path(args.model).stem}-run", empty=not args.force)
    params = sd.init_params(loss, seed=args.seed)
    metrics = mf.model_metrics(ns, loss, data, params)
    optimizer = sd.optim.get(args.optimizer, **({"lr": args.lr} if args.lr is not None else {}))
    n = len(np.asarray(next(iter(data.values())))) if data else 0
    bs = "full batch" if args.batch_size is None or args.batch_size >= n else f"batch {args.batch_size}"
    epochs = f"{args.epochs} epoch" + ("s" if args.epochs != 1 else "")
    print(f"# training {args.model}: {n} samples, {optimizer}, {bs}, {epochs}, seed {args.seed}")
    bar = _progress_enabled(args.progress)
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
        callbacks=[] if bar else [EpochLogger(args.epochs)],
        progress=bar,
    )
    final = {k: v[-1] for k, v in history.history.items() if v}
    print(f"final: {format_logs(final)} ({history.steps} steps in {history.seconds:.2f} s)")
    sd.save_params(params, out_dir / "params.npz")
    run = {"model": args.model, "optimizer": repr(optimizer), "batch_size": args.batch_size}
    history.save(out_dir / "history.json", **run, epochs=args.epochs, seed=args.seed)
    history.save(out_dir / "history.csv")
    print(f"saved params to {out_dir / 'params.npz'}, history to {out_dir / 'history.json'} and history.csv")
    return 0


# -- symdiff demo ----------------------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
    from symdiff.demo import demo_dir, run

    t0 = time.perf_counter()
    out_dir = demo_dir(args.out)
    run(out_dir, args.epochs, bar=_progress_enabled(args.progress), plots=not args.no_plots)
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
    if not argv or argv[0] not in ("grad", "jacobian", "explain"):
        return argv
    takes_value = {"--wrt", "--shape", "--dot", "--dtype"}
    out, is_value = [argv[0]], False
    for arg in argv[1:]:
        negated = not is_value and arg.startswith("-") and len(arg) > 1 and not arg.startswith("--") and arg != "-h"
        out.append(f"({arg})" if negated else arg)
        is_value = not is_value and arg in takes_value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 error, 2 bad command line)."""
    parser = build_parser()
    args = parser.parse_args(_protect_leading_minus(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("symdiff: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user; SYMDIFF_DEBUG=1 shows it
        if os.environ.get("SYMDIFF_DEBUG"):
            raise
        print(f"symdiff: error: {_error_line(exc)}", file=sys.stderr)
        return 1


def _error_line(exc: Exception) -> str:
    """What ``main`` prints for an error: the user's problem as is, else its type, else an internal error."""
    from symdiff.errors import SymdiffError

    user = (CLIError, SymdiffError, OSError, ValueError, TypeError, IndexError, KeyError, NotImplementedError)
    if isinstance(exc, user):
        return _one_line(exc)
    if isinstance(exc, (RecursionError, MemoryError, ArithmeticError)):
        return f"{type(exc).__name__}: {_one_line(exc)}"
    return f"internal error ({type(exc).__name__}: {_one_line(exc)}); rerun with SYMDIFF_DEBUG=1 for the traceback"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
