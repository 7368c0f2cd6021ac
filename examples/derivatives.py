"""Derivatives and gradient descent: the ball rolling down the loss curve.

Part 1 asks symdiff for derivatives of scalar functions (``sd.grad`` on scalar Params), prints them as
formulas and checks them against central differences. Part 2 does the same for functions written in
SymPy (``sd.from_sympy``), whose derivatives come from ``sympy.diff``. Part 3 runs gradient descent on
the 1-D function f(x) = x**4 - 3 x**2 + x, which has a local minimum near x = 1.13 and its global
minimum near x = -1.30. Started at x = 2, plain gradient descent stops in the nearer, local minimum;
with momentum 0.9 the "ball" keeps enough speed to roll over the hump at x = 0.17 and settles in the
global minimum.

Run: ``python examples/derivatives.py [--steps 300]``
"""

from __future__ import annotations

import argparse

import numpy as np
import sympy as sp

import symdiff as sd


def formula(derivative: sd.Expr, name: str = "dx") -> str:
    """A printed derivative on one line (named intermediates first, separated by ';').

    A derivative that is just another symbol (d/dx a*x = a) prints as that symbol's name.
    """
    text = sd.to_text(derivative)
    if "=" not in text.splitlines()[-1]:
        text = f"{name} = {text}"
    return "; ".join(text.splitlines())


def part1_grad() -> None:
    print("1. derivatives with sd.grad (the chain rule, printed)")
    x = sd.Param("x")  # shape () : a scalar parameter
    a = sd.Param("a")
    examples = {
        "x**3": x**3,
        "x**4 - 3*x**2 + x": x**4 - 3 * x**2 + x,
        "exp(x) * sin(x)": sd.exp(x) * sd.sin(x),
        "tanh(x**2)": sd.tanh(x**2),
        "sigmoid(x)": sd.sigmoid(x),
        "a * x": a * x,
    }
    point = {"x": np.array(0.7), "a": np.array(-1.5)}
    for text, f in examples.items():
        df = sd.grad(f, x)
        # The derivative is an expression too: compile it and compare with a central difference.
        df_fn = sd.compile(df)
        value = df_fn(**{k: point[k] for k in df_fn.inputs})
        err = sd.check_grad(f, x, point)
        print(f"  f = {text:<18} {formula(df):<52} f'(0.7) = {float(value):+.6f}  (vs finite differences: {err:.0e})")
        assert err < 1e-6, (text, err)
    # Several variables: partial derivatives, each a formula in the others.
    da = sd.grad(a * x, a)
    print(f"  f = a * x, with respect to a: {formula(da, 'da')}")
    # A derivative can be differentiated again.
    f = x**4 - 3 * x**2 + x
    print(f"  f = x**4 - 3*x**2 + x, second derivative: {formula(sd.grad(sd.grad(f, x), x))}")


def part2_sympy() -> None:
    print("\n2. derivatives of SymPy expressions (sd.from_sympy)")
    t, s = sp.symbols("t s")
    x, a = sd.Param("x"), sd.Param("a")
    cases = [
        ("cos(x)", sd.from_sympy(sp.cos(t), {t: x})),
        ("a * x", sd.from_sympy(s * t, {s: a, t: x})),
        ("mish(x)", sd.from_sympy(t * sp.tanh(sp.log(1 + sp.exp(t))), {t: x})),
    ]
    point = {"x": np.array(0.7), "a": np.array(-1.5)}
    for text, f in cases:
        df = sd.grad(f, x)
        err = sd.check_grad(f, x, point)
        print(f"  f = {text:<8} {formula(df):<24} (vs finite differences: {err:.0e})")
        assert err < 1e-6, (text, err)
    # The same derivatives from SymPy directly, for comparison:
    print(f"  sympy.diff(cos(t), t) = {sp.diff(sp.cos(t), t)};  sympy.diff(s*t, t) = {sp.diff(s * t, t)}")


def descend(f: sd.Expr, x0: float, optimizer: sd.optim.Optimizer, steps: int) -> tuple[float, list[float]]:
    """Run ``steps`` steps of ``optimizer`` on the scalar function ``f`` of Param ``x`` from ``x0``."""
    params = {"x": np.array(x0)}
    # The loss has no Inputs, so each step is a call without data: step() -> f before the update.
    step = sd.compile_step(f, params, optimizer)
    path = [x0]
    for _ in range(steps):
        step()
        path.append(float(params["x"]))
    return float(params["x"]), path


def part3_rolling_ball(steps: int) -> None:
    print("\n3. gradient descent on f(x) = x**4 - 3*x**2 + x, starting at x = 2")
    x = sd.Param("x")
    f = x**4 - 3 * x**2 + x
    f_at = sd.compile(f)
    print(f"  f(x)  = {f}\n  f'(x) = {sd.to_text(sd.grad(f, x)).removeprefix('dx = ')}")

    # Where the minima really are: the real roots of f'(x) = 4x^3 - 6x + 1 with f''(x) > 0.
    roots = np.roots([4.0, 0.0, -6.0, 1.0]).real
    minima = sorted(r for r in roots if 12 * r**2 - 6 > 0)
    glob, loc = minima[0], minima[1]
    print(
        f"  minima: global x = {glob:.4f} (f = {float(f_at(x=np.array(glob))):.4f}), "
        f"local x = {loc:.4f} (f = {float(f_at(x=np.array(loc))):.4f})"
    )

    lr = 0.01
    runs = {
        "plain gradient descent": sd.optim.SGD(lr=lr),
        "momentum 0.9": sd.optim.SGD(lr=lr, momentum=0.9),
    }
    ends = {}
    for name, opt in runs.items():
        end, path = descend(f, 2.0, opt, steps)
        ends[name] = end
        fx = float(f_at(x=np.array(end)))
        where = "global" if abs(end - glob) < 1e-3 else "local" if abs(end - loc) < 1e-3 else "no"
        print(f"  {name:<23} lr={lr}: x = {end:+.4f}, f(x) = {fx:+.4f}  -> {where} minimum after {steps} steps")
        print(f"      path: {' '.join(f'{p:+.2f}' for p in path[:60:6])} ...")
        print(f"      rule: {opt.formula().replace(chr(10), ' ; ')}")
    # The claim of the picture, checked: plain descent is stuck, momentum rolls through.
    if steps >= 200:
        assert abs(ends["plain gradient descent"] - loc) < 1e-3, ends
        assert abs(ends["momentum 0.9"] - glob) < 1e-3, ends
        print("  plain descent stopped in the local minimum; momentum rolled over the hump to the global one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="gradient-descent steps in part 3 (default 300)")
    parser.add_argument("--epochs", type=int, dest="steps", help="an alias of --steps")
    args = parser.parse_args()
    part1_grad()
    part2_sympy()
    part3_rolling_ball(args.steps)


if __name__ == "__main__":
    main()
