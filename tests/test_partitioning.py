"""Java-compatible murmur2 partitioning (librdkafka's Java test vectors)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.partitioning import KeyPartitioner, murmur2, partition_for
from workbench.serde import get_serde

# librdkafka src/rdmurmur2.c unit test: Java reference hashes
VECTORS = {
    b"kafka": 0xD067CF64,
    b"giberish123456789": 0x8F552B0C,
    b"": 0x106E08D9,
}


def test_murmur2_matches_java_reference_vectors() -> None:
    for data, expected in VECTORS.items():
        assert murmur2(data) == expected, data


def test_partition_for_masks_sign_bit() -> None:
    assert partition_for(b"kafka", 1) == 0
    assert partition_for(b"kafka", 3) == (0xD067CF64 & 0x7FFFFFFF) % 3
    assert all(0 <= partition_for(bytes([i]), 7) < 7 for i in range(256))


def test_key_partitioner_uses_serde_bytes_and_caches() -> None:
    part = KeyPartitioner(get_serde("json").serialize)
    assert part.partition("k", 5) == partition_for(b'"k"', 5)
    assert part.partition("k", 5) == partition_for(b'"k"', 5)  # cached path
    assert part.partition({"a": 1}, 5) == partition_for(b'{"a":1}', 5)  # unhashable key
    assert part.partition(None, 5, fallback=7) == 2
    assert KeyPartitioner(get_serde("string").serialize).partition("kafka", 3) == \
        partition_for(b"kafka", 3)


def test_memory_driver_places_keys_like_java() -> None:
    import workbench as wb

    p = wb.Pipeline("t")
    p.source("in", key="k", partitions=4).to("out", partitions=4)
    keys = [f"user-{i}" for i in range(40)]
    run = p.run("memory://", inputs={"in": [{"k": k} for k in keys]})
    for partition in range(4):
        for r in run.driver.read("out", partition, 0, 1000):
            assert partition_for(get_serde("json").serialize(r[0]) or b"", 4) == partition
    assert sorted(r.key for r in run.records("out")) == sorted(keys)


def test_windowed_keys_partition_by_inner_key() -> None:
    from workbench.windows import Windowed

    part = KeyPartitioner(get_serde("json").serialize)
    for k in ("a", "user-7", 42):
        assert part.partition(Windowed(k, 0, 60_000), 6) == part.partition(k, 6)


def test_cache_keeps_equal_keys_of_different_types_apart() -> None:
    part = KeyPartitioner(get_serde("json").serialize)
    expected = [partition_for(get_serde("json").serialize(k) or b"", 7) for k in (1, True, 1.0)]
    assert [part.partition(k, 7) for k in (1, True, 1.0)] == expected


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.one_of(st.text(max_size=3), st.integers(-3, 3), st.booleans(),
                               st.floats(allow_nan=False, width=16), st.none(),
                               st.tuples(st.integers(0, 2))), max_size=40),
       partitions=st.integers(1, 7), fallback=st.integers(0, 5))
def test_partitions_of_a_batch_equal_each_keys_partition(keys: list[object], partitions: int,
                                                          fallback: int) -> None:
    """The engine's routing of a whole batch (once per distinct key) places every key where
    the per-record partitioner does: 1, 1.0 and True stay apart."""
    from workbench.partitioning import KeyPartitioner
    from workbench.serde import JsonSerde

    p = KeyPartitioner(JsonSerde().serialize)
    want = [KeyPartitioner(JsonSerde().serialize).partition(k, partitions, fallback)
            for k in keys]
    assert p.partitions_of(keys, partitions, fallback).tolist() == want
