"""Errors after a repartition name the source record's position on the drivers that store
headers (Kafka, PostgreSQL, git), where tracking is off by default (it costs a header per
repartitioned record, docs/performance.md) and ``WORKBENCH_ORIGINS=1`` turns it on: the
repartition topic's records then carry one compact ``workbench.origin`` header each, which the
engine takes off when it reads them, so user sinks get the records' own headers only (as Kafka
Streams forwards them) and never workbench's. The memory:// variants are in
``tests/runtime/test_origins.py``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.drivers import connect
from workbench.runtime.origins import ORIGIN_HEADER, decode_header

from . import postgres_helpers

pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url


@pytest.fixture(autouse=True)
def _tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_ORIGINS", "1")


def orders(bad: int) -> list[tuple[Any, Any, int, None, Any]]:
    """Twelve orders of three customers as records ``(key, value, ts, _, headers)``; order
    ``bad`` has ``qty`` 0; orders 3 and 4 carry a header of their own."""
    return [(i, {"id": i, "cust": f"c{i % 3}", "qty": 0 if i == bad else i + 1},
             1_000 + i, None, (("trace", f"t{i}".encode()),) if i in (3, 4) else None)
            for i in range(12)]


def load(driver: Any, topic: str, bad: int) -> tuple[str, int, int] | None:
    """Append the orders to ``topic`` (two partitions, ``i % 2``); return the bad one's
    position (``None`` when none is bad)."""
    driver.ensure_topic(topic, 2)
    recs = orders(bad)
    for part in range(2):
        driver.append(topic, part, [r for r in recs if r[0] % 2 == part])
    for part in range(2):
        for rec in driver.read(topic, part, 0, 100):
            if rec[1]["id"] == bad:
                return (topic, part, rec[3])
    return None


def check_error_names_source(url: str, sfx: str) -> None:
    app = f"orig-{sfx}"
    driver = connect(url)
    driver.bind(app)
    src = load(driver, f"orders-{sfx}", bad=7)
    assert src is not None
    p = wb.Pipeline(app)
    s = p.source(f"orders-{sfx}", partitions=2)
    s.key_by(lambda v: v["cust"]).repartition(partitions=3, name="rp").map(
        lambda v: 10 // v["qty"], name="div").to(f"out-{sfx}")
    with pytest.raises(wb.ProcessingError) as info:
        p.run(driver)
    err = info.value
    assert err.topic == f"{app}-rp-repartition" and err.step == "div"
    assert (err.source_topic, err.source_partition, err.source_offset) == src
    assert (f"offset {err.offset}, which came from topic {src[0]!r} partition {src[1]} "
            f"offset {src[2]}: ZeroDivisionError") in str(err)
    driver.close()


def check_headers_do_not_leak(url: str, sfx: str) -> None:
    app = f"origh-{sfx}"
    driver = connect(url)
    driver.bind(app)
    load(driver, f"orders-{sfx}", bad=-1)
    p = wb.Pipeline(app)
    s = p.source(f"orders-{sfx}", partitions=2)
    s.key_by(lambda v: v["cust"]).repartition(name="rp").to(f"out-{sfx}")
    run = p.run(driver)
    internal = f"{app}-rp-repartition"
    inside = run.driver.read_all(internal)
    assert len(inside) == 12
    for rec in inside:  # each carries its origin, after the record's own headers
        names = [h[0] for h in rec[4]]
        assert names[-1] == ORIGIN_HEADER
        topic, part, offset = decode_header(rec[4][-1][1])
        assert topic == f"orders-{sfx}"
        assert run.driver.read(topic, part, offset, 1)[0][1] == rec[1]
    out = {r[1]["id"]: r[4] for r in run.driver.read_all(f"out-{sfx}")}
    assert len(out) == 12
    assert {i: h for i, h in out.items() if h} == {3: (("trace", b"t3"),),
                                                   4: (("trace", b"t4"),)}
    driver.close()


# -- Kafka ---------------------------------------------------------------------------------------
@pytest.mark.kafka
def test_kafka_error_after_repartition_names_source(kafka_url: str) -> None:
    check_error_names_source(kafka_url, uuid.uuid4().hex[:8])


@pytest.mark.kafka
def test_kafka_origin_headers_stay_internal(kafka_url: str) -> None:
    check_headers_do_not_leak(kafka_url, uuid.uuid4().hex[:8])


@pytest.mark.kafka
def test_kafka_dead_letters_after_repartition_carry_the_source(kafka_url: str) -> None:
    sfx = uuid.uuid4().hex[:8]
    app = f"origd-{sfx}"
    driver = connect(kafka_url)
    src = load(driver, f"orders-{sfx}", bad=4)
    assert src is not None

    async def call(v: dict[str, Any]) -> int:
        return 10 // v["qty"]

    p = wb.Pipeline(app)
    s = p.source(f"orders-{sfx}", partitions=2)
    (s.key_by(lambda v: v["cust"]).repartition(name="rp")
      .map_async(call, retries=0, dead_letter=f"dlq-{sfx}", name="call").to(f"out-{sfx}"))
    run = p.run(driver)
    dead = run.driver.read_all(f"dlq-{sfx}")
    assert [r[1]["id"] for r in dead] == [4]
    h = dict(dead[0][4])
    assert h["workbench.error.topic"] == f"{app}-rp-repartition".encode()
    assert (h["workbench.error.source.topic"], h["workbench.error.source.partition"],
            h["workbench.error.source.offset"]) == (src[0].encode(), str(src[1]).encode(),
                                                     str(src[2]).encode())
    assert ORIGIN_HEADER not in h
    assert len(run.driver.read_all(f"out-{sfx}")) == 11
    driver.close()


# -- PostgreSQL ----------------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_error_after_repartition_names_source(pg_url: str) -> None:
    check_error_names_source(pg_url, "pg")


@pytest.mark.postgres
def test_postgres_origin_headers_stay_internal(pg_url: str) -> None:
    check_headers_do_not_leak(pg_url, "pg")


# -- git -----------------------------------------------------------------------------------------
def test_git_error_after_repartition_names_source(tmp_path: Path) -> None:
    check_error_names_source(f"git://{tmp_path}/repo", "git")


def test_git_origin_headers_stay_internal(tmp_path: Path) -> None:
    check_headers_do_not_leak(f"git://{tmp_path}/repo", "git")


def test_git_by_default_writes_no_origin_headers_and_says_how_to(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_ORIGINS")
    url = f"git://{tmp_path}/repo"
    driver = connect(url)
    driver.bind("origdef")
    load(driver, "orders-def", bad=7)
    p = wb.Pipeline("origdef")
    p.source("orders-def", partitions=2).key_by(lambda v: v["cust"]).repartition(
        name="rp").map(lambda v: 10 // v["qty"], name="div").to("out-def")
    with pytest.raises(wb.ProcessingError) as info:
        p.run(driver)
    assert info.value.source_topic is None
    assert "run with WORKBENCH_ORIGINS=1" in str(info.value)
    inside = driver.read_all("origdef-rp-repartition")
    assert inside and all(ORIGIN_HEADER not in dict(r[4] or ()) for r in inside)
    driver.close()
