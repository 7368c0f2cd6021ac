"""Matrix calculus: the identities of The Matrix Cookbook, derived by symdiff and checked against the book.

The Matrix Cookbook (K. B. Petersen and M. S. Pedersen, chapter 2) lists the derivatives of scalar functions of
vectors and matrices: a^T X b, quadratic forms, traces, determinants, inverses. This example writes each function
as a symdiff expression (``a @ X @ b``, ``sd.trace(A @ X @ B)``, ``sd.linalg.slogdet(X)[1]``, ...), asks
``sd.grad`` (or ``sd.hessian``) for its derivative and prints three things side by side:

- the book's closed form (written here by hand, as a string and as a NumPy formula);
- the gradient symdiff derived, printed live by ``sd.to_text`` (named intermediates on their own lines);
- the largest difference between symdiff's compiled gradient and the book's formula evaluated in NumPy, at random
  4x4 inputs, relative to the largest entry of the book's value (float64: expect about 1e-16).

The derivative of a scalar f with respect to a matrix X is the matrix of partial derivatives df/dX[i, j], of X's
shape (the Cookbook's layout, and the shape of symdiff's gradient).

Run: ``python examples/matrix_calculus.py``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import symdiff as sd

N = 4  # the size of every vector and matrix below


@dataclass
class Identity:
    """One Cookbook derivative: the function, the variable, and the book's answer (as text and as NumPy)."""

    f: str  # the function, as the book writes it
    expr: sd.Expr  # the same function in symdiff
    wrt: sd.Expr  # the variable it is differentiated with respect to
    book: str  # the book's closed form of the derivative
    book_value: Callable[[dict[str, np.ndarray]], np.ndarray]  # that closed form, in NumPy
    hessian: bool = False  # the second derivative (sd.hessian) instead of the gradient


def identities() -> list[Identity]:
    """The identities, in the Cookbook's order: linear and quadratic forms, traces, determinant and inverse."""
    x = sd.Param("x", shape=(N,))
    X = sd.Param("X", shape=(N, N))
    a, b, c = (sd.Input(name, shape=(N,)) for name in "abc")
    A, B, C, D = (sd.Input(name, shape=(N, N)) for name in "ABCD")
    inv, det, outer = np.linalg.inv, np.linalg.det, np.outer
    return [
        # -- linear and quadratic forms ---------------------------------------------------------------
        Identity("a^T X b", a @ X @ b, X, "a b^T", lambda v: outer(v["a"], v["b"])),
        Identity("a^T X^T b", a @ X.T @ b, X, "b a^T", lambda v: outer(v["b"], v["a"])),
        Identity(
            "b^T X^T X c",
            b @ X.T @ X @ c,
            X,
            "X (b c^T + c b^T)",
            lambda v: v["X"] @ (outer(v["b"], v["c"]) + outer(v["c"], v["b"])),
        ),
        Identity(
            "(X b + c)^T D (X b + c)",
            (X @ b + c) @ D @ (X @ b + c),
            X,
            "(D + D^T) (X b + c) b^T",
            lambda v: outer((v["D"] + v["D"].T) @ (v["X"] @ v["b"] + v["c"]), v["b"]),
        ),
        Identity("x^T B x", x @ B @ x, x, "(B + B^T) x", lambda v: (v["B"] + v["B"].T) @ v["x"]),
        Identity("x^T B x", x @ B @ x, x, "B + B^T", lambda v: v["B"] + v["B"].T, hessian=True),
        Identity(
            "||A x - b||^2",
            sd.linalg.norm(A @ x - b) ** 2,
            x,
            "2 A^T (A x - b)",
            lambda v: 2 * v["A"].T @ (v["A"] @ v["x"] - v["b"]),
        ),
        # -- traces -----------------------------------------------------------------------------------
        Identity("tr(A X B)", sd.trace(A @ X @ B), X, "A^T B^T", lambda v: v["A"].T @ v["B"].T),
        Identity("tr(X^T X)", sd.trace(X.T @ X), X, "2 X", lambda v: 2 * v["X"]),
        Identity("tr(X^2)", sd.trace(X @ X), X, "2 X^T", lambda v: 2 * v["X"].T),
        Identity("tr(X B X^T)", sd.trace(X @ B @ X.T), X, "X B^T + X B", lambda v: v["X"] @ v["B"].T + v["X"] @ v["B"]),
        Identity(
            "tr(A X B X^T C)",
            sd.trace(A @ X @ B @ X.T @ C),
            X,
            "A^T C^T X B^T + C A X B",
            lambda v: v["A"].T @ v["C"].T @ v["X"] @ v["B"].T + v["C"] @ v["A"] @ v["X"] @ v["B"],
        ),
        # -- determinant and inverse ------------------------------------------------------------------
        Identity("det(X)", sd.linalg.det(X), X, "det(X) X^-T", lambda v: det(v["X"]) * inv(v["X"]).T),
        Identity("ln|det(X)|", sd.linalg.slogdet(X)[1], X, "X^-T", lambda v: inv(v["X"]).T),
        Identity(
            "a^T X^-1 b",
            a @ sd.linalg.inv(X) @ b,
            X,
            "-X^-T a b^T X^-T",
            lambda v: -inv(v["X"]).T @ outer(v["a"], v["b"]) @ inv(v["X"]).T,
        ),
    ]


def random_values(seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs; X is kept well away from singular (det and inverse)."""
    rng = np.random.default_rng(seed)
    values = {name: rng.normal(size=N) for name in "abcx"}
    values.update({name: rng.normal(size=(N, N)) for name in "ABCD"})
    values["X"] = rng.normal(size=(N, N)) + N * np.eye(N)
    return values


def check(item: Identity, values: dict[str, np.ndarray]) -> tuple[list[str], float]:
    """symdiff's derivative of ``item`` (its printed lines) and its relative error against the book's form."""
    derivative = sd.hessian(item.expr, item.wrt) if item.hessian else sd.grad(item.expr, item.wrt)
    fn = sd.compile(derivative)  # generated NumPy code for the derivative
    got = fn(**{name: values[name] for name in fn.inputs})
    want = item.book_value(values)
    assert got.shape == want.shape, (item.f, got.shape, want.shape)
    error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    return sd.to_text(derivative).splitlines(), error


def print_table(rows: list[tuple[str, str, str, float, list[str]]]) -> None:
    """A plain-text table; a derivative printed with named intermediates lists them on the next rows."""
    header = ("f", "w.r.t.", "The Matrix Cookbook", "rel. error", "symdiff (sd.to_text of the derivative)")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(3)]
    line = "  " + "  ".join(f"{{:<{w}}}" for w in widths) + "  {:>10}  {}"
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths), "-" * 10, "-" * len(header[4])))
    for f, wrt, book, error, printed in rows:
        print(line.format(f, wrt, book, f"{error:.1e}", printed[-1]))  # the last line is the derivative itself
        for intermediate in printed[:-1]:
            print(line.format("", "", "", "", f"  where {intermediate}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    args = parser.parse_args()
    values = random_values(args.seed)
    t0 = time.perf_counter()
    rows, worst = [], 0.0
    for item in identities():
        printed, error = check(item, values)
        wrt = f"{item.wrt.name}, {item.wrt.name}" if item.hessian else item.wrt.name  # twice: the Hessian
        rows.append((item.f, wrt, item.book, error, printed))
        worst = max(worst, error)
    elapsed = time.perf_counter() - t0
    print(f"The Matrix Cookbook, chapter 2, derived by symdiff ({N}x{N} random inputs, float64)\n")
    print_table(rows)
    print(
        f"\nall {len(rows)} derivatives match the book's closed forms (largest relative error {worst:.1e}); "
        f"derived, printed and compiled in {elapsed:.2f} s"
    )
    assert worst < 1e-10, worst


if __name__ == "__main__":
    main()
