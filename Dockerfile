# syntax=docker/dockerfile:1
#
# One image for the five services: the SERVICE build argument (or environment
# variable at run time) picks which one `python -m services.$SERVICE` serves.
#
#   docker build --build-arg SERVICE=tickets --build-arg SERVICE_PORT=8003 -t backoffice-tickets .
#   docker run -e SERVICE=tickets -e SERVICE_PORT=8003 ... provider-backoffice
#
# docker-compose.yml builds it once per service; Kubernetes (deploy/) runs one
# image for all five and sets the command and the environment per Deployment.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the package and its pinned runtime dependencies (not [dev]) ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN /opt/venv/bin/pip install --no-cache-dir .

# --- runtime: the virtualenv only, no sources, no build tools, not root ---
FROM ${PYTHON_IMAGE} AS runtime
ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} app \
    && useradd --system --uid ${APP_UID} --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app \
    && mkdir -p /app/var \
    && chown -R app:app /app
COPY --from=build /opt/venv /opt/venv

# Late, so the layers above are shared by the five services' builds.
ARG SERVICE=identity
ARG SERVICE_PORT=8001
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE=${SERVICE} \
    SERVICE_HOST=0.0.0.0 \
    SERVICE_PORT=${SERVICE_PORT} \
    VAR_DIR=/app/var \
    LOG_FORMAT=json
# Fail the build, not the container, on a SERVICE that does not exist.
RUN python -c "import importlib, os; importlib.import_module('services.' + os.environ['SERVICE'] + '.service')"

WORKDIR /app
USER ${APP_UID}:${APP_UID}
EXPOSE ${SERVICE_PORT}

# No curl in the slim image: Python asks /health (urlopen raises on anything but 2xx).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['SERVICE_PORT'], timeout=4)"]

# exec: python becomes PID 1 and gets SIGTERM (uvicorn shuts down gracefully).
CMD ["sh", "-c", "exec python -m \"services.${SERVICE}\""]
