"""Exceptions raised by symdiff; each message names the thing that is wrong."""

from __future__ import annotations


class SymdiffError(Exception):
    """Base class of every error symdiff raises on purpose.

    >>> try:
    ...     sd.Input("a", shape=(2,)) + sd.Input("b", shape=(3,))
    ... except sd.SymdiffError as e:
    ...     print(type(e).__name__)
    ShapeError
    """


class ShapeError(SymdiffError, ValueError):
    """Operand shapes do not fit the op (message names the op and the shapes).

    >>> sd.Input("a", shape=(2,)) + sd.Input("b", shape=(3,))
    Traceback (most recent call last):
        ...
    symdiff.errors.ShapeError: add: shapes (2,) and (3,) cannot be broadcast together (axis -1)
    """


class DTypeError(SymdiffError, TypeError):
    """An operand or an argument has a dtype the op cannot take.

    >>> sd.var(sd.Input("x", shape=(3,)), ddof=-1)
    Traceback (most recent call last):
        ...
    symdiff.errors.DTypeError: var: ddof must be a non-negative int, got -1
    """


class InputError(SymdiffError, ValueError):
    """A compiled function got a missing, unexpected or misshaped argument.

    >>> f = sd.compile(sd.exp(sd.Input("x", shape=(3,))))
    >>> f(x=np.zeros(4))
    Traceback (most recent call last):
        ...
    symdiff.errors.InputError: input 'x' must have shape (3,), got (4,)
    """


class UnsupportedError(SymdiffError, NotImplementedError):
    """Something symdiff cannot represent, differentiate or lower.

    >>> sd.Input("x", shape=(3,))[[0, 2]]
    Traceback (most recent call last):
        ...
    symdiff.errors.UnsupportedError: getitem: only basic indexing (ints, slices, None, ...) is supported, got list; ...
    """


class ConstantOverflowError(UnsupportedError, OverflowError):
    """An integer constant, or a fold of integer constants, does not fit its dtype (still an ``OverflowError``).

    >>> sd.constant(np.int8(100)) * 2
    Traceback (most recent call last):
        ...
    symdiff.errors.ConstantOverflowError: mul: integer constants overflow int8 (200 is out of range)...
    """


class FloatDTypeError(DTypeError, ValueError):
    """A value that must have a float (or real) dtype has another one (still a ``ValueError``, as it was)."""


class ArgumentTypeError(InputError, TypeError):
    """An argument is not the kind of object the function takes (still a ``TypeError``, as it was)."""
