"""``python -m benchmarks``: run the whole harness (see ``run.py``)."""

from __future__ import annotations

import sys

from .envcheck import reexec_without_openblas_env

if __name__ == "__main__":
    reexec_without_openblas_env(sys.argv[1:])  # before NumPy is imported: OpenBLAS reads them at load time
    from .run import main

    sys.exit(main(sys.argv[1:]))
