"""A processor with the Processor API's session and timestamped key-value stores, shared by the
driver equivalence tests (git, PostgreSQL, Kafka): each driver must give what memory gives,
its stores' changelogs written and read through the driver."""

from __future__ import annotations

from typing import Any

import workbench as wb

#: the stores :class:`Visits` needs (``process(Visits, stores=VISIT_STORES)``)
VISIT_STORES: dict[str, Any] = {"visits": ("session", "1h"), "last": "timestamped"}


class Visits(wb.Processor):
    """Per key: visits as sessions of records at most 30 s apart (merged by the processor in a
    session store) and the latest record's page (a timestamped store); forwards ``[session
    start, end, records in it, previous page, its timestamp]``; records without a key pass
    untouched (the stores refuse ``None`` keys, as Kafka Streams' do)."""

    GAP = 30_000

    def init(self, ctx: Any) -> None:
        self.ctx = ctx
        self.visits = ctx.store("visits")
        self.last = ctx.store("last")

    def process(self, record: wb.Record) -> None:
        key, ts = record.key, record.timestamp
        if key is None:
            self.ctx.forward(record)
            return
        found = self.visits.find_sessions(key, ts - self.GAP, ts + self.GAP)
        start = min([ts, *(w.window_start for w, _n in found)])
        end = max([ts, *(w.window_end for w, _n in found)])
        for w, _n in found:
            self.visits.remove(w)
        count = 1 + sum(n for _w, n in found)
        self.visits.put(wb.Windowed(key, start, end), count)
        page = record.value.get("page") if isinstance(record.value, dict) else None
        old = self.last.put(key, page, ts)
        self.ctx.forward(key, [start, end, count, *(old or (None, None))])
