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
from numpy.lib.stride_tricks import as_strided

from .models import softmax_ce_reference
from .peers import HandNumpy, Jax, Peer, Symdiff, Torch


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
    loss, delta = softmax_ce_reference(logits, y)
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

    - layout for im2col: each conv block reads a preallocated zero-bordered channels-first buffer
      ``(C, N, H + 2p, W + 2p)``, so every window row im2col copies is a contiguous run of pixels; im2col is one
      ``np.copyto`` from an ``as_strided`` view ``(k, k, C, N, H, W)`` of it into a contiguous buffer, and the
      conv one GEMM of that buffer's transpose ``(N·H·W, k·k·C)`` with the filters viewed as ``(k·k·C, C_out)``;
    - bias add in place, then max-pool *before* ReLU (they commute, and ReLU then runs on a quarter of the
      data): two ``np.maximum`` over reshape views (pairs of rows, then pairs of columns: NumPy reduces a short
      axis slowly), and ReLU writes the pooled maps straight into the next block's padded buffer (``out=`` a
      transposed view) or into the dense layer's input;
    - softmax cross-entropy: ``np.maximum.reduce``/``np.add.reduce`` (no Python wrappers), the loss from the
      shifted logits without temporaries, and ``lr/n`` folded into the row normaliser, so every gradient below
      is already scaled and each update is one in-place subtraction;
    - backward: ReLU's mask on the pooled gradient (a pooled pre-activation > 0), the routing mask
      ``window == max`` compared with the pre-activations (each window has a winner), its tie count summed in
      ``uint8`` over two pairs of slices and divided out (ties split evenly, as the reference does: a channel
      whose inputs all died ties every window), one GEMM for the filter gradient, a GEMV with a ones vector
      for each bias gradient, one GEMM for the input columns and col2im as ``k·k`` strided slice-adds: the
      centre tap is copied and covers the whole image, the others add onto the part they overlap (no zero
      fill, no border work).
    """

    key, title = "hand", "hand-written NumPy (im2col)"
    note = (
        "channels-first padded buffers, im2col by one copy from an as_strided view, one GEMM per conv and per "
        "gradient, col2im by k·k slice-adds, max-pool before ReLU on reshape views, bias gradients as GEMVs with "
        "a ones vector, lr/n folded into the softmax normaliser, in-place updates"
    )

    def __init__(self, spec, params, dtype, lr):
        super().__init__(spec, params, dtype, lr)
        self.W = [np.array(params[f"W{i}"], dtype=dtype) for i in range(self.layers)]
        self.b = [np.array(params[f"b{i}"], dtype=dtype) for i in range(self.layers)]
        self.Wm = [w.reshape(-1, w.shape[-1]) for w in self.W]  # views: updates write through
        self._ws: dict[int, tuple] = {}
        self.step = self._step

    def _workspace(self, n: int) -> tuple:
        dt, k = np.dtype(self.dtype), self.spec.kernel
        pad = (k - 1) // 2
        convs = self.spec.convs()
        flat = np.empty((n, self.spec.features), dt)
        blocks = []
        for H, W, ci, co in convs:
            xp = np.zeros((ci, n, H + k - 1, W + k - 1), dt)
            s = xp.strides
            windows = as_strided(xp, (k, k, ci, n, H, W), (s[2], s[3], s[0], s[1], s[2], s[3]), writeable=False)
            cols = np.empty((k * k * ci, n * H * W), dt)
            z = np.empty((n * H * W, co), dt)
            z6 = z.reshape(n, H // 2, 2, W // 2, 2, co)
            rows = np.empty((n, H // 2, W, co), dt)
            rows5 = rows.reshape(n, H // 2, W // 2, 2, co)
            top = np.empty((n, H // 2, W, co), np.uint8)
            top5 = top.reshape(rows5.shape)
            dz = np.empty_like(z)
            blocks.append(
                {
                    "inner": xp[:, :, pad : pad + H, pad : pad + W].transpose(1, 2, 3, 0),  # (N, H, W, C) view
                    "windows": windows,
                    "cols": cols,
                    "cols6": cols.reshape(windows.shape),
                    "z": z,
                    "z6": z6,
                    "row_pairs": (z6[:, :, 0], z6[:, :, 1]),
                    "rows": rows5,
                    "col_pairs": (rows5[:, :, :, 0], rows5[:, :, :, 1]),
                    "pre": np.empty((n, H // 2, W // 2, co), dt),  # the pooled pre-activations
                    "win6": np.empty(z6.shape, np.bool_),
                    "ties": (top5, top5[:, :, :, 0], top5[:, :, :, 1], np.empty((n, H // 2, W // 2, co), np.uint8)),
                    "pos": np.empty((n, H // 2, W // 2, co), np.bool_),
                    "dz": dz,
                    "dz6": dz.reshape(z6.shape),
                    "ones": np.ones(n * H * W, dt),
                    "dW": np.empty((k * k * ci, co), dt),
                    "db": np.empty(co, dt),
                }
            )
        for i, blk in enumerate(blocks):  # where each block's ReLU output lives, and its gradient
            H, W, _, co = convs[i]
            if i + 1 < len(blocks):
                nxt = blocks[i + 1]
                Hn, Wn, cin, _ = convs[i + 1]
                blk["out"] = nxt["inner"]
                nxt["dcols"] = np.empty((n * Hn * Wn, k * k * cin), dt)
                nxt["dx"] = np.empty((n, Hn, Wn, cin), dt)
                nxt["taps"] = _col2im_taps(Hn, Wn, k)
                blk["dout"] = nxt["dx"]
            else:
                blk["out"] = flat.reshape(n, H // 2, W // 2, co)
        dflat = np.empty_like(flat)
        blocks[-1]["dout"] = dflat.reshape(blocks[-1]["out"].shape)
        logits = np.empty((n, self.spec.classes), dt)
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
        mx, mm = np.maximum, np.matmul
        np.copyto(blocks[0]["inner"], x)
        for i, blk in enumerate(blocks):
            np.copyto(blk["cols6"], blk["windows"])
            a = blk["z"]
            mm(blk["cols"].T, Wm[i], out=a)
            a += b[i]
            r0, r1 = blk["row_pairs"]
            mx(r0, r1, out=blk["rows"])
            c0, c1 = blk["col_pairs"]
            pre = blk["pre"]
            mx(c0, c1, out=pre)
            mx(pre, 0, out=blk["out"])
        mm(flat, W[-1], out=z)
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
        mm(flat.T, z, out=dWd)
        mm(ones_n, z, out=dbd)
        mm(z, W[-1].T, out=dflat)
        W[-1] -= dWd
        b[-1] -= dbd
        for i in range(L - 2, -1, -1):
            blk = blocks[i]
            pre, dp, pos, win6 = blk["pre"], blk["dout"], blk["pos"], blk["win6"]
            np.greater(pre, 0, out=pos)  # ReLU's mask, on the pooled pre-activations
            np.multiply(dp, pos, out=dp)
            np.equal(blk["z6"], pre[:, :, None, :, None, :], out=win6)  # the window's max (ties: several)
            top, t0, t1, ties = blk["ties"]
            np.add(win6[:, :, 0].view(np.uint8), win6[:, :, 1].view(np.uint8), out=top)
            np.add(t0, t1, out=ties)
            np.divide(dp, ties, out=dp)
            np.multiply(win6, dp[:, :, None, :, None, :], out=blk["dz6"])
            dz, dW, db = blk["dz"], blk["dW"], blk["db"]
            mm(blk["cols"], dz, out=dW)
            mm(blk["ones"], dz, out=db)
            if i > 0:
                dcols = blk["dcols"]
                mm(dz, Wm[i].T, out=dcols)
                dc = dcols.reshape(n, *blk["cols6"].shape[4:], *blk["cols6"].shape[:3])
                dx = blk["dx"]
                (cy, cx), *others = blk["taps"]
                np.copyto(dx, dc[:, :, :, cy, cx])
                for ty, tx, dst, src in others:
                    dx[dst] += dc[src + (ty, tx)]
            Wm[i] -= dW
            b[i] -= db
        return loss

    get_params, set_params = HandNumpy.get_params, HandNumpy.set_params  # the same W{i}, b{i} lists


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
