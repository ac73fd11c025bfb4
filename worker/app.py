"""The one Celery app. Broker from GENREQ_BROKER_URL, or the embedded broker of
GENREQ_HOME. No result backend: results go to the database."""
from __future__ import annotations

from celery import Celery

from genreq import config
from genreq.worker import broker

CLASSIFY_TASK = "genreq.classify_track"
QUEUE = "genreq"

# A 30-s clip takes well under a second; minutes mean a pathological file.
TASK_SOFT_TIME_LIMIT_S = 120
TASK_HARD_TIME_LIMIT_S = 150
# With acks_late, Redis hands an unacknowledged task to another worker after this long:
# it must exceed the hard limit, or a slow but healthy task would run twice.
VISIBILITY_TIMEOUT_S = 3600


def broker_url() -> str:
    return config.broker_url() or broker.embedded_url()


def make_app() -> Celery:
    celery_app = Celery("genreq", include=["genreq.worker.tasks"])
    celery_app.conf.update(
        broker_url=broker_url(),
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
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
