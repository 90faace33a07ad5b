# syntax=docker/dockerfile:1
# openrouter-watcher in a container: see README.md, "Run it in Docker".
#
#   docker build -t openrouter-watcher .
#   docker run --read-only --tmpfs /tmp -v openrouter-watcher:/var/lib/openrouter-watcher \
#       -p 127.0.0.1:9464:9464 openrouter-watcher
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# Build stage: a wheel of this checkout and its dependencies in a venv (pip runs here only).
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md CHANGELOG.md LICENSE ./
COPY watcher/ watcher/
# watcher/defaults/rules/default.yaml is a link to rules/default.yaml: the wheel needs both.
COPY rules/ rules/
COPY docker/install.sh docker/install.sh
RUN sh docker/install.sh /opt/openrouter-watcher /src

# Final stage: the venv, the config, a user; no compiler, no pip in the app's venv.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="openrouter-watcher" \
      org.opencontainers.image.description="Alerts on changes to the OpenRouter model catalogue" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --user-group --uid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin watcher \
    && install -d -o watcher -g watcher -m 0700 /var/lib/openrouter-watcher
COPY --from=build /opt/openrouter-watcher /opt/openrouter-watcher
COPY docker/config.yaml /etc/openrouter-watcher/config.yaml
COPY rules/default.yaml /etc/openrouter-watcher/rules/default.yaml
# Secrets: Docker mounts them in /run/secrets; the config's *_file keys read
# ${CREDENTIALS_DIRECTORY}/NAME, as under systemd.
ENV PATH=/opt/openrouter-watcher/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENROUTER_WATCHER_CONFIG=/etc/openrouter-watcher/config.yaml \
    STATE_DIRECTORY=/var/lib/openrouter-watcher \
    CREDENTIALS_DIRECTORY=/run/secrets
VOLUME ["/var/lib/openrouter-watcher"]
WORKDIR /var/lib/openrouter-watcher
USER 10001:10001
EXPOSE 9464
# Asks the daemon's own /healthz (the config's http.listen); no curl in the image.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["openrouter-watcher", "health", "--timeout", "8"]
# Exec form: the daemon gets SIGTERM itself (it handles it as PID 1; it starts no child
# processes to reap).  It may use up to delivery.stop_grace (10 s) for messages in flight,
# as long as Docker's default stop timeout: `docker stop -t 30`, or compose's
# stop_grace_period (compose.example.yaml), leaves it room.
ENTRYPOINT ["openrouter-watcher"]
CMD ["run"]
