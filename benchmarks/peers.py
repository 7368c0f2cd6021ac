"""The peers: one class per way of running a training step (forward + backward + SGD update).

Every peer starts from the same parameters (neutral names ``W0, b0, ...``, see ``models``), converts batches to
its own arrays once (``convert``), and exposes ``step(batch) -> float loss`` and ``make_loop(batches)``, a
closure running ``k`` steps. ``get_params``/``set_params``/``set_lr`` serve the correctness check. Optional
peers import their framework inside ``__init__`` only, so that e.g. a memory measurement of the hand-written
peer never loads symdiff, JAX or PyTorch.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from typing import Any

import numpy as np

from .models import Spec


class Peer:
    key = ""  # the name on the command line
    title = ""  # the name in tables
    optional = False
    requires: tuple[str, ...] = ()
    checked = True  # the GEMM floor computes no gradients and is not checked
    note = ""

    def __init__(self, spec: Spec, params: dict[str, np.ndarray], dtype: str, lr: float) -> None:
        self.spec, self.dtype, self.lr = spec, dtype, float(lr)
        self.layers = spec.layers

    @classmethod
    def missing(cls) -> str | None:
        """None when the peer can run here, else why not."""
        for mod in cls.requires:
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not installed"
        return None

    @classmethod
    def version(cls) -> str:
        if not cls.requires:
            return "numpy " + np.__version__
        mod = importlib.import_module(cls.requires[0])
        return f"{cls.requires[0]} {getattr(mod, '__version__', '?')}"

    def convert(self, x: np.ndarray, y: np.ndarray) -> Any:
        return (x, y)

    def step(self, batch: Any) -> float:  # replaced per instance by a bound fast path
        raise NotImplementedError

    def make_loop(self, batches: list[Any]):
        step, b, nb = self.step, list(batches), len(batches)

        def loop(k: int) -> float:
            loss = 0.0
            for i in range(k):
                loss = step(b[i % nb])
            return loss

        return loop

    def get_params(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        self.lr = float(lr)


def _names(layers: int) -> list[str]:
    return [f"{k}{i}" for i in range(layers) for k in ("W", "b")]


# -- symdiff --------------------------------------------------------------------------------
def symdiff_mlp(spec: Spec, dtype: str):
    """The MLP built with ``sd.Input`` and ``sd.dense``: ``(loss, name map neutral -> symdiff)``."""
    import symdiff as sd

    x = sd.Input("x", shape=(None, spec.dims[0]), dtype=dtype)
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = x
    for i in range(spec.layers):
        last = i == spec.layers - 1
        h = sd.dense(h, spec.dims[i + 1], f"l{i}", activation=None if last else "relu", dtype=dtype)
    loss = sd.softmax_cross_entropy(h, y)
    names = {f"{k}{i}": f"l{i}_{k}" for i in range(spec.layers) for k in ("W", "b")}
    return loss, names


class Symdiff(Peer):
    key, title = "symdiff", "symdiff (generated step)"
    note = "sd.dense model, sd.compile_step(loss, params, sd.optim.SGD(lr)), timed via step.run(batch)"

    @classmethod
    def version(cls) -> str:
        import symdiff as sd

        return f"symdiff {sd.__version__}"

    options: dict[str, Any] = {}

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        import symdiff as sd

        self.loss, self.names = self.build()
        sdparams = {self.names[k]: np.array(v, dtype=dtype) for k, v in params.items()}
        self.train = sd.compile_step(self.loss, sdparams, sd.optim.SGD(lr=self.lr), **self.options)
        self.step = self.train.run

    def build(self):
        """The model's loss and the map from neutral parameter names to symdiff's."""
        return symdiff_mlp(self.spec, self.dtype)

    def convert(self, x, y):
        return {"x": x, "y": y}

    def get_params(self):
        return {k: self.train.params[v].copy() for k, v in self.names.items()}

    def set_params(self, params):
        for k, v in params.items():
            np.copyto(self.train.params[self.names[k]], v)

    def set_lr(self, lr):
        self.lr = float(lr)
        self.train.optimizer.lr = self.lr


class SymdiffNoGuard(Symdiff):
    """The same step generated with ``guard=False``: no finiteness check of the loss and gradients."""

    key, title = "symdiff-noguard", "symdiff, guard=False"
    note = "the same, sd.compile_step(..., guard=False): without the finiteness check"
    options = {"guard": False}

    @classmethod
    def missing(cls) -> str | None:
        import inspect
        import typing

        import symdiff as sd

        named = set(inspect.signature(sd.compile_step).parameters)
        hint = typing.get_type_hints(sd.compile_step).get("options")  # **options: Unpack[a TypedDict of options]
        typed = getattr(hint, "__args__", None) or (typing.get_args(hint) if hint is not None else ())
        named |= {k for t in typed if isinstance(t, type) for k in typing.get_type_hints(t)}
        if "guard" not in named:
            return "this symdiff's compile_step has no guard option"
        return None


# -- hand-written NumPy -----------------------------------------------------------------------
class SymdiffCall(Symdiff):
    key, title = "symdiff-call", "symdiff, the public call step(x=, y=)"
    note = "the same step called as users call it, step(x=x, y=y): its arguments checked on every call"

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        train = self.train
        self.step = lambda batch: train(**batch)


class SymdiffNumba(Symdiff):
    key, title = "symdiff-numba", "symdiff, fused (Numba)"
    optional, requires = True, ("numba",)
    note = "the same model, sd.compile_step(..., backend='numba'): forward, backward and update as one njit function"
    options = {"backend": "numba"}

    @classmethod
    def version(cls) -> str:
        return f"{Symdiff.version()} with numba {importlib.import_module('numba').__version__}"


class SymdiffOn(Symdiff):
    """symdiff's generated step on another array library (``sd.compile_step(..., backend=...)``, the CPU here):
    params and optimizer state stay that library's arrays; each step's loss comes back as a float, as the
    JAX and PyTorch peers' do."""

    optional = True
    backend = ""

    @property
    def options(self) -> dict[str, Any]:
        return {"backend": self.backend}

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        run = self.train.run
        self.step = lambda batch: float(run(batch))

    @classmethod
    def version(cls) -> str:
        mod = importlib.import_module(cls.requires[0])
        return f"{Symdiff.version()} on {cls.requires[0]} {getattr(mod, '__version__', '?')}"

    def convert(self, x, y):
        from symdiff.runtime import to_backend

        return to_backend(self.train.fn, {"x": x, "y": y})

    def get_params(self):
        self.train.pull()
        return super().get_params()

    def set_params(self, params):
        super().set_params(params)
        self.train.push()


class SymdiffTorch(SymdiffOn):
    key, title = "symdiff-torch", "symdiff on PyTorch (eager)"
    requires, backend = ("torch",), "torch"
    note = "the same model, sd.compile_step(..., backend='torch'): the generated Array API step, eager"


class SymdiffJax(SymdiffOn):
    key, title = "symdiff-jax", "symdiff on JAX (jit)"
    requires, backend = ("jax",), "jax"
    note = "the same model, sd.compile_step(..., backend='jax'): the generated Array API step under jax.jit"


class HandNumpy(Peer):
    """A careful hand-written backprop: what a NumPy expert writes for this one model.

    One workspace per batch size, allocated on first use: every matmul, element-wise op and reduction writes into
    a preallocated buffer (``out=``), so a step allocates nothing but the picked logits. ReLU runs in place on the
    pre-activation (its mask is ``a > 0``); the transposes are views handed to matmul. Reductions call the ufunc's
    ``reduce`` (``np.maximum.reduce``, ``np.add.reduce``), skipping ``np.max``/``np.sum``'s Python wrappers, and a
    bias gradient is a GEMV with a vector of ones (``ones @ d``). ``lr / n`` is folded into the softmax's row
    normaliser, so the output delta ``lr/n * (softmax - onehot)`` takes no pass of its own, the label column gets
    ``- lr/n`` in place (no one-hot matrix), and every parameter update is one in-place subtraction.
    """

    key, title = "hand", "hand-written NumPy"
    note = (
        "out= buffers per batch size, ufunc reduce, bias gradients as GEMVs with ones, lr/n folded into the softmax "
        "normaliser, in-place updates"
    )

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        self.W = [np.array(params[f"W{i}"], dtype=dtype) for i in range(self.layers)]
        self.b = [np.array(params[f"b{i}"], dtype=dtype) for i in range(self.layers)]
        self._ws: dict[int, tuple] = {}
        self.step = self._step

    def _workspace(self, n: int) -> tuple:
        dt, dims = np.dtype(self.dtype), self.spec.dims
        acts = [np.empty((n, d), dt) for d in dims[1:]]  # ReLU outputs (in place), then the logits
        deltas = [np.empty((n, d), dt) for d in dims[1:-1]]
        masks = [np.empty((n, d), np.bool_) for d in dims[1:-1]]
        dW = [np.empty_like(w) for w in self.W]
        db = [np.empty_like(b) for b in self.b]
        cols = (np.empty((n, 1), dt), np.empty((n, 1), dt))
        ws = (acts, deltas, masks, dW, db, cols, np.arange(n), np.ones(n, dt))
        self._ws[n] = ws
        return ws

    def _softmax_ce(self, z, y, ws) -> float:
        """The mean softmax cross-entropy of the logits ``z`` and labels ``y``; ``z`` becomes the output delta
        ``lr/n * (softmax(z) - onehot(y))``. Shift and exponentiate in place; the loss from the shifted logits and
        the row sums."""
        n, (col, logs), rows, add_reduce = z.shape[0], ws[5], ws[6], np.add.reduce
        np.maximum.reduce(z, axis=1, keepdims=True, out=col)
        np.subtract(z, col, out=z)
        picked = add_reduce(z[rows, y])
        np.exp(z, out=z)
        add_reduce(z, axis=1, keepdims=True, out=col)
        np.log(col, out=logs)
        loss = (add_reduce(logs, axis=None) - picked) / n
        scale = self.lr / n
        np.multiply(col, 1.0 / scale, out=col)  # normalise and scale by lr/n in one pass over z
        np.divide(z, col, out=z)
        z[rows, y] -= scale
        return loss

    def _step(self, batch):
        x, y = batch
        n = x.shape[0]
        ws = self._ws.get(n) or self._workspace(n)
        acts, deltas, masks, dW, db, _, _, ones = ws
        W, b, L = self.W, self.b, self.layers
        matmul = np.matmul
        h = x
        for i in range(L - 1):
            a = acts[i]
            matmul(h, W[i], out=a)
            np.add(a, b[i], out=a)
            np.maximum(a, 0, out=a)
            h = a
        z = acts[L - 1]
        matmul(h, W[L - 1], out=z)
        np.add(z, b[L - 1], out=z)
        loss = self._softmax_ce(z, y, ws)
        d = z
        for i in range(L - 1, -1, -1):
            h = x if i == 0 else acts[i - 1]
            matmul(h.T, d, out=dW[i])
            matmul(ones, d, out=db[i])
            if i > 0:
                g = deltas[i - 1]
                matmul(d, W[i].T, out=g)
                np.greater(h, 0, out=masks[i - 1])
                np.multiply(g, masks[i - 1], out=g)
                d = g
            np.subtract(W[i], dW[i], out=W[i])
            np.subtract(b[i], db[i], out=b[i])
        return float(loss)

    def get_params(self):
        out = {}
        for i in range(self.layers):
            out[f"W{i}"], out[f"b{i}"] = self.W[i].copy(), self.b[i].copy()
        return out

    def set_params(self, params):
        for i in range(self.layers):
            np.copyto(self.W[i], params[f"W{i}"])
            np.copyto(self.b[i], params[f"b{i}"])


class GemmFloor(Peer):
    """Only the matmuls a training step needs (forward, weight gradients, input gradients but the first),
    each into a preallocated ``out=`` buffer with transposed views: no model can step faster with NumPy."""

    key, title = "gemm", "GEMM floor (bare matmuls)"
    checked = False
    note = "the 3L-1 matmuls of the step only, out= buffers; computes no gradient, not checked"

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        self.params = {k: np.array(v, dtype=dtype) for k, v in params.items()}
        self.W = [self.params[f"W{i}"] for i in range(self.layers)]
        self._ws: dict[int, tuple] = {}
        self.step = self._step

    def _workspace(self, n):
        dt, dims = np.dtype(self.dtype), self.spec.dims
        acts = [np.empty((n, d), dt) for d in dims[1:]]
        deltas = [np.empty((n, d), dt) for d in dims[1:-1]]
        seed = np.random.default_rng(0).standard_normal((n, dims[-1])).astype(dt) * 0.01
        dW = [np.empty_like(w) for w in self.W]
        ws = (acts, deltas, seed, dW)
        self._ws[n] = ws
        return ws

    def _step(self, batch):
        x, _ = batch
        n = x.shape[0]
        acts, deltas, seed, dW = self._ws.get(n) or self._workspace(n)
        W, L = self.W, self.layers
        h = x
        for i in range(L):
            np.matmul(h, W[i], out=acts[i])
            h = acts[i]
        d = seed
        for i in range(L - 1, -1, -1):
            h = x if i == 0 else acts[i - 1]
            np.matmul(h.T, d, out=dW[i])
            if i > 0:
                np.matmul(d, W[i].T, out=deltas[i - 1])
                d = deltas[i - 1]
        return 0.0

    def get_params(self):
        return {k: v.copy() for k, v in self.params.items()}

    def set_params(self, params):
        for k, v in params.items():
            np.copyto(self.params[k], v)


# -- optional peers ----------------------------------------------------------------------------
class Jax(Peer):
    key, title = "jax", "JAX jit"
    optional, requires = True, ("jax",)
    note = "jax.jit of the whole update (value_and_grad + SGD), params donated, lr a traced argument"

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        import jax

        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        loss_fn = self.loss_fn()

        def update(p, lr, x, y):
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            return [pi - lr * gi for pi, gi in zip(p, g)], loss

        self._update = jax.jit(update, donate_argnums=(0,))
        self.set_params(params)
        self.set_lr(lr)
        self.step = self._step

    def loss_fn(self):
        """``loss(p, x, y)`` of the model, ``p`` the list of params in neutral-name order."""
        jax, jnp, L = self.jax, self.jnp, self.layers

        def loss_fn(p, x, y):
            h = x
            for i in range(L - 1):
                h = jax.nn.relu(h @ p[2 * i] + p[2 * i + 1])
            z = h @ p[2 * L - 2] + p[2 * L - 1]
            logp = jax.nn.log_softmax(z, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

        return loss_fn

    def convert(self, x, y):
        return (self.jax.device_put(x), self.jax.device_put(y))

    def _step(self, batch):
        x, y = batch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.p, loss = self._update(self.p, self._lr, x, y)
        return float(loss)

    def get_params(self):
        return {k: np.array(v) for k, v in zip(_names(self.layers), self.p)}

    def set_params(self, params):
        self.p = [self.jnp.asarray(np.array(params[k], dtype=self.dtype)) for k in _names(self.layers)]

    def set_lr(self, lr):
        self.lr = float(lr)
        self._lr = self.jnp.asarray(self.lr, dtype=self.dtype)


class Torch(Peer):
    key, title = "torch", "PyTorch eager"
    optional, requires = True, ("torch",)
    note = "torch.addmm/relu/cross_entropy, loss.backward(), torch.optim.SGD(foreach=True), zero_grad(set_to_none)"

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        import torch

        self.torch = torch
        self.F = torch.nn.functional
        self.p = [torch.tensor(np.array(params[k], dtype=dtype), requires_grad=True) for k in _names(self.layers)]
        self.opt = torch.optim.SGD(self.p, lr=self.lr, foreach=True)
        self.step = self._step

    def convert(self, x, y):
        return (self.torch.from_numpy(x), self.torch.from_numpy(y))

    def _step(self, batch):
        x, y = batch
        p, L, torch = self.p, self.layers, self.torch
        h = x
        for i in range(L - 1):
            h = torch.relu(torch.addmm(p[2 * i + 1], h, p[2 * i]))
        z = torch.addmm(p[2 * L - 1], h, p[2 * L - 2])
        loss = self.F.cross_entropy(z, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def get_params(self):
        return {k: v.detach().numpy().copy() for k, v in zip(_names(self.layers), self.p)}

    def set_params(self, params):
        with self.torch.no_grad():
            for k, v in zip(_names(self.layers), self.p):
                v.copy_(self.torch.from_numpy(np.array(params[k], dtype=self.dtype)))

    def set_lr(self, lr):
        self.lr = float(lr)
        for group in self.opt.param_groups:
            group["lr"] = self.lr


class Autograd(Peer):
    key, title = "autograd", "autograd"
    optional, requires = True, ("autograd",)
    note = "autograd.value_and_grad of the NumPy loss, in-place p -= lr * g"

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version

        return f"autograd {version('autograd')}"

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        import autograd
        import autograd.numpy as anp

        L = self.layers

        def loss_fn(p, x, y):
            h = x
            for i in range(L - 1):
                h = anp.maximum(anp.dot(h, p[2 * i]) + p[2 * i + 1], 0.0)
            z = anp.dot(h, p[2 * L - 2]) + p[2 * L - 1]
            shifted = z - anp.max(z, axis=1, keepdims=True)
            logp = shifted - anp.log(anp.sum(anp.exp(shifted), axis=1, keepdims=True))
            return -anp.mean(logp[anp.arange(x.shape[0]), y])

        self._vg = autograd.value_and_grad(loss_fn)
        self.p = [np.array(params[k], dtype=dtype) for k in _names(L)]
        self.step = self._step

    def _step(self, batch):
        x, y = batch
        loss, g = self._vg(self.p, x, y)
        lr = self.lr
        for p, gp in zip(self.p, g):
            p -= lr * gp
        return float(loss)

    def get_params(self):
        return {k: v.copy() for k, v in zip(_names(self.layers), self.p)}

    def set_params(self, params):
        for k, v in zip(_names(self.layers), self.p):
            np.copyto(v, params[k])


class PyTensor(Peer):
    key, title = "pytensor", "PyTensor"
    optional, requires = True, ("pytensor",)
    note = "pytensor.function([x, y], loss, updates=SGD) in the default mode, trust_input=True"

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        import pytensor
        import pytensor.tensor as pt
        from pytensor.compile.mode import get_default_mode

        L = self.layers
        pytensor.config.floatX = dtype
        self.shared = [pytensor.shared(np.array(params[k], dtype=dtype), name=k) for k in _names(L)]
        self._lr = pytensor.shared(np.asarray(lr, dtype=dtype), name="lr")
        x = pt.matrix("x", dtype=dtype)
        y = pt.vector("y", dtype="int64")
        h = x
        p = self.shared
        for i in range(L - 1):
            h = pt.maximum(h @ p[2 * i] + p[2 * i + 1], 0)
        z = h @ p[2 * L - 2] + p[2 * L - 1]
        logp = pt.special.log_softmax(z, axis=-1)
        loss = -pt.mean(logp[pt.arange(y.shape[0]), y])
        grads = pytensor.grad(loss, p)
        updates = [(pi, pi - self._lr * gi) for pi, gi in zip(p, grads)]
        self.fn = pytensor.function([x, y], loss, updates=updates)
        self.fn.trust_input = True
        self.mode = type(get_default_mode().linker).__name__
        self.step = self._step

    def _step(self, batch):
        x, y = batch
        return float(self.fn(x, y))

    def get_params(self):
        return {k: v.get_value(borrow=False) for k, v in zip(_names(self.layers), self.shared)}

    def set_params(self, params):
        for k, v in zip(_names(self.layers), self.shared):
            v.set_value(np.array(params[k], dtype=self.dtype))

    def set_lr(self, lr):
        self.lr = float(lr)
        self._lr.set_value(np.asarray(lr, dtype=self.dtype))


ALL: dict[str, type[Peer]] = {
    c.key: c
    for c in (
        Symdiff,
        SymdiffCall,
        SymdiffNoGuard,
        SymdiffNumba,
        SymdiffTorch,
        SymdiffJax,
        HandNumpy,
        GemmFloor,
        Jax,
        Torch,
        Autograd,
        PyTensor,
    )
}
CORE = ("symdiff", "symdiff-call", "symdiff-noguard", "hand", "gemm")
