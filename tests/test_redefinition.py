"""Running a cell again: a step defined again under its name replaces the old one in place
(steps downstream keep their definitions and read the new one); a real duplicate errors with
a hint; steps no output needs are left out of runs. Cells run in a real IPython shell
(``InteractiveShell``: each ``run_cell`` is one execution, as in Jupyter)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import workbench as wb

IPython = pytest.importorskip("IPython")


class Shell:
    def __init__(self) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        self.ip = InteractiveShell.instance()
        self.ip.run_cell("import workbench as wb", store_history=True)

    def run(self, code: str) -> Any:
        """Run a cell; return its result or raise its error."""
        result = self.ip.run_cell(code, store_history=True, silent=False)
        if result.error_before_exec is not None:
            raise result.error_before_exec
        if result.error_in_exec is not None:
            raise result.error_in_exec
        return result.result

    def get(self, name: str) -> Any:
        return self.ip.user_ns[name]


@pytest.fixture
def shell() -> Iterator[Shell]:
    from IPython.core.interactiveshell import InteractiveShell

    sh = Shell()
    try:
        yield sh
    finally:
        InteractiveShell.clear_instance()


SOURCE = """
p = wb.Pipeline("{name}")
clicks = p.source("clicks", key="user_id", time="ts", sample=[
    {{"user_id": "a", "ts": 1, "amount": 5.0}},
    {{"user_id": "b", "ts": 2, "amount": -1.0}},
    {{"user_id": "a", "ts": 3, "amount": 2.0}}])
"""


def test_running_a_named_steps_cell_again_replaces_it(shell: Shell) -> None:
    shell.run(SOURCE.format(name="rerun"))
    shell.run('paid = clicks.filter(lambda e: e["amount"] > 0, name="paid")')
    shell.run('cents = paid.map(lambda e: {**e, "cents": e["amount"] * 100}, name="cents")\n'
              'cents.to("paid-cents")')
    assert len(shell.get("cents").to_pandas()) == 2
    first = shell.get("paid")._node
    # the cell of 'paid' edited and run again: no "duplicate step name"
    shell.run('paid = clicks.filter(lambda e: e["amount"] > -10, name="paid")')
    p = shell.get("p")
    assert shell.get("paid")._node is first  # replaced in place
    assert p.steps.count("paid") == 1
    # downstream steps keep their own definitions and now read the new one, at once
    assert len(shell.get("cents").to_pandas()) == 3
    assert len(p.run().frame("paid-cents")) == 3
    # running the downstream cell again replaces it too (same kind, same input)
    shell.run('cents = paid.map(lambda e: {**e, "cents": round(e["amount"] * 100)}, '
              'name="cents")\ncents.to("paid-cents")')
    assert list(p.run().frame("paid-cents")["cents"]) == [500, -100, 200]
    assert [n for n in p.steps if not n.startswith("to-")] == ["clicks", "paid", "cents"]
    # "defined at" names the cell (the number in its prompt)
    node = p.node("cents")
    assert node.defined_at.startswith("cell In[") and node.defined_at.endswith("line 1")


def test_unnamed_steps_left_behind_are_out_of_runs_and_drawings(shell: Shell) -> None:
    shell.run(SOURCE.format(name="rerun-agg"))
    cell = ('totals = clicks.group_by("user_id").agg(total=("amount", "sum"), name="totals")\n'
            'totals.to("totals")')
    shell.run(cell)
    shell.run(cell.replace('name="totals"', 'n="count", name="totals"'))
    p = shell.get("p")
    # the first cell's group_by and changes() are left behind, unused
    assert {"group_by-1", "table_changes-1"} <= set(p.unused_steps)
    assert "group_by-1" not in p.plan().describe()
    frame = p.run().frame("totals")
    assert list(frame.columns) == ["user_id", "timestamp", "total", "n"]
    dot = p.to_dot()
    assert "group_by-1" not in dot and "table_changes" not in dot  # not drawn
    assert "unused" not in repr(p)


def test_a_step_nothing_needs_is_left_out_and_drawn_greyed(shell: Shell) -> None:
    shell.run(SOURCE.format(name="abandoned"))
    # an unnamed step whose preview fails, then fixed: the broken one stays, unused
    broken = shell.run('clicks.filter(lambda e: e["amont"] > 0)')
    assert "KeyError" in broken._repr_mimebundle_()["text/plain"]
    assert "Did you mean &#x27;amount&#x27;" in broken._repr_mimebundle_()["text/html"]
    shell.run('ok = clicks.filter(lambda e: e["amount"] > 0, name="ok")\nok.to("ok-out")')
    shell.run('preview_only = clicks.map(lambda e: e, name="preview-only")')
    p = shell.get("p")
    assert len(p.run().frame("ok-out")) == 2  # the broken step is not run
    assert "preview-only" in p.unused_steps
    graph_nodes = {n.label: n.kind for n in _graph(p)}
    assert graph_nodes["preview-only"] == "unused"  # greyed
    assert graph_nodes["ok"] == "stateless"
    html = p._repr_mimebundle_()["text/html"]
    assert "greyed: not needed by any output" in html and "preview-only" in html


def test_redefining_a_source_replaces_it(shell: Shell) -> None:
    shell.run(SOURCE.format(name="resource"))
    shell.run('paid = clicks.filter(lambda e: e["amount"] > 0, name="paid")\npaid.to("out")')
    assert len(shell.get("paid").to_pandas()) == 2
    shell.run('clicks = p.source("clicks", key="user_id", time="ts", sample=[\n'
              '    {"user_id": "z", "ts": 1, "amount": 1.0}])')
    assert list(shell.get("paid").to_pandas()["key"]) == ["z"]
    assert shell.get("p").sources == ["clicks"]


def test_a_real_duplicate_still_errors_with_a_hint(shell: Shell) -> None:
    shell.run(SOURCE.format(name="dups"))
    # two steps of one name in the same cell
    with pytest.raises(wb.DefinitionError, match=r"duplicate step name 'x'.*same cell.*"
                                                 r"another name"):
        shell.run('a = clicks.filter(lambda e: True, name="x")\n'
                  'b = clicks.filter(lambda e: False, name="x")')
    # a later cell wanting the name for another kind of step
    with pytest.raises(wb.DefinitionError, match=r"'x' .* is a filter .*this cell defines a map"
                                                 r".*another name"):
        shell.run('c = clicks.map(lambda e: e, name="x")')
    # ... or for a step reading another input
    shell.run('other = p.source("other", sample=[{"n": 1}])')
    with pytest.raises(wb.DefinitionError, match=r"reads 'other'.*same input"):
        shell.run('d = other.filter(lambda e: True, name="x")')
    # two sinks to one topic
    shell.run('clicks.to("out")')
    with pytest.raises(wb.DefinitionError, match=r"already written by step 'to-out'.*merge"):
        shell.run('other.to("out")')


def test_a_split_run_again_without_a_branch_drops_that_branch(shell: Shell) -> None:
    shell.run(SOURCE.format(name="split"))
    shell.run('parts = clicks.split(pos=lambda e: e["amount"] > 0, neg=lambda e: True, '
              'name="sign")\nparts.pos.to("pos")\nparts.neg.to("neg")')
    shell.run('parts = clicks.split(pos=lambda e: e["amount"] > 0, name="sign")\n'
              'parts.pos.to("pos")')
    p = shell.get("p")
    assert "sign-neg" not in p.steps and "to-neg" not in p.steps
    assert p.sinks == ["pos"]
    assert len(p.run().frame("pos")) == 2


def test_redefinition_recomputes_whether_keys_changed(shell: Shell) -> None:
    shell.run(SOURCE.format(name="rekey"))
    shell.run('m = clicks.map(lambda r: wb.Record("k", r.value, r.timestamp), with_record=True,'
              ' name="m")')
    shell.run('m.group_by_key().count(name="n").to("n")')
    p = shell.get("p")
    assert "rekey-n-repartition" in p.plan().topics
    shell.run('m = clicks.map(lambda e: e, name="m")')  # keeps keys now
    assert "rekey-n-repartition" not in p.plan().topics


def test_in_a_script_a_second_definition_is_a_duplicate() -> None:
    """Outside IPython a whole script is one execution: nothing is replaced silently."""
    p = wb.Pipeline("script")
    s = p.source("in", sample=[{"n": 1}])
    s.filter(lambda v: True, name="x")
    with pytest.raises(wb.DefinitionError, match=r"duplicate step name 'x'.*same script"):
        s.filter(lambda v: False, name="x")
    with pytest.raises(wb.DefinitionError, match="already a source"):
        p.source("in")


def test_a_processing_error_ends_in_the_users_frame(shell: Shell) -> None:
    shell.run(SOURCE.format(name="tb"))
    shell.run("def check(e):\n    return e['amont'] > 0\n")
    shell.run('p.source("x", sample=[{"amount": 1}]).filter(check, name="bad").to("out")')
    with pytest.raises(wb.ProcessingError) as info:
        shell.run("p.run()")
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    engine = [f for f, _n in frames if "/workbench/runtime/" in f or "<workbench" in f]
    assert not engine, frames  # no engine frames in between
    assert frames[-1][1] == "check"  # the last frame is the user's function
    msg = str(info.value)
    assert "step 'bad' (defined at cell In[" in msg and "Did you mean 'amount'?" in msg
    assert "timestamp=" in msg and "UTC)" in msg  # the record's time as a date too
    assert isinstance(info.value.__cause__, KeyError)


def _graph(p: wb.Pipeline) -> Any:
    from workbench.display import pipeline_graph

    return pipeline_graph(p)[0]


def test_a_pipeline_with_nothing_to_run_says_so() -> None:
    p = wb.Pipeline("previews-only")
    s = p.source("in", sample=[{"n": 1}])
    s.map(lambda v: v)
    assert len(s.to_pandas()) == 1  # previews work
    with pytest.raises(wb.DefinitionError, match=r"nothing to run.*\.to\("):
        p.run()
