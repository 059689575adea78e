"""Column expressions (``wb.col``): each expression step computes what the same step written as
a Python function computes (the reference), on the vectorized path and the row path, for any
batch size; nulls follow the documented rule (null in, null out; a null condition is False);
mistakes are named at definition time or with the record they fail on."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.run import prepare

# value fields: a float that may be null, an int, a string that may be null
rows_st = st.lists(st.fixed_dictionaries({
    "u": st.sampled_from(["a", "b", "c"]),
    "t": st.integers(0, 1000),
    "amount": st.one_of(st.none(),
                        st.floats(-500, 500, allow_nan=False).map(lambda f: round(f, 2))),
    "n": st.integers(-20, 20),
    "name": st.one_of(st.none(), st.sampled_from([" Ann ", "bob", "CY", "dee"])),
}), min_size=1, max_size=30)


def _outputs(steps: Any, rows: list[dict[str, Any]], topics: list[str], *, vectorize: bool,
             batch: int) -> dict[str, list[Any]]:
    """Run ``steps(source stream)`` over ``rows`` (topic ``in``, key ``u``, time ``t``)."""
    p = wb.Pipeline("e")
    steps(p.source("in", key="u", time="t"))
    driver = MemoryDriver()
    engine = prepare(p, driver, inputs={"in": rows}, batch_size=batch)
    engine.vectorize = vectorize
    engine.run_until_end()
    out = {}
    for t in topics:
        recs = driver.read_all(t) if driver.partitions(t) is not None else []
        out[t] = [(k, _norm(v), ts) for k, v, ts, _o, _h in recs]
    return out


def _norm(v: Any) -> Any:
    """Values compared as Python objects (NumPy scalars and ints/floats that are equal)."""
    if isinstance(v, dict):
        return {f: _norm(x) for f, x in v.items()}
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _same(expr_build: Any, fn_build: Any, rows: list[dict[str, Any]], topics: list[str],
          batch: int) -> None:
    want = _outputs(fn_build, rows, topics, vectorize=False, batch=batch)
    for vectorize in (True, False):
        got = _outputs(expr_build, rows, topics, vectorize=vectorize, batch=batch)
        assert got == want, (vectorize, batch)


def _null(f: Any) -> Any:
    """A Python function that is null when any argument is null (the expressions' rule)."""
    def g(*args: Any) -> Any:
        return None if any(a is None for a in args) else f(*args)
    return g


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(rows=rows_st, batch=st.sampled_from([1, 7, 10_000]))
def test_filter_and_assign_compute_what_functions_compute(rows: list[dict[str, Any]],
                                                          batch: int) -> None:
    def exprs(s: wb.Stream) -> None:
        (s.filter(wb.col("amount") > 0)
          .assign(cents=(wb.col("amount") * 100).round(), double=wb.col("n") * 2,
                  ratio=wb.col("amount") / 4, tier=wb.when(wb.col("amount") > 100)
                  .then("gold").otherwise("std"), src="web", up=wb.col("name").str.upper())
          .to("out"))

    def fns(s: wb.Stream) -> None:
        (s.filter(lambda v: v["amount"] is not None and v["amount"] > 0)
          .map(lambda v: {**v, "cents": round(v["amount"] * 100), "double": v["n"] * 2,
                          "ratio": v["amount"] / 4,
                          "tier": "gold" if v["amount"] > 100 else "std", "src": "web",
                          "up": _null(str.upper)(v["name"])})
          .to("out"))

    _same(exprs, fns, rows, ["out"], batch)


@SETTINGS
@given(rows=rows_st, batch=st.sampled_from([1, 7, 10_000]))
def test_nulls_predicates_and_string_functions(rows: list[dict[str, Any]], batch: int) -> None:
    def exprs(s: wb.Stream) -> None:
        s.assign(missing=wb.col("amount").is_null(), filled=wb.col("amount").fill_null(0),
                 some=wb.col("n").isin([1, 2, 3]), mid=wb.col("n").between(-5, 5),
                 neg=-wb.col("n"), mag=wb.col("n").abs(), f=wb.col("n").cast(float),
                 low=wb.col("name").str.strip().str.lower(), has_o=wb.col("name").str.contains("o"),
                 ln=wb.col("name").str.len(), not_big=~(wb.col("amount") > 100),
                 both=(wb.col("n") > 0) & (wb.col("amount") > 0)).to("out")

    def fns(s: wb.Stream) -> None:

        def f(v: dict[str, Any]) -> dict[str, Any]:
            a, n, name = v["amount"], v["n"], v["name"]
            gt_big = None if a is None else a > 100
            both = (False if (n <= 0 or (a is not None and a <= 0))
                    else None if a is None else True)
            return {**v, "missing": a is None, "filled": 0 if a is None else a,
                    "some": n in (1, 2, 3), "mid": -5 <= n <= 5, "neg": -n, "mag": abs(n),
                    "f": float(n), "low": _null(lambda x: x.strip().lower())(name),
                    "has_o": _null(lambda x: "o" in x)(name), "ln": _null(len)(name),
                    "not_big": None if gt_big is None else not gt_big, "both": both}
        s.map(f).to("out")

    _same(exprs, fns, rows, ["out"], batch)


@SETTINGS
@given(rows=rows_st, batch=st.sampled_from([1, 7, 10_000]))
def test_select_rename_drop_and_group_by_a_column(rows: list[dict[str, Any]], batch: int) -> None:
    def exprs(s: wb.Stream) -> None:
        s.select("u", "n", x=wb.col("n") * 10).rename(n="count").to("sel")
        s.drop("name").to("dropped")
        s.group_by(wb.col("u").str.upper()).agg(total=("n", "sum"), k="count").changes().to("agg")

    def fns(s: wb.Stream) -> None:
        s.map(lambda v: {"u": v["u"], "count": v["n"], "x": v["n"] * 10}).to("sel")
        s.map(lambda v: {f: x for f, x in v.items() if f != "name"}).to("dropped")
        (s.group_by(lambda v: v["u"].upper()).agg(total=("n", "sum"), k="count").changes()
          .to("agg"))

    _same(exprs, fns, rows, ["sel", "dropped", "agg"], batch)


@SETTINGS
@given(rows=rows_st, batch=st.sampled_from([1, 7, 10_000]))
def test_split_by_expressions_first_match_wins(rows: list[dict[str, Any]], batch: int) -> None:
    def exprs(s: wb.Stream) -> None:
        parts = s.split(big=wb.col("amount") > 100, pos=wb.col("amount") > 0, name="sp")
        mixed = s.split(big=wb.col("amount") > 100, odd=lambda v: v["n"] % 2 == 1,
                        default="other", name="mx")
        for label in ("big", "pos", "rest"):
            parts[label].to(f"s-{label}")
        for label in ("big", "odd", "other"):
            mixed[label].to(f"m-{label}")

    def fns(s: wb.Stream) -> None:
        parts = s.split(big=lambda v: (v["amount"] or 0) > 100,
                        pos=lambda v: (v["amount"] or 0) > 0, name="sp")
        mixed = s.split(big=lambda v: (v["amount"] or 0) > 100, odd=lambda v: v["n"] % 2 == 1,
                        default="other", name="mx")
        for label in ("big", "pos", "rest"):
            parts[label].to(f"s-{label}")
        for label in ("big", "odd", "other"):
            mixed[label].to(f"m-{label}")

    topics = ["s-big", "s-pos", "s-rest", "m-big", "m-odd", "m-other"]
    _same(exprs, fns, rows, topics, batch)


def test_a_preview_of_expression_steps() -> None:
    p = wb.Pipeline("e")
    s = p.source("in", key="u", sample=[{"u": "a", "amount": 2.5}, {"u": "b", "amount": -1.0},
                                        {"u": "a", "amount": None}])
    frame = s.filter(wb.col("amount") > 0).assign(cents=(wb.col("amount") * 100).round())
    df = frame.to_pandas()
    assert list(df["u"]) == ["a"] and list(df["cents"]) == [250]


def test_unknown_fields_are_named_at_definition() -> None:
    p = wb.Pipeline("e")
    s = p.source("in", key="u", sample=[{"u": "a", "amount": 1.0}])
    with pytest.raises(wb.DefinitionError, match=r"no field 'amont'.*Did you mean 'amount'"):
        s.filter(wb.col("amont") > 0)
    with pytest.raises(wb.DefinitionError, match=r"split\(\.\.\., big=\).*'amont'"):
        s.split(big=wb.col("amont") > 0)
    with pytest.raises(wb.DefinitionError, match="with_record=True is for functions"):
        s.split(big=wb.col("amount") > 0, with_record=True)
    with pytest.raises(wb.DefinitionError, match="with_record=True is for functions"):
        s.filter(wb.col("amount") > 0, with_record=True)


def test_and_or_not_on_expressions_say_what_to_write() -> None:
    with pytest.raises(TypeError, match=r"combine conditions with & and \|"):
        _ = (wb.col("a") > 1) and (wb.col("b") > 1)


@pytest.mark.parametrize("vectorize", [True, False])
def test_a_failing_expression_names_the_step_and_the_record(vectorize: bool) -> None:
    def build(s: wb.Stream) -> None:
        s.split(big=wb.col("name") > 1, name="by-size")["big"].to("out")

    rows = [{"u": "a", "t": 1, "name": 3}, {"u": "b", "t": 2, "name": "x"}]
    with pytest.raises(wb.ProcessingError, match=r"step 'by-size'.*topic 'in' partition 0 "
                                                 r"offset 1.*'>' not supported"):
        _outputs(build, rows, ["out"], vectorize=vectorize, batch=10)


def test_division_by_zero_follows_numpy_for_floats() -> None:
    """A documented choice: float division by zero gives inf/nan as in pandas, not an error."""
    p = wb.Pipeline("e")
    s = p.source("in", key="u", sample=[{"u": "a", "x": 1.0, "y": 0.0}])
    df = s.assign(r=wb.col("x") / wb.col("y")).to_pandas()
    assert math.isinf(df["r"].iloc[0])


@pytest.mark.parametrize("vectorize", [True, False])
def test_integer_arithmetic_stays_exact_past_64_bits(vectorize: bool) -> None:
    def exprs(s: wb.Stream) -> None:
        s.assign(x=wb.col("n") * 2**62, y=wb.col("n") + 2**63, z=wb.col("n") ** 40,
                 w=wb.col("n") * 3).to("out")

    def fns(s: wb.Stream) -> None:
        s.map(lambda v: {**v, "x": v["n"] * 2**62, "y": v["n"] + 2**63, "z": v["n"] ** 40,
                         "w": v["n"] * 3}).to("out")

    rows = [{"u": "a", "t": 1, "n": 3}, {"u": "b", "t": 2, "n": -7}, {"u": "a", "t": 3, "n": 0}]
    want = _outputs(fns, rows, ["out"], vectorize=False, batch=10)
    assert want["out"][0][1]["x"] == 3 * 2**62
    assert _outputs(exprs, rows, ["out"], vectorize=vectorize, batch=10) == want


def test_integer_division_by_zero_names_the_record() -> None:
    def build(s: wb.Stream) -> None:
        s.assign(q=wb.col("n") // wb.col("d"), name="ratio").to("out")

    rows = [{"u": "a", "t": 1, "n": 4, "d": 2}, {"u": "b", "t": 2, "n": 1, "d": 0}]
    with pytest.raises(wb.ProcessingError, match=r"step 'ratio'.*offset 1.*ZeroDivisionError"):
        _outputs(build, rows, ["out"], vectorize=True, batch=10)
