"""The package as a whole: its public namespaces and its license."""

from __future__ import annotations

import pytest

import symdiff as sd


@pytest.mark.parametrize("module", [sd, sd.nn, sd.optim, sd.datasets], ids=lambda m: m.__name__)
def test_dir_of_public_modules_lists_no_imports(module) -> None:
    public = [n for n in dir(module) if not n.startswith("__")]
    assert public == sorted(module.__all__), set(public) ^ set(module.__all__)
    assert "np" not in public and "annotations" not in public
    assert all(hasattr(module, n) for n in public)


def test_license_file_matches_pyproject() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    license_text = (root / "LICENSE").read_text(encoding="utf-8")
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "MIT"}
    assert license_text.startswith("MIT License\n") and "Copyright (c) 2026 symdiff developers" in license_text
