"""pytest configuration for the whole repository: the docstring examples (``--doctest-modules`` over ``symdiff``).

Every example runs with ``sd`` (``import symdiff as sd``) and ``np`` (``import numpy as np``) in its namespace;
a module whose examples need an optional dependency is left out when that dependency is missing.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

# symdiff modules whose examples need an optional dependency, with that dependency's import name
OPTIONAL: dict[str, str] = {
    "symdiff/distributed.py": "dask",
    "symdiff/fused.py": "numba",
}

# __main__ runs the command line when imported
collect_ignore = ["symdiff/__main__.py"] + [
    path for path, package in OPTIONAL.items() if importlib.util.find_spec(package) is None
]


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace: dict) -> None:
    """The names every docstring example may use without importing them."""
    import symdiff as sd

    doctest_namespace.update(sd=sd, np=np)
