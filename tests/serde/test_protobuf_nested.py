"""Nested Protobuf fields of a batch decoded into columns whose Python values are made on
demand (``workbench/runtime/nested.py``: ``NestedColumn``): what the engine does with a column
(select rows, concatenate, read the values, show a frame, estimate its memory) gives exactly
the values and frames of the same values made at once; on a real broker a pipeline that
filters, maps, re-encodes and shows nested messages gets protobuf's own values.

The oracle is protobuf: ``FromString`` of each payload, converted by
``test_protobuf_values.reference`` (the plain walk over the descriptor)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import workbench as wb
from tests.serde.test_protobuf_values import All, _all, _typed, reference
from workbench.frames import _column_series
from workbench.runtime.batch import StructValues, column, concat_columns
from workbench.runtime.footprint import column_nbytes
from workbench.runtime.nested import NestedColumn
from workbench.serde import protobuf_wire
from workbench.serde.protobuf_serde import FLAT_MIN

_NESTED = ["node", "when", "nodes", "times", "flags", "stamps", "colors", "root", "empty",
           "took", "blobs"]


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _batch(msgs: list[Any]) -> tuple[list[bytes], list[dict[str, Any]]]:
    """``msgs`` repeated into a batch the flat path takes, and protobuf's values of it."""
    payloads = [m.SerializeToString() for m in msgs]
    payloads = payloads * -(-FLAT_MIN // len(payloads))
    return payloads, [reference(All.FromString(b)) for b in payloads]


@settings(max_examples=40, deadline=None)
@given(st.lists(_all(), min_size=1, max_size=5), st.data())
def test_nested_columns_are_made_on_demand_with_protobufs_values(msgs: list[Any],
                                                                 data: Any) -> None:
    """Nested fields come as columns that make no Python value until read; rows selected by a
    slice, a mask or positions, selections concatenated (of one batch or of two), a batch's
    ``take`` and its rows all give protobuf's values, of its types; the values are made once."""
    payloads, expected = _batch(msgs)
    n = len(payloads)
    serde = wb.serde.protobuf(All)
    cols, present = wb.serde.protobuf(All).deserialize_columns(payloads)  # type: ignore[misc]
    other, _ = serde.deserialize_columns(payloads)  # type: ignore[misc]
    assert present == [True] * n
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    idx = np.array(data.draw(st.lists(st.integers(-n, n - 1), max_size=20)), np.int64)
    for name in _NESTED:
        col = cols[name]
        assert isinstance(col, NestedColumn) and col.base.objects is None, name
        want = [e[name] for e in expected]
        assert len(col) == n and col.dtype == object
        selected = [(col[5:n - 3:2], want[5:n - 3:2]),
                    (col[mask], [w for w, m in zip(want, mask) if m]),
                    (col[idx], [want[i] for i in idx]),
                    (col[idx][::-1], [want[i] for i in idx][::-1])]
        assert col.base.objects is None  # (selections select positions)
        for got, rows in selected:
            assert isinstance(got, NestedColumn)
            assert _typed(got.tolist()) == _typed(rows), name
        both = concat_columns([col[:3], col[mask], other[name][:2]])
        assert _typed(list(both)) == _typed(want[:3] + [w for w, m in zip(want, mask) if m]
                                            + [e[name] for e in expected[:2]])
        same = concat_columns([col[:3], col[idx]])
        assert isinstance(same, NestedColumn)
        assert _typed(same.tolist()) == _typed(want[:3] + [want[i] for i in idx])
        assert col[3] == want[3] and col[-1] == want[-1]
        made = col.objects()
        assert col.objects() is made and col[:4].objects().tolist() == made[:4].tolist()
    values = StructValues({f: c if isinstance(c, np.ndarray | NestedColumn) else column(c)
                           for f, c in cols.items()}, None, n)  # (as the Kafka driver does)
    assert values.objects().tolist() == expected
    assert values.take(idx).objects().tolist() == [expected[i] for i in idx]
    assert values.field("times").tolist() == [e["times"] for e in expected]


@settings(max_examples=15, deadline=None)
@given(st.lists(_all(), min_size=1, max_size=4))
def test_frames_show_nested_columns_as_the_values_made_at_once(msgs: list[Any]) -> None:
    """A frame's column of a nested field is the one pandas makes of the values themselves
    (same dtype, same values), selected or not; its memory estimate is counted."""
    payloads, expected = _batch(msgs)
    cols, _ = wb.serde.protobuf(All).deserialize_columns(payloads)  # type: ignore[misc]
    for name in _NESTED:
        col = cols[name]
        assert column_nbytes(col) > 0
        want = _column_series(_objects([e[name] for e in expected]), pd)
        pd.testing.assert_series_equal(_column_series(col, pd), want)
        pd.testing.assert_series_equal(_column_series(col[1::2], pd),
                                       _column_series(_objects([e[name] for e in expected]
                                                               [1::2]), pd))
        assert column_nbytes(col) > 0


def test_a_map_entry_with_unknown_fields_is_kept_aside_as_protobuf_does() -> None:
    """upb keeps a map entry holding an unknown field out of the map (in the message's unknown
    fields): the batch path hands such a batch back and the values are protobuf's."""
    msg = All(u=7)
    msg.nodes[1].v = 2
    msg.times["k"].seconds = 5
    msg.flags[True] = 1
    plain = msg.SerializeToString()
    entry = All.DESCRIPTOR.fields_by_name["nodes"].number
    # the nodes entry {key 3, value {v 4}} with field 9 (unknown to an entry) inside
    odd = bytes([entry << 3 | 2, 8, 0x08, 3, 0x12, 2, 0x08, 4, 0x48, 1])
    payload = plain + odd
    assert reference(All.FromString(payload))["nodes"] == {1: {"v": 2, "next": None,
                                                               "children": []}}
    assert protobuf_wire.columns(All.DESCRIPTOR, [payload]) is None
    assert protobuf_wire.columns(All.DESCRIPTOR, [plain]) is not None
    serde = wb.serde.protobuf(All)
    batch = [plain, payload] * FLAT_MIN
    want = [reference(All.FromString(b)) for b in batch]
    assert serde.deserialize_many(batch) == want
    cols, _ = serde.deserialize_columns(batch)  # type: ignore[misc]
    assert list(cols["nodes"]) == [w["nodes"] for w in want]


def _message(i: int) -> Any:
    msg = All(text=f"t{i}", u=i, f=i / 4)
    msg.nodes[i % 3].v = i
    msg.nodes[i % 3].children.add(v=-i)
    msg.times[f"k{i % 5}"].seconds = 1_700_000_000 + i
    msg.flags[i % 2 == 0] = i % 3
    msg.stamps.add(seconds=i, nanos=1000 * i)
    msg.colors.extend([i % 3, 2])
    if i % 4:
        msg.root.v = i
        msg.root.next.v = i + 1
    msg.blobs.append(bytes([i % 256]))
    return msg


@pytest.mark.kafka
def test_a_pipeline_reads_filters_maps_and_writes_nested_messages(kafka_url: str) -> None:
    """On a real broker, batches of nested messages (read a batch at a time, into columns made
    on demand): a column filter, a lambda reading nested fields, a Protobuf sink re-encoding
    whole values and the source's frame give exactly what protobuf's own parsing gives."""
    from confluent_kafka import Producer

    sfx = uuid.uuid4().hex[:8]
    topic, mapped, copied = f"pbnest-{sfx}", f"pbnest-map-{sfx}", f"pbnest-copy-{sfx}"
    n = 1500
    serde = wb.serde.protobuf(All)
    payloads = [_message(i).SerializeToString() for i in range(n)]
    wb.connect(kafka_url).ensure_topic(topic, 1)
    producer = Producer({"bootstrap.servers": kafka_url.removeprefix("kafka://"),
                         "linger.ms": 20})
    for i, value in enumerate(payloads):
        producer.produce(topic, value, f"k{i}".encode(), partition=0)
    producer.flush(30)
    expected = [reference(All.FromString(b)) for b in payloads]

    p = wb.Pipeline(f"pbnest-{sfx}")
    src = p.source(topic, key=wb.serde.string(), value=serde)
    kept = src.filter(wb.col("f") >= 10)
    kept.map(_reads_nested).to(mapped, key=wb.serde.string())
    kept.to(copied, key=wb.serde.string(), value=wb.serde.protobuf(All))
    run = p.run(kafka_url)
    want = [e for e in expected if e["f"] >= 10]
    assert [r.value for r in run.records(mapped)] == list(map(_reads_nested, want))
    assert _typed([r.value for r in run.records(copied)]) == _typed(want)
    assert [r.key for r in run.records(copied)] == [f"k{i}" for i in range(40, n)]
    frame = run.frame(topic)
    for name in _NESTED:
        pd.testing.assert_series_equal(
            frame[name].reset_index(drop=True),
            _column_series(_objects([e[name] for e in expected]), pd).rename(name))
    assert isinstance(frame["when"].iloc[0], type(None))
    assert frame["times"].iloc[3] == {"k3": dt.datetime.fromtimestamp(1_700_000_003, dt.UTC)}


def _reads_nested(v: dict[str, Any]) -> dict[str, Any]:
    """A lambda step's reading of nested fields (into values JSON keeps as they are)."""
    first = next(iter(v["nodes"].values()))
    return {"text": v["text"], "child": first["children"][0]["v"],
            "root": None if v["root"] is None else v["root"]["next"]["v"],
            "times": sorted(v["times"]), "stamp": v["stamps"][0].isoformat(),
            "flags": sorted(map(str, v["flags"].values())), "colors": v["colors"],
            "blob": v["blobs"][0].hex()}


@settings(max_examples=100, deadline=None)
@given(_all())
def test_values_read_are_written_back_to_the_same_values(msg: Any) -> None:
    """A value as the serde reads it (nested dicts, Timestamps as datetimes, also in lists and
    maps, enums by name) is written by the serde to a message that reads the same: a
    pipeline re-encodes what it read."""
    serde = wb.serde.protobuf(All)
    value = reference(msg)
    assert _typed(serde.deserialize(serde.serialize(value))) == _typed(value)


@pytest.mark.registry
def test_framed_batches_through_a_registry(registry_url: str) -> None:
    """Messages in Confluent's wire format through a real registry (Apicurio) read in a batch
    exactly as protobuf parses their payloads; a batch holding a message framed with other
    message indexes goes message by message and names it."""
    from workbench.errors import SerializationError

    serde = wb.serde.protobuf(All, registry=registry_url).for_topic(
        f"pbnest-framed-{uuid.uuid4().hex[:8]}", is_key=False)
    msgs = [_message(i) for i in range(FLAT_MIN + 88)]
    framed = [serde.serialize(m) for m in msgs]
    expected = [reference(m) for m in msgs]
    cols, _ = serde.deserialize_columns(framed)  # type: ignore[misc]
    assert isinstance(cols["nodes"], NestedColumn)
    for name in All.DESCRIPTOR.fields_by_name:
        col = cols[name]
        got = col.tolist() if hasattr(col, "tolist") else col
        assert _typed(got) == _typed([e[name] for e in expected]), name
    assert serde.deserialize_many(framed) == expected
    other = framed[7][:5] + b"\x02\x02" + framed[7][6:]  # indexes [1]: another message
    with pytest.raises(SerializationError, match=r"indexes \[1\], which is not pbvalues.All"):
        serde.deserialize_columns([*framed[:600], other])
