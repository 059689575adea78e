"""Table sinks: a table written with ``table.to(topic)`` (named in ``upsert=``, or created
with ``compact=True``) is also kept as a real SQL table named after the topic, upserted in the
commit's transaction.

| keys | table |
| --- | --- |
| plain | ``key K PRIMARY KEY, value jsonb, ts bigint`` |
| windowed | ``key K, window_start bigint, window_end bigint, value jsonb, ts bigint``, primary
  key ``(window_start, window_end, key)`` |

Its shape is decided by the first commit that writes it: windowed or not, and the key column's
type ``K``: ``bigint`` when those (inner) keys are all ``int`` in 64 bits, ``text`` when they
are all ``str``, else ``jsonb`` (the key encoding as JSON). A later key the column cannot hold
widens it to ``jsonb`` (``USING to_jsonb(key)``: the same keys, as JSON). A table that exists
keeps its key column's type (tables made before typed keys have ``jsonb``). A ``None`` value
deletes the row.
"""

from __future__ import annotations

import logging
from typing import Any

from ...errors import DriverError, SerializationError
from ...keys import decode_key, encode_key, key_id
from ...windows import Windowed
from ..base import Transaction
from .catalog import Catalog, TopicInfo
from .codec import copy_text, dumps, key_text, loads
from .columns import _key_texts
from .errors_table import ErrorsTable
from .naming import lock_key, sink_table
from .session import Session, sqlstate

__all__ = ["REFUSAL_CLASSES", "STAGE_DDL", "TableSinks", "key_mode", "refusal"]

log = logging.getLogger(__name__)

#: the per-session staging table the changes of a commit are COPYed into
STAGE_DDL = ("CREATE TEMP TABLE IF NOT EXISTS pg_temp._wb_stage (n int, key jsonb, window_start"
             " bigint, window_end bigint, value jsonb, ts bigint) ON COMMIT DELETE ROWS")
#: SQLSTATE classes of a table refusing a row: data exceptions, integrity constraints
REFUSAL_CLASSES = ("22", "23")


def refusal(exc: BaseException) -> bool:
    """True when ``exc`` is a table refusing a row (a constraint, a bad value)."""
    state = sqlstate(exc)
    return state is not None and state[:2] in REFUSAL_CLASSES


def _identity(key: Any) -> Any:
    """The key's identity (its serialized form decides, as in state stores): the key itself
    where Python's ``==`` agrees with the bytes (``str``, ``int`` and windowed ones), else
    :func:`~workbench.keys.key_id`."""
    cls = key.__class__
    if cls is str or cls is int:
        return key
    if cls is Windowed:
        inner = key[0].__class__
        if inner is str or inner is int:
            return key
    return key_id(key)


#: the key column's type (``format_type``) -> how keys are written into it: JSON texts into
#: ``jsonb`` (and any type not listed: the server parses them), digits into ``bigint``, the
#: strings themselves into ``text``
_KEY_MODES = {"bigint": "bigint", "integer": "bigint", "smallint": "bigint", "text": "text",
              "character varying": "text"}
_INT64_MIN, _INT64_END = -(1 << 63), 1 << 63
#: the staged key (``jsonb``) as the table's key column holds it, by key mode (``g``: the
#: staging table's alias and a dot, or nothing)
_STAGED_KEY = {"jsonb": "{g}key", "bigint": "({g}key)::bigint",
               "text": "({g}key #>> ARRAY[]::text[])"}
#: characters COPY's text format escapes in a raw string
_COPY_SPECIAL = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def key_mode(inner: list[Any]) -> str | None:
    """The key column type for (inner) keys ``inner``: ``bigint`` when all are ``int`` in 64
    bits, ``text`` when all are ``str``, else ``jsonb`` (``None`` for no keys)."""
    if not inner:
        return None
    kinds = set(map(type, inner))
    if kinds == {int} and min(inner) >= _INT64_MIN and max(inner) < _INT64_END:
        return "bigint"
    if kinds == {str}:
        return "text"
    return "jsonb"


def _raw_texts(keys: list[str]) -> list[str]:
    """Strings as COPY text fields (backslash, tab, newline and CR escaped)."""
    joined = "".join(keys)
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        return [k.translate(_COPY_SPECIAL) for k in keys]
    return keys


def _json_fields(keys: list[Any]) -> list[str]:
    """``int``/``str`` keys as JSON texts in COPY's text format."""
    ks = _key_texts(keys)
    return [copy_text(k) for k in ks] if "\\" in "".join(ks) else ks


def _key_json(key: Any) -> str:
    try:
        return key_text(key) if key is not None else "null"
    except ValueError:  # a non-finite float: tagged
        return dumps(encode_key(key))


class TableSinks:
    """Keeps the upserted tables of table sinks."""

    def __init__(self, session: Session, catalog: Catalog, errors: ErrorsTable) -> None:
        self.s = session
        self.catalog = catalog
        self.errors = errors
        #: table sinks whose table refused a straight COPY (:meth:`_insert`): upserted only
        self.conflicted: set[str] = set()
        self._in_transaction = session.pg.pq.TransactionStatus.INTRANS

    def upsert(self, conn: Any, info: TopicInfo, txn: Transaction,
               bases: dict[tuple[str, int], int], careful: bool = False,
               texts: dict[int, list[str]] | None = None) -> None:
        """Apply the commit's changes of table sink ``info`` to its table: the last change per
        key (and window) wins; a ``None`` value deletes the row.

        ``careful``: the table refused the changes before (a constraint you added): apply them
        in savepoints, halving the batch until the refused changes are found; each goes to
        ``_errors`` with ``errors=1`` (the table keeps its previous row for that key), or
        stops the commit with :class:`DriverError` naming the table, the key and the
        constraint. ``bases`` are the first offsets of the commit's records in their logs;
        ``texts`` the value fields as the log COPY wrote them, by partition (reused, not
        encoded again).
        """
        if not careful and texts is not None and self._upsert_columns(conn, info, txn, texts):
            return
        topic = info.name
        latest: dict[Any, tuple[Any, Any, int, int, int, str | None]] = {}
        windowed = None
        for (t, p), records in txn.outputs.items():
            if t != topic:
                continue
            if not isinstance(records, list):  # a column batch
                records = records.rows()
            base = bases.get((t, p), 0)
            written = (texts or {}).get(p)
            if written is not None and len(written) != len(records):
                written = None
            for i, r in enumerate(records):
                k = r[0]
                if windowed is None:
                    windowed = isinstance(k, Windowed)
                latest[_identity(k)] = (k, r[1], r[2], p, base + i,
                                        None if written is None else written[i])
        if not latest:
            return
        self._ensure_table(conn, info, bool(windowed), [
            k.key if isinstance(k, Windowed) else k for k, *_rest in latest.values()])
        changes = list(latest.values())
        deletes = self._stage(conn, info, changes)
        if not careful:
            self._apply(conn, info, deletes, 0, len(changes))
        else:
            for i, exc in self._apply_careful(conn, info, deletes, 0, len(changes)):
                self._refused(conn, info, changes[i], exc)
        conn.execute("TRUNCATE pg_temp._wb_stage")

    def _upsert_columns(self, conn: Any, info: TopicInfo, txn: Transaction,
                        texts: dict[int, list[str]]) -> bool:
        """:meth:`upsert` for column batches whose keys are ``int``/``str`` (plain, or the
        inner keys of windowed keys as columns): the last change per key found with one dict
        over the key columns, staged from the value texts the log's COPY wrote. False (nothing
        done) for anything else: the record path takes it."""
        parts: list[Any] = []
        for (t, p), batch in txn.outputs.items():
            if t != info.name:
                continue
            if isinstance(batch, list) or len(texts.get(p, ())) != len(batch):
                return False
            keys = batch.keys
            windowed = hasattr(keys, "inner")
            inner = (keys.inner if windowed else keys).tolist()
            if None in inner or not set(map(type, inner)) <= {int, str}:
                return False
            if info.windowed is not None and info.windowed != windowed:
                return False  # the record path names the mismatch
            parts.append((p, batch, windowed, inner))
        if not parts or len({w for _p, _b, w, _i in parts}) > 1:
            return not parts
        windowed = parts[0][2]
        last: dict[Any, tuple[int, int]] = {}
        for n, (_p, batch, _w, inner) in enumerate(parts):
            if windowed:
                idents: Any = zip(inner, batch.keys.start.tolist(), batch.keys.end.tolist())
            else:
                idents = inner
            for i, ident in enumerate(idents):
                last[ident] = (n, i)
        self._ensure_table(conn, info, windowed, [k for _p, _b, _w, inner in parts for k in inner])
        cols = []  # per part: keys, window starts and ends (or None), value texts, ts
        deletes = False
        for n, (p, batch, _w, inner) in enumerate(parts):
            mine = [i for m, i in last.values() if m == n]
            if not mine:
                continue
            kin = [inner[i] for i in mine]
            vals = texts[p]
            vs = [vals[i] for i in mine]
            deletes = deletes or "\\N" in vs
            ts = batch.ts[mine].tolist()
            if windowed:
                cols.append((kin, batch.keys.start[mine].tolist(), batch.keys.end[mine].tolist(),
                             vs, ts))
            else:
                cols.append((kin, None, None, vs, ts))
        if not deletes and info.name not in self.conflicted and self._insert(
                conn, info, [(self._key_fields(info, kin), *rest) for kin, *rest in cols]):
            return True
        lines: list[Any] = []
        for kin, ws, we, vs, ts in cols:  # the staging table's keys are JSON
            ks = _json_fields(kin)
            first = len(lines)
            if ws is not None:
                lines += [f"{first + j}\t{k}\t{a}\t{b}\t{v}\t{t}\n"
                          for j, (k, a, b, v, t) in enumerate(zip(ks, ws, we, vs, ts))]
            else:
                lines += [f"{first + j}\t{k}\t\\N\t\\N\t{v}\t{t}\n"
                          for j, (k, v, t) in enumerate(zip(ks, vs, ts))]
        text = "".join(lines)
        stage = self.s.sql.SQL("COPY pg_temp._wb_stage (n, key, window_start, window_end, "
                               "value, ts) FROM STDIN")
        with conn.cursor() as cur, cur.copy(stage) as cp:
            cp.write(text.encode())
        with self.s.pipeline(conn):
            self._apply(conn, info, deletes, 0, len(lines))
            conn.execute("TRUNCATE pg_temp._wb_stage")
        return True

    @staticmethod
    def _key_fields(info: TopicInfo, keys: list[Any]) -> list[str]:
        """``int``/``str`` keys as the table's key column takes them in COPY text: the strings
        themselves into ``text``, JSON texts otherwise (an int's is its digits, as ``bigint``
        reads them)."""
        return _raw_texts(keys) if info.key_mode == "text" else _json_fields(keys)

    def _insert(self, conn: Any, info: TopicInfo, cols: list[Any]) -> bool:
        """COPY the changes straight into the table, in a savepoint: a commit whose keys (and
        windows) the table does not hold yet, as every window of ``emit="close"`` is. False
        (nothing written) when the table refused them (a key it holds already, a constraint
        you added): the staged upsert, which decides row by row, takes them, and this table
        is not tried this way again by this driver."""
        if info.windowed:
            lines = [f"{k}\t{a}\t{b}\t{v}\t{t}\n" for ks, ws, we, vs, ts in cols
                     for k, a, b, v, t in zip(ks, ws, we, vs, ts)]
            names = "key, window_start, window_end, value, ts"
        else:
            lines = [f"{k}\t{v}\t{t}\n" for ks, _ws, _we, vs, ts in cols
                     for k, v, t in zip(ks, vs, ts)]
            names = "key, value, ts"
        stmt = self.s.sql.SQL("COPY {} (" + names + ") FROM STDIN").format(
            self.s.q(self.s.schema, sink_table(info.name)))
        try:
            with conn.transaction(), conn.cursor() as cur, cur.copy(stmt) as cp:
                cp.write("".join(lines).encode())
        except self.s.pg.Error as exc:
            if not refusal(exc) or conn.info.transaction_status != self._in_transaction:
                raise
            self.conflicted.add(info.name)
            return False
        return True

    def _stage(self, conn: Any, info: TopicInfo, changes: list[Any]) -> bool:
        """COPY the changes into the staging table, numbered; True if any is a delete."""
        lines = []
        deletes = False
        for n, (k, v, ts, _p, _off, text) in enumerate(changes):
            try:
                if info.windowed:
                    if not isinstance(k, Windowed):
                        raise SerializationError(
                            f"table sink {info.name!r} holds windowed keys, got key {k!r}.")
                    kj, ws, we = _key_json(k.key), str(k.window_start), str(k.window_end)
                else:
                    kj, ws, we = _key_json(k), "\\N", "\\N"
                if v is None:
                    vj, deletes = "\\N", True
                else:
                    vj = text if text is not None else copy_text(dumps(v))
            except (TypeError, ValueError, RecursionError) as exc:
                raise SerializationError(f"table sink {info.name!r}: cannot encode key {k!r} "
                                         f"or its value as JSON: {exc}") from exc
            lines.append(f"{n}\t{copy_text(kj)}\t{ws}\t{we}\t{vj}\t{ts}\n")
        stage = self.s.sql.SQL("COPY pg_temp._wb_stage (n, key, window_start, window_end, "
                               "value, ts) FROM STDIN")
        with conn.cursor() as cur, cur.copy(stage) as cp:
            cp.write("".join(lines).encode())
        return deletes

    def _apply(self, conn: Any, info: TopicInfo, deletes: bool, lo: int, hi: int) -> None:
        """Apply staged changes ``lo <= n < hi`` to the table."""
        S = self.s.sql.SQL
        table = self.s.q(self.s.schema, sink_table(info.name))
        mode = info.key_mode or "jsonb"
        if info.windowed:
            cols = "key, window_start, window_end, value, ts"
            window = " AND u.window_start = g.window_start AND u.window_end = g.window_end"
            conflict = "window_start, window_end, key"  # the primary key (time first: ~30%
            # faster upserts than key first, and window-range queries use it)
        else:
            cols, window, conflict = "key, value, ts", "", "key"
        # the staged keys are JSON: read as the key column's type
        picked = cols.replace("key", _STAGED_KEY[mode].format(g=""), 1)
        match = f"u.key = {_STAGED_KEY[mode].format(g='g.')}{window}"
        if deletes:
            conn.execute(S("DELETE FROM {t} AS u USING pg_temp._wb_stage AS g WHERE g.value IS "
                           "NULL AND g.n >= %s AND g.n < %s AND " + match).format(t=table),
                         (lo, hi))
        conn.execute(S("INSERT INTO {t} (" + cols + ") SELECT " + picked + " FROM "
                       "pg_temp._wb_stage WHERE value IS NOT NULL AND n >= %s AND n < %s ON "
                       "CONFLICT (" + conflict + ") DO UPDATE SET value = EXCLUDED.value, ts = "
                       "EXCLUDED.ts").format(t=table), (lo, hi))

    def _apply_careful(self, conn: Any, info: TopicInfo, deletes: bool, lo: int,
                       hi: int) -> list[tuple[int, Any]]:
        """Apply ``lo <= n < hi`` in a savepoint; on a refusal, halve. Returns the refused
        changes with their errors (everything else is applied)."""
        try:
            with conn.transaction():
                self._apply(conn, info, deletes, lo, hi)
            return []
        except self.s.pg.Error as exc:
            if not refusal(exc):
                raise
            if hi - lo == 1:
                return [(lo, exc)]
            mid = (lo + hi) // 2
            return (self._apply_careful(conn, info, deletes, lo, mid)
                    + self._apply_careful(conn, info, deletes, mid, hi))

    def _refused(self, conn: Any, info: TopicInfo, change: Any, exc: Any) -> None:
        k, v, _ts, p, off, _text = change
        name = f"{self.s.schema}.{sink_table(info.name)}"
        diag = getattr(exc, "diag", None)
        why = str(getattr(diag, "message_primary", None) or exc).strip()
        detail = getattr(diag, "message_detail", None)
        what = "the delete of" if v is None else "the change of"
        message = (f"table sink {info.name!r}: table {name} refused {what} key {k!r} (offset "
                   f"{off} in partition {p}): {why}" + (f" ({detail})" if detail else ""))
        if not self.s.options.errors:
            raise DriverError(
                message + ". Nothing of this commit was written; change the constraint or the "
                "pipeline, or add errors=1 to the driver URL to keep refused changes in "
                f"{self.s.schema}._errors and go on.")
        self.errors.insert(conn, info.name, p, str(off), f"table sink {name}", message,
                           dumps({"key": encode_key(k), "value": v}))

    def _ensure_table(self, conn: Any, info: TopicInfo, windowed: bool,
                      keys: list[Any]) -> None:
        """Create the table on first use (windowed or not, its key column's type from this
        commit's (inner) ``keys``), or look up the shape of the one that exists; widen a typed
        key column to ``jsonb`` when one of ``keys`` does not fit it."""
        if info.windowed is None or info.key_mode is None:
            self._shape(conn, info, windowed, keys)
        if info.key_mode != "jsonb" and key_mode(keys) not in (None, info.key_mode):
            S = self.s.sql.SQL
            odd = next(k for k in keys if key_mode([k]) != info.key_mode)
            name = f"{self.s.schema}.{sink_table(info.name)}"
            log.warning("table sink %r: key %r does not fit the %s key column of table %s: "
                        "the column becomes jsonb (to_jsonb(key): the same keys, as JSON)",
                        info.name, odd, info.key_mode, name)
            conn.execute(S("ALTER TABLE {} ALTER COLUMN key TYPE jsonb USING to_jsonb(key)")
                         .format(self.s.q(self.s.schema, sink_table(info.name))))
            info.key_mode = "jsonb"

    def _shape(self, conn: Any, info: TopicInfo, windowed: bool, keys: list[Any]) -> None:
        S, s = self.s.sql.SQL, self.s.qs()
        conn.execute("SELECT pg_advisory_xact_lock(%s)",
                     (lock_key("table", self.s.schema, info.name),))
        row = conn.execute(S("SELECT windowed FROM {}._topics WHERE name = %s").format(s),
                           (info.name,)).fetchone()
        name = sink_table(info.name)
        table = self.s.q(self.s.schema, name)
        if row is not None and row[0] is not None:
            info.windowed = bool(row[0])
            typ = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                "%s::regclass AND attname = 'key' AND NOT attisdropped",
                (table.as_string(conn),)).fetchone()
            info.key_mode = _KEY_MODES.get(typ[0] if typ else "", "jsonb")
            return
        self.catalog.claim(conn, info.name, name, "table")
        mode = key_mode(keys) or "jsonb"
        if windowed:
            conn.execute(S("CREATE TABLE {} (key " + mode + " NOT NULL, window_start "
                           "bigint NOT NULL, window_end bigint NOT NULL, value jsonb NOT NULL, "
                           "ts bigint NOT NULL, PRIMARY KEY (window_start, window_end, key))"
                           ).format(table))
        else:
            conn.execute(S("CREATE TABLE {} (key " + mode + " PRIMARY KEY, value jsonb "
                           "NOT NULL, ts bigint NOT NULL)").format(table))
        conn.execute(S("UPDATE {}._topics SET windowed = %s WHERE name = %s").format(s),
                     (windowed, info.name))
        info.windowed = windowed
        info.key_mode = mode

    def rows(self, topic: str) -> list[tuple[Any, Any]]:
        """``[(key, value)]`` of table sink ``topic``'s upserted table (windowed keys come back
        as :class:`~workbench.windows.Windowed`), ordered by key."""
        info = self.catalog.require(topic)
        if not info.upsert:
            raise DriverError(f"topic {topic!r} is not a table sink.")
        S = self.s.sql.SQL
        fresh = self.s.call(lambda c: c.execute(S("SELECT windowed FROM {}._topics WHERE name = "
                                                  "%s").format(self.s.qs()),
                                                (topic,)).fetchone(), "reading the catalog")
        if fresh is None or fresh[0] is None:
            return []
        table = self.s.q(self.s.schema, sink_table(topic))
        if fresh[0]:
            rows = self.s.call(lambda c: c.execute(S(
                "SELECT to_jsonb(key)::text, window_start, window_end, value::text FROM {} "
                "ORDER BY 1, 2, 3").format(table)).fetchall(), f"reading table {topic!r}")
            return [(Windowed(decode_key(loads(k)), ws, we), loads(v))
                    for k, ws, we, v in rows]
        rows = self.s.call(lambda c: c.execute(S(  # to_jsonb: the same text for every key type
            "SELECT to_jsonb(key)::text, value::text FROM {} ORDER BY 1").format(table)
        ).fetchall(), f"reading table {topic!r}")
        return [(decode_key(loads(k)), loads(v)) for k, v in rows]
