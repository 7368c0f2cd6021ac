"""A tour of tensors, done symbolically.

The primer's tensor tour (rank, shape, dtype, slicing, batches, element-wise operations,
broadcasting, the tensor dot product, reshaping and transposing) with symdiff expressions instead
of NumPy arrays. Each step builds an expression, prints it as a formula together with the shape and
dtype symdiff worked out *before any data exists*, then compiles it to NumPy code
(``sd.compile(expr)(**values)``), runs it on small arrays and checks the result against NumPy itself.

Run: ``python examples/tensors.py``
"""

from __future__ import annotations

import argparse

import numpy as np

import symdiff as sd

RNG = np.random.default_rng(0)
CHECKED = 0


def show(title: str, expr: sd.Expr, expected: np.ndarray, **values: np.ndarray) -> None:
    """Print ``expr`` with its shape and dtype, evaluate it on ``values`` and compare with NumPy's ``expected``."""
    global CHECKED
    result = sd.compile(expr)(**values)
    assert result.shape == np.shape(expected), (title, result.shape, np.shape(expected))
    assert result.dtype == np.asarray(expected).dtype, (title, result.dtype, np.asarray(expected).dtype)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12, err_msg=title)
    CHECKED += 1
    print(f"  {title:<34} {str(expr):<42} shape {str(expr.shape):<16} {expr.dtype}  == NumPy")


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()

    # -- 1. Rank (ndim), shape and dtype ---------------------------------------------------
    # A symbolic tensor is declared with a name, a shape and a dtype. ``None`` marks an axis whose
    # length is only known when data arrives, usually the batch axis.
    print("1. rank, shape and dtype")
    tensors = [
        sd.Input("s"),  # a scalar: rank 0
        sd.Input("v", shape=(5,)),  # a vector: rank 1
        sd.Input("m", shape=(3, 5)),  # a matrix: rank 2
        sd.Input("t", shape=(3, 3, 5)),  # a 3-D tensor
        sd.Input("images", shape=(None, 28, 28), dtype="uint8"),  # a batch of grey-scale images
    ]
    for t in tensors:
        print(f"  {t.label:<7} ndim {t.ndim}  shape {str(t.shape):<16} dtype {t.dtype}")

    # -- 2. Slicing ------------------------------------------------------------------------
    # NumPy's slicing rules: start:stop:step per axis, negative indices count from the end.
    print("\n2. slicing a (3, 3, 5) tensor")
    x = sd.Input("x", shape=(3, 3, 5))
    X = np.arange(45.0).reshape(3, 3, 5)
    my_slice = x[0:2, 0:1, 0:4]
    assert my_slice.shape == (2, 1, 4)
    show("x[0:2, 0:1, 0:4]", my_slice, X[0:2, 0:1, 0:4], x=X)
    show("x[:, 1:-1] (negative index)", x[:, 1:-1], X[:, 1:-1], x=X)
    show("x[:, :, ::2] (a step)", x[:, :, ::2], X[:, :, ::2], x=X)
    show("x[1] (drops an axis)", x[1], X[1], x=X)

    # -- 3. Batches ------------------------------------------------------------------------
    # Deep-learning data comes in batches along the first axis: batch n of size k is x[n*k:(n+1)*k].
    print("\n3. the n-th batch of size k=32 from 128 samples of 8x8")
    digits = sd.Input("digits", shape=(128, 8, 8))
    D = RNG.normal(size=(128, 8, 8))
    k = 32
    for n in range(2):
        batch = digits[n * k : (n + 1) * k]  # symbolic: shape (32, 8, 8), known before any data
        show(f"batch n={n}: digits[{n * k}:{(n + 1) * k}]", batch, D[n * k : (n + 1) * k], digits=D)

    # -- 4. Element-wise operations --------------------------------------------------------
    # relu and addition apply to each entry independently; in NumPy they are vectorized loops.
    print("\n4. element-wise operations")
    a = sd.Input("a", shape=(4, 3))
    b = sd.Input("b", shape=(4, 3))
    A, B = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    show("relu", sd.relu(a), np.maximum(A, 0.0), a=A)
    show("maximum(a, 0) (the same)", sd.maximum(a, 0.0), np.maximum(A, 0.0), a=A)
    show("a + b", a + b, A + B, a=A, b=B)
    show("a * b (not a matrix product)", a * b, A * B, a=A, b=B)
    show("tanh(a) / (1 + b**2)", sd.tanh(a) / (1 + b**2), np.tanh(A) / (1 + B**2), a=A, b=B)

    # -- 5. Broadcasting -------------------------------------------------------------------
    # The smaller tensor is (virtually) repeated along the axes it lacks, aligning trailing axes.
    print("\n5. broadcasting")
    x2 = sd.Input("x", shape=(32, 10))
    bias = sd.Input("bias", shape=(10,))
    X2, Bias = RNG.normal(size=(32, 10)), RNG.normal(size=10)
    show("(32, 10) + (10,)", x2 + bias, X2 + Bias, x=X2, bias=Bias)
    big = sd.Input("big", shape=(64, 3, 32, 10))
    Big = RNG.normal(size=(64, 3, 32, 10))
    show("maximum((64, 3, 32, 10), (32, 10))", sd.maximum(big, x2), np.maximum(Big, X2), big=Big, x=X2)
    # Shapes that do not broadcast are refused when the expression is built, naming both shapes.
    try:
        x2 + sd.Input("wrong", shape=(32,))
    except sd.ShapeError as exc:
        print(f"  (32, 10) + (32,) is refused: {exc}")

    # -- 6. Tensor dot ---------------------------------------------------------------------
    # dot contracts the last axis of the first operand with the first (vector) or next-to-last
    # axis of the second, exactly like np.dot; tensordot names the contracted axes explicitly.
    print("\n6. tensor dot")
    u, w = sd.Input("u", shape=(3,)), sd.Input("w", shape=(3,))
    U, W = RNG.normal(size=3), RNG.normal(size=3)
    show("vector . vector -> scalar", sd.dot(u, w), np.dot(U, W), u=U, w=W)
    m = sd.Input("m", shape=(4, 3))
    M = RNG.normal(size=(4, 3))
    show("(4, 3) . (3,) -> (4,)", sd.dot(m, w), np.dot(M, W), m=M, w=W)
    n_ = sd.Input("n", shape=(3, 2))
    N = RNG.normal(size=(3, 2))
    show("(4, 3) . (3, 2) -> (4, 2)", sd.dot(m, n_), np.dot(M, N), m=M, n=N)
    t4 = sd.Input("t4", shape=(2, 3, 4, 5))  # (a, b, c, d)
    d = sd.Input("d", shape=(5,))  # (d,)
    de = sd.Input("de", shape=(5, 6))  # (d, e)
    T4, Dv, DE = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=5), RNG.normal(size=(5, 6))
    show("(a,b,c,d) . (d,) -> (a,b,c)", sd.dot(t4, d), np.dot(T4, Dv), t4=T4, d=Dv)
    show("(a,b,c,d) . (d,e) -> (a,b,c,e)", sd.dot(t4, de), np.dot(T4, DE), t4=T4, de=DE)
    show("tensordot(axes=1) (the same)", sd.tensordot(t4, de, axes=1), np.tensordot(T4, DE, axes=1), t4=T4, de=DE)
    axes = ([2, 3], [2, 3])  # contract c and d of both operands: (a,b,c,d) x (a,b,c,d) -> (a,b,a,b)
    show("tensordot over two axes", sd.tensordot(t4, t4, axes=axes), np.tensordot(T4, T4, axes=axes), t4=T4)

    # -- 7. Reshape and transpose ----------------------------------------------------------
    print("\n7. reshape and transpose")
    r = sd.Input("r", shape=(3, 2))
    R = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    show("reshape (3, 2) -> (6, 1)", r.reshape(6, 1), R.reshape(6, 1), r=R)
    show("reshape (3, 2) -> (2, 3)", r.reshape(2, 3), R.reshape(2, 3), r=R)
    show("reshape with -1", r.reshape(-1), R.reshape(-1), r=R)
    show("transpose r.T", r.T, R.T, r=R)
    show("transpose(axes=(0, 2, 1, 3))", sd.transpose(t4, (0, 2, 1, 3)), np.transpose(T4, (0, 2, 1, 3)), t4=T4)

    # -- 8. What runs: the generated NumPy code -------------------------------------------
    print("\n8. the NumPy code symdiff generates for relu(x @ W + b) on a batch:")
    xb = sd.Input("x", shape=(None, 4))
    layer = sd.relu(xb @ sd.Param("W", shape=(4, 3)) + sd.Param("b", shape=(3,)))
    print(sd.codegen(layer, name="layer"))

    print(f"all {CHECKED} symbolic results match NumPy")


if __name__ == "__main__":
    main()
