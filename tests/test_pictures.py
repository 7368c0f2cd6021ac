"""Graphviz pictures of expression graphs: symdiff.pictures.to_dot and render."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

import symdiff as sd
from symdiff.pictures import GraphvizNotFoundError, render, to_dot


def model():
    x = sd.Input("x", shape=(None, 3))
    y = sd.Input("y", shape=(None, 1))
    W = sd.Param("W", shape=(3, 1))
    b = sd.Param("b", shape=(1,))
    return sd.mean((x @ W + b - y) ** 2), W, b


def nodes(text):
    return dict(re.findall(r"^  (n\d+) \[label=\"((?:[^\"\\]|\\.)*)\"", text, flags=re.M))


def test_forward_graph():
    loss, W, b = model()
    text = to_dot(loss)
    assert text.startswith("digraph symdiff {\n") and text.endswith("}\n")
    labels = set(nodes(text).values())
    assert {"x\\n(None, 3)", "W\\n(3, 1)", "b\\n(1,)", "y\\n(None, 1)", "@", "+", "-", "**"} <= labels
    assert '[label="(None, 3)"]' in text  # x flows into the matmul with its shape on the edge
    assert "peripheries=2" in text  # the root
    assert "#b91c1c" not in text  # no gradient nodes
    assert "out0" not in text  # one expression: no output notes


def test_backpropagation_picture():
    loss, W, b = model()
    text = to_dot(loss, wrt=[W, b])
    assert 'out0 [label="loss"' in text and 'out1 [label="dW"' in text and 'out2 [label="db"' in text
    labels = nodes(text)
    assert "dW\\n@" in labels.values()
    assert "db\\nsum(\u00b7, axis=0)" in labels.values()
    grad_nodes = [line for line in text.splitlines() if 'fillcolor="#fee2e2"' in line]
    assert grad_nodes and all("x\\n" not in line for line in grad_nodes)
    assert '[label="(3, None)", color="#b91c1c"' in text  # x.T feeding dW: a gradient edge with its shape


def test_dict_of_outputs_matches_wrt():
    loss, W, b = model()
    gW, gb = sd.grad(loss, [W, b])
    assert to_dot({"loss": loss, "dW": gW, "db": gb}) == to_dot(loss, wrt=[W, b])


def test_grads_option_names_the_gradient_outputs():
    loss, W, b = model()
    gW = sd.grad(loss, W)
    default = to_dot({"loss": loss, "slope": gW})
    assert 'out1 [label="slope", shape=note, style=filled, fillcolor="#e5e7eb"]' in default  # not recognized
    marked = to_dot({"loss": loss, "slope": gW}, grads=["slope"])
    assert 'out1 [label="slope", shape=note, style=filled, fillcolor="#fecaca"' in marked


def test_mixed_and_higher_derivative_outputs_are_drawn_as_gradients():
    x, a = sd.Param("xs", shape=(3,)), sd.Param("a", shape=(3,))
    f = sd.sum(x**2 * a)
    dxs = sd.grad(f, x)
    dxs_da = sd.grad(sd.sum(dxs), a)
    text = to_dot({"f": f, "dxs_da": dxs_da, "d2xs": sd.grad(sd.sum(dxs), x)})
    for name in ("dxs_da", "d2xs"):
        assert f'[label="{name}", shape=note, style=filled, fillcolor="#fecaca"' in text, name


def test_deterministic():
    loss, W, b = model()
    first = to_dot(loss, wrt=[W, b])
    del loss
    loss2, W2, b2 = model()
    assert to_dot(loss2, wrt=[W2, b2]) == first


def test_labels_are_quoted():
    s = sd.Input("s")
    text = to_dot((s * 2).named("half_of_it"), title='a "quoted" title')
    assert 'label="a \\"quoted\\" title"' in text
    assert "half_of_it\\n*" in text


def test_options_and_errors():
    loss, W, b = model()
    assert "rankdir=LR;" in to_dot(loss, rankdir="LR")
    with pytest.raises(ValueError, match="rankdir"):
        to_dot(loss, rankdir="XY")
    with pytest.raises(TypeError, match="expression"):
        to_dot(3.0)
    with pytest.raises(TypeError, match="output 'a'"):
        to_dot({"a": 1})
    with pytest.raises(ValueError, match="single"):
        to_dot({"a": loss, "b": loss}, wrt=W)


def test_render_dot_file_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    loss, W, b = model()
    out = render(loss, tmp_path / "g.dot", wrt=[W, b])
    assert out.read_text(encoding="utf-8") == to_dot(loss, wrt=[W, b])


def test_render_without_graphviz_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    loss, _, _ = model()
    with pytest.raises(GraphvizNotFoundError) as info:
        render(loss, tmp_path / "g.svg")
    message = str(info.value)
    assert "apt-get install graphviz" in message and "pip does not provide" in message
    assert isinstance(info.value, sd.SymdiffError)
    assert not (tmp_path / "g.svg").exists()


def test_render_unknown_format(tmp_path):
    loss, _, _ = model()
    with pytest.raises(ValueError, match="cannot tell the format"):
        render(loss, tmp_path / "g.xyz")


def _fake_dot(folder: Path, body: str) -> None:
    folder.mkdir()
    script = folder / "dot"
    script.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(os.name == "nt", reason="a fake dot script needs a POSIX shebang")
def test_render_runs_dot_without_a_shell(tmp_path, monkeypatch):
    _fake_dot(
        tmp_path / "bin",
        "import sys, json\n"
        "args = sys.argv[1:]\n"
        "out = [a[2:] for a in args if a.startswith('-o')][0]\n"
        "open(out, 'w').write(json.dumps({'args': args, 'stdin': sys.stdin.read()}))\n",
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    loss, W, b = model()
    target = tmp_path / "name with spaces; $(touch PWNED).svg"
    assert render(loss, target, wrt=[W, b]) == target
    import json

    record = json.loads(target.read_text())
    assert record["args"] == ["-Tsvg", f"-o{target}"]
    assert record["stdin"] == to_dot(loss, wrt=[W, b])
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


@pytest.mark.skipif(os.name == "nt", reason="a fake dot script needs a POSIX shebang")
def test_render_reports_dot_failures(tmp_path, monkeypatch):
    _fake_dot(tmp_path / "bin", "import sys\nsys.stderr.write('Error: syntax error in line 1\\n')\nsys.exit(1)\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    loss, _, _ = model()
    with pytest.raises(RuntimeError, match=r"failed to render .*\(exit 1\): Error: syntax error in line 1"):
        render(loss, tmp_path / "g.png")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_render_svg_with_graphviz(tmp_path):
    loss, W, b = model()
    out = render(loss, tmp_path / "g.svg", wrt=[W, b])
    assert "<svg" in out.read_text(encoding="utf-8")


def test_demo_decision_boundary_plot_has_axis_labels_and_a_title(tmp_path):
    pytest.importorskip("matplotlib")
    from symdiff.demo import save_boundary

    points = np.array([[0.5, 0.5], [-0.5, -0.5]])
    fig = save_boundary(tmp_path / "b.png", lambda p: (p[:, 0] > 0).astype(float), points, np.array([1, 0]), 1.0)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and "decision boundary" in ax.get_title()
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
