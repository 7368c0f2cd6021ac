"""Memory planning for generated code: liveness analysis, dead-buffer reuse, persistent workspaces.

Input: the laid-out statements of a graph (one per array-valued computation, see
``printing.layout(statements=True)``). Output: the same statements, rewritten so that each array is
written into a buffer (``out=``) chosen by a linear scan over the statements:

* a buffer is free again after the last statement that reads it (or a view of it);
* an element-wise op may write into a same-shaped argument that dies at that very statement
  (``np.add(mm1, b1, out=mm1)``), other ops (matmul, reductions) never write into their inputs;
* arrays the caller receives (outputs) live to the end.

Three ways to materialize the buffers: ``"fresh"`` allocates each on first use inside the call (the
results are new arrays every call), ``"workspace"`` allocates all of them once per input shape in a
module-level cache that later calls reuse (for training steps, whose only result is the loss), ``"static"``
allocates them once when the module loads (every shape must be known: a training step's update phase).

An output may also be written into an existing array (``into``: the array of a symbol, such as a param
receiving its update): its statement then writes there directly when that array's old value is no longer
read (ordered by :func:`write_order`), else into a buffer copied over at the end. Symbols whose arrays are
``donated`` (a gradient after its update) serve as buffers once their last reader has run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .dims import canonical_dim
from .graph import Expr, dtype_source, make, topo_order
from .ops.registry import ATOM, Fmt
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


def shape_source(node: Expr) -> tuple[str, ...] | None:
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


@dataclass(frozen=True)
class Into:
    """Outputs written into existing arrays: ``targets[i]`` is the symbol whose array receives root ``i``'s value
    (None: an ordinary output); the arrays of ``donated`` symbols may be overwritten once they are last read."""

    targets: tuple[Expr | None, ...]
    donated: tuple[Expr, ...] = ()


def write_order(roots: list[Expr], targets: list[Expr | None]) -> list[int]:
    """An order of the roots (indices) in which an output that still reads the old value of another output's
    target comes before it, so that writing each output straight into its target overwrites nothing still needed.

    Where no such order exists (each reads the other's old value) the given order is kept for the rest; the
    planner then writes those outputs into buffers first.
    """
    below = [{id(n) for n in topo_order([r])} for r in roots]
    readers: dict[int, list[int]] = {}  # id(node) -> the roots whose graphs hold it
    for i, ids in enumerate(below):
        for k in ids:
            readers.setdefault(k, []).append(i)
    # before[j]: the roots that must be written before root j (they read its target, but none of j's new value)
    before = [
        {i for i in readers.get(id(t), ()) if i != j and id(roots[j]) not in below[i]} if t is not None else set()
        for j, t in enumerate(targets)
    ]
    order: list[int] = []
    done: set[int] = set()
    left = list(range(len(roots)))
    while left:
        j = next((j for j in left if before[j] <= done), left[0])
        order.append(j)
        done.add(j)
        left.remove(j)
    return order


def plan(lay: Layout, roots: list[Expr], mode: str, into: Into | None = None) -> Plan:
    """Rewrite ``lay.lines`` to reuse buffers (``mode`` is ``"fresh"``, ``"workspace"`` or ``"static"``);
    ``into`` writes outputs into existing arrays. A static plan writes an operator into one of its operands as
    an augmented assignment (``p -= g``), and later statements name that operand (``lay``'s formats follow)."""
    into = into or Into((None,) * len(roots))
    tracked = {id(s) for s in (*into.targets, *into.donated) if s is not None}
    live = _liveness(lay.lines, roots, tracked)
    slots = _assign_slots(lay, live, mode, _symbol_slots(roots, into))
    slots.lines += _write_outputs(lay, roots, into, slots)
    result = Plan(slots.lines)
    if mode == "workspace" and slots.key:
        _emit_workspace(result, roots, slots)
    elif mode == "static":
        result.module = _static_buffers(slots)
    return result


@dataclass
class _Liveness:
    """``refs[id(n)]``: the statements (and tracked symbols) whose arrays n's text reads (through inlined views and
    expressions); ``last[id(n)]``: the index of the last statement reading n's array (``len(lines)``: an output)."""

    refs: dict[int, frozenset[int]]
    last: dict[int, int]
    read: set[int] = field(default_factory=set)  # the values some statement reads
    users: dict[int, list[Expr]] = field(default_factory=dict)  # the nodes taking n as an argument
    statements: frozenset[int] = frozenset()  # the ids of the nodes that have a statement of their own


def _liveness(lines: list[tuple[Expr, str, str]], roots: list[Expr], tracked: set[int]) -> _Liveness:
    """When each statement's (or tracked symbol's) array is last read, a view keeping its base alive."""
    index = {id(node): i for i, (node, _, _) in enumerate(lines)}
    refs: dict[int, frozenset[int]] = {}
    users: dict[int, list[Expr]] = {}
    for node in topo_order(roots):
        for a in node.args:
            users.setdefault(id(a), []).append(node)
        if id(node) in index or id(node) in tracked:
            refs[id(node)] = frozenset({id(node)})
        else:
            refs[id(node)] = frozenset().union(*(refs[id(a)] for a in node.args)) if node.args else frozenset()

    def aliases(k: int) -> frozenset[int]:
        """The statements whose buffers k's value may share (itself, or its base for a view)."""
        if k not in index:  # a symbol's own array
            return frozenset()
        node = lines[index[k]][0]
        if node.opdef.view:
            return frozenset().union(*(refs[id(a)] for a in node.args)) if node.args else frozenset()
        return frozenset({k})

    end = len(lines)
    last: dict[int, int] = {}

    def touch(nid: int, at: int) -> None:
        stack = [nid]
        while stack:
            k = stack.pop()
            if last.get(k, -1) >= at:
                continue
            last[k] = at
            stack.extend(a for a in aliases(k) if a != k)

    read: set[int] = set()
    for i, (node, _, _) in enumerate(lines):
        for a in node.args:
            read |= refs[id(a)]
            for r in refs[id(a)]:
                touch(r, i)
    for r in roots:
        for k in refs[id(r)]:
            touch(k, end)
    return _Liveness(refs, last, read, users, frozenset(index))


@dataclass
class _Slots:
    """The rewritten statements and their buffers: ``of[id(n)]`` is the slot holding statement n's array,
    ``key[s]`` is slot s's ``(dims, dtype)``, ``holder[s]`` the expression naming its array and ``occupant[s]``
    the node whose value it holds last. ``pinned`` slots are the arrays of symbols that receive an output (never
    handed out for reuse), ``symbolic`` all symbols' arrays (not allocated here)."""

    lines: list[str] = field(default_factory=list)
    of: dict[int, int] = field(default_factory=dict)
    key: list[tuple] = field(default_factory=list)
    holder: list[str] = field(default_factory=list)
    occupant: dict[int, int] = field(default_factory=dict)
    pinned: set[int] = field(default_factory=set)
    symbolic: set[int] = field(default_factory=set)
    targets: dict[int, Expr] = field(default_factory=dict)  # id(root) -> the symbol its statement writes into
    untargeted: set[int] = field(default_factory=set)  # roots the caller reads by name
    pending: list[tuple[str, str]] = field(default_factory=list)  # (target, buffer) copies after the statements

    def put(self, node: Expr, s: int) -> None:
        self.of[id(node)] = s
        self.occupant[s] = id(node)


def _symbol_slots(roots: list[Expr], into: Into) -> _Slots:
    """Slots for the arrays of the symbols in ``into`` (targets pinned), before any statement runs."""
    slots = _Slots()
    for sym in (*into.targets, *into.donated):
        if sym is not None and id(sym) not in slots.of:
            slots.symbolic.add(len(slots.key))
            slots.put(sym, len(slots.key))
            slots.key.append((shape_source(sym), sym.dtype.str))
            slots.holder.append(sym.label)
    for r, t in zip(roots, into.targets):
        if t is not None and r is not t:
            slots.targets.setdefault(id(r), t)
            slots.pinned.add(slots.of[id(t)])
        elif t is None:
            slots.untargeted.add(id(r))
    return slots


def _assign_slots(lay: Layout, live: _Liveness, mode: str, slots: _Slots) -> _Slots:
    """A linear scan over the statements giving each array a buffer: its target (an output written into an existing
    array), a dying same-shaped argument (in-place element-wise ops), a freed buffer of the same shape and dtype, or
    a new one."""
    refs, last = live.refs, live.last
    free: dict[tuple, list[int]] = {}
    for i, (node, var, text) in enumerate(lay.lines):
        opdef = node.opdef
        dims = shape_source(node) if node.ndim and opdef.out is not None else None
        dying = [k for k in {r for a in node.args for r in refs[id(a)]} if last.get(k) == i and k in slots.of]
        target = slots.targets.get(id(node))
        chosen: int | None = None
        reuse_of: int | None = None
        if dims is not None:
            key = (dims, node.dtype.str)
            if target is not None:
                chosen, reuse_of = _direct(node, i, key, slots, live, dying)
            if chosen is None and opdef.inplace:
                reuse_of = _inplace_target(node, dying, refs)
                chosen = None if reuse_of is None else slots.of[reuse_of]
            if chosen is None and free.get(key):
                chosen = free[key].pop()
            if chosen is None:
                chosen = len(slots.key)
                slots.key.append(key)
                slots.holder.append({"workspace": f"_ws[{chosen}]", "static": f"_buf{chosen}"}.get(mode, var))
                if mode == "fresh":  # the first holder allocates the array itself
                    slots.put(node, chosen)
                    slots.lines.append(f"{var} = {text}")
                    _release(dying, reuse_of, slots, free)
                    _pend(slots, target, var, chosen)
                    continue
            slots.put(node, chosen)
            args = [lay.fmt(a) for a in node.args]
            augmented = _augmented(node, args, reuse_of) if mode == "static" else None
            if augmented is None:
                slots.lines.append(f"{var} = {opdef.out(node, args, slots.holder[chosen])}")
            else:
                slots.lines.append(augmented[0])
                _rename(lay, node, augmented[1], live, slots)
            _pend(slots, target, slots.holder[chosen], chosen)
        elif node.ndim == 0 and opdef.out is not None and not opdef.inplace:
            # a scalar reduction: the ufunc's own reduce, without np.sum's Python wrapper
            slots.lines.append(f"{var} = {opdef.out(node, [lay.fmt(a) for a in node.args], 'None')}")
            _pend(slots, target, var, None)
        else:
            # an output that may view an array the update changes is copied where it is computed
            copy = target is not None and (opdef.view or opdef.out is None) and node.ndim
            slots.lines.append(f"{var} = np.array({text})" if copy else f"{var} = {text}")
            _pend(slots, target, var, None)
        _release(dying, reuse_of, slots, free)
    return slots


def _augmented(node: Expr, args: list[Fmt], into: int | None) -> tuple[str, Fmt] | None:
    """``a -= b`` (and ``a``) for an op printed as an infix ``+ - * /`` writing into the array of its operand ``a``
    (statement ``into``): the operator costs less per call than the ufunc with ``out=``. None for any other."""
    if into is None or node.opdef.numpy is None or len(node.args) != 2:
        return None
    infix = re.fullmatch(r"a ([-+*/]) b", node.opdef.numpy(node, [Fmt("a", ATOM), Fmt("b", ATOM)]).text)
    i = [id(a) for a in node.args].index(into)
    if infix is None or (i == 1 and infix[1] not in "+*"):  # b - a, b / a: not a's operator
        return None
    return f"{args[i].text} {infix[1]}= {args[1 - i].text}", args[i]


def _rename(lay: Layout, node: Expr, same: Fmt, live: _Liveness, slots: _Slots) -> None:
    """After an augmented assignment into ``same``'s array, later statements call ``node``'s value by that name when
    each of them is formatted here (an out= form); otherwise ``node``'s own name is bound to it."""
    formatted_here = all(
        id(u) in live.statements and u.opdef.out is not None and (u.ndim > 0 or not u.opdef.inplace)
        for u in live.users.get(id(node), ())
    )
    if formatted_here:
        lay.fmts[id(node)] = same
    elif id(node) in live.read or id(node) in slots.untargeted:
        slots.lines.append(f"{lay.names[id(node)]} = {same.text}")


def _direct(
    node: Expr, i: int, key: tuple, slots: _Slots, live: _Liveness, dying: list[int]
) -> tuple[int | None, int | None]:
    """Output ``node``'s target slot and the dying value it overwrites, when statement ``i`` may write straight
    into its target: the array's value is no longer read, or read only by this element-wise statement itself."""
    s = slots.of[id(slots.targets[id(node)])]
    held = slots.occupant[s]
    if slots.key[s] != key:
        return None, None
    if live.last.get(held, -1) < i:
        return s, None
    if held in dying and node.opdef.inplace and _inplace_target(node, [held], live.refs) == held:
        return s, held
    return None, None


def _pend(slots: _Slots, target: Expr | None, value: str, s: int | None) -> None:
    """Copy ``value`` into ``target`` after the statements unless it was written there already."""
    if target is not None and (s is None or slots.holder[s] != target.label):
        slots.pending.append((target.label, value))


def _write_outputs(lay: Layout, roots: list[Expr], into: Into, slots: _Slots) -> list[str]:
    """The copies into targets that statements could not write directly: a symbol output is first copied aside,
    then every copy runs, each reading a buffer no copy writes."""
    lines: list[str] = []
    done = {(id(n), slots.targets[id(n)]) for n, _, _ in lay.lines if id(n) in slots.targets}
    for r, t in zip(roots, into.targets):
        if t is None or r is t or (id(r), t) in done:
            continue
        done.add((id(r), t))
        value = lay.fmt(r).text
        if r.is_symbol:  # the symbol's array may itself receive an output below
            lines.append(f"_{r.label} = np.array({value})")
            value = f"_{r.label}"
        elif id(r) in slots.of:
            value = slots.holder[slots.of[id(r)]]
        slots.pending.append((t.label, value))
    return lines + [f"np.copyto({t}, {v})" for t, v in slots.pending]


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
    out_slots = sorted({slot_of[id(r)] for r in roots if id(r) in slot_of} - slots.symbolic)
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
    allocs = []
    for s, (dims, dt) in enumerate(slot_key):
        array = views.get(s) or f"np.empty({shape_of(dims)}, dtype={dtype_source(dt)})"
        allocs.append(f"        {'None' if s in slots.symbolic else array},")  # None: a symbol's own array
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


def _static_buffers(slots: _Slots) -> list[str]:
    """Module-level allocations of the buffers of a ``"static"`` plan (every shape known)."""
    allocs = []
    for s, (dims, dt) in enumerate(slots.key):
        if s in slots.symbolic:
            continue
        if dims is None or not all(d.isdigit() for d in dims):
            raise ValueError("static buffers need shapes known when the code is generated")
        shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        allocs.append(f"{slots.holder[s]} = np.empty({shape}, dtype={dtype_source(dt)})")
    return ["\n".join(allocs)] if allocs else []


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


def _release(dying: list[int], kept: int | None, slots: _Slots, free: dict[tuple, list[int]]) -> None:
    """Hand the buffers of the values dying here back for reuse (not ``kept``'s, nor a pinned target's)."""
    for k in dying:
        s = slots.of[k]
        if k != kept and s not in slots.pinned:
            free.setdefault(slots.key[s], []).append(s)
