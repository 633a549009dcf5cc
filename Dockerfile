# One image for all five Redline services (and the Locust load generator).
#
#   docker build -t redline .
#   docker run --rm -e REDLINE_PORT=8002 -e DATABASE_URL=... redline python -m services.inventory
#
# The service is chosen by the command (`python -m services.<name>`, default: the
# gateway) and its port by REDLINE_PORT, which the health check reads too.
# Plain Dockerfile syntax on purpose: it builds with BuildKit and with the
# classic builder (docker-compose v1) alike.

ARG PYTHON_IMAGE=python:3.11.15-slim-trixie

# ---------------------------------------------------------------------------
# builder: resolve nothing, install exactly what uv.lock says into /opt/venv
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# The uv version the Makefile pins, from PyPI.
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
RUN pip install "uv==${UV_VERSION}"

WORKDIR /src
# Only the lock and the project metadata: this layer is rebuilt when they change,
# not when the code does.
COPY pyproject.toml uv.lock ./
# Runtime dependencies only: no dev or bench groups (--no-default-groups), the
# project itself is not installed (its source is copied into the runtime stage).
RUN uv sync --frozen --no-default-groups --no-install-project --python /usr/local/bin/python3

# ---------------------------------------------------------------------------
# runtime: slim Python, the venv, the source, a non-root user
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    REDLINE_HOST=0.0.0.0 \
    REDLINE_PORT=8000

RUN groupadd --system --gid 10001 redline \
    && useradd --system --uid 10001 --gid redline --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin redline

COPY --from=builder /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/lib/redline/healthcheck.py

WORKDIR /app
# Owned by root and read-only for the service user.
COPY services/ services/
COPY telemetry/ telemetry/
COPY redline/ redline/
COPY dashboards/ dashboards/
COPY alerts/ alerts/
COPY loadtests/ loadtests/
COPY chaos/ chaos/
# Bytecode now, so a read-only /app starts as fast as a writable one.
RUN python -m compileall -q -j 0 /app

USER redline
EXPOSE 8000 8001 8002 8003 8004

# Readiness, not liveness: "healthy" means the service has its database and
# finished start-up, which is what `depends_on: condition: service_healthy` needs.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/redline/healthcheck.py"]

CMD ["python", "-m", "services.gateway"]
