"""Checking generated code: central differences in float64, random test data, and generated pytest files.

For users and for symdiff's own tests: :func:`check_grad` compares gradients with central differences
(:func:`numeric_grad`), :func:`interpret` evaluates a graph with the op table's reference implementations,
:func:`random_values` makes data for any graph, :func:`compare_with_compile` checks a generated module
against :func:`symdiff.compile`, and :func:`generated_tests` writes the pytest file that
``symdiff codegen --tests`` saves next to a generated module.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .autodiff import grad
from .graph import Expr, check_targets_used, const_value, constant, leaves, make, topo_order, with_args

__all__ = [
    "TEST_TEMPLATE",
    "check_grad",
    "check_module",
    "compare_with_compile",
    "generated_tests",
    "interpret",
    "label_bounds",
    "numeric_grad",
    "random_values",
    "to_float64",
]


def to_float64(exprs: Sequence[Expr]) -> list[Expr]:
    """The same graphs with every float symbol, constant and cast in float64 (for precise checks).

    >>> import symdiff as sd
    >>> h = sd.Input("h", shape=(2,), dtype="float32")
    >>> to_float64([h * 2.0])[0].dtype
    dtype('float64')
    """
    memo: dict[int, Expr] = {}
    for n in topo_order(exprs):
        if n.is_symbol and n.dtype.kind == "f" and n.dtype != np.float64:
            attrs = dict(n.attrs, dtype=np.dtype("float64").str)
            new = make(n.op, (), attrs)
        elif n.op == "const" and n.dtype.kind == "f" and n.dtype != np.float64 and not n.attrs["weak"]:
            new = constant(n.attrs["value"].array.astype(np.float64))
        elif n.op == "cast" and np.dtype(n.attrs["dtype"]).kind == "f":
            new = make("cast", (memo[id(n.args[0])],), dict(n.attrs, dtype=np.dtype("float64").str))
        else:
            new = with_args(n, tuple(memo[id(a)] for a in n.args))
        memo[id(n)] = new
    return [memo[id(e)] for e in exprs]


def interpret(
    exprs: Expr | Sequence[Expr],
    values: Mapping[str, Any],
    cache: dict[int, tuple[Expr, np.ndarray]] | None = None,
) -> np.ndarray | list[np.ndarray]:
    """The value of ``exprs`` (one expression, or a list for a list) computed node by node with each op's
    reference NumPy implementation (``impl`` in the op table), independently of the code generator.

    ``values`` maps symbol names to arrays. ``cache`` (``id(node) -> (node, value)``, filled in) carries the
    values of nodes already computed from one call to the next with the same ``values``.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> x = sd.Input("x", shape=(2, 3))
    >>> interpret(sd.sum(x * 2.0), {"x": np.ones((2, 3))})
    array(12.)
    """
    cache = {} if cache is None else cache
    roots = [exprs] if isinstance(exprs, Expr) else list(exprs)
    for node in topo_order(roots):
        if id(node) in cache:
            continue
        if node.is_symbol:
            v = np.asarray(values[node.label])
        elif node.op == "const":
            v = const_value(node)
        else:
            v = np.asarray(node.opdef.impl(node.attrs, *(cache[id(a)][1] for a in node.args)))
        cache[id(node)] = (node, v)  # the node too: it stays alive, so its id stays its own
    out = [cache[id(r)][1] for r in roots]
    return out[0] if isinstance(exprs, Expr) else out


def numeric_grad(
    f: Any, values: Mapping[str, np.ndarray], name: str, eps: float = 1e-6, indices: Sequence[tuple] | None = None
) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f(**values)`` with respect to ``values[name]``.

    Only the elements at ``indices`` are computed when given (the others are left as NaN).

    >>> numeric_grad(lambda x: np.sum(x**3), {"x": np.array([1.0, -2.0])}, "x").round(4)  # 3 x**2
    array([ 3., 12.])
    """
    base = {
        k: np.array(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
        for k, v in values.items()
    }
    x = base[name]
    out = np.full(x.shape, np.nan)
    for idx in indices if indices is not None else np.ndindex(x.shape):
        orig = x[idx]
        x[idx] = orig + eps
        fp = float(f(**base))
        x[idx] = orig - eps
        fm = float(f(**base))
        x[idx] = orig
        out[idx] = (fp - fm) / (2 * eps)
    return out


def check_grad(
    loss: Expr,
    wrt: Expr | Sequence[Expr],
    values: Mapping[str, Any],
    *,
    eps: float = 1e-6,
    max_points: int = 256,
    seed: int = 0,
) -> float:
    """Largest relative error between symdiff's gradients and central differences, in float64.

    For each target, ``max|analytic - numeric| / max(max|analytic|, max|numeric|, 1e-6)`` over up to
    ``max_points`` elements (all when the target is that small, else a seeded random sample); the maximum
    over targets is returned. Values below ~1e-6 mean the gradients agree to rounding.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> x = sd.Input("x", shape=(3,))
    >>> sd.check_grad(sd.sum(sd.tanh(x) ** 2), x, {"x": np.array([0.1, -0.5, 2.0])}) < 1e-6
    True
    """
    from .runtime import compile as _compile

    targets = [wrt] if isinstance(wrt, Expr) else list(wrt)
    check_targets_used([loss], targets, "check_grad")
    graph = to_float64([loss, *targets])
    loss64, targets64 = graph[0], graph[1:]
    grads = grad(loss64, targets64)
    f_loss = _compile(loss64, name="loss")
    f_grads = _compile({f"g{i}": g for i, g in enumerate(grads)}, name="grads")
    names = {t.label for t in targets64}
    inputs = {k: v for k, v in values.items() if k in f_grads.inputs or k in f_loss.inputs or k in names}
    analytic = f_grads(**{k: v for k, v in inputs.items() if k in f_grads.inputs})
    rng = np.random.default_rng(seed)
    worst = 0.0

    def f(**kw: Any) -> Any:
        return f_loss(**{k: v for k, v in kw.items() if k in f_loss.inputs})

    for i, t in enumerate(targets64):
        name = t.label
        if name is None or name not in values:
            raise ValueError(f"check_grad: targets must be symbols with values, missing {name!r}")
        shape = np.shape(values[name])
        size = int(np.prod(shape))
        if size <= max_points:
            idx = list(np.ndindex(shape))
        else:
            idx = [np.unravel_index(j, shape) for j in rng.choice(size, max_points, replace=False)]
        num = numeric_grad(f, inputs, name, eps=eps, indices=idx)
        ana = np.broadcast_to(analytic[f"g{i}"], shape)
        sel = tuple(np.array(ix) for ix in zip(*idx)) if shape else ()
        a, n = np.asarray(ana[sel], dtype=np.float64), np.asarray(num[sel])
        scale = max(float(np.max(np.abs(a), initial=0)), float(np.max(np.abs(n), initial=0)), 1e-6)
        worst = max(worst, float(np.max(np.abs(a - n), initial=0)) / scale)
    return worst


def label_bounds(roots: Sequence[Expr]) -> dict[str, int]:
    """For integer inputs used as class labels (``pick``, ``onehot``) or ids (``take``): name -> the number of
    classes (rows).

    >>> import symdiff as sd
    >>> z, y = sd.Input("z", shape=(None, 4)), sd.Input("y", shape=(None,), dtype="int64")
    >>> label_bounds([sd.softmax_cross_entropy(z, y)])
    {'y': 4}
    """
    bounds: dict[str, int] = {}
    for n in topo_order(roots):
        found = None
        if n.op == "pick" and n.args[1].op == "input" and n.args[0].shape and n.args[0].shape[-1]:
            found = (n.args[1].label, n.args[0].shape[-1])
        elif n.op == "onehot" and n.args[0].op == "input":
            found = (n.args[0].label, int(n.attrs["depth"]))
        elif n.op == "take" and n.args[1].op == "input" and n.args[0].shape[n.attrs["axis"]]:
            found = (n.args[1].label, n.args[0].shape[n.attrs["axis"]])
        if found:
            bounds[found[0]] = min(bounds.get(found[0], found[1]), found[1])
    return bounds


def random_values(roots: Sequence[Expr], seed: int = 0, batch: int = 5) -> dict[str, np.ndarray]:
    """Random arrays for every symbol of ``roots``: ``None`` axes get length ``batch``; integer labels
    stay below the number of classes their ``pick``/``onehot`` uses (2 when unused as labels).

    >>> import symdiff as sd
    >>> x, y = sd.Input("x", shape=(None, 3)), sd.Input("y", shape=(None,), dtype="int64")
    >>> loss = sd.softmax_cross_entropy(x @ sd.Param("W", shape=(3, 2)), y)
    >>> {name: (value.shape, value.dtype.name) for name, value in random_values([loss], batch=4).items()}
    {'x': ((4, 3), 'float64'), 'W': ((3, 2), 'float64'), 'y': ((4,), 'int64')}
    """
    rng = np.random.default_rng(seed)
    bounds = label_bounds(roots)
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


# The pytest file ``symdiff codegen --tests`` writes; :func:`generated_tests` fills it in.
TEST_TEMPLATE = '''\
"""pytest checks of {module}.py, generated by symdiff (`symdiff codegen --tests`): numpy and pytest only.

The gradients {module}.py computes are compared with central differences of the loss it computes, at
random points, so the generated code carries its own proof. Run: python -m pytest -q {test_file}
"""

from __future__ import annotations

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


{numeric_grad}

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
    central = numeric_grad(lambda **kw: FN(**kw)["loss"], values, name, EPS, points)
    numeric = np.array([central[idx] for idx in points])
    got = np.array([analytic[idx] for idx in points])
    scale = max(np.max(np.abs(got), initial=0.0), np.max(np.abs(numeric), initial=0.0), 1e-6)
    error = np.max(np.abs(got - numeric), initial=0.0) / scale
    assert error < TOLERANCE, f"d{{name}}: relative error {{error:.2e}} against central differences"
'''


def generated_tests(module: str, name: str, loss: Expr, params: Sequence[Expr], test_file: str) -> str:
    """The pytest file (numpy and pytest only) that checks the gradients of the generated ``module``.

    ``module``'s function ``name`` must return ``"loss"`` and ``"d<param>"`` for every param of ``loss``; the
    tests compare those gradients with central differences of its loss at random points (see :data:`TEST_TEMPLATE`).
    ``test_file`` is the name the file will have (quoted in its docstring).

    >>> import symdiff as sd
    >>> W = sd.Param("W", shape=(3,))
    >>> source = generated_tests("model", "loss_and_grads", sd.sum(W**2), [W], "test_model.py")
    >>> [line for line in source.splitlines() if line.startswith("def test_")]
    ['def test_outputs_have_the_right_shapes():', 'def test_gradient_matches_central_differences(name, seed):']
    """

    bounds = label_bounds([loss])
    rows = []
    for n in leaves([loss]):
        rows.append(f"    {n.label!r}: ({n.op!r}, {n.shape!r}, {n.dtype.name!r}, {bounds.get(n.label, 2)!r}),")
    symbols = "{\n" + "\n".join(rows) + "\n}"
    gradients = "{" + ", ".join(f"{p.label!r}: {'d' + p.label!r}" for p in params) + "}"
    low = any(n.dtype.kind == "f" and n.dtype.itemsize < 8 for n in leaves([loss]))
    eps, tol = (1e-3, 2e-2) if low else (1e-6, 1e-5)
    fields = dict(module=module, name=name, test_file=test_file, symbols=symbols, gradients=gradients, eps=eps, tol=tol)
    # numeric_grad's own source: the one implementation of central differences, copied into the file (docstring too:
    # its example uses only names the file has, np and numeric_grad)
    return TEST_TEMPLATE.format(**fields, numeric_grad=inspect.getsource(numeric_grad))


def compare_with_compile(
    fn: Callable[..., Mapping[str, Any]],
    outputs: Mapping[str, Expr],
    *,
    roots: Sequence[Expr] | None = None,
    what: str = "the function",
    name: str = "check",
    seeds: int = 3,
) -> float:
    """Check ``fn`` (e.g. a generated module's function) against ``symdiff.compile(outputs)`` on random data.

    Both are called with :func:`random_values` of the symbols of ``roots`` (default: the outputs) for seeds
    ``0 .. seeds-1``; they must return the same keys and, per key, the same shape and values (to
    ``rtol=1e-12``, nan where the other has nan). Returns the largest absolute difference between finite
    values. Raises ``ValueError`` naming ``what`` and the first output that differs.

    >>> import symdiff as sd
    >>> x = sd.Input("x", shape=(None, 3))
    >>> compare_with_compile(lambda x: {"double": x + x}, {"double": 2 * x})
    0.0
    """
    from .runtime import compile as _compile

    compiled = _compile(dict(outputs), name=name)
    roots = list(outputs.values()) if roots is None else list(roots)
    worst = 0.0
    for seed in range(seeds):
        values = random_values(roots, seed=seed)
        got, want = fn(**values), compiled(**values)
        if list(got) != list(want):
            raise ValueError(f"check failed: {what} returns {list(got)}, sd.compile returns {list(want)}")
        for k in want:
            a, b = np.asarray(got[k], dtype=np.float64), np.asarray(want[k], dtype=np.float64)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True):
                raise ValueError(f"check failed: output {k!r} of {what} differs from sd.compile on random data")
            both = np.isfinite(a) & np.isfinite(b)
            worst = max(worst, float(np.max(np.abs(a[both] - b[both]), initial=0.0)))
    return worst


def check_module(path: str | os.PathLike, name: str, outputs: Mapping[str, Expr], **kwargs: Any) -> float:
    """Import the generated module at ``path`` and check its function ``name`` with :func:`compare_with_compile`
    (``kwargs`` go there); returns the largest difference. Raises ``ValueError`` when it cannot be imported
    or defines no such function.

    >>> import os, tempfile
    >>> import symdiff as sd
    >>> x = sd.Input("x", shape=(None, 3))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "double.py")
    ...     with open(path, "w") as file:
    ...         _ = file.write(sd.codegen({"double": 2 * x}, name="double"))
    ...     check_module(path, "double", {"double": 2 * x})
    0.0
    """
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"_symdiff_check_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if fn is None:
        raise ValueError(f"{path} defines no function {name!r}")
    return compare_with_compile(fn, outputs, what=str(path), name=name, **kwargs)
