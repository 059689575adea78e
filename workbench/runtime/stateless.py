"""Stateless steps on column batches: a fused chain of ``map``, ``filter``, ``flat_map``,
``key_by``, ``peek``, the source's time extraction and the expression steps (``filter`` with
an expression, ``assign``, ``select``, ``rename``, ``drop``).

A chain is cut into **segments**. Consecutive function steps (lambdas) compile into one
generated Python loop over the value column that collects the new values and the indexes of
the rows a filter dropped (with a ``flat_map``: each output's input row), with no per-record
tuple; keys, timestamps, seq and headers are taken by index afterwards unless a step changes
them. Expression steps and steps by field name run
vectorized on the columns between such loops. A failing step is reported for the failing
record (the vectorized steps find it by retrying the batch row by row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from .._expr_eval import as_bool_mask
from .._time import MAX_MS, check_ms, to_epoch_ms
from ..expressions import Expr
from ..types import Record
from .batch import Batch, ChangeValues, ObjectValues, StructValues, column, obj_array
from .operators import Operator, StepFailure, _as_record_result, _truth

__all__ = ["StatelessChain", "Step"]

Step = tuple[str, str, str, dict[str, Any]]  # (op, step name, defined_at, params)

_ROW_OPS = frozenset({"map", "filter", "flat_map", "key_by", "group_by", "peek", "time"})


def _is_row_step(step: Step) -> bool:
    op, _name, _site, params = step
    if op not in _ROW_OPS:
        return False
    if params.get("expr") is not None:
        return False
    # by field name: vectorized when the values are columns
    return not (op in ("key_by", "group_by", "time") and params.get("field") is not None)


class StatelessChain(Operator):
    """A chain of stateless steps compiled for column batches."""

    columnar = True

    def __init__(self, name: str, steps: Sequence[Step], *, vectorize: bool = True) -> None:
        self.name = name
        self.steps = list(steps)
        self.vectorize = vectorize
        self._segments: list[Callable[[Batch], Batch]] = []
        run: list[Step] = []
        for step in self.steps:
            if _is_row_step(step):
                run.append(step)
                continue
            if run:
                self._segments.append(_RowSegment(run).apply)
                run = []
            self._segments.append(_VectorStep(step, vectorize).apply)
        if run:
            self._segments.append(_RowSegment(run).apply)

    def process(self, batch: Batch, port: int) -> Batch:
        for segment in self._segments:
            if not len(batch):
                return batch
            batch = segment(batch)
        return batch


# ------------------------------------------------------------------------------ row segment
class _RowSegment:
    """Consecutive function steps as one generated loop."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.names = [s[1] for s in steps]
        self.sites = [s[2] for s in steps]
        uses_rec = any(s[3].get("with_record") for s in steps)
        has_time = any(s[0] == "time" for s in steps)
        self.set_k = uses_rec or any(s[0] in ("key_by", "group_by") for s in steps)
        self.set_t = uses_rec or has_time
        self.set_h = uses_rec
        self.need_k = uses_rec
        self.need_t = uses_rec or has_time
        self.need_h = uses_rec
        self.flat = any(s[0] == "flat_map" for s in steps)
        self._fn, self.source = self._compile()

    def _compile(self) -> tuple[Callable[..., Any], str]:
        env: dict[str, Any] = {
            "Record": Record, "_asrec": _as_record_result, "_to_ms": to_epoch_ms,
            "_check_ms": check_ms, "_MAX_MS": MAX_MS, "_truth": _truth,
        }
        body: list[str] = []
        indent = 2

        def emit(line: str) -> None:
            body.append("    " * indent + line)

        def guarded(i: int, lines: list[str]) -> None:
            emit("try:")
            for line in lines:
                emit("    " + line)
            emit("except Exception as exc:")
            emit(f"    _fail({i}, _i, v, exc)")

        for i, (op, _step, _site, params) in enumerate(self.steps):
            env[f"f{i}"] = params.get("fn")
            if params.get("field") is not None:
                env[f"field{i}"] = params["field"]
            wr = params.get("with_record", False)
            arg = "Record(k, v, t, h)" if wr else "v"
            if op == "map":
                guarded(i, [f"k, v, t, h = _asrec(f{i}({arg}), k, t, h)" if wr
                            else f"v = f{i}(v)"])
            elif op == "filter":
                guarded(i, [f"_keep = f{i}({arg})", "if _keep is not True:",
                            "    _keep = _keep is not False and _truth(_keep)"])
                emit("if not _keep:")
                if not self.flat:
                    emit("    od(_i)")  # without flat_map: note the (few) dropped rows
                emit("    continue")
            elif op == "peek":
                guarded(i, [f"f{i}({arg})"])
            elif op in ("key_by", "group_by"):
                guarded(i, [f"k = v[field{i}]" if params.get("field") is not None
                            else f"k = f{i}({arg})"])
            elif op == "time":
                guarded(i, ["if v is not None:", f"    t = f{i}(v)",
                            "    if t.__class__ is not int:", "        t = _to_ms(t)",
                            "    elif not 0 <= t <= _MAX_MS:", "        _check_ms(t)"])
            elif op == "flat_map":
                guarded(i, [f"_items{i} = list(f{i}({arg}))"])
                emit(f"for _o{i} in _items{i}:")
                indent += 1
                if wr:
                    guarded(i, [f"k, v, t, h = _asrec(_o{i}, k, t, h)"])
                else:
                    emit(f"v = _o{i}")
            else:  # pragma: no cover - guarded by _is_row_step
                raise ValueError(f"cannot compile op {op!r}")
        if self.flat:
            emit("oi(_i)")
        emit("ov(v)")
        if self.set_k:
            emit("ok(k)")
        if self.set_t:
            emit("ot(t)")
        if self.set_h:
            emit("oh(h)")
        head = ["def segment(V, K, T, H, _fail):",
                "    I, OV, OK, OT, OH = [], [], [], [], []",
                "    oi, ov, ok, ot, oh = I.append, OV.append, OK.append, OT.append, OH.append",
                "    od = oi",
                "    for _i, v in enumerate(V):"]
        loads = []
        if self.need_k or self.set_k:
            loads.append("        k = K[_i]")
        if self.need_t or self.set_t:
            loads.append("        t = T[_i]")
        if self.need_h or self.set_h:
            loads.append("        h = H[_i]")
        lines = [*head, *loads, *body, "    return I, OV, OK, OT, OH"]
        source = "\n".join(lines)
        exec(compile(source, f"<workbench steps {'+'.join(self.names)}>", "exec"), env)
        return env["segment"], source

    def apply(self, batch: Batch) -> Batch:
        values = batch.values.objects().tolist()
        keys = batch.key_objects().tolist() if (self.need_k or self.set_k) else None
        stamps = batch.ts.tolist() if (self.need_t or self.set_t) else None
        hdrs = batch.header_list() if (self.need_h or self.set_h) else None

        def fail(i: int, row: int, v: Any, exc: BaseException) -> None:
            k = batch.key_objects()[row]
            rec = (k, v, int(batch.ts[row]), batch.seq[row].item(),
                   None if batch.headers is None else batch.headers[row])
            raise StepFailure(self.names[i], self.sites[i], rec, exc) from exc

        idx, out_v, out_k, out_t, out_h = self._fn(values, keys, stamps, hdrs, fail)
        n = len(out_v)
        rows: Any
        if self.flat:  # idx: the input row of each output
            rows = np.fromiter(idx, np.int64, n)
        elif not idx:  # idx: the rows dropped by a filter
            rows = slice(None)
        else:
            rows = np.ones(len(values), dtype=bool)
            rows[idx] = False
        keys_col = obj_array(out_k, n) if self.set_k else (
            batch.keys if isinstance(rows, slice) else _take_keys(batch.keys, rows))
        ts_col = np.array(out_t, dtype=np.int64) if self.set_t else batch.ts[rows]
        if self.set_h:
            headers = obj_array(out_h, n) if any(h is not None for h in out_h) else None
        else:
            headers = None if batch.headers is None else batch.headers[rows]
        return Batch(keys_col, ObjectValues(obj_array(out_v, n)), ts_col, batch.seq[rows],
                     headers)


def _take_keys(keys: Any, rows: np.ndarray) -> Any:
    return keys.take(rows) if hasattr(keys, "inner") else keys[rows]


# ----------------------------------------------------------------------------- vector steps
class _VectorStep:
    """One step run on whole columns (falling back to rows where the layout needs it)."""

    def __init__(self, step: Step, vectorize: bool) -> None:
        self.op, self.name, self.site, self.params = step
        self.vectorize = vectorize

    def apply(self, batch: Batch) -> Batch:
        try:
            return self._apply(batch)
        except StepFailure:
            raise
        except Exception as exc:
            self._find_failure(batch, exc)
            raise  # pragma: no cover - _find_failure raises

    def _find_failure(self, batch: Batch, exc: BaseException) -> None:
        """Retry row by row to name the record that fails; else report the first record."""
        if len(batch) > 1:
            for i in range(len(batch)):
                try:
                    self._apply(batch.take(slice(i, i + 1)))
                except Exception as row_exc:
                    self._raise(batch, i, row_exc)
        self._raise(batch, 0, exc)

    def _raise(self, batch: Batch, i: int, exc: BaseException) -> None:
        one = batch.take(slice(i, i + 1))
        rec = one.rows()[0]
        raise StepFailure(self.name, self.site, rec, exc) from exc

    # -- the steps
    def _apply(self, batch: Batch) -> Batch:
        op, params = self.op, self.params
        if op in _EXPR_OPS or params.get("expr") is not None:
            batch = self._columnar(batch)
        if op == "table_changes":
            values = batch.values
            if isinstance(values, ChangeValues):
                return batch.with_values(values.new)
            return batch.with_values(ObjectValues(obj_array(
                (c[0] for c in values.objects().tolist()), len(batch))))
        if op == "time":
            return self._time(batch, params["field"])
        if op in ("key_by", "group_by"):
            if params.get("expr") is not None:
                keys = _evaluate(params["expr"], batch)
            else:
                keys = _field(batch, params["field"])
            return Batch(keys, batch.values, batch.ts, batch.seq, batch.headers)
        if op == "filter":
            mask = as_bool_mask(_evaluate(params["expr"], batch))
            return batch if mask.all() else batch.take(mask)
        if op == "assign":
            return self._assign(batch, params["exprs"])
        if op == "select":
            return self._select(batch, params["exprs"])
        if op == "rename":
            return self._rename(batch, params["mapping"])
        if op == "drop":
            return self._drop(batch, params["columns"])
        raise ValueError(f"unknown stateless op {op!r}")  # pragma: no cover

    def _time(self, batch: Batch, name: str) -> Batch:
        values = batch.values
        if batch.time_field == name:
            return batch  # appended with this very extraction (samples, inputs=)
        if isinstance(values, StructValues) and self.vectorize and name in values.cols:
            col = values.cols[name]
            present = values.present
            ts = batch.ts.copy()
            sel = slice(None) if present is None else present
            got = col[sel]
            if got.dtype == np.int64:
                if len(got) and (got.min() < 0 or got.max() > MAX_MS):
                    bad = got[(got < 0) | (got > MAX_MS)][0]
                    check_ms(int(bad))
                ts[sel] = got
            else:
                ts[sel] = [t if t.__class__ is int and 0 <= t <= MAX_MS else to_epoch_ms(t)
                           for t in got.tolist()]
            return Batch(batch.keys, values, ts, batch.seq, batch.headers)
        vals = values.objects().tolist()
        try:
            got_list = list(map(itemgetter(name), vals))
        except TypeError:  # tombstones (None values) keep their timestamps
            got_list = None
        if got_list is not None and set(map(type, got_list)) <= {int} and (
                min(got_list) >= 0 and max(got_list) <= MAX_MS):
            return Batch(batch.keys, values, np.array(got_list, dtype=np.int64), batch.seq,
                         batch.headers)
        out = batch.ts.tolist()
        for i, v in enumerate(vals):
            if v is not None:
                t = v[name]
                out[i] = (t if t.__class__ is int and 0 <= t <= MAX_MS else to_epoch_ms(t))
        return Batch(batch.keys, values, np.array(out, dtype=np.int64), batch.seq,
                     batch.headers)

    def _columnar(self, batch: Batch) -> Batch:
        """The batch with dict values as columns, when they all have the same fields."""
        values = batch.values
        if self.vectorize and isinstance(values, ObjectValues):
            struct = values.to_struct()
            if struct is not None and struct.present is None:
                return batch.with_values(struct)
        return batch

    def _struct(self, batch: Batch) -> StructValues | None:
        values = batch.values
        if isinstance(values, StructValues) and (values.present is None
                                                 or values.present.all()):
            return values if values.present is None else StructValues(values.cols, None)
        if isinstance(values, ObjectValues) and self.vectorize:
            return values.to_struct()
        return None

    def _assign(self, batch: Batch, exprs: dict[str, Any]) -> Batch:
        new = {name: _evaluate(e, batch) for name, e in exprs.items()}
        struct = self._struct(batch)
        if struct is not None and struct.present is None:
            return batch.with_values(struct.with_columns(new))
        vals = batch.values.objects().tolist()
        lists = {name: col.tolist() for name, col in new.items()}
        out = []
        for i, v in enumerate(vals):
            if not isinstance(v, dict):
                raise TypeError(f"assign() needs dict values, got {type(v).__name__}")
            d = dict(v)
            for name, col in lists.items():
                d[name] = col[i]
            out.append(d)
        return batch.with_values(ObjectValues(obj_array(out, len(out))))

    def _select(self, batch: Batch, exprs: dict[str, Any]) -> Batch:
        cols = {name: _evaluate(e, batch) for name, e in exprs.items()}
        return batch.with_values(StructValues(cols, None, len(batch)))

    def _rename(self, batch: Batch, mapping: dict[str, str]) -> Batch:
        struct = self._struct(batch)
        if struct is not None:
            for old in mapping:
                if old not in struct.cols:
                    raise KeyError(old)
            cols = {mapping.get(f, f): c for f, c in struct.cols.items()}
            return batch.with_values(StructValues(cols, None, len(batch)))
        out = []
        for v in batch.values.objects().tolist():
            for old in mapping:
                if old not in v:
                    raise KeyError(old)
            out.append({mapping.get(f, f): x for f, x in v.items()})
        return batch.with_values(ObjectValues(obj_array(out, len(out))))

    def _drop(self, batch: Batch, columns: Sequence[str]) -> Batch:
        gone = set(columns)
        struct = self._struct(batch)
        if struct is not None:
            for c in columns:
                if c not in struct.cols:
                    raise KeyError(c)
            cols = {f: c for f, c in struct.cols.items() if f not in gone}
            return batch.with_values(StructValues(cols, None, len(batch)))
        out = []
        for v in batch.values.objects().tolist():
            for c in columns:
                if c not in v:
                    raise KeyError(c)
            out.append({f: x for f, x in v.items() if f not in gone})
        return batch.with_values(ObjectValues(obj_array(out, len(out))))


class _MaskStep(_VectorStep):
    """An expression predicate of a ``split`` branch: its truth per record."""

    def _apply(self, batch: Batch) -> Any:
        return as_bool_mask(_evaluate(self.params["expr"], self._columnar(batch)))


def predicate_mask(name: str, site: str, expr: Expr, batch: Batch) -> np.ndarray:
    """Where ``expr`` holds in ``batch`` (null counts as False), evaluated on whole columns;
    a failure names the first record it fails on (as a ``filter`` step's would)."""
    mask: Any = _MaskStep(("split", name, site, {"expr": expr}), True).apply(batch)
    return np.asarray(mask, dtype=bool)


def _field(batch: Batch, name: str) -> np.ndarray:
    return batch.values.field(name)


_EXPR_OPS = frozenset({"filter", "assign", "select", "rename", "drop"})


def _evaluate(e: Any, batch: Batch) -> np.ndarray:
    n = len(batch)
    if not isinstance(e, Expr):  # a constant
        out = np.empty(n, dtype=object)
        out.fill(e)
        return column(out.tolist())
    return e.evaluate(batch.values.field, n)
