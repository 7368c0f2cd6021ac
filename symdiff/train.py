"""``fit``: minibatch gradient descent driven by the generated training step.

Per epoch the data is shuffled once with a seeded generator, cut into views of ``batch_size`` rows
(the last partial batch included; ``batch_size=None`` is full-batch, ``1`` is true SGD), and each batch
goes through one generated step that computes loss and gradients and updates the params in place.
Training that produces a non-finite loss or gradient stops with :class:`DivergenceError`, keeping the
last finite params. With ``checkpoint=`` the params, optimizer state, epoch, RNG state and history are
saved (atomically) after every epoch and a later call resumes from them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError, SymdiffError
from .graph import Expr, topo_order
from .optim import SGD, Optimizer
from .runtime import compile as _compile
from .step import TrainStep

__all__ = [
    "Callback",
    "EarlyStopping",
    "History",
    "DivergenceError",
    "evaluate",
    "fit",
    "load_params",
    "save_params",
]

Metric = str | Callable[[np.ndarray, np.ndarray], float]


class DivergenceError(SymdiffError, FloatingPointError):
    """The loss or a gradient stopped being finite; the params keep their last finite values."""


@dataclass
class History:
    """What ``fit`` measured: ``history[key]`` has one entry per epoch (Keras-style keys)."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0

    def plot(self, path: str | None = None, keys: Sequence[str] | None = None) -> Any:
        """Plot the curves (matplotlib, an optional extra); save to ``path`` when given. Returns the figure."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install 'symdiff[plot]'") from None
        keys = list(keys or self.history)
        if path is None:  # interactive: a pyplot figure the notebook or window shows
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
        else:  # a file: a standalone figure, leaving pyplot's backend and state alone
            fig = Figure(figsize=(6, 4))
            ax = fig.subplots()
        for k in keys:
            ax.plot(self.epoch, self.history[k], marker="o", label=k)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


class Callback:
    """Hooks called by ``fit``; set ``trainer.stop_training = True`` to stop after this epoch."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float], trainer: Trainer) -> None:
        """Called after each epoch with that epoch's measurements."""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best`` the params are set back to those of the best epoch when training stops.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best: bool = True,
    ) -> None:
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.restore_best = restore_best
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0
        self._best_params: dict[str, np.ndarray] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait, self.best_epoch, self._best_params = 0, -1, None

    def on_epoch_end(self, epoch: int, logs: dict[str, float], trainer: Trainer) -> None:
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r}, which fit does not measure (it measures: {', '.join(logs)})"
            )
        value = logs[self.monitor]
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best_params = {k: v.copy() for k, v in trainer.params.items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop_training = True
            if self.restore_best and self._best_params is not None:
                for k, v in self._best_params.items():
                    np.copyto(trainer.params[k], v)


# -- params on disk -------------------------------------------------------------------------
def _atomic_savez(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".symdiff-", suffix=".tmp", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions a plain open() would give, not mkstemp's 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_params(params: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write ``params`` to an ``.npz`` file atomically (a temporary file, then a rename)."""
    _atomic_savez(path, {k: np.asarray(v) for k, v in params.items()})


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read params saved by :func:`save_params` (name -> array)."""
    with np.load(os.fspath(path), allow_pickle=False) as f:
        return {k: f[k].copy() for k in f.files}


# -- metrics ----------------------------------------------------------------------------------
def _classifier(loss: Expr) -> tuple[str, Expr, Expr] | None:
    """(kind, logits, targets) of a cross-entropy loss, found in its graph."""
    order = topo_order([loss])
    for n in order:
        if n.op == "pick" and n.args[0].op == "log_softmax":
            return "labels", n.args[0].args[0], n.args[1]
    for n in order:
        if n.op == "mul" and any(a.op == "log_softmax" for a in n.args):
            z = next(a for a in n.args if a.op == "log_softmax").args[0]
            t = next(a for a in n.args if a.op != "log_softmax")
            return "probs", z, t
    for n in order:
        if n.op == "sub" and n.args[0].op == "softplus" and n.args[1].op == "mul":
            z = n.args[0].args[0]
            others = [a for a in n.args[1].args if a is not z]
            if others:
                return "binary", z, others[0]
    return None


def _regression(loss: Expr) -> tuple[str, Expr, Expr] | None:
    """("values", predictions, targets) of an mse-style loss: mean((pred - target) ** 2)."""
    for n in topo_order([loss]):
        if n.op == "pow" and n.args[0].op == "sub" and n.args[1].op == "const":
            return "values", n.args[0].args[0], n.args[0].args[1]
    return None


def _accuracy(kind: str, pred: np.ndarray, target: np.ndarray) -> float:
    if kind == "labels":
        return float(np.mean(np.argmax(pred, axis=-1) == target))
    if kind == "probs":
        return float(np.mean(np.argmax(pred, axis=-1) == np.argmax(target, axis=-1)))
    return float(np.mean((pred > 0) == (target > 0.5)))


class Evaluator:
    """Loss and metrics of a model over a whole data set, in chunks."""

    def __init__(self, loss: Expr, metrics: Iterable[Metric] = ()) -> None:
        self.metrics = list(metrics)
        for m in self.metrics:
            if not callable(m) and m != "accuracy":
                raise ValueError(f"unknown metric {m!r}; use 'accuracy' or a callable f(pred, target) -> float")
        self.found = _classifier(loss) or _regression(loss)
        outputs: dict[str, Expr] = {"loss": loss}
        if self.metrics:
            if self.found is None or ("accuracy" in self.metrics and self.found[0] == "values"):
                raise ValueError(
                    "metrics need predictions: 'accuracy' needs a softmax or sigmoid cross-entropy loss, callables "
                    "also work with an mse loss (fit finds the predictions and targets in its graph)"
                )
            outputs["pred"], outputs["target"] = self.found[1], self.found[2]
        self.fn = _compile(outputs, name="evaluate")

    def names(self) -> list[str]:
        """Metric names, in order."""
        return [m if isinstance(m, str) else getattr(m, "__name__", "metric") for m in self.metrics]

    def __call__(
        self, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray], chunk: int = 4096
    ) -> dict[str, float]:
        n = len(next(iter(data.values())))
        total, preds, targets = 0.0, [], []
        args = {k: v for k, v in params.items() if k in self.fn.inputs}
        for start in range(0, n, chunk):
            batch = {k: v[start : start + chunk] for k, v in data.items() if k in self.fn.inputs}
            out = self.fn.fn(**args, **batch)
            m = len(next(iter(batch.values()))) if batch else n
            total += float(out["loss"]) * m
            if self.metrics:
                preds.append(out["pred"])
                targets.append(np.broadcast_to(out["target"], np.shape(out["pred"])[: np.ndim(out["target"])]))
        logs = {"loss": total / n}
        if self.metrics:
            pred, target = np.concatenate(preds), np.concatenate(targets)
            for metric, name in zip(self.metrics, self.names()):
                if metric == "accuracy":
                    logs[name] = _accuracy(self.found[0], pred, target)
                elif callable(metric):
                    logs[name] = float(metric(pred, target))
                else:
                    raise ValueError(f"unknown metric {metric!r}; use 'accuracy' or a callable f(pred, target)")
        return logs


def evaluate(
    loss: Expr, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray], metrics: Iterable[Metric] = ()
) -> dict[str, float]:
    """The loss (and ``metrics``) of ``params`` over all of ``data``."""
    ev = Evaluator(loss, metrics)
    data = _check_data(ev.fn.inputs, data, "data", params)
    checked = ev.fn.check({**{k: v for k, v in params.items() if k in ev.fn.inputs}, **data})  # labels in range...
    return ev(params, {k: checked[k] for k in data})


# -- the training loop ----------------------------------------------------------------------
def _check_data(
    needed: Iterable[str], data: Mapping[str, Any], what: str, params: Mapping[str, Any] = ()
) -> dict[str, np.ndarray]:
    if not isinstance(data, Mapping):
        raise TypeError(f"{what} must be a dict name -> array, got {type(data).__name__}")
    needed = [k for k in needed if k not in params]
    missing = [k for k in needed if k not in data]
    if missing:
        have = ", ".join(data) or "nothing"
        raise InputError(f"{what} misses input {missing[0]!r} that the loss needs (it has: {have})")
    arrays = {k: np.asarray(v) for k, v in data.items() if k in needed}
    unused = [k for k in data if k not in needed]
    if unused:
        raise InputError(f"{what} has {unused[0]!r}, which the loss does not use (it needs: {', '.join(needed)})")
    lengths = {k: (v.shape[0] if v.ndim else None) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise InputError(f"{what} arrays must share their length along axis 0: {listed}")
    if arrays and next(iter(lengths.values())) in (None, 0):
        raise InputError(f"{what} arrays are empty or 0-d")
    return arrays


@dataclass
class Trainer:
    """The state of a running ``fit`` (what callbacks see)."""

    step: TrainStep
    params: dict[str, np.ndarray]
    history: History
    stop_training: bool = False


def _save_checkpoint(path: str, trainer: Trainer, epoch: int, rng: np.random.Generator) -> None:
    meta = {
        "epoch": epoch,
        "t": trainer.step.t,
        "rng": rng.bit_generator.state,
        "history": trainer.history.history,
        "epochs_done": trainer.history.epoch,
        "optimizer": repr(trainer.step.optimizer),
        "stopped": trainer.stop_training,  # an early-stopped run is finished: resuming it trains nothing
    }
    arrays = {f"param:{k}": v for k, v in trainer.params.items()}
    arrays.update({f"state:{k}": v for k, v in trainer.step.state.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    _atomic_savez(path, arrays)


def _load_checkpoint(path: str, trainer: Trainer, rng: np.random.Generator) -> tuple[int, bool]:
    """Restore a checkpoint into ``trainer``; returns (first epoch to run, whether training had stopped)."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        saved = meta.get("optimizer")
        current = repr(trainer.step.optimizer)
        if saved != current:
            raise ValueError(
                f"checkpoint {path!r} was saved by a run with {saved}, this run uses {current}: "
                "resume with the same optimizer, or start afresh with another checkpoint path"
            )
        names = {k.split(":", 1)[1] for k in f.files if k.startswith("param:")}
        if names != set(trainer.params):
            differ = sorted(names.symmetric_difference(trainer.params))
            raise ValueError(f"checkpoint {path!r} belongs to another model (params {', '.join(differ)} differ)")
        for k, target in [
            *((f"param:{k}", v) for k, v in trainer.params.items()),
            *((f"state:{k}", v) for k, v in trainer.step.state.items()),
        ]:
            if k not in f.files or f[k].shape != target.shape:
                raise ValueError(f"checkpoint {path!r} belongs to another model ({k} is missing or has another shape)")
            np.copyto(target, f[k])
    trainer.step.t = int(meta["t"])
    rng.bit_generator.state = meta["rng"]
    trainer.history.history = {k: list(v) for k, v in meta["history"].items()}
    trainer.history.epoch = list(meta["epochs_done"])
    return int(meta["epoch"]) + 1, bool(meta.get("stopped", False))


def fit(
    loss: Expr,
    params: dict[str, np.ndarray],
    data: Mapping[str, Any],
    *,
    optimizer: Optimizer | None = None,
    batch_size: int | None = 32,
    epochs: int = 1,
    seed: int = 0,
    validation_data: Mapping[str, Any] | None = None,
    metrics: Iterable[Metric] = (),
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    shuffle: bool = True,
) -> History:
    """Train ``params`` (updated in place) to lower ``loss`` on ``data`` by minibatch gradient descent.

    Parameters:
        loss: a scalar expression, a mean over the batch (its epoch value is the size-weighted mean).
        params: name -> array for every Param of the loss (see :func:`symdiff.init_params`).
        data: name -> array for every Input of the loss; all share their length along axis 0.
        optimizer: an optimizer from :mod:`symdiff.optim` (default ``SGD(lr=0.01)``).
        batch_size: rows per step; ``None`` for full-batch gradient descent.
        epochs: passes over the data. seed: the shuffling generator's seed (same seed, same result).
        validation_data: data to report ``val_loss`` (and ``val_<metric>``) on after each epoch.
        metrics: ``"accuracy"`` (integer labels, probability targets or binary targets) or callables
            ``f(pred, target) -> float``, measured on the training data after each epoch.
        callbacks: e.g. :class:`EarlyStopping`. progress: show a tqdm progress bar.
        checkpoint: an ``.npz`` path; saved after each epoch, resumed from when it exists.

    Returns:
        A :class:`History` with one entry per epoch under ``loss``, ``val_loss``, ``accuracy``, ...

    Raises:
        DivergenceError: a non-finite loss or gradient, naming the epoch and step.
    """
    from tqdm.auto import tqdm

    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    step = TrainStep(loss, params, optimizer if optimizer is not None else SGD())
    arrays = step.check(_check_data(step.inputs, data, "data"))
    n = len(next(iter(arrays.values())))
    bs = n if batch_size is None else min(batch_size, n)
    metrics = list(metrics)
    evaluator = Evaluator(loss, metrics) if metrics or validation_data is not None else None
    val = None
    if validation_data is not None:
        val = step.check(_check_data(step.inputs, validation_data, "validation_data"))
    history = History()
    trainer = Trainer(step, step.params, history)
    callbacks = list(callbacks)
    rng = np.random.default_rng(seed)
    start = 0
    if checkpoint is not None:
        folder = os.path.dirname(os.path.abspath(os.fspath(checkpoint)))
        if not os.path.isdir(folder):
            raise InputError(f"checkpoint {os.fspath(checkpoint)!r}: folder {folder!r} does not exist")
    if checkpoint is not None and os.path.exists(checkpoint):
        start, stopped = _load_checkpoint(os.fspath(checkpoint), trainer, rng)
        if stopped:
            start = epochs  # the run this checkpoint comes from was stopped (early stopping): it is finished
    for cb in callbacks:
        cb.on_train_begin(trainer)
    t0 = time.perf_counter()
    nbatches = -(-n // bs)
    # Shuffled copies live in buffers allocated once: each epoch gathers into them (no new memory).
    shuffled = {k: np.empty_like(v) for k, v in arrays.items()} if shuffle else arrays
    # NumPy would warn on overflow or nan inside a step; the divergence guard reports those as one clear error.
    old_err = np.seterr(over="ignore", invalid="ignore", divide="ignore")
    try:
        for epoch in range(start, epochs):
            if shuffle:
                perm = rng.permutation(n)
                for k, v in arrays.items():
                    np.take(v, perm, axis=0, out=shuffled[k], mode="clip")  # clip: unbuffered; perm is in range
            total = 0.0
            every = max(1, nbatches // 50)
            with tqdm(
                total=nbatches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False, unit="step"
            ) as bar:
                for i, lo in enumerate(range(0, n, bs)):
                    batch = {k: v[lo : lo + bs] for k, v in shuffled.items()}
                    try:
                        value = step.run(batch)
                    except FloatingPointError as exc:
                        raise DivergenceError(
                            f"training diverged at epoch {epoch + 1}, step {i + 1}: {exc}; "
                            "the params keep their last finite values"
                        ) from None
                    total += value * min(bs, n - lo)
                    if (i + 1) % every == 0:
                        bar.set_postfix(loss=f"{total / min(n, lo + bs):.4g}", refresh=False)
                        bar.update(every)
                bar.update(nbatches - bar.n)
            logs = {"loss": total / n}
            if metrics:
                train_logs = evaluator(step.params, arrays)
                logs.update({k: v for k, v in train_logs.items() if k != "loss"})
            if val is not None:
                logs.update({f"val_{k}": v for k, v in evaluator(step.params, val).items()})
            for k, v in logs.items():
                history.history.setdefault(k, []).append(v)
            history.epoch.append(epoch + 1)
            if progress:
                tqdm.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()))
            for cb in callbacks:
                cb.on_epoch_end(epoch + 1, logs, trainer)
            if checkpoint is not None:
                _save_checkpoint(os.fspath(checkpoint), trainer, epoch, rng)
            if trainer.stop_training:
                break
    finally:
        np.seterr(**old_err)
    history.seconds = time.perf_counter() - t0
    history.steps = step.t
    return history
