"""A private ``memory://`` run keeps a declared source's records as the caller gave them when
its steps carry the personal fields to their sinks without looking at them
(``LazyPlan.deferred``, ``columns.defer_input``/``defer_output``): nothing is tagged on the
way in, the sinks hold the plaintext beside the subject field, and every reveal of the log
attributes it to that subject: a forget still erases it everywhere, and every rule protect
applies to a declared source's inputs still holds (through the protection pass when a batch
needs it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.privacy.reads import plan_reads
from workbench.privacy.tags import TAGGED
from workbench.run import prepare

from .helpers import people

FIELDS = ["email", "name", "ip"]


def _keys(tmp: Path) -> wb.KeyStore:
    return wb.KeyStore(tmp / "keys", master=os.urandom(32))


def _pipeline(keys: wb.KeyStore, build: Any) -> wb.Pipeline:
    p = wb.Pipeline("defer", keys=keys)
    build(p.source("signups", key="user_id", time="ts",
                   personal=wb.Personal(subject="user_id", fields=FIELDS))).to("out")
    return p


def _paid(how: str) -> Any:
    if how == "lambda":
        return lambda s: s.filter(lambda e: e["amount"] >= 3).map(
            lambda e: {**e, "cents": round(e["amount"] * 100)})
    return lambda s: s.filter(wb.col("amount") >= 3).assign(
        cents=(wb.col("amount") * 100).round())


def _log(run: Any, topic: str) -> list[Any]:
    """The values the private log holds for ``topic`` (under the boundary)."""
    inner = run.driver.inner
    return [v for p in range(inner.partitions(topic))
            for v in inner.read_batch(topic, p, 0, 10_000).values.objects().tolist()]


def _by_user(frame: Any) -> dict[str, dict[str, Any]]:
    return {r["user_id"]: r for r in frame.to_dict("records")}


@pytest.mark.parametrize("how", ["lambda", "expression"])
def test_inputs_the_steps_do_not_read_stay_as_given_and_a_forget_still_erases_them(
        tmp_path: Path, how: str) -> None:
    keys = _keys(tmp_path)
    rows = people(8)
    run = _pipeline(keys, _paid(how)).run("memory://", inputs={"signups": rows})
    assert run.driver.lazy.deferred.keys() == {"signups"}
    held = _log(run, "signups")
    assert all(any(h is r for r in rows) for h in held)  # the caller's very dicts
    sink = _log(run, "out")
    assert {type(v["email"]) for v in sink} == {str}  # plaintext beside the subject field
    got = _by_user(run.frame("out"))
    assert sorted(got) == [f"u{i}" for i in range(2, 8)]
    for r in rows[2:]:
        assert [got[r["user_id"]][f] for f in FIELDS] == [r[f] for f in FIELDS]
        assert got[r["user_id"]]["cents"] == round(r["amount"] * 100)
    assert all(v.value["email"].__class__ in TAGGED for v in run.records("out"))

    keys.forget("u4")
    for topic in ("out", "signups"):
        got = _by_user(run.frame(topic))
        assert [got["u4"][f] for f in FIELDS] == [wb.ERASED] * 3, topic
        assert got["u5"]["email"] == "secret-mail-5@example.org"
    erased = [r.value for r in run.records("out") if r.value["user_id"] == "u4"]
    assert [erased[0][f] for f in FIELDS] == [wb.ERASED] * 3


def test_a_subject_forgotten_before_the_run_is_erased_on_the_way_in(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    keys.forget("u3")
    rows = people(8)
    run = _pipeline(keys, _paid("lambda")).run("memory://", inputs={"signups": rows})
    assert not any(h is r for h in _log(run, "signups") for r in rows)  # protected, not kept
    got = _by_user(run.frame("out"))
    assert [got["u3"][f] for f in FIELDS] == [wb.ERASED] * 3
    assert got["u6"]["name"] == "Secretname6 Zzyzx"


def test_a_subject_forgotten_after_the_inputs_are_appended_is_erased_by_the_engine(
        tmp_path: Path) -> None:
    """The engine's read of records kept as given asks whether one of their subjects was
    forgotten since they were appended: then the walk tags and erases them."""
    keys = _keys(tmp_path)
    rows = people(8)
    p = _pipeline(keys, _paid("lambda"))
    engine = prepare(p, "memory://", inputs={"signups": rows})
    keys.forget("u5")
    engine.start()
    engine.run_until_end()
    engine.close()
    drv = engine.driver
    assert "signups" in drv.opened  # revealed by the walk, so the sink got the pass
    sink = [v for v in drv.inner.read_batch("out", 0, 0, 100).values.objects().tolist()]
    u5 = [v for v in sink if v["user_id"] == "u5"]
    assert [u5[0][f] for f in FIELDS] == [wb.ERASED] * 3
    assert all(v["email"].__class__ in TAGGED for v in sink if v["user_id"] != "u5")


@pytest.mark.parametrize("step", [
    "sets subject", "reads personal", "renames personal", "drops subject", "select",
    "repartition"])
def test_steps_that_could_move_a_personal_value_keep_the_inputs_tagged(
        tmp_path: Path, step: str) -> None:
    keys = _keys(tmp_path)
    build = {
        "sets subject": lambda s: s.map(lambda e: {**e, "user_id": "u0"}),
        "reads personal": lambda s: s.map(lambda e: {**e, "n": len(e["name"])}),
        "renames personal": lambda s: s.rename(ip="address"),
        "drops subject": lambda s: s.drop("user_id"),
        "select": lambda s: s.select("user_id", "email", "amount"),
        "repartition": lambda s: s.repartition().filter(lambda e: e["amount"] > 1),
    }[step]
    rows = people(6)
    p = _pipeline(keys, build)
    assert plan_reads(p.plan()).deferred == {}
    run = p.run("memory://", inputs={"signups": rows})
    assert not any(h is r for h in _log(run, "signups") for r in rows)
    keys.forget("u4")
    frame = run.frame("out")
    values = {str(x) for x in frame.drop(columns=["user_id"], errors="ignore")
              .to_numpy().ravel().tolist()}
    assert not any(s in v for v in values for s in (
        "secret-mail-4@", "Secretname4 ", "10.99.0.4"))


def test_a_text_that_contains_a_personal_value_takes_the_protection_pass(
        tmp_path: Path) -> None:
    """The containment rule, which protect applies to a declared source's inputs, is checked
    at the sink for records kept as given: a batch where it may apply is protected there as
    the source's inputs would have been (its personal values tagged; in a private log the
    text itself stays as it is unless its subject is forgotten then, as on the way in)."""
    keys = _keys(tmp_path)
    rows = [{**r, "note": f"write to {r['email']}"} for r in people(6)]
    run = _pipeline(keys, _paid("lambda")).run("memory://", inputs={"signups": rows})
    assert run.driver.lazy.deferred.keys() == {"signups"}
    sink = _log(run, "out")
    assert all(v["email"].__class__ in TAGGED for v in sink)  # the protection pass
    plain = [{**r, "note": "no personal value here"} for r in people(6)]
    run = _pipeline(keys, _paid("lambda")).run("memory://", inputs={"signups": plain})
    assert {type(v["email"]) for v in _log(run, "out")} == {str}  # kept as given



def test_values_of_other_types_in_a_personal_field_are_erased_with_their_subject(
        tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    rows = [{**r, "ip": [10, 99, 0, i], "page": "/home"} for i, r in enumerate(people(6))]
    run = _pipeline(keys, _paid("lambda")).run("memory://", inputs={"signups": rows})
    keys.forget("u4")
    got = _by_user(run.frame("out"))
    assert got["u4"]["ip"] == wb.ERASED and list(got["u5"]["ip"]) == [10, 99, 0, 5]


def test_a_value_the_field_name_rule_left_plain_in_a_private_log_is_erased_too(
        tmp_path: Path) -> None:
    """On the other drivers a value put in a personal-named field is sealed for the record's
    subject; a private log keeps it as it is, and its reveal attributes it the same way."""
    keys = _keys(tmp_path)
    run = _pipeline(keys, lambda s: s.map(lambda e: {**e, "ip": str(len(e["email"]))})).run(
        "memory://", inputs={"signups": people(6)})
    assert run.driver.lazy.deferred == {}  # (the step reads email)
    assert {type(v["ip"]) for v in _log(run, "out")} == {str}
    keys.forget("u4")
    got = _by_user(run.frame("out"))
    assert got["u4"]["ip"] == wb.ERASED and got["u5"]["ip"] == "25"


def test_another_pipeline_reading_inputs_kept_as_given_gets_them_tagged(
        tmp_path: Path) -> None:
    """Records kept as given pass untagged only to a reader whose own plan carries them to
    its sinks unread; another pipeline on the same log (here one that rewrites the subject
    field) gets them tagged with their own subjects."""
    keys = _keys(tmp_path)
    run = _pipeline(keys, _paid("lambda")).run("memory://", inputs={"signups": people(6)})
    q = wb.Pipeline("defer-other", keys=keys)
    (q.source("signups", key="user_id", time="ts",
              personal=wb.Personal(subject="user_id", fields=FIELDS))
      .map(lambda e: {**e, "user_id": "u0", "was": e["user_id"]}).to("out2"))
    other = q.run(run.driver.inner)
    assert other.driver.lazy.deferred == {}
    keys.forget("u4")
    got = {r["was"]: r for r in other.frame("out2").to_dict("records")}
    assert [got["u4"][f] for f in FIELDS] == [wb.ERASED] * 3
    assert got["u5"]["email"] == "secret-mail-5@example.org"
