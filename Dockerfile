# checkpointd container image: the daemon alone, as a sidecar or a standalone pod.
#
#   docker build -t checkpointd .
#   docker run --rm -p 9108:9108 -e CHECKPOINTD_HTTP_TOKEN=... \
#       -v $PWD/checkpointd.yaml:/etc/checkpointd/checkpointd.yaml:ro \
#       -v checkpointd-state:/var/lib/checkpointd checkpointd
#
# Not built in CI: the test machines run no container engine. See docs/kubernetes.md.

# ---------------------------------------------------------------- build stage
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The virtualenv is copied whole into the runtime stage: no compiler, no pip cache there.
RUN python -m venv /opt/checkpointd
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/checkpointd/bin/pip install .

# -------------------------------------------------------------- runtime stage
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="checkpointd" \
      org.opencontainers.image.description="Data-quality checkpoints as a daemon" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
RUN groupadd --system --gid 10001 checkpointd \
 && useradd --system --uid 10001 --gid checkpointd --home-dir /var/lib/checkpointd \
      --no-create-home --shell /usr/sbin/nologin checkpointd \
 && install -d -o checkpointd -g checkpointd -m 0700 /var/lib/checkpointd \
 && install -d -m 0755 /etc/checkpointd

COPY --from=build /opt/checkpointd /opt/checkpointd

ENV PATH=/opt/checkpointd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHECKPOINTD_STATE_DIR=/var/lib/checkpointd \
    CHECKPOINTD_HTTP_LISTEN=0.0.0.0:9108 \
    CHECKPOINTD_LOG_FORMAT=json

# The SQLite journal and result history. Mount a volume here to keep them across restarts.
VOLUME ["/var/lib/checkpointd"]
EXPOSE 9108
USER 10001:10001
WORKDIR /var/lib/checkpointd

# No HEALTHCHECK: Kubernetes ignores it and probes /healthz and /readyz itself
# (docs/kubernetes.md). The daemon runs as PID 1 and handles SIGTERM (drain) and
# SIGHUP (reload) itself, and it starts no child processes, so no init shim is needed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["checkpointd", "run", "-c", "/etc/checkpointd/checkpointd.yaml", "--loop", "uvloop"]
