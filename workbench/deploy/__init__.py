"""Deployment artefacts generated from a pipeline's plan, never written by hand.

* :mod:`~workbench.deploy.topics`: the topics a cluster needs, partitions and settings as the
  engine and the drivers would create them.
* :mod:`~workbench.deploy.k8s`: Kubernetes manifests (Strimzi ``KafkaTopic``, StatefulSet or
  Deployment or Job, Service, ``PodMonitor``, KEDA ``ScaledObject``).
* :mod:`~workbench.deploy.tilt`: the ``Tiltfile`` of the development loop.
* :mod:`~workbench.deploy.cli`: ``workbench deploy k8s|topics|wait-topics``.
* :mod:`~workbench.deploy.healthcheck`: the image's ``HEALTHCHECK``.

See ``docs/deploy.md``.
"""

from __future__ import annotations

__all__: list[str] = []
