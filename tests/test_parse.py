"""The restricted expression parser (symdiff.parse): what it builds, what it refuses, and its limits."""

from __future__ import annotations

import builtins
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symdiff as sd
from symdiff.errors import SymdiffError
from symdiff.parse import FUNCTIONS, MAX_DEPTH, MAX_LENGTH, ParseError, check, parse, symbol_names

x = sd.Input("x", shape=(None, 3))
W = sd.Param("W", shape=(3, 2))
b = sd.Param("b", shape=(2,))
s = sd.Input("s")
t = sd.Input("t")
SYMBOLS = {"x": x, "W": W, "b": b, "s": s, "t": t}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sin(s) * s**2", sd.sin(s) * s**2),
        ("x @ W + b", x @ W + b),
        ("mean((x @ W + b)**2)", sd.mean((x @ W + b) ** 2)),
        ("-s + +t", -s + t),
        ("s - t / 2.5", s - t / 2.5),
        ("x.T", x.T),
        ("x[:, 1:-1]", x[:, 1:-1]),
        ("x[0]", x[0]),
        ("x[::2, -1]", x[::2, -1]),
        ("x[None, ..., 1]", x[None, ..., 1]),
        ("sum(x, axis=0, keepdims=True)", sd.sum(x, axis=0, keepdims=True)),
        ("sum(x, 1)", sd.sum(x, 1)),
        ("sum(x, axis=(0, 1))", sd.sum(x, axis=(0, 1))),
        ("max(x, axis=-1)", sd.max(x, axis=-1)),
        ("reshape(x, (-1, 1))", sd.reshape(x, (-1, 1))),
        ("transpose(W, (1, 0))", sd.transpose(W, (1, 0))),
        ("concatenate((x, x), axis=1)", sd.concatenate((x, x), axis=1)),
        ("stack([s, t])", sd.stack([s, t])),
        ("where(s > 0, s, 0)", sd.where(s > 0, s, 0)),
        ("maximum(s, 0.5) * (t <= 1)", sd.maximum(s, 0.5) * (t <= 1)),
        ("tensordot(x, W, axes=((1,), (0,)))", sd.tensordot(x, W, axes=((1,), (0,)))),
        ("softmax(x @ W, axis=-1)", sd.softmax(x @ W, axis=-1)),
        ("logsumexp(x, axis=1)", sd.logsumexp(x, axis=1)),
        ("mse(x @ W, x @ W + b)", sd.mse(x @ W, x @ W + b)),
        ("s ** -1", s**-1),
        ("2 ** 3 * s", sd.constant(2) ** sd.constant(3) * s),
        ("abs(s) + square(t) + sqrt(exp(s)) + log(t) + tanh(s) + cos(s) + sigmoid(t) + softplus(s)",
         sd.abs(s) + sd.square(t) + sd.sqrt(sd.exp(s)) + sd.log(t) + sd.tanh(s) + sd.cos(s) + sd.sigmoid(t)
         + sd.softplus(s)),
    ],
)  # fmt: skip
def test_builds_the_same_graph_as_python(text, expected):
    assert parse(text, SYMBOLS) is expected  # hash-consing: the same structure is the same node


def test_numbers_stay_weak_python_scalars():
    x32 = sd.Input("x", shape=(3,), dtype="float32")
    assert parse("x * 2.0 + 1", {"x": x32}).dtype.name == "float32"


def test_symbol_names_in_order_of_appearance():
    assert symbol_names("mean((x @ W + b - y)**2) + exp(z)") == ["x", "W", "b", "y", "z"]
    assert symbol_names("sum(x, axis=0)") == ["x"]


def test_default_symbols_are_scalar_inputs():
    e = parse("a * b + a")
    assert [(n.op, n.label, n.shape) for n in sd.graph.leaves([e])] == [("input", "a", ()), ("input", "b", ())]


def test_symbol_function_is_called_once_per_name():
    calls = []

    def make(name):
        calls.append(name)
        return sd.Param(name)

    parse("p * q + p * p", make)
    assert calls == ["p", "q"]


def test_unknown_name_with_a_symbol_table():
    with pytest.raises(ParseError, match=r"unknown name 'zz' \(known symbols: x, W, b, s, t\)"):
        parse("x + zz", SYMBOLS)


def test_parse_error_is_a_symdiff_value_error():
    assert issubclass(ParseError, SymdiffError) and issubclass(ParseError, ValueError)


REFUSED = [
    ("__import__('os').system('touch PWNED')", "method calls"),
    ("__import__('os')", "unknown function '__import__'"),
    ("().__class__.__base__", "attribute access '.__base__'"),
    ("x.__class__", "attribute access '.__class__' is not allowed (only .T)"),
    ("x.shape", "attribute access '.shape'"),
    ("exp.__globals__", "attribute access"),
    ("x.sum()", "method calls ('.sum(...)')"),
    ("getattr(x, 'T')", "unknown function 'getattr'"),
    ("eval('1')", "unknown function 'eval'"),
    ("open('PWNED', 'w')", "unknown function 'open'"),
    ("lambda: 1", "a lambda is not allowed"),
    ("[s for s in x]", "a comprehension"),
    ("{s for s in x}", "a comprehension"),
    ("(s for s in x)", "a generator expression"),
    ("'abc'", "a string"),
    ("s + 'abc'", "a string"),
    ("b'abc'", "a string"),
    ("f'{s}'", "an f-string"),
    ("(y := 3)", "assignment expression"),
    ("s if t else s", "conditional expression"),
    ("s and t", "'and'/'or'"),
    ("not s", "'not'"),
    ("~s", "'~'"),
    ("s // t", "'//'"),
    ("s % t", "'%'"),
    ("s == t", "'=='"),
    ("s < t < s", "chained comparisons"),
    ("{1: 2}", "a dict"),
    ("(s, t)", "tuple or list is allowed only as a function argument"),
    ("exp(*x)", "starred"),
    ("exp(**x)", "keyword unpacking"),
    ("sum(x, out=x)", "keyword 'out' is not allowed"),
    ("sum(x, axis=s)", "must be a literal"),
    ("sum(x, axis='0')", "a string"),
    ("x[s]", "an index must be an int literal"),
    ("x[1.5]", "an index must be an int literal"),
    ("x[True]", "an index must be an int literal"),
    ("x[1:s]", "an index must be an int literal"),
    ("True * s", "True is not allowed here"),
    ("None", "None is not allowed here"),
    ("1j * s", "complex numbers"),
    ("exp", "'exp' is a function; call it"),
    ("s(1)", "unknown function 's'"),
    ("x.T(1)", "method calls"),
    ("exp(s)(t)", "only named functions can be called"),
    ("_s", "reserved"),
    ("__builtins__", "reserved"),
    ("np", "reserved"),
    ("9**9**9**9", "exponent 387420489 of a power of constants is too large"),
    ("2**64 * s", "does not fit a 64-bit integer"),
    ("99999999999999999999 * s", "does not fit a 64-bit integer"),
    ("1e999 * s", "not a finite float"),
    ("(-8) ** 0.5 * s", "no finite real value"),
    ("s / (1 / 0)", "division of constants by zero"),
    ("2 ** -1001 * s", "too large"),
    ("1 @ 2", "'@' needs arrays"),
    ("exp(s, t)", "exp() takes 1 positional argument"),
    ("sum(x, keepdims=True, axis=0, depth=2)", "unexpected keyword argument 'depth'"),
    ("", "empty"),
    ("   ", "empty"),
    ("s +", "cannot parse the expression"),
    ("import os", "cannot parse the expression"),
    ("s; t", "cannot parse the expression"),
    ("s\x00", "cannot parse the expression"),
    ("x\u00b2", "cannot parse the expression"),
    ("\u00e9t\u00e9 * s", "not a Python identifier"),
]


@pytest.mark.parametrize("text, needle", REFUSED)
def test_refused_with_a_one_line_message(text, needle):
    with pytest.raises(ParseError) as info:
        parse(text, SYMBOLS)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_refused_messages_give_the_column():
    with pytest.raises(ParseError, match=r"attribute access '\.__class__' is not allowed \(only \.T\) \(at column 5\)"):
        parse("s + x.__class__", SYMBOLS)


def test_nothing_runs_for_hostile_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real_import = builtins.__import__
    imported = []

    def spy(name, *args, **kwargs):
        imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", spy)
    for text in [
        "__import__('os').system('touch PWNED')",
        "exp(__import__('os').system('touch PWNED'))",
        "sum(x, axis=__import__('os').system('touch PWNED'))",
        "x[__import__('os').system('touch PWNED')]",
        "[__import__('os').system('touch PWNED') for _ in (1,)]",
        "(lambda: __import__('os').system('touch PWNED'))()",
    ]:
        with pytest.raises(ParseError):
            parse(text, SYMBOLS)
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert "os" not in imported
    assert not os.path.exists(tmp_path / "PWNED")


def test_length_limit():
    with pytest.raises(ParseError, match=f"too long \\({MAX_LENGTH + 1} characters; the limit is {MAX_LENGTH}\\)"):
        parse("s" + "+s" * (MAX_LENGTH // 2), SYMBOLS)
    parse("+".join(["s"] * 90), SYMBOLS)  # long but shallow enough is fine


@pytest.mark.parametrize(
    "text",
    [
        "(" * 10000 + "s" + ")" * 10000,  # over the length limit
        "(" * 500 + "s" + ")" * 500,  # Python's own parser refuses (too many nested parentheses)
        "-" * 1990 + "s",  # Python parses it; the depth check refuses it without recursion
        "exp(" * 400 + "s" + ")" * 400,
        "s" + "**s" * 600,
        "x" + "[0]" * 500,
        "[" * 600 + "]" * 600,
    ],
)
def test_deep_nesting_is_refused(text):
    with pytest.raises(ParseError, match="too long|nested too deeply|cannot parse"):
        parse(text, SYMBOLS)


def test_a_flat_sum_of_thousands_of_terms_is_one_level_deep():
    out = parse("+".join(f"{k}*s" for k in range(1, 2501)), SYMBOLS)
    assert sd.compile(out)(s=1.0) == 2500 * 2501 / 2
    parse("-".join(["s"] * 9000), SYMBOLS)  # left-deep chains: no RecursionError in Python's parser or ours
    with pytest.raises(ParseError, match="nested too deeply"):
        parse("(s + " * MAX_DEPTH + "s" + ")" * MAX_DEPTH, SYMBOLS)  # right-nested: one level per parenthesis


def test_parse_in_a_deep_call_stack_builds_long_chains():
    def nested(levels):
        return nested(levels - 1) if levels else parse("+".join(["s"] * 5000), SYMBOLS)

    assert isinstance(nested(600), sd.Expr)


def test_syntax_errors_keep_the_whole_message():
    with pytest.raises(ParseError, match=r"^cannot parse the expression: '\(' was never closed \(at column 4\)$"):
        parse("sin(s * s**2", SYMBOLS)


@pytest.mark.parametrize("text, needle", [
    ("s^2", "the operator '^' is not allowed (use ** for a power, e.g. x**2)"),
    ("max(s, 0)", "write maximum(a, b)"),
    ("amax(x, 0)", "write maximum(a, b)"),
    ("sinn(s)", "unknown function 'sinn'; did you mean 'sin'?"),
    ("expp(s)", "did you mean 'exp'?"),
    ("softmx(x)", "did you mean 'softmax'?"),
    ("min(s, t)", "write minimum(a, b)"),  # min is the reduction, as in NumPy (issue 10)
])  # fmt: skip
def test_errors_suggest_the_intended_spelling(text, needle):
    with pytest.raises(ParseError) as err:
        parse(text, SYMBOLS)
    assert needle in str(err.value)


def test_unknown_symbol_suggests_the_closest_known_one():
    with pytest.raises(ParseError, match=r"unknown name 'WW' \(known symbols: x, W, b, s, t\); did you mean 'W'\?"):
        parse("x @ WW", SYMBOLS)


@pytest.mark.parametrize("text, needle", [
    ("s * power(3, 9223372036854775807)", "exponent 9223372036854775807 of a power of constants is too large"),
    ("s ** power(10, 6)", "the exponent 1000000 is too large"),
    ("power(s, 1e300)", "the exponent 1e+300 is too large"),
    ("power(s, power(10, 6))", "the exponent 1000000 is too large"),
    ("s * multiply(2**40, 2**40)", "does not fit a 64-bit integer"),
    ("s ** sum(3)", "the exponent of a power must be a number or depend on a symbol"),
    ("s * power(sum(3), 9223372036854775807)", "the exponent 9223372036854775807 is too large"),
])  # fmt: skip
def test_power_calls_obey_the_exponent_limits(text, needle):
    with pytest.raises(ParseError) as err:
        parse(text, SYMBOLS)
    assert needle in str(err.value)


def test_arithmetic_calls_build_the_same_graph_as_their_operators():
    assert parse("power(s, 3) + multiply(2, t) - divide(s, t)", SYMBOLS) is parse("s**3 + 2 * t - s / t", SYMBOLS)
    assert parse("matmul(x, W)", SYMBOLS) is x @ W
    assert parse("s ** power(2, 3)", SYMBOLS) is s ** (sd.constant(2) ** sd.constant(3))


def test_depth_limit_is_exact():
    parse("-" * (MAX_DEPTH - 1) + "s", SYMBOLS)
    with pytest.raises(ParseError, match=f"more than {MAX_DEPTH} levels"):
        parse("-" * MAX_DEPTH + "s", SYMBOLS)


def test_constant_limits():
    assert parse("s * 2**62", SYMBOLS) is s * sd.constant(2) ** sd.constant(62)
    parse("s * 10.0**300 * 2.0**-1000", SYMBOLS)  # float powers cannot run away: only finiteness is checked
    with pytest.raises(ParseError, match="not a finite float"):
        parse("s * (10.0**300 * 10.0**300)", SYMBOLS)
    with pytest.raises(ParseError, match="no finite real value"):
        parse("s * 9.0**9**9", SYMBOLS)
    with pytest.raises(ParseError, match="does not fit a 64-bit integer; write a float"):
        parse("s * 2**(2**7)", SYMBOLS)
    parse("s ** 1000", SYMBOLS)  # a symbol's power is computed at run time: no limit needed


def test_integer_constant_to_a_negative_power_is_refused_with_a_float_hint():
    with pytest.raises(sd.DTypeError, match=r"negative integer power -1 .* write a float base, e.g. 2.0 \*\* -1"):
        parse("s * 2**-1", SYMBOLS)
    assert parse("s * 2.0**-1", SYMBOLS) is s * sd.constant(2.0) ** sd.constant(-1)


def test_shape_errors_come_from_symdiff():
    with pytest.raises(sd.ShapeError, match="matmul"):
        parse("x @ b", SYMBOLS)


def test_check_returns_the_tree():
    tree = check(" s + 1 ")
    assert type(tree.body).__name__ == "BinOp"
    with pytest.raises(ParseError, match="must be a string"):
        check(b"s")  # type: ignore[arg-type]


def test_every_listed_function_is_a_symdiff_function():
    for name, fn in FUNCTIONS.items():
        assert callable(fn), name
    assert {"exp", "log", "sqrt", "tanh", "relu", "softmax", "log_softmax", "logsumexp", "mse"} <= set(FUNCTIONS)
    assert not {"eval", "exec", "open", "getattr", "astype", "__import__"} & set(FUNCTIONS)


ALPHABET = "sxt0123.e+-*/@()[]:,<>=_ab\"'.TlambdaisumxpT "


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=ALPHABET, max_size=40))
def test_fuzz_never_crashes_unexpectedly(text):
    try:
        out = parse(text, SYMBOLS)
    except (SymdiffError, ValueError, TypeError, IndexError, NotImplementedError):
        return
    assert isinstance(out, sd.Expr)


def test_parser_power_of_constants_has_the_exponent_limit_of_sd_power():
    """One limit (functions.MAX_EXPONENT), not a stricter 64: 1**999 is fine, 3**100 is too big for int64."""
    assert parse("s * 1**999", SYMBOLS) is s * sd.power(1, 999)
    with pytest.raises(ParseError, match="exponent 1001 of a power of constants is too large \\(the limit is 1000\\)"):
        parse("s * (-1)**1001", SYMBOLS)
    with pytest.raises(ParseError, match="does not fit a 64-bit integer; write a float \\(3.0, not 3\\)"):
        parse("s * 3**100", SYMBOLS)


def test_dtype_keyword_takes_a_dtype_name_so_printed_eye_parses_back() -> None:
    e = sd.eye(3, dtype="float32")
    assert sd.to_text(e) == "eye(3, dtype=float32)" and sd.parse(sd.to_text(e), {}) is e
    assert sd.parse('eye(2, dtype="float64")', {}) is sd.eye(2)
    for text in ("eye(3, dtype=foo)", "eye(3, dtype=__import__)", "eye(3, dtype=1)", "eye(3, dtype=x.T)"):
        with pytest.raises(sd.ParseError, match="dtype= must be one of .*float32"):
            sd.parse(text, {"x": sd.Param("x", shape=(2, 2))})
