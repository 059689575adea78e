"""Windowed keys in Kafka Streams' layouts (``WindowedSerdes``).

* :class:`TimeWindowedSerde` — ``TimeWindowedSerializer``: the inner key's bytes, then the
  window start as an 8-byte big-endian long. The end is not written; a reader knows the window
  size (``end = start + size``, ``Long.MAX_VALUE`` on overflow, as ``TimeWindowedDeserializer``).
* :class:`SessionWindowedSerde` — ``SessionWindowedSerializer``: the inner key's bytes, the
  session end, then the session start (8-byte big-endian longs each).

Records are partitioned by the inner key's bytes only (``WindowedStreamPartitioner``).
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import SerializationError
from ..windows import Windowed
from .base import Serde

__all__ = ["SessionWindowedSerde", "TimeWindowedSerde"]

_LONG = struct.Struct(">q")
_TWO_LONGS = struct.Struct(">qq")
_LONG_MAX = (1 << 63) - 1


class _WindowedSerde(Serde):
    def __init__(self, inner: Serde) -> None:
        self.inner = inner

    def for_topic(self, topic: str, *, is_key: bool) -> Serde:
        bound = self.inner.for_topic(topic, is_key=is_key)
        return self if bound is self.inner else self._with(bound)

    def _with(self, inner: Serde) -> Serde:
        raise NotImplementedError

    def _inner_bytes(self, obj: Any) -> bytes:
        if not isinstance(obj, Windowed):
            raise SerializationError(f"the {self.name} serde writes windowed keys, got {obj!r}")
        data = self.inner.serialize(obj.key)
        if data is None:
            raise SerializationError(f"a windowed key needs a key inside, got {obj!r}")
        return data

    @property
    def offline(self) -> bool:
        return self.inner.offline


class TimeWindowedSerde(_WindowedSerde):
    """Keys of time (tumbling, hopping, sliding) windows, as ``TimeWindowedSerde``.

    Args:
        inner: serde of the key inside the window.
        size_ms: window size (sliding windows: the time difference), to compute window ends
            when reading.
    """

    name = "time_windowed"

    def __init__(self, inner: Serde, size_ms: int) -> None:
        super().__init__(inner)
        self.size_ms = int(size_ms)

    def _with(self, inner: Serde) -> Serde:
        return TimeWindowedSerde(inner, self.size_ms)

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        return self._inner_bytes(obj) + _LONG.pack(obj.window_start)

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) < 8:
            raise SerializationError(f"a time-windowed key has at least 8 bytes, got {data!r}")
        start = _LONG.unpack_from(data, len(data) - 8)[0]
        end = start + self.size_ms
        if end > _LONG_MAX:
            end = _LONG_MAX
        return Windowed(self.inner.deserialize(data[:-8]), start, end)

    def __repr__(self) -> str:
        return f"wb.serde.time_windowed({self.inner!r}, size_ms={self.size_ms})"


class SessionWindowedSerde(_WindowedSerde):
    """Keys of session windows, as ``SessionWindowedSerde``."""

    name = "session_windowed"

    def _with(self, inner: Serde) -> Serde:
        return SessionWindowedSerde(inner)

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        return self._inner_bytes(obj) + _TWO_LONGS.pack(obj.window_end, obj.window_start)

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) < 16:
            raise SerializationError(f"a session-windowed key has at least 16 bytes, got "
                                     f"{data!r}")
        end, start = _TWO_LONGS.unpack_from(data, len(data) - 16)
        return Windowed(self.inner.deserialize(data[:-16]), start, end)

    def __repr__(self) -> str:
        return f"wb.serde.session_windowed({self.inner!r})"
