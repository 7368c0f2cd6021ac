"""The README's Python examples run as written (so the README stays true)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(block: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write files (checkpoints): keep them out of the repository
    if "sd.distributed" in block:
        pytest.importorskip("distributed", reason='the Dask example needs Dask: pip install ".[dask]"')
    if 'backend="torch"' in block:
        pytest.importorskip("torch", reason='the PyTorch example needs PyTorch: pip install ".[torch]"')
    source = block.replace("epochs=40", "epochs=2")  # same code, fewer epochs
    namespace: dict = {}
    exec(compile(source, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    assert os.getcwd() == str(tmp_path)


def _quickstart_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].strip().splitlines()


def test_quickstart_installs_the_plot_extra_before_the_demo() -> None:
    import tomllib

    assert _quickstart_commands()[0] == 'pip install ".[plot]" && symdiff demo'
    project = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert any(dep.startswith("matplotlib") for dep in project["optional-dependencies"]["plot"])


def test_readme_names_the_folder_the_demo_writes_into() -> None:
    from symdiff import cli

    assert f"`./{cli.DEMO_DIR}/`" in README.read_text(encoding="utf-8")


def test_adding_an_op_shows_the_entry_and_the_gradient_row_as_they_are_in_the_source() -> None:
    """The ``py`` blocks of "Adding an op" are excerpts of the source, not examples to run: each must be there."""
    section = README.read_text(encoding="utf-8").split("## Adding an op", 1)[1].split("\n## ", 1)[0]
    entry, row = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    root = README.parent
    assert entry in (root / "symdiff" / "ops" / "elementwise.py").read_text(encoding="utf-8")
    assert row in (root / "tests" / "test_ops_grad.py").read_text(encoding="utf-8")


def test_matrix_calculus_section_prints_what_its_comments_say() -> None:
    """Each ``print(...)  # text`` line of that section prints ``text`` (what follows two spaces is a remark)."""
    section = README.read_text(encoding="utf-8").split("## Matrix calculus", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    printed: dict[int, str] = {}

    def record(*args: object) -> None:
        printed[sys._getframe(1).f_lineno] = " ".join(map(str, args))

    exec(compile(block, "README", "exec"), {"print": record})  # noqa: S102 - our own documentation
    expected = {
        i: line.split("  # ", 1)[1].split("  (", 1)[0]
        for i, line in enumerate(block.splitlines(), start=1)
        if line.startswith("print(") and "  # " in line
    }
    assert len(expected) >= 6
    assert {i: printed[i] for i in expected} == expected


def test_see_the_chain_rule_shows_what_sd_explain_prints() -> None:
    section = README.read_text(encoding="utf-8").split("## See the chain rule", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (shown,) = re.findall(r"```text\n(.*?)```", section, flags=re.S)
    printed: list[str] = []
    exec(compile(block, "README", "exec"), {"print": lambda *a: printed.append(" ".join(map(str, a)))})  # noqa: S102
    assert printed == [shown.rstrip("\n")]


def test_convolutional_networks_section_reaches_its_accuracy_and_prints_the_filter_gradient(capsys) -> None:
    pytest.importorskip("sklearn")
    text = README.read_text(encoding="utf-8").split("## Convolutional networks", 1)[1]
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    assert len(block.strip().splitlines()) < 15  # the promise: the digits CNN in under 15 lines
    exec(compile(block, str(README), "exec"), {})  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert float(re.search(r"'accuracy': ([0-9.]+)", out)[1]) >= 0.98
    assert '\ndconv_W = conv2d_filters(x, dconv_z, padding="same")\n' in out


def test_other_array_libraries_section_trains_on_torch_and_prints_the_import(capsys) -> None:
    pytest.importorskip("torch")
    text = README.read_text(encoding="utf-8").split("### Other array libraries", 1)[1]
    namespace: dict = {}
    exec(compile(re.findall(r"```python\n(.*?)```", text, flags=re.S)[0], str(README), "exec"), namespace)  # noqa: S102
    assert capsys.readouterr().out.splitlines()[0] == "import array_api_compat.torch as xp"
    hist, grads = namespace["hist"], namespace["grads"]
    assert len(hist.history["loss"]) == 3 and hist.history["loss"][-1] < hist.history["loss"][0]
    assert type(hist.history["loss"][0]) is float and "torch" in type(grads.fn).__module__ + grads.source[:300]
