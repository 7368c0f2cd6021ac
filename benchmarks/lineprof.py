"""Per-statement time of symdiff's generated training step: ``python -m benchmarks.lineprof [--size medium]``.

A diagnostic for whoever optimizes the code generator, not part of the report. Every top-level statement
of the generated ``train_step`` (an ``if`` block counts as one) is wrapped in a ``perf_counter`` pair by
rewriting the AST; the step runs ``--steps`` times on one batch and each statement's median is printed
beside the hand-written NumPy step's total. The wrapping adds ~0.1 µs per statement.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import time


def profile_source(source: str, name: str, args: tuple, kwargs: dict, steps: int) -> list[tuple[str, float]]:
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the docstring
    new: list[ast.stmt] = []
    texts: list[str] = []
    for i, stmt in enumerate(body):
        texts.append(ast.unparse(stmt).split("\n")[0])
        start = ast.parse("__t0 = __pc()").body[0]
        stop = ast.parse(f"__acc[{i}].append(__pc() - __t0)").body[0]
        if isinstance(stmt, ast.Return):
            keep = ast.parse("__ret = 0").body[0]
            keep.value = stmt.value
            new += [start, keep, stop, ast.Return(ast.Name("__ret", ast.Load()))]
        else:
            new += [start, stmt, stop]
    fn.body = new
    ast.fix_missing_locations(tree)
    acc: list[list[float]] = [[] for _ in body]
    ns = {"__pc": time.perf_counter, "__acc": acc, "__name__": f"lineprof_{name}"}
    exec(compile(tree, f"<lineprof:{name}>", "exec"), ns)  # noqa: S102 - symdiff's generated code, rewritten
    f = ns[name]
    f(*args, **kwargs)
    for a in acc:
        a.clear()
    for _ in range(steps):
        f(*args, **kwargs)
    return [(t, statistics.median(a) if a else 0.0) for t, a in zip(texts, acc)]


def main(argv: list[str] | None = None) -> int:
    from .models import SIZES, init_params, make_batches
    from .peers import HandNumpy, Symdiff

    ap = argparse.ArgumentParser(prog="python -m benchmarks.lineprof")
    ap.add_argument("--size", default="medium", choices=list(SIZES))
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args(argv)
    spec = SIZES[a.size]
    p0 = init_params(spec, a.dtype)
    ((x, y),) = make_batches(spec, a.dtype, count=1)
    sd_peer = Symdiff(spec, p0, a.dtype, 1e-3)
    tr = sd_peer.train
    rows = profile_source(tr.source, "train_step", (tr.params, tr.state, 1e-3, 1), {"x": x, "y": y}, a.steps)
    hand = HandNumpy(spec, p0, a.dtype, 1e-3)

    def per_step(fn, arg, n):
        fn(arg)
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        return (time.perf_counter() - t0) / n

    n = max(10, a.steps)
    t_hand = per_step(hand.step, (x, y), n)
    batch = {"x": x, "y": y}
    t_run = per_step(tr.run, batch, n)
    total = sum(t for _, t in rows)
    print(f"{spec.label}, {a.dtype}: median µs per statement of the generated train_step ({a.steps} steps)")
    for text, t in rows:
        print(f"{t * 1e6:10.1f}  {text[:110]}")
    print(f"{total * 1e6:10.1f}  sum of statements")
    print(f"{t_run * 1e6:10.1f}  step.run(batch) per step, unwrapped")
    print(f"{t_hand * 1e6:10.1f}  hand-written NumPy step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
