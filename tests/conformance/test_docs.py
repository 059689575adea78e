"""``docs/conformance.md`` states how many cases run; these checks keep the numbers honest
(no Java needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conformance.oracle import CASES_DIR
from tests.conformance.test_conformance import CASE_FILES as WAVE1_FILES
from tests.conformance.test_generated import EXAMPLES, MIN_NON_EMPTY
from tests.conformance.test_generated_dsl import EXAMPLES_DSL
from tests.conformance.test_issue15_operators import CASE_FILES as ISSUE15_FILES

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def _rows() -> list[list[str]]:
    """Every table row of the document, as stripped cells."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in DOC.read_text(encoding="utf-8").splitlines()
            if line.startswith("|")]


def test_hand_written_case_counts_per_file() -> None:
    documented = {row[0].strip("`"): int(row[1]) for row in _rows()
                  if re.fullmatch(r"`\w+\.json`", row[0]) and row[1].isdigit()}
    actual = {f.name: len(json.loads(f.read_text(encoding="utf-8")))
              for f in sorted(CASES_DIR.glob("*.json"))}
    assert documented == actual


def test_generated_examples_per_family() -> None:
    documented = {row[0]: int(row[1]) for row in _rows()
                  if row[0] in EXAMPLES and len(row) > 2 and row[1].isdigit()}
    assert documented == EXAMPLES
    text = DOC.read_text(encoding="utf-8")
    total = sum(EXAMPLES.values())
    assert f"{total:,} per run, in {len(EXAMPLES)} families" in text
    assert f"at least **{MIN_NON_EMPTY:.0%}**" in text


def test_generated_examples_per_family_of_the_rest_of_the_dsl() -> None:
    documented = {row[0]: int(row[1]) for row in _rows()
                  if row[0] in EXAMPLES_DSL and len(row) > 2 and row[1].isdigit()}
    assert documented == EXAMPLES_DSL
    total = sum(EXAMPLES_DSL.values())
    assert f"{total:,} per run, in {len(EXAMPLES_DSL)} families" in DOC.read_text(
        encoding="utf-8")


def test_every_case_file_is_compared_with_workbench() -> None:
    """Each case file is compared by one of the two hand-written test modules."""
    assert sorted(WAVE1_FILES + ISSUE15_FILES) == sorted(f.name for f in CASES_DIR.glob("*.json"))
