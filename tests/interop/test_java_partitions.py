"""Keys like Java: for thousands of random keys of each serde, the bytes workbench's serde
writes and the partition every workbench driver chooses equal what the real Java clients
compute (``StringSerializer``/``LongSerializer``/... with ``BuiltInPartitioner.partitionForKey``
and ``Utils.murmur2``; Kafka Streams' ``TimeWindowedSerializer``/``SessionWindowedSerializer``
with ``WindowedStreamPartitioner``; an Avro record in Confluent's wire format)."""

from __future__ import annotations

import json
import random
import struct
import uuid
from typing import Any

import pytest

import workbench as wb
from workbench.partitioning import KeyPartitioner, partition_for
from workbench.windows import Windowed

from .java_build import require_java, run_java

pytestmark = pytest.mark.conformance

COUNTS = [1, 2, 3, 7, 12, 50, 1000]
N = 3000


def _random_text(rng: random.Random) -> str:
    alphabet = "abcXYZ019 _-/é中😀\u0000\n"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))


def _cases(rng: random.Random) -> list[dict[str, Any]]:
    longs = [rng.randint(-(2**63), 2**63 - 1) for _ in range(N)] + [0, -1, 2**63 - 1, -(2**63)]
    return [
        {"name": "string", "serde": "string", "keys": [_random_text(rng) for _ in range(N)]
         + ["", "kafka", "giberish123456789"]},
        {"name": "long", "serde": "long", "keys": longs},
        {"name": "integer", "serde": "integer",
         "keys": [rng.randint(-(2**31), 2**31 - 1) for _ in range(N)]},
        {"name": "double", "serde": "double",
         "keys": [rng.uniform(-1e12, 1e12) for _ in range(N)] + [0.0, -0.0, 1e-310]},
        {"name": "bytes", "serde": "bytes",
         "keys": [rng.randbytes(rng.randint(0, 40)).hex() for _ in range(N)]},
        {"name": "time_windowed", "serde": "time_windowed", "size": 60_000,
         "keys": [{"key": _random_text(rng), "start": rng.randint(0, 2**42) // 1000 * 1000}
                  for _ in range(N)]},
        {"name": "session_windowed", "serde": "session_windowed",
         "keys": [{"key": _random_text(rng), "start": s, "end": s + rng.randint(0, 10**6)}
                  for s in (rng.randint(0, 2**42) for _ in range(N))]},
    ]


def _serde_and_keys(case: dict[str, Any]) -> tuple[wb.serde.Serde, list[Any], Any]:
    """workbench's serde for a case, its keys as Python values, and the partitioning serde."""
    name, keys = case["serde"], case["keys"]
    if name == "bytes":
        return wb.serde.bytes(), [bytes.fromhex(k) for k in keys], wb.serde.bytes()
    if name == "time_windowed":
        serde = wb.serde.time_windowed(wb.serde.string(), case["size"])
        return serde, [Windowed(k["key"], k["start"], k["start"] + case["size"])
                       for k in keys], wb.serde.string()
    if name == "session_windowed":
        serde = wb.serde.session_windowed(wb.serde.string())
        return serde, [Windowed(k["key"], k["start"], k["end"]) for k in keys], \
            wb.serde.string()
    serde = wb.serde.get_serde(name)
    return serde, keys, serde


def _compare(case: dict[str, Any], java: dict[str, Any]) -> None:
    serde, keys, inner = _serde_and_keys(case)
    partitioner = KeyPartitioner(inner.serialize)  # what the engine routes with
    assert len(java["bytes"]) == len(keys)
    mismatches = []
    for key, data_hex, parts in zip(keys, java["bytes"], java["partitions"]):
        data = serde.serialize(key)
        ours = [partitioner.partition(key, n) for n in COUNTS]
        if data is None or data.hex() != data_hex or ours != parts:
            mismatches.append((key, data_hex, parts, data.hex() if data else None, ours))
        if case["serde"] not in ("time_windowed", "session_windowed"):
            assert [partition_for(data, n) for n in COUNTS] == parts  # type: ignore[arg-type]
    assert not mismatches, f"{case['name']}: {len(mismatches)} differ, e.g. {mismatches[:3]}"


def test_every_key_lands_where_java_puts_it() -> None:
    require_java()
    rng = random.Random(13)
    cases = [{**c, "partitions": COUNTS} for c in _cases(rng)]
    results = run_java("partitions", stdin=json.dumps({"cases": cases}))
    assert [r["name"] for r in results] == [c["name"] for c in cases]
    for case, java in zip(cases, results):
        _compare(case, java)


@pytest.mark.registry
def test_avro_record_keys_land_where_java_puts_them(registry_url: str) -> None:
    """Avro record keys in Confluent's wire format (the same schema registered by Java and by
    workbench gets the same id): same bytes, same partitions."""
    require_java()
    rng = random.Random(7)
    schema = {"type": "record", "name": "CustomerKey", "namespace": "interop",
              "fields": [{"name": "region", "type": "string"}, {"name": "id", "type": "long"},
                         {"name": "vip", "type": ["null", "string"], "default": None}]}
    topic = f"keys-{uuid.uuid4().hex[:8]}"
    serde = wb.serde.avro(schema, registry=registry_url).for_topic(topic, is_key=True)
    keys = [{"region": _random_text(rng), "id": rng.randint(-(2**63), 2**63 - 1),
             "vip": None if rng.random() < 0.5 else _random_text(rng)} for _ in range(N)]
    serde.serialize(keys[0])  # registers first: Java then finds the same schema
    case = {"name": "avro", "serde": "avro", "keys": keys, "partitions": COUNTS,
            "schema": json.loads(serde.schema_text()),  # type: ignore[attr-defined]
            "subject": f"{topic}-key"}
    (java,) = run_java("partitions", registry_url, stdin=json.dumps({"cases": [case]}))
    assert java["bytes"][0][:10] == "00" + struct.pack(">I", serde.writer_id()).hex()  # type: ignore[attr-defined]
    for key, data_hex, parts in zip(keys, java["bytes"], java["partitions"]):
        data = serde.serialize(key)
        assert data is not None and data.hex() == data_hex, key
        assert [partition_for(data, n) for n in COUNTS] == parts
