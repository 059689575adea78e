"""Personal fields that no step reads stay encrypted through the engine
(``workbench/privacy/reads.py``, ``lazy.py``): the tokens pass through, forgotten subjects'
tokens are erased on the way, plaintext in a personal field is still sealed, and what a step
does read is plaintext to it and sealed on the way out."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.drivers import connect
from workbench.privacy.crypto import PREFIX
from workbench.privacy.reads import function_reads, plan_reads
from workbench.privacy.tags import tag
from workbench.run import append_inputs

from .helpers import paid_cents, people

FIELDS = ["email", "name", "ip"]
G = "a global"


def _pipeline(keys: Any, step: Any = None, name: str = "lazy") -> wb.Pipeline:
    return paid_cents(keys, name, fields=FIELDS, step=step)


def _keys(tmp: Path, **kw: Any) -> wb.KeyStore:
    return wb.KeyStore(tmp / "keys", master=os.urandom(32), **kw)


def _raw(drv: Any, topic: str) -> list[dict[str, Any]]:
    return [r[1] for r in drv.read_all(topic)]


def _run(keys: wb.KeyStore, rows: list[dict[str, Any]], step: Any = None) -> tuple[Any, Any]:
    """(the run, the driver under the privacy boundary) of the pipeline on ``rows``."""
    drv = connect(f"memory://lazy-{uuid.uuid4().hex[:8]}")
    p = _pipeline(keys, step)
    append_inputs(p, drv, {"signups": rows})
    return p.run(drv), drv


def test_function_reads_follows_only_what_it_can_prove() -> None:
    follows = {
        (lambda e: e["amount"] > 0): {"amount"},
        (lambda e: {**e, "c": round(e["amount"] * 100)}): {"amount"},
        (lambda e: e.get("x", 1) > 0 and e["y"] if e["z"] else None): {"x", "y", "z"},
        (lambda e: {**e, "g": f"Dear {e['name']}"}): {"name"},
        (lambda e: e): set(),
        (lambda e: {**e, "a": 1 if e["b"] else 2}): {"b"},
    }
    for fn, fields in follows.items():
        got = function_reads(fn)
        assert got is not None and got.fields == fields, fn
        assert got.pure
    assert function_reads(lambda e: {**e, "x": G}).pure is False  # type: ignore[union-attr]
    refused = [
        lambda e: json.dumps(e), lambda e: [e[k] for k in e], lambda e: {**e}["email"],
        lambda e: json.dumps({**e}), lambda e: e.items(), lambda e: str(e),
        lambda e: locals()["e"]["email"], lambda e: (d := {**e}) and d["email"],
        lambda e: dict(e), lambda e: e[G], lambda e, k="email": e[k], print, len,
    ]
    for fn in refused:
        assert function_reads(fn) is None, fn

    def handler(e: Any) -> Any:
        try:
            return e["a"]
        except KeyError:
            return json.dumps(e)

    assert function_reads(handler) is None


def test_unread_personal_fields_pass_through_as_their_tokens(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    rows = people(12)
    run, drv = _run(keys, rows)
    lazy = run.driver.lazy
    assert lazy.reads["signups"] == {"amount", "ts"}
    assert "out" in lazy.clean and not run.driver.opened
    tokens = {r["user_id"]: r for r in _raw(drv, "signups")}
    out = _raw(drv, "out")
    assert len(out) == 10
    for v in out:
        for f in FIELDS:
            assert v[f].startswith(PREFIX) and v[f] == tokens[v["user_id"]][f]
    frame = run.frame("out").set_index("user_id")
    assert frame.loc["u5", "email"] == "secret-mail-5@example.org"
    assert frame.loc["u5", "cents"] == 750
    # the sink stores columns, the tokens as Python objects (a read reveals them: no Arrow
    # copy of ciphertext), as protect stores the columns it seals
    stored = drv.read_all_batch("out").values
    for f in FIELDS:
        col = stored.cols[f]
        assert col.__class__ is np.ndarray and col.dtype == object, f
        assert all(v.startswith(PREFIX) for v in col.tolist())


def test_forgotten_subjects_tokens_are_erased_when_passed_through(tmp_path: Path) -> None:
    """A forget through the process, and one by another process (the backend only, seen
    when the tombstones are listed again after ttl): neither subject's token is written
    again."""
    keys = _keys(tmp_path, ttl=0)
    rows = people(12)
    drv = connect(f"memory://lazy-{uuid.uuid4().hex[:8]}")
    p = _pipeline(keys)
    append_inputs(p, drv, {"signups": rows})
    wb.forget("u4", keys=keys)
    keys.backend.forget(keys.handle("u7"))  # another process
    run = p.run(drv)
    assert run.driver.lazy.reads["signups"] == {"amount", "ts"}
    out = {v["user_id"]: v for v in _raw(drv, "out")}
    for s in ("u4", "u7"):
        assert [out[s][f] for f in FIELDS] == [wb.ERASED] * 3, s
    assert out["u5"]["email"].startswith(PREFIX)
    frame = run.frame("out").set_index("user_id")
    assert frame.loc["u7", "name"] == wb.ERASED
    assert frame.loc["u8", "name"] == "Secretname8 Zzyzx"


def test_plaintext_in_an_unread_personal_field_is_sealed(tmp_path: Path) -> None:
    """A producer outside workbench wrote plaintext personal fields: the batch is revealed
    in full, so the values are tagged and sealed on the way out."""
    keys = _keys(tmp_path)
    rows = people(6)
    drv = connect(f"memory://lazy-{uuid.uuid4().hex[:8]}")
    p = _pipeline(keys)
    drv.create_topic("signups", 1)
    drv.append("signups", 0, [(r["user_id"], r, r["ts"], i, None) for i, r in enumerate(rows)])
    run = p.run(drv)
    out = _raw(drv, "out")
    assert len(out) == 4
    for v in out:
        for f in FIELDS:
            assert v[f].startswith(PREFIX), (f, v[f])
    assert run.frame("out")["email"].tolist() == [r["email"] for r in rows[2:]]


def test_a_step_that_reads_a_personal_field_sees_plaintext(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    seen: list[str] = []

    def greet(e: Any) -> Any:
        return {**e, "greeting": f"Dear {e['name']}", "n": len(e["name"])}

    rows = people(6)
    run, drv = _run(keys, rows, greet)
    assert run.driver.lazy.reads["signups"] == {"amount", "ts", "name"}
    assert "signups" in run.driver.opened  # what it writes gets the protection pass
    for v in _raw(drv, "out"):
        assert v["greeting"].startswith(PREFIX) and v["name"].startswith(PREFIX)
        assert v["n"] == len("Secretname2 Zzyzx")
    frame = run.frame("out")
    assert frame["greeting"].tolist()[0] == "Dear Secretname2 Zzyzx"
    del seen


def test_a_value_from_outside_the_record_is_still_protected(tmp_path: Path) -> None:
    """A step that uses something other than its record (a closure holding a personal
    value) is not pure: its outputs get the protection pass even though it reads no
    personal field."""
    keys = _keys(tmp_path)
    leaked = tag("someone-else@example.org", keys.handle("u1"), "email", None)

    rows = people(6)
    run, drv = _run(keys, rows, lambda e: {**e, "contact": leaked})
    assert run.driver.lazy.reads["signups"] == {"amount", "ts"}
    assert "out" not in run.driver.lazy.clean
    for v in _raw(drv, "out"):
        assert v["contact"].startswith(PREFIX)
    assert set(run.frame("out")["contact"]) == {"someone-else@example.org"}


@pytest.mark.parametrize("step", ["stateful", "with_record"])
def test_steps_that_cannot_be_followed_reveal_everything(tmp_path: Path, step: str) -> None:
    keys = _keys(tmp_path)
    p = wb.Pipeline("eager", keys=keys)
    s = p.source("signups", key="user_id", time="ts",
                 personal=wb.Personal(subject="user_id", fields=FIELDS))
    if step == "stateful":
        s.group_by(lambda e: e["user_id"]).agg(n="count", name="counts").to("out")
    else:
        s.map(lambda r: r.value, with_record=True).to("out")
    lazy = plan_reads(p.plan())
    if step == "stateful":  # the source's part only repartitions: the aggregation reads all
        assert lazy.reads["signups"] == {"user_id", "ts"}
        assert lazy.reads.keys() == {"signups"}
    else:
        assert "signups" not in lazy.reads
    assert "out" not in lazy.clean


def _expr_run(keys: wb.KeyStore, rows: list[dict[str, Any]], build: Any) -> tuple[Any, Any]:
    """(the run, the driver) of ``signups`` -> ``build(stream)`` -> ``out`` on ``rows``."""
    drv = connect(f"memory://lazy-{uuid.uuid4().hex[:8]}")
    p = wb.Pipeline("lazy-expr", keys=keys)
    build(p.source("signups", key="user_id", time="ts",
                   personal=wb.Personal(subject="user_id", fields=FIELDS))).to("out")
    append_inputs(p, drv, {"signups": rows})
    return p.run(drv), drv


def test_expression_steps_read_exactly_the_fields_they_name(tmp_path: Path) -> None:
    """An expression names every field it reads (``Expr.columns``), so the fields it does not
    name stay encrypted through ``filter``/``assign``/``select``/``rename``/``drop``/
    ``split`` steps as through a lambda's, and its output needs no protection pass; what an
    expression reads of a personal field is plaintext to it, and what it derives is sealed."""
    keys = _keys(tmp_path)
    rows = people(8)
    plain = {r["user_id"]: r for r in rows}

    def paid(s: Any) -> Any:
        parts = s.filter(wb.col("amount") >= 3).split(big=wb.col("amount") > 7,
                                                       default="small")
        return (parts.big.assign(cents=(wb.col("amount") * 100).round(), src="web")
                .rename(ip="address").drop("ts"))

    run, drv = _expr_run(keys, rows, paid)
    assert run.driver.lazy.reads["signups"] == {"amount", "ts"}
    assert run.driver.lazy.clean["out"] == {"signups"}
    assert "signups" not in run.driver.opened  # no personal value was opened
    raw = _raw(drv, "out")
    assert [v["user_id"] for v in raw] == ["u5", "u6", "u7"]
    for v in raw:  # the tokens passed through, the moved one under its new name
        assert v["email"].startswith(PREFIX) and v["address"].startswith(PREFIX)
        assert "ts" not in v and v["src"] == "web"
    frame = run.frame("out")
    assert frame["address"].tolist() == [plain[u]["ip"] for u in frame["user_id"]]
    assert frame["email"].tolist() == [plain[u]["email"] for u in frame["user_id"]]

    def shout(s: Any) -> Any:
        return s.select("user_id", loud=wb.col("name").str.upper())

    run, drv = _expr_run(keys, rows, shout)
    assert run.driver.lazy.reads["signups"] == {"user_id", "name", "ts"}
    assert "signups" in run.driver.opened  # what it writes gets the protection pass
    for v in _raw(drv, "out"):
        assert v["loud"].startswith(PREFIX)
    frame = run.frame("out")
    assert frame["loud"].tolist() == [plain[u]["name"].upper() for u in frame["user_id"]]


def test_an_expression_with_a_value_from_outside_is_not_pure(tmp_path: Path) -> None:
    """A literal that is not a plain scalar (here a personal value of another record) makes an
    expression impure, as a closure makes a function: its outputs get the protection pass."""
    keys = _keys(tmp_path)
    leaked = tag("someone-else@example.org", keys.handle("u1"), "email", None)
    run, drv = _expr_run(keys, people(6), lambda s: s.assign(contact=wb.lit(leaked)))
    assert run.driver.lazy.reads["signups"] == {"ts"}
    assert "out" not in run.driver.lazy.clean
    for v in _raw(drv, "out"):
        assert v["contact"].startswith(PREFIX)
    assert set(run.frame("out")["contact"]) == {"someone-else@example.org"}
    plain = plan_reads(_expr_pipeline(keys, lambda s: s.assign(contact=wb.lit("x"))).plan())
    assert plain.clean["out"] == {"signups"}


def test_function_reads_lists_the_fields_a_function_may_set() -> None:
    sets = {
        (lambda e: {**e, "c": round(e["amount"] * 100)}): {"c"},
        (lambda e: {"a": 1, "b": 2, **e}): {"a", "b"},
        (lambda e: {**e, "x": {"inner": 1}}): {"x", "inner"},
        (lambda e: e["amount"] > 0): set(),
        (lambda e: e): set(),
    }
    for fn, fields in sets.items():
        got = function_reads(fn)
        assert got is not None and got.writes == fields, fn
    unknown = [lambda e: {**e, **e.get("extra")}, lambda e: {**e, e["k"]: 1}]
    for fn in unknown:
        got = function_reads(fn)
        assert got is not None and got.writes is None, fn


@pytest.mark.parametrize("how", ["lambda", "expression", "rename"])
def test_a_value_set_in_a_personal_named_field_is_sealed_on_a_clean_topic(
        tmp_path: Path, how: str) -> None:
    """A pure step that reads no personal field but sets a field with a personal name
    (``{**e, "email": ...}``, ``assign(email=...)``, ``rename(x="email")``) writes a topic
    that still gets the protection pass: the field-name rule seals what it puts there under
    the record's subject, and the subject's forget erases it."""
    keys = _keys(tmp_path)
    rows = people(6)
    build = {
        "lambda": lambda s: s.map(lambda e: {**e, "email": str(e["amount"])}),
        "expression": lambda s: s.assign(email=wb.col("amount").cast(str)),
        "rename": lambda s: s.drop("email").assign(note=wb.col("amount").cast(str))
                            .rename(note="email"),
    }[how]
    run, drv = _expr_run(keys, rows, build)
    assert "out" not in run.driver.lazy.clean
    raw = _raw(drv, "out")
    assert len(raw) == 6 and all(v["email"].startswith(PREFIX) for v in raw)
    assert run.frame("out")["email"].tolist() == [str(r["amount"]) for r in rows]
    keys.forget("u2")
    frame = run.frame("out").set_index("user_id")
    assert frame.loc["u2", "email"] == wb.ERASED and frame.loc["u3", "email"] == "4.5"


def _expr_pipeline(keys: Any, build: Any) -> wb.Pipeline:
    p = wb.Pipeline("lazy-expr-plan", keys=keys)
    build(p.source("signups", key="user_id", time="ts",
                   personal=wb.Personal(subject="user_id", fields=FIELDS))).to("out")
    return p


def test_a_forgotten_subjects_token_in_a_field_of_any_name_is_erased(tmp_path: Path) -> None:
    """A token can sit in a field that no pipeline declares personal (``greeting``, derived
    from a name): a run that passes it through unread erases it once its subject is
    forgotten, as it does in the declared fields; number columns are not searched."""
    keys = _keys(tmp_path)

    def greet(e: Any) -> Any:
        return {**e, "greeting": f"Dear {e['name']}"}

    drv = connect(f"memory://lazy-{uuid.uuid4().hex[:8]}")
    first = paid_cents(keys, "lazy-greet", step=greet)
    append_inputs(first, drv, {"signups": people(12)})
    first.run(drv)
    second = wb.Pipeline("lazy-second", keys=keys)
    (second.source("out", key="user_id", time="ts")
           .map(lambda e: {**e, "twice": e["amount"] * 2})
           .to("out-2"))
    wb.forget("u5", keys=keys)
    run = second.run(drv)
    assert run.driver.lazy.reads["out"] == {"amount", "ts"}
    out = {v["user_id"]: v for v in _raw(drv, "out-2")}
    assert out["u5"]["greeting"] == wb.ERASED
    assert out["u6"]["greeting"].startswith(PREFIX)


def test_columns_of_strings_pass_by_their_starts_as_by_the_set(tmp_path: Path,
                                                               monkeypatch: Any) -> None:
    """``_unread`` passes a column of strings decoded anew (no cached hashes, as from Kafka)
    by startswith passes while the tombstones are few: exactly the columns its set path
    passes (all tokens in a personal field, none of a forgotten subject), and the others
    go to the set path, which erases or refuses them as before."""
    from workbench.privacy import lazy
    from workbench.privacy.boundary import Boundary

    keys = _keys(tmp_path)
    _, drv = _run(keys, people(12))
    wb.forget("u4", keys=keys)
    marks = keys.tombstone_marks()
    assert marks
    rows = _raw(drv, "signups")
    b = Boundary(keys, {"signups": wb.Personal(subject="user_id", fields=FIELDS)})
    live = [r["email"] for r in rows if r["user_id"] != "u4"]
    cases = {
        "tokens of live subjects": (live, True),
        "a forgotten subject's token": ([r["email"] for r in rows], True),
        "plaintext among tokens": ([*live, "someone@example.org"], True),
        "plain strings, not personal": ([f"/page/{i}" for i in range(12)], False),
        "a forgotten token, not personal": ([r["name"] for r in rows], False),
        "the marker": ([*live, wb.ERASED], True),
    }

    def checked(col: list[str], personal: bool, few: int) -> Any:
        monkeypatch.setattr(lazy, "_FEW_MARKS", few)
        b._passed[:] = [set(), set(), -1]
        return lazy._unread(b, [(s + ".")[:-1] for s in col], personal, marks)

    taken = []
    for what, (col, personal) in cases.items():
        fast = checked(col, personal, 16)
        assert fast == checked(col, personal, -1), what  # -1: the set path alone
        taken.append(lazy._tokens_of_live_subjects(col, personal, marks, None))
    assert taken == [True, False, False, True, False, False]
    assert checked([r["email"] for r in rows], True, 16) == [
        wb.ERASED if r["user_id"] == "u4" else r["email"] for r in rows]
