"""Unit tests of the clickstream pipeline (``examples/clickstream.py``) with the test driver.

Notebook ``05-testing.ipynb`` walks through these tests one by one and then runs this file:

    pytest notebooks/test_my_pipeline.py

The test driver processes each piped record at once and in order, with a mocked wall clock,
like Kafka Streams' TopologyTestDriver; open windows stay open until ``td.end()``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import workbench as wb
from workbench.testing import TestDriver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import clickstream

MINUTE = 60_000


def click(user: str, ts: int, amount: float, page: str = "/home") -> dict:
    return {"user_id": user, "ts": ts, "amount": amount, "page": page}


def profile(user: str, country: str, tier: str, updated: int) -> dict:
    return {"user_id": user, "country": country, "tier": tier, "updated": updated}


@pytest.fixture
def pipeline() -> wb.Pipeline:
    """A fresh clickstream pipeline with tiny samples (the samples only matter to previews)."""
    return clickstream.build(clicks=[click("u1", 0, 1.0)],
                             profiles=[profile("u1", "DE", "pro", 0)])


@pytest.fixture
def td(pipeline: wb.Pipeline) -> Iterator[TestDriver]:
    with TestDriver(pipeline) as driver:
        yield driver


def test_paid_clicks_get_cents(td: TestDriver) -> None:
    clicks = td.input("clicks")
    clicks.pipe("u1", click("u1", 1_000, 12.34), timestamp=1_000)
    clicks.pipe("u1", click("u1", 2_000, -5.0), timestamp=2_000)
    out = td.output("paid").read_values()
    assert out == [{**click("u1", 1_000, 12.34), "cents": 1234}]


def test_big_purchases_are_split_off(td: TestDriver) -> None:
    clicks = td.input("clicks")
    for i, amount in enumerate([50.0, 150.0, 100.0, 100.01]):
        clicks.pipe("u2", click("u2", i, amount), timestamp=i)
    assert [v["amount"] for v in td.output("big-purchases").read_values()] == [150.0, 100.01]
    assert td.output("unsized").is_empty()


def test_minute_totals_emitted_when_the_window_closes(td: TestDriver) -> None:
    clicks = td.input("clicks")
    clicks.pipe("u1", click("u1", 1_000, 10.0), timestamp=1_000)
    clicks.pipe("u1", click("u1", 30_000, 5.0), timestamp=30_000)
    out = td.output("per-user-minute")
    assert out.is_empty()  # emit="close": nothing before the window closes
    # stream time passes window end (60 s) + grace (5 s)
    clicks.pipe("u1", click("u1", MINUTE + 5_000, 1.0), timestamp=MINUTE + 5_000)
    [rec] = out.read_records()
    assert rec.key == wb.Windowed("u1", 0, MINUTE)
    assert rec.value == {"total": 15.0, "n": 2}


def test_a_late_click_goes_to_the_late_output(td: TestDriver) -> None:
    clicks = td.input("clicks")
    clicks.pipe("u1", click("u1", 2 * MINUTE, 10.0), timestamp=2 * MINUTE)
    clicks.pipe("u3", click("u3", 1_000, 7.0), timestamp=1_000)  # its window closed at 65 s
    late = td.output("late-clicks").read_records()
    assert [(r.key, r.value["amount"]) for r in late] == [("u3", 7.0)]
    td.end()
    totals = td.output("per-user-minute").read_values()
    assert totals == [{"total": 10.0, "n": 1}]  # the late click is counted nowhere


def test_clicks_are_enriched_with_the_profile(td: TestDriver) -> None:
    td.input("profiles").pipe("u1", profile("u1", "DE", "pro", 0), timestamp=0)
    clicks = td.input("clicks")
    clicks.pipe("u1", click("u1", 1_000, 3.0), timestamp=1_000)
    clicks.pipe("u9", click("u9", 2_000, 4.0), timestamp=2_000)  # no profile: left join
    enriched = td.output("enriched").read_values()
    assert enriched[0]["country"] == "DE" and enriched[0]["tier"] == "pro"
    assert "country" not in enriched[1]


def test_rows_from_a_dataframe(td: TestDriver) -> None:
    pd = pytest.importorskip("pandas")
    rows = pd.DataFrame([click("u1", 1_000, 1.0), click("u2", 2_000, -1.0)])
    td.input("clicks").pipe_rows(rows)
    frame = td.output("paid").read_frame()
    assert list(frame["key"]) == ["u1"] and list(frame["cents"]) == [100]
