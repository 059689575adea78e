"""Same graph, same answer: every pipeline gives identical outputs on ``git://`` and
``memory://``, and ordinary ``git log`` shows one commit per engine commit."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dulwich")

import workbench as wb
from workbench.drivers import _FACTORIES
from workbench.drivers.git import GitDriver

from .store_processors import VISIT_STORES, Visits

ROOT = Path(__file__).resolve().parents[2]
GIT = shutil.which("git")


@pytest.fixture(autouse=True)
def _git_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    if "git" not in _FACTORIES:
        monkeypatch.setitem(_FACTORIES, "git", GitDriver)


def clicks(n: int = 600, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ts = 1_700_000_000_000
    out = []
    for i in range(n):
        ts += rng.randint(0, 900)
        t = ts - rng.randint(1, 20_000) if rng.random() < 0.05 else ts
        out.append({"user_id": f"u{rng.randint(0, 11)}", "ts": t,
                    "amount": round(rng.uniform(-20, 200), 2), "page": f"/p/{i % 5}", "i": i})
    return out


def profiles() -> list[dict[str, Any]]:
    return [{"user_id": f"u{i}", "country": ["DE", "FR", "JP"][i % 3], "tier": i % 2,
             "ts": 1_699_999_999_000 + i} for i in range(12) if i != 7]


# ------------------------------------------------------------------------------- pipelines
def stateless() -> wb.Pipeline:
    p = wb.Pipeline("eq-stateless")
    s = p.source("clicks", key="user_id", time="ts")
    paid = s.filter(lambda e: e["amount"] > 0).map(lambda e: {**e, "cents": int(e["amount"] * 100)})
    paid.to("paid")
    parts = paid.split(big=lambda e: e["amount"] > 100)
    parts.big.to("big")
    (s.flat_map(lambda e: [{"page": e["page"], "n": k} for k in range(e["i"] % 3)])
      .key_by(lambda e: e["page"]).to("pages"))
    return p


def stateless_partitioned() -> wb.Pipeline:
    p = wb.Pipeline("eq-parts")
    s = p.source("clicks", key="user_id", time="ts", partitions=3)
    s.filter(lambda e: e["amount"] > 0).to("paid", partitions=2)
    return p


def tumbling_close() -> wb.Pipeline:
    p = wb.Pipeline("eq-tumbling")
    agg = (p.source("clicks", key="user_id", time="ts")
            .group_by_key()
            .window(wb.Tumbling("60s", grace="5s"), emit="close")
            .agg(total=("amount", "sum"), n="count", name="per-user"))
    agg.to("per-user")
    agg.late.to("late")
    return p


def windows_repartitioned() -> wb.Pipeline:
    """group_by a field (a repartition topic) into hopping and session windows, updates."""
    p = wb.Pipeline("eq-windows")
    s = p.source("clicks", key="user_id", time="ts", partitions=2)
    (s.group_by("page")
      .window(wb.Hopping("2m", advance="1m", grace="10s"))
      .count(name="page-hop")
      .to("page-hop"))
    (s.group_by_key()
      .window(wb.Session("90s", grace="10s"))
      .agg(total=("amount", "sum"), name="sessions")
      .to("sessions"))
    return p


def table_aggregate() -> wb.Pipeline:
    p = wb.Pipeline("eq-table")
    (p.source("clicks", key="user_id", time="ts")
      .group_by_key()
      .agg(total=("amount", "sum"), n="count", name="totals")
      .to("totals"))
    return p


def stream_table_join() -> wb.Pipeline:
    p = wb.Pipeline("eq-join")
    users = p.table("profiles", key="user_id", time="ts")
    s = p.source("clicks", key="user_id", time="ts")
    s.join(users, how="left", name="enrich").to("enriched")
    (s.join(users, name="enrich-inner")
      .group_by("country")
      .window(wb.Tumbling("5m"), emit="close")
      .count(name="per-country")
      .to("per-country"))
    return p


def table_table_join() -> wb.Pipeline:
    p = wb.Pipeline("eq-table-join")
    users = p.table("profiles", key="user_id", time="ts")
    totals = (p.source("clicks", key="user_id", time="ts")
               .group_by_key().agg(total=("amount", "sum"), name="t2"))
    totals.join(users, how="left", name="tt").to("totals-with-profile")
    return p


def dsl_operators() -> wb.Pipeline:
    """Re-grouped table, suppress, cogroup, repartition, topic function, split
    (``dsl_helpers``)."""
    from .dsl_helpers import dsl_pipeline

    return dsl_pipeline("eq-dsl", "clicks", "profiles", key="user_id", partitions=2)


def global_table_join() -> wb.Pipeline:
    """Clicks joined with a global table of profiles (every partition read by every task) on
    a field, without a repartition; a processor reads the same table."""
    p = wb.Pipeline("eq-global")
    users = p.global_table("profiles", key="user_id", time="ts", partitions=3)
    s = p.source("clicks", key="page", time="ts", partitions=2)
    s.join(users, on="user_id", how="left", name="g-left").to("g-enriched")
    s.join(users, on=lambda v: v["user_id"], name="g-inner").to("g-inner")

    class Country(wb.Processor):
        def init(self, ctx: Any) -> None:
            self.ctx, self.users = ctx, ctx.store("profiles")

        def process(self, record: wb.Record) -> None:
            user = self.users.get(record.value["user_id"])
            self.ctx.forward(record.key, user and user["country"])

    s.process(Country, global_stores=[users], name="g-proc").to("g-countries")
    return p


def profile_history() -> list[dict[str, Any]]:
    """The profiles, then three users moving to another country while the clicks come."""
    return profiles() + [{"user_id": f"u{i}", "country": "XX", "tier": 0,
                          "ts": 1_700_000_000_000 + 80_000 * i} for i in range(1, 4)]


def versioned_join() -> wb.Pipeline:
    """Clicks joined with a versioned table of profiles (the version valid at each click's
    time), with and without a grace period."""
    p = wb.Pipeline("eq-versioned")
    users = p.table("profiles", key="user_id", time="ts", history="1h", partitions=2)
    s = p.source("clicks", key="user_id", time="ts", partitions=2)
    s.join(users, how="left", name="v-left").to("v-left")
    s.join(users, grace="5s", name="v-grace").to("v-grace")
    return p


def processor_stores() -> wb.Pipeline:
    """A processor with a session store and a timestamped store on 2 partitions."""
    p = wb.Pipeline("eq-proc-stores")
    s = p.source("clicks", key="user_id", time="ts", partitions=2)
    s.process(Visits, stores=VISIT_STORES, name="visits").to("visits")
    return p


PIPELINES: dict[str, tuple[Callable[[], wb.Pipeline], Callable[[], dict[str, Any]]]] = {
    "stateless": (stateless, lambda: {"clicks": clicks()}),
    "stateless_partitioned": (stateless_partitioned, lambda: {"clicks": clicks()}),
    "tumbling_close": (tumbling_close, lambda: {"clicks": clicks()}),
    "windows_repartitioned": (windows_repartitioned, lambda: {"clicks": clicks()}),
    "table_aggregate": (table_aggregate, lambda: {"clicks": clicks()}),
    "stream_table_join": (stream_table_join,
                          lambda: {"profiles": profiles(), "clicks": clicks()}),
    "table_table_join": (table_table_join,
                         lambda: {"profiles": profiles(), "clicks": clicks()}),
    "dsl_operators": (dsl_operators, lambda: {"profiles": profiles(), "clicks": clicks()}),
    "global_table_join": (global_table_join,
                          lambda: {"profiles": profiles(), "clicks": clicks()}),
    "processor_stores": (processor_stores, lambda: {"clicks": clicks()}),
    "versioned_join": (versioned_join,
                       lambda: {"profiles": profile_history(), "clicks": clicks()}),
}


def outputs(run: Any) -> dict[str, list[Any]]:
    """Every sink topic (and the topics a topic function created), partition by partition, in
    offset order (offsets dropped)."""
    from .dsl_helpers import created_topics

    out = {t: [(r[0], r[1], r[2], r[4]) for r in run.driver.read_all(t)]
           for t in run.pipeline.sinks}
    # a created topic has one partition written by every task: records of different keys
    # interleave by batch (as on Kafka); each key's records keep their order
    for t in created_topics():
        if run.driver.partitions(t) is not None:
            rows = [(r[0], r[1], r[2], r[4]) for r in run.driver.read_all(t)]
            out[t] = sorted(rows, key=lambda r: repr(r[0]))
    return out


def git_commits(repo: Path, branch: str) -> list[str]:
    assert GIT is not None
    out = subprocess.run([GIT, "-C", str(repo), "log", "--format=%s", branch],
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


@pytest.mark.parametrize("name", list(PIPELINES))
def test_same_outputs_as_memory(name: str, tmp_path: Path) -> None:
    build, inputs = PIPELINES[name]
    mem = build().run("memory://", inputs=inputs())
    got = build().run(f"git://{tmp_path}/repo", inputs=inputs(), batch_size=97)
    try:
        assert outputs(got) == outputs(mem)
        assert any(outputs(mem).values()), "the pipeline produced nothing"
        if GIT is not None:
            subjects = git_commits(tmp_path / "repo", f"workbench/{build().name}")
            appends = [s for s in subjects if s.startswith("workbench: append")]
            engine = [s for s in subjects if s.startswith(f"workbench {build().name}:")]
            assert len(engine) == got.engine.stats.commits
            assert len(appends) + len(engine) == len(subjects)
            fsck = subprocess.run([GIT, "-C", str(tmp_path / "repo"), "fsck", "--strict"],
                                  capture_output=True, text=True)
            assert fsck.returncode == 0 and not fsck.stderr.strip(), fsck
    finally:
        got.driver.close()


def foreign_key_join() -> wb.Pipeline:
    """Clicks as a table of the last click per page, joined with the profile of the user who
    made it (foreign-key joins: subscription and response topics, 2 and 3 partitions)."""
    p = wb.Pipeline("eq-fk")
    users = p.table("profiles", key="user_id", time="ts", partitions=3)
    last = p.table("clicks", key="page", time="ts", partitions=2)
    last.join(users, on=lambda c: c["user_id"], name="fk-inner").to("fk-inner")
    last.join(users, on=lambda c: c["user_id"], how="left", name="fk-left").to("fk-left")
    return p


def test_foreign_key_join_matches_memory(tmp_path: Path) -> None:
    """Git gives the final result per key that memory gives, in batches of 97 and in one
    batch (a foreign-key join drops answers to left values that changed meanwhile, so its
    intermediate results depend on batching, as in Kafka Streams; and the engine's batch
    sizer may cut batches smaller on a loaded machine, so the records themselves can differ
    between two runs)."""
    data = {"profiles": profiles(), "clicks": clicks()}
    bulk = foreign_key_join().run("memory://", inputs=data)
    got = foreign_key_join().run(f"git://{tmp_path}/repo", inputs=data, batch_size=97)
    try:
        for sink in ("fk-inner", "fk-left"):
            final = {r[0]: r[1] for r in outputs(bulk)[sink]}
            assert {r[0]: r[1] for r in outputs(got)[sink]} == final
            assert len([v for v in final.values() if v is not None]) >= 4
    finally:
        got.driver.close()


def test_restart_with_more_input_matches_memory(tmp_path: Path) -> None:
    """Two bounded runs, new input appended in between: resumes from the committed
    positions and restored state, as the named memory driver does."""
    data = clicks(400)
    results = []
    for url in ("memory://eq-restart", f"git://{tmp_path}/repo"):
        first = table_aggregate().run(url, inputs={"clicks": data[:250]})
        second = table_aggregate().run(first.driver if url.startswith("memory") else url,
                                       inputs={"clicks": data[250:]})
        assert second.engine.stats.records_in == 150
        results.append(outputs(second))
        first.driver.close()
        second.driver.close()
    from workbench.drivers.memory import MemoryDriver

    MemoryDriver.forget("eq-restart")
    assert results[0] == results[1]


def test_example_clickstream_on_git(tmp_path: Path) -> None:
    """The example pipeline (samples as inputs) gives the memory driver's outputs."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import clickstream
    finally:
        sys.path.pop(0)
    import pandas as pd

    inputs = {"clicks": pd.read_csv(clickstream.DATA / "clicks.csv"),
              "profiles": pd.read_csv(clickstream.DATA / "profiles.csv")}
    mem = clickstream.build().run("memory://", inputs=inputs)
    got = clickstream.build().run(f"git://{tmp_path}/repo", inputs=inputs)
    try:
        assert outputs(got) == outputs(mem)
        for topic in clickstream.build().sinks:
            pd.testing.assert_frame_equal(got.frame(topic), mem.frame(topic))
    finally:
        got.driver.close()
