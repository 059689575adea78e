"""A stop is not the end on ``postgresql://``: real SIGTERM and SIGINT sent to a ``workbench
run ... --driver postgresql://... --until end`` process in the middle of its input, then a
restart, give the outputs of one uninterrupted run (emit-on-close windows, sessions and
``late`` records), with exit code 0 both times."""

from __future__ import annotations

import signal

import pytest

from tests.pipelines import signals_job
from tests.signals import outputs, reference_outputs, signal_then_restart
from workbench.run import append_inputs

from . import postgres_helpers
from .postgres_helpers import HAVE_PSYCOPG

if HAVE_PSYCOPG:
    from workbench.drivers.postgres import PostgresDriver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # two runs slowed to ~2 ms per record
pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_then_restart_on_postgres_equals_one_run(pg_url: str, sig: int) -> None:
    loader = PostgresDriver(pg_url)
    append_inputs(signals_job.pipeline(), loader, {signals_job.SOURCE: signals_job.events()})
    loader.close()

    code, _proc = signal_then_restart(pg_url, lambda: PostgresDriver(pg_url), sig)
    assert code == 0
    done = PostgresDriver(pg_url)
    got = outputs(done, signals_job.SINKS)
    assert done.committed(signals_job.APP, signals_job.SOURCE, 0) == signals_job.EVENTS
    assert any(k.startswith("stream_time") for k in done.committed_metadata(signals_job.APP))
    done.close()
    expected = reference_outputs()
    assert got == expected
    assert got["per-user-late"], "the workload must have late records"
