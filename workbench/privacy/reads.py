"""Which fields the steps of a plan read: personal fields nobody reads stay encrypted.

A step that never looks at a personal field does not need it decrypted: its tokens can pass
through the step (a ``{**e, ...}`` copy keeps them) and be written out as they were read. This
module finds, for each topic the engine reads, the value fields its sub-topology's steps may
read, by looking at the steps' Python bytecode:

* :func:`function_reads` follows the record argument of a one-argument function through its
  bytecode (CPython 3.11/3.12, a symbolic stack): the argument may only be subscripted or
  ``.get`` with a constant string (a field read), copied into a dict display (``{**e, ...}``,
  whose result may only be extended and returned), tested for truth, discarded or returned.
  Anything else — the record passed to a function, iterated, stored, a dynamic field name, an
  exception handler, a nested function, an opcode not listed — gives ``None``: the step may
  read every field.
* :func:`plan_reads` walks each sub-topology: when every step is a ``map``/``filter``/
  ``flat_map``/``peek``/``key_by``/``group_by`` (with a function as above or a field name)
  or the source's time field, ending in sinks, its inputs get the set of fields read; any
  other step (stateful steps, expressions, ``with_record``) means every field.

A wrong guess can never write plaintext: a field left encrypted stays a token, which reads as
ciphertext in the step and is written out as ciphertext. ``tests/privacy/test_lazy.py`` lists
the functions that must be refused.
"""

from __future__ import annotations

import builtins
import dis
import functools
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LazyPlan", "expr_reads", "function_reads", "plan_reads"]

#: builtins a step may call and still be "pure" (cannot bring in values from elsewhere)
_PURE_BUILTINS = frozenset({
    "abs", "bool", "divmod", "float", "int", "len", "max", "min", "pow", "round", "str",
    "sum", "isinstance", "hash", "repr", "format", "ascii", "chr", "ord", "hex", "oct", "bin",
})
#: builtins that reach a frame's locals or code: reject the function
_REFUSED = frozenset({"locals", "vars", "eval", "exec", "globals", "getattr", "__import__",
                      "compile", "open", "input", "breakpoint", "dir", "setattr", "delattr"})
_NOSTACK = frozenset({"RESUME", "NOP", "PRECALL", "KW_NAMES", "CACHE", "EXTENDED_ARG",
                      "COPY_FREE_VARS"})
_BINARY = frozenset({"BINARY_OP", "COMPARE_OP", "IS_OP", "CONTAINS_OP"})
_UNARY = frozenset({"UNARY_NEGATIVE", "UNARY_NOT", "UNARY_INVERT", "UNARY_POSITIVE"})
_BUILD = frozenset({"BUILD_TUPLE", "BUILD_LIST", "BUILD_SET", "BUILD_STRING"})
_POP_JUMPS = frozenset({
    "POP_JUMP_FORWARD_IF_FALSE", "POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_FORWARD_IF_NONE",
    "POP_JUMP_FORWARD_IF_NOT_NONE", "POP_JUMP_BACKWARD_IF_FALSE", "POP_JUMP_BACKWARD_IF_TRUE",
    "POP_JUMP_BACKWARD_IF_NONE", "POP_JUMP_BACKWARD_IF_NOT_NONE", "POP_JUMP_IF_FALSE",
    "POP_JUMP_IF_TRUE", "POP_JUMP_IF_NONE", "POP_JUMP_IF_NOT_NONE"})
_OR_POP = frozenset({"JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP"})
_JUMPS = frozenset({"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP"})
_MAX_STATES = 5_000
#: 3.12+: LOAD_ATTR with the low bit set loads a method (LOAD_METHOD of 3.11)
_ATTR_METHOD = sys.version_info >= (3, 12)

# symbolic stack items
_P, _S, _D, _X, _NULL, _GET, _SELF = "P", "S", "D", "X", "NULL", "GET", "SELF"
_HELD = frozenset({_P, _S, _SELF})  # items that hold the record's tokens


class _Refused(Exception):
    pass


@dataclass(frozen=True)
class Reads:
    """What a function reads of its record argument."""

    fields: frozenset[str]
    #: it uses nothing but its argument, constants and the builtins of ``_PURE_BUILTINS``:
    #: its results hold no value that came from elsewhere (another record, a global)
    pure: bool
    #: the field names it may set in the records it returns (the constant keys of its dict
    #: displays); ``None``: any (a key that is not a constant, a dict from elsewhere merged)
    writes: frozenset[str] | None = frozenset()


def function_reads(fn: Any) -> Reads | None:
    """The fields a one-argument function reads of its argument (``None``: it may read every
    field, or do anything with the record). See the module docstring."""
    if not isinstance(fn, types.FunctionType):
        return None
    code = fn.__code__
    if (code.co_argcount != 1 or code.co_kwonlyargcount or code.co_posonlyargcount > 1
            or code.co_flags & (0x04 | 0x08 | 0x20 | 0x80 | 0x100 | 0x200)):
        return None  # *args, **kwargs, generators, coroutines
    if getattr(code, "co_exceptiontable", b""):
        return None  # handlers are not followed
    arg = code.co_varnames[0]
    if arg in code.co_cellvars:
        return None
    try:
        return _follow(fn, code, arg)
    except _Refused:
        return None


def _refuse() -> None:
    raise _Refused


def _const_name(item: Any) -> str:
    if item.__class__ is tuple and item[0] == "C" and isinstance(item[1], str):
        return str(item[1])
    raise _Refused


def _pop(stack: list[Any], n: int = 1) -> list[Any]:
    if n > len(stack):
        raise _Refused
    out = stack[len(stack) - n:]
    del stack[len(stack) - n:]
    return out


def _plain(items: Iterable[Any]) -> None:
    """Refuse when one of ``items`` holds the record's tokens."""
    for x in items:
        if x in _HELD or x == _GET:
            raise _Refused


def _follow(fn: types.FunctionType, code: types.CodeType, arg: str) -> Reads:
    instrs = list(dis.get_instructions(code))
    at = {ins.offset: i for i, ins in enumerate(instrs)}
    reads: set[str] = set()
    pure = not code.co_freevars
    writes: set[str] | None = set()
    seen: set[tuple[int, tuple[str, ...]]] = set()
    todo: list[tuple[int, tuple[Any, ...]]] = [(0, ())]
    fglobals = fn.__globals__

    while todo:
        i, stack_t = todo.pop()
        key = (i, tuple(map(str, stack_t)))
        if key in seen:
            continue
        seen.add(key)
        if len(seen) > _MAX_STATES:
            _refuse()
        stack = list(stack_t)
        while True:
            if i >= len(instrs):
                _refuse()
            ins = instrs[i]
            op, a = ins.opname, ins.arg or 0
            nxt: int | None = i + 1

            pop = functools.partial(_pop, stack)

            if op in _NOSTACK:
                pass
            elif op == "LOAD_CONST":
                stack.append(("C", ins.argval))
            elif op in ("LOAD_FAST", "LOAD_FAST_CHECK"):
                stack.append(_P if ins.argval == arg else _X)
            elif op == "STORE_FAST":
                if ins.argval == arg:
                    _refuse()
                _plain(pop())
            elif op == "LOAD_GLOBAL":
                name = ins.argval
                if name in _REFUSED:
                    _refuse()
                if a & 1:
                    stack.append(_NULL)
                if name in fglobals or name not in _PURE_BUILTINS or not hasattr(builtins, name):
                    pure = False
                stack.append(_X)
            elif op == "LOAD_DEREF":
                pure = False
                stack.append(_X)
            elif op == "PUSH_NULL":
                stack.append(_NULL)
            elif op == "LOAD_METHOD" or (op == "LOAD_ATTR" and _ATTR_METHOD and a & 1):
                (obj,) = pop()
                if obj == _P:
                    if ins.argval != "get":
                        _refuse()
                    stack += [_GET, _SELF]
                else:
                    _plain([obj])
                    stack += [_X, _X]
            elif op == "LOAD_ATTR":
                _plain(pop())
                stack.append(_X)
            elif op == "CALL":
                items = pop(a + 2)
                if items[0] == _GET and items[1] == _SELF and a in (1, 2):
                    reads.add(_const_name(items[2]))
                    _plain(items[3:])
                else:
                    _plain(items)
                stack.append(_X)
            elif op == "BINARY_SUBSCR":
                obj, k = pop(2)
                if obj == _P:
                    reads.add(_const_name(k))
                else:
                    _plain([obj, k])
                stack.append(_X)
            elif op in _BINARY:
                _plain(pop(2))
                stack.append(_X)
            elif op in _UNARY:
                _plain(pop())
                stack.append(_X)
            elif op == "BUILD_MAP":
                items = pop(2 * a)
                _plain(items)
                writes = _keys_written(writes, items[0::2])
                stack.append(_D)
            elif op == "BUILD_CONST_KEY_MAP":
                items = pop(a + 1)
                _plain(items)
                names = items[-1]
                writes = _keys_written(writes, [("C", k) for k in names[1]]
                                       if names.__class__ is tuple and names[0] == "C"
                                       and names[1].__class__ is tuple else [None])
                stack.append(_D)
            elif op in _BUILD:
                _plain(pop(a))
                stack.append(_X)
            elif op == "FORMAT_VALUE":
                _plain(pop(2 if a & 0x04 else 1))
                stack.append(_X)
            elif op in ("DICT_UPDATE", "DICT_MERGE"):
                (item,) = pop()
                if a < 1 or a > len(stack):
                    _refuse()
                target = stack[-a]
                if item == _P:
                    if target not in (_D, _S):
                        _refuse()
                    stack[-a] = _S
                else:
                    _plain([item])
                    if item != _D:  # a mapping from elsewhere: its keys are not known
                        writes = None
            elif op == "MAP_ADD":
                _plain(pop(2))
                writes = None  # (a comprehension's keys)
            elif op == "POP_TOP":
                pop()
            elif op == "COPY":
                if a < 1 or a > len(stack):
                    _refuse()
                stack.append(stack[-a])
            elif op == "SWAP":
                if a < 2 or a > len(stack):
                    _refuse()
                stack[-1], stack[-a] = stack[-a], stack[-1]
            elif op == "RETURN_VALUE":
                pop()
                nxt = None
            elif op == "RETURN_CONST":
                nxt = None
            elif op in _POP_JUMPS:
                pop()
                todo.append((at[ins.argval], tuple(stack)))
            elif op in _OR_POP:
                todo.append((at[ins.argval], tuple(stack)))
                pop()
            elif op in _JUMPS:
                nxt = at[ins.argval]
            else:
                _refuse()
            if nxt is None:
                break
            i = nxt
    return Reads(frozenset(reads), pure, None if writes is None else frozenset(writes))


def _keys_written(writes: set[str] | None, keys: list[Any]) -> set[str] | None:
    """``writes`` with the keys of a dict display (symbolic stack items) added; ``None`` when
    one of them is not a constant string."""
    if writes is None:
        return None
    for k in keys:
        if k.__class__ is not tuple or k[0] != "C" or not isinstance(k[1], str):
            return None
        writes.add(k[1])
    return writes


# ======================================================================== plan analysis
_STEP_OPS = frozenset({"map", "filter", "flat_map", "peek", "key_by", "group_by", "assign",
                       "select", "rename", "drop", "split"})
_PASS_OPS = frozenset({"source", "repartition_source", "merge", "sink", "repartition_sink",
                       "branch"})
_SINK_OPS = frozenset({"sink", "repartition_sink"})


@dataclass
class LazyPlan:
    """For the topics the engine reads: the value fields the steps may read.

    ``reads[topic]``: the fields of ``topic``'s records some step reads (the others stay
    encrypted when they are personal); a topic not listed: every field.
    ``clean[topic]``: for a topic written only by sub-topologies whose steps are pure
    (:class:`Reads`), the input topics of those sub-topologies; while no record read from
    them had a personal value opened, what they write needs no protection pass.
    """

    reads: dict[str, frozenset[str]] = field(default_factory=dict)
    clean: dict[str, frozenset[str]] = field(default_factory=dict)
    #: ``{declared source topic: its Personal}`` whose records may cross the engine untagged
    #: on a private in-process log (``PrivateDriver``): every sub-topology reading it is
    #: followed and pure, reads no personal field, sets no personal-named field, and neither
    #: sets, renames nor drops the subject field or renames a personal one (``select`` is not
    #: followed for this); everything it writes is a ``sink`` that no sub-topology reads,
    #: written only from such topics of the same ``Personal``. A personal value there is
    #: therefore, in every output record, the one its input record had, under the same name,
    #: beside the same subject.
    deferred: dict[str, Any] = field(default_factory=dict)
    #: ``{sink topic: Personal}``: the sinks those sub-topologies write
    deferred_sinks: dict[str, Any] = field(default_factory=dict)


def _step_reads(op: str, params: dict[str, Any]) -> Reads | None:
    """What a step reads of its records, and which of their fields it may set."""
    got = _step_reads_any(op, params)
    if got is None or op in _VALUE_OPS:
        return got
    return Reads(got.fields, got.pure)  # (a predicate's or a key's result is not a record)


#: the steps whose results are records (the others' function results are a truth value, a
#: key, or nothing)
_VALUE_OPS = frozenset({"map", "flat_map", "assign", "select", "rename"})


def _step_reads_any(op: str, params: dict[str, Any]) -> Reads | None:
    if params.get("with_record"):
        return None
    if op in ("assign", "select"):
        got = _all_reads([expr_reads(e) for e in params["exprs"].values()])
        return None if got is None else Reads(got.fields, got.pure,
                                              frozenset(params["exprs"]))
    if op == "rename":  # fields moved, their values not looked at
        return Reads(frozenset(), True, frozenset(params["mapping"].values()))
    if op == "drop":
        return Reads(frozenset(), True)
    if op == "split":
        return _all_reads([expr_reads(p) if _is_expr(p) else function_reads(p)
                           for p in params["branches"].values()])
    if params.get("expr") is not None:
        return expr_reads(params["expr"])
    if op in ("key_by", "group_by") and params.get("field") is not None:
        return Reads(frozenset([params["field"]]), True)
    fn = params.get("fn")
    return function_reads(fn) if fn is not None else None


def _is_expr(x: Any) -> bool:
    from ..expressions import Expr

    return isinstance(x, Expr)


#: the literal types an expression may hold and still be "pure" (``Reads.pure``)
_PLAIN_LITERALS = frozenset({str, int, float, bool, type(None), type})


def expr_reads(e: Any) -> Reads:
    """What a column expression (``wb.col(...)``, or a constant for ``assign``) reads: the
    fields it names (:meth:`~workbench.expressions.Expr.columns`, exactly: an expression
    reads nothing else). It is pure unless a literal is other than a plain scalar (a tagged
    personal value, an object)."""
    if not _is_expr(e):
        return Reads(frozenset(), e.__class__ in _PLAIN_LITERALS)
    return Reads(frozenset(e.columns()), _plain_literals(e.args))


def _plain_literals(args: Iterable[Any]) -> bool:
    for a in args:
        if _is_expr(a):
            if not _plain_literals(a.args):
                return False
        elif a.__class__ in (tuple, list, frozenset, set):
            if not _plain_literals(a):
                return False
        elif a.__class__ not in _PLAIN_LITERALS:
            return False
    return True


def _all_reads(parts: list[Reads | None]) -> Reads | None:
    """The reads of a step made of several parts (``None`` when one may read anything)."""
    if any(r is None for r in parts):
        return None
    done = [r for r in parts if r is not None]
    writes = [r.writes for r in done if r.writes is not None]
    return Reads(frozenset().union(*(r.fields for r in done)), all(r.pure for r in done),
                 frozenset().union(*writes) if len(writes) == len(done) else None)


def _source_reads(spec: Any, personal: Any) -> Reads | None:
    if getattr(spec, "table", False) or (personal is not None and personal.key):
        return None
    t = getattr(spec, "time", None)
    if t is None:
        return Reads(frozenset(), True)
    if isinstance(t, str):
        return Reads(frozenset([t]), True)
    return function_reads(t) if callable(t) else None


def _moved(op: str, params: dict[str, Any]) -> frozenset[str] | None:
    """The fields a step renames or drops (``None``: it may drop any, a ``select``)."""
    if op == "rename":
        return frozenset(params["mapping"])
    if op == "drop":
        return frozenset(params["columns"])
    if op == "select":
        return None
    return frozenset()


@dataclass
class _Part:
    """What :func:`plan_reads` found of one sub-topology."""

    inputs: frozenset[str]
    ok: bool = True
    pure: bool = True
    fields: set[str] = field(default_factory=set)
    writes: set[str] | None = field(default_factory=set)
    moved: set[str] | None = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)
    sinks: set[str] = field(default_factory=set)  # (``sink`` steps only)


def plan_reads(plan: Any) -> LazyPlan:
    """:class:`LazyPlan` of a compiled plan."""
    out = LazyPlan()
    writers: dict[str, list[frozenset[str] | None]] = {}
    eager: set[str] = set()
    parts: list[_Part] = []
    specs: dict[str, Any] = {}  # declared source (or table) topic -> Personal
    for st in plan.subtopologies:
        part = _Part(frozenset(st.inputs))
        parts.append(part)
        for pn in st.nodes:
            params = (pn.node.params if pn.node is not None else None) or {}
            if params.get("personal") is not None and "spec" in params:
                specs[params["spec"].topic] = params["personal"]
            if pn.op in _STEP_OPS:
                r = _step_reads(pn.op, params)
            elif pn.op == "source" and "spec" in params:
                r = _source_reads(params["spec"], params.get("personal"))
            elif pn.op in _PASS_OPS:
                r = Reads(frozenset(), True)
            else:
                r = None
            if r is None:
                part.ok = False
                break
            part.fields |= r.fields
            part.pure = part.pure and r.pure
            part.writes = None if part.writes is None or r.writes is None else \
                part.writes | r.writes
            moved = _moved(pn.op, params)
            part.moved = None if part.moved is None or moved is None else part.moved | moved
        for t in st.inputs:
            if part.ok:
                out.reads[t] = frozenset(part.fields) | out.reads.get(t, frozenset())
            else:
                eager.add(t)
        part.sinks = {pn.topic for pn in st.nodes if pn.op == "sink" and pn.topic}
        part.outputs = {pn.topic for pn in st.nodes if pn.op in _SINK_OPS and pn.topic} | \
            set(getattr(st, "outputs", ()))
    names = frozenset().union(*(spec.fields for spec in specs.values()))
    for part in parts:
        for t in part.outputs:
            writers.setdefault(t, []).append(part.inputs if _clean(part, names) else None)
    for t, ws in writers.items():
        if all(w is not None for w in ws):
            out.clean[t] = frozenset().union(*[w for w in ws if w is not None])
    for t in eager:  # a topic also read by a sub-topology not analysed: every field
        out.reads.pop(t, None)
    _defer(out, parts, specs)
    return out


def _clean(part: _Part, names: frozenset[str]) -> bool:
    """True when what ``part`` writes needs no protection pass while no record it read had a
    personal value opened: its steps are followed and pure, and set no field named like a
    personal field ``names`` (the field-name rule)."""
    return part.ok and part.pure and part.writes is not None and names.isdisjoint(part.writes)


def _defer(out: LazyPlan, parts: list[_Part], specs: dict[str, Any]) -> None:
    """Fill ``out.deferred`` and ``out.deferred_sinks`` (see :class:`LazyPlan`)."""
    read = set().union(*(p.inputs for p in parts)) if parts else set()
    candidates: dict[str, Any] = {}
    for topic, spec in specs.items():
        if spec.key or not isinstance(spec.subject, str) or topic not in out.reads:
            continue
        readers = [p for p in parts if topic in p.inputs]
        keep = {spec.subject, *spec.fields}
        if readers and all(
                p.ok and p.pure and p.fields.isdisjoint(spec.fields)
                and p.writes is not None and spec.subject not in p.writes
                and p.moved is not None and keep.isdisjoint(p.moved)
                and p.outputs == p.sinks and p.sinks.isdisjoint(read)
                and all(t in out.clean for t in p.sinks) for p in readers):
            candidates[topic] = spec
    while True:  # a sink written from a topic that is not a candidate: neither is deferred
        sinks: dict[str, Any] = {}
        for p in parts:
            for topic in p.inputs & candidates.keys():
                for t in p.sinks:
                    sinks.setdefault(t, set()).add(topic)
        drop = {topic for t, topics in sinks.items()
                if not out.clean[t] <= candidates.keys()
                or len({id(candidates[x]) for x in out.clean[t]}) > 1
                for topic in topics}
        if not drop:
            break
        for topic in drop:
            candidates.pop(topic, None)
    out.deferred = candidates
    out.deferred_sinks = {t: candidates[next(iter(topics))] for t, topics in sinks.items()}
