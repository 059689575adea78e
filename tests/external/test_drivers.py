"""The external steps on every driver: a ``pipe`` pool whose program crashes once, a
``map_async`` enrichment, failed records to a dead-letter topic. The committed outputs are
the same on memory, Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import workbench as wb

from .conftest import tool

N = 300


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka),
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    kind = request.param
    if kind == "memory":
        yield f"memory://ext-drivers-{uuid.uuid4().hex[:6]}"
    elif kind == "kafka":
        yield request.getfixturevalue("kafka_url")
    else:
        base = request.getfixturevalue("postgres_url")
        schema = f"ext_{uuid.uuid4().hex[:8]}"
        yield f"{base}?schema={schema}"
        driver = wb.connect(f"{base}?schema={schema}")
        driver.drop_schema()  # type: ignore[attr-defined]
        driver.close()


def build(app: str, marker: Path) -> wb.Pipeline:
    async def enrich(v: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.001)
        if v["x"] % 97 == 13:
            raise LookupError(f"no profile for {v['x']}")
        return {**v, "key": wb.call_info().key.rsplit("/", 1)[-1]}

    p = wb.Pipeline(app)
    s = p.source(f"{app}-in", key="k", partitions=2)
    scored = s.pipe(tool("crash", "150", str(marker)), workers=2, backoff="10ms",
                    name="score")
    scored.map_async(enrich, concurrency=8, retries=1, backoff="1ms",
                     dead_letter=f"{app}-dlq", name="enrich").to(f"{app}-out")
    return p


def test_pipe_and_map_async_on_every_driver(url: str, tmp_path: Path) -> None:
    app = f"ext-d-{uuid.uuid4().hex[:6]}"
    records = [{"x": i, "k": f"k{i % 7}"} for i in range(N)]
    run = build(app, tmp_path / "crashed").run(url, inputs={f"{app}-in": records})
    try:
        out = sorted((r.value["x"], r.value["y"], r.value["key"])
                     for r in run.records(f"{app}-out"))
        failed = [i for i in range(N) if i % 97 == 13]
        assert [x for x, _y, _k in out] == [i for i in range(N) if i not in failed]
        assert all(y == 2 * x for x, y, _k in out)
        assert all(k.isdigit() for _x, _y, k in out)  # the input's offset: the call's key
        dead = run.records(f"{app}-dlq")
        assert sorted(r.value["x"] for r in dead) == failed
        assert all(dict(r.headers)["workbench.error"].startswith(b"LookupError")
                   for r in dead)
        assert (tmp_path / "crashed").exists()  # the program did crash once
    finally:
        run.close()
