"""Cogroup: several grouped streams aggregated into one table, one aggregator per input, as
Kafka Streams 4.1.1 computes it (``CogroupedKStream``; conformance cases ``cogroup.json``,
FINDINGS D17).

Kafka Streams builds one aggregation processor per input, all reading and writing **one
store**; so does :class:`CogroupOp`: one operator per input port (the ordinary aggregation
operators of :mod:`workbench.runtime.window_ops`, each with its input's aggregator), sharing
one store. What follows from it:

- Without windows: one running aggregate per key over all inputs; ``None`` keys and values
  are dropped per input (the ``late`` output), the timestamp is the largest of the key's
  records so far.
- With windows, **each input keeps its own stream time** (D17): a record that is late for
  the task (another input is further ahead) is aggregated if it is not late for its own input.
  The store is shared, and forgets windows by its own retention (Kafka's in-memory stores,
  counted from the furthest input): time windows whose start is ``<= largest start stored -
  (size + grace)``, sessions whose end is ``<= largest end stored - (gap + grace)``, sliding
  windows as for one input. A record of an input that is behind may so find its window gone:
  it starts the window again from the initializer, the result is published, and the store
  refuses to keep it (Kafka counts it as dropped; workbench counts it in the operator's
  ``dropped`` and does not send it to ``late``, as its contribution was published). With one
  input, a windowed cogroup is the ordinary windowed aggregation.
- Outputs: ``emit="update"`` only (Kafka Streams' cogroup has no emit strategy; use
  ``suppress`` for final results).

The inputs' stream times are kept in a small store of their own (``<step>-times``), so a
restarted run decides as one uninterrupted run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..plan import PlanNode, changelog_topic
from ..types import Change
from ..windows import Hopping, Session, Sliding, Tumbling, Windowed
from .operators import Batch, Operator
from .state import KeyValueStore
from .window_ops import (
    LATE,
    NULL_KEY,
    KeyAggregateOp,
    SessionWindowAggregateOp,
    SlidingWindowAggregateOp,
    TimeWindowAggregateOp,
    _AggregateOp,
)
from .window_store import NO_TIMESTAMP, TimeWindowStore

__all__ = ["CogroupOp", "CogroupTimeWindowOp"]

_tnew = tuple.__new__


class CogroupTimeWindowOp(TimeWindowAggregateOp):
    """One input of a windowed (tumbling, hopping) cogroup: ``KStreamWindowAggregate`` over a
    shared in-memory window store whose retention (size + grace) counts from the largest window
    start any input stored (``store.observed``)."""

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        store = self.store
        windows = store.windows
        dirty = store.dirty
        size, advance, grace = self.size, self.advance, self.grace
        retention = size + grace
        init, add, fin = self._init, self._add, self._fin
        st = self.stream_time
        for r in batch:
            k, v, t, s, h = r
            if k is None:
                self._drop(r, NULL_KEY)
                continue
            if t > st:
                st = t
            close = st - grace
            start = t - size + advance
            if start < 0:
                start = 0
            start = start // advance * advance
            missed = t < 0
            while start <= t:
                end = start + size
                if end <= close:
                    missed = True
                    start += advance
                    continue
                w = windows.get(start)
                e = w.get(k) if w is not None and start > store.observed - retention else None
                try:
                    if e is None:
                        old = None
                        acc = add(init(), v)
                        ts = t
                    else:
                        old = e[0]
                        acc = add(old, v)
                        ts = e[1] if e[1] > t else t
                    new_value = acc if fin is None or acc is None else fin(acc)
                    old_value = old if fin is None or old is None else fin(old)
                except Exception as exc:
                    raise self._fail(r, exc) from exc
                if start > store.observed:
                    store.observed = start
                if start <= store.observed - retention:
                    self.dropped += 1  # the store refuses the put (D17)
                else:
                    if w is None:
                        w = windows[start] = {}
                        store.starts.append(start)
                    if acc is None:
                        w.pop(k, None)
                    else:
                        w[k] = [acc, ts]
                    ds = dirty.get(start)
                    if ds is None:
                        dirty[start] = {k}
                    else:
                        ds.add(k)
                append((_tnew(Windowed, (k, start, end)), _tnew(Change, (new_value, old_value)),
                        ts, s, h))
                start += advance
            if missed:
                self._drop(r, LATE)
        self.stream_time = st
        # forget what left the retention (a changelog tombstone each)
        gone = [x for x in windows if x <= store.observed - retention]
        for x in gone:
            store.pop_window(x)
        if gone:
            store.starts = sorted(windows)
        if batch:
            self._last_seq = batch[-1][3]
        return out

    def end(self) -> Batch:
        return []


class CogroupOp(Operator):
    """Several inputs aggregated into one store, one aggregation operator per input port."""

    def __init__(self, pn: PlanNode, ctx: Any) -> None:
        node = pn.node
        assert node is not None
        params = node.params
        self.name = pn.name
        self.side = []
        agg = params["agg"]
        window = params.get("window")
        subs: list[_AggregateOp] = []
        for add in params["adds"]:
            port_agg = dataclasses.replace(agg, add=add)
            sub: _AggregateOp
            if window is None:
                sub = KeyAggregateOp(pn, ctx, port_agg)
            elif isinstance(window, Tumbling | Hopping):
                sub = CogroupTimeWindowOp(pn, ctx, window, port_agg)
            elif isinstance(window, Sliding):
                sub = SlidingWindowAggregateOp(pn, ctx, window, port_agg)
            elif isinstance(window, Session):
                sub = SessionWindowAggregateOp(pn, ctx, window, port_agg)
                sub.count_refused = True
            else:  # pragma: no cover - the DSL checks the window
                raise TypeError(f"step {pn.name!r}: unknown window {window!r}")
            subs.append(sub)
        shared = subs[0].store
        if isinstance(shared, TimeWindowStore):
            shared.observed = NO_TIMESTAMP  # type: ignore[attr-defined]
        for sub in subs[1:]:
            sub.store = shared  # type: ignore[attr-defined]
            sub.stores = [shared]
        self.subs = subs
        times_name = f"{node.name}-times"
        spec = ctx.stores.get(times_name)
        self.times = KeyValueStore(times_name, spec.changelog if spec is not None
                                   else changelog_topic(ctx.app_id, times_name))
        self.stores = [shared, self.times]

    @property
    def dropped(self) -> int:
        """Records dropped by any input (late output, and puts the store refused)."""
        return sum(sub.dropped for sub in self.subs) + getattr(self.subs[0].store, "refused", 0)

    def init(self, ctx: Any) -> None:
        for port, sub in enumerate(self.subs):
            t = self.times.get(port)
            if isinstance(t, int) and hasattr(sub, "stream_time"):
                sub.stream_time = t  # type: ignore[attr-defined]
            sub.init(ctx)

    def process(self, batch: Batch, port: int) -> Batch:
        sub = self.subs[port]
        out: Batch = sub.process(batch, 0)
        if sub.side:
            self.side = [*self.side, *sub.side] if self.side else sub.side
            sub.side = []
        t = getattr(sub, "stream_time", None)
        if isinstance(t, int) and t != self.times.get(port):
            self.times.put(port, t)
        return out

    def end(self) -> Batch:
        out: Batch = []
        for sub in self.subs:
            out.extend(sub.end())
        return out
