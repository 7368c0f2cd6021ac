"""sd.explain: the chain rule step by step, recorded by the sweep sd.grad runs, its rules derived from the op table."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import sympy
from test_ops_grad import CASES, NOT_DIFFERENTIABLE, _loss

import symdiff as sd
from symdiff.autodiff import _depends
from symdiff.graph import topo_order
from symdiff.ops import OPS


def _mlp():
    x = sd.Input("x", shape=(None, 4))
    y = sd.Input("y", shape=(None,), dtype="int64")
    W1, b1 = sd.Param("W1", shape=(4, 8)), sd.Param("b1", shape=(8,))
    W2, b2 = sd.Param("W2", shape=(8, 3)), sd.Param("b2", shape=(3,))
    h1 = sd.relu((x @ W1 + b1).named("h1_z")).named("h1")
    return sd.softmax_cross_entropy((h1 @ W2 + b2).named("out"), y), W1


MLP_W1 = """\
dL/dW1, by the chain rule from L down to W1:
    where mm1 = x @ W1; mm2 = h1 @ W2; L = softmax_cross_entropy(out, y)
 1. the loss: dL = 1    shape ()
 2. softmax cross-entropy (fused: the closed form of softmax then -log-pick): \
dout = (softmax(out) - onehot(y, 3)) / n; where n = out.shape[0]    shape (None, 3)
 3. add, left operand: dmm2 = dout    shape (None, 3)
 4. matmul, left operand: dh1 = dout @ W2.T    shape (None, 8)
 5. relu: dh1_z = dh1 * (h1_z > 0)    shape (None, 8)
 6. add, left operand: dmm1 = dh1_z    shape (None, 8)
 7. matmul, right operand: dW1 = x.T @ dh1_z    shape (4, 8)"""


def test_two_layer_mlp_derivation_text() -> None:
    loss, W1 = _mlp()
    assert str(sd.explain(loss, W1)) == MLP_W1


def test_derivation_result_is_the_expression_grad_returns() -> None:
    loss, W1 = _mlp()
    steps = sd.explain(loss, W1)
    assert steps.result is steps[-1].expr is sd.grad(loss, W1)
    assert [s.shape for s in steps][-1] == (4, 8)


def test_unfused_loss_shows_the_ops_of_the_loss_and_ends_at_the_same_gradient() -> None:
    loss, W1 = _mlp()
    steps = sd.explain(loss, W1, fuse=False)
    rules = [s.rule for s in steps]
    assert rules[:6] == ["the loss", "div", "sum", "neg", "pick", "log_softmax"]
    assert steps[5].formula == "dlog_softmax1 - softmax(out) * sum(dlog_softmax1, axis=1, keepdims=True)"
    assert steps.result is sd.grad(loss, W1)


RESIDUAL_H = """\
dL/dh, by the chain rule from L down to h:
    where L = sum(r)
 1. the loss: dL = 1    shape ()
 2. sum: dr = broadcast_to(1.0, r.shape)    shape (None, 4)
 3. add, right operand: dt = dr    shape (None, 4)
 4. tanh: da = dr * (1 - t**2)    shape (None, 4)
 5. sum of 2 paths: dh = dr + da @ W.T    shape (None, 4)
      path via r (add, left operand): dr
      path via a (matmul, left operand): da @ W.T"""


def test_residual_block_sums_the_paths_where_they_meet() -> None:
    h, W = sd.Input("h", shape=(None, 4)), sd.Param("W", shape=(4, 4))
    loss = sd.sum((h + sd.tanh((h @ W).named("a")).named("t")).named("r"))
    steps = sd.explain(loss, h)
    assert str(steps) == RESIDUAL_H
    assert steps[-1].paths == ("r", "a") and steps[-2].paths == ()
    assert steps.result is sd.grad(loss, h)


BROADCAST_B = """\
dL/db, by the chain rule from L down to b:
    where pow1 = z**2; sum1 = sum(pow1); n = x.shape[0]; prod1 = 3 * n; L = sum1 / prod1
 1. the loss: dL = 1    shape ()
 2. div: dsum1 = 1.0 / prod1    shape ()
 3. sum: dpow1 = broadcast_to(dsum1, pow1.shape)    shape (None, 3)
 4. pow: dz = 2 * dpow1 * z    shape (None, 3)
 5. add, right operand: db = sum(dz, axis=0)    shape (3,)
      sum over axis 0 undoes the broadcast of b (3,) to (None, 3)"""


def test_broadcast_bias_names_the_sum_that_undoes_the_broadcast() -> None:
    x, b, W = sd.Input("x", shape=(None, 4)), sd.Param("b", shape=(3,)), sd.Param("W", shape=(4, 3))
    loss = sd.mean((x @ W + b).named("z") ** 2)
    steps = sd.explain(loss, b)
    assert str(steps) == BROADCAST_B
    assert steps[-1].reduction == "sum over axis 0 undoes the broadcast of b (3,) to (None, 3)"
    assert steps[-2].reduction is None
    assert steps.result is sd.grad(loss, b)


def test_kept_length_one_axes_are_named_in_the_original_axes() -> None:
    c = sd.Param("c", shape=(1, 3))
    steps = sd.explain(sd.sum(sd.Input("u", shape=(2, 5, 3)) * c), c)
    assert steps[-1].reduction == "sum over axes 0, 1 undoes the broadcast of c (1, 3) to (2, 5, 3)"


DIFFERENTIABLE = sorted(set(OPS) - NOT_DIFFERENTIABLE)


def test_every_differentiable_op_has_an_explained_case() -> None:
    covered = {c.values[0].op for c in CASES}
    assert set(DIFFERENTIABLE) <= covered, set(DIFFERENTIABLE) - covered


@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_every_op_rule_gives_a_labelled_formula(spec, shapes) -> None:
    loss, params, _ = _loss(spec, shapes, seed=1)
    for p in params:
        steps = sd.explain(loss, p)
        assert steps.result is sd.grad(loss, p)
        parts = [c for s in steps for c in s.contributions]
        assert all(s.rule and s.formula for s in steps) and all(c.rule and c.formula and c.latex for c in parts)
        # every op on a path to p whose rule gives p a gradient has its rule line (the case's op among them)
        order = topo_order([loss])
        needed = _depends(order, [p])
        on_path = {n.op for n in order for i, a in enumerate(n.args) if id(a) in needed and n.opdef.rule(i)}
        assert {c.rule.split(",")[0] for c in parts} == on_path
        assert spec.op in on_path or spec.op in ("scatter", "broadcast_like", "signdet")  # built away, or no rule


def test_latex_is_an_align_environment_of_partial_derivatives() -> None:
    loss, W1 = _mlp()
    tex = sd.explain(loss, W1).latex()
    assert tex.startswith("\\begin{align}\n") and tex.endswith("\n\\end{align}")
    last = tex.splitlines()[-2]
    assert last == (
        "\\frac{\\partial L}{\\partial W_{1}} &= {x}^\\top \\frac{\\partial L}{\\partial \\mathrm{h1}_{z}} "
        "&& \\text{matmul, right operand}"
    )
    assert sd.explain(loss, W1)._repr_latex_() == tex


def test_latex_lines_render_with_mathtext() -> None:
    mathtext = pytest.importorskip("matplotlib.mathtext")
    loss, W1 = _mlp()
    h, W = sd.Input("h", shape=(None, 4)), sd.Param("W", shape=(4, 4))
    residual = sd.sum(h + sd.tanh(h @ W))
    cases = [sd.explain(loss, W1), sd.explain(loss, W1, fuse=False), sd.explain(residual, h), sd.explain(*_deep())]
    for steps in cases:
        for row in steps.latex().splitlines()[1:-1]:  # mathtext draws one line, without align's & and \\\\
            line = row.removesuffix(" \\\\").replace("&&", "\\quad").replace("&", "")
            mathtext.math_to_image(f"${line}$", io.BytesIO(), format="png")


def test_html_is_a_collapsible_table_of_formulas_and_shapes() -> None:
    loss, W1 = _mlp()
    page = sd.explain(loss, W1)._repr_html_()
    assert page.startswith(
        "<details open><summary>dL/dW1: 7 steps</summary>"
        "<p>where <code>mm1 = x @ W1; mm2 = h1 @ W2; L = softmax_cross_entropy(out, y)</code></p><table>"
    )
    assert "<td><code>dW1 = x.T @ dh1_z</code></td><td>(4, 8)</td>" in page


def test_explain_refuses_what_grad_refuses() -> None:
    x = sd.Input("x", shape=(3,))
    with pytest.raises(sd.ShapeError, match="explain"):
        sd.explain(x * 2, x)


def _mlp_values(loss):
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(5, 4)), "y": rng.integers(0, 3, 5), **sd.init_params(loss, seed=0)}


def test_numeric_steps_hold_the_values_of_the_chain_rule() -> None:
    loss, W1 = _mlp()
    v = _mlp_values(loss)
    steps = {s.name: s.value for s in sd.explain(loss, W1, numeric=v)}
    np.testing.assert_allclose(steps["W1"], sd.compile(sd.grad(loss, W1))(**v))
    z = v["x"] @ v["W1"] + v["b1"]
    out = np.maximum(z, 0) @ v["W2"] + v["b2"]
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(steps["out"], (p - np.eye(3)[v["y"]]) / 5)
    np.testing.assert_allclose(steps["h1"], steps["out"] @ v["W2"].T)
    np.testing.assert_allclose(steps["h1_z"], steps["h1"] * (z > 0))
    np.testing.assert_allclose(steps["W1"], v["x"].T @ steps["h1_z"])


def test_each_steps_adjoint_is_a_node_of_the_gradient_sd_grad_compiles() -> None:
    # so the numbers numeric mode shows are the compiled gradient's own intermediates, not a recomputation
    loss, W1 = _mlp()
    grad = sd.grad(loss, W1)  # held: the ids below are its live nodes
    inside = {id(n) for n in topo_order([grad])}
    steps = sd.explain(loss, W1)
    assert [s.name for s in steps if id(s.expr) not in inside] == ["L"]  # the seed 1 is folded into the rules


def test_numeric_mode_checks_the_result_against_central_differences() -> None:
    loss, W1 = _mlp()
    steps = sd.explain(loss, W1, numeric=_mlp_values(loss))
    assert steps.check is not None and steps.check < 1e-6
    assert str(steps).splitlines()[-1].startswith("central differences agree with dW1 to a relative error of ")
    assert "      value: [" in str(steps) and "of shape (4, 8)" in str(steps)


def test_fused_and_unfused_loss_steps_agree_on_the_numbers() -> None:
    loss, W1 = _mlp()
    v = _mlp_values(loss)
    fused = {s.name: s.value for s in sd.explain(loss, W1, numeric=v)}
    unfused = {s.name: s.value for s in sd.explain(loss, W1, fuse=False, numeric=v)}
    assert set(fused) < set(unfused)
    for name, value in fused.items():
        np.testing.assert_allclose(unfused[name], value, atol=1e-15)


def _deep(layers: int = 8):
    x, y = sd.Input("x", shape=(None, 4)), sd.Input("y", shape=(None,), dtype="int64")
    h = x
    for i in range(layers):
        h = sd.dense(h, 4, f"h{i}", activation="tanh")
    loss = sd.softmax_cross_entropy(sd.dense(h, 3, "out"), y)
    return loss, next(p for p in sd.params(loss) if p.label == "h0_W")


def test_repeated_layers_fold_into_one_line_and_expand_on_request() -> None:
    loss, W = _deep()
    steps = sd.explain(loss, W)
    lines = str(steps).splitlines()
    assert lines[8:11] == [
        " 7. matmul, left operand: dh6 = dh7_z @ h7_W.T    shape (None, 4)",
        "    ... steps 8 to 22: 5 more layers, h6_z ... h2_z, each the same 3 steps as steps 5 to 7 "
        "(tanh; add, left operand; matmul, left operand)",
        "23. tanh: dh1_z = dh1 * (1 - h1**2)    shape (None, 4)",
    ]
    expanded = steps.text(fold=False).splitlines()
    assert len(expanded) == len(steps) + 2 and expanded[9] == " 8. tanh: dh6_z = dh6 * (1 - h6**2)    shape (None, 4)"


def test_two_layers_do_not_fold() -> None:
    loss, W = _deep(layers=2)
    steps = sd.explain(loss, W)
    assert str(steps) == steps.text(fold=False)


def test_unfused_loss_step_says_it_simplifies_to_the_closed_form() -> None:
    loss, W1 = _mlp()
    (out,) = [s for s in sd.explain(loss, W1, fuse=False) if s.name == "out"]
    assert out.note == (
        "the steps so far simplify to what the fused step shows, softmax cross-entropy (fused: the closed form of "
        "softmax then -log-pick): dout = (softmax(out) - onehot(y, 3)) / n; where n = out.shape[0]"
    )
    assert "      " + out.note in str(sd.explain(loss, W1, fuse=False))


def test_explain_takes_one_target() -> None:
    loss, W1 = _mlp()
    with pytest.raises(sd.InputError, match="explain: wrt must be one Input or Param"):
        sd.explain(loss, [W1])


def test_latex_folds_repeated_layers_into_a_vdots_row() -> None:
    loss, W = _deep()
    steps = sd.explain(loss, W)
    rows = steps.latex().splitlines()[1:-1]
    assert len(rows) == 15 and rows[8].startswith("&\\vdots && \\text{steps 8 to 22: 5 more layers, h6\\_z ... h2\\_z")
    assert len(steps.latex(fold=False).splitlines()) == len(steps) + 3


def test_html_shows_the_values_in_numeric_mode() -> None:
    loss, W1 = _mlp()
    page = sd.explain(loss, W1, numeric=_mlp_values(loss))._repr_html_()
    assert "<th>value</th>" in page and "of shape (4, 8)</td></tr>" in page
    assert "<th>value</th>" not in sd.explain(loss, W1)._repr_html_()


def test_an_unlabelled_loss_is_L_unless_a_node_has_that_name() -> None:
    x = sd.Input("x", shape=(3,))
    steps = sd.explain(sd.sum(sd.exp(x).named("L")), x)
    assert str(steps).startswith(
        "dL1/dx, by the chain rule from L1 down to x:\n    where L1 = sum(L)\n 1. the loss: dL1 = 1    shape ()"
    )


def test_a_loss_term_fuses_with_its_own_adjoint() -> None:
    x, W = sd.Input("x", shape=(None, 4)), sd.Param("W", shape=(4, 3))
    y = sd.Input("y", shape=(None,), dtype="int64")
    loss = sd.softmax_cross_entropy((x @ W).named("z"), y) + 0.1 * sd.sum(W**2)
    steps = sd.explain(loss, W)
    assert [s.rule for s in steps][-3:-1] == [
        "add, left operand",
        "softmax cross-entropy (fused: the closed form of softmax then -log-pick)",
    ]
    assert steps[-2].formula == "(softmax(z) - onehot(y, 3)) / n; where n = z.shape[0]"
    assert steps[-1].paths == ("pow1", "z") and steps.result is sd.grad(loss, W)
    scaled = sd.explain(2.0 * sd.softmax_cross_entropy((x @ W).named("z"), y), W)
    assert scaled[2].formula == "(softmax(z) - onehot(y, 3)) * (dq1 / n); where n = z.shape[0]"


def test_explaining_a_target_the_loss_does_not_depend_on_is_refused_naming_it() -> None:
    X, Z = sd.Param("X", shape=(3, 3)), sd.Param("Z", shape=(2,))
    with pytest.raises(sd.InputError, match="does not depend on Z"):
        sd.explain(sd.linalg.det(X), Z)  # not in the graph
    idx = sd.Param("idx", shape=(3,))
    with pytest.raises(sd.InputError, match="does not depend on idx"):
        sd.explain(sd.sum(X[0] * sd.argmax(idx)), idx)  # only through an integer op


def test_a_where_clause_never_takes_the_name_of_a_placeholder_the_formula_reads() -> None:
    """A SymPy function's step reads its forward value f1 and defines its derivative apart from it."""
    t = sympy.Symbol("t")
    x, W = sd.Input("x", shape=(None, 3)), sd.Param("W", shape=(3, 2))
    f = sd.from_sympy(t * sympy.tanh(sympy.log(1 + sympy.exp(t))), {t: x @ W})
    steps = sd.explain(sd.mean(f**2), W).steps
    reads = {n.name for n in topo_order([steps[3].expr]) if n.is_symbol} | {"f1"}
    formula = next(s.formula for s in steps if s.rule == "sympy_fn")
    defined = re.findall(r"(?:where |, )(\w+) = ", formula)
    assert defined and not set(defined) & reads, formula


def _graphs():
    loss, W1 = _mlp()
    yield sd.explain(loss, W1), loss
    yield sd.explain(loss, W1, fuse=False), loss
    deep, W = _deep()
    yield sd.explain(deep, W), deep
    x, b, Wb = sd.Input("x", shape=(None, 4)), sd.Param("b", shape=(3,)), sd.Param("W", shape=(4, 3))
    mean = sd.mean((x @ Wb + b).named("z") ** 2)
    yield sd.explain(mean, b), mean


@pytest.mark.parametrize("case", range(4))
def test_every_name_a_shown_formula_reads_is_the_users_or_defined_in_the_where_line(case) -> None:
    from symdiff.explain import _names

    steps, loss = list(_graphs())[case]
    made_up = {name for n, name in ((n, _names(loss).get(id(n))) for n in sd.graph.topo_order([loss])) if not n.label}
    text = str(steps)
    where = dict(d.split(" = ", 1) for d in text.splitlines()[1].removeprefix("    where ").split("; "))
    read = set(re.findall(r"\b[A-Za-z_]\w*\b", text)) & (made_up - {None})
    inline = set(re.findall(r"; where (\w+) = ", text))  # a formula's own shared pieces (n = out.shape[0])
    assert read and read <= set(where) | inline, read - set(where) - inline
    for name, formula in where.items():  # each definition reads only names defined before it, or the user's
        before = list(where)[: list(where).index(name)]
        assert set(re.findall(r"\b[A-Za-z_]\w*\b", formula)) & made_up <= set(before)


def test_plot_draws_the_where_line_and_one_row_per_step_shown(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    loss, W = _deep()
    steps = sd.explain(loss, W)
    fig = steps.plot(tmp_path / "chain.png")
    assert (tmp_path / "chain.png").stat().st_size > 10_000
    title, *rows = [t.get_text() for t in fig.texts]  # each row's formula and rule: the where line, 14 rows
    assert title == "$\\partial L / \\partial \\mathrm{h0}_{W}$ by the chain rule"
    assert len(rows) == 2 * (1 + 14) and rows[0].startswith("$\\text{where } \\mathrm{mm}_{1} = ")
    assert rows.count("$\\vdots$") == 1 and rows[-1] == "28. matmul, right operand"
    assert len(sd.explain(loss, W).plot(fold=False).texts) == 1 + 2 * (1 + len(steps))


def test_every_ops_derivation_renders_with_mathtext() -> None:
    parser = pytest.importorskip("matplotlib.mathtext").MathTextParser("path")
    rows: dict[str, str] = {}  # each distinct row once, and the op whose case printed it
    for spec, shapes in (c.values for c in CASES):
        loss, params, _ = _loss(spec, shapes, seed=1)
        for p in params:
            steps = sd.explain(loss, p)
            shown = ["{} = {}".format(*row[:2]) for row in steps.latex_lines()]
            rows.update(dict.fromkeys([*shown, *("\\text{where } " + w for w in steps._latex_where(True))], spec.op))
    for row, op in rows.items():
        try:
            parser.parse(f"${row}$")
        except ValueError:  # mathtext has no matrices: a constant array's literal (plot shows it as text)
            assert "\\begin{bmatrix}" in row, (op, row)


def test_the_repl_shows_the_derivation_itself() -> None:
    loss, W1 = _mlp()
    assert repr(sd.explain(loss, W1)) == MLP_W1
