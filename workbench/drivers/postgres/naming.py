"""Names of the database objects of a topic, advisory lock keys and the NOTIFY channel."""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["MAX_IDENT", "channel", "ident", "lock_key", "signed64"]

#: PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes
MAX_IDENT = 63


def ident(prefix: str, name: str) -> str:
    """A table name for ``name`` within PostgreSQL's 63-byte limit (long names get a hash)."""
    full = f"{prefix}{name}"
    if len(full.encode()) <= MAX_IDENT:
        return full
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    cut = full.encode()[: MAX_IDENT - 11].decode("utf-8", "ignore")
    return f"{cut}_{digest}"


def lock_key(*parts: Any) -> int:
    """A signed 64-bit advisory lock key for ``parts``."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big", signed=True)


def signed64(value: int) -> int:
    """An unsigned 64-bit number (as ``pg_locks`` shows lock keys) as a signed one."""
    return value - (1 << 64) if value >= 1 << 63 else value


def channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema."""
    return f"workbench:{schema}"[:MAX_IDENT]
