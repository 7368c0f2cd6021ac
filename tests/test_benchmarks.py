"""Smoke test of the benchmark harness (``python -m benchmarks``): a tiny, fast run, not a measurement."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import symdiff as sd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives beside tests/, not in the package
bench_run = pytest.importorskip("benchmarks.run")
from benchmarks import check, models, opcount, peers  # noqa: E402


def test_quick_run_writes_tables(tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    argv = ["--quick", "--keep-openblas-env", "--sections", "main,cnn,compile,ops,driver", "--out", str(out)]
    assert bench_run.main(argv) == 0
    text = out.read_text()
    assert "**Machine:**" in text and "NumPy" in text and "BLAS" in text
    assert "| **symdiff (generated step)** |" in text
    assert "| hand-written NumPy | " in text and "(1.00)" in text
    assert "| GEMM floor (bare matmuls) |" in text
    assert "## Preparation time versus depth" in text
    assert "## Cheap-gradient principle" in text
    assert "## Driver overhead" in text
    assert "| target (issue 5) | measured | status |" in text
    assert "EXCLUDED" not in text  # every core peer agrees with the reference
    cnn = text.split("## Convolutional networks")[1].split("\n## ")[0]
    assert "| small 8×8×1: conv 3×3×16 → pool → dense 10, batch 64 |" in cnn
    assert re.search(r"^\| hand-written NumPy \(im2col\) \| [0-9.]+ \(1\.00\) \|$", cnn, re.M), cnn
    assert "| target (issue 12) | measured | status |" in cnn
    # symdiff's CNN step is timed once sd.conv2d exists, and skipped with the reason until then
    row = re.search(r"^\| \*\*symdiff \(generated step\)\*\* \| (.+) \|$", cnn, re.M)
    assert row, cnn
    if hasattr(sd, "conv2d") and hasattr(sd, "max_pool2d"):
        assert re.fullmatch(r"[0-9.]+ \([0-9.]+\)", row.group(1)), row.group(1)
    else:
        assert row.group(1) == "skipped" and "sd.conv2d and sd.max_pool2d not in this symdiff" in cnn


class WrongBias(peers.HandNumpy):
    """The hand-written step with a bug: the output bias moves twice as far as its gradient says."""

    key, title = "wrong", "wrong bias"

    def _step(self, batch):
        before = self.b[-1].copy()
        loss = super()._step(batch)
        self.b[-1] += self.b[-1] - before
        return loss


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_check_accepts_agreeing_peers_and_rejects_a_wrong_one(dtype):
    spec = models.SIZES["tiny"]
    p0 = models.init_params(spec, dtype)
    for cls in (peers.HandNumpy, peers.Symdiff, peers.SymdiffNoGuard):
        res = check.check_peer(cls(spec, p0, dtype, 0.01), spec, dtype, p0, 0.01)
        assert res.ok, res.message
        assert res.grad_err < check.TOL[dtype]["grad"]
    bad = WrongBias(spec, p0, dtype, 0.01)
    res = check.check_peer(bad, spec, dtype, p0, 0.01)
    assert not res.ok and "b1" in res.worst and "disagrees" in res.message
    # the check restores the initial params and the timing learning rate
    np.testing.assert_array_equal(bad.get_params()["W0"], p0["W0"])
    assert bad.lr == 0.01


def test_excluded_peer_is_reported_and_not_timed(monkeypatch):
    monkeypatch.setitem(peers.ALL, "gemm", WrongBias)  # a checked peer under a known key
    res = bench_run.time_size(models.SIZES["tiny"], ["hand", "gemm"], "float32", 0.01, rounds=2, block_s=0.001)
    assert "hand" in res.times and "gemm" not in res.times
    assert res.notes["gemm"].startswith("EXCLUDED")
    table = "\n".join(bench_run.check_table({"tiny": res}))
    assert "EXCLUDED, disagrees" in table


def test_opcount_counts_operators_calls_and_fancy_indexing():
    src = (
        "import numpy as np\n"
        "def f(a, b, y):\n"
        "    c = a @ b\n"
        "    c += 1\n"
        "    c[np.arange(2), y] -= 1\n"
        "    return np.sum(np.maximum(c, 0, out=c)) + a[0, 0]\n"
    )
    t = opcount.Tally()
    f = opcount.instrument(src, "f", t)
    a, b = np.ones((2, 3)), np.ones((3, 4))
    got = f(a, b, np.array([0, 1]))
    assert got == 2 * 4 * 4 - 2 + 1
    assert t.ops["matmul"] == 1 and t.flops["matmul"] == 2 * 2 * 3 * 4
    assert t.names["elementwise:add"] == 2  # c += 1 and the final + on a NumPy scalar
    assert t.names["elementwise:subtract"] == 1 and t.names["data:gather"] == 1 and t.names["data:scatter"] == 1
    assert t.names["elementwise:maximum"] == 1 and t.names["reduction:sum"] == 1


def test_default_options_parse():
    a = bench_run.parse([])
    assert a.sizes == ["tiny", "medium", "large"] and a.dtypes == ["float32", "float64"]
    assert a.pause_ms > 0 and a.wait_idle > 0 and a.rounds >= 20
    assert a.peers[:7] == [
        "symdiff",
        "symdiff-call",
        "symdiff-noguard",
        "symdiff-numba",
        "symdiff-torch",
        "symdiff-jax",
        "hand",
    ]
    assert "gemm" in a.peers
    assert a.cnn_sizes == ["small", "large"] and "cnn" in a.sections
    q = bench_run.parse(["--quick"])
    assert q.cnn_sizes == ["small"]
    assert (
        q.sizes == ["tiny"]
        and q.rounds == 2
        and q.pause_ms == 0
        and set(q.peers) == {"symdiff", "symdiff-call", "symdiff-noguard", "hand", "gemm"}
    )


def test_memory_is_measured_in_a_fresh_process():
    from benchmarks import memory

    big = np.ones(40_000_000)  # 305 MiB in this process must not show up in the child's ru_maxrss
    out = memory.measure("hand", "tiny", "float32", 2)
    del big
    assert "error" not in out, out
    assert 10 < out["peak_mib"] < 250 and out["setup_mib"] <= out["peak_mib"]


def test_scaling_model_keeps_half_efficiency_up_to_the_machines_it_names():
    from benchmarks.distributed import half_efficiency_machines, step_model

    for latency, compute, nbytes, bw in [(0.01, 0.1, 0.0, 1.0), (0.02, 0.5, 4e6, 125e6), (0.05, 0.001, 1e3, 1e9)]:
        n = half_efficiency_machines(latency, compute, nbytes, bw)
        t1 = step_model(latency, compute, nbytes, bw, 1)
        assert t1 == pytest.approx(latency + compute + 2 * nbytes / bw)
        efficiency = [t1 / (k * step_model(latency, compute, nbytes, bw, k)) for k in (n, n + 1)]
        assert efficiency[0] >= 0.5 > efficiency[1]
    assert half_efficiency_machines(0.01, 0.1, 0.0, 1.0) == 12  # 2 + 100 ms / 10 ms


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason='needs Dask: pip install ".[dask]"')
def test_scaling_report_measures_one_and_two_workers_and_says_where_scaling_stops():
    from benchmarks.distributed import scaling_report

    lines = scaling_report(sizes=("tiny",), batch=256, steps=2, repeats=1)
    text = "\n".join(lines)
    assert lines[0] == "## Data-parallel scaling on paper (sd.distributed)"
    tiny = models.SIZES["tiny"]
    nbytes = sum(v.nbytes for v in models.init_params(tiny).values())
    row = re.search(r"^\| tiny 64-32-10 \| ([0-9.]+) MiB each way \| [0-9.]+ µs \| (.+) \|$", text, re.M)
    assert row and float(row[1]) == pytest.approx(nbytes / 2**20, abs=0.005), text
    assert len(re.findall(r"[0-9.,]+ ms \([0-9.,]+\)", row[2])) == 2, row[2]  # measured (model), 1 and 2 workers
    assert "`t_step(N) = latency + compute(batch)/N + 2·bytes/bandwidth`" in text
    for link in ("1 GbE", "10 GbE", "here, [^|]+"):
        model = re.search(rf"^\| tiny \| {link} \| (.+) \| N = (\d+) \| [0-9.,]+ ms \([0-9.]+×\) \|$", text, re.M)
        assert model and int(model[2]) >= 2, text
    verdict = r"for the tiny MLP beyond N = \d+ on 1 GbE, N = \d+ on 10 GbE and N = \d+ at the bandwidth measured"
    assert re.search(verdict, text), text


def test_quick_run_never_replaces_the_committed_results():
    results = Path(bench_run.HERE) / "RESULTS.md"
    assert bench_run.parse(["--quick"]).out == str(Path(bench_run.HERE) / "RESULTS-quick.md")
    assert bench_run.parse([]).out == str(results)
    assert bench_run.parse(["--quick", "--out", "x.md"]).out == "x.md"
    ignored = (Path(bench_run.HERE).parent / ".gitignore").read_text(encoding="utf-8").split()
    assert "benchmarks/RESULTS-quick.md" in ignored


def test_versus_compares_two_trees_side_by_side(capsys):
    from benchmarks import versus

    root = str(Path(__file__).resolve().parents[1])
    assert versus.main([root, "--sizes", "tiny", "--rounds", "1", "--seconds", "0.01"]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| tiny |")]
    assert [row.split("|")[2].strip() for row in rows] == ["`step.run`", "`step(**batch)`", "`compiled`"]
    for row in rows:
        new, old, ratio = (float(cell) for cell in row.split("|")[3:6])
        assert new > 0 and old > 0 and ratio > 0


def test_versus_exports_a_git_revision(tmp_path):
    from benchmarks import versus

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    tree = versus._checkout("HEAD", str(tmp_path))
    assert (Path(tree) / "symdiff" / "__init__.py").is_file()
    with pytest.raises(SystemExit, match="neither a symdiff folder nor a git revision"):
        versus._checkout("no-such-revision-xyz", str(tmp_path / "other"))


def test_the_guard_false_peer_finds_compile_steps_guard_option() -> None:
    from benchmarks.peers import SymdiffNoGuard  # compile_step takes it through **options (a TypedDict)

    assert SymdiffNoGuard.missing() is None


def test_gpu_script_checks_then_times_the_mlp_and_the_cnn_on_each_library(capsys) -> None:
    from benchmarks import gpu  # on the CPU here: the same script, --device cpu

    assert gpu.main(["--device", "cpu", "--size", "tiny", "--cnn", "small", "--steps", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| model | library | µs/step | × NumPy CPU | max rel. error |" in out
    for model in ("tiny MLP 64-32-10", "small CNN 8×8×1: conv 3×3×16 → pool → dense 10"):
        assert re.search(rf"^\| {model}.* \| numpy \(CPU\) \| \d+ \| 1\.00 \| \d\.\de-\d+ \|$", out, re.M), out
        for lib in gpu.LIBRARIES:
            timed = rf"{lib} \(cpu\) \| \d+ \| \d+\.\d\d \| \d\.\de-\d+"
            assert re.search(rf"^\| {model}.* \| ({timed}|{lib} \| not installed \| \|) \|$", out, re.M), out


def test_gpu_section_runs_only_with_the_flag_and_says_when_no_gpu_is_here(monkeypatch):
    assert "gpu" not in bench_run.parse([]).sections and "scaling" in bench_run.parse([]).sections
    a = bench_run.parse(["--gpu", "--sections", "main"])
    assert a.sections == ["main", "gpu"]
    monkeypatch.setattr(bench_run, "gpu_device", lambda: None)
    report: dict = {}
    bench_run.section_gpu(a, report)
    assert report["gpu"][0] == bench_run.GPU_HEADING and "No GPU here" in report["gpu"][2]
    text = bench_run.render(a, {**report, "main": {}}, time.time())
    assert "## On a GPU" in text and "No GPU here" in text


def test_scaling_section_puts_the_distributed_report_into_the_results(monkeypatch):
    from benchmarks import distributed

    seen = {}

    def report(**kwargs):
        seen.update(kwargs)
        return ["## Data-parallel scaling on paper (sd.distributed)", "", "| MLP | params |"]

    monkeypatch.setattr(distributed, "scaling_report", report)
    a = bench_run.parse(["--quick", "--sections", "scaling"])
    out: dict = {}
    bench_run.section_scaling(a, out)
    assert seen["sizes"] == ("tiny",)  # the quick run measures the tiny MLP only
    assert "## Data-parallel scaling on paper (sd.distributed)\n\n| MLP | params |" in bench_run.render(
        a, out, time.time()
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blas_fused_hand_steps_compute_the_numpy_step(dtype):
    pytest.importorskip("scipy")
    from benchmarks import blas_fusion
    from benchmarks.models import SIZES, init_params, make_batches
    from benchmarks.peers import HandNumpy

    spec = SIZES["tiny"]
    params, batches = init_params(spec, dtype), make_batches(spec, dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for kind in (blas_fusion.HandScipyFused, blas_fusion.HandScipyFusedBias):
        peer = kind(spec, params, dtype, 0.05)
        for b in batches:  # W, b updated in place by gemm/gemv (beta=1): the same loss and parameters as NumPy's
            want = HandNumpy(spec, peer.get_params(), dtype, 0.05).step(b)
            assert peer.step(b) == pytest.approx(want, rel=tol)
        ref_after = HandNumpy(spec, params, dtype, 0.05)
        for b in batches:
            ref_after.step(b)
        got, want = peer.get_params(), ref_after.get_params()
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=tol * float(np.abs(want[k]).max()))


def test_blas_section_is_markdown_under_its_heading(monkeypatch):
    pytest.importorskip("scipy")
    from benchmarks import blas_fusion

    seen = {}

    def measure(size, dtype, rounds, pause_s):
        seen.setdefault("calls", []).append((size, rounds, pause_s))
        return {k: (10.0, 1.0, 0.9, 1.1) for k in blas_fusion.PEERS}

    monkeypatch.setattr(blas_fusion, "measure", measure)
    a = bench_run.parse(["--quick", "--sizes", "tiny", "--sections", "blas"])
    out: dict = {}
    bench_run.section_blas(a, out)
    assert seen["calls"] == [("tiny", 3, 0.4), ("tiny", 3, 0.0)]
    text = bench_run.render(a, out, time.time())
    assert blas_fusion.HEADING in text and "| tiny | switching | 10.0 (1.00, 0.90–1.10) |" in text


def test_issue14_medium_targets_are_met_by_the_better_backend_and_name_both():
    times = {"hand": [1.0] * 3, "gemm": [0.8] * 3, "symdiff": [0.98] * 3, "symdiff-numba": [0.88] * 3}
    medium = bench_run.SizeResult(spec=models.SIZES["medium"], times=times)
    rows = bench_run.targets14({"main": {"float32": {"medium": medium}}})
    hand = next(r for r in rows if r.startswith("| medium: ≤ 0.9× hand NumPy"))
    floor = next(r for r in rows if r.startswith("| medium: ≤ 1.1× the GEMM floor"))
    assert "NumPy 0.98, fused 0.88 | met" in hand
    assert "NumPy 1.22, fused 1.10 | met" in floor  # 0.98 / 0.8, 0.88 / 0.8
    times["symdiff-numba"] = [0.95] * 3
    rows = bench_run.targets14({"main": {"float32": {"medium": medium}}})
    assert any("**missed**: best 0.95×, 6% over" in r for r in rows)
