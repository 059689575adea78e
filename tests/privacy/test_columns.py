"""The column paths of protect and reveal (``workbench/privacy/columns.py``) give exactly what
the record walk gives, on batches of every shape they take, and leave the others to it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.privacy.boundary import Boundary
from workbench.privacy.columns import protect_batch, reveal_batch
from workbench.privacy.crypto import PREFIX
from workbench.privacy.tags import TAGGED, PersonalStr, tag
from workbench.runtime.batch import Batch, ObjectValues

SOURCE = "signups"


def _boundary(tmp_path: Path) -> Boundary:
    keys = wb.KeyStore(tmp_path / "keys", master=os.urandom(32))
    return Boundary(keys, {SOURCE: wb.Personal(subject="user_id", fields=["email", "name"])})


def _same(a: list[Any], b: list[Any]) -> None:
    """Equal records, and equal tags (subject and field) on every tagged value."""
    assert a == b
    for ra, rb in zip(a, b):
        for x, y in [(ra[0], rb[0])] + [
                (ra[1].get(f), rb[1].get(f)) for f in (ra[1] or {})]:
            assert x.__class__ is y.__class__, (x, y)
            if x.__class__ in TAGGED:
                assert (x._wb_h, x._wb_f) == (y._wb_h, y._wb_f)


def _as_walked(b: Boundary, rows: list[Any], **kwargs: Any) -> tuple[Batch, list[Any]]:
    """(the column path's batch, the record walk's records) for ``rows`` written to "out",
    each from an empty "seen" cache; the two must be equal."""
    b._seen.clear()
    cols = protect_batch(b, "out", Batch.from_rows(rows), **kwargs)
    assert cols is not None
    b._seen.clear()
    walked = b.protect("out", rows)
    assert cols.rows() == walked
    return cols, walked


def _people(b: Boundary, n: int) -> list[Any]:
    """Records as a pipeline holds them after a read: personal fields tagged (some with the
    token they were read with, some made in the pipeline), derived strings, None values."""
    h = b.keys.handle
    rows: list[Any] = []
    for i in range(n):
        s = f"u{i % 7}"
        email = tag(f"p{i % 7}@example.org", h(s), "email", None)
        name = tag(f"Person {i % 7}", h(s), "name", None)
        value = {"user_id": s, "email": email, "name": name, "amount": i * 1.5,
                 "page": f"/page/{i % 5}", "note": f"hello {name}" if i % 3 == 0 else "hi",
                 "other": f"Person {(i + 1) % 7} was here" if i % 4 == 0 else None}
        rows.append((i % 3, None if i % 11 == 10 else value, 1_000 + i, i, None))
    return rows


@pytest.mark.parametrize("size", [1, 3, 50])
def test_columns_equal_the_record_walk(tmp_path: Path, size: int) -> None:
    b = _boundary(tmp_path)
    rows = _people(b, size)
    batch = Batch.from_rows(rows)
    struct = batch.values.to_struct()  # type: ignore[attr-defined]
    assert struct is not None
    for layout in (batch, Batch(batch.keys, struct, batch.ts, batch.seq, batch.headers)):
        # strings read back (the derived "note") count as personal values seen lately, and
        # a batch holding one of them in plaintext takes the record walk: start afresh
        b._seen.clear()
        sealed = protect_batch(b, "out", layout)
        assert sealed is not None
        b._seen.clear()
        sealed_rows = b.protect("out", rows)
        _same(sealed.rows(), sealed_rows)
        assert "example.org" not in repr(sealed.rows())
        assert "Person" not in repr([r[1].get("note") for r in sealed.rows() if r[1]])
        opened = reveal_batch(b, "out", sealed)
        assert opened is not None
        _same(opened.rows(), b.reveal("out", sealed_rows))
    # strings read back ("note") are personal values seen lately: a batch holding them in
    # plaintext gets their tokens, by columns as by the record walk
    assert b._seen
    for layout in (batch, Batch(batch.keys, struct, batch.ts, batch.seq, batch.headers)):
        with_seen = protect_batch(b, "out", layout)
        assert with_seen is not None
        _same(with_seen.rows(), b.protect("out", rows))
    # values read back are written with the tokens they were read with (a column mixing
    # tagged and plain strings, "note" here, takes the record walk)
    again = b.reveal("out", sealed_rows)
    assert b.protect_any("out", Batch.from_rows(again)).rows() == sealed_rows
    again = [(k, {f: x for f, x in v.items() if f != "note"} if v else v, *rest)
             for k, v, *rest in again]
    resealed = protect_batch(b, "out", Batch.from_rows(again))
    assert resealed is not None
    assert resealed.rows() == [(k, {f: x for f, x in v.items() if f != "note"} if v else v,
                                *rest) for k, v, *rest in sealed_rows]


def test_forgotten_subjects_read_and_write_as_erased(tmp_path: Path) -> None:
    b = _boundary(tmp_path)
    rows = _people(b, 30)
    sealed = b.protect("out", rows)
    assert reveal_batch(b, "out", Batch.from_rows(sealed)) is not None  # tokens now cached
    # forgotten by another process: the key store's backend alone, then the cached key
    # expires (ttl); the cached plaintexts must not be served
    b.keys.backend.forget(b.keys.handle("u3"))
    b.keys.clear_cache()
    assert b._opened
    opened = reveal_batch(b, "out", Batch.from_rows(sealed))
    assert opened is not None
    _same(opened.rows(), b.reveal("out", sealed))
    mine = [r[1] for r in opened.rows() if r[1] and r[1]["user_id"] == "u3"]
    assert mine and all(v["email"] == wb.ERASED and v["name"] == wb.ERASED for v in mine)
    fresh = [(0, {"user_id": "u3", "email": tag("new@example.org", b.keys.handle("u3"),
                                                 "email", None)}, 1, 0, None)]
    out = protect_batch(b, "out", Batch.from_rows(fresh))
    assert out is not None and out.rows()[0][1]["email"] == wb.ERASED
    assert b.keys.counts() == (6, 1)  # no key made again for u3


def test_source_inputs_and_odd_batches_take_the_record_walk(tmp_path: Path) -> None:
    b = _boundary(tmp_path)
    plain = [(f"u{i}", {"user_id": f"u{i}" if i % 2 else i, "email": f"e{i}@example.org",
                        "name": "Nnn", "note": f"dear e{i}@example.org", "age": 40 + i},
              i, i, None) for i in range(9)]
    # inputs: plaintext personal fields of a declared source are tagged with their record's
    # subject and sealed (and a string containing one of them too)
    wb.forget(4, keys=b.keys)
    cols = protect_batch(b, SOURCE, Batch.from_rows(plain))
    assert cols is not None
    b._seen.clear()
    sealed = b.protect(SOURCE, plain)
    assert cols.rows() == sealed
    assert all(r[1]["email"].startswith(PREFIX) and r[1]["note"].startswith(PREFIX)
               for r in sealed if r[1]["user_id"] != 4)
    assert sealed[4][1]["email"] == wb.ERASED
    assert b.keys.counts() == (8, 1)
    # a source whose subject is missing in a record, or mixes tokens and plaintext: rows
    mixed = sealed[:2] + plain[2:3]
    assert protect_batch(b, SOURCE, Batch.from_rows(mixed)) is None
    assert protect_batch(b, SOURCE, Batch.from_rows(
        [(0, {"user_id": None, "email": "x@example.org"}, 1, 0, None)])) is None
    # ...and once they are tokens, the source reads by columns
    opened = reveal_batch(b, SOURCE, Batch.from_rows(sealed))
    assert opened is not None
    _same(opened.rows(), b.reveal(SOURCE, sealed))
    # a plaintext personal field of a source being read: tagged by the record walk
    assert reveal_batch(b, SOURCE, Batch.from_rows(plain)) is None
    h = b.keys.handle("u1")
    e = tag("x@example.org", h, "email", None)
    odd = [
        [(0, {"emails": [e]}, 1, 0, None)],                     # nested values
        [(e, {"n": 1}, 1, 0, None)],                            # a personal key
        [(0, {"email": "recomputed@example.org", "user_id": "u1"}, 1, 0, None)],  # name rule
        [(0, "a plain string value", 1, 0, None)],              # not a record
    ]
    b.protect("out", [(0, {"email": e}, 1, 0, None)])  # e is now "seen"
    for rows in odd:
        assert protect_batch(b, "out", Batch.from_rows(rows)) is None, rows
    # a string that lost its tag is that personal value, by columns as by the record walk
    lost = [(0, {"copy": str(e), "other": "plain"}, 1, 0, None)]
    cols_lost = protect_batch(b, "out", Batch.from_rows(lost))
    assert cols_lost is not None
    assert cols_lost.rows() == b.protect("out", lost)
    assert cols_lost.rows()[0][1]["copy"].startswith(PREFIX)
    # a batch with no personal data at all is passed on as it is
    none = Batch.from_rows([(1, {"a": 1, "b": "x"}, 1, 0, None)])
    assert protect_batch(b, "out", none) is none
    assert reveal_batch(b, "out", none) is none
    private = Boundary(b.keys, {}, seal=False)  # a private log keeps tagged values as such
    kept = [(0, {"email": e}, 1, 0, None)]
    got = protect_batch(private, "out", Batch.from_rows(kept))
    assert got is not None and got.rows() == private.protect("out", kept)
    assert got.rows()[0][1]["email"].__class__ is PersonalStr
    assert isinstance(Batch.from_rows(plain).values, ObjectValues)


def _tokens(rows: list[Any]) -> list[str]:
    return [v for r in rows for v in r[1].values() if isinstance(v, str) and v.startswith(PREFIX)]


def test_a_private_log_takes_the_column_path_only_where_the_walk_would_only_tag(
        tmp_path: Path) -> None:
    """``seal=False`` (a private ``memory://``): a declared source's plaintext fields are
    tagged by columns, never sealed (no token, no key made), the same records as the record
    walk; a batch with a forgotten subject, a string containing a personal value, or a plain
    string equal to one seen lately takes the walk (which erases or tags them)."""
    keys = wb.KeyStore(tmp_path / "keys", master=os.urandom(32))
    private = Boundary(keys, {SOURCE: wb.Personal(subject="user_id", fields=["email", "name"])},
                       seal=False)

    def rows(n: int, note: bool = False) -> list[Any]:
        return [(f"u{i}", {"user_id": f"u{i % 7}", "email": f"e{i % 7}@example.org",
                           "name": None if i % 5 == 4 else f"Name {i % 7}",
                           "note": f"dear Name {i % 7}" if note else "hello", "n": i},
                 i, i, None) for i in range(n)]

    plain = rows(30)
    got = protect_batch(private, SOURCE, Batch.from_rows(plain))
    assert got is not None  # the column path
    _same(got.rows(), private.protect(SOURCE, plain))
    assert not _tokens(got.rows()) and keys.counts() == (0, 0)
    assert {r[1]["email"].__class__ for r in got.rows()} == {PersonalStr}
    # subjects with keys (written to a durable log through the same store): still no token
    sealing = Boundary(keys, private.sources)
    assert _tokens(sealing.protect(SOURCE, plain))
    again = protect_batch(private, SOURCE, Batch.from_rows(plain))
    assert again is not None and not _tokens(again.rows())
    _same(again.rows(), private.protect(SOURCE, plain))
    # a derived string, and a subject forgotten: the walk (the same outcome either way)
    private._seen.clear()
    assert protect_batch(private, SOURCE, Batch.from_rows(rows(30, note=True))) is None
    wb.forget("u3", keys=keys)
    assert protect_batch(private, SOURCE, Batch.from_rows(plain)) is None
    walked = private.protect(SOURCE, plain)
    assert {r[1]["email"] for r in walked if r[1]["user_id"] == "u3"} == {wb.ERASED}
    # a plain string equal to a personal value seen lately: the walk tags it
    seen_copy = [(0, {"copy": "e1@example.org"}, 1, 0, None)]
    assert private._seen and protect_batch(private, "out", Batch.from_rows(seen_copy)) is None


def test_a_private_log_tags_inputs_seen_before_from_its_own_cache(tmp_path: Path) -> None:
    """``seal=False``: a declared source's inputs tagged before are taken from the private
    log's by-field cache (tagged values without tokens, made without keys; the sealing
    boundaries' cache is not touched), one lookup pass per field, when every value is there
    with the record's subject and no subject of the batch is forgotten: the same records as
    the walk. A value now held by another subject, and a subject forgotten by another process
    (this process's caches kept), take the tagging path (and the walk)."""
    keys = wb.KeyStore(tmp_path / "keys", master=os.urandom(32))
    spec = {SOURCE: wb.Personal(subject="user_id", fields=["email", "name"])}
    private = Boundary(keys, spec, seal=False)
    rows = [(f"u{i}", {"user_id": f"u{i % 7}", "email": f"e{i % 7}@example.org",
                       "name": f"Name {i % 7}", "n": i}, i, i, None) for i in range(30)]
    first = protect_batch(private, SOURCE, Batch.from_rows(rows))
    assert first is not None
    cache = keys.token_caches[4]
    assert set(cache) == {"email", "name"} and not keys.token_caches[3]
    assert {x._wb_t for x in cache["email"].values()} == {None} and keys.counts() == (0, 0)
    before = dict(cache["email"])
    again = protect_batch(private, SOURCE, Batch.from_rows(rows))
    assert again is not None  # the very values tagged the first time
    assert all(r[1]["email"] is before[r[1]["email"]] for r in again.rows())
    _same(again.rows(), private.protect(SOURCE, rows))
    # e1@example.org now belongs to u2 in one record: that field is tagged anew
    moved = [(k, {**v, "email": "e1@example.org"} if q == 2 else v, t, q, h)
             for k, v, t, q, h in rows]
    got = protect_batch(private, SOURCE, Batch.from_rows(moved))
    assert got is not None
    assert got.rows()[2][1]["email"]._wb_h == keys.handle("u2")
    _same(got.rows(), private.protect(SOURCE, moved))
    # u3 forgotten by another process (its key store; this process's caches kept): seen
    # once the key cache is read again, then the walk erases u3's values
    keys.backend.forget(keys.handle("u3"))
    keys.clear_cache()
    assert cache and protect_batch(private, SOURCE, Batch.from_rows(rows)) is None
    walked = private.protect(SOURCE, rows)
    assert {r[1]["email"] for r in walked if r[1]["user_id"] == "u3"} == {wb.ERASED}


@pytest.mark.parametrize("every_row", [True, False])
@pytest.mark.parametrize("shared", [False, True])
def test_strings_containing_a_personal_string_equal_the_record_walk(
        tmp_path: Path, every_row: bool, shared: bool) -> None:
    """A text column searched for one column of personal strings (``f"Dear {name}"``) is
    sealed without a step per record (``columns._contained_strings``; with ``shared``, a
    subject's name is one object in all its records, as values read from tokens are, and
    each distinct text is decided once: ``_contained_distinct``): the same tokens as the
    record walk, cached or not, and the marker for a forgotten subject."""
    b = _boundary(tmp_path)
    h = b.keys.handle
    names = {f"u{j}": tag(f"Person {j}", h(f"u{j}"), "name", None) for j in range(9)}
    rows = []
    for i in range(40):
        s = f"u{i % 9}"
        name = names[s] if shared else tag(f"Person {i % 9}", h(s), "name", None)
        greeting = f"Dear {name}" if every_row or i % 4 else "Hello there"
        rows.append((s, {"user_id": s, "name": name, "greeting": greeting}, 1_000 + i, i,
                     None))
    b.protect("out", rows[:1])  # makes the keys
    wb.forget("u4", keys=b.keys)
    for _ in range(2):  # token cache cold, then warm
        walked = _as_walked(b, rows)[1]
    greetings = [r[1]["greeting"] for r in walked]
    for r, g in zip(rows, greetings):
        if not r[1]["greeting"].startswith("Dear"):
            assert g == "Hello there"
        elif r[1]["user_id"] == "u4":
            assert g == wb.ERASED
        else:
            assert g.startswith(PREFIX)
    opened = b.reveal("out", walked)
    assert opened[5][1]["greeting"] == "Dear Person 5"


def test_source_inputs_seen_before_equal_the_record_walk(tmp_path: Path) -> None:
    """Inputs of a declared source whose personal values were seen lately with the same
    subject and field (their tagged values carry their tokens; "seen", and the cache of
    each field's tagged values) take those values instead of being tagged and sealed again:
    the same records as the record walk; a value seen under another subject, or a forgotten
    subject, takes the sealing path."""
    b = _boundary(tmp_path)

    def rows(names: dict[int, str]) -> list[Any]:
        return [(i, {"user_id": i % 6, "email": f"p{i % 6}@example.org",
                     "name": names.get(i % 6, f"Person {i % 6}"), "page": f"/p/{i % 3}"},
                 i, i, None) for i in range(30)]

    plain = rows({})

    def primed(data: list[Any]) -> list[Any]:
        """protect_batch of ``data`` once "seen" holds plain's values with their tokens."""
        b._seen.clear()
        assert protect_batch(b, SOURCE, Batch.from_rows(plain)) is not None
        assert len(b._seen) == 12 and all(v._wb_t for v in b._seen.values())
        assert {f"p{i}@example.org" for i in range(6)} <= b._by_field["email"].keys()
        out = protect_batch(b, SOURCE, Batch.from_rows(data))
        assert out is not None
        return out.rows()

    def walked(data: list[Any]) -> list[Any]:
        b._seen.clear()
        return b.protect(SOURCE, data)

    assert primed(plain) == walked(plain)
    # subject 5 now has subject 4's name, subject 3 its email as its name: seen has them
    # under another subject or field, so they are sealed for this one (other tokens)
    for other, (a, b_) in ({5: "Person 4"}, (5, 4)), ({3: "p3@example.org"}, (3, 3)):
        shared = rows(other)
        got = primed(shared)
        assert got == walked(shared)
        tokens = {r[1]["user_id"]: r[1] for r in got}
        assert tokens[a]["name"] != tokens[b_]["name" if a != b_ else "email"]
        assert tokens[a]["name"].startswith(PREFIX)
    # a forgotten subject's values are the marker, though their tokens are cached
    primed(plain)
    b.keys.backend.forget(b.keys.handle(2))  # by another process: the caches stay
    b.keys.clear_cache()
    assert b._seen
    got_erased = protect_batch(b, SOURCE, Batch.from_rows(plain))
    assert got_erased is not None
    erased = got_erased.rows()
    assert erased == walked(plain)
    assert {r[1]["email"] for r in erased if r[1]["user_id"] == 2} == {wb.ERASED}


def test_records_for_a_driver_storing_columns_are_handed_over_as_columns(
        tmp_path: Path) -> None:
    """``columns=True`` (a memory sink): records of one shape are handed over as the
    columns the driver would make of them; records whose fields come in another order stay
    records (the order is visible); both read back as the record walk wrote them."""
    from workbench.runtime.batch import StructValues

    b = _boundary(tmp_path)
    rows = [r for r in _people(b, 12) if r[1] is not None]
    swapped = [(k, dict(reversed(list(v.items()))) if i == 3 else v, *rest)
               for i, (k, v, *rest) in enumerate(rows)]
    for data, layout in ((rows, StructValues), (swapped, ObjectValues)):
        out, walked = _as_walked(b, data, columns=True)
        assert out.values.__class__ is layout
        assert [list(r[1]) for r in out.rows()] == [list(r[1]) for r in walked]


@pytest.mark.parametrize("shared", [False, True])
def test_derived_strings_of_a_subject_forgotten_elsewhere_are_erased_with_warm_caches(
        tmp_path: Path, shared: bool) -> None:
    """``f"Dear {name}"`` with names read from tokens and every greeting's token in the
    cache: the subjects' state is one check of the key cache (``KeyStore.all_live``), so
    once a subject forgotten by another process has its cached key expire (ttl), its
    greetings are written as the marker, never as a cached token (``_contained_distinct``,
    ``_contained_strings``), as the record walk writes them."""
    keys = wb.KeyStore(tmp_path / "keys", master=os.urandom(32), ttl=0.3)
    b = Boundary(keys, {SOURCE: wb.Personal(subject="user_id", fields=["email", "name"])})
    h = keys.handle
    plain = [(f"u{j}", {"user_id": f"u{j}", "name": tag(f"Person {j}", h(f"u{j}"), "name",
                                                         None)}, 1, j, None) for j in range(6)]
    names = {r[1]["user_id"]: r[1]["name"] for r in b.reveal("out", b.protect("out", plain))}
    assert all(n._wb_t is not None for n in names.values())  # as read from their tokens
    rows = []
    for i in range(30):
        s = f"u{i % 6}"
        name = names[s] if shared else tag(str(names[s]), h(s), "name", names[s]._wb_t)
        rows.append((s, {"user_id": s, "name": name, "greeting": f"Dear {name}"}, 1, i,
                     None))
    warm = protect_batch(b, "out", Batch.from_rows(rows))  # every greeting's token cached
    assert warm is not None and keys.all_live([h("u3")])
    keys.backend.forget(h("u3"))  # another process: this one's caches stay
    time.sleep(0.35)
    assert keys.token_caches[0]
    cols = protect_batch(b, "out", Batch.from_rows(rows))
    assert cols is not None
    b._seen.clear()
    walked = b.protect("out", rows)
    assert cols.rows() == walked
    for r in walked:
        g = r[1]["greeting"]
        assert g == wb.ERASED if r[0] == "u3" else g.startswith(PREFIX), r


def test_a_derived_text_seen_for_another_subject_is_sealed_for_its_own(tmp_path: Path) -> None:
    """``f"Dear {name}"`` of two subjects with the same name, in turn: the cache of derived
    texts (by text, ``columns._contained_distinct``) gives a text's token only for the
    subject it was sealed for; the other subject's greeting is sealed under its own key, as
    the record walk seals it."""
    b = _boundary(tmp_path)
    h = b.keys.handle

    def rows(subject: str) -> list[Any]:
        name = tag("Ann Smith", h(subject), "name", None)  # one object, as read from a token
        return [(subject, {"user_id": subject, "name": name, "greeting": f"Dear {name}"},
                 1, i, None) for i in range(4)]

    tokens = {}
    for s in ("u1", "u2", "u1", "u1"):  # cold, another subject, back, cached for this one
        walked = _as_walked(b, rows(s))[1]
        tokens[s] = {r[1]["greeting"] for r in walked}
        assert b._derived["greeting"]["Dear Ann Smith"] == (h(s), *tokens[s])
    assert tokens["u1"] != tokens["u2"]
    assert [r[1]["greeting"] for r in b.reveal("out", walked)] == ["Dear Ann Smith"] * 4


def test_records_with_a_missing_value_for_a_driver_storing_columns(tmp_path: Path) -> None:
    """``columns=True`` with a record that is ``None`` (a missing row) among dicts of one
    shape: not the transposition of ``columns._ordered_columns`` (which takes dicts only),
    the same records as the record walk."""
    b = _boundary(tmp_path)
    rows = _people(b, 12)
    assert any(r[1] is None for r in rows[1:])
    for data in (rows, rows[10:] + rows[:10]):  # a None in the middle, and first
        _as_walked(b, data, columns=True)


def test_a_derived_text_cached_for_its_subject_is_sealed_only_if_it_contains_the_name(
        tmp_path: Path) -> None:
    """Texts whose tokens are in the cache of derived texts for the very subjects of their
    rows (``columns._contained_distinct``, one pass per distinct text) are sealed from it
    only when they contain their row's personal string: after two subjects swap names, a
    greeting that contains neither name is written as the record walk writes it (plain),
    not as the cached token."""
    b = _boundary(tmp_path)
    h = b.keys.handle

    def rows(names: dict[str, str], greet: dict[str, str]) -> list[Any]:
        tagged = {s: tag(n, h(s), "name", None) for s, n in names.items()}
        return [(s, {"user_id": s, "name": tagged[s], "greeting": f"Dear {greet[s]}"},
                 1, i, None) for i, s in enumerate(["u1", "u2"] * 3)]

    names = {"u1": "Bob", "u2": "Ann"}
    first = _as_walked(b, rows(names, names))[1]  # cold, then from the cache
    assert _as_walked(b, rows(names, names))[1] == first
    assert b._derived["greeting"]["Dear Bob"][0] == h("u1")
    # "Dear Bob" is u1's, but u1 has no Bob now
    swapped = _as_walked(b, rows({"u1": "Ann", "u2": "Bob"}, names))[1]
    assert {r[1]["greeting"] for r in swapped} == {"Dear Bob", "Dear Ann"}
