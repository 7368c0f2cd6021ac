"""The convolutional benchmark (issue 12): two small CNNs, their data, a float64 reference and the CNN peers.

Both models are NHWC image classifiers: ``len(channels)`` blocks of conv ``k x k`` ('same', stride 1) + bias,
ReLU, 2x2 max-pool (stride 2), then the pooled maps flattened in NHWC order into a dense layer and softmax
cross-entropy; one training step is forward, backward and an SGD update. Parameters use neutral names:
``W<i>, b<i>`` for conv block ``i`` (filters ``(k, k, c_in, c_out)``, as in the issue) and ``W<L-1>, b<L-1>``
for the dense layer ``(features, classes)``. Each peer maps them to its own layout.

The peers (``PEERS``, keys shared with ``peers.ALL`` so ``--peers`` selects both):

- ``hand``: an expert hand-written NumPy im2col step, the baseline of every ratio (see :class:`HandCNN`);
- ``symdiff``: the same model built with ``sd.conv2d``, ``sd.max_pool2d``, ``sd.dense`` and
  ``sd.softmax_cross_entropy``, compiled with ``sd.compile_step``, timed through ``step.run(batch)``; skipped
  while this symdiff has no ``sd.conv2d``;
- ``torch``: PyTorch CPU eager, NCHW (its native layout: batches are converted once, outside the timing);
- ``jax``: ``jax.jit`` of the whole update, NHWC with ``lax.conv_general_dilated`` and ``lax.reduce_window``.

``reference_step`` is a plain float64 forward and backward (a sum over the kernel taps, no im2col) used by the
correctness check (``check.check_peer(..., model=cnn)``) before timing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .peers import Jax, Peer, Symdiff, Torch


@dataclass(frozen=True)
class CNNSpec:
    """``len(channels)`` conv ``kernel x kernel`` 'same' + ReLU + 2x2 max-pool blocks on ``image`` (H, W, C),
    then a dense layer to ``classes``; trained on batches of ``batch``."""

    name: str
    image: tuple[int, int, int]
    channels: tuple[int, ...]
    classes: int
    batch: int
    kernel: int = 3

    @property
    def layers(self) -> int:
        """Parameterized layers: the conv blocks and the dense layer."""
        return len(self.channels) + 1

    def convs(self) -> list[tuple[int, int, int, int]]:
        """``(H, W, c_in, c_out)`` at the input of each conv block."""
        (h, w, c), out = self.image, []
        for co in self.channels:
            out.append((h, w, c, co))
            h, w, c = h // 2, w // 2, co
        return out

    @property
    def features(self) -> int:
        """Length of the flattened pooled maps: the dense layer's input."""
        h, w, _, c = self.convs()[-1]
        return (h // 2) * (w // 2) * c

    @property
    def label(self) -> str:
        h, w, c = self.image
        k = self.kernel
        blocks = " → ".join(f"conv {k}×{k}×{co} → pool" for co in self.channels)
        return f"{h}×{w}×{c}: {blocks} → dense {self.classes}, batch {self.batch}"

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter shapes by neutral name."""
        k, out = self.kernel, {}
        for i, (_, _, ci, co) in enumerate(self.convs()):
            out[f"W{i}"], out[f"b{i}"] = (k, k, ci, co), (co,)
        last = len(self.channels)
        out[f"W{last}"], out[f"b{last}"] = (self.features, self.classes), (self.classes,)
        return out


SIZES: dict[str, CNNSpec] = {
    "small": CNNSpec("small", (8, 8, 1), (16,), 10, 64),
    "large": CNNSpec("large", (32, 32, 3), (32, 64), 10, 128),
}


def init_params(spec: CNNSpec, dtype: str = "float32", seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal filters and weights, small random biases (a peer that drops a bias is caught by the check)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    out: dict[str, np.ndarray] = {}
    for name, shape in spec.shapes().items():
        if name.startswith("W"):
            fan_in = int(np.prod(shape[:-1]))
            out[name] = rng.standard_normal(shape, dtype=dt) * dt.type(np.sqrt(2.0 / fan_in))
        else:
            out[name] = rng.standard_normal(shape, dtype=dt) * dt.type(0.01)
    return out


def make_batches(spec: CNNSpec, dtype: str = "float32", count: int = 4, seed: int = 1, rows: int | None = None):
    """``count`` batches ``(x, y)``: images uniform in [0, 1) of shape ``(rows, H, W, C)``, int64 labels."""
    rng = np.random.default_rng(seed)
    n = rows or spec.batch
    return [
        (rng.random((n, *spec.image), dtype=np.dtype(dtype)), rng.integers(0, spec.classes, size=n, dtype=np.int64))
        for _ in range(count)
    ]


def reference_step(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, dtype: str = "float64"):
    """Loss and gradients (float64 unless told), written for clarity: ``(loss, {name: grad})``.

    Convolution is a sum over the kernel taps of shifted inputs times that tap's filter matrix; its input
    gradient adds each tap's contribution back at the shifted place. Max-pool gradients split ties evenly.
    """
    p = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    h = np.asarray(x, dtype=dtype)
    n, L = h.shape[0], len(p) // 2
    saved = []
    for i in range(L - 1):
        W = p[f"W{i}"]
        k = W.shape[0]
        pad = (k - 1) // 2
        H, Wd = h.shape[1:3]
        hp = np.pad(h, ((0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)))
        z = sum(hp[:, a : a + H, b : b + Wd, :] @ W[a, b] for a in range(k) for b in range(k)) + p[f"b{i}"]
        r = np.maximum(z, 0)
        r6 = r.reshape(n, H // 2, 2, Wd // 2, 2, -1)
        pooled = r6.max(axis=(2, 4))
        saved.append((hp, z, r6, pooled))
        h = pooled
    flat = h.reshape(n, -1)
    logits = flat @ p[f"W{L - 1}"] + p[f"b{L - 1}"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(n), y].mean()
    delta = np.exp(logp)
    delta[np.arange(n), y] -= 1
    delta /= n
    grads = {f"W{L - 1}": flat.T @ delta, f"b{L - 1}": delta.sum(axis=0)}
    dh = (delta @ p[f"W{L - 1}"].T).reshape(h.shape)
    for i in reversed(range(L - 1)):
        hp, z, r6, pooled = saved[i]
        W = p[f"W{i}"]
        k = W.shape[0]
        pad = (k - 1) // 2
        H, Wd = z.shape[1:3]
        winners = r6 == pooled[:, :, None, :, None, :]
        share = winners / winners.sum(axis=(2, 4), keepdims=True)
        dz = (share * dh[:, :, None, :, None, :]).reshape(z.shape) * (z > 0)
        grads[f"W{i}"] = np.stack(
            [
                np.stack(
                    [np.tensordot(hp[:, a : a + H, b : b + Wd, :], dz, axes=([0, 1, 2], [0, 1, 2])) for b in range(k)]
                )
                for a in range(k)
            ]
        )
        grads[f"b{i}"] = dz.sum(axis=(0, 1, 2))
        if i > 0:
            dhp = np.zeros_like(hp)
            for a in range(k):
                for b in range(k):
                    dhp[:, a : a + H, b : b + Wd, :] += dz @ W[a, b].T
            dh = dhp[:, pad : pad + H, pad : pad + Wd, :]
    return float(loss), grads


# -- symdiff ------------------------------------------------------------------------------------
def symdiff_cnn(spec: CNNSpec, dtype: str):
    """The CNN built with ``sd.conv2d``, ``sd.max_pool2d`` and ``sd.dense``: ``(loss, name map neutral -> symdiff)``."""
    import symdiff as sd

    x = sd.Input("x", shape=(None, *spec.image), dtype=dtype)
    y = sd.Input("y", shape=(None,), dtype="int64")
    h, names = x, {}
    for i, (_, _, ci, co) in enumerate(spec.convs()):
        W = sd.Param(f"conv{i}_W", shape=(spec.kernel, spec.kernel, ci, co), dtype=dtype)
        b = sd.Param(f"conv{i}_b", shape=(co,), dtype=dtype)
        h = sd.max_pool2d(sd.relu(sd.conv2d(h, W, padding="same") + b), 2)
        names[f"W{i}"], names[f"b{i}"] = W.label, b.label
    last = len(spec.channels)
    logits = sd.dense(sd.reshape(h, (-1, spec.features)), spec.classes, "out", dtype=dtype)
    names[f"W{last}"], names[f"b{last}"] = "out_W", "out_b"
    return sd.softmax_cross_entropy(logits, y), names


class SymdiffCNN(Symdiff):
    note = (
        "sd.conv2d/sd.max_pool2d/sd.dense model, sd.compile_step(loss, params, sd.optim.SGD(lr)), "
        "timed via step.run(batch)"
    )

    @classmethod
    def missing(cls) -> str | None:
        import symdiff as sd

        absent = [f"sd.{f}" for f in ("conv2d", "max_pool2d") if not hasattr(sd, f)]
        return f"{' and '.join(absent)} not in this symdiff" if absent else None

    def build(self):
        return symdiff_cnn(self.spec, self.dtype)


# -- hand-written NumPy -------------------------------------------------------------------------
class HandCNN(Peer):
    """An expert's NumPy step for this one model family: im2col, one GEMM per conv and per gradient.

    One workspace per batch size, allocated on first use, so a step allocates almost nothing:

    - padding: each conv block reads a preallocated zero-bordered buffer; the previous block's max-pool writes
      its output straight into that buffer's interior (``out=`` a strided view), the last block's into the
      dense layer's input;
    - im2col: one ``np.copyto`` from a ``sliding_window_view`` of the padded buffer (made once) into a
      contiguous ``(N·H·W, k·k·C)`` buffer, then one GEMM with the filters viewed as ``(k·k·C, C_out)``;
    - bias add and ReLU in place on the GEMM output; max-pool by a reshape view ``(N, H/2, 2, W/2, 2, C)``
      and three ``np.maximum`` over its corners (measured faster than ``np.maximum.reduce`` over two axes);
    - softmax cross-entropy: ``np.maximum.reduce``/``np.add.reduce`` (no Python wrappers), the loss from
      the shifted logits without temporaries, and ``lr/n`` folded into the row normaliser, so every
      gradient below is already scaled and each update is one in-place subtraction;
    - backward: ReLU's mask folded into the pooled gradient (a window's max is positive exactly where its
      winner passed ReLU); the pooled gradient routed corner by corner to the first corner equal to the max
      (as PyTorch does: a tie, e.g. a channel whose inputs all died, does not multiply the gradient), one GEMM
      for the filter gradient, a GEMV with a ones vector for each bias gradient,
      one GEMM for the input columns and col2im as ``k·k`` strided slice-adds: the centre tap is copied and
      covers the whole image, the others add onto the part they overlap (no zero fill, no border work).
    """

    key, title = "hand", "hand-written NumPy (im2col)"
    note = (
        "im2col by one copy from a sliding_window_view into a preallocated buffer, one GEMM per conv and per "
        "gradient, col2im by k·k slice-adds, pooling on reshape views, bias gradients as GEMVs with a ones "
        "vector, lr/n folded into the softmax normaliser, in-place updates"
    )

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        self.W = [np.array(params[f"W{i}"], dtype=dtype) for i in range(self.layers)]
        self.b = [np.array(params[f"b{i}"], dtype=dtype) for i in range(self.layers)]
        self.Wm = [w.reshape(-1, w.shape[-1]) for w in self.W]  # views: updates write through
        self._ws: dict[int, tuple] = {}
        self.step = self._step

    def _workspace(self, n: int) -> tuple:
        from numpy.lib.stride_tricks import sliding_window_view

        dt, k = np.dtype(self.dtype), self.spec.kernel
        pad = (k - 1) // 2
        flat = np.empty((n, self.spec.features), dt)
        blocks = []
        for H, W, ci, co in self.spec.convs():
            xp = np.zeros((n, H + k - 1, W + k - 1, ci), dt)
            windows = sliding_window_view(xp, (k, k), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
            cols = np.empty((n, H, W, k, k, ci), dt)
            z = np.empty((n * H * W, co), dt)
            z6 = z.reshape(n, H // 2, 2, W // 2, 2, co)
            dz = np.empty_like(z)
            dz6 = dz.reshape(z6.shape)
            blocks.append(
                {
                    "inner": xp[:, pad : pad + H, pad : pad + W, :],
                    "windows": windows,
                    "cols": cols,
                    "cols2": cols.reshape(n * H * W, -1),
                    "z": z,
                    "z6": z6,
                    "corners": (z6[:, :, 0, :, 0], z6[:, :, 0, :, 1], z6[:, :, 1, :, 0], z6[:, :, 1, :, 1]),
                    "dz": dz,
                    "dz_corners": (dz6[:, :, 0, :, 0], dz6[:, :, 0, :, 1], dz6[:, :, 1, :, 0], dz6[:, :, 1, :, 1]),
                    "pos": np.empty((n, H // 2, W // 2, co), np.bool_),
                    "ones": np.ones(n * H * W, dt),
                    "dW": np.empty((k * k * ci, co), dt),
                    "db": np.empty(co, dt),
                }
            )
        for i, blk in enumerate(blocks):  # where each block's pooled output lives, and its gradient
            H, W, _, co = self.spec.convs()[i]
            if i + 1 < len(blocks):
                blk["pooled"] = blocks[i + 1]["inner"]
                nxt = blocks[i + 1]
                Hn, Wn, cin, _ = self.spec.convs()[i + 1]
                nxt["dcols"] = np.empty((n * Hn * Wn, k * k * cin), dt)
                nxt["dx"] = np.empty((n, Hn, Wn, cin), dt)
                nxt["taps"] = _col2im_taps(Hn, Wn, k)
                blk["dpooled"] = nxt["dx"]
            else:
                blk["pooled"] = flat.reshape(n, H // 2, W // 2, co)
        logits = np.empty((n, self.spec.classes), dt)
        dflat = np.empty_like(flat)
        blocks[-1]["dpooled"] = dflat.reshape(blocks[-1]["pooled"].shape)
        dense = (flat, logits, dflat, np.empty_like(self.W[-1]), np.empty_like(self.b[-1]), np.ones(n, dt))
        rows = (np.empty(n, dt), np.empty(n, dt), np.arange(n))
        ws = (blocks, dense, rows)
        self._ws[n] = ws
        return ws

    def _step(self, batch):
        x, y = batch
        n = x.shape[0]
        blocks, dense, (col, logc, rows) = self._ws.get(n) or self._workspace(n)
        flat, z, dflat, dWd, dbd, ones_n = dense
        W, b, Wm, L = self.W, self.b, self.Wm, self.layers
        mx = np.maximum
        np.copyto(blocks[0]["inner"], x)
        for i, blk in enumerate(blocks):
            np.copyto(blk["cols"], blk["windows"])
            a = blk["z"]
            np.matmul(blk["cols2"], Wm[i], out=a)
            a += b[i]
            mx(a, 0, out=a)
            c00, c01, c10, c11 = blk["corners"]
            p = blk["pooled"]
            mx(c00, c01, out=p)
            mx(p, c10, out=p)
            mx(p, c11, out=p)
        np.matmul(flat, W[-1], out=z)
        z += b[-1]
        # softmax cross-entropy; the loss from the shifted logits; lr/n folded into the normaliser
        np.maximum.reduce(z, axis=1, out=col)
        z -= col[:, None]
        picked = float(np.add.reduce(z[rows, y]))
        np.exp(z, out=z)
        np.add.reduce(z, axis=1, out=col)
        np.log(col, out=logc)
        loss = (float(np.add.reduce(logc)) - picked) / n
        scale = self.lr / n
        col *= 1.0 / scale
        z /= col[:, None]
        z[rows, y] -= scale
        # dense layer: z is now lr * dloss/dlogits
        np.matmul(flat.T, z, out=dWd)
        np.matmul(ones_n, z, out=dbd)
        np.matmul(z, W[-1].T, out=dflat)
        W[-1] -= dWd
        b[-1] -= dbd
        for i in range(L - 2, -1, -1):
            blk = blocks[i]
            p, dp, pos = blk["pooled"], blk["dpooled"], blk["pos"]
            np.greater(p, 0, out=pos)  # the window's winner passed ReLU
            np.multiply(dp, pos, out=dp)
            for c, (corner, dzc) in enumerate(zip(blk["corners"], blk["dz_corners"])):
                np.equal(corner, p, out=pos)  # the first corner holding the max takes the window's gradient
                np.multiply(pos, dp, out=dzc)
                if c < 3:
                    dp -= dzc
            dz, dW, db = blk["dz"], blk["dW"], blk["db"]
            np.matmul(blk["cols2"].T, dz, out=dW)
            np.matmul(blk["ones"], dz, out=db)
            if i > 0:
                dcols = blk["dcols"]
                np.matmul(dz, Wm[i].T, out=dcols)
                dc = dcols.reshape(blk["cols"].shape)
                dx = blk["dx"]
                (cy, cx), *others = blk["taps"]
                np.copyto(dx, dc[:, :, :, cy, cx])
                for ty, tx, dst, src in others:
                    dx[dst] += dc[src + (ty, tx)]
            Wm[i] -= dW
            b[i] -= db
        return loss

    def get_params(self):
        out = {}
        for i in range(self.layers):
            out[f"W{i}"], out[f"b{i}"] = self.W[i].copy(), self.b[i].copy()
        return out

    def set_params(self, params):
        for i in range(self.layers):
            np.copyto(self.W[i], params[f"W{i}"])
            np.copyto(self.b[i], params[f"b{i}"])


def _col2im_taps(height: int, width: int, k: int) -> list:
    """For col2im of a 'same' stride-1 conv: the centre tap first, then ``(ty, tx, dst, src)`` of each other tap.

    Tap ``(ty, tx)`` of output pixel ``(oy, ox)`` read input pixel ``(oy + ty - pad, ox + tx - pad)``; ``dst``
    indexes the input pixels it reached and ``src`` the output pixels that reached them (both inside the image).
    """
    pad = (k - 1) // 2

    def span(t: int, size: int) -> tuple[slice, slice]:
        lo, hi = max(0, pad - t), min(size, size + pad - t)
        return slice(lo + t - pad, hi + t - pad), slice(lo, hi)

    taps: list = [(pad, pad)]
    for ty in range(k):
        for tx in range(k):
            if (ty, tx) != (pad, pad):
                (dy, sy), (dx, sx) = span(ty, height), span(tx, width)
                taps.append((ty, tx, (slice(None), dy, dx), (slice(None), sy, sx)))
    return taps


# -- optional peers ----------------------------------------------------------------------------
class TorchCNN(Torch):
    note = (
        "torch.nn.functional.conv2d/relu/max_pool2d/linear-by-addmm/cross_entropy in NCHW (batches converted "
        "once, outside the timing), loss.backward(), torch.optim.SGD(foreach=True), zero_grad(set_to_none)"
    )

    def __init__(self, spec, params, dtype, lr):
        Peer.__init__(self, spec, params, dtype, lr)
        import torch

        self.torch, self.F = torch, torch.nn.functional
        self.names = list(spec.shapes())
        self.p = [torch.zeros(self._layout(k), dtype=getattr(torch, dtype), requires_grad=True) for k in self.names]
        self.set_params(params)
        self.opt = torch.optim.SGD(self.p, lr=self.lr, foreach=True)
        self.step = self._step
        self.pad = (spec.kernel - 1) // 2

    def _layout(self, name: str) -> tuple[int, ...]:
        shape = self.spec.shapes()[name]
        return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape

    def _dense_perm(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The dense weight's rows come from NHWC-flattened maps here and NCHW-flattened ones in torch."""
        h, w, _, c = self.spec.convs()[-1]
        return (h // 2, w // 2, c, self.spec.classes), (2, 0, 1, 3)

    def _to_torch(self, name: str, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=self.dtype)
        if v.ndim == 4:
            return v.transpose(3, 2, 0, 1)
        if name == self.names[-2]:
            shape, perm = self._dense_perm()
            return v.reshape(shape).transpose(perm).reshape(v.shape)
        return v

    def _from_torch(self, name: str, v: np.ndarray) -> np.ndarray:
        if v.ndim == 4:
            return v.transpose(2, 3, 1, 0).copy()
        if name == self.names[-2]:
            shape, perm = self._dense_perm()
            hwc = tuple(shape[i] for i in perm)
            return v.reshape(hwc).transpose(np.argsort(perm)).reshape(v.shape).copy()
        return v.copy()

    def convert(self, x, y):
        return (self.torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), self.torch.from_numpy(y))

    def _step(self, batch):
        x, y = batch
        F, p, pad = self.F, self.p, self.pad
        h = x
        for i in range(len(p) // 2 - 1):
            h = F.max_pool2d(F.relu(F.conv2d(h, p[2 * i], p[2 * i + 1], padding=pad)), 2)
        z = self.torch.addmm(p[-1], h.reshape(h.shape[0], -1), p[-2])
        loss = F.cross_entropy(z, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def get_params(self):
        return {k: self._from_torch(k, v.detach().numpy()) for k, v in zip(self.names, self.p)}

    def set_params(self, params):
        with self.torch.no_grad():
            for k, v in zip(self.names, self.p):
                v.copy_(self.torch.from_numpy(np.ascontiguousarray(self._to_torch(k, params[k]))))


class JaxCNN(Jax):
    note = (
        "jax.jit of the whole update (value_and_grad + SGD), NHWC: lax.conv_general_dilated 'SAME', "
        "lax.reduce_window max-pool; params donated, lr a traced argument"
    )

    def loss_fn(self):
        jax, jnp, lax, convs = self.jax, self.jnp, self.jax.lax, len(self.spec.channels)

        def loss_fn(p, x, y):
            h = x
            for i in range(convs):
                h = lax.conv_general_dilated(h, p[2 * i], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                h = jax.nn.relu(h + p[2 * i + 1])
                h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            z = h.reshape(h.shape[0], -1) @ p[-2] + p[-1]
            logp = jax.nn.log_softmax(z, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

        return loss_fn


PEERS: dict[str, type[Peer]] = {c.key: c for c in (SymdiffCNN, HandCNN, TorchCNN, JaxCNN)}
ROW_ORDER = ("symdiff", "hand", "torch", "jax")
