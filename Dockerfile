# syntax=docker/dockerfile:1
# The users service image: built from uv.lock (reproducible), runs as a non-root numeric user,
# on a read-only root filesystem (it writes only under /tmp), `python -m app` as PID 1.
#
#   docker build -t users .
#   docker run --rm -p 127.0.0.1:8000:8000 --read-only --tmpfs /tmp users
#
# Arguments after the image name are passed to `python -m app` (see CMD), e.g.
#   docker run ... users --port 8000 --workers 2

############################ build: resolve and install from the lock file
FROM python:3.11.13-slim-bookworm AS build

# Same uv as the Makefile pins, so the image and `make install` read uv.lock alike.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv

WORKDIR /src

# Dependencies first (a layer that changes only with the lock file)...
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra postgresql --extra mysql --no-install-project

# ...then the project itself, installed as a wheel (not editable) so /src is not needed later.
COPY building_blocks ./building_blocks
COPY app ./app
RUN uv sync --frozen --no-dev --extra postgresql --extra mysql --no-editable

############################ runtime: the venv and nothing else
FROM python:3.11.13-slim-bookworm AS runtime

# HOME and XDG_DATA_HOME point into /tmp, the only writable place: with no DATABASE_URL the
# embedded SQLite default lands in /tmp/data (throw-away, fine for a demo); bytecode is
# compiled at build time so nothing writes .pyc at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_DATA_HOME=/tmp/data \
    LOG_FORMAT=json

COPY --from=build /opt/venv /opt/venv

# A numeric user (no /etc/passwd entry needed): Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000

# No curl in slim images: the interpreter does the probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status != 200)"]

# Exec form, no shell wrapper: uvicorn is PID 1 and gets SIGTERM itself; it stops accepting,
# drains in-flight requests for up to 20 s (timeout_graceful_shutdown), then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "app", "--host", "0.0.0.0"]
# One worker per container by default: scale with containers/pods, and keep one process per
# /metrics endpoint. Override e.g. with `command: ["--port", "8000", "--workers", "2"]`.
CMD ["--port", "8000", "--workers", "1"]
