"""Typed topics on the drivers that store Python objects (git, PostgreSQL): String keys, Avro
values, Java longs and windowed keys give what the memory driver gives, and what Kafka would
read back (the engine sends their records through the serdes once)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import workbench as wb

EVENT = {"type": "record", "name": "Event", "namespace": "typed",
         "fields": [{"name": "user", "type": "string"}, {"name": "ts", "type": "long"},
                    {"name": "amount", "type": "float"}, {"name": "page", "type": "string"},
                    {"name": "channel", "type": "string", "default": "web"}]}


def _pipeline(name: str) -> wb.Pipeline:
    p = wb.Pipeline(name)
    ev = p.source("events", key=("user", wb.serde.string()), value=wb.serde.avro(EVENT),
                  time="ts", partitions=3)
    ev.filter(lambda e: e["amount"] > 0.5).to("kept")
    ev.group_by_key().window(wb.Tumbling(1_000)).count(name="per-second").to(
        "per-second", value=wb.serde.long())
    ev.group_by(lambda e: e["page"]).count(name="pages").to("pages", key=wb.serde.string(),
                                                            value=wb.serde.long())
    return p


def _rows() -> list[dict[str, Any]]:
    return [{"user": f"u{i % 5}", "ts": 100 * i, "amount": (i % 7) / 3, "page": f"/{i % 4}"}
            for i in range(90)]


def _final(run: Any, topic: str) -> dict[Any, Any]:
    return {r.key: r.value for r in run.records(topic)}


def _check(url: str, name: str) -> None:
    expected = _pipeline(name).run("memory://", inputs={"events": _rows()})
    got = _pipeline(name).run(url, inputs={"events": _rows()})
    kept = sorted((r.key, r.value["ts"]) for r in got.records("kept"))
    assert kept == sorted((r.key, r.value["ts"]) for r in expected.records("kept"))
    values = [r.value for r in got.records("kept")]
    assert all(v["channel"] == "web" for v in values)  # Avro's default, read back
    assert {v["amount"] for v in values} <= {float(wb.serde.float32().deserialize(
        wb.serde.float32().serialize(x / 3))) for x in range(7)}  # Avro float: 32 bits
    for topic in ("per-second", "pages"):
        assert _final(got, topic) == _final(expected, topic), topic


def test_git_driver(tmp_path: Path) -> None:
    pytest.importorskip("dulwich", reason="pip install -e '.[git]'")
    _check(f"git://{tmp_path}/repo", f"typed-git-{uuid.uuid4().hex[:6]}")


@pytest.mark.postgres
def test_postgres_driver(postgres_url: str) -> None:
    _check(postgres_url, f"typed-pg-{uuid.uuid4().hex[:6]}")
