"""Runtime: the only place that executes code, and only code that symdiff generated itself.

:func:`compile` generates the module source, executes it with its lines registered (a private temporary
file and ``linecache``, so tracebacks and ``inspect`` show the generated line), and wraps the function so
that every call checks its arguments: a missing, unexpected, misshaped or wrongly typed input raises an
error naming it, and axes of open length (``None``) must agree between inputs.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import linecache
import os
import shutil
import sys
import tempfile
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .backends import namespace_of, resolve
from .codegen import Signature, SymbolSpec, codegen
from .errors import DTypeError, InputError
from .files import process_gone
from .graph import Expr, format_shape
from .naming import validate_name

__all__ = ["CompiledFunction", "FusedFunction", "compile", "fast_check", "load_source", "to_backend"]


_FOLDER_PREFIX = "symdiff-generated-"  # then the owner's pid


def _remove_stale_folders() -> None:
    """Remove the source folders of processes that are gone (killed before they could clean up)."""
    tmp = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for entry in os.listdir(tmp):
            if entry.startswith(_FOLDER_PREFIX) and process_gone(entry[len(_FOLDER_PREFIX) :].split("-", 1)[0]):
                shutil.rmtree(os.path.join(tmp, entry), ignore_errors=True)


class _SourceFiles:
    """Generated modules saved as files, so that every traceback printer shows their lines.

    Python 3.11's default printer reads source lines from the file a frame names (never from ``linecache``);
    the files live in one private temporary folder per process. A file and its ``linecache`` entry go
    when the last function loaded from it is garbage-collected; the folder goes at exit (or, if the process
    was killed, when a later process starts its own). Where no file
    can be written the module is named ``<symdiff:name:digest>`` and only ``linecache`` holds its lines.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.folder: str | None = None
        self.pid = os.getpid()  # the process that owns the folder (a forked child must not remove it)
        self.users: dict[str, int] = {}

    def acquire(self, source: str, name: str) -> str:
        """The filename under which ``source`` is registered (one more user of it)."""
        digest = hashlib.sha1(source.encode()).hexdigest()[:12]
        with self.lock:
            try:
                if self.folder is None or self.pid != os.getpid():
                    _remove_stale_folders()
                    self.pid = os.getpid()
                    self.folder = tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{self.pid}-")
                    atexit.register(self.remove_folder, self.folder)
                filename = os.path.join(self.folder, f"{name}_{digest}.py")
                if filename not in self.users:
                    with open(filename, "w", encoding="utf-8") as out:
                        out.write(source)
            except OSError:
                filename = f"<symdiff:{name}:{digest}>"
            self.users[filename] = self.users.get(filename, 0) + 1
            # mtime None: linecache.checkcache keeps the entry even if the file is gone
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        return filename

    def release(self, filename: str) -> None:
        """One user less; the last one removes the file and its lines."""
        with self.lock:
            self.users[filename] -= 1
            if self.users[filename]:
                return
            del self.users[filename]
            linecache.cache.pop(filename, None)
            if self.folder is not None and os.path.dirname(filename) == self.folder and self.pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.remove(filename)

    def remove_folder(self, folder: str) -> None:
        """At exit: remove this process's folder (not the one a forked parent still uses)."""
        if folder == self.folder and self.pid == os.getpid():
            shutil.rmtree(folder, ignore_errors=True)


_SOURCE_FILES = _SourceFiles()


def load_source(source: str, name: str, *, cached: bool = False) -> Any:
    """Execute generated ``source`` as a module and return its function ``name``.

    Its lines stay registered for tracebacks, ``inspect`` and debuggers while the function lives. ``cached``: the
    module's file is :func:`cache_file`'s, the same in every process (a temporary one if the cache folder cannot
    be written), so that a compiler caching beside its source (Numba's ``cache=True``) compiles it once.
    """
    stable = cache_file(source, name) if cached else None
    filename = stable or _SOURCE_FILES.acquire(source, name)
    try:
        if stable is None:
            namespace: dict[str, Any] = {"__name__": f"symdiff_generated_{name}", "__file__": filename}
        else:  # a module importable by its name (the file's): Numba's cache rebuilds its globals from it
            module = sys.modules.get(_stem(stable)) or types.ModuleType(_stem(stable))
            module.__file__ = filename
            sys.modules[module.__name__] = module
            namespace = module.__dict__
        exec(compile_builtin(source, filename, "exec"), namespace)  # noqa: S102 - symdiff's own generated code
        fn = namespace[name]
    except BaseException:
        if stable is None:
            _SOURCE_FILES.release(filename)
        raise
    fn.__source__ = source
    if stable is None:
        weakref.finalize(fn, _SOURCE_FILES.release, filename)
    return fn


def _stem(path: str) -> str:
    """The module name of a cached module's file (``train_step_<digest>``)."""
    return "symdiff_cached_" + os.path.splitext(os.path.basename(path))[0]


def cache_file(source: str, name: str) -> str | None:
    """A file holding ``source`` in the cache folder (``$SYMDIFF_CACHE``, else ``~/.cache/symdiff``), named by
    the source's digest, so that the same source has the same path in every process; a file there whose text
    differs (damaged, or not symdiff's) is replaced first, atomically. None when the folder cannot be written."""
    folder = os.environ.get("SYMDIFF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "symdiff")
    path = os.path.join(folder, f"{name}_{hashlib.sha256(source.encode()).hexdigest()[:24]}.py")
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == source:
                return path
    except (OSError, UnicodeDecodeError):
        pass
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(source)
        os.replace(tmp, path)
    except OSError:
        return None
    return path


compile_builtin = compile  # the builtin, before this module's compile() shadows it


_MAX = np.maximum.reduce  # skips np.max's Python wrapper on the per-call path


def refuse_masked(what: str, value: Any) -> None:
    """Refuse a masked array with masked entries (``what`` names it: ``"input 'x'"``, ``"param 'W'"``): NumPy
    code would use the hidden values underneath, and a saved or converted copy would lose the mask.
    """
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise InputError(
            f"{what} is a masked array with masked entries, which symdiff would use as values: "
            "fill them (value.filled(0.0)) or drop the masked rows first"
        )


def _plain(name: str, value: Any) -> np.ndarray:
    """``value`` (not a plain ndarray) as one: np.matrix and other subclasses become base arrays, so ``*`` stays
    element-wise; a masked array with masked entries is refused, since the generated code would use them.
    """
    refuse_masked(f"input {name!r}", value)
    return np.asarray(value)


def check_arrays(specs: Iterable[SymbolSpec], values: Mapping[str, Any], taker: str) -> dict[str, np.ndarray]:
    """``values`` as arrays fitting ``specs`` (name, kind, shape, dtype); errors name the input at fault.

    A missing or unexpected name, a dtype that cannot be cast safely (same kind), a wrong ndim or a known
    dim that differs, open-length axes (``None``) whose lengths disagree between inputs, and class labels
    outside ``[0, spec.classes)`` are refused.
    Subclasses (``np.matrix``) become plain arrays, so operators keep their NumPy meaning; masked arrays
    with masked entries are refused (their masks would be lost).
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
        arr = value if type(value) is np.ndarray else _plain(name, value)
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
        # one reduction: seen as unsigned, a negative label is larger than any class count
        if spec.classes is not None and arr.size and _MAX(arr.view(f"u{arr.itemsize}"), axis=None) >= spec.classes:
            lo, hi = arr.min(), arr.max()
            raise InputError(
                f"labels {name!r} must lie in [0, {spec.classes}) (class indices), got {lo if lo < 0 else hi}: "
                "fix or drop the rows holding it"
            )
        arrays[name] = arr
    return arrays


def fast_check(specs: Sequence[SymbolSpec]) -> Callable[[Mapping[str, Any]], Any]:
    """A predicate, true when ``values`` pass :func:`check_arrays` unchanged: exactly the inputs of ``specs``, each a
    plain ndarray of its dtype and shape, open-length axes non-empty and agreeing, class labels in range.

    Its body is generated once per signature as one chain of attribute compares (about 0.1 µs an input, and one
    reduction per label array), so that a call with well-formed arrays costs little more than the generated function.
    False (never wrongly true) sends the caller to :func:`check_arrays`, which converts what it may and names the
    input at fault.
    """
    consts: dict[str, Any] = {"_nd": np.ndarray, "_max": _MAX}
    loads, types, dtypes, shapes, labels = [], [], [], [], []
    first_open: dict[int, str] = {}
    for i, spec in enumerate(specs):
        a, d = f"a{i}", f"_d{i}"
        loads.append(f"{a} = v.get({spec.name!r})")
        types.append(f"type({a}) is _nd")
        consts[d] = spec.dtype
        dtypes.append(f"({a}.dtype is {d} or {a}.dtype == {d})")  # `is`: the usual case, a builtin dtype
        if None not in spec.shape:
            shapes.append(f"{a}.shape == {tuple(spec.shape)!r}")
        else:
            shapes.append(f"{a}.ndim == {len(spec.shape)}")
            for axis, want in enumerate(spec.shape):
                if want is not None:
                    shapes.append(f"{a}.shape[{axis}] == {want}")
                elif axis in first_open:
                    shapes.append(f"{a}.shape[{axis}] == {first_open[axis]}.shape[{axis}]")
                else:
                    first_open[axis] = a
                    shapes.append(f"{a}.shape[{axis}] > 0")
        if spec.classes is not None:  # seen as unsigned, a negative label is larger than any class count
            consts[f"_u{i}"] = np.dtype(f"u{spec.dtype.itemsize}")
            labels.append(f"{a}.size and _max({a}.view(_u{i}), axis=None) < {spec.classes}")
    test = " and ".join([*types, *dtypes, *shapes, *labels]) or "True"
    params = ", ".join(["v", *(f"{k}={k}" for k in consts)])
    body = "\n    ".join([f"if len(v) != {len(specs)}:", "    return False", *loads, f"return {test}"])
    space = dict(consts)
    exec(f"def accepts({params}):\n    {body}\n", space)  # noqa: S102 - names are validated identifiers
    return space["accepts"]


class CompiledFunction:
    """A generated NumPy function with argument checking.

    Call it with keyword arrays named after the symbols; it returns what the outputs were given as:
    a dict (output name -> array), a tuple, or one array. ``source`` holds the generated module,
    ``fn`` the unchecked function (for hot loops whose inputs are already validated). Several threads may
    call one compiled function at once: its code allocates its arrays per call and keeps nothing between
    calls (no workspace, unlike a training step) but, compiled with ``training=True``, its dropout generators.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> x = sd.Input("x", shape=(2,))
    >>> f = sd.compile(sd.sum(x * x))
    >>> float(f(x=np.array([3.0, 4.0])))
    25.0
    >>> f(x=np.array([3.0, 4.0, 5.0]))
    Traceback (most recent call last):
    ...
    symdiff.errors.InputError: input 'x' must have shape (2,), got (3,)
    """

    def __init__(self, source: str, name: str, signature: Signature) -> None:
        self.source = source
        self.name = name
        self.signature = signature
        self.fn = load_source(source, name, cached=self.cached)
        self.__doc__ = self.fn.__doc__
        self._specs = {s.name: s for s in signature.symbols}
        self._accepts = fast_check(signature.symbols)

    cached = False  # whether the module's file is the same in every process (a compiler caches beside it)

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

    def __call__(self, /, **kwargs: Any) -> Any:  # positional-only: a symbol may be named "self"
        return self.fn(**(kwargs if self._accepts(kwargs) else self.check(kwargs)))


def _host(value: Any) -> bool:
    """Whether ``value`` is host data that NumPy reads (an ndarray, a scalar, a list), not another library's array."""
    return isinstance(value, (np.ndarray, np.generic, int, float, bool, list, tuple))


def to_backend(fn: Any, arrays: Mapping[str, Any]) -> dict[str, Any]:
    """``arrays`` (NumPy, already checked) as arrays of the library of generated ``fn``, on its device."""
    xp, device = namespace_of(fn)
    return {k: xp.asarray(v, device=device) for k, v in arrays.items()}


class BackendFunction(CompiledFunction):
    """A generated function on another array library (``sd.compile(..., backend="torch")``).

    Call it with NumPy data (checked as :class:`CompiledFunction` checks it, then moved to the library's device) or
    with that library's arrays (passed through after a shape check); it returns that library's arrays.
    """

    def __call__(self, /, **kwargs: Any) -> Any:
        host = {k: v for k, v in kwargs.items() if _host(v)}
        specs = [s for s in self.signature.symbols if s.name in host or s.name not in kwargs]
        args = to_backend(self.fn, check_arrays(specs, host, self.name))
        for k, v in kwargs.items():
            if k not in host:
                if k not in self._specs:
                    raise InputError(f"unexpected input {k!r}; {self.name} takes: {', '.join(self._specs)}")
                want = self._specs[k].shape
                got = tuple(v.shape)
                if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
                    raise InputError(f"input {k!r} must have shape {format_shape(want)}, got {format_shape(got)}")
                args[k] = v
        return self.fn(**args)


class FusedFunction(CompiledFunction):
    """A function on the fused backend (``sd.compile(..., backend="numba")``, see :mod:`symdiff.fused`): called,
    checked and returning as :class:`CompiledFunction` does. Numba compiles it on the first call
    (``compile_seconds`` says how long) and keeps the machine code on disk: a second process loads it."""

    cached = True
    compile_seconds: float | None = None

    def __repr__(self) -> str:
        return super().__repr__().replace("<CompiledFunction", "<FusedFunction", 1)

    def __call__(self, /, **kwargs: Any) -> Any:
        if self.compile_seconds is None:  # the first call compiles (or loads the cached machine code)
            start = time.perf_counter()
            out = super().__call__(**kwargs)
            self.compile_seconds = time.perf_counter() - start
            return out
        return self.fn(**(kwargs if self._accepts(kwargs) else self.check(kwargs)))


def compile(  # noqa: A001 - the public name the API promises
    outputs: Expr | Sequence[Any] | Mapping[str, Expr],
    name: str = "fn",
    *,
    optimize: bool = True,
    training: bool = False,
    backend: Any = "numpy",
    device: Any = None,
    jit: bool | None = None,
) -> CompiledFunction:
    """Generate NumPy code for ``outputs`` and return it as a checked callable.

    ``f = sd.compile({"loss": loss, "dW": gW})`` then ``f(W=W0, x=X, ...)`` returns
    ``{"loss": array, "dW": array}``; a list of outputs gives a tuple (nested lists, such as the blocks of
    ``sd.hessian(f, [x, y])``, give tuples nested alike). ``optimize`` (the default) runs the code generated for speed
    (see :func:`symdiff.codegen`); ``f.source`` shows it. The function evaluates: ``sd.dropout`` is the identity,
    unless ``training`` (each call then draws fresh dropout masks, from generators the function keeps).

    ``backend`` (``"torch"``, ``"jax"``, ``"cupy"`` or an Array API namespace; ``device``, ``jit``: see
    :func:`symdiff.codegen`) runs the same graph on that library: the function takes NumPy data or that library's
    arrays and returns that library's arrays. ``backend="numba"`` fuses the graph's loops into functions compiled
    by Numba (see :mod:`symdiff.fused`): a :class:`FusedFunction`, called as the NumPy one is.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> x, w = sd.Input("x", shape=(None, 3)), sd.Param("w", shape=(3,))
    >>> loss = sd.mean(sd.square(x @ w - 1))
    >>> f = sd.compile({"loss": loss, "dw": sd.grad(loss, [w])[0]})
    >>> out = f(x=np.ones((2, 3)), w=np.array([1.0, 2.0, 3.0]))
    >>> float(out["loss"]), out["dw"]
    (25.0, array([10., 10., 10.]))
    """
    name = validate_name(name, "function")  # a plain str: the name is also formatted into the file name
    if isinstance(backend, str) and backend == "numba":
        from .fused import fused_function_source, require_numba

        require_numba()
        if device not in (None, "cpu") or jit:
            option = "device" if device not in (None, "cpu") else "jit"
            raise TypeError(f"compile(backend='numba') takes no option {option!r} (it runs on the CPU)")
        source, signature = fused_function_source(outputs, name, training)
        return FusedFunction(source, name, signature)
    kind = CompiledFunction if resolve(backend, device, jit) is None else BackendFunction
    lib = {"backend": backend, "device": device, "jit": jit}
    source, signature = codegen(outputs, name=name, signature=True, optimize=optimize, training=training, **lib)
    return kind(source, name, signature)
