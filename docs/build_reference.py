"""Build symdiff's API reference, HTML pages generated from the docstrings by pdoc.

    python docs/build_reference.py            # into docs/_build/reference (open index.html)
    python docs/build_reference.py OUT_DIR

One page for ``symdiff`` (every name of ``symdiff.__all__``) and one for each public namespace
(:data:`MODULES`); prints each warning and their count, and exits with 1 if there was any.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

# the documented modules: the package and its public namespaces (sd.optim, sd.nn, ...)
MODULES = ("symdiff", "symdiff.optim", "symdiff.nn", "symdiff.linalg", "symdiff.datasets", "symdiff.distributed")
DEFAULT_OUT = Path(__file__).parent / "_build" / "reference"


def build(out: Path = DEFAULT_OUT) -> None:
    """Write the reference into ``out``."""
    import pdoc

    # the package without its internal modules (symdiff.graph, ...), then the public namespaces
    pdoc.pdoc(MODULES[0], r"!symdiff\..*", *MODULES[1:], output_directory=Path(out))


def main(argv: list[str]) -> int:
    """Build into ``argv[0]`` (default ``docs/_build/reference``); 1 if pdoc warned."""
    out = Path(argv[0]) if argv else DEFAULT_OUT
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(out)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"API reference written to {out / 'index.html'} ({len(caught)} warnings)")
    return 1 if caught else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
