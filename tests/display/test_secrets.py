"""Secrets never show: every surface that shows a driver URL shows it without its password.

A PostgreSQL URL carries the password ``SeCrEt123`` (the shared test server uses trust
authentication, so it is ignored) for the surfaces that need a running driver: ``Run``'s text
and HTML, the live view, ``run.frame`` errors, the debugger's ``read_slice``. A Kafka URL with
``?sasl.password=`` covers what fails before a connection is made. The saved output of a
notebook run on the PostgreSQL URL is checked in ``tests/test_notebooks.py``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import workbench as wb
from workbench.display import live

SECRET = "SeCrEt123"


def with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{SECRET}@{host}"


def pipeline(suffix: str) -> wb.Pipeline:
    p = wb.Pipeline(f"secrets-{suffix}")
    clicks = p.source(f"clicks-{suffix}", key="user_id", time="ts",
                      sample=[{"user_id": f"u{i % 2}", "ts": 1000 * i, "amount": 1.5 * i}
                              for i in range(12)])
    clicks.filter(lambda e: e["amount"] > 3, name="paid").to(f"paid-{suffix}")
    clicks.group_by("user_id").agg(total=("amount", "sum"), name="totals").to(
        f"totals-{suffix}")
    return p


def surfaces_of(obj: Any) -> list[str]:
    out = [repr(obj), str(obj)]
    bundle = getattr(obj, "_repr_mimebundle_", None)
    if bundle is not None:
        out.extend(str(v) for v in bundle().values())
    return out


def assert_no_secret(texts: list[str]) -> None:
    for text in texts:
        assert SECRET not in text, text[:2000]


@pytest.mark.postgres
def test_runs_and_live_views_on_a_url_with_a_password(postgres_url: str) -> None:
    url = with_password(postgres_url)
    suffix = uuid.uuid4().hex[:8]
    p = pipeline(suffix)
    inputs = {f"clicks-{suffix}": p._sources[f"clicks-{suffix}"].params["spec"].sample}
    texts: list[str] = []
    with p.run(url, inputs=inputs) as run:
        assert len(run.frame(f"paid-{suffix}")) > 0
        texts += surfaces_of(run)
        texts.append(run.summary())
        assert "postgres:***@" in run.summary()
        with pytest.raises(wb.DefinitionError) as info:
            run.frame("no-such-topic")
        texts.append(str(info.value))
        with pytest.raises(wb.DefinitionError) as info:
            wb.debug.read_slice(run.driver, "no-such-topic")
        texts.append(str(info.value))
    lv = live.start(p, url, until="end", display=False)
    result = lv.wait(timeout=120)
    try:
        snap = lv.snapshot()
        assert "postgres:***@" in snap.driver
        texts += [live.render_html(snap), live.render_text(snap), *surfaces_of(lv)]
        texts += surfaces_of(result)
    finally:
        result.close()
    texts += surfaces_of(p)  # the graph (text, SVG, Mermaid)
    assert_no_secret(texts)


def test_errors_before_a_connection_hide_a_sasl_password() -> None:
    url = f"kafka://127.0.0.1:9?timeout=2&sasl.password={SECRET}"
    p = pipeline("kafka")
    texts: list[str] = []
    for attempt in (lambda: p.run(url), lambda: p.start(url, display=False)):
        with pytest.raises(wb.WorkbenchError) as info:
            attempt()
        texts.append(str(info.value))
        texts.append(repr(info.value))
    assert_no_secret(texts)
