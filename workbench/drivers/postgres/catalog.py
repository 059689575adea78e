"""The schema and its catalog: workbench's own tables, and the topics with their log tables,
views and source tables.

``_topics`` lists every topic (partitions, kind, log table, upsert flag, window shape, source
table); ``_partitions`` holds each partition's next offset. Creating a topic creates its log
table (and, for a stream sink, the view named after it) in the same transaction as its catalog
row, under a schema-wide advisory lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import DefinitionError, DriverError
from .naming import lock_key, log_table, sink_table
from .session import Session

__all__ = ["Catalog", "TopicInfo"]


@dataclass
class TopicInfo:
    """A topic as the catalog describes it."""

    name: str
    partitions: int
    kind: str
    compact: bool
    log_table: str
    upsert: bool
    source_table: str | None = None  # "schema.table" of a user table source
    source_column: str | None = None
    source_key: str | None = None
    source_value: str | None = None
    windowed: bool | None = None  # shape of the upsert table (None: not created yet)
    #: how keys go into the upsert table's key column: "jsonb", "bigint" or "text" (None: not
    #: looked up yet; see sinks.py)
    key_mode: str | None = None


class Catalog:
    """Creates the schema and topics, and looks topics up (cached)."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.topics: dict[str, TopicInfo] = {}

    def clear(self) -> None:
        """Forget cached topics (after the schema changed or was dropped)."""
        self.topics.clear()

    def setup_schema(self) -> None:
        """Create the schema and workbench's tables if they are missing."""
        S = self.s.sql.SQL
        s = self.s.qs()
        schema = self.s.schema
        stmts = [
            S("CREATE SCHEMA IF NOT EXISTS {}").format(s),
            S("CREATE TABLE IF NOT EXISTS {}._topics (name text PRIMARY KEY, partitions int "
              "NOT NULL, kind text NOT NULL, compact boolean NOT NULL, log_table text NOT NULL,"
              " upsert boolean NOT NULL DEFAULT false, windowed boolean, source_table text, "
              "source_column text, source_key text, source_value text, "
              "created_at timestamptz NOT NULL DEFAULT now())").format(s),
            S("CREATE TABLE IF NOT EXISTS {}._partitions (topic text NOT NULL, partition int "
              "NOT NULL, next_offset bigint NOT NULL DEFAULT 0, PRIMARY KEY (topic, partition))"
              ).format(s),
            S("CREATE TABLE IF NOT EXISTS {}._positions (app text NOT NULL, topic text NOT "
              "NULL, partition int NOT NULL, next_offset bigint NOT NULL, updated_at "
              "timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (app, topic, partition))"
              ).format(s),
            S("CREATE TABLE IF NOT EXISTS {}._metadata (app text NOT NULL, key text NOT NULL, "
              "value jsonb, PRIMARY KEY (app, key))").format(s),
            S("CREATE TABLE IF NOT EXISTS {}._commits (token text PRIMARY KEY, seq bigint NOT "
              "NULL, at timestamptz NOT NULL DEFAULT now())").format(s),
            S("CREATE TABLE IF NOT EXISTS {}._errors (id bigserial PRIMARY KEY, topic text, "
              "partition int, position text, source text, error text, row_text text, "
              "at timestamptz NOT NULL DEFAULT now(), UNIQUE (topic, partition, position))"
              ).format(s),
        ]

        def run(conn: Any) -> None:
            name = self.s.q(schema, "_errors").as_string(conn)
            errors = self.s.pg.errors
            for attempt in range(3):
                if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]:
                    return
                try:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)",
                                     (lock_key("schema", schema),))
                        for st in stmts:
                            conn.execute(st)
                    return
                except (errors.UniqueViolation, errors.DuplicateObject):
                    # another process created it meanwhile: an advisory lock does not refresh
                    # the server's catalog cache, so IF NOT EXISTS may miss what it committed
                    if attempt == 2:
                        raise

        self.s.call(run, f"creating schema {schema!r}")

    def info(self, topic: str) -> TopicInfo | None:
        """The topic's catalog entry, or ``None``; a configured user-table source is entered in
        the catalog on first use."""
        info = self.topics.get(topic)
        if info is not None:
            return info

        def run(conn: Any) -> Any:
            return conn.execute(
                self.s.sql.SQL("SELECT name, partitions, kind, compact, log_table, upsert, "
                               "source_table, source_column, source_key, source_value, windowed "
                               "FROM {}._topics WHERE name = %s").format(self.s.qs()),
                (topic,)).fetchone()

        row = self.s.call(run, f"looking up topic {topic!r}")
        if row is None:
            if topic in self.s.options.tables:
                self.create_topic(topic, 1, kind="source")
                return self.topics.get(topic)
            return None
        info = TopicInfo(row[0], row[1], row[2], row[3], row[4], row[5], source_table=row[6],
                         source_column=row[7], source_key=row[8], source_value=row[9],
                         windowed=row[10])
        self.topics[topic] = info
        return info

    def require(self, topic: str) -> TopicInfo:
        """The topic's catalog entry; :class:`DriverError` when it does not exist."""
        info = self.info(topic)
        if info is None:
            raise DriverError(f"topic {topic!r} does not exist on {self.s.safe_url()} "
                              f"(schema {self.s.schema!r}).")
        return info

    @staticmethod
    def check_partition(info: TopicInfo, partition: int) -> None:
        """:class:`DriverError` unless ``partition`` is one of the topic's."""
        if not 0 <= partition < info.partitions:
            raise DriverError(f"topic {info.name!r} has {info.partitions} partitions; there is "
                              f"no partition {partition}.")

    def names(self) -> list[str]:
        """Every topic's name, sorted."""
        def run(conn: Any) -> list[str]:
            rows = conn.execute(self.s.sql.SQL("SELECT name FROM {}._topics ORDER BY name")
                                .format(self.s.qs())).fetchall()
            return [r[0] for r in rows]

        return self.s.call(run, "listing topics")  # type: ignore[no-any-return]

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        """Enter ``topic`` in the catalog with its log table (and view, for stream sinks), or
        check that the user table of a configured table source exists. No-op if it exists."""
        if partitions < 1:
            raise DefinitionError(f"topic {topic!r}: partitions must be >= 1, got {partitions}.")
        S, s = self.s.sql.SQL, self.s.qs()
        schema = self.s.schema
        src = self.s.options.tables.get(topic)
        if src is not None:
            partitions = 1
        upsert = kind == "sink" and (compact or topic in self.s.options.upsert)
        log_name = log_table(topic)

        def run(conn: Any) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("schema", schema),))
                exists = conn.execute(S("SELECT 1 FROM {}._topics WHERE name = %s").format(s),
                                      (topic,)).fetchone()
                if exists:
                    return
                if src is None:
                    self.claim(conn, topic, log_name, "log table")
                    conn.execute(S(
                        'CREATE TABLE {}.{} (partition int NOT NULL, "offset" bigint NOT NULL, '
                        "key json, value json, ts bigint NOT NULL, headers json, PRIMARY KEY "
                        '(partition, "offset"))').format(s, self.s.q(log_name)))
                    if kind == "sink" and not upsert:
                        view = sink_table(topic)
                        self.claim(conn, topic, view, "view")
                        conn.execute(S(
                            'CREATE VIEW {}.{} AS SELECT key, value, ts, headers, partition, '
                            '"offset" FROM {}.{}').format(s, self.s.q(view), s,
                                                          self.s.q(log_name)))
                else:
                    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (
                        self.s.q(src.schema, src.table).as_string(conn),)).fetchone()
                    if not found[0]:
                        raise DefinitionError(
                            f"table.{topic}: table {src.schema}.{src.table} does not exist.")
                conn.execute(S(
                    "INSERT INTO {}._topics (name, partitions, kind, compact, log_table, upsert,"
                    " source_table, source_column, source_key, source_value) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(s),
                    (topic, partitions, kind, compact, log_name, upsert,
                     None if src is None else f"{src.schema}.{src.table}",
                     None if src is None else src.column, None if src is None else src.key,
                     None if src is None else src.value))
                conn.execute(S("INSERT INTO {}._partitions (topic, partition) SELECT %s, "
                               "generate_series(0, %s - 1) ON CONFLICT DO NOTHING").format(s),
                             (topic, partitions))

        self.s.call(run, f"creating topic {topic!r}")
        self.topics.pop(topic, None)

    def claim(self, conn: Any, topic: str, name: str, what: str) -> None:
        """Raise :class:`DriverError` when relation ``name``, which topic ``topic``'s ``what``
        must have, already exists in the schema (someone else made it)."""
        taken = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", (self.s.schema, name)).fetchone()
        if taken:
            raise DriverError(
                f"schema {self.s.schema!r} already has a relation named {name!r}, which is the "
                f"name of the {what} of topic {topic!r} (see 'Names' in docs/drivers/"
                "postgres.md); workbench did not make it. Drop or rename it, or use another "
                "schema (schema=NAME in the driver URL).")

    def drop_schema(self) -> None:
        """Drop the whole schema (tests, resets)."""
        stmt = self.s.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(self.s.qs())
        self.s.call(lambda c: c.execute(stmt), f"dropping schema {self.s.schema!r}")
        self.clear()
