"""Thin tasks: take a track id, call the core, write one result row.

The model is loaded once per worker process (worker_process_init), never per task.
"""
from __future__ import annotations

import logging
import os
import signal
import time

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

from genreq.db import queries
from genreq.db.session import dispose_engines, transaction
from genreq.errors import AudioError, ModelError
from genreq.worker.app import CLASSIFY_TASK, TASK_SOFT_TIME_LIMIT_S, app

log = logging.getLogger(__name__)

# Errors that go away by themselves (database locked or restarting, broker blip):
# the task is retried with exponential backoff.
TRANSIENT_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.DisconnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)
MAX_RETRIES = 6
RETRY_BACKOFF_MAX_S = 60
# Claims per track before giving up: a file that keeps killing its worker (hard time
# limit, out of memory) would otherwise be redelivered forever (reject_on_worker_lost).
MAX_ATTEMPTS = 5

# Set by `genreq worker` in the main process; pool processes inherit it through fork
# and write the reason there when the model cannot be loaded.
fatal_error_file: str | None = None

_classifier = None


def classifier():
    """This process's classifier, loaded on first use."""
    global _classifier
    if _classifier is None:
        import torch

        from genreq import config
        from genreq.predict import Classifier, resolve_model

        # Processes give the parallelism; threads inside each would only contend.
        torch.set_num_threads(1)
        _classifier = Classifier.load(resolve_model(config.model()))
        log.info("loaded model %s@%s in process %d", _classifier.name, _classifier.version,
                 os.getpid())
    return _classifier


@worker_process_init.connect
def _init_worker_process(**_kwargs) -> None:
    dispose_engines()
    try:
        classifier()
    except ModelError as exc:
        # Every task would fail the same way: stop the whole worker instead of
        # marking tracks failed for a problem that is not theirs.
        log.critical("cannot load the model: %s", exc)
        if fatal_error_file:
            with open(fatal_error_file, "w") as out:
                out.write(str(exc))
        os.kill(os.getppid(), signal.SIGTERM)


@app.task(
    name=CLASSIFY_TASK,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=RETRY_BACKOFF_MAX_S,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def classify_track(track_id: int) -> str:
    """Classify one track. Returns what happened: done, failed or skipped."""
    with transaction() as db:
        path = queries.claim(db, track_id, MAX_ATTEMPTS)
    if path is None:
        return "skipped"  # done, failed, or unknown: a repeated task is a no-op

    started = time.perf_counter()
    try:
        prediction = classifier().classify_file(path)
    except AudioError as exc:
        reason = str(exc)
    except SoftTimeLimitExceeded:
        reason = f"{path}: took longer than {TASK_SOFT_TIME_LIMIT_S} s"
    except (ModelError, *TRANSIENT_ERRORS):
        raise
    except Exception as exc:  # a bug or an undecodable corner case: same answer next time
        log.exception("classifying %s failed", path)
        reason = f"{path}: {type(exc).__name__}: {exc}"
    else:
        elapsed_s = time.perf_counter() - started
        model = classifier()
        with transaction() as db:
            queries.record_result(
                db,
                track_id,
                genre=prediction.genre,
                confidence=float(prediction.confidence),
                probs={genre: float(p) for genre, p in prediction.probs.items()},
                duration_s=float(prediction.duration_s),
                model_name=model.name,
                model_version=model.version,
                elapsed_s=elapsed_s,
            )
        return "done"

    log.warning("failed: %s", reason)
    with transaction() as db:
        queries.record_failure(db, track_id, reason, time.perf_counter() - started)
    return "failed"
