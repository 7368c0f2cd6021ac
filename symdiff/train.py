"""``fit``: minibatch gradient descent driven by the generated training step.

Per epoch the data is shuffled once with a seeded generator, cut into views of ``batch_size`` rows
(the last partial batch included; ``batch_size=None`` is full-batch, ``1`` is true SGD), and each batch
goes through one generated step that computes loss and gradients and updates the params in place.
Training that produces a non-finite loss or gradient stops with :class:`DivergenceError`, keeping the
last finite params. With ``checkpoint=`` the params, optimizer state, epoch, RNG state and history are
saved (atomically) after every epoch and a later call resumes from them.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DTypeError, InputError
from .files import atomic_savez
from .graph import Expr
from .nn import loss_info
from .optim import SGD, Optimizer
from .runtime import compile as _compile
from .runtime import refuse_masked
from .step import DivergenceError, TrainStep, compile_step, generator_state, set_generator_state

__all__ = [
    "Callback",
    "EarlyStopping",
    "EpochLogger",
    "History",
    "DivergenceError",
    "evaluate",
    "fit",
    "format_logs",
    "load_params",
    "save_params",
]

Metric = str | Callable[[np.ndarray, np.ndarray], float]


@dataclass
class History:
    """What ``fit`` measured: ``history[key]`` has one entry per epoch (Keras-style keys), ``epoch`` the epochs'
    numbers, ``seconds`` the training time and ``steps`` the optimizer steps taken.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> w = sd.Param("w", shape=())
    >>> history = sd.fit((w - 3.0) ** 2, {"w": np.array(0.0)}, {}, optimizer=sd.optim.SGD(lr=0.1), epochs=3,
    ...                  progress=False)
    >>> history.epoch, [round(v, 4) for v in history.history["loss"]], history.steps
    ([1, 2, 3], [9.0, 5.76, 3.6864], 3)
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0

    def plot(self, path: str | None = None, keys: Sequence[str] | None = None) -> Any:
        """Plot the curves (matplotlib, an optional extra); save to ``path`` when given. Returns the figure.

        Losses are drawn against the left axis, other metrics (accuracy, ...) against a right one, so a
        loss above 1 does not flatten them; each ``val_*`` curve is dashed, in its training curve's colour.
        """
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install 'symdiff[plot]'") from None
        keys = list(keys or self.history)
        if path is None:  # interactive: a pyplot figure the notebook or window shows
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
        else:  # a file: a standalone figure, leaving pyplot's backend and state alone
            fig = Figure(figsize=(6, 4))
            ax = fig.subplots()
        losses = [k for k in keys if k.removeprefix("val_").endswith("loss")]
        others = [k for k in keys if k not in losses]
        if not losses:  # only metrics: they take the left axis
            losses, others = others, []
        colours: dict[str, Any] = {}
        lines = []
        for axis, group in [(ax, losses), *([(ax.twinx(), others)] if others else [])]:
            for k in sorted(group, key=lambda k: k.startswith("val_")):  # training curves pick the colours
                base = k.removeprefix("val_")
                style = {"linestyle": "--"} if k.startswith("val_") else {}
                if base in colours:
                    style["color"] = colours[base]
                elif colours:
                    style["color"] = f"C{len(colours)}"  # one colour cycle across both axes
                (line,) = axis.plot(self.epoch, self.history[k], marker="o", label=k, **style)
                colours.setdefault(base, line.get_color())
                lines.append(line)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(", ".join(dict.fromkeys(k.removeprefix("val_") for k in losses)))
        if others:
            fig.axes[-1].set_ylabel(", ".join(dict.fromkeys(k.removeprefix("val_") for k in others)))
        ax.set_title("training history")
        # On the top-most axes (the twin one when there is one): curves of lower axes never cover it.
        fig.axes[-1].legend(lines, [line.get_label() for line in lines])
        ax.grid(alpha=0.3)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig

    def save(self, path: str | os.PathLike, **meta: Any) -> None:
        """Write the history to ``path``, in the format its suffix names.

        ``.json``: an object with the ``meta`` entries (e.g. ``model=``, ``optimizer=``) first, then
        ``seconds``, ``steps``, ``epoch`` and ``history``. ``.csv``: a header ``epoch,<key>,...`` and one
        row per epoch, each value written exactly (``repr`` of the float).
        """
        suffix = os.path.splitext(os.fspath(path))[1].lower()
        if suffix == ".json":
            record = {**meta, "seconds": self.seconds, "steps": self.steps, "epoch": self.epoch}
            record["history"] = self.history
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(record, indent=2) + "\n")
        elif suffix == ".csv":
            keys = list(self.history)
            with open(path, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["epoch", *keys])
                for i, epoch in enumerate(self.epoch):
                    writer.writerow([epoch, *(repr(float(self.history[k][i])) for k in keys)])
        else:
            raise ValueError(f"History.save: cannot tell the format of {os.fspath(path)!r}; use a .json or .csv path")


class Callback:
    """Hooks called by ``fit``; set ``trainer.stop_training = True`` to stop after this epoch.

    ``trainer.params`` holds the params being trained, ``trainer.history`` the :class:`History` so far.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> class Report(sd.Callback):
    ...     def on_epoch_end(self, epoch, logs, trainer):
    ...         print(f"epoch {epoch}: loss {logs['loss']:.2f}, w {float(trainer.params['w']):.3f}")
    ...         trainer.stop_training = logs["loss"] < 5
    >>> w = sd.Param("w", shape=())
    >>> history = sd.fit((w - 3.0) ** 2, {"w": np.array(0.0)}, {}, optimizer=sd.optim.SGD(lr=0.1), epochs=10,
    ...                  callbacks=[Report()], progress=False)
    epoch 1: loss 9.00, w 0.600
    epoch 2: loss 5.76, w 1.080
    epoch 3: loss 3.69, w 1.464
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float], trainer: Trainer) -> None:
        """Called after each epoch with that epoch's measurements."""


def format_logs(logs: Mapping[str, float]) -> str:
    """Epoch measurements as one line of text (how epochs are reported).

    >>> from symdiff.train import format_logs
    >>> format_logs({"loss": 0.5, "accuracy": 0.9})
    'loss 0.5000, accuracy 0.9000'
    """
    return ", ".join(f"{k} {v:.4f}" for k, v in logs.items())


class EpochLogger(Callback):
    """Reports epochs: a line ``epoch 3/10: loss 0.1234, ...`` after the first, every ``every``-th and the
    last epoch (through ``write``, default ``print``), or with ``bar=True`` a progress bar over the epochs
    on stderr instead. ``fit`` prints its epoch lines with one; call :meth:`close` to end the bar.

    >>> from symdiff.train import EpochLogger
    >>> logger = EpochLogger(epochs=10, every=5)
    >>> for epoch in range(1, 11):
    ...     logger.on_epoch_end(epoch, {"loss": 1 / epoch}, trainer=None)
    epoch 1/10: loss 1.0000
    epoch 5/10: loss 0.2000
    epoch 10/10: loss 0.1000
    """

    def __init__(
        self, epochs: int, every: int = 1, bar: bool = False, write: Callable[[str], None] | None = None
    ) -> None:
        self.epochs, self.every, self.use_bar = epochs, every, bar
        self.write = write if write is not None else _print_line
        self.bar: Any = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.use_bar:
            import sys

            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.epochs, desc="training", unit="epoch", file=sys.stderr, leave=True)

    def on_epoch_end(self, epoch: int, logs: dict[str, float], trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(format_logs(logs), refresh=False)
            self.bar.update(1)
        elif not self.use_bar and (epoch == 1 or epoch % self.every == 0 or epoch == self.epochs):
            self.write(f"epoch {epoch}/{self.epochs}: {format_logs(logs)}")

    def close(self) -> None:
        """End the progress bar (if one is drawn)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _print_line(line: str) -> None:
    print(line, flush=True)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best`` the params are set back to those of the best epoch when training stops. ``mode``
    ``"auto"`` maximizes a monitor whose name holds ``acc`` (an accuracy) and minimizes any other.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> w = sd.Param("w", shape=())
    >>> params, stop = {"w": np.array(0.0)}, sd.EarlyStopping(monitor="loss", patience=2)
    >>> history = sd.fit((w - 3.0) ** 2, params, {}, optimizer=sd.optim.SGD(lr=1.0), epochs=10, callbacks=[stop],
    ...                  progress=False)  # lr too large: w jumps 0 -> 6 -> 0 -> ..., the loss stays 9
    >>> history.epoch, history.history["loss"], stop.best_epoch, params
    ([1, 2, 3], [9.0, 9.0, 9.0], 1, {'w': array(6.)})
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
def _savable(name: Any, value: Any, what: str) -> np.ndarray:
    """``value`` as an array ``load_params`` can read back: no object arrays (they would need pickle)."""
    if not isinstance(name, str):
        raise InputError(f"{what} names must be strings, got {name!r}")
    refuse_masked(f"{what} {name!r}", value)  # np.asarray would drop the mask and save the hidden values
    arr = np.asarray(value)
    if arr.dtype.hasobject:
        raise DTypeError(
            f"{what} {name!r} is an object array, which cannot be saved without pickle: "
            "convert it to a numeric array, e.g. np.asarray(value, dtype=float)"
        )
    return arr


def save_params(params: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write ``params`` to an ``.npz`` file atomically (a temporary file, then a rename).

    Any name round-trips through :func:`load_params`. Object arrays are refused (they would need pickle), and so
    are masked arrays with masked entries (the file would keep the hidden values and lose the mask). An OS error
    names ``path``.

    >>> import os, tempfile
    >>> import numpy as np
    >>> import symdiff as sd
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sd.save_params({"W": np.eye(2), "b": np.zeros(2)}, os.path.join(folder, "params.npz"))
    ...     os.listdir(folder)
    ['params.npz']
    """
    atomic_savez(path, {k: _savable(k, v, "param") for k, v in params.items()}, "params")


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read params saved by :func:`save_params` (name -> array); any other file than an ``.npz`` of arrays is an
    :class:`~symdiff.InputError` naming it.

    >>> import os, tempfile
    >>> import numpy as np
    >>> import symdiff as sd
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sd.save_params({"W": np.eye(2)}, os.path.join(folder, "model.npz"))
    ...     sd.load_params(os.path.join(folder, "model.npz"))
    {'W': array([[1., 0.],
           [0., 1.]])}
    """
    where = os.fspath(path)
    try:
        data = np.load(where, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data as f:
                return {k: f[k].copy() for k in f.files}
    except (ValueError, EOFError, zipfile.BadZipFile):  # numpy calls any other file "pickled (object) data"
        raise InputError(
            f"{where!r} is not an .npz file written by save_params: load_params reads only those"
        ) from None
    raise InputError(
        f"{where!r} holds a single array (a .npy file), not named params: "
        "load_params reads the .npz files save_params writes; read this one with np.load"
    )


# -- metrics ----------------------------------------------------------------------------------
def _correct(kind: str, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Whether each prediction is right (a bool array; ``kind`` is the loss's, see :func:`symdiff.nn.loss_info`)."""
    if kind == "labels":
        return np.argmax(pred, axis=-1) == target
    if kind == "probs":
        return np.argmax(pred, axis=-1) == np.argmax(target, axis=-1)
    return (pred > 0) == (target > 0.5)


def _accuracy(kind: str, pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(_correct(kind, pred, target)))


class Evaluator:
    """Loss and metrics of a model over a whole data set, in chunks."""

    def __init__(self, loss: Expr, metrics: Iterable[Metric] = ()) -> None:
        self.metrics = list(metrics)
        for m in self.metrics:
            if not callable(m) and m != "accuracy":
                raise ValueError(f"unknown metric {m!r}; use 'accuracy' or a callable f(pred, target) -> float")
        self.info = loss_info(loss)
        outputs: dict[str, Expr] = {"loss": loss}
        if self.metrics:
            if self.info is None or ("accuracy" in self.metrics and self.info.kind == "values"):
                raise ValueError(
                    "metrics need predictions: 'accuracy' needs a softmax or sigmoid cross-entropy loss, callables "
                    "also work with an mse loss (fit finds the predictions and targets in its graph)"
                )
            outputs["pred"], outputs["target"] = self.info.pred, self.info.target
        self.fn = _compile(outputs, name="evaluate")

    def names(self) -> list[str]:
        """Metric names, in order."""
        return [m if isinstance(m, str) else getattr(m, "__name__", "metric") for m in self.metrics]

    def __call__(
        self, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray], chunk: int = 4096
    ) -> dict[str, float]:
        n = len(next(iter(data.values()))) if data else 1  # a loss without Inputs: one evaluation
        total, preds, targets = 0.0, [], []
        args = {k: v for k, v in params.items() if k in self.fn.inputs}
        for start in range(0, n, chunk):
            batch = {k: v[start : start + chunk] for k, v in data.items() if k in self.fn.inputs}
            out = self.fn.fn(**args, **batch)
            m = min(chunk, n - start)
            total += float(out["loss"]) * m
            if self.metrics:
                preds.append(out["pred"])
                targets.append(np.broadcast_to(out["target"], np.shape(out["pred"])[: np.ndim(out["target"])]))
        logs = {"loss": total / n}
        if self.metrics:
            pred, target = np.concatenate(preds), np.concatenate(targets)
            for metric, name in zip(self.metrics, self.names()):
                if metric == "accuracy":
                    logs[name] = _accuracy(self.info.kind, pred, target)
                elif callable(metric):
                    logs[name] = float(metric(pred, target))
                else:
                    raise ValueError(f"unknown metric {metric!r}; use 'accuracy' or a callable f(pred, target)")
        return logs


def evaluate(
    loss: Expr, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray], metrics: Iterable[Metric] = ()
) -> dict[str, float]:
    """The loss (and ``metrics``, as in :func:`fit`) of ``params`` over all of ``data`` (``{}`` for a loss without
    Inputs), by name.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> x, y = sd.Input("x", shape=(None, 2)), sd.Input("y", shape=(None,), dtype="int64")
    >>> loss = sd.softmax_cross_entropy(sd.dense(x, 2, name="out"), y)
    >>> params = {"out_W": np.array([[1.0, -1.0], [0.0, 0.0]]), "out_b": np.zeros(2)}  # class 0 where x[0] > 0
    >>> data = {"x": np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.0]]), "y": np.array([0, 1, 1])}
    >>> {name: round(value, 4) for name, value in sd.evaluate(loss, params, data, metrics=["accuracy"]).items()}
    {'loss': 1.424, 'accuracy': 0.6667}
    """
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
    arrays = {k: np.asanyarray(v) for k, v in data.items() if k in needed}  # masks reach check_arrays
    unused = [k for k in data if k not in needed]
    if unused and not needed:
        raise InputError(f"{what} has {unused[0]!r}, but the loss takes no data (it has no Inputs): pass {{}}")
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


CHECKPOINT_FORMAT = 2  # meta["format"], exactly this int; the first checkpoints have neither it nor "run"


def _save_checkpoint(path: str, trainer: Trainer, epoch: int, rng: np.random.Generator, run: dict[str, Any]) -> None:
    meta = {
        "format": CHECKPOINT_FORMAT,  # checkpoints with a format hold every entry below
        "epoch": epoch,
        "t": trainer.step.t,
        "rng": rng.bit_generator.state,
        "generators": {k: generator_state(g) for k, g in trainer.step.generators.items()},  # dropout masks
        "history": trainer.history.history,
        "epochs_done": trainer.history.epoch,
        "optimizer": repr(trainer.step.optimizer),
        "stopped": trainer.stop_training,  # an early-stopped run is finished: resuming it trains nothing
        "run": run,  # what a resumed run must share: batch size, data length, seed, shuffling
    }
    atomic_savez(path, {**_checkpointed(trainer), "meta": np.array(json.dumps(meta))}, "the checkpoint")


def _checkpointed(trainer: Trainer) -> dict[str, np.ndarray]:
    """The arrays a checkpoint holds, by key: ``param:<name>`` and ``state:<slot>_<name>``."""
    return {
        **{f"param:{k}": v for k, v in trainer.params.items()},
        **{f"state:{k}": v for k, v in trainer.step.state.items()},
    }


@dataclass
class _Checkpoint:
    """A checkpoint read and checked against a run, ready to be applied (nothing applied yet)."""

    arrays: dict[str, np.ndarray]  # "param:W" / "state:m_W" -> the saved array
    t: int  # steps taken
    rng: dict[str, Any]  # the shuffling generator's state
    generators: dict[str, Any]  # the states of the step's own generators (dropout masks), by name
    history: dict[str, list[float]]
    epochs_done: list[int]
    done: int  # epochs the checkpoint holds
    stopped: bool


def _load_checkpoint(path: str, where: str) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    """The arrays, the meta data and the format version (None: written before checkpoints were marked)."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array")
        with data as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{where} is not a checkpoint symdiff can read ({exc}): use another checkpoint path") from None
    if not isinstance(meta, dict):
        raise InputError(f"{where} is damaged: its meta data is not a dict; use another path")
    # Written before checkpoints were marked: no 'format' and no 'run' (they may also lack 'stopped').
    version = None if "format" not in meta and "run" not in meta else meta.get("format")
    if version is not None and type(version) is int and version != CHECKPOINT_FORMAT:
        raise InputError(
            f"{where} has format {version!r}, this symdiff reads format {CHECKPOINT_FORMAT}: "
            "resume it with the symdiff that wrote it, or use another checkpoint path"
        )
    if ("format" in meta or "run" in meta) and type(version) is not int:  # 2.0, "2", True, or 'run' without it
        raise InputError(f"{where} is damaged: its meta entry 'format' is missing or invalid; use another path")
    return arrays, meta, version


def _check_checkpoint_arrays(
    where: str, arrays: Mapping[str, np.ndarray], rng_state: Any, trainer: Trainer, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Check that the saved params and optimizer state fit this run and the RNG state is readable; returns
    the arrays they will be copied into."""
    names = {k.split(":", 1)[1] for k in arrays if k.startswith("param:")}
    if names != set(trainer.params):
        differ = sorted(names.symmetric_difference(trainer.params))
        raise InputError(f"{where} belongs to another model (params {', '.join(differ)} differ)")
    targets = _checkpointed(trainer)
    for k, target in targets.items():
        got = arrays.get(k)
        if got is None or got.shape != target.shape or got.dtype != target.dtype:
            raise InputError(f"{where} belongs to another model ({k} is missing or has another shape or dtype)")
        if not np.isfinite(got).all():  # a diverged run never saves these: the file was changed
            raise InputError(f"{where} is damaged: {k} holds nan or inf values; use another path")
    probe = type(rng.bit_generator)()
    try:
        probe.state = rng_state
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(f"{where} holds a foreign random-generator state ({exc}); use another path") from None
    return targets


def _checked_generators(where: str, meta: dict[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """The saved states of the step's random generators (``own``), checked on copies: ``{}`` for a checkpoint
    written before dropout."""
    generators = meta.get("generators", {})
    if not isinstance(generators, dict) or (generators and set(generators) != set(own)):
        raise InputError(
            f"{where} holds the states of the random generators {sorted(generators)}, this run's step keeps "
            f"{sorted(own)}: resume the same model, or use another checkpoint path"
        )
    for k, state in generators.items():
        try:  # checked on a copy: nothing of the run changes before the whole checkpoint is read
            set_generator_state(own[k], state, check_only=True)
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            raise InputError(f"{where} is damaged: the state of generator {k!r} is invalid ({exc})") from None
    return generators


def _read_checkpoint(
    path: str, trainer: Trainer, rng: np.random.Generator, run: dict[str, Any], epochs: int, keys: Iterable[str]
) -> _Checkpoint:
    """Read and check everything in checkpoint ``path`` before anything of the caller changes.

    ``keys``: the history entries this run records (``loss``, its metrics, their ``val_`` variants).
    """
    where = f"checkpoint {path!r}"
    arrays, meta, version = _load_checkpoint(path, where)
    needed = {"epoch": int, "t": int, "rng": dict, "history": dict, "epochs_done": list, "optimizer": str}
    if version is not None:
        needed.update(run=dict, stopped=bool)
    for key, kind in needed.items():
        value = meta.get(key)
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
            raise InputError(f"{where} is damaged: its meta entry {key!r} is missing or invalid; use another path")
    done = meta["epoch"] + 1  # checkpoints are saved after whole epochs: 1, 2, ... done
    if meta["epochs_done"] != list(range(1, done + 1)) or any(type(e) is not int for e in meta["epochs_done"]):
        raise InputError(
            f"{where} is damaged: its meta entry 'epochs_done' is not the epochs 1..{done} its 'epoch' says; "
            "use another path"
        )
    history = meta["history"]
    if any(
        not isinstance(v, list) or len(v) != done or any(type(e) not in (int, float) for e in v)
        for v in history.values()
    ):
        raise InputError(
            f"{where} is damaged: its meta entry 'history' is invalid (every entry must hold {done} numbers, "
            "one per epoch); use another path"
        )
    if set(history) != set(keys):
        raise InputError(
            f"{where} holds the history {sorted(history)}, this run records {sorted(keys)}: "
            "resume with the same metrics and validation data, or use another checkpoint path"
        )
    saved, current = meta["optimizer"], repr(trainer.step.optimizer)
    if saved != current:
        raise InputError(
            f"{where} was saved by a run with {saved}, this run uses {current}: "
            "resume with the same optimizer, or start afresh with another checkpoint path"
        )
    targets = _check_checkpoint_arrays(where, arrays, meta["rng"], trainer, rng)
    saved_run = meta["run"] if isinstance(meta.get("run"), dict) else {}  # only unmarked checkpoints may lack it
    if version is not None and not set(run) <= set(saved_run):
        raise InputError(f"{where} is damaged: its meta entry 'run' is missing or invalid; use another path")
    for key, value in run.items():
        before = saved_run.get(key, value)
        if before != value:
            raise InputError(
                f"{where} was saved by a run with {key}={before!r}, this run has {key}={value!r}: "
                "resume with the same settings, or start afresh with another checkpoint path"
            )
    steps = done * -(-run["examples"] // run["batch_size"])  # checkpoints are saved after whole epochs
    if version is not None and meta["t"] != steps:
        raise InputError(
            f"{where} is damaged: its meta entry 't' ({meta['t']} steps) does not match its {done} epochs "
            f"({steps} steps); use another path"
        )
    if done > epochs:
        raise InputError(
            f"{where} already holds {done} epochs, more than epochs={epochs}: "
            f"pass epochs={done} or more to continue it, or use another checkpoint path"
        )
    generators = _checked_generators(where, meta, trainer.step.generators)
    return _Checkpoint(
        arrays={k: arrays[k] for k in targets},
        t=meta["t"],
        rng=meta["rng"],
        generators=generators,
        history=history,
        epochs_done=meta["epochs_done"],
        done=done,
        stopped=bool(meta.get("stopped", False)),
    )


def _apply_checkpoint(ckpt: _Checkpoint, trainer: Trainer, rng: np.random.Generator) -> None:
    """Copy a checked checkpoint into the params, the optimizer state, the step counter, the RNG and history."""
    for k, target in _checkpointed(trainer).items():
        np.copyto(target, ckpt.arrays[k])
    trainer.step.t = ckpt.t
    rng.bit_generator.state = ckpt.rng
    for k, generator in trainer.step.generators.items():
        if k in ckpt.generators:
            set_generator_state(generator, ckpt.generators[k])
    trainer.history.history = ckpt.history
    trainer.history.epoch = ckpt.epochs_done


def _count(value: Any, what: str, least: int) -> int:
    """``value`` as an int of at least ``least``: Python or NumPy integers; bools and floats are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise InputError(f"{what} must be an int of at least {least}, got {value!r} (type {type(value).__name__})")
    return int(value)


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
    progress: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    shuffle: bool = True,
    backend: Any = "numpy",
    device: Any = None,
    jit: bool | None = None,
) -> History:
    """Train ``params`` (updated in place) to lower ``loss`` on ``data`` by minibatch gradient descent.

    Parameters:
        loss: a scalar expression, a mean over the batch (its epoch value is the size-weighted mean).
        params: name -> array for every Param of the loss (see :func:`symdiff.init_params`).
        data: name -> array for every Input of the loss; all share their length along axis 0. A loss
            without Inputs (a function of the params alone) takes ``{}``: each epoch is then one step.
        optimizer: an optimizer from :mod:`symdiff.optim` (default ``SGD(lr=0.01)``).
        batch_size: rows per step; ``None`` for full-batch gradient descent.
        epochs: passes over the data. seed: the shuffling generator's seed (same seed, same result).
        validation_data: data to report ``val_loss`` (and ``val_<metric>``) on after each epoch.
        metrics: ``"accuracy"`` (integer labels, probability targets or binary targets) or callables
            ``f(pred, target) -> float``, measured on the training data after each epoch.
        callbacks: e.g. :class:`EarlyStopping`.
        progress: ``None`` (the default) prints one line per epoch, with a per-step progress bar only on a
            terminal or in a notebook; ``True`` always shows the bar; ``False`` prints nothing.
        checkpoint: an ``.npz`` path; saved after each epoch, resumed from when it exists (with the same
            optimizer, model, batch size, data length, seed and shuffling; anything else is refused).
        shuffle: ``False`` keeps the rows in their order (every epoch then takes the same batches).
        backend: ``"numpy"`` (the default), ``"torch"``, ``"jax"``, ``"cupy"`` or an Array API namespace, on
            ``device`` (``jit``: see :func:`symdiff.codegen`): the params and the optimizer state then live as that
            library's arrays for the whole run, and come back into ``params`` (and the loss as a float) once per
            epoch, when the epoch is measured, called back and checkpointed. Metrics and validation run on NumPy.

    Returns:
        A :class:`History` with one entry per epoch under ``loss``, ``val_loss``, ``accuracy``, ...

    Raises:
        DivergenceError: a non-finite loss or gradient, naming the epoch and step.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> x, y = sd.Input("x", shape=(None, 2)), sd.Input("y", shape=(None,), dtype="int64")
    >>> loss = sd.softmax_cross_entropy(sd.dense(x, 2, name="out"), y)
    >>> X, labels = sd.datasets.blobs(n_per_class=50, centers=2, seed=0)
    >>> params = sd.init_params(loss, seed=0)
    >>> history = sd.fit(loss, params, {"x": X, "y": labels}, optimizer=sd.optim.Adam(lr=0.1), batch_size=20,
    ...                  epochs=3, metrics=["accuracy"], progress=False)
    >>> history.epoch, history.steps, history.history["accuracy"][-1]
    ([1, 2, 3], 15, 1.0)
    """
    epochs = _count(epochs, "epochs", 0)
    batch_size = None if batch_size is None else _count(batch_size, "batch_size", 1)
    step = compile_step(
        loss, params, optimizer if optimizer is not None else SGD(), backend=backend, device=device, jit=jit
    )
    arrays = step.check(_check_data(step.inputs, data, "data"))
    n = len(next(iter(arrays.values()))) if arrays else 1  # no Inputs: one step per epoch
    bs = n if batch_size is None else min(batch_size, n)
    metrics = list(metrics)
    evaluator = Evaluator(loss, metrics) if metrics or validation_data is not None else None
    val = None if validation_data is None else step.check(_check_data(step.inputs, validation_data, "validation_data"))
    history = History()
    trainer = Trainer(step, step.params, history)
    callbacks = with_epoch_lines(callbacks, epochs, progress is not False)
    rng = np.random.default_rng(seed)
    seed_ = int(seed) if isinstance(seed, (int, np.integer)) else None
    run = {"batch_size": bs, "examples": n, "seed": seed_, "shuffle": bool(shuffle)}
    path = None if checkpoint is None else os.fspath(checkpoint)
    start = 0
    if path is not None:
        keys = history_keys(evaluator, metrics, val is not None)
        start = _resume(path, trainer, rng, run, epochs, keys, _tqdm_write if progress is not False else None)
        step.push()
    for cb in callbacks:
        cb.on_train_begin(trainer)
    t0 = time.perf_counter()
    bar_off = True if progress is False else (False if progress else None)  # None: only where it can redraw itself
    epoch_range = range(start, epochs)
    _train_epochs(trainer, callbacks, arrays, val, evaluator, metrics, rng, run, epoch_range, shuffle, path, bar_off)
    history.seconds = time.perf_counter() - t0
    history.steps = step.t
    return history


def with_epoch_lines(callbacks: Iterable[Callback], epochs: int, show: bool) -> list[Callback]:
    """``callbacks`` as a list, after a fit's own epoch lines (an :class:`EpochLogger`) when ``show``."""
    own = [EpochLogger(epochs, write=_tqdm_write)] if show else []
    return [*own, *callbacks]


def history_keys(evaluator: Evaluator | None, metrics: list[Metric], validated: bool) -> list[str]:
    """The History keys a run records each epoch: the loss and ``metrics``, then their ``val_`` forms."""
    names = ["loss", *(evaluator.names() if metrics else [])]
    return [*names, *(f"val_{k}" for k in names if validated)]


def _tqdm_write(line: str) -> None:
    """Print a line on stdout without breaking a progress bar that tqdm is drawing."""
    from tqdm.auto import tqdm

    tqdm.write(line)


def _resume(
    path: str,
    trainer: Trainer,
    rng: np.random.Generator,
    run: dict[str, Any],
    epochs: int,
    keys: list[str],
    say: Callable[[str], None] | None,
) -> int:
    """Resume from checkpoint ``path`` when it exists; returns the epoch to start from (0 without one)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"checkpoint {path!r}: folder {folder!r} does not exist")
    if not os.path.exists(path):
        return 0
    ckpt = _read_checkpoint(path, trainer, rng, run, epochs, keys)
    _apply_checkpoint(ckpt, trainer, rng)
    start = ckpt.done
    if ckpt.stopped and start < epochs:
        line = f"checkpoint {path!r}: early stopping ended its run after epoch {start}; nothing to train"
        start = epochs  # the run this checkpoint comes from was stopped (early stopping): it is finished
    elif start == epochs:
        line = f"checkpoint {path!r} already holds all {epochs} epochs; nothing to train"
    else:
        line = f"checkpoint {path!r}: resuming after epoch {start} of {epochs}"
    if say is not None:
        say(line)
    return start


def _run_epoch(
    step: TrainStep, shuffled: Mapping[str, np.ndarray], n: int, bs: int, epoch: int, epochs: int, bar_off: bool | None
) -> float:
    """One pass of the generated step over the (shuffled) data in batches of ``bs`` rows; returns the summed loss
    (each batch's mean loss times its rows). A non-finite loss or gradient raises :class:`DivergenceError`."""
    if bar_off:  # no bar: plain tqdm, as tqdm.auto warns in a notebook without ipywidgets even for a disabled one
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm

    nbatches = -(-n // bs)
    total = 0.0
    every = max(1, nbatches // 50)
    with tqdm(total=nbatches, desc=f"epoch {epoch}/{epochs}", disable=bar_off, leave=False, unit="step") as bar:
        for i, lo in enumerate(range(0, n, bs)):
            batch = {k: v[lo : lo + bs] for k, v in shuffled.items()}
            try:
                value = step.run(batch)
            except FloatingPointError as exc:
                found = exc.found if isinstance(exc, DivergenceError) else str(exc)
                raise DivergenceError(
                    f"training diverged at epoch {epoch}, step {i + 1}: {found}; "
                    "the params keep their last finite values",
                    found,
                ) from None
            total += value * min(bs, n - lo)  # another backend's scalar: summed on its device
            if (i + 1) % every == 0 and not bar.disable:
                bar.set_postfix(loss=f"{total / min(n, lo + bs):.4g}", refresh=False)
                bar.update(every)
        bar.update(nbatches - bar.n)
    return total


def _epoch_logs(
    loss: float,
    evaluator: Evaluator | None,
    metrics: list[Metric],
    params: Mapping[str, np.ndarray],
    arrays: Mapping[str, np.ndarray],
    val: Mapping[str, np.ndarray] | None,
) -> dict[str, float]:
    """An epoch's measurements: its mean loss, the metrics on the training data, and the ``val_`` ones."""
    logs = {"loss": loss}
    if metrics:
        train_logs = evaluator(params, arrays)
        logs.update({k: v for k, v in train_logs.items() if k != "loss"})
    if val is not None:
        logs.update({f"val_{k}": v for k, v in evaluator(params, val).items()})
    return logs


def _train_epochs(
    trainer: Trainer,
    callbacks: list[Callback],
    arrays: dict[str, np.ndarray],
    val: dict[str, np.ndarray] | None,
    evaluator: Evaluator | None,
    metrics: list[Metric],
    rng: np.random.Generator,
    run: dict[str, Any],
    epoch_range: range,
    shuffle: bool,
    path: str | None,
    bar_off: bool | None,
) -> None:
    """The epochs of ``fit``: shuffle, one pass of the step, measure, record, call back, save the checkpoint."""
    step, n, bs = trainer.step, run["examples"], run["batch_size"]
    epochs = epoch_range.stop
    # Shuffled copies live in buffers allocated once: each epoch gathers into them (no new memory).
    shuffled = {k: np.empty_like(v) for k, v in arrays.items()} if shuffle else arrays
    # NumPy would warn on overflow or nan inside a step; the divergence guard reports those as one clear error.
    old_err = np.seterr(over="ignore", invalid="ignore", divide="ignore")
    try:
        for epoch in epoch_range:
            if shuffle:
                perm = rng.permutation(n)
                for k, v in arrays.items():
                    np.take(v, perm, axis=0, out=shuffled[k], mode="clip")  # clip: unbuffered; perm is in range
            total = _run_epoch(step, shuffled, n, bs, epoch + 1, epochs, bar_off)
            try:
                step.pull()  # another backend's params, state and guard come back once per epoch
            except DivergenceError as exc:
                raise DivergenceError(
                    f"training diverged in epoch {epoch + 1}: {exc.found}; the params keep their last finite values",
                    exc.found,
                ) from None
            logs = _epoch_logs(float(total) / n, evaluator, metrics, step.params, arrays, val)
            if end_epoch(trainer, callbacks, epoch, logs, path, rng, run):
                break
            step.push()  # a callback may have changed the params
    finally:
        np.seterr(**old_err)


def end_epoch(
    trainer: Trainer,
    callbacks: list[Callback],
    epoch: int,
    logs: dict[str, float],
    path: str | None,
    rng: np.random.Generator,
    run: dict[str, Any],
) -> bool:
    """After epoch ``epoch`` (counted from 0): record ``logs``, call back, save the checkpoint; True to stop."""
    for k, v in logs.items():
        trainer.history.history.setdefault(k, []).append(v)
    trainer.history.epoch.append(epoch + 1)
    for cb in callbacks:
        cb.on_epoch_end(epoch + 1, logs, trainer)
    if path is not None:
        _save_checkpoint(path, trainer, epoch, rng, run)
    return trainer.stop_training
