"""Lazy reveal: the engine gets decrypted only the fields its steps read.

:func:`workbench.privacy.reads.plan_reads` tells, for a topic the engine reads, which value
fields the steps of its sub-topology may read. :func:`reveal_lazy` opens the tokens of those
columns only (through the column path of :mod:`workbench.privacy.columns`); the other columns
keep their tokens, which the steps copy (``{**e, ...}``) and the boundary writes out again as
they were read. Before a batch is handed over, the columns left encrypted are checked:

* a column with a personal field's name must hold tokens, erased markers or ``None`` (a
  producer outside workbench may have written plaintext there: then the whole batch is
  revealed, so the field-name rule protects it on the way out);
* a token whose subject is forgotten (the key store's tombstones, listed at most ``ttl``
  seconds ago, see :meth:`KeyStore.tombstone_marks`) becomes ``<erased>``: a running job
  never writes a forgotten subject's ciphertext again.

``None`` means "use the full reveal" (values that are not records, personal keys, a private
in-process log, a backend that cannot list its tombstones, nested values beside tombstones).
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from ..runtime.batch import Batch, ObjectValues, StructValues, obj_array
from .columns import (
    _SCALARS,
    _dict_columns,
    _gone,
    _handle_of,
    _is_marker,
    _replaced,
    reveal_batch,
    tagged_handles,
)
from .crypto import PREFIX
from .spec import ERASED
from .tags import TAGGED
from .vouch import Deferred, Unsealed, Vouched, keys_plain, lookup

if TYPE_CHECKING:
    from .boundary import Boundary

__all__ = ["reveal_lazy"]

_NONE = type(None)
_HEAD = itemgetter(slice(0, len(PREFIX)))
#: most values remembered as checked (see :func:`_unread`)
_PASSED_MAX = 200_000
#: up to this many tombstone marks, a column of strings is checked by startswith passes
_FEW_MARKS = 16
_JUST_STR = {str}
_SCALARS_OR_TAGGED = _SCALARS | TAGGED


def reveal_lazy(b: Boundary, topic: str, batch: Batch, reads: frozenset[str], *,
                deferred: bool = False) -> tuple[Batch, bool] | None:
    """``(batch with the columns in reads revealed, whether a personal value was opened)``,
    or ``None`` for the full reveal (see the module docstring). ``deferred``: the reader's
    plan carries ``topic``'s personal fields to its sinks unread (``LazyPlan.deferred``)."""
    if not b.seal:
        return _reveal_unsealed(b, topic, batch, reads, deferred)
    if not len(batch):
        return batch, False
    spec = b.sources.get(topic)
    if spec is not None and spec.key:
        return None
    if not isinstance(batch.keys, np.ndarray):
        return None
    if batch.keys.dtype == object and not keys_plain(batch.keys):
        ks = batch.keys.tolist()
        kinds = set(map(type, ks))
        if not kinds <= _SCALARS:
            return None
        if str in kinds and any(k.__class__ is str and k.startswith(PREFIX) for k in set(ks)):
            return None  # personal keys: the full reveal
    marks = b.keys.tombstone_marks()
    if marks is None:
        return None
    personal = set(b.names)
    if spec is not None:
        personal.update(spec.fields)
    values = batch.values
    if isinstance(values, StructValues):
        return _struct(b, topic, batch, values, reads, personal, marks)
    if isinstance(values, ObjectValues):
        known = lookup(values.arr)  # written by the boundary itself: checked then
        if isinstance(known, Vouched) and (personal & known.fields) <= known.personal and \
                marks.isdisjoint(known.marks):
            opening = reads & known.tokens
            if not opening:
                return batch, False
            live = values.arr.tolist()
            return _open_columns(b, topic, batch, live,
                                 {f: list(map(itemgetter(f), live)) for f in opening})
        got = _objects(b, topic, batch, values, reads, personal, marks)
        if got is not None:
            return got
        struct = values.to_struct()  # tokens to open in the fields read: those columns only
        if struct is None:
            return None
        return _struct(b, topic, Batch(batch.keys, struct, batch.ts, batch.seq, batch.headers,
                                       batch.time_field), struct, reads, personal, marks)
    return None


def _reveal_unsealed(b: Boundary, topic: str, batch: Batch, reads: frozenset[str],
                     deferred: bool = False) -> tuple[Batch, bool] | None:
    """A private in-process log (``seal=False``: personal values stay tagged plaintext):
    ``(batch, whether a field read holds a personal value)`` when the record walk would
    change nothing (flat records of scalars and tagged values, no token, a declared source's
    personal fields already tagged, no tagged value of a forgotten subject), else ``None``
    (the walk tags, opens or erases)."""
    if not len(batch):
        return batch, False
    values = batch.values
    keys = batch.keys
    if values.__class__ is not ObjectValues or keys.__class__ is not np.ndarray:
        return None
    spec = b.sources.get(topic)
    if spec is not None and spec.key:
        return None
    if keys.dtype == object and not keys_plain(keys):
        ks = set(keys.tolist())
        if not set(map(type, ks)) <= _SCALARS or any(
                k.__class__ is str and k.startswith(PREFIX) for k in ks):
            return None  # tagged keys, tokens or nested keys: the walk
    personal = spec.fields if spec is not None else ()
    known = lookup(values.arr)  # an array protect built for this log: checked then
    if isinstance(known, Deferred):  # a declared source's records as given (defer_input)
        if deferred and reads.isdisjoint(known.personal) and \
                b.keys.none_forgotten(known.handles, known.memo):
            return batch, False
        # a reader whose steps may read or move them (another plan on this log), or a
        # subject forgotten since: the walk tags (and erases) them
        return None
    if isinstance(known, Unsealed) and known.tagged.issuperset(
            known.fields.intersection(personal)):
        if b.keys.none_forgotten(known.handles, known.memo):
            return batch, not known.tagged.isdisjoint(reads)
        return None  # a forgotten subject's values: the walk erases them
    cols = _dict_columns(values.arr.tolist())
    if cols is None:
        return None
    handles: set[bytes] = set()
    opened = False
    for name, col in cols.items():
        kinds = set(map(type, col))
        if not kinds <= _SCALARS_OR_TAGGED:
            return None  # nested values: the walk
        if str in kinds and any(y.__class__ is str and y.startswith(PREFIX) for y in set(col)):
            return None  # tokens: the walk opens them
        tagged = kinds & TAGGED
        if name in personal and kinds - tagged - {_NONE}:
            return None  # a declared source's plaintext: the walk tags it
        if tagged:
            handles.update(tagged_handles(col, kinds))
            opened = opened or name in reads
    if not b.keys.none_forgotten(handles):
        return None  # a forgotten subject's values: the walk erases them
    return batch, opened


def _struct(b: Boundary, topic: str, batch: Batch, values: StructValues,
            reads: frozenset[str], personal: set[str],
            marks: frozenset[str] | set[str]) -> tuple[Batch, bool] | None:
    cols = values.cols
    read = {f: c for f, c in cols.items() if f in reads and c.dtype == object}
    new: dict[str, np.ndarray] = {}
    opened = False
    if read:
        sub = Batch(batch.keys, StructValues(read, values.present, values.n), batch.ts,
                    batch.seq, batch.headers)
        got = reveal_batch(b, topic, sub)
        if got is None:
            return None
        if got is not sub:
            assert isinstance(got.values, StructValues)
            for f, c in got.values.cols.items():
                if c is not read[f]:
                    new[f] = c
                    opened = True
    for f, c in cols.items():
        if f in read:
            continue
        if c.dtype != object:
            if f in personal and len(c):
                return None  # plaintext personal numbers: the full reveal tags them
            continue
        fixed = _unread(b, c.tolist(), f in personal, marks)
        if fixed is False:
            return None
        if isinstance(fixed, list):
            new[f] = obj_array(fixed, values.n)
    if not new:
        return batch, opened
    return Batch(batch.keys, values.with_columns(new), batch.ts, batch.seq,
                 batch.headers, batch.time_field), opened


def _objects(b: Boundary, topic: str, batch: Batch, values: ObjectValues,
             reads: frozenset[str], personal: set[str],
             marks: frozenset[str] | set[str]) -> tuple[Batch, bool] | None:
    """Records as dicts (a driver that decodes JSON): handed over as they are when the fields
    read hold no token and the others need no change; when every record has the same fields,
    the tokens of the fields read are opened and set in copies of the records."""
    live = values.arr.tolist()
    if not live:
        return batch, False
    first = live[0]
    if first.__class__ is dict and set(map(len, live)) == {len(first)}:
        names = tuple(first)
        try:  # every record has exactly the first one's fields: one pass, as columns
            rows = list(map(itemgetter(*names), live)) if names else []
        except (KeyError, TypeError):
            rows = None
        if rows is not None:
            cols = list(zip(*rows)) if len(names) > 1 else [rows]
            got = _columns(b, batch, dict(zip(names, cols)), reads, personal, marks)
            if got is None or isinstance(got, tuple):
                return got
            return _open_columns(b, topic, batch, live, got)
    if not set(map(type, live)) <= {dict, _NONE}:
        return None
    live = [v for v in live if v is not None]
    need = set(reads) | personal
    if marks:  # every field may hold a forgotten subject's token
        need.update(set().union(*map(dict.keys, live)))
    got = _columns(b, batch, {f: list(map(dict.get, live, repeat(f))) for f in need}, reads,
                   personal, marks)
    return got if got is None or isinstance(got, tuple) else None


def _columns(b: Boundary, batch: Batch, cols: dict[str, Any], reads: frozenset[str],
             personal: set[str], marks: frozenset[str] | set[str]
             ) -> tuple[Batch, bool] | dict[str, Any] | None:
    """``(batch, False)`` when it passes as it is, ``None`` for the full path, else the
    columns read that hold tokens (or plaintext in a personal field) to open."""
    opening: dict[str, Any] = {}
    for f, col in cols.items():
        if f in reads:
            kinds = set(map(type, col))
            if not kinds <= _SCALARS:
                return None
            if str in kinds and (f in personal or any(
                    y.__class__ is str and y.startswith(PREFIX) for y in set(col))):
                opening[f] = col  # tokens (or plaintext personal values) to open
            continue
        if (f in personal or marks) and _unread(b, col, f in personal, marks) is not None:
            return None  # plaintext personal values, or a forgotten subject's token
    return opening or (batch, False)


def _open_columns(b: Boundary, topic: str, batch: Batch, live: list[Any],
                  cols: dict[str, Any]) -> tuple[Batch, bool] | None:
    """``batch`` of records ``live`` (dicts that all have the fields of ``cols``, their
    values) with the tokens of those columns opened (from the cache of opened tokens when
    every value is in it, else by the column path of
    :func:`~workbench.privacy.columns.reveal_batch`) and set in copies of the records that
    change; ``None`` when that path cannot (plaintext personal values: the full reveal)."""
    n = len(live)
    opened = _open_cached(b, cols)
    if opened is not None:  # every value a token opened before, every subject live
        return Batch(batch.keys, ObjectValues(obj_array(_replaced(live, opened), n)),
                     batch.ts, batch.seq, batch.headers, batch.time_field), True
    old = {f: obj_array(c, n) for f, c in cols.items()}
    sub = Batch(batch.keys, StructValues(old, None, n), batch.ts, batch.seq, batch.headers)
    got = reveal_batch(b, topic, sub)
    if got is None:
        return None
    assert isinstance(got.values, StructValues)
    new = {f: c for f, c in got.values.cols.items() if c is not old[f]}
    if not new:
        return batch, False
    return Batch(batch.keys, ObjectValues(obj_array(_replaced(live, new), n)), batch.ts,
                 batch.seq, batch.headers, batch.time_field), True


def _open_cached(b: Boundary, cols: dict[str, list[Any]]) -> dict[str, list[Any]] | None:
    """The columns ``cols`` of a vouched array (tokens, markers, ``None``) opened from the
    cache of opened tokens when every value is in it and no subject of theirs is forgotten
    (their state asked once for the batch: one set operation while their keys are cached,
    :meth:`KeyStore.all_live`), else ``None`` (the column path decides)."""
    cache = b._opened
    out: dict[str, list[Any]] = {}
    handles: set[bytes] = set()
    for f, col in cols.items():
        got = list(map(cache.get, col))
        if None in got:
            return None
        handles.update(map(_handle_of, got))
        out[f] = got
    if not b.keys.all_live(handles) and _gone(b.keys.keys_for(handles, create=False)):
        return None
    return out


def _unread(b: Boundary, col: Any, personal: bool,
            marks: frozenset[str] | set[str]) -> list[Any] | bool | None:
    """A column nobody reads: ``None`` when it passes as it is, a new list when tokens of
    forgotten subjects were erased, ``False`` when the full reveal must decide.

    Values checked once are remembered (``KeyStore.passed``: not a forgotten subject's
    token; also a token, a marker or ``None``), so a value seen again costs one set lookup;
    both are emptied when a tombstone is added to ``marks``."""
    passed = b._passed
    if passed[2] != len(marks):
        passed[0].clear()
        passed[1].clear()
        passed[2] = len(marks)
    ok = passed[1] if personal else passed[0]
    kinds = None
    if not personal:
        if not marks:
            return None
        kinds = set(map(type, col))
        if str not in kinds and kinds <= _SCALARS:
            return None  # numbers (not tokens): nothing to erase, nothing to remember
    if len(marks) <= _FEW_MARKS and _tokens_of_live_subjects(col, personal, marks, kinds):
        return None
    try:
        if ok.issuperset(col):
            return None
        new = set(col).difference(ok)
    except TypeError:  # unhashable (nested) values
        return False if (personal or marks) else None
    if not new <= _SCALAR_VALUES_OK(new):
        return False
    if personal:
        for y in new:
            if not (y is None or (y.__class__ is str and (y.startswith(PREFIX)
                                                           or _is_marker(y)))):
                return False
    gone = {y for y in new if y.__class__ is str and y[:27] in marks}
    if len(ok) > _PASSED_MAX:
        ok.clear()
    ok.update(new.difference(gone) if gone else new)
    if not gone:
        return None
    return [ERASED if y in gone else y for y in col]


def _tokens_of_live_subjects(col: Any, personal: bool, marks: frozenset[str] | set[str],
                             kinds: set[type] | None) -> bool:
    """True when ``col`` holds only strings, all tokens if ``personal``, none starting with
    a tombstone mark: what the set path of :func:`_unread` would pass, found by startswith
    passes in C instead of hashing every value (strings decoded anew each batch, as from
    Kafka or PostgreSQL, have no cached hash). False: the set path decides."""
    if (kinds if kinds is not None else set(map(type, col))) != _JUST_STR:
        return False
    if personal and not all(map(str.startswith, col, repeat(PREFIX))):
        return False
    return not (marks and any(map(str.startswith, col, repeat(tuple(marks)))))


def _SCALAR_VALUES_OK(values: set[Any]) -> set[Any]:
    """The values of scalar types (nested values might hide a token)."""
    return {y for y in values if y.__class__ in _SCALARS}
