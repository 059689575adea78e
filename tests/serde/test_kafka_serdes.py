"""Driver-wide default serdes on a real broker: internal topics under ``?key_serde=string``
(windowed changelogs keep their JSON keys, key-value changelogs take the string serde) and a
restart that restores state from them gives what one run gives."""

from __future__ import annotations

import uuid

import pytest

import workbench as wb

pytestmark = pytest.mark.kafka


def _pipeline(sfx: str) -> wb.Pipeline:
    p = wb.Pipeline(f"defaults-{sfx}")
    clicks = p.source(f"clicks-{sfx}", key="user", time="ts", partitions=2)
    g = clicks.group_by_key()
    g.window(wb.Tumbling(100), emit="close").count(name="per-100").to(f"windows-{sfx}")
    g.count(name="totals").to(f"totals-{sfx}")
    clicks.group_by(lambda v: v["page"]).count(name="pages").to(f"pages-{sfx}")
    return p


def test_string_default_keys_restore_after_a_restart(kafka_url: str) -> None:
    sfx = uuid.uuid4().hex[:8]
    rows = [{"user": f"u{i % 4}", "page": f"/{i % 3}", "ts": 10 * i} for i in range(120)]
    url = f"{kafka_url}?key_serde=string"
    plan = _pipeline(sfx).plan()
    windowed = next(s for t, s in plan.topics.items() if "per-100" in t and "changelog" in t)
    assert windowed.key_serde.name == "json"
    totals = next(s for t, s in plan.topics.items() if "totals" in t and "changelog" in t)
    assert totals.key_serde is None  # the driver's default: string here
    _pipeline(sfx).run(url, inputs={f"clicks-{sfx}": rows[:70]})
    second = _pipeline(sfx).run(url, inputs={f"clicks-{sfx}": rows[70:]})
    once = _pipeline(sfx).run("memory://", inputs={f"clicks-{sfx}": rows})
    for topic in (f"windows-{sfx}", f"totals-{sfx}", f"pages-{sfx}"):
        def final(run: wb.Run, topic: str = topic) -> dict[object, object]:
            return {r.key: r.value for r in run.records(topic)}
        assert final(second) == final(once), topic
