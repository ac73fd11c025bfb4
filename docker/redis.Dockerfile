# Redis from a Debian base with apt, for where the public redis image cannot be pulled
# (scripts/compose-test). Runs what docker-compose.yml's redis service runs, like the
# public image: redis-server and redis-cli on PATH, data in /data, not as root.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
CMD ["redis-server", "--protected-mode", "no"]
