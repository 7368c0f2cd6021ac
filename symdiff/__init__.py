"""symdiff: symbolic tensor expressions -> chain-rule gradients -> readable formulas -> NumPy code.

The pipeline, one module per stage::

    graph (graph.py, ops/)  ->  grad (autodiff.py)  ->  simplify (simplify.py)
        ->  print (printing.py)  /  NumPy source (codegen.py)  ->  callable (runtime.py)

The examples in the docstrings start from ``import numpy as np`` and ``import symdiff as sd``:

>>> x, W = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 2))
>>> loss = sd.mean(sd.tanh(x @ W) ** 2)
>>> print(sd.grad(loss, W))
tanh1 = tanh(x @ W)
n = x.shape[0]
dW = x.T @ (tanh1 / n * (1 - tanh1**2))
"""

from __future__ import annotations

from . import datasets, linalg, nn, optim
from . import functions as _functions
from . import sympy_bridge as _sympy_bridge  # noqa: F401  (registers sympy_fn)
from .autodiff import grad
from .backends import BackendError
from .codegen import codegen
from .derivatives import hessian, hvp, jacobian, jvp, vjp
from .errors import ConstantOverflowError, DTypeError, InputError, ShapeError, SymdiffError, UnsupportedError
from .explain import Derivation, explain
from .functions import astype
from .graph import Expr, Input, Param, constant, inputs, params
from .nn import conv, dense, embedding, init_params, mse, sigmoid_cross_entropy, softmax_cross_entropy
from .ops import conv as _conv  # noqa: F401  (conv2d and its gradients; not sd.conv, the layer)
from .ops import dropout as _dropout  # noqa: F401  (the dropout mask; not sd.dropout, the public function)
from .ops import elementwise, index, leaves, matrix, reductions, shape  # each registers its entries in the op table
from .ops import linalg as _products  # noqa: F401  (matmul, tensordot; not sd.linalg, the public namespace)
from .ops import norm as _norm  # noqa: F401  (layer_norm, batch_norm)
from .ops import pool as _pool  # noqa: F401  (max_pool2d, avg_pool2d and their gradients)
from .parse import ParseError, parse
from .pictures import GraphvizNotFoundError, render, to_dot
from .printing import latex, to_sympy, to_text
from .runtime import CompiledFunction, compile
from .simplify import simplify
from .step import TrainStep, codegen_step, compile_step
from .sympy_bridge import from_sympy
from .testing import check_grad, numeric_grad
from .train import Callback, DivergenceError, EarlyStopping, History, evaluate, fit, load_params, save_params

del elementwise, index, leaves, matrix, reductions, shape  # imported for their entries only
# sd.<name> for every public op wrapper (functions.PUBLIC: the hand-written ones and those the op table defines)
globals().update({name: getattr(_functions, name) for name in _functions.PUBLIC})

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``sd.distributed`` (data-parallel training on Dask) is imported on first use, so that ``import symdiff``
    never imports Dask."""
    if name == "distributed":
        import importlib

        return importlib.import_module(".distributed", __name__)
    raise AttributeError(f"module 'symdiff' has no attribute {name!r}")


def __dir__() -> list[str]:
    """``dir(symdiff)`` lists the public API (``__all__``), not ``annotations`` or the internal modules."""
    return sorted([*__all__, "__version__"])


__all__ = [
    "BackendError",
    "Callback",
    "DivergenceError",
    "EarlyStopping",
    "History",
    "TrainStep",
    "codegen_step",
    "compile_step",
    "conv",
    "dense",
    "embedding",
    "evaluate",
    "fit",
    "init_params",
    "inputs",
    "linalg",
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
    "Derivation",
    "DTypeError",
    "Expr",
    "Input",
    "InputError",
    "Param",
    "ShapeError",
    "SymdiffError",
    "UnsupportedError",
    "astype",
    "check_grad",
    "codegen",
    "compile",
    "constant",
    "explain",
    "from_sympy",
    "grad",
    "hessian",
    "hvp",
    "jacobian",
    "jvp",
    "vjp",
    "latex",
    "mse",
    "numeric_grad",
    "sigmoid_cross_entropy",
    "simplify",
    "softmax_cross_entropy",
    "to_sympy",
    "to_text",
    *_functions.PUBLIC,
]
