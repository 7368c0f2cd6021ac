"""Runtime: the only place that executes code, and only code that symdiff generated itself.

:func:`compile` generates the module source, executes it with its lines registered in ``linecache``
(so tracebacks and ``inspect`` show the generated line), and wraps the function so that every call
checks its arguments: a missing, unexpected, misshaped or wrongly typed input raises an error naming it,
and axes of open length (``None``) must agree between inputs.
"""

from __future__ import annotations

import hashlib
import linecache
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .codegen import Signature, SymbolSpec, codegen
from .errors import DTypeError, InputError
from .graph import Expr, format_shape, validate_name

__all__ = ["CompiledFunction", "compile", "load_source"]


def load_source(source: str, name: str) -> Any:
    """Execute generated ``source`` as a module and return its function ``name``."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    filename = f"<symdiff:{name}:{digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": f"symdiff_generated_{name}", "__file__": filename}
    exec(compile_builtin(source, filename, "exec"), namespace)  # noqa: S102 - symdiff's own generated code
    fn = namespace[name]
    fn.__source__ = source
    return fn


compile_builtin = compile  # the builtin, before this module's compile() shadows it


def check_arrays(specs: Iterable[SymbolSpec], values: Mapping[str, Any], taker: str) -> dict[str, np.ndarray]:
    """``values`` as arrays fitting ``specs`` (name, kind, shape, dtype); errors name the input at fault.

    A missing or unexpected name, a dtype that cannot be cast safely (same kind), a wrong ndim or a known
    dim that differs, and open-length axes (``None``) whose lengths disagree between inputs are refused.
    """
    specs = {s.name: s for s in specs}
    unexpected = [k for k in values if k not in specs]
    if unexpected:
        raise InputError(f"unexpected input {unexpected[0]!r}; {taker} takes: {', '.join(specs) or 'nothing'}")
    arrays: dict[str, np.ndarray] = {}
    open_axes: dict[int, tuple[int, str]] = {}
    for name, spec in specs.items():
        if name not in values:
            raise InputError(
                f"missing input {name!r} ({spec.kind}, shape {format_shape(spec.shape)}, {spec.dtype.name})"
            )
        value = values[name]
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        if arr.dtype != spec.dtype:
            if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
                raise DTypeError(
                    f"input {name!r} must have dtype {spec.dtype.name}, got {arr.dtype.name} "
                    "(which cannot be cast to it safely)"
                )
            arr = arr.astype(spec.dtype)
        if arr.ndim != len(spec.shape) or any(w is not None and w != g for w, g in zip(spec.shape, arr.shape)):
            raise InputError(
                f"input {name!r} must have shape {format_shape(spec.shape)}, got {format_shape(arr.shape)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if want is None and got == 0:
                raise InputError(f"input {name!r} is empty: length 0 on its open axis {axis}")
            if want is None:
                seen = open_axes.setdefault(axis, (got, name))
                if seen[0] != got:
                    raise InputError(
                        f"input {name!r} has length {got} on axis {axis} but input {seen[1]!r} has {seen[0]} "
                        "there (open-length axes must agree)"
                    )
        arrays[name] = arr
    return arrays


class CompiledFunction:
    """A generated NumPy function with argument checking.

    Call it with keyword arrays named after the symbols; it returns what the outputs were given as:
    a dict (output name -> array), a tuple, or one array. ``source`` holds the generated module,
    ``fn`` the unchecked function (for hot loops whose inputs are already validated).
    """

    def __init__(self, source: str, name: str, signature: Signature) -> None:
        self.source = source
        self.name = name
        self.signature = signature
        self.fn = load_source(source, name)
        self.__doc__ = self.fn.__doc__
        self._specs = {s.name: s for s in signature.symbols}

    @property
    def inputs(self) -> list[str]:
        """Argument names, in signature order."""
        return list(self._specs)

    def __repr__(self) -> str:
        args = ", ".join(self._specs)
        outs = ", ".join(k for k, _, _ in self.signature.outputs)
        return f"<CompiledFunction {self.name}(*, {args}) -> {outs}>"

    def check(self, kwargs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Validate and convert arguments; raises ``InputError``/``DTypeError`` naming the culprit."""
        return check_arrays(self._specs.values(), kwargs, self.name)

    def __call__(self, **kwargs: Any) -> Any:
        return self.fn(**self.check(kwargs))


def compile(  # noqa: A001 - the public name the API promises
    outputs: Expr | Sequence[Expr] | Mapping[str, Expr],
    name: str = "fn",
    *,
    optimize: bool = True,
) -> CompiledFunction:
    """Generate NumPy code for ``outputs`` and return it as a checked callable.

    ``f = sd.compile({"loss": loss, "dW": gW})`` then ``f(W=W0, x=X, ...)`` returns
    ``{"loss": array, "dW": array}``. ``optimize`` (the default) runs the code generated for speed
    (see :func:`symdiff.codegen`); ``f.source`` shows it.
    """
    name = validate_name(name, "function")  # a plain str: the name is also formatted into the file name
    source, signature = codegen(outputs, name=name, signature=True, optimize=optimize)
    return CompiledFunction(source, name, signature)
