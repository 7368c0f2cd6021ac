"""The API reference (docs/build_reference.py, pdoc): it builds without warnings, documents every public name, and
every public name's docstring has a runnable example (run by ``--doctest-modules``, see pyproject.toml)."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _builder():
    spec = importlib.util.spec_from_file_location("build_reference", ROOT / "docs" / "build_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULES = _builder().MODULES


def _public(module_name: str) -> list[str]:
    return list(importlib.import_module(module_name).__all__)


PUBLIC = [(m, name) for m in MODULES for name in _public(m)]  # sd's names, then each namespace's


@functools.cache
def _documented(module_name: str):
    """pdoc's documentation object of a module."""
    pdoc_doc = pytest.importorskip("pdoc.doc", reason="the API reference is built with pdoc (pip install pdoc)")
    return pdoc_doc.Module(importlib.import_module(module_name))


def test_reference_builds_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("pdoc", reason="the API reference is built with pdoc (pip install pdoc)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _builder().build(tmp_path)
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    assert pages == {"index.html", "symdiff.html", *(m.replace(".", "/") + ".html" for m in MODULES[1:])}


def test_every_example_renders_as_code(tmp_path: Path) -> None:
    """An example indented under a heading (``Example:`` then ``    >>> ...``) is shown by pdoc as three nested
    quotes, not code: every ``>>>`` line of the reference's pages must render inside a code block."""
    pytest.importorskip("pdoc", reason="the API reference is built with pdoc (pip install pdoc)")
    _builder().build(tmp_path)
    for page in tmp_path.rglob("*.html"):
        quoted = re.findall(r'<section id="([^"]+)">(?:(?!</section>).)*<blockquote>', page.read_text(), flags=re.S)
        assert not quoted, f"{page.name}: the examples of {quoted} render as quotes, not code"


def test_every_public_namespace_gets_a_page() -> None:
    namespaces = {f"symdiff.{name}" for name in _public("symdiff") if _is_namespace("symdiff", name)}
    assert {"symdiff.optim", "symdiff.nn", "symdiff.linalg"} <= namespaces
    assert namespaces | {"symdiff.distributed"} <= set(MODULES)  # sd.distributed is imported on first use


@pytest.mark.parametrize(("module_name", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_every_public_name_is_documented(module_name: str, name: str) -> None:
    doc = _documented(module_name)
    if _is_namespace(module_name, name):
        assert name in {s.name for s in doc.submodules}, f"{module_name}.{name} has no page in the API reference"
    else:
        assert doc.get(name) is not None, f"{module_name}.{name} is not in the API reference"


def _is_namespace(module_name: str, name: str) -> bool:
    """``module.name`` is a module (``sd.nn``), not a function, class or value."""
    return inspect.ismodule(getattr(importlib.import_module(module_name), name))


def _example_cases():
    """Every public function, class and value (a namespace such as sd.nn has its names checked one by one)."""
    for m, name in PUBLIC:
        if _is_namespace(m, name):
            continue
        yield pytest.param(m, name, id=f"{m}.{name}")


@pytest.mark.parametrize(("module_name", "name"), list(_example_cases()))
def test_every_public_name_has_an_example(module_name: str, name: str) -> None:
    member = _documented(module_name).get(name)
    assert member is not None and ">>>" in member.docstring, f"{module_name}.{name} has no example (>>>)"


def test_an_entry_with_a_public_function_says_what_its_example_prints() -> None:
    import numpy as np

    from symdiff.ops import elementwise
    from symdiff.ops.registry import OPS

    with pytest.raises(ValueError, match="example"):
        elementwise._elementwise("exp_no_example", np.exp, (None,), "e", sympy="exp", doc="Without an example.")
    assert "exp_no_example" not in OPS
