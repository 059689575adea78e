"""A child program for the pipe tests: reads records on stdin, writes results on stdout.

    tool.py echo                      {"x": n} -> {"x": n, "y": 2n, "pid": PID}
    tool.py same                      each value unchanged
    tool.py keys                      per key k: {"k", "i"} -> {"k", "i", "pid", "ok": i follows}
    tool.py crash N [MARKER]          exits with status 3 on the record x == N (once if MARKER)
    tool.py sleep N SECONDS [MARKER]  sleeps on the record x == N (once if MARKER)
    tool.py many                      {"id", "value": {"n": k}} -> k envelopes, then the end
    tool.py bytes                     frames -> upper-cased frames
    tool.py bytes-many                frames -> each byte as a frame, then the end marker
    tool.py stderr                    echo, and one stderr line per record
    tool.py count FILE                echo, appending every value seen to FILE (a call log)

With MARKER, the failure happens only while MARKER does not exist (it is created first), so
the restarted program gets past it.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time


def lines():
    for line in sys.stdin:
        yield json.loads(line)


def out(value) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def first_time(marker: str | None) -> bool:
    if marker is None:
        return True
    if os.path.exists(marker):
        return False
    with open(marker, "w") as fh:
        fh.write(str(os.getpid()))
    return True


def frames():
    stdin = sys.stdin.buffer
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        (n,) = struct.unpack(">I", head)
        yield stdin.read(n)


def write_frame(data: bytes | None) -> None:
    stdout = sys.stdout.buffer
    stdout.write(b"\xff\xff\xff\xff" if data is None else struct.pack(">I", len(data)) + data)
    stdout.flush()


def main() -> None:
    mode = sys.argv[1]
    args = sys.argv[2:]
    pid = os.getpid()
    if mode == "echo":
        for v in lines():
            out({"x": v["x"], "y": 2 * v["x"], "pid": pid})
    elif mode == "same":
        for v in lines():
            out(v)
    elif mode == "keys":
        last: dict[str, int] = {}
        for v in lines():
            ok = v["i"] == last.get(v["k"], -1) + 1
            last[v["k"]] = v["i"]
            out({"k": v["k"], "i": v["i"], "pid": pid, "ok": ok})
    elif mode == "crash":
        n, marker = int(args[0]), (args[1] if len(args) > 1 else None)
        for v in lines():
            if v["x"] == n and first_time(marker):
                sys.stderr.write(f"crashing on record {n}\n")
                sys.stderr.flush()
                os._exit(3)
            out({"x": v["x"], "y": 2 * v["x"], "pid": pid})
    elif mode == "sleep":
        n, seconds = int(args[0]), float(args[1])
        marker = args[2] if len(args) > 2 else None
        for v in lines():
            if v["x"] == n and first_time(marker):
                time.sleep(seconds)
            out({"x": v["x"], "y": 2 * v["x"], "pid": pid})
    elif mode == "many":
        for env in lines():
            for j in range(env["value"]["n"]):
                out({"id": env["id"], "value": {"n": env["value"]["n"], "j": j}})
            out({"id": env["id"], "end": True})
    elif mode == "bytes":
        for data in frames():
            write_frame(data.upper())
    elif mode == "bytes-many":
        for data in frames():
            for b in data:
                write_frame(bytes([b]))
            write_frame(None)
    elif mode == "stderr":
        for v in lines():
            sys.stderr.write(f"saw {v['x']}\n")
            sys.stderr.flush()
            out(v)
    elif mode == "count":
        path = args[0]
        for v in lines():
            with open(path, "a") as fh:
                fh.write(json.dumps(v) + "\n")
            out(v)
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
