"""One causal self-attention block learns to reverse short sequences of digits.

A sequence model reads a batch of sequences as a 3-D tensor ``(samples, timesteps, features)``. Here each
sample is ``a1 .. a5 | b1 .. b4``: five random digits, a separator, and the first four digits of the answer
(teacher forcing), one-hot encoded as ``(N, 10, 11)``. At each position after the separator the model predicts
the next digit of the reversed sequence ``b = a5 .. a1``. The block is written with plain symdiff ops:

- token embedding (the one-hot input ``@ W_emb``) plus a learned position embedding;
- queries, keys and values: ``h @ W_q``, ``h @ W_k``, ``h @ W_v`` (``@`` on 3-D tensors);
- scores ``q @ k^T / sqrt(d)``, the causal mask with ``sd.where`` (position t sees positions <= t only),
  ``sd.softmax(axis=-1)``;
- an output projection, a residual connection, a dense layer to the logits, and softmax cross-entropy per token.

Answering ``b_{k+1} = a_{5-k}`` at position ``5 + k`` means looking back at position ``4 - k``: the block has to
learn that from the position embeddings. It is trained with ``sd.fit`` and tested on held-out sequences (none
of them seen in training); then the gradient with respect to the query weights is derived step by step
(``sd.explain``) and printed as NumPy-style formulas (``sd.grad``), and one test sequence's attention shows
where each answer position looks and that the future gets exactly zero weight.

Run: ``python examples/attention.py [--epochs 8] [--train 4000]``
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import symdiff as sd

DIGITS, LENGTH = 10, 5  # sequences of 5 digits 0-9
SEP = DIGITS  # the separator token
VOCAB, STEPS = DIGITS + 1, 2 * LENGTH  # 11 token kinds; a5 .. a1 | b1 .. b4 is 10 positions


def sequences(count: int, rng: np.random.Generator, exclude: set[bytes] = frozenset()) -> np.ndarray:
    """``count`` distinct random digit sequences ``(count, LENGTH)``, none of them in ``exclude``."""
    seen, rows = set(exclude), []
    while len(rows) < count:
        a = rng.integers(0, DIGITS, size=LENGTH)
        if a.tobytes() not in seen:
            seen.add(a.tobytes())
            rows.append(a)
    return np.array(rows)


def encode(a: np.ndarray) -> dict[str, np.ndarray]:
    """The model's data: one-hot inputs ``a | SEP | b[:-1]`` (N, STEPS, VOCAB) and targets ``b`` (N, LENGTH)."""
    b = a[:, ::-1]
    tokens = np.concatenate([a, np.full((len(a), 1), SEP), b[:, :-1]], axis=1)
    return {"x": np.eye(VOCAB, dtype=np.float32)[tokens], "y": np.ascontiguousarray(b, dtype=np.int64)}


def attention_block(width: int) -> tuple[sd.Expr, dict[str, sd.Expr]]:
    """The loss of one causal self-attention block on the reversal task, and its named intermediate nodes."""
    f32 = "float32"
    x = sd.Input("x", shape=(None, STEPS, VOCAB), dtype=f32)
    y = sd.Input("y", shape=(None, LENGTH), dtype="int64")
    W_emb = sd.Param("W_emb", shape=(VOCAB, width), dtype=f32)
    pos = sd.Param("pos", shape=(STEPS, width), dtype=f32, init="normal")
    W_q, W_k, W_v, W_o = (sd.Param(f"W_{c}", shape=(width, width), dtype=f32) for c in "qkvo")

    h = (x @ W_emb + pos).named("h")  # token embedding (a one-hot row picks a row of W_emb) + position
    q, k, v = (h @ W_q).named("q"), (h @ W_k).named("k"), (h @ W_v).named("v")
    k_T = sd.swapaxes(k, 1, 2).named("k_T")  # (N, width, STEPS)
    scores = (q @ k_T / math.sqrt(width)).named("scores")  # (N, STEPS, STEPS)
    causal = sd.constant(np.tril(np.ones((STEPS, STEPS), dtype=bool)))  # row t: True at columns <= t
    masked = sd.where(causal, scores, -1e9).named("masked")
    attn = sd.softmax(masked, axis=-1).named("attn")
    h2 = (h + (attn @ v) @ W_o).named("h2")  # output projection and residual
    logits = sd.dense(h2, VOCAB, "out")  # (N, STEPS, VOCAB)
    loss = sd.softmax_cross_entropy(logits[:, LENGTH:, :], y)  # per token, the answer positions only
    return loss, {"attn": attn, "W_q": W_q}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="passes over the training sequences (default 8)")
    parser.add_argument("--train", type=int, default=4000, help="training sequences (default 4000)")
    parser.add_argument("--width", type=int, default=32, help="embedding width d (default 32)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    train_a = sequences(args.train, rng)
    test_a = sequences(1000, rng, exclude={a.tobytes() for a in train_a})
    train, test = encode(train_a), encode(test_a)
    print(
        f"task: reverse {LENGTH} digits; {len(train_a)} training and {len(test_a)} held-out sequences, "
        f"inputs {train['x'].shape} one-hot, targets {train['y'].shape}"
    )

    loss, nodes = attention_block(args.width)
    params = sd.init_params(loss, seed=0)
    count = sum(p.size for p in params.values())
    print(f"model: one causal self-attention block, d = {args.width}, {count} parameters")
    t0 = time.perf_counter()
    history = sd.fit(
        loss,
        params,
        train,
        optimizer=sd.optim.Adam(lr=0.01),
        batch_size=64,
        epochs=args.epochs,
        metrics=["accuracy"],
        progress=False,
    )
    seconds = time.perf_counter() - t0
    result = sd.evaluate(loss, params, test, metrics=["accuracy"])
    print(f"training token accuracy {history.history['accuracy'][-1]:.4f} (loss {history.history['loss'][-1]:.4f})")
    print(f"held-out token accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f})")
    print(f"training time {seconds:.2f} s for {history.steps} steps ({args.epochs} epochs)")

    print("\nthe gradient of the loss with respect to the query weights, step by step (sd.explain):")
    print(sd.explain(loss, nodes["W_q"]))
    print("\nthe same gradient as formulas (sd.grad, printed with sd.to_text):")
    print(sd.to_text(sd.grad(loss, nodes["W_q"])))

    show = sd.compile({"attn": nodes["attn"]})
    attn = show(**{k: v for k, v in params.items() if k in show.inputs}, x=test["x"][:1])["attn"][0]
    a = test_a[0]
    print(f"\nattention of the held-out sequence {' '.join(map(str, a))} (reversed: {' '.join(map(str, a[::-1]))}):")
    for t in range(LENGTH, STEPS):
        src = int(np.argmax(attn[t]))
        future = float(np.abs(attn[t, t + 1 :]).sum())
        print(
            f"  position {t} (answers b{t - LENGTH + 1}) looks at position {src} (digit {a[src]}) with weight "
            f"{attn[t, src]:.3f}; weight on later positions {future:g}"
        )


if __name__ == "__main__":
    main()
