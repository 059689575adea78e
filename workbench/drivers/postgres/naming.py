"""Names of the database objects of a topic, advisory lock keys and the NOTIFY channel.

Names are injective: no two topics, and no topic and workbench's own tables, ever map to the
same relation.

* workbench's tables: ``_topics``, ``_partitions``, ``_positions``, ``_metadata``,
  ``_commits``, ``_errors``;
* the log table of topic ``T``: ``_log_T``;
* the view (stream sink) or upserted table (table sink) of ``T``: ``T``, or ``_T`` when ``T``
  starts with ``_``.

Names starting with one ``_`` and a letter are workbench's; a topic's own object starts with
``__`` only when the topic starts with ``_``, and with no ``_`` otherwise. A name longer than
PostgreSQL's 63 bytes — or one that ends like a shortened name, ``~`` and 16 hex digits — is cut
to 46 bytes and gets ``~`` and 16 hex digits of the SHA-256 of the full name.

>>> log_table("a"), sink_table("log_a"), sink_table("_topics")
('_log_a', 'log_a', '__topics')
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = ["MAX_IDENT", "channel", "fit", "lock_key", "log_table", "signed64", "sink_table"]

#: PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes
MAX_IDENT = 63
_DIGITS = 16
_SHORTENED = re.compile(rf".*~[0-9a-f]{{{_DIGITS}}}", re.DOTALL)


def fit(full: str) -> str:
    """``full`` if it fits in 63 bytes and cannot be mistaken for a shortened name, else its
    first 46 bytes, ``~`` and a hash of the whole."""
    if len(full.encode()) <= MAX_IDENT and not _SHORTENED.fullmatch(full):
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_DIGITS]
    cut = full.encode()[: MAX_IDENT - _DIGITS - 1].decode("utf-8", "ignore")
    return f"{cut}~{digest}"


def log_table(topic: str) -> str:
    """The log table of ``topic``."""
    return fit(f"_log_{topic}")


def sink_table(topic: str) -> str:
    """The view (stream sink) or upserted table (table sink) named after ``topic``."""
    return fit(f"_{topic}" if topic.startswith("_") else topic)


def lock_key(*parts: Any) -> int:
    """A signed 64-bit advisory lock key for ``parts`` (a kind first: ``"lease"``,
    ``"schema"``, ``"table"``)."""
    text = json.dumps([str(p) for p in parts], ensure_ascii=False)
    h = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(h, "big", signed=True)


def signed64(value: int) -> int:
    """An unsigned 64-bit number (as ``pg_locks`` shows lock keys) as a signed one."""
    return value - (1 << 64) if value >= 1 << 63 else value


def channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema."""
    return fit(f"workbench:{schema}")
