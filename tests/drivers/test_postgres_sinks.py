"""Table sinks whose table refuses a change (a constraint the user added): with ``errors=1``
the change goes to ``_errors`` and the run goes on; without, the commit stops with an error
naming the table, the key and the constraint, and writes nothing."""

from __future__ import annotations

import json

import pytest

import workbench as wb
from workbench.drivers import Transaction
from workbench.errors import DriverError
from workbench.windows import Windowed

from . import postgres_helpers
from .postgres_helpers import HAVE_PSYCOPG, execute_sql, schema_of, with_options

if HAVE_PSYCOPG:
    from workbench.drivers.postgres import PostgresDriver

pytestmark = pytest.mark.postgres
pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url


def counting() -> wb.Pipeline:
    p = wb.Pipeline("cv")
    p.source("in", key="k").group_by_key().count(name="c").to("counts")
    return p


def test_refused_changes_go_to_the_errors_table_and_the_run_goes_on(pg_url: str) -> None:
    url = with_options(pg_url, upsert="counts", errors=1)
    counting().run(url, inputs={"in": [{"k": 1}]}).driver.close()
    execute_sql(url, f'ALTER TABLE "{schema_of(url)}".counts ADD CONSTRAINT small CHECK '
                "((value)::int < 3)")
    run = counting().run(url, inputs={"in": [{"k": 1}, {"k": 1}, {"k": 1}, {"k": 2}]})
    d = run.driver
    assert d.committed("cv", "in", 0) == 5  # the run went on
    assert [r.value for r in run.records("counts")] == [1, 2, 3, 4, 1]  # the log has it all
    assert dict(d.table_rows("counts")) == {1: 1, 2: 1}  # key 1 keeps its last allowed row
    errs = d.errors()
    assert len(errs) == 1
    e = errs[0]
    assert (e["topic"], e["partition"], e["position"]) == ("counts", 0, "3")  # log offset
    assert e["source"] == f"table sink {schema_of(url)}.counts"
    assert "refused the change of key 1" in e["error"] and '"small"' in e["error"]
    assert json.loads(e["row"]) == {"key": 1, "value": 4}
    d.close()


def test_a_refused_change_stops_the_commit_naming_table_key_and_constraint(
        pg_url: str) -> None:
    url = with_options(pg_url, upsert="counts")
    counting().run(url, inputs={"in": [{"k": 1}]}).driver.close()
    execute_sql(url, f'ALTER TABLE "{schema_of(url)}".counts ADD CONSTRAINT small CHECK '
                "((value)::int < 3)")
    with pytest.raises(DriverError, match=r"table sink 'counts': table \S+\.counts refused the "
                       r"change of key 1 \(offset 4 in partition 0\): .*\"small\".*errors=1"):
        counting().run(url, inputs={"in": [{"k": 1}, {"k": 2}, {"k": 1}, {"k": 1}]})
    d = PostgresDriver(url)
    assert d.end_offset("counts", 0) == 1  # nothing of the failed commit
    assert d.committed("cv", "in", 0) == 1
    assert dict(d.table_rows("counts")) == {1: 1}  # not even key 2's change
    d.close()


def test_many_changes_with_a_few_refused(pg_url: str) -> None:
    url = with_options(pg_url, upsert="t", errors=1)
    d = PostgresDriver(url)
    d.create_topic("t", 2, kind="sink")
    d.commit(Transaction("app", {("t", 0): [(i, {"v": i}, 0, 0, None) for i in range(0, 1000, 2)],
                                 ("t", 1): [(i, {"v": i}, 0, 0, None) for i in range(1, 1000, 2)]}))
    execute_sql(url, f"ALTER TABLE \"{schema_of(url)}\".t ADD CONSTRAINT no_13 CHECK "
                "((value->>'v')::int % 100 <> 13) NOT VALID")
    d.commit(Transaction("app", {("t", 0): [(i, {"v": i + 1000}, 1, 0, None)
                                            for i in range(0, 1000, 2)],
                                 ("t", 1): [(i, {"v": i + 1000}, 1, 0, None)
                                            for i in range(1, 1000, 2)]}))
    rows = dict(d.table_rows("t"))
    refused = sorted(int(json.loads(e["row"])["key"]) for e in d.errors())
    assert refused == list(range(13, 1000, 100))
    assert rows == {i: {"v": i if i % 100 == 13 else i + 1000} for i in range(1000)}
    assert {e["partition"] for e in d.errors()} == {1}  # odd keys were written to partition 1
    assert sorted(int(e["position"]) for e in d.errors()) == [
        500 + (k - 1) // 2 for k in range(13, 1000, 100)]  # their offsets in partition 1
    d.close()


def test_a_refused_delete_and_a_windowed_key_are_named(pg_url: str) -> None:
    url = with_options(pg_url, upsert="w,kv")
    schema = schema_of(url)
    d = PostgresDriver(url)
    d.create_topic("kv", 1, kind="sink")
    d.commit(Transaction("app", {("kv", 0): [("a", 1, 0, 0, None)]}))
    # str keys: a text key column (see docs/drivers/postgres.md, "Sinks")
    execute_sql(url, f'CREATE TABLE "{schema}".child (k text REFERENCES "{schema}".kv (key))',
                f"INSERT INTO \"{schema}\".child VALUES ('a')")
    with pytest.raises(DriverError, match=r"refused the delete of key 'a'.*child"):
        d.commit(Transaction("app", {("kv", 0): [("a", None, 1, 0, None)]}))
    assert d.table_rows("kv") == [("a", 1)]
    d.create_topic("w", 1, kind="sink")
    d.commit(Transaction("app", {("w", 0): [(Windowed("u", 0, 10), 1, 0, 0, None)]}))
    execute_sql(url, f'ALTER TABLE "{schema}".w ADD CONSTRAINT pos CHECK ((value)::int > 0)')
    with pytest.raises(DriverError, match=r"key Windowed\(key='u', window_start=0, "
                       r"window_end=10\).*\"pos\""):
        d.commit(Transaction("app", {("w", 0): [(Windowed("u", 0, 10), -1, 1, 0, None)]}))
    d.close()
