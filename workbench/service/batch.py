"""Files in and out of a batch run: ``--input TOPIC=PATH`` and ``--output DIR``.

Input formats by extension: ``.csv``, ``.jsonl``/``.ndjson``/``.json`` (JSON lines), ``.parquet``
(needs pyarrow). Outputs: one file per sink topic, ``DIR/<topic>.<format>`` (csv, jsonl or
parquet), written from what the driver committed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import DefinitionError

if TYPE_CHECKING:
    import pandas as pd

    from ..drivers.base import Driver
    from ..pipeline import Pipeline

__all__ = ["empty_sources", "parse_inputs", "read_input", "write_outputs"]

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}


def parse_inputs(items: list[str] | None) -> dict[str, str]:
    """``["clicks=data/clicks.csv"]`` → ``{"clicks": "data/clicks.csv"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        topic, eq, path = item.partition("=")
        if not eq or not topic or not path:
            raise DefinitionError(f"--input {item!r}: use --input TOPIC=PATH "
                                  "(CSV, JSON lines or Parquet).")
        if topic in out:
            raise DefinitionError(f"--input {topic}=...: given twice.")
        out[topic] = path
    return out


def read_input(path: str) -> pd.DataFrame:
    """A CSV, JSON-lines or Parquet file as a DataFrame (format from the extension)."""
    import pandas as pd

    ext = os.path.splitext(path)[1].lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        raise DefinitionError(f"--input {path!r}: unknown format {ext or '(no extension)'!r}; "
                              "use .csv, .jsonl (JSON lines) or .parquet.")
    if not os.path.exists(path):
        raise DefinitionError(f"--input {path!r}: no such file.")
    try:
        if fmt == "csv":
            return pd.read_csv(path)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True)
        return pd.read_parquet(path)
    except ImportError as exc:
        raise DefinitionError(f"--input {path!r}: reading Parquet needs pyarrow "
                              "(pip install pyarrow).") from exc
    except ValueError as exc:
        raise DefinitionError(f"--input {path!r}: cannot read it as {fmt}: {exc}") from exc


def load_inputs(pipeline: Pipeline, files: Mapping[str, str], driver_scheme: str
                ) -> dict[str, Any] | None:
    """The ``inputs=`` of :func:`workbench.run.prepare` for ``--input`` files (on memory://,
    sources without a file keep their samples); ``None`` when no file was given."""
    if not files:
        return None
    sources = pipeline._sources
    for topic in files:
        if topic not in sources:
            from ..errors import did_you_mean

            raise DefinitionError(f"--input {topic}=...: {topic!r} is not a source of pipeline "
                                  f"{pipeline.name!r}." + did_you_mean(topic, sources))
    inputs: dict[str, Any] = {t: read_input(p) for t, p in files.items()}
    if driver_scheme == "memory":
        for topic, node in sources.items():
            sample = node.params["spec"].sample
            if topic not in inputs and sample is not None:
                inputs[topic] = sample
    return inputs


def empty_sources(pipeline: Pipeline, driver: Driver) -> bool:
    """True when every source topic of the pipeline is empty (or missing)."""
    for topic in pipeline._sources:
        count = driver.partitions(topic)
        if count and any(driver.end_offset(topic, p) > 0 for p in range(count)):
            return False
    return True


def write_outputs(pipeline: Pipeline, driver: Driver, directory: str, fmt: str = "csv"
                  ) -> dict[str, str]:
    """Write every sink topic's committed records to ``directory``; return ``{topic: path}``."""
    from ..frames import records_to_frame

    os.makedirs(directory, exist_ok=True)
    plan = pipeline.plan()
    written: dict[str, str] = {}
    for topic in pipeline.sinks:
        if driver.partitions(topic) is None:
            continue
        spec = plan.topics.get(topic)
        frame = records_to_frame(driver.read_all(topic),
                                 key_name=spec.key_name if spec is not None else None)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in topic)
        path = os.path.join(directory, f"{safe}.{fmt}")
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "jsonl":
            frame.to_json(path, orient="records", lines=True, date_format="iso")
        elif fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            raise DefinitionError(f"--output-format {fmt!r}: use csv, jsonl or parquet.")
        written[topic] = path
    return written
