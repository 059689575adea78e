"""Which HTTP stack serves best beside the processing loop: aiohttp vs Starlette on uvicorn.

    python benchmarks/service_http.py [--requests 3000] [--repeat 5]

The server runs in a background thread of a fresh process (as the service's does, beside the
engine's thread) and answers GET /tables/x/KEY with a small JSON body; a client in another
process sends --requests requests one after the other. What matters for the service is the CPU
time the server takes from the process per request (the engine shares the GIL with it), so that
is measured (``time.process_time`` of the server process, all threads), along with the
client's requests/s. CPU time does not depend on what else the machine runs; wall-clock rates
do. Medians of --repeat interleaved runs. Starlette and uvicorn are not dependencies of
workbench: install them to compare (pip install starlette uvicorn httptools).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

DATA = {"key": "u42", "value": {"total": 12.5, "n": 3}, "timestamp": 123}

CLIENT = r'''
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
lat = []
for _ in range(n):
    s = time.perf_counter()
    c.request("GET", "/tables/x/u42"); r = c.getresponse(); r.read()
    lat.append(time.perf_counter() - s)
lat.sort()
print(lat[len(lat) // 2] * 1000)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_starlette(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def get(_req: Any) -> Any:
        return JSONResponse(DATA)

    app = Starlette(routes=[Route("/tables/{s}/{k}", get)])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off")
    uvicorn.Server(config).run()


def _serve_aiohttp(port: int) -> None:
    from aiohttp import web

    async def get(_req: Any) -> Any:
        return web.json_response(DATA)

    app = web.Application()
    app.router.add_get("/tables/{s}/{k}", get)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    loop.run_forever()


def case(stack: str, requests: int) -> dict[str, float]:
    """One run in a fresh process (servers cannot be stopped cleanly from here)."""
    out = subprocess.run([sys.executable, __file__, "--one", stack, "--requests",
                          str(requests)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def one(stack: str, requests: int) -> None:
    port = _free_port()
    target = _serve_starlette if stack == "starlette" else _serve_aiohttp
    threading.Thread(target=target, args=(port,), daemon=True).start()
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    cpu = time.process_time()
    wall = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CLIENT, str(port), str(requests)],
                         capture_output=True, text=True, check=True).stdout.split()
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    print(json.dumps({"cpu_us_per_request": cpu / requests * 1e6,
                      "req_per_s": requests / wall, "p50_ms": float(out[0])}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--one")
    args = ap.parse_args()
    if args.one:
        one(args.one, args.requests)
        return
    stacks = ["aiohttp"]
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401

        stacks.append("starlette")
    except ImportError:
        print("starlette/uvicorn not installed: measuring aiohttp only")
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in stacks}
    for _ in range(args.repeat):
        for stack in stacks:
            runs[stack].append(case(stack, args.requests))
    for stack in stacks:
        us = statistics.median(r["cpu_us_per_request"] for r in runs[stack])
        qps = statistics.median(r["req_per_s"] for r in runs[stack])
        p50 = statistics.median(r["p50_ms"] for r in runs[stack])
        print(f"{stack:>10}: {us:6.0f} us CPU per request ({us * 200 / 1e4:4.1f} % of a core at "
              f"200 req/s); sequential client {qps:5.0f} req/s, p50 {p50:.2f} ms; "
              f"runs {[round(r['cpu_us_per_request']) for r in runs[stack]]}")


if __name__ == "__main__":
    main()
