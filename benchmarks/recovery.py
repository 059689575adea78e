"""Recovery time after faults outside the process, for a live job under a steady load (the soak's
pipeline: a stream-stream join and windows, see ``soak.py``). Numbers, not pass/fail; the fault
tests (``tests/drivers/test_*_faults.py``) prove the results exact.

Every scenario starts its OWN server (``workbench.devservices.up`` in a temporary state
directory, removed at the end), never a shared one, and runs three processes on it: the
producer (``--rate`` clicks/s and a quarter of that in purchases, retrying while the server is
away), the job (``Engine.run_forever``, commit interval 100 ms; it prints the time of every
commit) and this one, which applies the fault ``--repeat`` times and measures:

* **stall**: from the fault to the job's first commit after it (no results in between);
* **recovery**: from the server serving again to that commit;
* **job exits**: times the job gave up (its error's last line is shown) and was started again
  at once, as a supervisor would;
* at the end, with the producer stopped: every source record the server holds was committed by
  the job (positions = end offsets), or the script says what is missing and exits 1 (also when
  the job made no commit within ``--patience`` seconds of a fault: it hung).

Faults:

* ``kafka-kill``: ``kill -9`` the broker, start it again ``--down`` seconds later;
* ``kafka-stop``: ``SIGSTOP`` the broker for ``--down`` seconds (longer than the job's
  transaction timeout, 5 s here), then ``SIGCONT``;
* ``pg-terminate``: ``pg_terminate_backend`` every workbench connection (job and producer)
  from the server side;
* ``pg-restart``: an immediate shutdown of the server (``SIGQUIT`` to the postmaster, as
  ``pg_ctl stop -m immediate``: no checkpoint, crash recovery at the next start), started
  again ``--down`` seconds later on the same port and data.

    python benchmarks/recovery.py [--faults kafka-kill,kafka-stop,pg-terminate,pg-restart]
        [--repeat 3]
        [--down 10] [--rate 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import soak  # noqa: E402


# ---------------------------------------------------------------- the job and the producer
def job(url: str, driver: str, sfx: str) -> None:
    """Run until SIGTERM; print ``C <wall time>`` after every commit that moved positions."""
    from workbench.run import prepare

    engine = prepare(soak.build(driver, sfx), url, commit_interval="100ms")
    signal.signal(signal.SIGTERM, lambda *_: engine.stop())
    seen = [0]

    def on_commit(e: Any) -> None:
        if e.stats.commits != seen[0]:
            seen[0] = e.stats.commits
            print(f"C {time.time():.3f}", flush=True)

    engine.on_commit.append(on_commit)
    engine.start()  # topics exist from here on
    print("ready", flush=True)
    engine.run_forever()
    engine.close()
    engine.driver.end_run()
    engine.driver.close()


def produce(url: str, driver: str, sfx: str, rate: int, stop_file: str) -> None:
    """Offer the load until ``stop_file`` exists; a failed transaction is retried (it is one
    transaction: nothing of it is visible unless it commits)."""
    import contextlib
    import random

    import workbench as wb
    from workbench.drivers import Transaction
    from workbench.errors import WorkbenchError
    from workbench.partitioning import KeyPartitioner
    from workbench.serde import get_serde

    n = soak.names(driver, sfx)
    rng = random.Random(3)
    part = KeyPartitioner(get_serde("json").serialize)
    d = wb.connect(url)
    rates = {n["clicks"]: rate, n["buys"]: max(1, rate // 4)}
    sent = dict.fromkeys(rates, 0)
    start = time.monotonic()
    failures = 0
    while not os.path.exists(stop_file):
        time.sleep(soak.TICK_S)
        elapsed = time.monotonic() - start
        ts = int(time.time() * 1000)
        outputs: dict[tuple[str, int], list[Any]] = {}
        upto = {t: int(elapsed * r) for t, r in rates.items()}
        for topic in rates:
            for _ in range(sent[topic], upto[topic]):
                user = rng.randrange(10_000)
                value = {"user": user, "ts": ts, "page": "item", "amount": 9.5}
                outputs.setdefault((topic, part.partition(user, soak.PARTITIONS)), []).append(
                    (user, value, ts, 0, None))
        if not outputs:
            continue
        try:
            d.commit(Transaction(f"{n['app']}-producer", outputs))
            sent.update(upto)
        except WorkbenchError as exc:
            failures += 1
            print(f"producer: {type(exc).__name__}: {str(exc)[:300]}; retrying", file=sys.stderr,
                  flush=True)
            with contextlib.suppress(WorkbenchError):
                d.close()
            time.sleep(1.0)
            d = wb.connect(url)
    d.close()
    print("SENT " + json.dumps({"sent": sum(sent.values()), "failures": failures}), flush=True)


# ---------------------------------------------------------------- servers and faults
class Server:
    """A private Kafka broker or PostgreSQL server for one scenario."""

    def __init__(self, kind: str) -> None:
        from workbench.devservices import up

        self.kind = kind
        self.dir = Path(tempfile.mkdtemp(prefix=f"wb-recovery-{kind}-"))
        info = up((kind,), state_dir=self.dir)[kind]
        self.url, self.port, self.pid = info.url, info.port, info.pid
        self.log_file = Path(info.log_file)
        self.argv = [a.decode() for a in
                     Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0") if a]
        self.cwd = Path(os.readlink(f"/proc/{self.pid}/cwd"))
        self.env = dict(x.decode().split("=", 1) for x in
                        Path(f"/proc/{self.pid}/environ").read_bytes().split(b"\0") if b"=" in x)
        self.uid = os.stat(f"/proc/{self.pid}").st_uid
        self.gid = os.stat(f"/proc/{self.pid}").st_gid

    def pg_restart(self, down: float) -> float:
        """Immediate shutdown (``SIGQUIT``), ``down`` s, start again; return when it answers."""
        import psycopg

        from workbench.devservices._common import pid_alive, spawn_daemon

        os.kill(self.pid, signal.SIGQUIT)
        while pid_alive(self.pid):
            time.sleep(0.05)
        time.sleep(down)
        root = os.geteuid() == 0 and self.uid != 0
        self.pid = spawn_daemon(self.argv, log_file=self.log_file, cwd=self.cwd, env=self.env,
                                user=self.uid if root else None,
                                group=self.gid if root else None)
        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(self.url.split("?")[0], connect_timeout=2).close()
                return time.time()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill_and_restart(self, down: float) -> float:
        """``kill -9`` the broker, wait ``down`` s, start it again; return when it serves."""
        from workbench.devservices._common import pid_alive, port_open, spawn_daemon, wait_until

        os.kill(self.pid, signal.SIGKILL)
        while pid_alive(self.pid, "kafka.Kafka"):
            time.sleep(0.05)
        time.sleep(down)
        before = self.log_file.read_bytes().count(b"Kafka Server started")
        self.pid = spawn_daemon(self.argv, log_file=self.log_file, cwd=self.cwd)
        wait_until(lambda: self.log_file.read_bytes().count(b"Kafka Server started") > before
                   and port_open(self.port), timeout=180,
                   alive=lambda: pid_alive(self.pid, "kafka.Kafka"),
                   what="the restarted broker", log_file=self.log_file)
        return time.time()

    def stop_and_continue(self, down: float) -> float:
        os.kill(self.pid, signal.SIGSTOP)
        time.sleep(down)
        os.kill(self.pid, signal.SIGCONT)
        return time.time()

    def terminate_backends(self) -> float:
        import psycopg

        with psycopg.connect(self.url.split("?")[0], autocommit=True,
                             application_name="wb-recovery") as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                         "application_name = 'workbench' AND pid <> pg_backend_pid()")
        return time.time()

    def destroy(self) -> None:
        from workbench.devservices import down
        from workbench.devservices._common import pid_alive

        if self.kind == "kafka" and pid_alive(self.pid, "kafka.Kafka"):
            os.kill(self.pid, signal.SIGCONT)
        down((self.kind,), state_dir=self.dir)
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


# ---------------------------------------------------------------- one scenario
class Job:
    """The job's process, started again at once whenever it exits."""

    def __init__(self, url: str, driver: str, sfx: str) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), "_job", url, driver, sfx]
        self.commits: list[float] = []
        self.exits: list[str] = []
        self.ready = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        threading.Thread(target=self._follow, args=(self.proc,), daemon=True).start()

    def _follow(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("C "):
                self.commits.append(float(line[2:]))
            elif line.strip() == "ready":
                self.ready.set()
        proc.wait()
        if self._stopping:
            return
        err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
        last = next((x for x in reversed(err) if x.startswith("workbench:")),
                    err[-1] if err else "?")
        self.exits.append(f"{time.time():.3f} exit {proc.returncode}: {last[:200]}")
        with self._lock:
            if not self._stopping:
                self._start()

    def first_commit_after(self, t: float, timeout: float = 300) -> float | None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            later = [c for c in self.commits if c > t]
            if later:
                return later[0]
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def scenario(fault: str, args: argparse.Namespace) -> dict[str, Any]:
    kind = "postgres" if fault.startswith("pg") else "kafka"
    server = Server(kind)
    sfx = uuid.uuid4().hex[:8]
    url = server.url
    if kind == "kafka":
        url += "?transaction_timeout_ms=5000&timeout=30"
    else:
        url += ("&" if "?" in url else "?") + f"schema=rec_{sfx}"
    stop_file = str(server.dir / "stop-producer")
    me = [sys.executable, str(Path(__file__).resolve())]
    rows: list[dict[str, Any]] = []
    job = producer = None
    try:
        job = Job(url, kind, sfx)
        if not job.ready.wait(timeout=300):
            raise SystemExit(f"{fault}: the job did not start: {job.exits}")
        producer = subprocess.Popen([*me, "_produce", url, kind, sfx, str(args.rate), stop_file],
                                    stdout=subprocess.PIPE, text=True)
        print(f"\n{fault}: own {kind} server, {args.rate:,} clicks/s + "
              f"{max(1, args.rate // 4):,} purchases/s", flush=True)
        time.sleep(args.warmup)
        for i in range(args.repeat):
            fault_at = time.time()
            if fault == "kafka-kill":
                back = server.kill_and_restart(args.down)
            elif fault == "kafka-stop":
                back = server.stop_and_continue(args.down)
            elif fault == "pg-restart":
                back = server.pg_restart(args.down)
            else:
                back = server.terminate_backends()
            first = job.first_commit_after(back, args.patience)
            row = {"fault": fault, "n": i + 1, "down_s": round(back - fault_at, 1),
                   "recovery_s": None if first is None else round(first - back, 2),
                   "stall_s": None if first is None else round(first - fault_at, 2),
                   "job_exits": len(job.exits)}
            rows.append(row)
            print(f"  #{row['n']}: server back after {row['down_s']} s; first commit "
                  f"{row['recovery_s']} s later (no commit for {row['stall_s']} s); "
                  f"job exits so far {row['job_exits']}", flush=True)
            time.sleep(args.between)
        Path(stop_file).touch()
        sent_out = producer.communicate(timeout=300)[0]
        sent = json.loads(next(x for x in sent_out.splitlines()
                               if x.startswith("SENT "))[5:])
        missing = drained(url, kind, sfx, timeout=args.patience)
    finally:
        if job is not None:
            job.stop()
        if producer is not None and producer.poll() is None:
            producer.kill()
        server.destroy()
    for e in job.exits if job else []:
        print(f"  job exit: {e}", flush=True)
    print(f"  producer sent {sent['sent']:,} (retried {sent['failures']} transactions); "
          f"records not committed by the job at the end: {missing}", flush=True)
    return {"fault": fault, "rows": rows, "exits": job.exits if job else [], **sent,
            "missing": missing}


def drained(url: str, kind: str, sfx: str, timeout: float) -> int:
    """Wait until the job committed every source record the server holds; return how many
    it had not when ``timeout`` ran out (0: nothing lost)."""
    import workbench as wb

    n = soak.names(kind, sfx)
    d = wb.connect(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            behind = sum(max(0, d.end_offset(t, p) - d.committed(n["app"], t, p))
                         for t in (n["clicks"], n["buys"]) for p in range(soak.PARTITIONS))
            if behind == 0 or time.monotonic() > deadline:
                return behind
            time.sleep(0.5)
    finally:
        d.close()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_job":
        job(*sys.argv[2:5])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_produce":
        a = sys.argv[2:]
        produce(a[0], a[1], a[2], int(a[3]), a[4])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faults", default="kafka-kill,kafka-stop,pg-terminate,pg-restart")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--down", type=float, default=10.0,
                    help="seconds a killed broker stays down / a stopped one stays stopped")
    ap.add_argument("--rate", type=int, default=500, help="clicks/s (purchases: a quarter)")
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--between", type=float, default=10.0, help="seconds between faults")
    ap.add_argument("--patience", type=float, default=300.0,
                    help="seconds to wait for the job's first commit after a fault, and for "
                    "it to catch up at the end")
    ap.add_argument("--json")
    args = ap.parse_args()
    results = [scenario(f, args) for f in args.faults.split(",")]
    print("\nfault         median recovery s  max  median stall s  job exits  missing")
    for r in results:
        rec = [x["recovery_s"] for x in r["rows"] if x["recovery_s"] is not None]
        stall = [x["stall_s"] for x in r["rows"] if x["stall_s"] is not None]
        print(f"{r['fault']:<13} {statistics.median(rec) if rec else float('nan'):>17.2f} "
              f"{max(rec) if rec else float('nan'):>4.1f} "
              f"{statistics.median(stall) if stall else float('nan'):>15.2f} "
              f"{len(r['exits']):>10} {r['missing']:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    stuck = any(x["recovery_s"] is None for r in results for x in r["rows"])
    return 1 if stuck or any(r["missing"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
