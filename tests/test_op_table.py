"""The op table is the one home of every op: each registered op states every fact the rest of symdiff reads.

Mandatory facts: the shape/dtype rule, the reference implementation (symbols excepted: their value is an
argument), the text, LaTeX and NumPy formatters, the VJP rules (unless the op is declared non-differentiable),
and the SymPy form and the axis provenance, which must be stated even where they are ``None``. Optional facts
have a typed default: ``view``, ``inline_view``, ``sympy_matrix``, ``activation``, ``random`` and
``increasing`` (False), ``hint``, ``dot`` and ``doc`` (None: the op's name / its text form / no public wrapper of
its own).

Rules take named arguments: each VJP rule is called ``rule(g, out, *args, **attrs)`` and each axis provenance
``axis_source(out, ax, *args, **attrs)``; the signatures are checked on the nodes the gradient spec rows build.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from test_ops_grad import CASES, NOT_DIFFERENTIABLE, SPECS, _loss

import symdiff as sd
from symdiff import dims
from symdiff import functions as F
from symdiff.graph import SYMBOL_OPS, topo_order
from symdiff.ops import OPS
from symdiff.ops.registry import OpDef, broadcast_axis_source, register
from symdiff.parse import FUNCTIONS

NAMES = sorted(OPS)


def _field(name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(OpDef)}[name]


@pytest.mark.parametrize("fact", ["sympy", "axis_source"])
def test_sympy_form_and_axis_provenance_are_required_facts_of_every_op(fact: str) -> None:
    field = _field(fact)
    assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    facts = {"sympy": None, "axis_source": None}
    del facts[fact]
    with pytest.raises(TypeError, match=fact):
        register("op_without_a_fact", infer=lambda args, attrs: ((), None), **facts)
    assert "op_without_a_fact" not in OPS


def test_element_wise_ops_share_the_broadcast_axis_provenance() -> None:
    elementwise = [name for name, opdef in OPS.items() if opdef.elementwise]
    assert "add" in elementwise and "exp" in elementwise and "sympy_fn" in elementwise
    assert all(OPS[name].axis_source is broadcast_axis_source for name in elementwise)
    x = sd.Input("x", shape=(None, 3))
    assert dims.axis_source(sd.exp(x) + np.ones(3), 0) == (sd.exp(x), 0)
    assert dims.axis_source(sd.sum(sd.exp(x), axis=1), 0) == (sd.exp(x), 0)  # the reduction's own fact


def _nodes(spec, shapes):
    """The nodes of the row's op in the spec row's graph and its (unsimplified) gradient."""
    loss, params, _ = _loss(spec, shapes, seed=0)
    return [n for n in topo_order([loss, *sd.grad(loss, params, simplify=False)]) if n.op == spec.op]


@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_every_vjp_rule_takes_g_out_the_arguments_and_the_attributes_by_name(spec, shapes) -> None:
    nodes = _nodes(spec, shapes)
    assert nodes, f"the spec row builds no {spec.op!r} node"
    for node in nodes:
        for i in range(len(node.args)):
            rule = node.opdef.rule(i)
            if rule is not None:
                inspect.signature(rule).bind(node, node, *node.args, **node.attrs)


@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_every_jvp_rule_takes_t_out_the_arguments_and_the_attributes_by_name(spec, shapes) -> None:
    """One tangent rule per argument, ``None`` exactly where the gradient rule is (no differentiable argument)."""
    for node in _nodes(spec, shapes):
        for i, arg in enumerate(node.args):
            rule, grad_rule = node.opdef.jvp[i], node.opdef.rule(i)
            assert (rule is None) == (grad_rule is None), (node.op, i)
            if rule is not None:
                inspect.signature(rule).bind(arg, node, *node.args, **node.attrs)


def test_an_op_with_gradient_rules_but_no_tangent_rules_lacks_a_fact() -> None:
    assert _field("jvp").default is None
    assert all((OPS[name].jvp is None) == (OPS[name].vjp is None) for name in NAMES)
    bare = OpDef(name="bare", infer=lambda args, attrs: ((), None), vjp=(None,), sympy=None, axis_source=None)
    with pytest.raises(NotImplementedError, match="'bare' has no tangent"):
        bare.arg_tangent(0, sd.Param("t"), sd.Param("t"))


@pytest.mark.parametrize(("spec", "shapes"), CASES)
def test_every_axis_provenance_takes_out_ax_the_arguments_and_the_attributes_by_name(spec, shapes) -> None:
    for node in _nodes(spec, shapes):
        source = node.opdef.axis_source
        if source is not None:
            inspect.signature(source).bind(node, 0, *node.args, **node.attrs)
            for ax in range(node.ndim):
                found = node.opdef.arg_axis(node, ax)
                assert found is None or 0 <= found[1] < found[0].ndim, (node.op, ax, found)


@pytest.mark.parametrize("name", NAMES)
def test_every_op_states_every_mandatory_fact(name: str) -> None:
    opdef = OPS[name]
    missing = [fact for fact in ("infer", "text", "latex", "numpy") if not callable(getattr(opdef, fact))]
    if name not in SYMBOL_OPS and not callable(opdef.impl):
        missing.append("impl")
    if name not in NOT_DIFFERENTIABLE and opdef.vjp is None:
        missing.append("vjp")
    if opdef.vjp is not None and opdef.jvp is None:
        missing.append("jvp")
    assert not missing, f"op {name!r} lacks {missing}"
    assert opdef.sympy is None or callable(opdef.sympy)


@pytest.mark.parametrize("name", NAMES)
def test_optional_op_facts_have_their_types(name: str) -> None:
    opdef = OPS[name]
    flags = (opdef.view, opdef.inline_view, opdef.sympy_matrix, opdef.activation, opdef.random, opdef.increasing)
    assert all(isinstance(flag, bool) for flag in flags)
    assert opdef.doc is None or (isinstance(opdef.doc, str) and opdef.doc)
    assert opdef.view or not opdef.inline_view, f"op {name!r}: inline_view on an op that is not a view"
    assert opdef.hint is None or (isinstance(opdef.hint, str) and opdef.hint.isidentifier())
    assert opdef.dot is None or (isinstance(opdef.dot, str) and opdef.dot)
    assert not (opdef.sympy_matrix and opdef.sympy is None), f"op {name!r}: sympy_matrix without a SymPy form"


def test_every_op_has_a_gradient_spec_row_or_is_declared_not_differentiable() -> None:
    covered = {s.op for s in SPECS} | NOT_DIFFERENTIABLE
    assert not sorted(set(OPS) - covered), f"ops without a gradient spec row: {sorted(set(OPS) - covered)}"
    assert not sorted(NOT_DIFFERENTIABLE - set(OPS)), "NOT_DIFFERENTIABLE names ops that are not registered"


# Ops with a wrapper of their own name that the text parser and ``sd`` do not offer (building blocks).
INTERNAL_WRAPPERS = {"dim", "getitem", "broadcast_like"}


def test_every_op_wrapper_is_public_or_declared_internal() -> None:
    wrapped = {name for name in OPS if callable(getattr(F, name, None))}
    unlisted = sorted(wrapped - set(F.PUBLIC) - INTERNAL_WRAPPERS)
    assert not unlisted, f"op wrappers neither in functions.PUBLIC nor INTERNAL_WRAPPERS: {unlisted}"
    assert not INTERNAL_WRAPPERS & set(F.PUBLIC)


@pytest.mark.parametrize("name", F.PUBLIC)
def test_public_wrappers_are_exported_and_parsable(name: str) -> None:
    assert getattr(sd, name) is getattr(F, name), f"sd.{name} is not functions.{name}"
    assert FUNCTIONS[name] is getattr(F, name)


DOCUMENTED = sorted(name for name, opdef in OPS.items() if opdef.doc is not None)


def _public(op: str) -> str:
    return OPS[op].public or op


def _nargs(op: str) -> int:
    return len(OPS[op].vjp)


def test_element_wise_functions_get_their_public_wrapper_from_their_entry() -> None:
    assert {"exp", "tanh", "sigmoid", "softplus", "relu", "add", "sub", "gt", "maximum"} <= set(DOCUMENTED)
    for op in DOCUMENTED:
        name = _public(op)
        wrapper = getattr(F, name)
        # the entry's doc, then the example define_elementwise writes from the entry
        assert wrapper.__doc__.startswith(OPS[op].doc + "\n\n>>> ") and wrapper.__name__ == name
        assert f"sd.{name}(" in wrapper.__doc__
        assert name in F.PUBLIC and name in sd.__all__ and getattr(sd, name) is wrapper
        assert list(inspect.signature(wrapper).parameters) == (["x"] if _nargs(op) == 1 else ["a", "b"])
    assert sd.subtract(sd.Param("a"), 1.0).op == "sub" and sd.greater(1.0, sd.Param("a")).op == "gt"
    for name in ("exp", "subtract"):
        with pytest.raises(ValueError, match="already defined"):
            F.define_elementwise("exp", name, "a second home", 1)


@pytest.mark.parametrize("op", DOCUMENTED)
def test_every_public_function_of_an_entry_works_everywhere(op: str) -> None:
    """grad, text (which parses back), LaTeX, readable and compiled NumPy, SymPy, DOT, and the text parser."""
    name, nargs = _public(op), _nargs(op)
    x, z = sd.Param("x", shape=(3,)), sd.Param("z", shape=(3,))
    symbols = {"x": x, "z": z}
    operands = (x * 0.5 + 1.5, z)[:nargs]
    y = getattr(sd, name)(*operands)
    assert y.op == op
    assert sd.parse(f"{name}({', '.join(('x * 0.5 + 1.5', 'z')[:nargs])})", symbols) is y
    if op != "eq":  # the printed form reads back as the same expression (the parser refuses ==, see test_parse)
        assert sd.parse(sd.to_text(y), symbols) is y
    assert sd.latex(y)
    values = {n: v for n, v in (("x", np.array([0.25, 0.5, 1.0])), ("z", np.array([0.75, 0.5, -1.0])))[:nargs]}
    if OPS[op].vjp[0] is not None:
        assert sd.check_grad(sd.sum(y * y), x, values) < 1e-6
    reference = sd.testing.interpret(y, values)
    np.testing.assert_allclose(sd.compile(y)(**values), reference, rtol=1e-12)
    namespace: dict = {}
    exec(sd.codegen({"y": y}, name="f"), namespace)
    np.testing.assert_allclose(namespace["f"](**values)["y"], reference, rtol=1e-12)
    scalars = [sd.Param(n, shape=()) for n in "xz"[:nargs]]
    form = sd.to_sympy(getattr(sd, name)(*scalars))
    at = {"x": 0.75, "z": 0.5}
    value_at = form.subs({s: at[s.name] for s in form.free_symbols})
    expected = OPS[op].impl({}, *(np.float64(at[n]) for n in "xz"[:nargs]))
    if np.asarray(expected).dtype == bool:  # comparisons: SymPy's true/false
        assert bool(value_at) == bool(expected)
    else:
        assert float(value_at) == pytest.approx(float(expected), rel=1e-12)
    assert sd.to_dot(y)
