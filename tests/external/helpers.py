"""Shared by the transaction tests and their worker process: the enrichment pipeline that
calls the latency server, and the records it reads.

    python tests/external/helpers.py worker URL SERVER_URL APP LOG
runs the pipeline until killed, appending ``<transaction ms> <batch limit>`` per commit to LOG.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

import workbench as wb  # noqa: E402

#: the latency schedule of the tests: 10 ms, then 500 ms, then 10 ms again (by request count)
FAST, SLOW = 0.01, 0.5


def records(n: int) -> list[dict[str, Any]]:
    return [{"x": i, "k": f"k{i % 5}"} for i in range(n)]


def caller(server_url: str) -> Any:
    """A plain function (run in map_async's thread pool) calling ``/double`` with the call's
    idempotency key."""
    def call(v: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{server_url}/double?x={v['x']}",
                                     headers={"Idempotency-Key": wb.call_info().key})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return {"x": v["x"], "y": json.load(resp)["y"]}

    return call


def enrichment(app: str, server_url: str, concurrency: int = 8) -> wb.Pipeline:
    """``<app>-in`` (2 partitions) → map_async(call the server) → ``<app>-out``."""
    p = wb.Pipeline(app)
    s = p.source(f"{app}-in", key="k", partitions=2)
    s.map_async(caller(server_url), concurrency=concurrency, name="enrich").to(f"{app}-out")
    return p


def worker(url: str, server_url: str, app: str, log: str) -> None:
    """Run the enrichment until killed, logging each transaction."""
    from workbench.run import prepare

    engine = prepare(enrichment(app, server_url), url)

    def note(e: Any) -> None:
        if e.stats.transaction_ms:
            with open(log, "a") as fh:
                fh.write(f"{e.stats.transaction_ms[-1]:.1f} {e.stats.batch_limit}\n")

    engine.on_commit.append(note)
    try:
        engine.run_forever()
    finally:
        engine.close()


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(*sys.argv[2:6])
