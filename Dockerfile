# genreq with the CPU build of torch: one image for the worker, the migration and the CLI.
FROM python:3.11-slim-bookworm

# ffmpeg decodes mp3/m4a/opus; libsndfile1 backs soundfile.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg libsndfile1 \
 && rm -rf /var/lib/apt/lists/*

# torch first, from the CPU index, so installing genreq never pulls a CUDA build.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY genreq genreq
COPY app app
COPY cli cli
COPY worker worker
COPY db db
COPY migrations migrations
RUN pip install --no-cache-dir '.[postgres]' && rm -rf /src/build

# Nothing needs root (and Celery warns when run as root).
RUN useradd --create-home --uid 1000 genreq
USER genreq
WORKDIR /home/genreq
ENV GENREQ_HOME=/home/genreq/.genreq
ENTRYPOINT ["genreq"]
CMD ["--help"]
