"""Newton's method with symdiff's Hessians, against gradient descent.

Gradient descent steps along -grad f and needs many small steps where f curves more in some directions than in
others (a narrow valley, features on different scales). Newton's method solves H p = -grad f with the Hessian H, a
step that accounts for the curvature, and converges quadratically near the minimum: the number of correct digits
roughly doubles each step. ``sd.hessian`` gives H as an ordinary symdiff expression, so it can be printed as a
formula and compiled to NumPy like the gradient; the iterations are then plain NumPy (``np.linalg.solve`` for
the Newton step).

Three problems, each minimized to a gradient norm of 1e-10 from the same start by every method:

- the Rosenbrock function f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 (2-D, a curved narrow valley, minimum at (1, 1));
- logistic regression on synthetic data (300 samples, 4 features on different scales plus an intercept);
- a least-squares fit of an exponential decay y = A exp(-k t) to 40 noisy points, where Gauss-Newton uses only the
  Jacobian of the residuals (``sd.jacobian``), approximating the Hessian by J^T J.

Every method uses the same backtracking (Armijo) line search, so none of them needs a hand-tuned step size
(``descend`` below). Gradient descent is capped at ``--max-iters`` iterations and reported as not converged when
it hits the cap.

Run: ``python examples/newton.py [--max-iters 100000]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import symdiff as sd

TOL = 1e-10  # stop when the gradient norm is at most this


@dataclass
class Problem:
    """A smooth function to minimize, compiled once: f, (f, grad f) and the Hessian as NumPy functions of x."""

    name: str
    f: Callable[[np.ndarray], float]
    f_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]]
    hessian: Callable[[np.ndarray], np.ndarray]
    x0: np.ndarray
    gauss_newton: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # for a least-squares fit: its step


@dataclass
class Result:
    """How one method did: iterations and seconds spent, the gradient norm reached and the final point."""

    method: str
    iterations: int
    seconds: float
    grad_norm: float
    x: np.ndarray


def compile_problem(name: str, f: sd.Expr, x: sd.Param, data: dict[str, np.ndarray], x0: np.ndarray) -> Problem:
    """Derive grad f and the Hessian of ``f`` with respect to ``x`` and compile them (``data``: the fixed inputs)."""
    f_fn = bind(sd.compile(f), data, x)
    fg_fn = bind(sd.compile({"f": f, "g": sd.grad(f, x)}), data, x)

    def f_and_grad(v: np.ndarray) -> tuple[float, np.ndarray]:
        out = fg_fn(v)
        return float(out["f"]), out["g"]

    return Problem(name, lambda v: float(f_fn(v)), f_and_grad, bind(sd.compile(sd.hessian(f, x)), data, x), x0)


def bind(fn: sd.CompiledFunction, data: dict[str, np.ndarray], x: sd.Param) -> Callable[[np.ndarray], object]:
    """``fn`` as a function of ``x`` alone, the data it takes fixed (a Hessian may not need every input)."""
    fixed = {name: data[name] for name in fn.inputs if name in data}
    return lambda v: fn(**fixed, **{x.name: v})


def descend(
    problem: Problem,
    method: str,
    direction: Callable[[np.ndarray, np.ndarray], np.ndarray],
    max_iters: int,
    *,
    c: float = 1e-4,
    grow_step: bool = False,
) -> Result:
    """Minimize ``problem`` along ``direction(x, g)`` with a backtracking line search, to a gradient norm of TOL.

    The line search halves the step t until f(x + t p) <= f(x) + c t g.p (sufficient decrease: the Armijo
    condition). Newton-like methods try t = 1 first, their natural step. With ``grow_step`` (gradient descent,
    c = 1/2) the search starts from twice the last accepted step, so the step adapts to the curvature along the
    way. Near the minimum the promised decrease c t g.p becomes smaller than the rounding error of f itself: the
    test can no longer tell, so the step is taken as it is (and gradient descent's step no longer grows).
    """
    x, t = problem.x0.astype(float), 1.0
    start = time.perf_counter()
    iterations = 0
    fx, g = problem.f_and_grad(x)
    while np.linalg.norm(g) > TOL and iterations < max_iters:
        p = direction(x, g)
        slope = g @ p
        if slope >= 0:  # not downhill (an indefinite Hessian): take the gradient direction this time
            p, slope = -g, -(g @ g)
        if not grow_step:
            t = 1.0
        elif measurable(-c * 2 * t * slope, fx):
            t = 2 * t  # try a longer step than last time
        while measurable(-c * t * slope, fx) and problem.f(x + t * p) > fx + c * t * slope:
            t /= 2
        x = x + t * p
        fx, g = problem.f_and_grad(x)
        iterations += 1
    return Result(method, iterations, time.perf_counter() - start, float(np.linalg.norm(g)), x)


def measurable(decrease: float, f: float) -> bool:
    """Whether a decrease of f is larger than the rounding error of f's value (about 1e-14 |f| in float64)."""
    return decrease > 1e-14 * abs(f)


def gradient_descent(problem: Problem, max_iters: int) -> Result:
    return descend(problem, "gradient descent", lambda x, g: -g, max_iters, c=0.5, grow_step=True)


def newton(problem: Problem, max_iters: int) -> Result:
    return descend(problem, "Newton (sd.hessian)", lambda x, g: -np.linalg.solve(problem.hessian(x), g), max_iters)


# -- the problems ----------------------------------------------------------------------------------------------
def rosenbrock() -> Problem:
    z = sd.Param("z", shape=(2,))  # z = (x, y)
    f = (1 - z[0]) ** 2 + 100 * (z[1] - z[0] ** 2) ** 2
    print("Rosenbrock, from (-1.2, 1): f =")
    print(indent(sd.to_text(f)))
    return compile_problem("Rosenbrock (2-D)", f, z, {}, np.array([-1.2, 1.0]))


def logistic_data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, 5): 4 Gaussian columns scaled by 0.5 to 4, then a column of ones; labels drawn from the model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * np.array([0.5, 1.0, 2.0, 4.0])
    X = np.hstack([X, np.ones((n, 1))])
    w_true = np.array([1.5, -1.0, 0.5, 0.25, 0.3])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-X @ w_true))).astype(float)
    return X, y


def logistic_regression() -> Problem:
    X, y = logistic_data()
    x = sd.Input("x", shape=(None, X.shape[1]))  # a batch of rows: any number of samples
    labels = sd.Input("y", shape=(None,))
    w = sd.Param("w", shape=(X.shape[1],))
    loss = sd.sigmoid_cross_entropy(x @ w, labels)  # the mean negative log-likelihood
    print(f"\nlogistic regression ({X.shape[0]} samples, {X.shape[1]} weights with the intercept): loss =")
    print(indent(sd.to_text(loss)))
    print("its gradient, sd.grad(loss, w):")
    print(indent(sd.to_text(sd.grad(loss, w))))
    print("its Hessian, sd.hessian(loss, w), a 5x5 matrix:")
    print(indent(sd.to_text(sd.hessian(loss, w))))
    return compile_problem("logistic regression", loss, w, {"x": X, "y": y}, np.zeros(X.shape[1]))


def decay_data(m: int = 40, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Times in [0, 5] and noisy samples of 3 exp(-0.7 t)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 5.0, m)
    return t, 3.0 * np.exp(-0.7 * t) + 0.05 * rng.normal(size=m)


def exponential_fit() -> Problem:
    """The decay fit, with a Gauss-Newton step built from the Jacobian of the residuals."""
    t_data, y_data = decay_data()
    t, y = sd.Input("t", shape=(None,)), sd.Input("y", shape=(None,))
    theta = sd.Param("theta", shape=(2,))  # (A, k)
    residuals = theta[0] * sd.exp(-theta[1] * t) - y
    loss = 0.5 * sd.sum(residuals**2)
    jac = sd.jacobian(residuals, theta)  # shape (None, 2): one row per data point
    print(f"\nexponential decay fit: residuals r = {one_line(residuals)}, loss = 0.5 sum(r^2)")
    print(f"the Jacobian of the residuals, sd.jacobian(r, theta), shape {jac.shape}:")
    print(indent(sd.to_text(jac)))
    data = {"t": t_data, "y": y_data}
    problem = compile_problem("exponential fit (A, k)", loss, theta, data, np.array([1.0, 0.1]))
    jac_fn = bind(sd.compile(jac), data, theta)

    def gauss_newton_step(x: np.ndarray, g: np.ndarray) -> np.ndarray:
        J = jac_fn(x)
        return -np.linalg.solve(J.T @ J, g)  # g = J^T r: the normal equations of the linearized residuals

    problem.gauss_newton = gauss_newton_step
    return problem


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def one_line(expr: sd.Expr) -> str:
    """``expr`` printed on one line: its named intermediates first, separated by '; '."""
    return "; ".join(sd.to_text(expr).splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-iters", type=int, default=100_000, help="the cap on gradient descent's iterations (default 100000)"
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    problems = [rosenbrock(), logistic_regression(), exponential_fit()]
    compile_seconds = time.perf_counter() - t0

    results = []
    for problem in problems:
        results.append((problem, newton(problem, max_iters=100)))
        if problem.gauss_newton is not None:
            results.append((problem, descend(problem, "Gauss-Newton (sd.jacobian)", problem.gauss_newton, 100)))
        results.append((problem, gradient_descent(problem, args.max_iters)))

    print(f"\nminimizing to a gradient norm of {TOL:.0e} (gradient descent capped at {args.max_iters} iterations)\n")
    print("| problem | method | iterations | wall time (ms) | final gradient norm | reached 1e-10 |")
    print("|---|---|---:|---:|---:|---|")
    for problem, r in results:
        reached = "yes" if r.grad_norm <= TOL else "no (iteration cap)"
        print(
            f"| {problem.name} | {r.method} | {r.iterations} | {1000 * r.seconds:.1f} | {r.grad_norm:.1e} | {reached} |"
        )
    print(f"\n(deriving, printing and compiling f, gradients, Hessians and the Jacobian once: {compile_seconds:.2f} s)")
    A, k = next(r.x for _, r in results if r.method.startswith("Gauss-Newton"))
    print(f"the fitted decay: A = {A:.4f}, k = {k:.4f} (the data were drawn from A = 3, k = 0.7 plus noise)")
    for problem, r in results:
        if r.method != "gradient descent":
            assert r.grad_norm <= TOL, (problem.name, r)


if __name__ == "__main__":
    main()
