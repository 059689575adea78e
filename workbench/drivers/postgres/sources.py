"""User tables as source topics.

``table.orders=public.orders:id[:key=COL][:value=COL]`` reads ``public.orders`` as a
one-partition topic whose offsets are the values of the ordering column ``id``: integers as
they are, timestamps as epoch microseconds (the record timestamp is then the column in epoch
milliseconds; for integer columns it is 0). The value is the row as a JSON object
(``row_to_json``), or with ``value=COL`` the JSON text in that column; the key is ``key=COL``.
Rows with equal ordering values are never split between two reads.
"""

from __future__ import annotations

import json
from typing import Any

from ...errors import DefinitionError, SerializationError
from ...keys import decode_key
from ..base import ReadRec
from .catalog import TopicInfo
from .errors_table import ErrorsTable
from .session import Session

__all__ = ["TableSources"]


class TableSources:
    """Reads user tables as topics; records bad rows in ``_errors``."""

    def __init__(self, session: Session, errors: ErrorsTable) -> None:
        self.s = session
        self.errors = errors
        self._types: dict[str, str] = {}

    def clear(self) -> None:
        """Forget the ordering columns' types (after the schema changed)."""
        self._types.clear()

    def _table_ident(self, info: TopicInfo) -> Any:
        schema, _, table = (info.source_table or "").partition(".")
        return self.s.q(schema, table)

    def _source_type(self, info: TopicInfo) -> str:
        """``"int"``, ``"timestamptz"`` or ``"timestamp"``: the ordering column's kind."""
        cached = self._types.get(info.name)
        if cached is not None:
            return cached
        schema, _, table = (info.source_table or "").partition(".")
        row = self.s.call(lambda c: c.execute(
            "SELECT format_type(a.atttypid, NULL) FROM pg_attribute a JOIN pg_class c ON "
            "c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
            "n.nspname = %s AND c.relname = %s AND a.attname = %s AND NOT a.attisdropped",
            (schema, table, info.source_column)).fetchone(), "inspecting a source table")
        if row is None:
            raise DefinitionError(f"table.{info.name}: table {info.source_table} has no column "
                                  f"{info.source_column!r}.")
        typ = row[0]
        if typ in ("smallint", "integer", "bigint"):
            kind = "int"
        elif typ == "timestamp with time zone":
            kind = "timestamptz"
        elif typ == "timestamp without time zone":
            kind = "timestamp"
        else:
            raise DefinitionError(
                f"table.{info.name}: column {info.source_column!r} of {info.source_table} is "
                f"{typ}; the ordering column must be an integer or a timestamp that increases "
                "with every insert.")
        self._types[info.name] = kind
        return kind

    def _offset_sql(self, info: TopicInfo) -> tuple[Any, Any]:
        """``(column as offset, offset param as column value)``: integers map to themselves,
        timestamps to epoch microseconds."""
        S = self.s.sql.SQL
        col = self.s.q(info.source_column or "")
        kind = self._source_type(info)
        if kind == "int":
            return S("{}::bigint").format(col), S("%(o)s")
        base = "'epoch'::timestamptz" if kind == "timestamptz" else "'epoch'::timestamp"
        return (S("(extract(epoch FROM {} - " + base + ") * 1000000)::bigint").format(col),
                S(base + " + %(o)s * interval '1 microsecond'"))

    def end_offset(self, info: TopicInfo) -> int:
        """One past the offset of the table's last row (0 when empty)."""
        as_off, _ = self._offset_sql(info)
        stmt = self.s.sql.SQL("SELECT {e} FROM {t} ORDER BY {c} DESC LIMIT 1").format(
            e=as_off, t=self._table_ident(info), c=self.s.q(info.source_column or ""))
        row = self.s.call(lambda c: c.execute(stmt).fetchone(), f"end of {info.source_table}")
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def read(self, info: TopicInfo, offset: int, max_records: int) -> list[ReadRec]:
        """Rows whose ordering value maps to an offset >= ``offset``, in order; rows with the
        same value are never split between batches (they share an offset, and the engine
        resumes after it). Bad rows stop the read, or go to the errors table and are skipped."""
        while True:
            rows = self._rows(info, offset, max_records)
            out: list[ReadRec] = []
            for off, ks, vs, ts in rows:
                try:
                    key = None if ks is None else decode_key(json.loads(ks))
                    value = None if vs is None else json.loads(vs)
                except ValueError as exc:
                    msg = (f"table {info.source_table}: the row at {info.source_column} = "
                           f"position {off} (topic {info.name!r}) is not valid JSON ({exc}): "
                           f"{vs!r:.200}")
                    if not self.s.options.errors:
                        raise SerializationError(
                            msg + ". Fix or delete the row, or add errors=1 to the driver URL "
                            f"to route bad rows to {self.s.schema}._errors.") from exc
                    self.errors.record(info.name, 0, str(off), info.source_table or "", msg, vs)
                    continue
                out.append((key, value, int(ts), int(off), None))
            if out or not rows:
                return out
            offset = int(rows[-1][0]) + 1  # a batch of bad rows only: go on after them

    def _rows(self, info: TopicInfo, offset: int, max_records: int) -> list[Any]:
        S = self.s.sql.SQL
        as_off, from_off = self._offset_sql(info)
        col = self.s.q(info.source_column or "")
        kind = self._source_type(info)
        value_expr = (S("s.{}::text").format(self.s.q(info.source_value)) if info.source_value
                      else S("row_to_json(s)::text"))
        key_expr = (S("to_json(s.{})::text").format(self.s.q(info.source_key))
                    if info.source_key else S("NULL::text"))
        ts_expr = (S("0::bigint") if kind == "int" else
                   S("({} / 1000)").format(as_off))
        stmt = S(
            "SELECT {e} AS wb_offset, {k}, {v}, {ts} FROM (SELECT * FROM {t} WHERE {c} >= {fo} "
            "AND {c} <= coalesce((SELECT {c} FROM {t} WHERE {c} >= {fo} ORDER BY {c} "
            "OFFSET %(n)s - 1 LIMIT 1), {c})) AS s ORDER BY {c}"
        ).format(e=as_off, k=key_expr, v=value_expr, ts=ts_expr, t=self._table_ident(info),
                 c=col, fo=from_off)
        return self.s.call(  # type: ignore[no-any-return]
            lambda c: c.execute(stmt, {"o": offset, "n": max_records}).fetchall(),
            f"reading table {info.source_table}")
