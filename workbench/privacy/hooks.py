"""The two calls the rest of workbench makes into the privacy layer.

* :func:`attach_plan` (``run.prepare``, ``Engine.__init__``) and :func:`attach_pipeline`
  (``run.append_inputs``; a driver attached already is returned as it is)
  return the driver seen through the pipeline's :class:`~workbench.privacy.boundary.Boundary`
  (a :class:`~workbench.privacy.driver.PrivateDriver`), or the driver itself when the pipeline
  has no key store: a pipeline without personal data pays nothing, and imports nothing.
* :func:`preview_epoch` is part of a preview's cache key: a forget makes cached previews stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["attach_pipeline", "attach_plan", "preview_epoch"]


def _attach(driver: Any, nodes: Iterable[Any], plan: Any = None) -> Any:
    keys = None
    sources: dict[str, Any] = {}
    for node in nodes:
        params = getattr(node, "params", None) or {}
        if params.get("keys") is not None:
            keys = params["keys"]
        personal = params.get("personal")
        if personal is not None:
            sources[params["spec"].topic] = personal
    if keys is None or getattr(driver, "boundary", None) is not None:
        return driver
    from .boundary import Boundary
    from .driver import PrivateDriver

    lazy = None
    if plan is not None:
        from .reads import plan_reads

        lazy = plan_reads(plan)
    return PrivateDriver(driver, Boundary(keys, sources, seal=driver.durable_state), lazy=lazy)


def attach_plan(plan: Any, driver: Any) -> Any:
    """``driver`` through the privacy boundary of ``plan``'s pipeline (if it has a key
    store); the engine's reads reveal only the fields its steps read
    (:mod:`workbench.privacy.reads`)."""
    return _attach(driver, (pn.node for st in plan.subtopologies for pn in st.nodes
                            if pn.node is not None and pn.op in ("source", "table_source")),
                   plan)


def attach_pipeline(pipeline: Any, driver: Any) -> Any:
    """``driver`` through the privacy boundary of ``pipeline`` (if it has a key store)."""
    return _attach(driver, getattr(pipeline, "_sources", {}).values())


def preview_epoch() -> int:
    """Grows with every ``forget`` in this process."""
    from .keystore import epoch

    return epoch()


def source_params(keys: Any, topic: str, personal: Any, columns: Any) -> dict[str, Any]:
    """The privacy part of a source step's params (``Pipeline.source(personal=...)``),
    checked: a ``Personal`` spec whose fields the sample has, and a key store."""
    from ..errors import DefinitionError
    from .spec import Personal

    if personal is not None and not isinstance(personal, Personal):
        raise DefinitionError(f"source({topic!r}, personal={personal!r}): use "
                              "wb.Personal(subject=..., fields=[...]).")
    if personal is not None and keys is None:
        raise DefinitionError(
            f"source({topic!r}, personal=...): personal fields need a key store: "
            "wb.Pipeline(name, keys=wb.KeyStore('postgresql://...' or a directory)).")
    if keys is not None and not hasattr(keys, "keys_for"):
        raise DefinitionError(f"Pipeline(keys={keys!r}): use wb.KeyStore(...).")
    if personal is not None:
        personal.check(topic, columns)
    return {"personal": personal, "keys": keys}
