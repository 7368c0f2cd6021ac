"""The driver's overhead: ``sd.fit`` per step versus the generated step called in a bare loop.

Both train the same model from the same params on the same data with the same batch size and optimizer.
``fit`` runs with its defaults except ``progress=False`` (it shuffles once per epoch, slices batch views,
checks finiteness through the step, accumulates the epoch loss); its per-step time is ``History.seconds``
(the epoch loop, shuffling included) over the steps taken; the wall time of the whole call, which also
compiles the step, is reported beside it, and so is ``fit(shuffle=False)``
(what the per-epoch shuffle costs). The bare loop calls ``step.run`` on precomputed batch views of the
unshuffled data. The two alternate for ``rounds`` rounds; medians are reported.
"""

from __future__ import annotations

import gc
import statistics
import time

import numpy as np

from .models import Spec, init_params
from .peers import symdiff_mlp


def measure(
    spec: Spec, dtype: str = "float32", lr: float = 0.01, epochs: int = 2, batches: int = 40, rounds: int = 5
) -> dict:
    import symdiff as sd

    loss, names = symdiff_mlp(spec, dtype)
    p0 = {names[k]: v for k, v in init_params(spec, dtype).items()}
    n = spec.batch * batches
    rng = np.random.default_rng(3)
    X = rng.random((n, spec.dims[0]), dtype=np.dtype(dtype))
    Y = rng.integers(0, spec.dims[-1], size=n, dtype=np.int64)
    data = {"x": X, "y": Y}
    bs = spec.batch
    bare_params = {k: v.copy() for k, v in p0.items()}
    step = sd.compile_step(loss, bare_params, sd.optim.SGD(lr=lr))
    views = [{"x": X[lo : lo + bs], "y": Y[lo : lo + bs]} for lo in range(0, n, bs)]
    run = step.run
    run(views[0])  # the first call allocates the step's workspace; fit's first step pays that inside it
    fit_loop, fit_wall, bare, fit_noshuffle = [], [], [], []
    for _ in range(rounds):
        params = {k: v.copy() for k, v in p0.items()}
        gc.collect()
        t0 = time.perf_counter()
        hist = sd.fit(loss, params, data, optimizer=sd.optim.SGD(lr=lr), batch_size=bs, epochs=epochs, progress=False)
        wall = time.perf_counter() - t0
        fit_loop.append(hist.seconds / hist.steps)
        fit_wall.append(wall / hist.steps)
        params = {k: v.copy() for k, v in p0.items()}
        gc.collect()
        hist = sd.fit(
            loss,
            params,
            data,
            optimizer=sd.optim.SGD(lr=lr),
            batch_size=bs,
            epochs=epochs,
            progress=False,
            shuffle=False,
        )
        fit_noshuffle.append(hist.seconds / hist.steps)
        for k, v in p0.items():
            np.copyto(bare_params[k], v)
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(epochs):
            for b in views:
                run(b)
        bare.append((time.perf_counter() - t0) / (epochs * len(views)))
    out = {
        "steps": epochs * len(views),
        "fit_step": statistics.median(fit_loop),
        "fit_wall_step": statistics.median(fit_wall),
        "bare_step": statistics.median(bare),
        "fit_noshuffle_step": statistics.median(fit_noshuffle),
        "rounds": rounds,
        "rows": n,
        "epochs": epochs,
    }
    out["ratio"] = out["fit_step"] / out["bare_step"]
    out["ratio_wall"] = out["fit_wall_step"] / out["bare_step"]
    out["ratio_noshuffle"] = out["fit_noshuffle_step"] / out["bare_step"]
    return out
