"""The primitive op table. Importing this package registers every op; ``OPS`` maps name -> :class:`OpDef`."""

from . import elementwise, leaves, linalg, reductions, shape  # noqa: F401  (registration side effects)
from .registry import OPS, OpDef, register

__all__ = ["OPS", "OpDef", "register"]
