"""The expression graph: symbols, hash-consing, static shapes and dtypes, build-time errors.

Expected shapes and dtypes are computed by NumPy itself on empty arrays wherever possible, so each
case states "symdiff infers what NumPy would produce".
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from shapecases import INDEX_CASES as SHARED_INDEX_CASES
from shapecases import TENSORDOT_CASES

import symdiff as sd


def _arr(shape, dtype="float64"):
    return np.ones(shape, dtype=dtype)


def _sym(shape, name="x", dtype="float64"):
    return sd.Input(name, shape=shape, dtype=dtype)


def _fmt(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# -- symbols ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [sd.Input, sd.Param])
def test_symbol_defaults(kind):
    s = kind("w", shape=(2, 3))
    assert s.shape == (2, 3)
    assert s.ndim == 2
    assert isinstance(s.dtype, np.dtype)
    assert s.dtype == np.dtype("float64")
    assert s.size == 6


@pytest.mark.parametrize("kind", [sd.Input, sd.Param])
@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32")])
def test_symbol_dtype_spellings(kind, dtype):
    s = kind("w", shape=(4,), dtype=dtype)
    assert s.dtype == np.dtype("float32")
    assert isinstance(s.dtype, np.dtype)


def test_input_integer_dtype_and_batch_axis():
    y = sd.Input("y", shape=(None,), dtype="int64")
    assert y.dtype == np.dtype("int64")
    assert y.shape == (None,)
    assert y.ndim == 1
    assert y.size is None


def test_param_scalar_shape():
    s = sd.Param("s", shape=())
    assert s.shape == ()
    assert s.ndim == 0
    assert s.dtype == np.float64
    assert sd.Param("t").shape == ()


def test_param_with_open_axis_raises():
    with pytest.raises(ValueError, match="None"):
        sd.Param("W", shape=(None, 3))


@pytest.mark.parametrize("name", ["_", "numpy", "np", "__builtins__", "_x", "match"])
def test_reserved_symbol_names_are_refused_with_the_whole_rule(name):
    with pytest.raises(ValueError, match=f"symbol name '{name}' is reserved: ") as info:
        sd.Input(name)
    assert "start with '_'" in str(info.value) and "np or numpy" in str(info.value)
    assert "keyword" not in str(info.value).split(":")[0]  # '_' is reserved, not "a Python keyword"


def test_param_int_dtype_raises():
    with pytest.raises(TypeError, match="'W'"):
        sd.Param("W", shape=(3,), dtype="int64")


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="long double is float64 on this platform")
@pytest.mark.parametrize(
    "build",
    [
        lambda x: x * np.longdouble(0.1),  # QA new 1: optimize=True gave float128, optimize=False float64
        lambda x: x * np.ones(3, dtype=np.longdouble),
        lambda x: sd.astype(x, np.longdouble),
        lambda x: sd.Input("y", dtype=np.longdouble),
    ],
)
def test_long_double_constants_and_dtypes_are_refused(build):
    with pytest.raises(sd.DTypeError, match=r"\(long double\).* not supported"):
        build(sd.Param("x", shape=(3,)))


@pytest.mark.parametrize("shape", [(-1, 3), (2.5,), ("a",)])
def test_bad_shape_raises(shape):
    with pytest.raises(ValueError):
        sd.Input("x", shape=shape)


def test_primer_facts():
    x = sd.Input("x", shape=(3, 3, 5))
    assert x.ndim == 3
    assert x[0:2, 0:1, 0:4].shape == (2, 1, 4)
    assert x[0:2, 0:1, 0:4].shape == _arr((3, 3, 5))[0:2, 0:1, 0:4].shape


@pytest.mark.parametrize("kind", [sd.Input, sd.Param])
@pytest.mark.parametrize("bad", ["1x", "a-b", "", "x y", "lambda", "class", "_x", "_", "np", "numpy", "match"])
def test_bad_symbol_name_raises_naming_it(kind, bad):
    with pytest.raises(ValueError) as info:
        kind(bad, shape=(2,))
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("good", ["x", "W1", "hidden_layer", "x_2", "numpy_like"])
def test_good_symbol_names(good):
    assert sd.Input(good, shape=()).label == good


# -- hash-consing -------------------------------------------------------------------------------
def test_hash_consing_identical_expressions_are_one_object():
    x = sd.Input("x", shape=(None, 4))
    W = sd.Param("W", shape=(4, 3))
    b = sd.Param("b", shape=(3,))
    assert sd.Input("x", shape=(None, 4)) is x
    assert (x @ W + b) is (x @ W + b)
    assert sd.exp(x @ W) is sd.exp(x @ W)
    assert sd.sum(x, axis=1) is x.sum(axis=1)
    assert x[:, 1:3] is x[:, 1:3]
    assert (x + 1) is (x + 1)
    assert (x @ W + b) is not (x @ W - b)
    assert sd.Input("x", shape=(None, 5)) is not x
    assert sd.Input("x", shape=(None, 4), dtype="float32") is not x


def test_hash_consing_is_thread_safe_one_param_node_for_all_threads(monkeypatch):
    from dataclasses import replace

    from symdiff.ops.registry import OPS

    n = 8
    barrier = threading.Barrier(n, timeout=10)
    infer = OPS["param"].infer

    def infer_together(args, attrs):  # every thread has missed the table lookup before any inserts
        barrier.wait()
        return infer(args, attrs)

    monkeypatch.setitem(OPS, "param", replace(OPS["param"], infer=infer_together))
    built = []
    threads = [threading.Thread(target=lambda: built.append(sd.Param("W_threads", shape=(3, 4)))) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.undo()
    assert len(built) == n and all(p is built[0] for p in built)
    assert sd.Param("W_threads", shape=(3, 4)) is built[0]
    assert sd.params(sum(sd.sum(p) for p in built)) == [built[0]]


@pytest.mark.parametrize("kind", [sd.Input, sd.Param])
def test_symbol_name_attribute_is_the_symbol_name(kind):
    s = kind("W", shape=(2, 3))
    assert s.name == "W" and s.label == "W"
    assert s.unnamed() is s
    assert (s * 2).name is None and (s * 2).named("h").name == "h"
    assert str(sd.tanh(s).named("W1") + s) == "W1 = tanh(W)\nW1 + W"


def test_named_is_distinct_node_with_label():
    x = sd.Input("x", shape=(None, 4))
    W = sd.Param("W", shape=(4, 3))
    z = x @ W
    h = z.named("h1")
    assert h is not z
    assert h.name == "h1"
    assert h.label == "h1"
    assert z.name is None
    assert h.shape == z.shape and h.dtype == z.dtype
    assert z.named("h1") is h
    assert h.unnamed() is z


@pytest.mark.parametrize("bad", ["1h", "a-b", "", "lambda", "_h", "np"])
def test_named_invalid_label_raises(bad):
    z = sd.Input("x", shape=(3,)) * 2
    with pytest.raises(ValueError) as info:
        z.named(bad)
    assert repr(bad) in str(info.value)


def test_named_symbol_cannot_be_renamed():
    x = sd.Input("x", shape=(3,))
    with pytest.raises(ValueError, match="'x'"):
        x.named("y")


# A str subclass whose formatting returns code: every template would run the payload if the object
# (rather than its characters) were formatted into generated source.
_PAYLOAD = "__import__('builtins').__dict__.setdefault('symdiff_injected', []).append(1)"
_AS_ARGUMENT, _AS_STATEMENT, _AS_DEF = "{n}={p}", "{n} = {p} or 0; {n}", "{n}(): pass\n{p}\ndef {n}"


def _code_name(plain, template):
    class CodeName(str):
        def __format__(self, spec):
            return template.format(n=plain, p=_PAYLOAD)

        __str__ = __repr__ = lambda self: template.format(n=plain, p=_PAYLOAD)  # noqa: E731

        def isidentifier(self):
            return True

    return CodeName(plain)


def _dense_loss(layer):
    return sd.sum(sd.dense(sd.Input("q", shape=(None, 3)), 2, layer))


def _named_schedule(t):
    return 0.1


_named_schedule.__qualname__ = 'x"""\n' + _PAYLOAD + '\n"""'  # written into the step's docstring


class _CodeFloat(float):
    def __format__(self, spec):
        return '0.1"""\n' + _PAYLOAD + '\n"""'


_INJECTIONS = {
    "input": lambda: sd.compile(sd.sum(sd.Input(_code_name("x", _AS_ARGUMENT), shape=(3,))))(x=np.ones(3)),
    "param": lambda: sd.compile_step(
        sd.sum(sd.Param(_code_name("W", _AS_ARGUMENT), shape=(3,)) ** 2), {"W": np.ones(3)}
    )(),
    "named": lambda: sd.compile((sd.Input("y", shape=(3,)) * 2).named(_code_name("h", _AS_STATEMENT)) + 1)(
        y=np.ones(3)
    ),
    "output": lambda: sd.compile({_code_name("o", _AS_STATEMENT): sd.sum(sd.Input("y", shape=(3,)))})(y=np.ones(3)),
    "function": lambda: sd.compile(sd.sum(sd.Input("y", shape=(3,))), name=_code_name("f", _AS_DEF))(y=np.ones(3)),
    "step": lambda: sd.compile_step(
        sd.sum(sd.Param("V", shape=(3,)) ** 2), {"V": np.ones(3)}, name=_code_name("s", _AS_DEF)
    )(),
    "dense": lambda: sd.compile_step(_dense_loss(_code_name("L", _AS_STATEMENT)), sd.init_params(_dense_loss("L")))(
        q=np.ones((2, 3))
    ),
    "schedule": lambda: sd.compile_step(
        sd.sum(sd.Param("V", shape=(3,)) ** 2), {"V": np.ones(3)}, sd.optim.SGD(lr=_named_schedule)
    )(),
    "lr": lambda: sd.compile_step(
        sd.sum(sd.Param("V", shape=(3,)) ** 2), {"V": np.ones(3)}, sd.optim.Adam(lr=_CodeFloat(0.1))
    )(),
}


@pytest.mark.parametrize("where", list(_INJECTIONS))
def test_user_text_never_becomes_code_in_generated_source(where):
    import builtins

    builtins.__dict__.pop("symdiff_injected", None)
    try:
        result = _INJECTIONS[where]()
        assert not builtins.__dict__.get("symdiff_injected"), f"code in a {where} was executed"
    finally:
        builtins.__dict__.pop("symdiff_injected", None)
    assert np.isfinite(result["o"] if where == "output" else result).all()


def test_str_subclass_names_are_stored_as_plain_str():
    x = sd.Input(np.str_("x"), shape=(3,))
    h = (x * 2).named(_code_name("h", _AS_STATEMENT))
    assert type(x.attrs["name"]) is str and type(h.name) is str and h.name == "h"
    assert x is sd.Input("x", shape=(3,))
    assert [type(p.attrs["name"]) for p in sd.params(_dense_loss(_code_name("L", _AS_STATEMENT)))] == [str, str]


def test_expr_cannot_be_constructed_directly():
    with pytest.raises(TypeError):
        sd.Expr()


# -- broadcasting -------------------------------------------------------------------------------
BROADCAST_CASES = [
    ((32, 10), (10,)),
    ((64, 3, 32, 10), (32, 10)),
    ((5, 1), (1, 4)),
    ((), (3, 4)),
    ((2, 1, 3), (4, 1)),
    ((1,), (7,)),
    ((3, 1, 1), (1, 1)),
    ((0, 3), (1, 3)),
]


@pytest.mark.parametrize("a,b", BROADCAST_CASES)
@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "divide", "maximum", "minimum", "power", "greater"])
def test_broadcast_shape_matches_numpy(a, b, op):
    expected = getattr(np, op)(_arr(a), _arr(b)).shape
    assert getattr(sd, op)(_sym(a, "a"), _sym(b, "b")).shape == expected
    assert getattr(sd, op)(_sym(b, "b"), _sym(a, "a")).shape == getattr(np, op)(_arr(b), _arr(a)).shape


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ((None, 10), (10,), (None, 10)),
        ((None, 1), (1, 5), (None, 5)),
        ((None, 10), (None, 10), (None, 10)),
        ((None,), (), (None,)),
        ((7, None), (1,), (7, None)),
    ],
)
def test_broadcast_with_open_axes(a, b, expected):
    assert (_sym(a, "a") + _sym(b, "b")).shape == expected
    assert (_sym(b, "b") * _sym(a, "a")).shape == expected


def test_operators_with_python_scalars_and_arrays():
    x = _sym((2, 3))
    assert (2 * x).shape == (2, 3)
    assert (x - 1.5).shape == (2, 3)
    assert (1 / x).shape == (2, 3)
    assert (np.ones(3) + x).shape == (2, 3)  # __array_ufunc__ = None defers to Expr.__radd__
    assert (np.ones((4, 1, 3)) * x).shape == (4, 2, 3)
    assert (-x).shape == (2, 3)
    assert (x**2).shape == (2, 3)


@pytest.mark.parametrize(
    "fn,opname",
    [
        (lambda a, b: a + b, "add"),
        (lambda a, b: a - b, "subtract"),
        (lambda a, b: a * b, "multiply"),
        (lambda a, b: a / b, "divide"),
        (lambda a, b: a**b, "power"),
        (sd.maximum, "maximum"),
        (lambda a, b: a > b, "greater"),
    ],
)
def test_broadcast_error_names_op_and_both_shapes(fn, opname):
    a, b = _sym((3, 4), "a"), _sym((5,), "b")
    with pytest.raises(sd.ShapeError) as info:
        fn(a, b)
    msg = str(info.value)
    assert opname in msg
    assert "(3, 4)" in msg and "(5,)" in msg
    assert isinstance(info.value, ValueError)


def test_shape_error_is_value_error_subclass():
    assert issubclass(sd.ShapeError, ValueError)
    assert issubclass(sd.ShapeError, sd.SymdiffError)
    assert issubclass(sd.UnsupportedError, sd.SymdiffError)


def test_where_broadcasts_three_operands_and_errors():
    c = _sym((4, 1), "c", "bool")
    a = _sym((3,), "a")
    b = _sym((), "b")
    assert sd.where(c, a, b).shape == np.where(_arr((4, 1), bool), _arr(3), _arr(())).shape
    with pytest.raises(sd.ShapeError) as info:
        sd.where(_sym((2,), "c", "bool"), a, b)
    assert "where" in str(info.value) and "(2,)" in str(info.value) and "(3,)" in str(info.value)


# -- products -----------------------------------------------------------------------------------
MATMUL_CASES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
    ((5, 1, 3, 4), (6, 4, 2)),
    ((1, 3, 4), (7, 4, 2)),
]


@pytest.mark.parametrize("a,b", MATMUL_CASES)
def test_matmul_shape_matches_numpy(a, b):
    expected = np.matmul(_arr(a), _arr(b)).shape
    A, B = _sym(a, "a"), _sym(b, "b")
    assert (A @ B).shape == expected
    assert sd.matmul(A, B).shape == expected


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ((None, 64), (64, 10), (None, 10)),
        ((None, 3, 4), (4, 2), (None, 3, 2)),
        ((4,), (None, 4, 2), (None, 2)),
    ],
)
def test_matmul_with_open_axes(a, b, expected):
    assert (_sym(a, "a") @ _sym(b, "b")).shape == expected


@pytest.mark.parametrize(
    "a,b",
    [
        ((2, 3), (4, 5)),
        ((3,), (4,)),
        ((2, 3), (4,)),
        ((4,), (3, 5)),
        ((2, 2, 3), (3, 3, 4)),  # batch axes 2 and 3 do not broadcast
        ((), (3,)),
    ],
)
def test_matmul_misaligned_raises_naming_op_and_shapes(a, b):
    with pytest.raises(sd.ShapeError) as info:
        _sym(a, "a") @ _sym(b, "b")
    msg = str(info.value)
    assert "matmul" in msg
    assert _fmt(a) in msg and _fmt(b) in msg


DOT_CASES = [
    ((2, 3, 4, 5), (5,)),  # (a,b,c,d).(d,) -> (a,b,c)
    ((2, 3, 4, 5), (5, 6)),  # (a,b,c,d).(d,e) -> (a,b,c,e)
    ((2, 3, 4), (5, 4, 6)),  # N-D . M-D: last axis of a with second-to-last of b
    ((3, 4), (4, 5)),
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((), (3, 4)),
    ((3, 4), ()),
    ((4,), (2, 4, 3)),
]


@pytest.mark.parametrize("a,b", DOT_CASES)
def test_dot_shape_matches_numpy(a, b):
    expected = np.dot(_arr(a), _arr(b)).shape
    A, B = _sym(a, "a"), _sym(b, "b")
    assert sd.dot(A, B).shape == expected
    assert A.dot(B).shape == expected


@pytest.mark.parametrize("a,b", [((2, 3, 4, 5), (4,)), ((2, 3, 4, 5), (4, 6)), ((3, 4), (5,))])
def test_dot_misaligned_raises(a, b):
    with pytest.raises(sd.ShapeError) as info:
        sd.dot(_sym(a, "a"), _sym(b, "b"))
    msg = str(info.value)
    assert _fmt(a) in msg and _fmt(b) in msg


@pytest.mark.parametrize(
    "op,build,a,b",
    [
        ("matmul", lambda A, B: A @ B, (4, 2), (None, 3)),
        ("matmul", lambda A, B: A @ B, (None,), (3,)),
        ("matmul", lambda A, B: A @ B, (2, None), (3, 5)),
        ("matmul", lambda A, B: A @ B, (2, 3, 4), (None, 5)),
        ("dot", sd.dot, (4, 2), (None, 3)),
        ("dot", sd.dot, (2, 3, 4), (5, None, 6)),
        ("tensordot", lambda A, B: sd.tensordot(A, B, axes=([1], [0])), (4, 2), (None, 3)),
        ("tensordot", lambda A, B: sd.tensordot(A, B, axes=([1], [1])), (2, None, 3), (4, 3, 5)),
    ],
)
def test_contracting_an_open_axis_with_a_fixed_one_is_refused_at_build_time(op, build, a, b):
    with pytest.raises(sd.ShapeError) as info:
        build(_sym(a, "a"), _sym(b, "b"))
    msg = str(info.value)
    assert msg.startswith(f"{op}: ") and _fmt(a) in msg and _fmt(b) in msg and "open-length axis (None)" in msg


@pytest.mark.parametrize("a,b,axes", TENSORDOT_CASES)
def test_tensordot_shape_matches_numpy(a, b, axes):
    expected = np.tensordot(_arr(a), _arr(b), axes=axes).shape
    assert sd.tensordot(_sym(a, "a"), _sym(b, "b"), axes=axes).shape == expected


def test_tensordot_default_axes_is_two():
    assert sd.tensordot(_sym((3, 4, 5), "a"), _sym((4, 5, 6), "b")).shape == (3, 6)


@pytest.mark.parametrize(
    "a,b,axes",
    [
        ((3, 4), (5, 6), 1),
        ((3, 4, 5), (4, 6), 2),
        ((3, 4), (3, 4), ([0], [1])),
        ((3, 4), (4, 3), ([0, 1], [0])),
        ((3, 4), (4, 3), ([2], [0])),
        ((3, 4), (4, 3), 3),
    ],
)
def test_tensordot_misaligned_raises(a, b, axes):
    with pytest.raises(sd.ShapeError) as info:
        sd.tensordot(_sym(a, "a"), _sym(b, "b"), axes=axes)
    assert "tensordot" in str(info.value)


def test_tensordot_misaligned_names_both_shapes():
    with pytest.raises(sd.ShapeError) as info:
        sd.tensordot(_sym((3, 4), "a"), _sym((5, 6), "b"), axes=1)
    msg = str(info.value)
    assert "(3, 4)" in msg and "(5, 6)" in msg


# -- indexing -----------------------------------------------------------------------------------
INDEX_CASES = [*SHARED_INDEX_CASES, np.s_[3:1], np.s_[...], np.s_[1:, np.int64(-1)], ()]


@pytest.mark.parametrize("index", INDEX_CASES, ids=repr)
def test_getitem_shape_matches_numpy(index):
    x = _sym((4, 5, 6))
    assert x[index].shape == _arr((4, 5, 6))[index].shape


@pytest.mark.parametrize(
    "index,expected",
    [
        (np.s_[1:], (None, 5)),
        (np.s_[:, 1:-1], (None, 3)),
        (np.s_[::-1], (None, 5)),
        (np.s_[0], (5,)),
        (np.s_[-1, 2], ()),
        (np.s_[:, None], (None, 1, 5)),
        (np.s_[..., 0], (None,)),
    ],
)
def test_getitem_on_open_axis(index, expected):
    assert _sym((None, 5))[index].shape == expected


@pytest.mark.parametrize("index", [np.s_[4], np.s_[-5], np.s_[:, 5], np.s_[0, 0, 6], np.s_[..., -7]])
def test_getitem_out_of_range_int_raises(index):
    x = _sym((4, 5, 6))
    with pytest.raises(IndexError):
        _arr((4, 5, 6))[index]
    with pytest.raises((IndexError, sd.ShapeError)) as info:
        x[index]
    assert "out of bounds" in str(info.value)


def test_getitem_too_many_indices_raises():
    with pytest.raises((IndexError, sd.ShapeError)) as info:
        _sym((4, 5))[0, 0, 0]
    assert "(4, 5)" in str(info.value)


def test_getitem_zero_step_raises():
    with pytest.raises(ValueError):
        _sym((4, 5))[::0]


@pytest.mark.parametrize(
    "index",
    [
        np.array([0, 1]),
        [0, 1],
        np.array([True, False, True, False]),
        True,
        (slice(None), np.array([1, 2])),
    ],
    ids=["int-array", "list", "bool-array", "bool", "mixed"],
)
def test_advanced_indexing_unsupported(index):
    with pytest.raises(sd.UnsupportedError) as info:
        _sym((4, 5))[index]
    assert "getitem" in str(info.value)


def test_indexing_with_expr_unsupported():
    x = _sym((4, 5))
    i = sd.Input("i", shape=(2,), dtype="int64")
    with pytest.raises(sd.UnsupportedError):
        x[i]
    with pytest.raises(sd.UnsupportedError):
        x[x > 0]


# -- reshape / transpose ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,new",
    [
        ((6, 4), (-1, 4)),
        ((6, 4), (3, -1)),
        ((6, 4), (-1,)),
        ((6, 4), (24,)),
        ((6, 4), (2, 3, 4)),
        ((2, 3, 4), (4, -1, 2)),
        ((6,), (1, 6, 1)),
        ((), (1, 1)),
        ((1, 1), ()),
        ((0, 4), (0, 2, 2)),
    ],
)
def test_reshape_matches_numpy(shape, new):
    x = _sym(shape)
    expected = np.reshape(_arr(shape), new).shape
    assert x.reshape(new).shape == expected
    assert sd.reshape(x, new).shape == expected
    if len(new) > 0:
        assert x.reshape(*new).shape == expected


def test_reshape_int_argument():
    assert _sym((2, 3)).reshape(6).shape == (6,)
    assert sd.reshape(_sym((2, 3)), 6).shape == (6,)
    assert sd.reshape(_sym((2, 3)), -1).shape == (6,)


@pytest.mark.parametrize(
    "shape,new,expected",
    [
        ((None, 4), (-1, 2), (None, 2)),
        ((None, 4), (-1,), (None,)),
        ((None, 2, 3), (-1, 6), (None, 6)),
    ],
)
def test_reshape_with_open_axis(shape, new, expected):
    assert _sym(shape).reshape(new).shape == expected


@pytest.mark.parametrize("shape,new", [((6, 4), (5, 5)), ((6, 4), (-1, 5)), ((6, 4), (7,)), ((3,), (2, -1))])
def test_reshape_invalid_raises_naming_both_shapes(shape, new):
    with pytest.raises(ValueError):
        np.reshape(_arr(shape), new)
    with pytest.raises(sd.ShapeError) as info:
        _sym(shape).reshape(new)
    msg = str(info.value)
    assert "reshape" in msg
    assert _fmt(shape) in msg
    assert _fmt(new) in msg or repr(new) in msg


@pytest.mark.parametrize("new", [(-1, -1), (-2, 12)])
def test_reshape_bad_target_raises(new):
    with pytest.raises(sd.ShapeError):
        _sym((6, 4)).reshape(new)


@pytest.mark.parametrize(
    "shape,axes",
    [
        ((2, 3, 4), (1, 0, 2)),
        ((2, 3, 4), (2, 0, 1)),
        ((2, 3, 4), (-1, 0, 1)),
        ((2, 3, 4), None),
        ((2, 3), None),
        ((2, 3), (0, 1)),
        ((5,), None),
        ((), None),
        ((2, 3, 4, 5), (3, 1, 0, 2)),
    ],
)
def test_transpose_matches_numpy(shape, axes):
    x = _sym(shape)
    expected = np.transpose(_arr(shape), axes).shape
    assert sd.transpose(x, axes).shape == expected
    assert x.transpose(axes).shape == expected
    if axes is not None:
        assert x.transpose(*axes).shape == expected


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (7,), (None, 5)])
def test_dot_T_reverses_axes(shape):
    assert _sym(shape).T.shape == tuple(reversed(shape))
    assert _sym(shape).T.T.shape == shape


@pytest.mark.parametrize("axes", [(0, 0, 1), (0, 1), (0, 1, 3)])
def test_transpose_bad_axes_raises(axes):
    with pytest.raises((sd.ShapeError, ValueError)) as info:
        sd.transpose(_sym((2, 3, 4)), axes)
    assert "transpose" in str(info.value)


@pytest.mark.parametrize(
    "shape,a,b",
    [((2, 3, 4), 0, 2), ((2, 3, 4), -1, -2), ((2, 3), 0, 0), ((2, 3, 4), 1, -1)],
)
def test_swapaxes_matches_numpy(shape, a, b):
    assert sd.swapaxes(_sym(shape), a, b).shape == np.swapaxes(_arr(shape), a, b).shape


@pytest.mark.parametrize(
    "shape,axis", [((2, 3), 0), ((2, 3), 2), ((2, 3), -1), ((2, 3), (0, 2)), ((2, 3), (-1, 0)), ((), 0)]
)
def test_expand_dims_matches_numpy(shape, axis):
    assert sd.expand_dims(_sym(shape), axis).shape == np.expand_dims(_arr(shape), axis).shape


@pytest.mark.parametrize("shape,axis", [((1, 3, 1), 0), ((1, 3, 1), -1), ((1, 3, 1), (0, 2)), ((3, 1), 1)])
def test_squeeze_matches_numpy(shape, axis):
    assert sd.squeeze(_sym(shape), axis).shape == np.squeeze(_arr(shape), axis).shape


def test_squeeze_non_unit_axis_raises():
    with pytest.raises(sd.ShapeError) as info:
        sd.squeeze(_sym((1, 3)), 1)
    assert "(1, 3)" in str(info.value)


@pytest.mark.parametrize(
    "shapes,axis",
    [([(2, 3), (4, 3)], 0), ([(2, 3), (2, 5)], 1), ([(2, 3), (2, 1), (2, 2)], -1), ([(3,), (4,)], 0)],
)
def test_concatenate_matches_numpy(shapes, axis):
    xs = [_sym(s, f"x{i}") for i, s in enumerate(shapes)]
    assert sd.concatenate(xs, axis=axis).shape == np.concatenate([_arr(s) for s in shapes], axis=axis).shape


def test_concatenate_mismatch_raises_naming_shapes():
    with pytest.raises(sd.ShapeError) as info:
        sd.concatenate([_sym((2, 3), "a"), _sym((2, 4), "b")], axis=0)
    msg = str(info.value)
    assert "concatenate" in msg and "(2, 3)" in msg and "(2, 4)" in msg


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_stack_matches_numpy(axis):
    xs = [_sym((2, 3), f"x{i}") for i in range(4)]
    assert sd.stack(xs, axis=axis).shape == np.stack([_arr((2, 3))] * 4, axis=axis).shape


def test_stack_mismatch_raises():
    with pytest.raises(sd.ShapeError) as info:
        sd.stack([_sym((2, 3), "a"), _sym((3, 2), "b")])
    msg = str(info.value)
    assert "stack" in msg and "(2, 3)" in msg and "(3, 2)" in msg


# -- reductions ---------------------------------------------------------------------------------
REDUCE_AXES = [None, 0, 1, 2, -1, -3, (0, 2), (2, 0), (-1, 0), (0, 1, 2), ()]


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", REDUCE_AXES, ids=repr)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_shape_matches_numpy(name, axis, keepdims):
    x = _sym((2, 3, 4))
    expected = getattr(np, name)(np.ones((2, 3, 4)), axis=axis, keepdims=keepdims).shape
    assert getattr(sd, name)(x, axis=axis, keepdims=keepdims).shape == expected
    assert getattr(x, name)(axis=axis, keepdims=keepdims).shape == expected


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reduction_defaults_reduce_everything(name):
    assert getattr(sd, name)(_sym((2, 3))).shape == ()
    assert getattr(_sym((2, 3)), name)().shape == ()


@pytest.mark.parametrize("name", ["sum", "mean", "max", "logsumexp"])
@pytest.mark.parametrize("axis", [3, -4, (0, 3), (1, 1)])
def test_reduction_bad_axis_raises(name, axis):
    with pytest.raises(sd.ShapeError) as info:
        getattr(sd, name)(_sym((2, 3, 4)), axis=axis)
    assert name in str(info.value)  # the error names the function the user called


@pytest.mark.parametrize("name", ["sum", "mean", "max", "logsumexp"])
def test_reduction_float_axis_raises_type_error(name):
    with pytest.raises(TypeError):
        np.sum(np.ones((2, 3)), axis=1.0)
    with pytest.raises(TypeError):
        getattr(sd, name)(_sym((2, 3)), axis=1.0)


@pytest.mark.parametrize("axis", [1e300, float("nan"), "a", True, (0, 1.5)])
@pytest.mark.parametrize(
    "name", ["sum", "mean", "max", "logsumexp", "softmax", "log_softmax", "expand_dims", "squeeze"]
)
def test_non_int_axis_is_refused_naming_the_axis(name, axis):
    with pytest.raises(sd.DTypeError, match=rf"^{name}: axis .* is not an int") as info:
        getattr(sd, name)(_sym((1, 3)), axis)
    assert repr(axis if not isinstance(axis, tuple) else axis[1]) in str(info.value)


def test_reduction_out_of_range_axis_message():
    with pytest.raises(sd.ShapeError) as info:
        sd.sum(_sym((2, 3, 4)), axis=3)
    msg = str(info.value)
    assert "sum" in msg and "3" in msg and "(2, 3, 4)" in msg


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [2, -3])
def test_softmax_bad_axis_raises(name, axis):
    with pytest.raises(sd.ShapeError) as info:
        getattr(sd, name)(_sym((2, 3)), axis=axis)
    assert name in str(info.value)


def test_reductions_over_open_axis():
    x = _sym((None, 5))
    assert sd.sum(x, axis=0).shape == (5,)
    assert sd.mean(x, axis=1).shape == (None,)
    assert sd.mean(x).shape == ()
    assert sd.max(x, axis=0, keepdims=True).shape == (1, 5)
    assert sd.logsumexp(x).shape == ()
    assert sd.logsumexp(x, axis=1, keepdims=True).shape == (None, 1)
    assert sd.softmax(x).shape == (None, 5)


# -- dtype promotion ----------------------------------------------------------------------------
def _numpy_dtype(fn, *specs):
    """What NumPy gives for ``fn`` on arrays (or Python scalars) of the given dtypes."""
    args = [s if isinstance(s, (int, float, bool)) else np.ones((2,), dtype=s) for s in specs]
    return np.asarray(fn(np, *args)).dtype


def _sd_dtype(fn, *specs):
    args = [
        s if isinstance(s, (int, float, bool)) else sd.Input(f"a{i}", shape=(2,), dtype=s) for i, s in enumerate(specs)
    ]
    return fn(sd, *args).dtype


DTYPE_CASES = [
    ("f32*2.0", lambda m, a, b: a * b, ("float32", 2.0)),
    ("2.0*f32", lambda m, a, b: a * b, (2.0, "float32")),
    ("f32*2", lambda m, a, b: a * b, ("float32", 2)),
    ("f32+f64", lambda m, a, b: a + b, ("float32", "float64")),
    ("f32+i64", lambda m, a, b: a + b, ("float32", "int64")),
    ("f32+i8", lambda m, a, b: a + b, ("float32", "int8")),
    ("f32+i32", lambda m, a, b: a + b, ("float32", "int32")),
    ("i64/2", lambda m, a, b: a / b, ("int64", 2)),
    ("i32/i32", lambda m, a, b: a / b, ("int32", "int32")),
    ("f32/i64", lambda m, a, b: a / b, ("float32", "int64")),
    ("i64*2", lambda m, a, b: a * b, ("int64", 2)),
    ("i32+i64", lambda m, a, b: a + b, ("int32", "int64")),
    ("i32*3", lambda m, a, b: a * b, ("int32", 3)),
    ("i64*2.5", lambda m, a, b: a * b, ("int64", 2.5)),
    ("bool+bool", lambda m, a, b: m.add(a, b), ("bool", "bool")),
    ("bool*f32", lambda m, a, b: a * b, ("bool", "float32")),
    ("f32**2", lambda m, a, b: a**b, ("float32", 2)),
    ("f32-1", lambda m, a, b: a - b, ("float32", 1)),
    ("1-f32", lambda m, a, b: a - b, (1, "float32")),
    ("1/f32", lambda m, a, b: a / b, (1, "float32")),
    ("max(f32,0)", lambda m, a, b: m.maximum(a, b), ("float32", 0)),
    ("min(f32,f64)", lambda m, a, b: m.minimum(a, b), ("float32", "float64")),
    ("f32>f64", lambda m, a, b: a > b, ("float32", "float64")),
    ("i64<=0.5", lambda m, a, b: a <= b, ("int64", 0.5)),
    ("f32==0", lambda m, a, b: m.equal(a, b), ("float32", 0)),
    ("f32>=f32", lambda m, a, b: m.greater_equal(a, b), ("float32", "float32")),
    ("f32<1", lambda m, a, b: m.less(a, b), ("float32", 1)),
    ("where(b,f32,0.0)", lambda m, c, a: m.where(c, a, 0.0), ("bool", "float32")),
    ("where(b,f32,f64)", lambda m, c, a: m.where(c, a, a.astype("float64")), ("bool", "float32")),
    ("exp(i64)", lambda m, a: m.exp(a), ("int64",)),
    ("exp(f32)", lambda m, a: m.exp(a), ("float32",)),
    ("log(i32)", lambda m, a: m.log(a), ("int32",)),
    ("sqrt(f32)", lambda m, a: m.sqrt(a), ("float32",)),
    ("tanh(bool)", lambda m, a: m.tanh(a), ("bool",)),
    ("sin(i8)", lambda m, a: m.sin(a), ("int8",)),
    ("cos(i16)", lambda m, a: m.cos(a), ("int16",)),
    ("log(u8)", lambda m, a: m.log(a), ("uint8",)),
    ("abs(i32)", lambda m, a: m.abs(a), ("int32",)),
    ("abs(f32)", lambda m, a: m.abs(a), ("float32",)),
    ("square(i64)", lambda m, a: m.square(a), ("int64",)),
    ("square(f32)", lambda m, a: m.square(a), ("float32",)),
    ("-i32", lambda m, a: -a, ("int32",)),
    ("sum(f32)", lambda m, a: m.sum(a), ("float32",)),
    ("sum(i32)", lambda m, a: m.sum(a), ("int32",)),
    ("sum(bool)", lambda m, a: m.sum(a), ("bool",)),
    ("mean(f32)", lambda m, a: m.mean(a), ("float32",)),
    ("mean(i64)", lambda m, a: m.mean(a), ("int64",)),
    ("max(i32)", lambda m, a: m.max(a), ("int32",)),
    ("max(f32)", lambda m, a: m.max(a), ("float32",)),
    ("matmul(f32,f32)", lambda m, a, b: m.matmul(a, b), ("float32", "float32")),
    ("matmul(f32,f64)", lambda m, a, b: m.matmul(a, b), ("float32", "float64")),
    ("matmul(i64,i64)", lambda m, a, b: m.matmul(a, b), ("int64", "int64")),
    ("dot(f32,i32)", lambda m, a, b: m.dot(a, b), ("float32", "int32")),
    ("concat(f32,i64)", lambda m, a, b: m.concatenate([a, b]), ("float32", "int64")),
    ("concat(f32,f32)", lambda m, a, b: m.concatenate([a, b]), ("float32", "float32")),
    ("stack(i32,f32)", lambda m, a, b: m.stack([a, b]), ("int32", "float32")),
    ("astype(f32)", lambda m, a: m.astype(a, "float32") if m is sd else a.astype("float32"), ("float64",)),
    ("f32[1:]", lambda m, a: a[1:], ("float32",)),
    ("f32.T", lambda m, a: a.T, ("float32",)),
    ("reshape(i32)", lambda m, a: m.reshape(a, (2, 1)), ("int32",)),
]


@pytest.mark.parametrize("fn,specs", [c[1:] for c in DTYPE_CASES], ids=[c[0] for c in DTYPE_CASES])
def test_dtype_promotion_matches_numpy(fn, specs):
    expected = _numpy_dtype(fn, *specs)
    assert _sd_dtype(fn, *specs) == expected


def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize(
    "name,np_fn",
    [
        ("softmax", _np_softmax),
        ("log_softmax", lambda x: np.log(_np_softmax(x))),
        ("logsumexp", lambda x: np.log(np.sum(np.exp(x)))),
        ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
        ("softplus", lambda x: np.logaddexp(0, x)),
        ("relu", lambda x: np.maximum(x, 0)),
        ("log_sigmoid", lambda x: -np.logaddexp(0, -x)),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_nn_function_dtypes(name, np_fn, dtype):
    expected = np.asarray(np_fn(np.ones((2, 3), dtype=dtype))).dtype
    assert getattr(sd, name)(_sym((2, 3), dtype=dtype)).dtype == expected


def test_float32_param_times_python_float_stays_float32():
    p = sd.Param("p", shape=(3,), dtype="float32")
    assert (p * 2.0).dtype == np.float32
    assert (0.5 * p + 1).dtype == np.float32
    assert (p / 3).dtype == np.float32
    assert (p + sd.Param("q", shape=(3,))).dtype == np.float64


def test_int_input_divided_is_float64():
    y = sd.Input("y", shape=(None,), dtype="int64")
    assert (y / 2).dtype == np.float64
    assert (y * 2).dtype == np.int64
    assert (y > 0).dtype == np.bool_


def test_mean_of_float32_over_open_batch_axis_stays_float32():
    x = sd.Input("x", shape=(None, 4), dtype="float32")
    W = sd.Param("W", shape=(4, 2), dtype="float32")
    assert sd.mean(x).dtype == np.float32
    assert sd.mean(x, axis=0).dtype == np.float32
    assert sd.mean(x @ W, axis=0, keepdims=True).dtype == np.float32
    assert (x @ W).mean().dtype == np.float32


def test_mse_and_grad_of_float32_stay_float32():
    x = sd.Input("x", shape=(None, 4), dtype="float32")
    t = sd.Input("t", shape=(None, 2), dtype="float32")
    W = sd.Param("W", shape=(4, 2), dtype="float32")
    b = sd.Param("b", shape=(2,), dtype="float32")
    loss = sd.mse(x @ W + b, t)
    assert loss.dtype == np.float32
    assert loss.shape == ()
    gW, gb = sd.grad(loss, [W, b])
    assert gW.dtype == np.float32 and gW.shape == (4, 2)
    assert gb.dtype == np.float32 and gb.shape == (2,)


def test_grad_float32_losses_stay_float32():
    x = sd.Input("x", shape=(None, 4), dtype="float32")
    y = sd.Input("y", shape=(None,), dtype="int64")
    W = sd.Param("W", shape=(4, 3), dtype="float32")
    for loss in (
        sd.softmax_cross_entropy(x @ W, y),
        sd.sigmoid_cross_entropy(x @ W, sd.Input("t", shape=(None, 3), dtype="float32")),
        sd.sum(sd.tanh(x @ W) ** 2) / 2,
        sd.mean(sd.logsumexp(x @ W, axis=1)),
    ):
        assert loss.dtype == np.float32, loss
        assert sd.grad(loss, W).dtype == np.float32, loss


# -- no silent truthiness, grad argument checks ---------------------------------------------------
def test_bool_of_expr_raises_type_error():
    x = _sym((3,))
    with pytest.raises(TypeError, match="where"):
        bool(x > 0)
    with pytest.raises(TypeError):
        if x:  # noqa: SIM108 - exercising __bool__
            pass
    with pytest.raises(TypeError):
        _ = (x > 0) and (x < 1)
    with pytest.raises(TypeError):
        bool(sd.Param("s") > 0)


def test_expr_not_iterable():
    with pytest.raises(TypeError):
        list(_sym((3,)))


def test_len_of_expr():
    assert len(_sym((3, 4))) == 3
    with pytest.raises(TypeError):
        len(_sym((None, 4)))
    with pytest.raises(TypeError):
        len(_sym(()))


@pytest.mark.parametrize("shape", [(3,), (2, 3), (None,), (1,)])
def test_grad_of_non_scalar_raises_naming_shape(shape):
    W = sd.Param("W", shape=(3,))
    loss = _sym(shape) * 1.0 + sd.sum(W)
    with pytest.raises(ValueError) as info:
        sd.grad(loss, W)
    assert _fmt(shape) in str(info.value)


def test_grad_wrt_int_input_raises():
    y = sd.Input("y", shape=(3,), dtype="int64")
    with pytest.raises(ValueError, match="y"):
        sd.grad(sd.sum(y * 1.5), y)


def test_grad_of_int_loss_raises():
    y = sd.Input("y", shape=(3,), dtype="int64")
    with pytest.raises(ValueError):
        sd.grad(sd.sum(y), sd.Param("p"))


def test_grad_returns_target_shapes_and_list_for_list():
    x = sd.Input("x", shape=(None, 4))
    W = sd.Param("W", shape=(4, 3))
    b = sd.Param("b", shape=(3,))
    s = sd.Param("s", shape=())
    loss = sd.mean((x @ W + b) * s)
    gW, gb, gs = sd.grad(loss, [W, b, s])
    assert (gW.shape, gb.shape, gs.shape) == ((4, 3), (3,), ())
    single = sd.grad(loss, W)
    assert isinstance(single, sd.Expr) and single.shape == (4, 3)
    unused = sd.grad(loss, sd.Param("unused", shape=(2,)))
    assert unused.shape == (2,)


@pytest.mark.parametrize(
    "operand",
    [
        np.float64(2.0),
        np.float32(2.0),
        np.int64(2),
        np.ones(3),
        np.ones(3, "float32"),
        np.ones(3, "int64"),
        2.0,
        2,
        True,
    ],
    ids=lambda v: f"{type(v).__name__}{getattr(v, 'dtype', '')}",
)
def test_float32_with_numpy_operands_promotes_like_numpy2(operand):
    """NumPy scalars and arrays are strongly typed in NumPy 2; only Python scalars are weak."""
    p = sd.Param("p", shape=(3,), dtype="float32")
    expected = (np.ones(3, "float32") * operand).dtype
    assert (p * operand).dtype == expected
    assert (operand * p).dtype == (operand * np.ones(3, "float32")).dtype


@pytest.mark.parametrize(
    "fn",
    [lambda m, a, b: a - b, lambda m, a, b: m.subtract(a, True), lambda m, a, b: -a, lambda m, a, b: m.negative(b)],
    ids=["bool-bool", "bool-True", "-bool", "negative(bool)"],
)
def test_boolean_subtract_and_negative_raise_like_numpy(fn):
    A, B = np.ones(2, bool), np.zeros(2, bool)
    with pytest.raises(TypeError):
        fn(np, A, B)
    a, b = sd.Input("a", shape=(2,), dtype="bool"), sd.Input("b", shape=(2,), dtype="bool")
    with pytest.raises(TypeError):
        fn(sd, a, b)


def test_an_open_axis_does_not_broadcast_against_a_fixed_length():
    """NumPy would take n = 1 or n = 4 at run time, with different gradients: refused at build time."""
    x = sd.Input("x", shape=(None, 3))
    with pytest.raises(sd.ShapeError, match=r"add: shapes \(None, 3\) and \(4, 3\).*open-length axis"):
        x + sd.Param("W", shape=(4, 3))


def test_grad_and_check_grad_refuse_a_same_named_symbol_the_loss_does_not_use():
    """``sd.Param("o_W", ...)`` is not the o_W sd.dense made (init 'glorot'): its gradient would be zeros, silently."""
    x = sd.Input("x", shape=(None, 2))
    loss = sd.sum(sd.dense(x, 2, "o"))
    other = sd.Param("o_W", shape=(2, 2))
    clash = r"grad: the loss uses Param 'o_W' \(init 'glorot'\), not this one \(init None\)"
    with pytest.raises(sd.InputError, match=clash):
        sd.grad(loss, other)
    values = {"x": np.ones((3, 2)), "o_W": np.ones((2, 2)), "o_b": np.zeros(2)}
    with pytest.raises(sd.InputError, match=r"check_grad: .*shape \(2, 2\)\), not this one \(shape \(3, 2\)\)"):
        sd.check_grad(loss, [sd.Param("o_W", shape=(3, 2), init="glorot")], values)
    assert sd.check_grad(loss, sd.params(loss), values) < 1e-6  # the loss's own symbols still work


def test_is_symbol_marks_inputs_and_params_only():
    """Expr.is_symbol is the one leaf check: Input and Param are symbols; constants, dims and ops are not."""
    x, W = sd.Input("x", shape=(None, 2)), sd.Param("W", shape=(2,))
    assert x.is_symbol and W.is_symbol
    assert not any(e.is_symbol for e in (sd.constant(1.0), x * W, x.T, sd.sum(x)))
    assert W.name == "W" and x.name == "x"
