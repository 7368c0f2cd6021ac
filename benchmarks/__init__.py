"""Benchmarks of symdiff's generated training steps against hand-written NumPy and other frameworks.

Run everything with ``python -m benchmarks`` (see ``python -m benchmarks --help``); the report is written
to ``benchmarks/RESULTS.md``. Modules:

- ``models``: the MLP sizes, data, initial parameters and a float64 reference for the correctness check.
- ``cnn``: issue 12's two CNNs (8×8×1 and 32×32×3), their float64 reference and their peers (an expert
  hand-written NumPy im2col step, symdiff via ``sd.conv2d``, PyTorch eager, JAX jit).
- ``peers``: one class per peer (symdiff, hand-written NumPy, the GEMM floor, JAX, PyTorch, autograd,
  PyTensor); the optional ones are imported only when used.
- ``timing``: interleaved rounds and medians.
- ``opcount``: counts NumPy operations and FLOPs of generated code by rewriting its AST.
- ``memory``, ``compiletime``: entry points run in fresh subprocesses.
- ``driver``: ``sd.fit`` versus a bare loop over the generated step.
- ``run``: the command line and the markdown report.

Nothing here is a dependency of symdiff: the optional peers are skipped with a note when not importable.
"""
