"""Exceptions raised by symdiff; each message names the thing that is wrong."""

from __future__ import annotations


class SymdiffError(Exception):
    """Base class of every error symdiff raises on purpose."""


class ShapeError(SymdiffError, ValueError):
    """Operand shapes do not fit the op (message names the op and the shapes)."""


class DTypeError(SymdiffError, TypeError):
    """An operand or an argument has a dtype the op cannot take."""


class InputError(SymdiffError, ValueError):
    """A compiled function got a missing, unexpected or misshaped argument."""


class UnsupportedError(SymdiffError, NotImplementedError):
    """Something symdiff cannot represent, differentiate or lower."""


class ConstantOverflowError(UnsupportedError, OverflowError):
    """An integer constant, or a fold of integer constants, does not fit its dtype (still an ``OverflowError``)."""


class FloatDTypeError(DTypeError, ValueError):
    """A value that must have a float (or real) dtype has another one (still a ``ValueError``, as it was)."""


class ArgumentTypeError(InputError, TypeError):
    """An argument is not the kind of object the function takes (still a ``TypeError``, as it was)."""
