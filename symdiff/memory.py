"""Memory planning for generated code: liveness analysis, dead-buffer reuse, persistent workspaces.

Input: the laid-out statements of a graph (one per array-valued computation, see
``printing.layout(statements=True)``). Output: the same statements, rewritten so that each array is
written into a buffer (``out=``) chosen by a linear scan over the statements:

* a buffer is free again after the last statement that reads it (or a view of it);
* an element-wise op may write into a same-shaped argument that dies at that very statement
  (``np.add(mm1, b1, out=mm1)``), other ops (matmul, reductions) never write into their inputs;
* arrays the caller receives (outputs) live to the end.

Two ways to materialize the buffers: ``"fresh"`` allocates each on first use inside the call (the
results are new arrays every call), ``"workspace"`` allocates all of them once per input shape in a
module-level cache that later calls reuse (for training steps, whose only result is the loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .dims import canonical_dim
from .graph import Expr, dtype_source, make, topo_order
from .printing import Layout

WORKSPACE_CACHE_SIZE = 8  # batch shapes kept per generated function (the last partial batch included)


@dataclass
class Plan:
    """The planned statements plus what must be emitted around them."""

    lines: list[str]
    setup: list[str] = field(default_factory=list)  # first statements of the function
    module: list[str] = field(default_factory=list)  # module-level code (the workspace factory)
    # (flat array, ids of the outputs that are views of it): one np.sum covers all of them
    flat: list[tuple[str, set[int]]] = field(default_factory=list)


def _dims(node: Expr) -> tuple[str, ...] | None:
    """The node's shape as source text, open axes read off an input (``x.shape[0]``); None if unknown."""
    out = []
    for i, d in enumerate(node.shape):
        if d is not None:
            out.append(str(d))
            continue
        src = canonical_dim(make("dim", (node,), {"axis": i}))
        if src.op == "const":
            out.append(str(int(src.attrs["value"].array)))
            continue
        if src.op != "dim" or src.args[0].op != "input":
            return None
        out.append(f"{src.args[0].label}.shape[{src.attrs['axis']}]")
    return tuple(out)


def plan(lay: Layout, roots: list[Expr], mode: str) -> Plan:
    """Rewrite ``lay.lines`` to reuse buffers (``mode`` is ``"fresh"`` or ``"workspace"``)."""
    live = _liveness(lay.lines, roots)
    slots = _assign_slots(lay, live, mode)
    result = Plan(slots.lines)
    if mode == "workspace" and slots.key:
        _emit_workspace(result, roots, slots)
    return result


@dataclass
class _Liveness:
    """``refs[id(n)]``: the statements whose arrays n's text reads (through inlined views and expressions);
    ``last[id(n)]``: the index of the last statement reading statement n's array (``len(lines)``: an output)."""

    refs: dict[int, frozenset[int]]
    last: dict[int, int]


def _liveness(lines: list[tuple[Expr, str, str]], roots: list[Expr]) -> _Liveness:
    """When each statement's array is last read, a view keeping its base alive."""
    index = {id(node): i for i, (node, _, _) in enumerate(lines)}
    refs: dict[int, frozenset[int]] = {}
    for node in topo_order(roots):
        if id(node) in index:
            refs[id(node)] = frozenset({id(node)})
        else:
            refs[id(node)] = frozenset().union(*(refs[id(a)] for a in node.args)) if node.args else frozenset()

    def aliases(i: int) -> frozenset[int]:
        """The statements whose buffers statement i's value may share (itself, or its base for a view)."""
        node = lines[i][0]
        if node.opdef.view:
            return frozenset().union(*(refs[id(a)] for a in node.args)) if node.args else frozenset()
        return frozenset({id(node)})

    end = len(lines)
    last: dict[int, int] = {}

    def touch(nid: int, at: int) -> None:
        stack = [nid]
        while stack:
            k = stack.pop()
            if last.get(k, -1) >= at:
                continue
            last[k] = at
            stack.extend(a for a in aliases(index[k]) if a != k)

    for i, (node, _, _) in enumerate(lines):
        for a in node.args:
            for r in refs[id(a)]:
                touch(r, i)
    for r in roots:
        for k in refs[id(r)]:
            touch(k, end)
    return _Liveness(refs, last)


@dataclass
class _Slots:
    """The rewritten statements and their buffers: ``of[id(n)]`` is the slot holding statement n's array,
    ``key[s]`` is slot s's ``(dims, dtype)``."""

    lines: list[str] = field(default_factory=list)
    of: dict[int, int] = field(default_factory=dict)
    key: list[tuple] = field(default_factory=list)


def _assign_slots(lay: Layout, live: _Liveness, mode: str) -> _Slots:
    """A linear scan over the statements giving each array a buffer: a dying same-shaped argument (in-place
    element-wise ops), a freed buffer of the same shape and dtype, or a new one."""
    refs, last = live.refs, live.last
    slots = _Slots()
    slot_of, slot_key, out_lines = slots.of, slots.key, slots.lines
    holder: list[str] = []  # per slot: the expression naming its array
    free: dict[tuple, list[int]] = {}
    for i, (node, var, text) in enumerate(lay.lines):
        opdef = node.opdef
        dims = _dims(node) if node.ndim and opdef.out is not None else None
        dying = [k for k in {r for a in node.args for r in refs[id(a)]} if last.get(k) == i and k in slot_of]
        chosen: int | None = None
        reuse_of: int | None = None
        if dims is not None:
            key = (dims, node.dtype.str)
            if opdef.inplace:
                reuse_of = _inplace_target(node, dying, refs)
                chosen = None if reuse_of is None else slot_of[reuse_of]
            if chosen is None and free.get(key):
                chosen = free[key].pop()
            if chosen is None:
                chosen = len(slot_key)
                slot_key.append(key)
                holder.append(f"_ws[{chosen}]" if mode == "workspace" else var)
                if mode == "fresh":  # the first holder allocates the array itself
                    slot_of[id(node)] = chosen
                    out_lines.append(f"{var} = {text}")
                    _release(dying, reuse_of, slot_of, slot_key, free)
                    continue
            slot_of[id(node)] = chosen
            args = [lay.fmt(a) for a in node.args]
            out_lines.append(f"{var} = {opdef.out(node, args, holder[chosen])}")
        elif node.ndim == 0 and opdef.out is not None and not opdef.inplace:
            # a scalar reduction: the ufunc's own reduce, without np.sum's Python wrapper
            out_lines.append(f"{var} = {opdef.out(node, [lay.fmt(a) for a in node.args], 'None')}")
        else:
            out_lines.append(f"{var} = {text}")
        _release(dying, reuse_of, slot_of, slot_key, free)
    return slots


def _inplace_target(node: Expr, dying: list[int], refs: dict[int, frozenset[int]]) -> int | None:
    """An argument of element-wise ``node`` that dies here, has its shape and dtype and is not read by another
    argument: the statement whose buffer ``node`` may overwrite (None if there is none)."""
    for a in node.args:
        k = id(a)
        if (
            k in dying
            and a.shape == node.shape
            and a.dtype == node.dtype
            and not any(k in refs[id(b)] for b in node.args if b is not a)
        ):
            return k
    return None


def _emit_workspace(result: Plan, roots: list[Expr], slots: _Slots) -> None:
    """Fill ``result.module`` with the workspace factory and ``result.setup`` with the per-call cache lookup."""
    slot_of, slot_key = slots.of, slots.key
    dim_texts = sorted({d for dims, _ in slot_key for d in dims if not d.isdigit()})
    params = {d: f"d{j}" for j, d in enumerate(dim_texts)}

    def shape_of(dims: tuple[str, ...]) -> str:
        return "(" + ", ".join(params.get(d, d) for d in dims) + ("," if len(dims) == 1 else "") + ")"

    # Outputs (gradients, in a training step) are views of one flat array per dtype, so one
    # np.sum checks them all for nan/inf.
    out_slots = sorted({slot_of[id(r)] for r in roots if id(r) in slot_of})
    by_dtype: dict[str, list[int]] = {}
    for s in out_slots:
        by_dtype.setdefault(slot_key[s][1], []).append(s)
    body = []
    flat_index = len(slot_key)
    views: dict[int, str] = {}
    for dt, members in sorted(by_dtype.items()):
        flat = f"flat{flat_index - len(slot_key)}"
        offset = _Sum()
        for s in members:
            size = _size(slot_key[s][0], params)
            views[s] = f"{flat}[{offset}:{offset.plus(size)}].reshape({shape_of(slot_key[s][0])})"
            offset = offset.plus(_padded(slot_key[s][0], params))
        # zeros: the padding between views is never written and must not read as nan
        body.append(f"    {flat} = np.zeros({offset}, dtype={dtype_source(dt)})")
        result.flat.append((f"_ws[{flat_index}]", {id(r) for r in roots if slot_of.get(id(r)) in members}))
        flat_index += 1
    allocs = [
        f"        {views[s]}," if s in views else f"        np.empty({shape_of(dims)}, dtype={dtype_source(dt)}),"
        for s, (dims, dt) in enumerate(slot_key)
    ]
    allocs += [f"        flat{j}," for j in range(flat_index - len(slot_key))]
    factory = [
        "_WORKSPACES = {}",
        "",
        "",
        f"def _workspace({', '.join(params.values())}):",
        '    """Buffers of the generated function, allocated once per input shape."""',
        *body,
        "    return (",
        *allocs,
        "    )",
    ]
    result.module = ["\n".join(factory)]
    key = "(" + ", ".join(dim_texts) + ("," if len(dim_texts) == 1 else "") + ")"
    result.setup = [
        f"_key = {key}",
        "_ws = _WORKSPACES.get(_key)",
        "if _ws is None:",
        f"    if _WORKSPACES.__len__() >= {WORKSPACE_CACHE_SIZE}:",  # no builtin: a symbol may be named len
        "        _WORKSPACES.clear()",
        "    _ws = _WORKSPACES[_key] = _workspace(*_key)",
    ]


class _Sum:
    """A sum of sizes as source text, with the static part folded (``2400 + 16 * d0``)."""

    def __init__(self, known: int = 0, terms: tuple[str, ...] = ()) -> None:
        self.known, self.terms = known, terms

    def plus(self, size: str) -> _Sum:
        if size.isdigit():
            return _Sum(self.known + int(size), self.terms)
        return _Sum(self.known, (*self.terms, size))

    def __str__(self) -> str:
        parts = [*self.terms, str(self.known)] if self.known or not self.terms else list(self.terms)
        return " + ".join(parts)


def _size(dims: tuple[str, ...], params: dict[str, str]) -> str:
    known = 1
    parts = []
    for d in dims:
        if d.isdigit():
            known *= int(d)
        else:
            parts.append(params[d])
    return " * ".join([str(known), *parts]) if parts else str(known)


def _padded(dims: tuple[str, ...], params: dict[str, str]) -> str:
    """The size rounded up to 16 elements, so that every view starts 64-byte aligned."""
    size = _size(dims, params)
    if size.isdigit():
        return str(-(-int(size) // 16) * 16)
    return f"-(-({size}) // 16) * 16"


def _release(
    dying: list[int], kept: int | None, slot_of: dict[int, int], slot_key: list[tuple], free: dict[tuple, list[int]]
) -> None:
    for k in dying:
        if k != kept:
            s = slot_of[k]
            free.setdefault(slot_key[s], []).append(s)
