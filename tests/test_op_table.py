"""The op table is the one home of every op: each registered op states every fact the rest of symdiff reads.

Mandatory facts: the shape/dtype rule, the reference implementation (symbols excepted: their value is an
argument), the text, LaTeX and NumPy formatters, the VJP rules (unless the op is declared non-differentiable),
and the SymPy form, which must be stated even where it is ``None``. Optional facts have a typed default:
``view``, ``inline_view`` and ``sympy_matrix`` (False), ``hint`` and ``dot`` (None: the op's name / its text form).
"""

from __future__ import annotations

import dataclasses

import pytest
from test_ops_grad import NOT_DIFFERENTIABLE, SPECS

import symdiff as sd
from symdiff import functions as F
from symdiff.graph import SYMBOL_OPS
from symdiff.ops import OPS
from symdiff.ops.registry import OpDef, register
from symdiff.parse import FUNCTIONS

NAMES = sorted(OPS)


def _field(name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(OpDef)}[name]


def test_sympy_form_is_a_required_fact_of_every_op() -> None:
    field = _field("sympy")
    assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    with pytest.raises(TypeError, match="sympy"):
        register("op_without_a_sympy_fact", infer=lambda args, attrs: ((), None))
    assert "op_without_a_sympy_fact" not in OPS


@pytest.mark.parametrize("name", NAMES)
def test_every_op_states_every_mandatory_fact(name: str) -> None:
    opdef = OPS[name]
    missing = [fact for fact in ("infer", "text", "latex", "numpy") if not callable(getattr(opdef, fact))]
    if name not in SYMBOL_OPS and not callable(opdef.impl):
        missing.append("impl")
    if name not in NOT_DIFFERENTIABLE and opdef.vjp is None:
        missing.append("vjp")
    assert not missing, f"op {name!r} lacks {missing}"
    assert opdef.sympy is None or callable(opdef.sympy)


@pytest.mark.parametrize("name", NAMES)
def test_optional_op_facts_have_their_types(name: str) -> None:
    opdef = OPS[name]
    assert all(isinstance(flag, bool) for flag in (opdef.view, opdef.inline_view, opdef.sympy_matrix))
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
