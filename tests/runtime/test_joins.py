"""Joins (``workbench/runtime/join_ops.py``): stream-table, stream-stream, table-table and
foreign-key joins, record by record through the TestDriver.

``RECORDED`` holds inputs and the outputs the real Kafka Streams 4.1.1 TopologyTestDriver
produced for them (``tests/conformance`` oracle, in-memory stores, caching off): the worked
examples 5 and 6 of ``docs/semantics.md``, the conformance case files and further edge cases
(window-store retention, the KIP-633 ``minTime`` hint, outer-store order, foreign-key
instructions). ``test_live_oracle_fuzz`` compares random inputs with the oracle itself when
Java and Maven are available.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.errors import ProcessingError
from workbench.runtime import Engine, ManualClock
from workbench.testing import TestDriver

TOPIC = {"L": "left", "R": "right"}


def joiner(left: Any, right: Any) -> str:
    """Kafka Streams' ``(l, r) -> l + "+" + r`` (Java prints null as ``null``)."""
    return f"{'null' if left is None else left}+{'null' if right is None else right}"


def foreign_key(value: Any) -> Any:
    """The oracle's foreign-key extractor: the part before ``|`` (None without one)."""
    if value is None or "|" not in value:
        return None
    return value[: value.index("|")]


def build(topo: dict[str, Any], name: str = "j") -> wb.Pipeline:
    p = wb.Pipeline(name)
    op, how = topo["op"], topo.get("how", "inner")
    if op == "join_ss":
        p.source("left").join(p.source("right"), how=how, combine=joiner,
                              before=topo["before"], after=topo["after"],
                              grace=topo.get("grace", 0)).to("out")
    elif op == "join_st":
        p.source("left").join(p.table("right"), how=how, combine=joiner).to("out")
    elif op == "join_tt":
        p.table("left").join(p.table("right"), how=how, combine=joiner).to("out")
    elif op == "join_fk":
        p.table("left").join(p.table("right"), how=how, combine=joiner,
                             on=foreign_key).to("out")
    else:  # pragma: no cover
        raise ValueError(op)
    return p


def run_case(topo: dict[str, Any], records: list[tuple[str, Any, Any, int]],
             end: bool = False) -> list[tuple[Any, ...]]:
    """Pipe ``records`` one by one; return ``(input index, key, value, timestamp)`` per output
    (index ``"end"`` for what ``td.end()`` emits)."""
    out: list[tuple[Any, ...]] = []
    with TestDriver(build(topo)) as td:
        sink = td.output("out")
        for i, (side, key, value, ts) in enumerate(records):
            td.input(TOPIC[side]).pipe(key, value, timestamp=ts)
            out.extend((i, r.key, r.value, r.timestamp) for r in sink.read_records())
        if end:
            td.end()
            out.extend(("end", r.key, r.value, r.timestamp) for r in sink.read_records())
    return out


# (name, topology, inputs (side, key, value, ts), Kafka Streams output (input#, key, value, ts))
RECORDED: list[tuple[str, dict[str, Any], list[tuple[str, Any, Any, int]],
                     list[tuple[int, Any, Any, int]]]] = [
    ('ex5-ss-left', {'after': 10, 'before': 10, 'grace': 5, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 0), ('R', 'K', 'a', 5), ('L', 'K', 'B', 20), ('L', 'K', 'C', 30),
      ('R', 'K', 'x', 36)],
     [(1, 'K', 'A+a', 5), (4, 'K', 'B+null', 20), (4, 'K', 'C+x', 36)]),
    ('ex5-ss-left-plus-d20',
     {'after': 10, 'before': 10, 'grace': 5, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 0), ('R', 'K', 'a', 5), ('L', 'K', 'B', 20), ('L', 'K', 'C', 30),
      ('R', 'K', 'x', 36), ('L', 'K', 'D', 20)],
     [(1, 'K', 'A+a', 5), (4, 'K', 'B+null', 20), (4, 'K', 'C+x', 36), (5, 'K', 'D+null', 20)]),
    ('ss-inner-multikey',
     {'after': 10, 'before': 10, 'grace': 5, 'how': 'inner', 'op': 'join_ss'},
     [('L', 'K', 'A', 0), ('R', 'K', 'a', 5), ('R', 'J', 'j', 6), ('L', 'J', 'B', 8),
      ('R', 'K', 'b', 9), ('L', 'K', 'C', 30), ('R', 'K', 'c', 25), ('R', 'K', 'old', 3),
      ('L', None, 'N', 31), ('L', 'K', None, 31)],
     [(1, 'K', 'A+a', 5), (3, 'J', 'B+j', 8), (4, 'K', 'A+b', 9), (6, 'K', 'C+c', 30)]),
    ('ss-outer', {'after': 10, 'before': 10, 'grace': 5, 'how': 'outer', 'op': 'join_ss'},
     [('L', 'K', 'A', 0), ('R', 'K', 'a', 5), ('R', 'K', 'b', 12), ('L', 'J', 'B', 20),
      ('R', 'J', 'c', 50), ('L', 'K', 'C', 51), ('L', None, 'N', 52), ('R', None, 'n', 52)],
     [(1, 'K', 'A+a', 5), (4, 'K', 'null+b', 12), (4, 'J', 'B+null', 20),
      (6, None, 'N+null', 52), (7, None, 'null+n', 52)]),
    ('ss-left-nullkey', {'after': 10, 'before': 10, 'grace': 0, 'how': 'left', 'op': 'join_ss'},
     [('L', None, 'N', 1), ('L', 'K', None, 2), ('R', None, 'n', 3), ('L', 'K', 'A', 4),
      ('R', 'K', 'a', 4)],
     [(0, None, 'N+null', 1), (4, 'K', 'A+a', 4)]),
    ('ss-inner-asymmetric',
     {'after': 0, 'before': 5, 'grace': 0, 'how': 'inner', 'op': 'join_ss'},
     [('L', 'K', 'A', 10), ('R', 'K', 'a', 5), ('R', 'K', 'b', 10), ('R', 'K', 'c', 11),
      ('R', 'K', 'd', 4), ('R', 'K', 'e', 12), ('L', 'K', 'B', 12), ('L', 'K', 'C', 9)],
     [(1, 'K', 'A+a', 10), (2, 'K', 'A+b', 10), (6, 'K', 'B+b', 12), (6, 'K', 'B+c', 12),
      (6, 'K', 'B+e', 12)]),
    ('ss-inner-expired-put',
     {'after': 10, 'before': 10, 'grace': 0, 'how': 'inner', 'op': 'join_ss'},
     [('R', 'K', 'x', 210), ('L', 'K', 'A', 190), ('R', 'K', 'y', 185), ('L', 'K', 'B', 186)],
     [(2, 'K', 'A+y', 190)]),
    ('ss-left-asymmetric-after',
     {'after': 7, 'before': 0, 'grace': 2, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 10), ('R', 'K', 'a', 9), ('R', 'K', 'b', 17), ('L', 'K', 'B', 20),
      ('R', 'K', 'z', 29), ('R', 'K', 'y', 30)],
     [(2, 'K', 'A+b', 17), (5, 'K', 'B+null', 20)]),
    ('ss-left-boundary',
     {'after': 10, 'before': 10, 'grace': 5, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 0), ('R', 'J', 'x', 15), ('R', 'J', 'y', 16)], [(2, 'K', 'A+null', 0)]),
    ('ss-outer-boundary-right-by-left',
     {'after': 10, 'before': 3, 'grace': 2, 'how': 'outer', 'op': 'join_ss'},
     [('R', 'K', 'a', 0), ('L', 'J', 'x', 5), ('L', 'J', 'y', 6), ('L', 'J', 'z', 12),
      ('L', 'J', 'w', 13)],
     [(4, 'K', 'null+a', 0)]),
    ('ss-outer-boundary-right-by-right',
     {'after': 10, 'before': 3, 'grace': 2, 'how': 'outer', 'op': 'join_ss'},
     [('R', 'K', 'a', 0), ('R', 'J', 'x', 5), ('R', 'J', 'y', 6)], [(2, 'K', 'null+a', 0)]),
    ('ss-outer-boundary-left-by-right',
     {'after': 10, 'before': 3, 'grace': 2, 'how': 'outer', 'op': 'join_ss'},
     [('L', 'K', 'A', 0), ('R', 'J', 'x', 5), ('R', 'J', 'y', 12), ('R', 'J', 'z', 13)],
     [(2, 'J', 'null+x', 5), (3, 'K', 'A+null', 0)]),
    ('ss-left-out-of-order',
     {'after': 10, 'before': 10, 'grace': 5, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 0), ('L', 'J', 'B', 20), ('L', 'J', 'C', 19), ('R', 'J', 'x', 19),
      ('R', 'J', 'y', 20)],
     [(1, 'K', 'A+null', 0), (3, 'J', 'C+x', 19), (3, 'J', 'B+x', 20), (4, 'J', 'C+y', 20),
      (4, 'J', 'B+y', 20)]),
    ('ex6-st-left', {'how': 'left', 'op': 'join_st'},
     [('L', 'K', 's1', 10), ('R', 'K', 't1', 5), ('L', 'K', 's2', 7), ('L', 'K', 's0', 3),
      ('R', 'K', None, 20), ('L', 'K', 's3', 25)],
     [(0, 'K', 's1+null', 10), (2, 'K', 's2+t1', 7), (3, 'K', 's0+t1', 3),
      (5, 'K', 's3+null', 25)]),
    ('ex6-st-inner', {'how': 'inner', 'op': 'join_st'},
     [('L', 'K', 's1', 10), ('R', 'K', 't1', 5), ('L', 'K', 's2', 7), ('L', 'K', 's0', 3),
      ('R', 'K', None, 20), ('L', 'K', 's3', 25)],
     [(2, 'K', 's2+t1', 7), (3, 'K', 's0+t1', 3)]),
    ('st-left-nulls-multikey', {'how': 'left', 'op': 'join_st'},
     [('L', 'K', 'A', 3), ('R', 'K', 'a', 4), ('L', 'K', 'B', 5), ('R', 'J', 'b', 5),
      ('L', 'J', 'x', 6), ('L', 'K', None, 7), ('L', None, 'N', 7), ('R', 'K', None, 8),
      ('L', 'K', 'C', 9), ('R', None, 'z', 10)],
     [(0, 'K', 'A+null', 3), (2, 'K', 'B+a', 5), (4, 'J', 'x+b', 6), (6, None, 'N+null', 7),
      (8, 'K', 'C+null', 9)]),
    ('st-inner-nulls-multikey', {'how': 'inner', 'op': 'join_st'},
     [('L', 'K', 'A', 3), ('R', 'K', 'a', 4), ('L', 'K', 'B', 5), ('R', 'J', 'b', 5),
      ('L', 'J', 'x', 6), ('L', 'K', None, 7), ('L', None, 'N', 7), ('R', 'K', None, 8),
      ('L', 'K', 'C', 9), ('R', None, 'z', 10)],
     [(2, 'K', 'B+a', 5), (4, 'J', 'x+b', 6)]),
    ('tt-inner', {'how': 'inner', 'op': 'join_tt'},
     [('L', 'K', 'l1', 1), ('R', 'K', 'r1', 2), ('L', 'K', 'l2', 5), ('R', 'K', 'r2', 3),
      ('R', 'J', 'rj', 4), ('L', 'K', None, 6), ('R', 'K', None, 7), ('L', 'J', 'lj', 2),
      ('R', 'J', None, 8), ('L', 'M', None, 9), ('R', 'M', None, 10), ('L', 'K', 'l3', 11)],
     [(1, 'K', 'l1+r1', 2), (2, 'K', 'l2+r1', 5), (3, 'K', 'l2+r2', 5), (5, 'K', None, 6),
      (7, 'J', 'lj+rj', 4), (8, 'J', None, 8)]),
    ('tt-left', {'how': 'left', 'op': 'join_tt'},
     [('L', 'K', 'l1', 1), ('R', 'K', 'r1', 2), ('L', 'K', 'l2', 5), ('R', 'K', 'r2', 3),
      ('R', 'J', 'rj', 4), ('L', 'K', None, 6), ('R', 'K', None, 7), ('L', 'J', 'lj', 2),
      ('R', 'J', None, 8), ('L', 'M', None, 9), ('R', 'M', None, 10), ('L', 'K', 'l3', 11)],
     [(0, 'K', 'l1+null', 1), (1, 'K', 'l1+r1', 2), (2, 'K', 'l2+r1', 5), (3, 'K', 'l2+r2', 5),
      (5, 'K', None, 6), (7, 'J', 'lj+rj', 4), (8, 'J', 'lj+null', 8),
      (11, 'K', 'l3+null', 11)]),
    ('tt-outer', {'how': 'outer', 'op': 'join_tt'},
     [('L', 'K', 'l1', 1), ('R', 'K', 'r1', 2), ('L', 'K', 'l2', 5), ('R', 'K', 'r2', 3),
      ('R', 'J', 'rj', 4), ('L', 'K', None, 6), ('R', 'K', None, 7), ('L', 'J', 'lj', 2),
      ('R', 'J', None, 8), ('L', 'M', None, 9), ('R', 'M', None, 10), ('L', 'K', 'l3', 11)],
     [(0, 'K', 'l1+null', 1), (1, 'K', 'l1+r1', 2), (2, 'K', 'l2+r1', 5), (3, 'K', 'l2+r2', 5),
      (4, 'J', 'null+rj', 4), (5, 'K', 'null+r2', 6), (6, 'K', None, 7), (7, 'J', 'lj+rj', 4),
      (8, 'J', 'lj+null', 8), (11, 'K', 'l3+null', 11)]),
    ('fk-inner', {'how': 'inner', 'op': 'join_fk'},
     [('L', 'o1', 'c1|apples', 1), ('R', 'c1', 'Alice', 2), ('L', 'o2', 'c1|pears', 3),
      ('L', 'o3', 'c2|plums', 4), ('R', 'c2', 'Bob', 5), ('R', 'c1', 'Alicia', 6),
      ('L', 'o1', 'c2|apples', 7), ('R', 'c2', None, 8), ('L', 'o2', None, 9),
      ('L', 'o4', 'nofk', 10), ('L', 'o3', 'c1|plums', 11)],
     [(1, 'o1', 'c1|apples+Alice', 2), (2, 'o2', 'c1|pears+Alice', 3),
      (4, 'o3', 'c2|plums+Bob', 5), (5, 'o1', 'c1|apples+Alicia', 6),
      (5, 'o2', 'c1|pears+Alicia', 6), (6, 'o1', 'c2|apples+Bob', 7), (7, 'o1', None, 8),
      (7, 'o3', None, 8), (8, 'o2', None, 9), (10, 'o3', 'c1|plums+Alicia', 11)]),
    ('fk-left', {'how': 'left', 'op': 'join_fk'},
     [('L', 'o1', 'c1|apples', 1), ('R', 'c1', 'Alice', 2), ('L', 'o2', 'c1|pears', 3),
      ('L', 'o3', 'c2|plums', 4), ('R', 'c2', 'Bob', 5), ('R', 'c1', 'Alicia', 6),
      ('L', 'o1', 'c2|apples', 7), ('R', 'c2', None, 8), ('L', 'o2', None, 9),
      ('L', 'o4', 'nofk', 10), ('L', 'o3', 'c1|plums', 11)],
     [(0, 'o1', 'c1|apples+null', 1), (1, 'o1', 'c1|apples+Alice', 2),
      (2, 'o2', 'c1|pears+Alice', 3), (3, 'o3', 'c2|plums+null', 4),
      (4, 'o3', 'c2|plums+Bob', 5), (5, 'o1', 'c1|apples+Alicia', 6),
      (5, 'o2', 'c1|pears+Alicia', 6), (6, 'o1', 'c2|apples+Bob', 7),
      (7, 'o1', 'c2|apples+null', 8), (7, 'o3', 'c2|plums+null', 8), (8, 'o2', None, 9),
      (9, 'o4', 'nofk+null', 10), (10, 'o3', 'c1|plums+Alicia', 11)]),
    ('p-ret-inner', {'after': 10, 'before': 10, 'grace': 0, 'how': 'inner', 'op': 'join_ss'},
     [('L', 'K', 'A', 80), ('L', 'K', 'B', 100), ('R', 'K', 'a', 85), ('L', 'K', 'C', 79),
      ('R', 'K', 'b', 75)],
     [(3, 'K', 'C+a', 85)]),
    ('p-ret-nullval', {'after': 10, 'before': 10, 'grace': 0, 'how': 'inner', 'op': 'join_ss'},
     [('L', 'K', 'A', 80), ('L', 'K', None, 100), ('R', 'K', 'a', 85)], []),
    ('p-ret-nullval2', {'after': 10, 'before': 10, 'grace': 0, 'how': 'inner', 'op': 'join_ss'},
     [('L', 'K', 'A', 80), ('L', 'J', 'x', 100), ('R', 'K', 'a', 85)], []),
    ('p-throttle-default',
     {'after': 10, 'before': 10, 'grace': 0, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 0), ('L', 'K', 'B', 5), ('R', 'J', 'x', 11), ('R', 'J', 'y', 16)],
     [(2, 'K', 'A+null', 0), (3, 'K', 'B+null', 5)]),
    ('p-throttle-zero', {'after': 10, 'before': 10, 'grace': 0, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 0), ('L', 'K', 'B', 5), ('R', 'J', 'x', 11), ('R', 'J', 'y', 16)],
     [(2, 'K', 'A+null', 0), (3, 'K', 'B+null', 5)]),
    ('p-order', {'after': 5, 'before': 5, 'grace': 0, 'how': 'outer', 'op': 'join_ss'},
     [('R', 'B', 'rb', 1), ('L', 'C', 'lc', 1), ('L', 'A', 'la', 1), ('R', 'D', 'rd', 1),
      ('L', 'Z', 'z', 20)],
     [(4, 'B', 'null+rb', 1), (4, 'D', 'null+rd', 1), (4, 'A', 'la+null', 1),
      (4, 'C', 'lc+null', 1)]),
    ('p-mintime', {'after': 10, 'before': 0, 'grace': 0, 'how': 'outer', 'op': 'join_ss'},
     [('L', 'A', 'a', 15), ('R', 'B', 'b', 16), ('L', 'X', 'x', 22), ('R', 'Y', 'y', 23),
      ('L', 'W', 'w', 26), ('R', 'V', 'v', 27)],
     [(3, 'B', 'null+b', 16), (5, 'A', 'a+null', 15), (5, 'Y', 'null+y', 23)]),
    ('p-dups', {'after': 5, 'before': 5, 'grace': 0, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 1), ('L', 'K', 'B', 1), ('R', 'K', 'x', 3), ('L', 'K', 'C', 2),
      ('L', 'K', 'D', 2), ('R', 'J', 'z', 20)],
     [(2, 'K', 'A+x', 3), (2, 'K', 'B+x', 3), (3, 'K', 'C+x', 3), (4, 'K', 'D+x', 3)]),
    ('p-tt-inner', {'how': 'inner', 'op': 'join_tt'},
     [('R', 'M', 'r', 1), ('L', 'M', None, 2), ('L', 'N', None, 3), ('R', 'N', None, 4),
      ('L', 'M', 'l', 5), ('L', 'M', 'l', 6), ('R', 'M', None, 7), ('L', 'M', None, 8),
      ('R', 'M', None, 9)],
     [(1, 'M', None, 2), (4, 'M', 'l+r', 5), (5, 'M', 'l+r', 6), (6, 'M', None, 7)]),
    ('p-tt-left', {'how': 'left', 'op': 'join_tt'},
     [('R', 'M', 'r', 1), ('L', 'M', None, 2), ('L', 'N', None, 3), ('R', 'N', None, 4),
      ('L', 'M', 'l', 5), ('L', 'M', 'l', 6), ('R', 'M', None, 7), ('L', 'M', None, 8),
      ('R', 'M', None, 9)],
     [(1, 'M', None, 2), (4, 'M', 'l+r', 5), (5, 'M', 'l+r', 6), (6, 'M', 'l+null', 7),
      (7, 'M', None, 8)]),
    ('p-tt-outer', {'how': 'outer', 'op': 'join_tt'},
     [('R', 'M', 'r', 1), ('L', 'M', None, 2), ('L', 'N', None, 3), ('R', 'N', None, 4),
      ('L', 'M', 'l', 5), ('L', 'M', 'l', 6), ('R', 'M', None, 7), ('L', 'M', None, 8),
      ('R', 'M', None, 9)],
     [(0, 'M', 'null+r', 1), (1, 'M', 'null+r', 2), (4, 'M', 'l+r', 5), (5, 'M', 'l+r', 6),
      (6, 'M', 'l+null', 7), (7, 'M', None, 8)]),
    ('p-fk-inner', {'how': 'inner', 'op': 'join_fk'},
     [('L', 'o1', 'c1|a', 1), ('R', 'c1', 'R', 2), ('L', 'o1', 'nofk', 3), ('R', 'c1', 'S', 4),
      ('L', 'o1', 'c1|b', 5), ('R', 'c1', 'T', 6), ('L', 'o1', 'c1|a', 7), ('L', 'o1', None, 8),
      ('L', 'o2', 'c9|x', 9), ('L', 'o2', None, 10), ('R', 'c9', None, 11),
      ('L', 'o3', 'c1|z', 12), ('R', 'c1', 'U', 3), ('L', 'o3', 'c1|y', 1),
      ('L', 'o5', 'c7|q', 20), ('R', 'c7', None, 21), ('L', 'o5', None, 22),
      ('L', 'o5', None, 23), ('L', 'o6', 'nofk', 24), ('L', 'o6', None, 25),
      ('L', 'o7', 'c1|m', 26), ('L', 'o7', 'c1|m', 27), ('R', 'c1', 'U', 28),
      ('L', None, 'c1|n', 29), ('R', None, 'zz', 30)],
     [(1, 'o1', 'c1|a+R', 2), (2, 'o1', None, 3), (4, 'o1', 'c1|b+S', 5),
      (5, 'o1', 'c1|b+T', 6), (6, 'o1', 'c1|a+T', 7), (7, 'o1', None, 8), (9, 'o2', None, 10),
      (11, 'o3', 'c1|z+T', 12), (12, 'o3', 'c1|z+U', 3), (13, 'o3', 'c1|y+U', 3),
      (15, 'o5', None, 21), (16, 'o5', None, 22), (20, 'o7', 'c1|m+U', 26),
      (21, 'o7', 'c1|m+U', 27), (22, 'o3', 'c1|y+U', 28), (22, 'o7', 'c1|m+U', 28)]),
    ('p-fk-left', {'how': 'left', 'op': 'join_fk'},
     [('L', 'o1', 'c1|a', 1), ('R', 'c1', 'R', 2), ('L', 'o1', 'nofk', 3), ('R', 'c1', 'S', 4),
      ('L', 'o1', 'c1|b', 5), ('R', 'c1', 'T', 6), ('L', 'o1', 'c1|a', 7), ('L', 'o1', None, 8),
      ('L', 'o2', 'c9|x', 9), ('L', 'o2', None, 10), ('R', 'c9', None, 11),
      ('L', 'o3', 'c1|z', 12), ('R', 'c1', 'U', 3), ('L', 'o3', 'c1|y', 1),
      ('L', 'o5', 'c7|q', 20), ('R', 'c7', None, 21), ('L', 'o5', None, 22),
      ('L', 'o5', None, 23), ('L', 'o6', 'nofk', 24), ('L', 'o6', None, 25),
      ('L', 'o7', 'c1|m', 26), ('L', 'o7', 'c1|m', 27), ('R', 'c1', 'U', 28),
      ('L', None, 'c1|n', 29), ('R', None, 'zz', 30)],
     [(0, 'o1', 'c1|a+null', 1), (1, 'o1', 'c1|a+R', 2), (2, 'o1', 'nofk+null', 3),
      (4, 'o1', 'c1|b+S', 5), (5, 'o1', 'c1|b+T', 6), (6, 'o1', 'c1|a+T', 7),
      (7, 'o1', None, 8), (8, 'o2', 'c9|x+null', 9), (9, 'o2', None, 10),
      (11, 'o3', 'c1|z+T', 12), (12, 'o3', 'c1|z+U', 3), (13, 'o3', 'c1|y+U', 3),
      (14, 'o5', 'c7|q+null', 20), (15, 'o5', 'c7|q+null', 21), (16, 'o5', None, 22),
      (18, 'o6', 'nofk+null', 24), (19, 'o6', None, 25), (20, 'o7', 'c1|m+U', 26),
      (21, 'o7', 'c1|m+U', 27), (22, 'o3', 'c1|y+U', 28), (22, 'o7', 'c1|m+U', 28)]),
    ('p-fk2-inner', {'how': 'inner', 'op': 'join_fk'},
     [('R', 'c1', 'A', 1), ('L', 'o1', 'c1|a', 2), ('L', 'o1', 'nofk', 3),
      ('L', 'o1', 'c2|b', 4), ('L', 'o1', None, 5), ('L', 'o1', 'c1|a', 6),
      ('R', 'c1', 'B', 7)],
     [(1, 'o1', 'c1|a+A', 2), (2, 'o1', None, 3), (4, 'o1', None, 5), (5, 'o1', 'c1|a+A', 6),
      (6, 'o1', 'c1|a+B', 7)]),
    ('p-fk2-left', {'how': 'left', 'op': 'join_fk'},
     [('R', 'c1', 'A', 1), ('L', 'o1', 'c1|a', 2), ('L', 'o1', 'nofk', 3),
      ('L', 'o1', 'c2|b', 4), ('L', 'o1', None, 5), ('L', 'o1', 'c1|a', 6),
      ('R', 'c1', 'B', 7)],
     [(1, 'o1', 'c1|a+A', 2), (2, 'o1', 'nofk+null', 3), (3, 'o1', 'c2|b+null', 4),
      (4, 'o1', None, 5), (5, 'o1', 'c1|a+A', 6), (6, 'o1', 'c1|a+B', 7)]),
    ('q-fk-inner', {'how': 'inner', 'op': 'join_fk'},
     [('R', 'c1', 'A', 100), ('L', 'o1', 'c1|a', 5), ('L', 'o1', None, 6),
      ('L', 'o2', 'c1|b', 7), ('L', 'o2', 'c2|b', 8), ('L', 'o2', 'c2|c', 9),
      ('R', 'c2', 'B', 10), ('L', 'o2', 'c1|b', 11), ('L', 'o2', 'nofk', 12),
      ('L', 'o2', 'nofk2', 13), ('L', 'o3', 'c1|x', 14), ('L', 'o3', 'nofk', 15),
      ('L', 'o3', None, 16), ('R', 'c3', 'C', 50), ('L', 'o4', 'c3|y', 17),
      ('L', 'o4', 'c1|y', 18)],
     [(1, 'o1', 'c1|a+A', 100), (2, 'o1', None, 100), (3, 'o2', 'c1|b+A', 100),
      (4, 'o2', None, 8), (6, 'o2', 'c2|c+B', 10), (7, 'o2', 'c1|b+A', 100),
      (8, 'o2', None, 100), (10, 'o3', 'c1|x+A', 100), (11, 'o3', None, 100),
      (14, 'o4', 'c3|y+C', 50), (15, 'o4', 'c1|y+A', 100)]),
    ('q-fk-left', {'how': 'left', 'op': 'join_fk'},
     [('R', 'c1', 'A', 100), ('L', 'o1', 'c1|a', 5), ('L', 'o1', None, 6),
      ('L', 'o2', 'c1|b', 7), ('L', 'o2', 'c2|b', 8), ('L', 'o2', 'c2|c', 9),
      ('R', 'c2', 'B', 10), ('L', 'o2', 'c1|b', 11), ('L', 'o2', 'nofk', 12),
      ('L', 'o2', 'nofk2', 13), ('L', 'o3', 'c1|x', 14), ('L', 'o3', 'nofk', 15),
      ('L', 'o3', None, 16), ('R', 'c3', 'C', 50), ('L', 'o4', 'c3|y', 17),
      ('L', 'o4', 'c1|y', 18)],
     [(1, 'o1', 'c1|a+A', 100), (2, 'o1', None, 6), (3, 'o2', 'c1|b+A', 100),
      (4, 'o2', 'c2|b+null', 8), (5, 'o2', 'c2|c+null', 9), (6, 'o2', 'c2|c+B', 10),
      (7, 'o2', 'c1|b+A', 100), (8, 'o2', 'nofk+null', 12), (9, 'o2', 'nofk2+null', 13),
      (10, 'o3', 'c1|x+A', 100), (11, 'o3', 'nofk+null', 15), (12, 'o3', None, 16),
      (14, 'o4', 'c3|y+C', 50), (15, 'o4', 'c1|y+A', 100)]),
    ('q-ss-outer2', {'after': 10, 'before': 10, 'grace': 0, 'how': 'outer', 'op': 'join_ss'},
     [('R', 'K', 'a', 3), ('L', 'K', 'A', 8), ('L', 'K', 'B', 9), ('R', 'K', 'b', 30),
      ('L', 'K', 'C', 100)],
     [(1, 'K', 'A+a', 8), (2, 'K', 'B+a', 9), (4, 'K', 'null+b', 30)]),
    ('q-ss-inner-early',
     {'after': 10, 'before': 10, 'grace': 0, 'how': 'inner', 'op': 'join_ss'},
     [('R', 'K', 'a', 0), ('L', 'K', 'A', 5), ('R', 'K', 'b', 15), ('L', 'K', 'B', 2)],
     [(1, 'K', 'A+a', 5), (2, 'K', 'A+b', 15), (3, 'K', 'B+a', 2)]),
    ('q-ss-left-late', {'after': 10, 'before': 10, 'grace': 5, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 50), ('L', 'K', 'B', 20), ('L', 'K', 'C', 36), ('R', 'K', 'x', 40),
      ('R', 'J', 'y', 70)],
     [(1, 'K', 'B+null', 20), (2, 'K', 'C+null', 36), (3, 'K', 'C+x', 40), (3, 'K', 'A+x', 50)]),
    # JoinWindows of 0 ms: retention 0, every window-store put is already expired (dropped),
    # so nothing ever joins -- as in Kafka Streams
    ('z-zero', {'after': 0, 'before': 0, 'grace': 0, 'how': 'inner', 'op': 'join_ss'},
     [('L', 'K', 'A', 5), ('R', 'K', 'a', 5), ('R', 'K', 'b', 6), ('L', 'K', 'B', 6)],
     []),
    ('z-zero-left', {'after': 0, 'before': 0, 'grace': 0, 'how': 'left', 'op': 'join_ss'},
     [('L', 'K', 'A', 5), ('R', 'K', 'a', 5), ('R', 'K', 'b', 6), ('L', 'K', 'B', 6),
      ('L', 'K', 'C', 7), ('R', 'K', 'c', 8)],
     [(2, 'K', 'A+null', 5), (4, 'K', 'B+null', 6), (5, 'K', 'C+null', 7)]),
]


@pytest.mark.parametrize("name, topo, records, expected", RECORDED,
                         ids=[c[0] for c in RECORDED])
def test_recorded_kafka_streams_output(name: str, topo: dict[str, Any],
                                       records: list[tuple[str, Any, Any, int]],
                                       expected: list[tuple[int, Any, Any, int]]) -> None:
    assert run_case(topo, records) == expected


# -- worked examples (semantics.md) ----------------------------------------------------------------
SS_LEFT = {"op": "join_ss", "how": "left", "before": 10, "after": 10, "grace": 5}


def test_worked_example_5_stream_stream_left_join() -> None:
    records = [("L", "K", "A", 0), ("R", "K", "a", 5), ("L", "K", "B", 20), ("L", "K", "C", 30),
               ("R", "K", "x", 36), ("L", "K", "D", 20)]
    assert run_case(SS_LEFT, records) == [
        (1, "K", "A+a", 5),        # A leaves the parked set
        (4, "K", "B+null", 20),    # B closed: 20 + 10 + 5 = 35 < 36 ...
        (4, "K", "C+x", 36),       # ... and emitted before the join of the triggering record
        (5, "K", "D+null", 20),    # 20 + 10 < 36: emitted at once
    ]


def test_left_join_boundary_waits_for_stream_time_past_after_plus_grace() -> None:
    # open point B.6-4: the code (and the oracle) need stream time > T + after + grace
    records = [("L", "K", "A", 0), ("R", "J", "x", 15), ("R", "J", "y", 16)]
    assert run_case(SS_LEFT, records) == [(2, "K", "A+null", 0)]


@pytest.mark.parametrize("how, expected", [
    ("left", [(0, "K", "s1+null", 10), (2, "K", "s2+t1", 7), (3, "K", "s0+t1", 3),
              (5, "K", "s3+null", 25)]),
    ("inner", [(2, "K", "s2+t1", 7), (3, "K", "s0+t1", 3)]),
])
def test_worked_example_6_stream_table_non_versioned(how: str, expected: list[Any]) -> None:
    records = [("L", "K", "s1", 10), ("R", "K", "t1", 5), ("L", "K", "s2", 7),
               ("L", "K", "s0", 3), ("R", "K", None, 20), ("L", "K", "s3", 25)]
    assert run_case({"op": "join_st", "how": how}, records) == expected


def test_stream_table_docs_table() -> None:
    # docs: A@3 with an empty table -> [A,null]; after a@4, B@5 -> [B,a]; after the table
    # tombstone, C@9 -> [C,null] (left join); inner only emits [B,a]
    records = [("L", "K", "A", 3), ("R", "K", "a", 4), ("L", "K", "B", 5), ("R", "K", None, 8),
               ("L", "K", "C", 9)]
    assert run_case({"op": "join_st", "how": "left"}, records) == [
        (0, "K", "A+null", 3), (2, "K", "B+a", 5), (4, "K", "C+null", 9)]
    assert run_case({"op": "join_st", "how": "inner"}, records) == [(2, "K", "B+a", 5)]


# -- end of input ----------------------------------------------------------------------------------
def test_end_emits_parked_records_in_timestamp_side_key_order() -> None:
    topo = {"op": "join_ss", "how": "outer", "before": 5, "after": 5, "grace": 100}
    records = [("R", "B", "rb", 1), ("L", "A", "la", 1), ("R", "D", "rd", 1), ("L", "C", "lc", 7),
               ("L", "K", "k", 3), ("R", "K", "r", 4)]
    assert run_case(topo, records, end=True) == [
        (5, "K", "k+r", 4),
        ("end", "B", "null+rb", 1), ("end", "D", "null+rd", 1), ("end", "A", "la+null", 1),
        ("end", "C", "lc+null", 7),
    ]


def test_end_of_inner_join_emits_nothing() -> None:
    topo = {"op": "join_ss", "how": "inner", "before": 5, "after": 5, "grace": 0}
    assert run_case(topo, [("L", "K", "A", 1)], end=True) == []


def test_bounded_run_flushes_parked_left_records() -> None:
    p = wb.Pipeline("bounded")
    clicks = p.source("clicks", key="user", time="ts", sample=[
        {"user": "u1", "ts": 1000, "page": "a"}, {"user": "u2", "ts": 2000, "page": "b"}])
    buys = p.source("buys", key="user", time="ts", sample=[
        {"user": "u1", "ts": 1500, "item": "x"}])
    joined = clicks.join(buys, how="left", within="10s")
    frame = joined.to_pandas()
    assert list(frame["key"]) == ["u1", "u2"]
    assert list(frame["item"].fillna("-")) == ["x", "-"]


# -- dict values, default combine, errors ------------------------------------------------------
def test_default_combine_merges_dict_values() -> None:
    p = wb.Pipeline("dicts")
    orders = p.source("orders", key="cust")
    customers = p.table("customers", key="id")
    orders.join(customers, how="left").to("out")
    with TestDriver(p) as td:
        td.input("customers").pipe("c1", {"id": "c1", "name": "Ann"}, timestamp=1)
        td.input("orders").pipe("c1", {"cust": "c1", "amount": 3}, timestamp=2)
        td.input("orders").pipe("c2", {"cust": "c2", "amount": 4}, timestamp=3)
        assert td.output("out").read_key_values() == [
            ("c1", {"cust": "c1", "amount": 3, "id": "c1", "name": "Ann"}),
            ("c2", {"cust": "c2", "amount": 4}),
        ]


def test_foreign_key_join_with_dicts_and_preview() -> None:
    p = wb.Pipeline("fk")
    orders = p.table("orders", key="id", time="ts", sample=[
        {"id": "o1", "cust": "c1", "ts": 1}, {"id": "o2", "cust": "c2", "ts": 2},
        {"id": "o1", "cust": "c2", "ts": 5}])
    customers = p.table("customers", key="cid", time="ts", sample=[
        {"cid": "c1", "name": "Ann", "ts": 0}, {"cid": "c2", "name": "Bob", "ts": 3}])
    joined = orders.join(customers, on=lambda o: o["cust"], how="left",
                         combine=lambda o, c: {**o, "name": c["name"] if c else None})
    frame = joined.to_pandas().sort_values("key")
    assert list(frame["key"]) == ["o1", "o2"]
    assert list(frame["name"]) == ["Bob", "Bob"]


def test_combine_failure_names_the_step() -> None:
    p = wb.Pipeline("boom")
    p.source("left").join(p.table("right"), combine=lambda a, b: a["missing"] + b,
                          name="enrich").to("out")
    with TestDriver(p) as td:
        td.input("right").pipe("k", 1, timestamp=1)
        with pytest.raises(ProcessingError) as info:
            td.input("left").pipe("k", {"x": 1}, timestamp=2)
    assert info.value.step == "enrich"


# -- table-table: old values reach downstream table steps ------------------------------------------
def test_table_table_join_feeds_a_table_filter() -> None:
    p = wb.Pipeline("ttf")
    joined = p.table("left").join(p.table("right"), how="left", combine=joiner)
    joined.filter(lambda v: v.endswith("+r")).to("out")
    with TestDriver(p) as td:
        # no step after the filter asks for old values: every failing result is a delete
        td.input("left").pipe("K", "l", timestamp=1)      # l+null fails: delete
        td.input("right").pipe("K", "r", timestamp=2)     # l+r
        td.input("right").pipe("K", "s", timestamp=3)     # l+s fails: delete
        td.input("left").pipe("K", "m", timestamp=4)      # m+s fails: delete
        assert [(r.key, r.value, r.timestamp) for r in td.output("out").read_records()] == [
            ("K", None, 1), ("K", "l+r", 2), ("K", None, 3), ("K", None, 4)]


# -- restore after a restart -------------------------------------------------------------------
def _engine(p: wb.Pipeline, driver: MemoryDriver) -> Engine:
    engine = Engine(p.plan(), driver, clock=ManualClock(0), commit_interval_ms=2**62)
    engine.start()
    return engine


def _feed(engine: Engine, driver: MemoryDriver, records: list[tuple[str, Any, Any, int]],
          ) -> list[tuple[Any, Any, int]]:
    out: list[tuple[Any, Any, int]] = []
    for side, key, value, ts in records:
        before = driver.end_offset("out", 0)
        driver.append(TOPIC[side], 0, [(key, value, ts, None, None)])
        engine.process_available()
        out.extend((k, v, t) for k, v, t, _o, _h in driver.read("out", 0, before, 2**31))
    return out


def _split_run(topo: dict[str, Any], first: list[Any], second: list[Any],
               ) -> tuple[list[Any], list[Any]]:
    """Outputs of a run with a restart (state restored from changelogs) after ``first``, and
    of the same input without a restart."""
    driver = MemoryDriver()
    engine = _engine(build(topo), driver)
    out = _feed(engine, driver, first)
    engine.close()
    engine = _engine(build(topo), driver)
    out += _feed(engine, driver, second)
    engine.close()
    driver2 = MemoryDriver()
    engine = _engine(build(topo), driver2)
    whole = _feed(engine, driver2, first + second)
    engine.close()
    return out, whole


def test_stream_stream_state_survives_a_restart() -> None:
    # the parked j@18 and B@20 (outer store) and the window stores are restored. Stream time
    # and the minTime hint are not persisted (as in Kafka Streams), so a restart can change when
    # parked records come out; this input is chosen so that it does not.
    first = [("L", "K", "A", 0), ("R", "K", "a", 5), ("L", "J", "j", 18), ("L", "K", "B", 20)]
    second = [("R", "J", "y", 27), ("L", "K", "C", 30), ("R", "K", "x", 36)]
    restarted, whole = _split_run(SS_LEFT, first, second)
    assert restarted == whole == [("K", "A+a", 5), ("J", "j+y", 27), ("K", "B+null", 20),
                                  ("K", "C+x", 36)]


@pytest.mark.parametrize("topo", [
    {"op": "join_st", "how": "left"},
    {"op": "join_tt", "how": "inner"},
    {"op": "join_tt", "how": "left"},
    {"op": "join_tt", "how": "outer"},
    {"op": "join_fk", "how": "inner"},
    {"op": "join_fk", "how": "left"},
], ids=lambda t: f"{t['op']}-{t['how']}")
def test_table_join_state_survives_a_restart(topo: dict[str, Any]) -> None:
    rng = random.Random(7)
    records = []
    for i in range(60):
        side = rng.choice("LR")
        key = rng.choice(["A", "B", "C"])
        if topo["op"] == "join_fk" and side == "L":
            value = rng.choice([f"{rng.choice('ABC')}|v{i}", "nofk", None])
            key = rng.choice(["o1", "o2", "o3"])
        else:
            value = None if rng.random() < 0.2 else f"v{i}"
        records.append((side, key, value, i))
    restarted, whole = _split_run(topo, records[:30], records[30:])
    assert restarted == whole
    assert whole


def test_window_stores_stay_bounded() -> None:
    topo = {"op": "join_ss", "how": "left", "before": 10, "after": 10, "grace": 5}
    with TestDriver(build(topo)) as td:
        for i in range(500):
            td.input("left" if i % 2 else "right").pipe(f"k{i % 7}", f"v{i}", timestamp=i * 3)
        op = next(rn.op for t in td.engine.tasks for rn in t.nodes
                  if type(rn.op).__name__ == "StreamStreamJoinOp")
        for store in op.windows:
            kept = sum(len(v) for v in store.data.values())
            assert kept <= 2 * 25 // 3 + 2  # expired records go within two retentions (25 ms)
        assert len(op.outer) <= 25 // 3 + 2


# -- live comparison with Kafka Streams ----------------------------------------------------------
def _random_cases(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        op = rng.choice(["join_ss", "join_ss", "join_ss", "join_st", "join_tt", "join_fk"])
        keys = ["A", "B", "C", "D"][: rng.randint(1, 4)]
        t = rng.randint(0, 20)
        recs = []
        for j in range(rng.randint(3, 40)):
            topic = rng.choice(["left", "right"])
            key = rng.choice(keys) if rng.random() > 0.05 else None
            t = max(0, t + rng.randint(-12, 18))
            if op == "join_fk" and topic == "left":
                value = rng.choice([f"{rng.choice('ABC')}|v{j}", f"{rng.choice('ABC')}|w{j}",
                                    "nofk", None])
            else:
                value = f"v{j}" if rng.random() > 0.15 else None
            recs.append({"topic": topic, "key": key, "value": value, "ts": t})
        topo: dict[str, Any] = {"op": op}
        if op == "join_ss":
            topo["how"] = rng.choice(["inner", "left", "outer"])
            before, after = rng.choice([0, 2, 5, 10]), rng.choice([0, 3, 5, 10])
            topo.update(before=before, after=after or (0 if before else 1),
                        grace=rng.choice([0, 0, 2, 5]))
        else:
            topo["how"] = rng.choice(["inner", "left", "outer"] if op == "join_tt"
                                     else ["inner", "left"])
        cases.append({"name": f"fuzz-{seed}-{i}", "topology": topo, "records": recs})
    return cases


@pytest.mark.conformance
def test_live_oracle_fuzz() -> None:
    oracle = pytest.importorskip("tests.conformance.oracle")
    ok, why = oracle.oracle_available()
    if not ok:
        pytest.skip(why)
    cases = _random_cases(2024, 120)
    results = oracle.run_cases(cases)
    for case, expected in zip(cases, results):
        records = [(r["topic"][0].upper(), r["key"], r["value"], r["ts"])
                   for r in case["records"]]
        got = run_case(case["topology"], records)
        assert got == [(o["in"], o["key"], o["value"], o["ts"]) for o in expected], case
