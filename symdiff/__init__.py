"""symdiff: symbolic tensor expressions -> chain-rule gradients -> readable formulas -> NumPy code.

The pipeline, one module per stage::

    graph (graph.py, ops/)  ->  grad (autodiff.py)  ->  simplify (simplify.py)
        ->  print (printing.py)  /  NumPy source (codegen.py)  ->  callable (runtime.py)
"""

from __future__ import annotations

from . import datasets, nn, optim
from . import sympy_bridge as _sympy_bridge  # noqa: F401  (registers sympy_fn)
from .autodiff import grad
from .codegen import codegen
from .errors import ConstantOverflowError, DTypeError, InputError, ShapeError, SymdiffError, UnsupportedError
from .functions import (
    abs,
    absolute,
    add,
    amax,
    astype,
    broadcast_to,
    concatenate,
    cos,
    divide,
    dot,
    equal,
    exp,
    expand_dims,
    greater,
    greater_equal,
    less,
    less_equal,
    log,
    log_sigmoid,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    minimum,
    multiply,
    negative,
    onehot,
    pick,
    power,
    relu,
    reshape,
    sigmoid,
    sign,
    sin,
    softmax,
    softplus,
    sqrt,
    square,
    squeeze,
    stack,
    subtract,
    sum,
    swapaxes,
    tanh,
    tensordot,
    transpose,
    where,
)
from .graph import Expr, Input, Param, constant, inputs, params
from .nn import dense, init_params, mse, sigmoid_cross_entropy, softmax_cross_entropy
from .ops import elementwise, leaves, linalg, reductions, shape  # each registers its entries in the op table
from .parse import ParseError, parse
from .pictures import GraphvizNotFoundError, render, to_dot
from .printing import latex, to_sympy, to_text
from .runtime import CompiledFunction, compile
from .simplify import simplify
from .step import TrainStep, codegen_step, compile_step
from .sympy_bridge import from_sympy
from .testing import check_grad, numeric_grad
from .train import Callback, DivergenceError, EarlyStopping, History, evaluate, fit, load_params, save_params

del elementwise, leaves, linalg, reductions, shape  # imported for their entries only

__version__ = "0.1.0"


def __dir__() -> list[str]:
    """``dir(symdiff)`` lists the public API (``__all__``), not ``annotations`` or the internal modules."""
    return sorted([*__all__, "__version__"])


__all__ = [
    "Callback",
    "DivergenceError",
    "EarlyStopping",
    "History",
    "TrainStep",
    "codegen_step",
    "compile_step",
    "dense",
    "evaluate",
    "fit",
    "init_params",
    "inputs",
    "load_params",
    "nn",
    "optim",
    "params",
    "save_params",
    "GraphvizNotFoundError",
    "ParseError",
    "datasets",
    "parse",
    "render",
    "to_dot",
    "CompiledFunction",
    "ConstantOverflowError",
    "DTypeError",
    "Expr",
    "Input",
    "InputError",
    "Param",
    "ShapeError",
    "SymdiffError",
    "UnsupportedError",
    "abs",
    "absolute",
    "add",
    "amax",
    "astype",
    "broadcast_to",
    "check_grad",
    "codegen",
    "compile",
    "concatenate",
    "constant",
    "cos",
    "divide",
    "dot",
    "equal",
    "exp",
    "expand_dims",
    "from_sympy",
    "grad",
    "greater",
    "greater_equal",
    "latex",
    "less",
    "less_equal",
    "log",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "maximum",
    "mean",
    "minimum",
    "mse",
    "multiply",
    "negative",
    "numeric_grad",
    "onehot",
    "pick",
    "power",
    "relu",
    "reshape",
    "sigmoid",
    "sigmoid_cross_entropy",
    "sign",
    "simplify",
    "sin",
    "softmax",
    "softmax_cross_entropy",
    "softplus",
    "sqrt",
    "square",
    "squeeze",
    "stack",
    "subtract",
    "sum",
    "swapaxes",
    "tanh",
    "tensordot",
    "to_sympy",
    "to_text",
    "transpose",
    "where",
]
