# genreq with the CPU build of torch: one image for the worker, the migration and the CLI.
#
#   docker build -t genreq .                                  # from the public python image
#   docker build --build-arg BASE_IMAGE=genreq-base:bookworm \
#     --build-arg WHEELHOUSE=http://172.17.0.1:8765/ -t genreq .   # offline (compose-test)
#
# BASE_IMAGE: any Debian bookworm-based image; one without Python (a debootstrap base)
# gets Debian's python3 (3.11) with apt. WHEELHOUSE: a URL or folder pip reads wheels
# from (--find-links); when set, nothing comes from a package index. A URL rather than a
# COPY of the wheels, so that the ~1 GB wheelhouse is no layer of the image.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG WHEELHOUSE=
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# Every format decodes in-process (PyAV's and soundfile's wheels bundle their libraries):
# no ffmpeg or libsndfile package.
RUN if ! command -v python3 >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/genreq
ENV PATH=/opt/genreq/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, the CPU build, so installing genreq never pulls a CUDA build. A plain-http
# wheelhouse (this machine, over the docker bridge) must be trusted by name.
RUN host=$(echo "$WHEELHOUSE" | sed -n 's#^http://\([^:/]*\).*#\1#p'); \
    if [ -n "$host" ]; then export PIP_TRUSTED_HOST="$host"; fi; \
    if [ -n "$WHEELHOUSE" ]; then \
      pip install --no-index --find-links "$WHEELHOUSE" torch==2.13.0; \
    else \
      pip install torch==2.13.0 --index-url "$TORCH_INDEX"; \
    fi

WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY genreq genreq
COPY app app
COPY cli cli
COPY worker worker
COPY db db
COPY migrations migrations
RUN host=$(echo "$WHEELHOUSE" | sed -n 's#^http://\([^:/]*\).*#\1#p'); \
    if [ -n "$host" ]; then export PIP_TRUSTED_HOST="$host"; fi; \
    pip install ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} '.[postgres]' \
 && rm -rf /src/build

# Nothing needs root (and Celery warns when run as root).
RUN useradd --create-home --uid 1000 genreq
USER genreq
WORKDIR /home/genreq
ENV GENREQ_HOME=/home/genreq/.genreq
ENTRYPOINT ["genreq"]
CMD ["--help"]
