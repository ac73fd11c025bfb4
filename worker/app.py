"""The one Celery app. Broker from GENREQ_BROKER_URL, or the embedded broker of
GENREQ_HOME. No result backend: results go to the database."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

from celery import Celery, signals

from genreq import config, redact
from genreq.worker import broker

CLASSIFY_BATCH_TASK = "genreq.classify_tracks"
CLASSIFY_TASK = "genreq.classify_track"
QUEUE = "genreq"

# Small libraries are cut finer, so that this many worker processes all get work.
TASK_BATCH_SPREAD = 16
# Per track; a batch's limits are these times its length. Classifying a clip takes a small
# fraction of this (stages_ms in bench/results/pipeline.json): minutes mean a pathological
# file.
TASK_SOFT_TIME_LIMIT_S = 120
TASK_HARD_TIME_LIMIT_S = 150
# With acks_late, Redis hands an unacknowledged message to another worker after this long,
# whether or not the worker that took it is alive. Unlike the usual advice (longer than
# any task), short on purpose: a copy of a message whose tracks are still being worked on
# finds them under a live lease (genreq.db.work) and does nothing, so a slow batch is not
# run twice; and it is how a message comes back that a worker had fetched but not yet
# claimed when it died whole (its claimed tracks come back with their leases). Swept for
# every RESTORE_INTERVAL_S: such a message is back within about 70 s.
VISIBILITY_TIMEOUT_S = 60
RESTORE_INTERVAL_S = 10


def broker_url() -> str:
    return config.broker_url() or broker.embedded_url()


def make_app() -> Celery:
    celery_app = Celery("genreq", include=["genreq.worker.tasks"])
    celery_app.conf.update(
        broker_url=broker_url(),
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            # every interval, not every tenth (kombu's default throttle)
            "unacked_restore_interval": RESTORE_INTERVAL_S,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        # JSON only: nothing is ever unpickled from the wire.
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT_S,
        task_time_limit=TASK_HARD_TIME_LIMIT_S,
        worker_prefetch_multiplier=1,
        worker_send_task_events=False,
        worker_hijack_root_logger=True,
    )
    return celery_app


app = make_app()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(logger, **_kwargs) -> None:
    # Celery replaces the root logger's handlers (hijack_root_logger): mask passwords in
    # what its handlers write too (Celery masks its own URLs; a driver's message may not).
    redact.install(logger.handlers)


def task_batches(track_ids: Sequence[int], most: int | None = None) -> Iterator[list[int]]:
    """`track_ids` cut into messages of at most `most` (default config.task_batch())
    tracks, fewer when there are fewer than TASK_BATCH_SPREAD messages' worth, and the
    last TASK_BATCH_SPREAD tracks one per message, so that workers finish together.

    A 30-s clip costs ~40 ms of work, and sent alone another ~6 ms of queue hand-off and
    database round trips; a batch shares those (bench/pipeline.py)."""
    most = most or config.task_batch()
    size = max(1, min(most, len(track_ids) // TASK_BATCH_SPREAD))
    tail = max(0, len(track_ids) - TASK_BATCH_SPREAD)
    for start in range(0, tail, size):
        yield list(track_ids[start:min(start + size, tail)])
    for track_id in track_ids[tail:]:
        yield [track_id]


def send_classify(track_ids: Sequence[int], producer, celery_app: Celery | None = None) -> int:
    """Send `track_ids` to the workers: a batch as classify_tracks, a single track as
    classify_track (one track id per message, as before batches). Returns the number
    of messages sent."""
    celery_app = celery_app or app
    sent = 0
    for batch in task_batches(track_ids):
        if len(batch) == 1:
            celery_app.send_task(CLASSIFY_TASK, args=batch, producer=producer)
        else:
            celery_app.send_task(
                CLASSIFY_BATCH_TASK,
                args=[batch],
                producer=producer,
                soft_time_limit=TASK_SOFT_TIME_LIMIT_S * len(batch),
                time_limit=TASK_HARD_TIME_LIMIT_S * len(batch),
            )
        sent += 1
    return sent
