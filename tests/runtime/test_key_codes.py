"""Numbering key columns for the column operators (``runtime/key_codes.py``) and the window's
group ids: equal keys, equal numbers, in order of first appearance; keys whose equality is not
their identity are refused (the row path handles them), however few distinct objects hold
them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.runtime.key_codes import object_key_codes
from workbench.runtime.window_vec import _dense_ids, _group_ids


def _strs(n: int) -> list[str]:
    # distinct str objects with equal values (not interned literals)
    return ["".join(["k", str(i % 3)]) for i in range(n)]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(-3, 3), st.none(),
                          st.text(max_size=2)), min_size=0, max_size=300),
       st.integers(1, 40))
def test_codes_equal_a_factorization(values: list[object], repeat: int) -> None:
    keys = np.array(values * repeat, dtype=object)  # repeated objects: the by-object path
    got = object_key_codes(keys)
    assert got is not None
    codes, uniques = got
    want_codes, want_uniques = pd.factorize(keys)
    assert codes.tolist() == want_codes.tolist()
    assert uniques == list(want_uniques)


def test_equal_strings_in_distinct_objects_get_one_number() -> None:
    keys = np.array(_strs(1_000) + [None] * 10, dtype=object)
    codes, uniques = object_key_codes(keys)  # type: ignore[misc]
    assert uniques == ["k0", "k1", "k2"]
    assert codes[:4].tolist() == [0, 1, 2, 0] and (codes[-10:] == -1).all()


def test_keys_whose_equality_is_not_identity_are_refused() -> None:
    for odd in (1.0, True, np.str_("a"), ("a",)):
        few = np.array(["a", 1] * 200 + [odd], dtype=object)  # by object
        many = np.array([*_strs(300), odd], dtype=object)  # by value
        assert object_key_codes(few) is None
        assert object_key_codes(many) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), min_size=1, max_size=200),
       st.sampled_from([1, 5, 60_000]))
def test_window_group_ids_number_pairs_in_order_of_appearance(
        pairs: list[tuple[int, int]], unit: int) -> None:
    keys = np.array([k for k, _s in pairs], dtype=np.int64)
    starts = np.array([1_700_000_040_000 + s * unit for _k, s in pairs], dtype=np.int64)
    want = pd.factorize(keys * 10**13 + starts)[0]
    assert _group_ids(keys, starts, unit).tolist() == want.tolist()
    assert _dense_ids(keys, 31).tolist() == pd.factorize(keys)[0].tolist()
