"""Data-parallel evaluation and training on Dask: the same generated NumPy code, one chunk of rows per task.

``data`` maps input names to ``dask.array`` s chunked along the batch axis (axis 0) only, all with the same
chunks there. Each task evaluates the loss and its gradients on one chunk (or on some rows of one) with the
generated NumPy function, compiled once per worker process from its source (the source string travels, never a
pickled graph), and returns their SUMS over the chunk's rows: the chunk's mean times its rows. The sums are added
in a fixed binary tree, so the result does not depend on which worker ran what, and divided by the rows in all:
equal to one process on the same data up to rounding (a loss that is a mean over the batch plus terms of the params
alone, as :func:`symdiff.fit` expects; a batch statistic such as batch norm's does not decompose).

* :func:`value_and_grad` gives the loss and gradients over all the data (for ``scipy.optimize.minimize`` with
  ``jac=True``, see :func:`objective`).
* :func:`fit` is synchronous data-parallel minibatch training with symdiff's own optimizer update.

``pip install "symdiff[dask]"`` installs Dask; ``import symdiff`` does not import it (``sd.distributed`` does, when
first used). ``client`` is a ``dask.distributed.Client`` (``Client("scheduler-address:8786")`` for a real cluster);
``None`` uses Dask's current scheduler (the default client when one exists).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError('symdiff.distributed needs Dask: pip install "symdiff[dask]"') from None

from . import functions as F
from .autodiff import grad
from .codegen import Signature, codegen
from .errors import InputError
from .graph import Expr, Input, leaves
from .naming import NameAllocator, grad_name
from .optim import SGD, Optimizer
from .runtime import CompiledFunction, check_arrays
from .step import DivergenceError, TrainStep, _trainable
from .train import (
    Callback,
    Evaluator,
    History,
    Metric,
    Trainer,
    _correct,
    _count,
    _resume,
    _tqdm_write,
    end_epoch,
    history_keys,
    with_epoch_lines,
)

__all__ = ["epoch_order", "fit", "objective", "value_and_grad"]


# -- the program: generated on the client, compiled once per worker --------------------------------------------------
@dataclass(frozen=True)
class Program:
    """The generated source of ``(loss, *gradients)`` as a function of the params and one batch of inputs.

    It travels to the workers as text; :meth:`function` compiles it once per process (cached by its digest).
    """

    source: str
    name: str
    signature: Signature
    pnames: tuple[str, ...]
    digest: str

    def function(self) -> CompiledFunction:
        """The compiled function, from this process's cache (compiled on first use)."""
        fn = _COMPILED.get(self.digest)
        if fn is None:
            with _COMPILE_LOCK:
                fn = _COMPILED.get(self.digest)
                if fn is None:
                    fn = _COMPILED[self.digest] = CompiledFunction(self.source, self.name, self.signature)
        return fn

    @property
    def nbytes(self) -> int:
        """Bytes of the outputs (the loss and gradient sums one task sends back)."""
        return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for _, shape, dtype in self.signature.outputs)

    @property
    def inputs(self) -> list[str]:
        """The names of the loss's Inputs (the data)."""
        return [s.name for s in self.signature.symbols if s.kind == "input"]


_COMPILED: dict[str, CompiledFunction] = {}  # per process: Program.digest -> its compiled function
_COMPILE_LOCK = threading.Lock()


def program(loss: Expr, params: Iterable[str]) -> Program:
    """Generate the program of ``loss`` and its gradients with respect to the Params named ``params``."""
    names = list(params)
    return _generate([loss, *grad(loss, _trainable(loss, names))], "chunk_sums", names)


def _generate(outputs: list[Expr], name: str, pnames: Iterable[str]) -> Program:
    """The program of ``outputs`` (a tuple of arrays) under the function name ``name``."""
    source, signature = codegen(outputs, name=name, signature=True, optimize=True)
    return Program(source, name, signature, tuple(pnames), hashlib.sha1(source.encode()).hexdigest())


def _chunk_sums(
    prog: Program, params: Mapping[str, np.ndarray], chunk: Mapping[str, np.ndarray], rows: Any = None
) -> tuple[list[np.ndarray], int]:
    """On a worker: the loss and gradient sums over the rows of ``chunk`` (``rows`` of it when given), and the
    number of rows: ``([loss * m, *grads * m], m)``."""
    if rows is not None:
        chunk = {k: v[rows] for k, v in chunk.items()}
    m = len(next(iter(chunk.values())))
    outs = prog.function()(**params, **chunk)
    return [np.asarray(o) * m for o in outs], m


def _chunk_metrics(
    prog: Program, params: Mapping[str, np.ndarray], chunk: Mapping[str, np.ndarray], kind: str, gather: bool
) -> tuple[int, int, np.ndarray | None, np.ndarray | None]:
    """On a worker: the predictions of ``chunk`` measured: ``(right, counted, pred, target)``, the number of right
    predictions and of predictions counted (for accuracy), and the predictions and targets themselves only when
    ``gather`` (for metrics that need them all)."""
    names = {s.name for s in prog.signature.symbols}
    pred, target = prog.function()(**{k: v for k, v in {**params, **chunk}.items() if k in names})
    target = np.broadcast_to(target, np.shape(pred)[: np.ndim(target)])
    right = _correct(kind, pred, target)
    return int(np.count_nonzero(right)), int(right.size), *((pred, target) if gather else (None, None))


def _add(a: tuple[list[np.ndarray], int], b: tuple[list[np.ndarray], int]) -> tuple[list[np.ndarray], int]:
    """Two partial sums added (one node of the reduction tree)."""
    return [x + y for x, y in zip(a[0], b[0])], a[1] + b[1]


def _tree(parts: list[Any], add: Callable[[Any, Any], Any]) -> Any:
    """``parts`` added pairwise in a fixed binary tree (neighbours first): the same order on every run."""
    while len(parts) > 1:
        parts = [add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


# -- the data ---------------------------------------------------------------------------------------------------------
def check_data(prog: Program, params: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[int, ...]:
    """Check ``data`` against the program without computing it; returns the rows of each chunk.

    Every Input of the loss must be a dask array chunked along axis 0 only, all with the same chunks there, and of a
    dtype and trailing shape the loss accepts; the params must fit too. Errors name the input at fault.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"data must be a dict name -> dask array, got {type(data).__name__}")
    needed = prog.inputs
    if not needed:
        raise InputError("the loss has no Inputs: there is no data to distribute (use symdiff.fit)")
    missing = [k for k in needed if k not in data]
    if missing:
        raise InputError(
            f"data misses input {missing[0]!r} that the loss needs (it has: {', '.join(data) or 'nothing'})"
        )
    unused = [k for k in data if k not in needed]
    if unused:
        raise InputError(f"data has {unused[0]!r}, which the loss does not use (it needs: {', '.join(needed)})")
    first = None
    for k in needed:
        arr = data[k]
        if not isinstance(arr, da.Array):
            raise InputError(
                f"input {k!r} is a {type(arr).__name__}, not a dask array: "
                f"wrap it with dask.array.from_array({k}, chunks=(rows, *{k}.shape[1:]))"
            )
        if arr.ndim == 0:
            raise InputError(f"input {k!r} is 0-d: it has no batch axis to split")
        if any(np.isnan(c) for c in arr.chunks[0]):
            raise InputError(f"input {k!r} has chunks of unknown length: call {k}.compute_chunk_sizes() first")
        split = [axis for axis in range(1, arr.ndim) if arr.numblocks[axis] > 1]
        if split:
            raise InputError(
                f"input {k!r} is chunked along axis {split[0]} (chunks {arr.chunks[split[0]]}), not only along the "
                f"batch axis 0: rechunk it with {k}.rechunk({{{split[0]}: -1}})"
            )
        if first is None:
            first = (k, arr.chunks[0])
        elif arr.chunks[0] != first[1]:
            raise InputError(
                f"input {k!r} has chunks {arr.chunks[0]} along axis 0 but input {first[0]!r} has {first[1]}: "
                "the chunks of every input must hold the same rows (rechunk them alike)"
            )
    # dtypes and trailing shapes, on one row of zeros each (labels of zeros always lie in range)
    rows = {k: np.zeros((1, *data[k].shape[1:]), dtype=data[k].dtype) for k in needed}
    check_arrays(prog.signature.symbols, {**params, **rows}, "the loss")
    return tuple(int(c) for c in first[1])


def _chunks(data: Mapping[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """The chunks of ``data`` as delayed objects: one ``{name: block}`` per chunk, in order."""
    blocks = {k: data[k].to_delayed().reshape(-1) for k in names}
    return [{k: blocks[k][i] for k in names} for i in range(len(blocks[names[0]]))]


def _broadcast(params: Mapping[str, np.ndarray]) -> Any:
    """A copy of ``params`` as one node of the task graph, which every chunk's task reads.

    The client sends it once per step with the graph; workers fetch it from whichever worker holds it. Unlike
    ``client.scatter`` data it is recomputed if that worker dies (and ``scatter(broadcast=True)`` can fail when a
    worker leaves during the call).
    """
    return dask.delayed({k: np.array(v) for k, v in params.items()}, name=f"symdiff-params-{uuid.uuid4().hex}")


def _compute(total: Any, client: Any) -> Any:
    """The value of the graph ``total`` (a delayed value or a list of them), run on ``client`` (or Dask's current
    scheduler)."""
    return client.compute(total, sync=True) if client is not None else dask.compute(total)[0]


_GATHER = 8  # up to this many parts are added by the client (one round trip less per tree level) ...
_GATHER_BYTES = 16 * 2**20  # ... when their sums are this small: larger ones are added on the workers


def _sums(
    prog: Program, shared: Any, parts: list[tuple[dict[str, Any], Any]], client: Any
) -> tuple[list[np.ndarray], int]:
    """The loss and gradient sums over ``parts`` (chunk, rows or None), tree-reduced on the cluster.

    The program is one node of the graph (sent once, not with every task); keys are random (nothing is hashed).
    """
    node = dask.delayed(prog, name=f"symdiff-program-{uuid.uuid4().hex}", traverse=False)
    task = dask.delayed(_chunk_sums, pure=False)
    tasks = [task(node, shared, chunk, rows) for chunk, rows in parts]
    if len(tasks) <= _GATHER and len(tasks) * prog.nbytes <= _GATHER_BYTES:  # one round trip, then the tree here
        return _tree(list(_compute(tasks, client)), _add)
    return _compute(_tree(tasks, dask.delayed(_add, pure=False)), client)


def value_and_grad(
    loss: Expr, params: Mapping[str, np.ndarray], data: Mapping[str, Any], client: Any = None
) -> tuple[float, dict[str, np.ndarray]]:
    """The loss and its gradients over all of ``data`` (a dict of dask arrays chunked along axis 0).

    ``params``: name -> array for every Param of the loss; the gradients come back under the same names.
    Each chunk is evaluated on a worker by the generated NumPy code; only the sums travel back (the data never
    reaches the client). ``client``: a ``dask.distributed.Client``, or ``None`` for Dask's current scheduler.

    >>> import dask.array as da
    >>> import numpy as np
    >>> import symdiff as sd
    >>> w, x, y = sd.Param("w", shape=(2,)), sd.Input("x", shape=(None, 2)), sd.Input("y", shape=(None,))
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    >>> data = {"x": da.from_array(X, chunks=2), "y": da.from_array(X @ [2.0, -1.0], chunks=2)}  # two chunks
    >>> sd.distributed.value_and_grad(sd.mse(x @ w, y), {"w": np.zeros(2)}, data)
    (3.75, {'w': array([-4.5, -1.5])})
    """
    prog = program(loss, params)
    check_data(prog, params, data)
    return _value_and_grad(prog, params, _chunks(data, prog.inputs), client)


def _value_and_grad(
    prog: Program, params: Mapping[str, np.ndarray], chunks: list[dict[str, Any]], client: Any
) -> tuple[float, dict[str, np.ndarray]]:
    """:func:`value_and_grad` of a checked program over all of ``chunks``."""
    sums, n = _sums(prog, _broadcast(params), [(c, None) for c in chunks], client)
    return float(sums[0]) / n, {k: s / n for k, s in zip(prog.pnames, sums[1:])}


def objective(
    loss: Expr, params: Mapping[str, np.ndarray], data: Mapping[str, Any], client: Any = None
) -> tuple[Callable[[np.ndarray], tuple[float, np.ndarray]], np.ndarray, Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """``(fun, x0, unflatten)`` for ``scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B")``.

    ``fun(x)`` is :func:`value_and_grad` at the params packed in the float64 vector ``x`` (in the order of
    ``params``), returning the loss and the flat gradient; ``unflatten(x)`` gives the params dict back.

    >>> import dask.array as da
    >>> import numpy as np
    >>> import symdiff as sd
    >>> b, x, y = sd.Param("b", shape=()), sd.Input("x", shape=(None,)), sd.Input("y", shape=(None,))
    >>> data = {"x": da.arange(6.0, chunks=3), "y": da.zeros(6, chunks=3)}
    >>> fun, x0, unflatten = sd.distributed.objective(sd.mse(x + b, y), {"b": np.array(0.0)}, data)
    >>> value, gradient = fun(x0)  # mean((x + b)**2) at b = 0, and its derivative 2 * mean(x + b)
    >>> round(value, 4), gradient.round(4)
    (9.1667, array([5.]))
    >>> unflatten(np.array([-2.5]))
    {'b': array(-2.5)}
    """
    names = list(params)
    shapes = {k: np.shape(params[k]) for k in names}
    dtypes = {k: np.asarray(params[k]).dtype for k in names}
    sizes = [int(np.prod(shapes[k])) for k in names]
    cuts = np.cumsum(sizes)[:-1]
    prog = program(loss, names)
    check_data(prog, params, data)
    chunks = _chunks(data, prog.inputs)

    def unflatten(x: np.ndarray) -> dict[str, np.ndarray]:
        parts = np.split(np.asarray(x, dtype=np.float64), cuts)
        return {k: p.reshape(shapes[k]).astype(dtypes[k]) for k, p in zip(names, parts)}

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grads = _value_and_grad(prog, unflatten(x), chunks, client)
        return value, np.concatenate([np.ravel(grads[k]).astype(np.float64) for k in names])

    x0 = np.concatenate([np.ravel(params[k]).astype(np.float64) for k in names])
    return fun, x0, unflatten


# -- training ---------------------------------------------------------------------------------------------------------
def update_step(loss: Expr, params: dict[str, np.ndarray], optimizer: Optimizer) -> tuple[TrainStep, dict[str, str]]:
    """A generated training step that applies ``optimizer``'s update with given gradients.

    Its loss is ``sum(p * G_p)`` over the params, with ``G_p`` an Input: its gradient is ``G_p``, so
    ``step.run({G_p name: gradient})`` runs symdiff's own update (and divergence guard) on the gradient the workers
    computed. Returns the step and the Input name of each param's gradient.
    """
    found = {e.label: e for e in leaves([loss]) if e.op == "param"}
    alloc = NameAllocator(list(params))
    gnames = {k: alloc.take(f"{grad_name(k)}_sum") for k in params}
    terms = [F.sum(found[k] * Input(gnames[k], found[k].shape, found[k].dtype)) for k in params]
    surrogate = terms[0]
    for term in terms[1:]:
        surrogate = surrogate + term
    return TrainStep(surrogate, params, optimizer, name="apply_gradients"), gnames


def epoch_order(rng: np.random.Generator, lengths: tuple[int, ...], shuffle: bool = True) -> np.ndarray:
    """The global row order of one epoch: the chunks in a seeded random order, each chunk's rows shuffled.

    ``rng.permutation(len(lengths))`` orders the chunks, then ``rng.permutation(rows)`` shuffles each, in that
    order. With one chunk that is ``rng.permutation(n)``, the order :func:`symdiff.fit` draws (a permutation of one
    item draws nothing).

    >>> import numpy as np
    >>> import symdiff as sd
    >>> rng = np.random.default_rng(0)
    >>> sd.distributed.epoch_order(rng, (3, 2)).tolist()  # chunk 0 (rows 0 to 2) and chunk 1 (rows 3, 4)
    [2, 0, 1, 4, 3]
    >>> sd.distributed.epoch_order(rng, (3, 2), shuffle=False).tolist()
    [0, 1, 2, 3, 4]
    """
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if not shuffle:
        return np.arange(offsets[-1])
    order = rng.permutation(len(lengths))
    return np.concatenate([offsets[c] + rng.permutation(lengths[c]) for c in order])


def _batch_parts(rows: np.ndarray, offsets: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The rows of one batch grouped by the chunk that holds them: ``(chunk, local rows)``, in batch order."""
    chunk = np.searchsorted(offsets, rows, side="right") - 1
    cuts = np.flatnonzero(np.diff(chunk)) + 1
    return [(int(c[0]), r - offsets[c[0]]) for r, c in zip(np.split(rows, cuts), np.split(chunk, cuts))]


def fit(
    loss: Expr,
    params: dict[str, np.ndarray],
    data: Mapping[str, Any],
    optimizer: Optimizer | None = None,
    batch_size: int | None = 32,
    epochs: int = 1,
    client: Any = None,
    seed: int = 0,
    *,
    validation_data: Mapping[str, Any] | None = None,
    metrics: Iterable[Metric] = (),
    callbacks: Iterable[Callback] = (),
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    shuffle: bool = True,
    persist: bool = True,
) -> History:
    """Synchronous data-parallel minibatch training of ``params`` (updated in place) on dask arrays ``data``.

    Each epoch orders the rows by :func:`epoch_order` (seeded: the chunks shuffled, then the rows within each) and
    cuts that order into global batches of ``batch_size`` rows (``None``: every step takes all the rows, each chunk
    whole, in one full-batch step per epoch, and nothing is shuffled). A batch's rows are split by the chunks that hold
    them; each part's loss and gradient sums are computed where its chunk lives and added; the mean gradient goes
    through ``optimizer``'s generated update (see :func:`update_step`), and the new params go out with the next
    batch's tasks (one node of its graph, fetched by every worker that needs it). With ``persist`` (the default) the
    data is held in the cluster's memory for the run; ``persist=False`` trains on data larger than the cluster's
    memory: each task loads its chunk from its source (e.g. ``dask.array.from_npy_stack``, memory-mapped) again.

    With one chunk this takes :func:`symdiff.fit`'s batches in its order, and gives its params up to rounding (the
    batch mean is a sum divided by the rows, and ``lr`` multiplies the mean gradient instead of the backward pass).

    ``metrics``: as in :func:`symdiff.fit` (``"accuracy"`` or callables ``f(pred, target) -> float``), measured on
    all the training data after each epoch: accuracy is counted where each chunk lives; a callable gets the
    predictions and targets of every row, gathered on the client in row order (they must fit its memory).
    ``validation_data``: in-memory NumPy arrays for ``val_loss`` (and ``val_<metric>``); ``callbacks``,
    ``progress`` (epoch lines) and ``checkpoint`` (saved after each epoch, in :func:`symdiff.fit`'s format) work as
    there. Returns a :class:`symdiff.History` with :func:`symdiff.fit`'s keys, in its order; a non-finite loss or
    gradient raises :class:`symdiff.DivergenceError` naming the epoch and step, with the params at their last finite
    values.

    On a cluster of threads in this process (``Client("scheduler-address:8786")`` connects to a real one):

    >>> import dask.array as da
    >>> import numpy as np
    >>> import symdiff as sd
    >>> from dask.distributed import Client
    >>> w, x, y = sd.Param("w", shape=(2,)), sd.Input("x", shape=(None, 2)), sd.Input("y", shape=(None,))
    >>> X = da.from_array(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]), chunks=2)
    >>> params = {"w": np.zeros(2)}
    >>> with Client(processes=False, dashboard_address=None) as client:
    ...     history = sd.distributed.fit(sd.mse(x @ w, y), params, {"x": X, "y": X @ np.array([2.0, -1.0])},
    ...                                  sd.optim.SGD(lr=0.1), batch_size=2, epochs=20, client=client)
    >>> history.steps, params["w"].round(2).tolist()  # on its way to (2, -1)
    (40, [1.91, -0.85])
    """
    epochs = _count(epochs, "epochs", 0)
    batch_size = None if batch_size is None else _count(batch_size, "batch_size", 1)
    prog = program(loss, params)
    lengths = check_data(prog, params, data)
    step, gnames = update_step(loss, params, optimizer if optimizer is not None else SGD())
    n = sum(lengths)
    names = prog.inputs
    arrays = [data[k] for k in names]
    if persist:
        arrays = client.persist(arrays) if client is not None else dask.persist(*arrays)
    chunks = _chunks(dict(zip(names, arrays)), names)
    metrics = list(metrics)
    evaluator, measure, val = _evaluation(loss, params, names, metrics, validation_data, client)
    history = History()
    trainer = Trainer(step, params, history)
    callbacks = with_epoch_lines(callbacks, epochs, progress)
    rng = np.random.default_rng(seed)
    bs = n if batch_size is None else min(batch_size, n)
    run = {"batch_size": bs, "examples": n, "seed": int(seed), "shuffle": bool(shuffle), "chunks": list(lengths)}
    path = None if checkpoint is None else os.fspath(checkpoint)
    keys = history_keys(evaluator, metrics, val is not None)
    start = 0 if path is None else _resume(path, trainer, rng, run, epochs, keys, _tqdm_write if progress else None)
    for cb in callbacks:
        cb.on_train_begin(trainer)
    t0 = time.perf_counter()
    for epoch in range(start, epochs):
        total = 0.0
        for i, parts in enumerate(_epoch_batches(chunks, lengths, rng, shuffle, batch_size)):
            sums, m = _sums(prog, _broadcast(params), parts, client)
            _apply(step, sums, m, gnames, prog.pnames, epoch + 1, i + 1)
            total += float(sums[0])
        logs = {"loss": total / n, **(measure(chunks) if measure is not None else {})}
        if val is not None:
            logs.update({f"val_{k}": v for k, v in evaluator(params, val).items()})
        if end_epoch(trainer, callbacks, epoch, logs, path, rng, run):
            break
    history.seconds = time.perf_counter() - t0
    history.steps = step.t
    return history


def _epoch_batches(
    chunks: list[dict[str, Any]], lengths: Sequence[int], rng: np.random.Generator, shuffle: bool, size: int | None
) -> Iterable[list[tuple[dict[str, Any], np.ndarray | None]]]:
    """One epoch's global batches of :func:`fit`, each as its parts ``(chunk, rows of it or None: all)``: ``size``
    rows each in :func:`epoch_order`, or (``None``) one full batch of every chunk whole, nothing shuffled."""
    if size is None:
        yield [(c, None) for c in chunks]
        return
    n = sum(lengths)
    size = min(size, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    order = epoch_order(rng, lengths, shuffle)
    for lo in range(0, n, size):
        yield [(chunks[c], rows) for c, rows in _batch_parts(order[lo : lo + size], offsets)]


def _evaluation(
    loss: Expr,
    params: Mapping[str, np.ndarray],
    names: list[str],
    metrics: list[Metric],
    validation_data: Mapping[str, Any] | None,
    client: Any,
) -> tuple[Evaluator | None, Callable | None, dict[str, np.ndarray] | None]:
    """What :func:`fit` measures after each epoch: the evaluator of ``loss`` and ``metrics``, the training-data
    measure over the chunks (with metrics) and the checked validation arrays (with ``validation_data``)."""
    evaluator = Evaluator(loss, metrics) if metrics or validation_data is not None else None
    measure = _measure(evaluator, params, client) if metrics else None
    val = None
    if validation_data is not None:
        val = evaluator.fn.check({**params, **{k: np.asarray(validation_data[k]) for k in names}})
        val = {k: val[k] for k in names}
    return evaluator, measure, val


def _measure(
    evaluator: Evaluator, params: Mapping[str, np.ndarray], client: Any
) -> Callable[[list[dict[str, Any]]], dict[str, float]]:
    """The training-data metrics of :func:`fit`: a function of the chunks giving ``{metric name: value}`` at the
    current ``params``, as :class:`symdiff.train.Evaluator` gives them over in-memory data."""
    info = evaluator.info
    prog = _generate([info.pred, info.target], "chunk_metrics", params)
    gather = any(callable(m) for m in evaluator.metrics)

    def measure(chunks: list[dict[str, Any]]) -> dict[str, float]:
        node = dask.delayed(prog, name=f"symdiff-program-{uuid.uuid4().hex}", traverse=False)
        task = dask.delayed(_chunk_metrics, pure=False)
        shared = _broadcast(params)
        parts = _compute([task(node, shared, chunk, info.kind, gather) for chunk in chunks], client)
        right, counted = sum(p[0] for p in parts), sum(p[1] for p in parts)
        if gather:
            pred, target = (np.concatenate([p[i] for p in parts]) for i in (2, 3))
        return {name: right / counted if metric == "accuracy" else float(metric(pred, target))
                for metric, name in zip(evaluator.metrics, evaluator.names())}  # fmt: skip

    return measure


def _apply(
    step: TrainStep, sums: list[np.ndarray], m: int, gnames: dict[str, str], pnames: tuple[str, ...], epoch: int, i: int
) -> None:
    """One update from a batch's loss and gradient sums over its ``m`` rows; divergence names the epoch and step."""
    found = "loss" if not np.isfinite(sums[0]) else ""
    if not found:
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                step.run({gnames[k]: np.asarray(s / m) for k, s in zip(pnames, sums[1:])})
            return
        except DivergenceError as exc:
            found = exc.found.removeprefix("not finite: ")
    raise DivergenceError(
        f"training diverged at epoch {epoch}, step {i}: not finite: {found}; the params keep their last finite values",
        f"not finite: {found}",
    )
