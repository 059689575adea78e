"""Checks of the conformance oracle itself (not of workbench's engine).

- The case files load and are well-formed (no Java needed).
- The recorded oracle outputs (``expected/oracle_outputs.json``) hold the worked examples of
  ``semantics.md`` as FINDINGS.md states them (no Java needed).
- The real Kafka Streams oracle still produces the recorded outputs (needs java, javac, mvn).
"""

from __future__ import annotations

import pytest

from tests.conformance.oracle import (
    load_cases,
    load_expected,
    oracle_available,
    recorded_form,
    run_cases_full,
)

TOPICS = {
    "window_agg": {"in"},
    "agg": {"in"},
    "table": {"in"},
    "table_group_by": {"in"},
    "repartition": {"in"},
    "to_topic": {"in"},
    "join_ss": {"left", "right"},
    "join_st": {"left", "right"},
    "join_tt": {"left", "right"},
    "join_fk": {"left", "right"},
    "join_global": {"left", "right"},
    "process_session": {"in"},
    "process_timestamped": {"in"},
    "process_global": {"left", "right"},
    "cogroup": set(),  # the topics its "inputs" name
    "table_filter": {"in", "right"},
    "split": {"in"},
    "print": {"in"},
}


def test_cases_are_well_formed() -> None:
    cases = load_cases()
    assert len(cases) >= 40
    for case in cases:
        topo = case["topology"]
        assert topo["op"] in TOPICS, case["name"]
        topics = TOPICS[topo["op"]] | {i["topic"] for i in topo.get("inputs", [])}
        for record in case["records"]:
            assert record["topic"] in topics, case["name"]
            assert record["key"] is None or isinstance(record["key"], str), case["name"]
            assert record["value"] is None or isinstance(record["value"], str), case["name"]
            assert isinstance(record["ts"], int), case["name"]


def test_at_least_five_cases_per_issue_15_operation() -> None:
    """The operations of issue 15 (re-grouped tables, cogroup, global tables, suppress,
    versioned tables, foreign-key joins, repartition and to(topic extractor), table filters,
    split and print, the Processor API's session, timestamped and global stores) have at least
    five hand-written cases each."""
    cases = load_cases()

    def count(pred: object) -> int:
        return sum(1 for c in cases if pred(c["topology"]))  # type: ignore[operator]

    assert count(lambda t: t["op"] == "table_group_by") >= 5
    assert count(lambda t: t["op"] == "cogroup") >= 5
    assert count(lambda t: t["op"] == "cogroup" and "window" in t) >= 2
    assert count(lambda t: t["op"] == "join_global") >= 5
    assert count(lambda t: "suppress" in t or t.get("emit") == "suppress") >= 5
    assert count(lambda t: "suppress" in t and t["suppress"]["until"] == "time_limit") >= 5
    assert count(lambda t: t.get("versioned")) >= 5
    assert count(lambda t: t["op"] == "join_fk") >= 5
    assert count(lambda t: t["op"] == "repartition") >= 5
    assert count(lambda t: t["op"] == "to_topic") >= 5
    assert count(lambda t: t["op"] == "table_filter") >= 5
    assert count(lambda t: t["op"] == "split") >= 5
    assert count(lambda t: t["op"] == "print") >= 5
    assert count(lambda t: t["op"] == "process_session") >= 5
    assert count(lambda t: t["op"] == "process_timestamped") >= 5
    assert count(lambda t: t["op"] == "process_global") >= 5


def test_every_case_has_a_recorded_result() -> None:
    assert sorted(c["name"] for c in load_cases()) == sorted(load_expected())


def _rows(name: str) -> list[tuple]:
    return [
        (o["in"], o["key"], o.get("start"), o.get("end"), o["value"], o["ts"])
        for o in load_expected()[name]["outputs"]
    ]


def test_worked_example_1_update_and_suppress() -> None:
    assert _rows("ex1-tumbling-grace-update") == [
        (0, "A", 0, 10, "1", 1),
        (1, "A", 0, 10, "2", 4),
        (2, "A", 10, 20, "1", 12),
        (3, "A", 0, 10, "3", 8),
        (4, "A", 20, 30, "1", 20),
        (6, "A", 10, 20, "2", 14),
        (7, "A", 30, 40, "1", 30),
    ]
    finals = [(4, "A", 0, 10, "3", 8), (7, "A", 10, 20, "2", 14)]
    assert _rows("ex1-tumbling-grace-suppress") == finals
    assert _rows("ex1-tumbling-grace-close-caching") == finals
    assert _rows("ex1-tumbling-grace-close-retention") == finals
    # FINDINGS.md: with caching off and the default retention (size + grace) the final results
    # are already expired from the window store when the window closes, so nothing comes out.
    assert _rows("ex1-tumbling-grace-close") == []


def test_worked_examples_2_to_6() -> None:
    assert _rows("ex2-hopping-update") == [
        (0, "A", 0, 10, "1", 7),
        (0, "A", 5, 15, "1", 7),
        (1, "A", 5, 15, "2", 12),
        (1, "A", 10, 20, "1", 12),
    ]
    assert _rows("ex3-sliding-update") == [
        (0, "A", 3000, 8000, "1", 8000),
        (1, "A", 8001, 13001, "1", 9200),
        (1, "A", 4200, 9200, "2", 9200),
        (2, "A", 8001, 13001, "2", 12400),
        (2, "A", 9201, 14201, "1", 12400),
        (2, "A", 7400, 12400, "3", 12400),
    ]
    assert _rows("ex4-session-update") == [
        (0, "A", 0, 0, "1", 0),
        (1, "A", 10, 10, "1", 10),
        (2, "A", 0, 0, None, 0),
        (2, "A", 0, 4, "2", 4),
        (3, "A", 0, 4, None, 4),
        (3, "A", 10, 10, None, 10),
        (3, "A", 0, 10, "4", 10),
    ]
    assert _rows("ex5-ss-left") == [
        (1, "K", None, None, "A+a", 5),
        (4, "K", None, None, "B+null", 20),
        (4, "K", None, None, "C+x", 36),
    ]
    assert _rows("ex6-st-left") == [
        (0, "K", None, None, "s1+null", 10),
        (2, "K", None, None, "s2+t1", 7),
        (3, "K", None, None, "s0+t1", 3),
        (5, "K", None, None, "s3+null", 25),
    ]
    assert _rows("ex6-st-left-versioned") == [
        (0, "K", None, None, "s1+null", 10),
        (2, "K", None, None, "s2+t1", 7),
        (3, "K", None, None, "s0+null", 3),
        (5, "K", None, None, "s3+null", 25),
    ]


def test_issue15_findings_in_the_recorded_outputs() -> None:
    """FINDINGS D17-D22, as recorded (the oracle test below checks they are still true)."""
    expected = load_expected()
    # D22: a row moving de -> fr is subtracted from de first; a count reaching 0 stays a 0
    assert _rows("regroup-count-move")[3:5] == [(3, "de", None, None, "1", 4),
                                                (3, "fr", None, None, "2", 4)]
    assert _rows("regroup-count-move")[-2:] == [(7, "de", None, None, "0", 8),
                                                (7, "fr", None, None, "2", 8)]
    # D17: b@3 is on time for input b; its window restarts from 0 and the put counts as dropped
    assert (5, "K", 0, 10, "3", 3) in _rows("cogroup-tumbling")
    assert {"in": 5, "count": 1} in expected["cogroup-tumbling"]["dropped"]
    # D18: older than the history: left join with null, not dropped
    assert (3, "K", None, None, "s35+null", 35) in _rows("versioned-st-beyond-history")
    assert expected["versioned-st-beyond-history"]["dropped"] == [{"in": 4, "count": 1}]
    # D19: the null new key is dropped silently by the repartition topic
    assert [r[0] for r in _rows("repartition-key-by-forward")] == [0, 1, 2, 4, 6]
    assert expected["repartition-key-by-forward"]["dropped"] == []
    # D20: a versioned table's changelog forwards the out-of-order update
    assert (1, "A", None, None, "a5", 5) in _rows("versioned-table-changelog")
    # D21: a full suppress buffer set to shut down stops Kafka Streams at the overflowing record
    assert expected["suppress-time-limit-max-records-shutdown"]["failure"]["in"] == 3
    assert expected["suppress-window-close-max-records-shutdown"]["failure"]["in"] == 3
    assert _rows("suppress-time-limit-agg") == [(4, "A", None, None, "2", 4),
                                                (4, "B", None, None, "2", 12),
                                                (7, "C", None, None, "2", 15),
                                                (7, "A", None, None, "3", 13)]
    # global tables: a null stream key still joins through the key selector (KIP-962)
    assert (1, None, None, None, "c1|apples+Alice", 2) in _rows("global-null-stream-key")


NO_ORACLE = "Kafka Streams oracle needs java, javac and mvn"


@pytest.mark.conformance
@pytest.mark.skipif(not oracle_available()[0], reason=NO_ORACLE)
def test_oracle_reproduces_recorded_outputs() -> None:
    cases = load_cases()
    expected = load_expected()
    results = run_cases_full(cases)
    mismatches = [r["name"] for r in results if recorded_form(r) != expected[r["name"]]]
    assert mismatches == []
