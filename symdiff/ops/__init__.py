"""The primitive op table: ``OPS`` maps name -> :class:`OpDef` (see :mod:`symdiff.ops.registry`).

The entries live in this package's other modules and register themselves when imported. The entries build on the
graph and on :mod:`symdiff.functions` (their gradient rules build nodes), which in turn read the table; so this
package imports only the table, and ``symdiff``'s ``__init__`` imports the entries, before anything can build a node.
"""

from .registry import OPS, OpDef, register

__all__ = ["OPS", "OpDef", "register"]
