# syntax=docker/dockerfile:1
# workbench as a container image: `workbench run` with the service and driver extras.
#
#   docker build -t IMG --build-arg PIPELINES=examples .      (or podman/buildah, see docs/deploy.md)
#   docker run IMG run examples/clickstream.py:pipeline --driver kafka://... --until forever \
#       --workers auto --http 0.0.0.0:8080
#
# Stage 1 builds a virtualenv in /opt/workbench; stage 2 copies it onto a slim base with only
# the Python runtime and tini. The pipeline files (PIPELINES, a path in the build context) keep
# their relative path under /app, so a TARGET such as examples/clickstream.py:pipeline works the
# same inside the image. Kubernetes manifests for it: `workbench deploy k8s`.
ARG BASE_IMAGE=debian:bookworm-slim

# Debian package versions are not pinned (DL3008): a stable release replaces them with security
# updates and drops the old ones from the archive; BASE_IMAGE pins the release.
FROM ${BASE_IMAGE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/workbench
ENV PATH=/opt/workbench/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# the package alone first: editing a pipeline file does not reinstall the dependencies
COPY pyproject.toml README.md ./
COPY workbench ./workbench
ARG EXTRAS=service,kafka,postgres
# behind a TLS-intercepting proxy, pass its CA bundle: --secret id=ca-certificates,src=FILE.
# This installs the project itself; its dependencies' bounds are pyproject.toml's (DL3013).
# hadolint ignore=DL3013
RUN --mount=type=secret,id=ca-certificates,required=false \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
 && pip install ".[${EXTRAS}]" \
 && pip uninstall -y pip

FROM ${BASE_IMAGE} AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 workbench \
 && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin workbench \
 && mkdir -p /app && chown 10001:10001 /app
COPY --from=build /opt/workbench /opt/workbench
ENV PATH=/opt/workbench/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WORKBENCH_HEALTH_URL=http://127.0.0.1:8080/health
WORKDIR /app
ARG PIPELINES=examples
COPY --chown=10001:10001 ${PIPELINES} /app/${PIPELINES}
USER 10001:10001
EXPOSE 8080
# Docker and Podman use this; Kubernetes uses the manifests' probes on the same endpoint
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-m", "workbench.deploy.healthcheck"]
# tini is PID 1: it reaps the workers' zombies and passes SIGTERM to `workbench`, which
# finishes the batch in hand, commits and exits 0 (it forwards the signal to its workers)
ENTRYPOINT ["tini", "--", "workbench"]
CMD ["--help"]
