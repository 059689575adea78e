"""Java-compatible key partitioning (Kafka's ``Utils.murmur2`` and the default partitioner).

Every driver places a keyed record in ``(murmur2(serialized_key) & 0x7fffffff) % partitions``,
as the Java producer and Kafka Streams do, and as librdkafka does with
``partitioner=murmur2_random``. So a key lands in the same partition on every driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["KeyPartitioner", "murmur2", "partition_for"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit integer.

    >>> hex(murmur2(b"kafka"))
    '0xd067cf64'
    """
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length & ~3
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rem = length & 3
    if rem == 3:
        h ^= data[end + 2] << 16
    if rem >= 2:
        h ^= data[end + 1] << 8
    if rem >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key_bytes: bytes, partitions: int) -> int:
    """The partition the Java client chooses for serialized key ``key_bytes``.

    >>> partition_for(b"kafka", 3)
    1
    """
    if partitions == 1:
        return 0
    return (murmur2(key_bytes) & 0x7FFFFFFF) % partitions


class KeyPartitioner:
    """Chooses partitions for keys through a key serde, caching recent keys.

    Records without a key go to ``fallback % partitions`` (the writing task's partition), which
    keeps runs deterministic where Kafka's producer would pick a sticky random partition.
    Windowed keys are placed by their inner key, as Kafka Streams' ``WindowedStreamPartitioner``
    does.
    """

    _MAX_CACHE = 200_000

    def __init__(self, serialize: Callable[[Any], bytes | None]) -> None:
        self._serialize = serialize
        self._cache: dict[tuple[type, Any, int], int] = {}

    def partition(self, key: Any, partitions: int, fallback: int = 0) -> int:
        """The partition for ``key`` among ``partitions``."""
        if partitions == 1:
            return 0
        if key is None:
            return fallback % partitions
        if hasattr(key, "window_start"):  # windowed: placed by the inner key
            key = key.key
        cls = key.__class__
        if cls is not str and cls is not int:
            # only keys whose == agrees with their bytes are cached: (1,) == (1.0,) but their
            # JSON differs; lists and dicts are unhashable
            data = self._serialize(key)
            return 0 if data is None else partition_for(data, partitions)
        cached = self._cache.get((cls, key, partitions))
        if cached is not None:
            return cached
        data = self._serialize(key)
        p = 0 if data is None else partition_for(data, partitions)
        if len(self._cache) >= self._MAX_CACHE:
            self._cache.clear()
        self._cache[(cls, key, partitions)] = p
        return p

    def partitions_of(self, keys: list[Any], partitions: int, fallback: int = 0) -> Any:
        """:meth:`partition` of every key, as an ``int64`` NumPy array: once per distinct key
        when the keys are ``str``/``int`` (whose equality agrees with their bytes)."""
        import numpy as np

        n = len(keys)
        if partitions == 1:
            return np.zeros(n, dtype=np.int64)
        part = self.partition
        if set(map(type, keys)) <= _PLAIN:
            memo = dict.fromkeys(keys)
            cached = self._cache.get
            for k in memo:
                p = cached((k.__class__, k, partitions))
                memo[k] = part(k, partitions, fallback) if p is None else p
            return np.fromiter(map(memo.__getitem__, keys), np.int64, n)
        return np.fromiter((part(k, partitions, fallback) for k in keys), np.int64, n)


_PLAIN = frozenset({str, int})
