# syntax=docker/dockerfile:1
# mcp-health-operator: `mcp-health run` in a small, non-root image whose root
# filesystem can be mounted read-only (the Helm chart does).
#
#   docker build -t mcp-health-operator:0.1.0 .
#
# tests/packaging/test_image_steps.py replays the same steps without Docker
# (wheel build, install into a fresh venv without pip, the entrypoint's --help).

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the project's wheel, installed with its dependencies into a venv ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY operator/ operator/
# The venv has no pip of its own: the builder's pip installs into it, so the
# final image carries no installer and no build tools. Dependencies at the
# versions pinned in constraints.txt, those the tests passed on.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/mcp-health \
 && pip --python /opt/mcp-health/bin/python install --no-cache-dir -c constraints.txt /wheels/*.whl

# --- final: the venv only -------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="mcp-health-operator" \
      org.opencontainers.image.description="Kubernetes operator that judges MCP servers by their health://status resource" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode was compiled at install time; nothing is written at run time, so
# the root filesystem can be read-only. HOME points at the chart's /tmp emptyDir.
ENV PATH=/opt/mcp-health/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=builder /opt/mcp-health /opt/mcp-health
# The distroless "nonroot" uid/gid; the chart's securityContext uses the same.
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["mcp-health", "run"]
