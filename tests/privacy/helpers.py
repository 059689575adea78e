"""Shared pieces of the privacy tests: a pipeline with personal fields and raw-storage scans."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import workbench as wb

SUBJECTS = 40


def people(n: int = SUBJECTS, start: int = 0, ts0: int = 1_000) -> list[dict[str, Any]]:
    """Records with known personal strings (unique per subject, easy to search for)."""
    return [{"user_id": f"u{i}", "email": f"secret-mail-{i}@example.org",
             "name": f"Secretname{i} Zzyzx", "ip": f"10.99.{i // 250}.{i % 250}",
             "amount": i * 1.5, "ts": ts0 + i}
            for i in range(start, start + n)]


def plaintexts(rows: list[dict[str, Any]]) -> list[bytes]:
    """The personal strings of ``rows`` as bytes (what must never be found at rest)."""
    out: list[bytes] = []
    for r in rows:
        out += [r["email"].encode(), r["name"].encode(), r["name"].upper().encode(),
                r["ip"].encode()]
    return out


def keystore(tmp: Path, **kw: Any) -> wb.KeyStore:
    return wb.KeyStore(tmp / "keys", master=os.urandom(32), **kw)


def build(name: str, keys: Any, sample: list[dict[str, Any]] | None = None,
          partitions: int | None = None) -> wb.Pipeline:
    """A pipeline that passes personal fields through a map, a join, a list aggregation and
    first/last, and derives a value from one (upper-cased name)."""
    p = wb.Pipeline(name, keys=keys)
    users = p.source("signups", key="user_id", time="ts", sample=sample, partitions=partitions,
                     personal=wb.Personal(subject="user_id", fields=["email", "name", "ip"]))
    enriched = users.map(lambda v: {**v, "shout": v["name"].upper(),
                                    "greeting": f"hello {v['name']}"})
    enriched.to("signups-enriched")
    (users.group_by(lambda v: v["user_id"][-1])
          .agg(emails=("email", "list"), first=("name", "first"), last=("ip", "last"),
               n="count", name="by-digit")
          .to("by-digit"))
    return p


def paid_cents(keys: Any, name: str, *, fields: list[str] | None = None,
               step: Any = None) -> wb.Pipeline:
    """``signups`` (personal ``fields``, by default email, name and ip, of subject
    ``user_id``) filtered on ``amount >= 3`` and mapped by ``step`` (default: add ``cents``)
    to ``out``: the pipeline of the lazy-decryption and vouching tests."""
    p = wb.Pipeline(name, keys=keys)
    (p.source("signups", key="user_id", time="ts",
              personal=wb.Personal(subject="user_id", fields=fields or ["email", "name", "ip"]))
      .filter(lambda e: e["amount"] >= 3)
      .map(step or (lambda e: {**e, "cents": round(e["amount"] * 100)}))
      .to("out"))
    return p


def scan(blobs: list[bytes], secrets: list[bytes]) -> list[bytes]:
    """The secrets found in any blob."""
    return [s for s in secrets if any(s in b for b in blobs)]


def files_under(root: Path) -> list[bytes]:
    """The bytes of every file under ``root``."""
    out: list[bytes] = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                out.append((Path(dirpath) / f).read_bytes())
    return out
