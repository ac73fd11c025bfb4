"""Thin tasks: take track ids, call the core, write the results.

`classify_tracks` is what enqueue sends: a few tracks per message, claimed in one
statement and written in one, so the queue and the database cost per message rather
than per track. `classify_track` takes one track: for tracks a batch could not claim
(left running by a worker that died with them) and for those the expiry scan sends
again (genreq.worker.leases), so that a file that kills its worker is retried alone.
Every claim is a lease that the process's heartbeat renews while the task runs; the
results are written under the claim's token, so a worker that lost its lease (paused
past it, say) writes nothing. The model is loaded once, by the worker's main process
before its pool forks (load_classifier), never per task.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

from genreq import audio, config, filetags, similarity
from genreq.db import work
from genreq.db.models import utcnow
from genreq.db.session import dispose_engines, transaction
from genreq.errors import AudioError, ModelError, TooShort
from genreq.worker import leases
from genreq.worker.app import CLASSIFY_BATCH_TASK, CLASSIFY_TASK, TASK_SOFT_TIME_LIMIT_S, app

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

_classifier = None


def load_classifier(model: str | None = None):
    """Load this process's classifier: `model` a checkpoint path or a shipped model's
    name, None for $GENREQ_MODEL or the default. Raises ModelError with the reason.

    `genreq worker` calls it in its main process before the pool forks, so every pool
    process inherits the loaded model (and a model that cannot be loaded stops the
    worker before it takes a task, instead of failing every track)."""
    global _classifier
    import torch

    from genreq.predict import Classifier

    # Processes give the parallelism; threads inside each would only contend. Set
    # before the model is built, so no thread pool exists when the pool forks.
    torch.set_num_threads(1)
    _classifier = Classifier.load(model)
    warm_up(_classifier)
    log.info("loaded model %s@%s in process %d", _classifier.name, _classifier.version,
             os.getpid())
    return _classifier


def warm_up(clf) -> None:
    """Pay the first-call costs of a track once, here, rather than once in every pool
    process on its first track: the lazy imports of the tag reader (mutagen and its
    format modules) and of PyAV, and the first forward pass at the shape a long track
    has (the allocator's pools, oneDNN's kernels for those shapes, feature tables). Done
    before the pool forks, the pool processes inherit it all (bench/formats.py --real
    measures the first track's share). With one torch thread the forward pass starts
    no thread pool, so nothing here stops the fork being safe."""
    import numpy as np

    from genreq import features

    filetags.read(os.devnull)  # mutagen.File imports every format it knows, then finds none
    audio.duration_s(os.devnull)  # not a format libsndfile reads by name: imports PyAV
    windows = clf.excerpt_windows(2 * features.EXCERPTS_FROM_S)  # as many as the model reads
    noise = np.random.default_rng(0).standard_normal(
        round(windows[0][1] * clf.features.sample_rate)).astype(np.float32) * 0.1
    clf.chunk_outputs(clf.chunks_of_excerpts([noise] * len(windows)))


def classifier():
    """This process's classifier: the one inherited from the worker's main process, or
    loaded on first use."""
    return _classifier if _classifier is not None else load_classifier()


@worker_process_init.connect
def _init_worker_process(**_kwargs) -> None:
    dispose_engines()
    leases.start_heartbeat()


# Both tasks: what is not the file's fault is retried with exponential backoff.
TASK_OPTIONS = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": RETRY_BACKOFF_MAX_S,
    "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}


@dataclass
class Outcome:
    """What became of one claimed track: a result, or the reason it failed."""

    track_id: int
    elapsed_s: float
    finished_at: datetime
    result: work.Result | None = None
    reason: str | None = None  # with the path
    timed_out: bool = False
    short_reason: str | None = None  # without the path, for counting by reason
    skipped: bool = False  # not classified on purpose (too short): not a failure
    duration_s: float | None = None


def _classify(track_id: int, path: str) -> Outcome:
    """Classify one claimed file. Bad audio and unexpected errors become a failure
    reason; errors that are not the file's fault (model, database, broker) propagate."""
    started = time.perf_counter()
    timed_out = False
    try:
        prediction = classifier().classify_file(path, min_duration_s=config.min_duration_s())
        tags = filetags.read(path)
    except TooShort as exc:
        log.info("skipped: %s", exc)
        return Outcome(track_id, time.perf_counter() - started, utcnow(), reason=str(exc),
                       short_reason=exc.reason, skipped=True, duration_s=exc.duration_s)
    except AudioError as exc:
        reason, short_reason = str(exc), exc.reason
    except SoftTimeLimitExceeded:
        timed_out = True
        reason = (f"{path}: stopped after {time.perf_counter() - started:.0f} s"
                  f" (time limit {TASK_SOFT_TIME_LIMIT_S} s per track)")
        short_reason = f"stopped at the time limit ({TASK_SOFT_TIME_LIMIT_S} s per track)"
    except (ModelError, *TRANSIENT_ERRORS):
        raise
    except Exception as exc:  # a bug or an undecodable corner case: same answer next time
        log.exception("classifying %s failed", path)
        reason = f"{path}: {type(exc).__name__}: {exc}"
        short_reason = f"{type(exc).__name__}: {exc}"
    else:
        elapsed_s = time.perf_counter() - started
        finished_at = utcnow()
        embedding = prediction.embedding
        return Outcome(track_id, elapsed_s, finished_at, result=work.Result(
            track_id=track_id,
            genre=prediction.genre,
            confidence=float(prediction.confidence),
            probs={genre: float(p) for genre, p in prediction.probs.items()},
            duration_s=float(prediction.duration_s),
            elapsed_s=elapsed_s,
            finished_at=finished_at,
            tags=prediction.tags or None,
            embedding=None if embedding is None else similarity.embedding_bytes(embedding),
            embedding_model=prediction.embedding_model or None,
            artist=tags.artist,
            album=tags.album,
            title=tags.title,
            file_genres=tags.genres,
            reason=audio.DAMAGED if prediction.note else None,
            error=f"{path}: {prediction.note}" if prediction.note else None,
        ))
    log.warning("failed: %s", reason)
    return Outcome(track_id, time.perf_counter() - started, utcnow(), reason=reason,
                   timed_out=timed_out, short_reason=short_reason)


def _classify_following_moves(track_id: int, path: str) -> Outcome:
    """_classify, and once more at the track's new path when its file went from PATH
    while this worker held it: an enqueue that found it moved gave the row its new
    path, and a failure at the old one would stay with the file."""
    outcome = _classify(track_id, path)
    if (outcome.result is not None or outcome.skipped or outcome.timed_out
            or os.path.exists(path)):
        return outcome
    with transaction() as db:
        moved_to = work.path_of(db, track_id)
    if moved_to is None or moved_to == path:
        return outcome
    log.info("%s moved to %s while being classified; classifying it there", path, moved_to)
    return _classify(track_id, moved_to)


def _record(outcomes: list[Outcome], claim: work.Claim) -> list[Outcome]:
    """Write the outcomes of tracks still held under `claim`, in one transaction.
    Returns those written; the others' lease ran out and another claim took them over,
    whose result counts instead."""
    model = classifier()
    with transaction() as db:
        held = work.still_held(db, claim.token, [o.track_id for o in outcomes])
        lost = [o.track_id for o in outcomes if o.track_id not in held]
        outcomes = [o for o in outcomes if o.track_id in held]
        work.record_results(db, [o.result for o in outcomes if o.result], model.name,
                            model.version, claim.token)
        for o in outcomes:
            if o.skipped:
                work.record_skip(db, o.track_id, o.short_reason, o.duration_s, o.elapsed_s,
                                 o.finished_at, claim_token=claim.token)
            elif o.reason is not None:
                work.record_failure(db, o.track_id, o.reason, o.elapsed_s, o.finished_at,
                                    o.short_reason, claim_token=claim.token)
    if lost:
        log.warning("lease lost on track(s) %s (another worker claimed them after this "
                    "one stopped renewing): result not written", ", ".join(map(str, lost)))
    return outcomes


@contextlib.contextmanager
def _released_on_error(claim: work.Claim, track_ids: Collection[int]) -> Iterator[None]:
    """On an error that is not the files' fault (the task is retried), give the claimed
    tracks back at once, so that the retry can claim them again, instead of leaving them
    to the expiry scan once their lease runs out. Best effort: with the database itself
    gone, the lease is what brings them back."""
    try:
        yield
    except (ModelError, *TRANSIENT_ERRORS):
        try:
            with transaction() as db:
                work.release(db, claim, track_ids)
        except TRANSIENT_ERRORS:
            log.warning("could not give back tracks %s; their lease will run out",
                        ", ".join(map(str, track_ids)))
        raise


@app.task(name=CLASSIFY_BATCH_TASK, **TASK_OPTIONS)
def classify_tracks(track_ids: list[int]) -> dict[str, int]:
    """Classify a batch of tracks. Returns how many ended done, failed, too_short (state
    skipped: shorter than the minimum duration), skipped (done, failed or skipped
    already, unknown, or held by another worker's live lease), were handed on one per
    task (see classify_track), or lease_lost (classified, not written: see _record)."""
    claim = leases.new_claim()
    with leases.holding(claim):
        with transaction() as db:
            claimed = work.claim_batch(db, track_ids, MAX_ATTEMPTS, claim)
            unclaimed = [i for i in track_ids if i not in claimed]
            handed_on = work.claimable_among(db, unclaimed) if unclaimed else []
        skipped = len(unclaimed) - len(handed_on)

        outcomes: list[Outcome] = []
        todo = list(claimed.items())
        with _released_on_error(claim, claimed):
            for track_id, path in todo:
                outcomes.append(_classify_following_moves(track_id, path))
                if outcomes[-1].timed_out:  # the rest of the batch gets a time limit of its own
                    rest = [later_id for later_id, _ in todo[len(outcomes):]]
                    with transaction() as db:
                        handed_on += work.release(db, claim, rest)
                    break
            written = _record(outcomes, claim)
    for track_id in handed_on:
        classify_track.delay(track_id)
    too_short = sum(o.skipped for o in written)
    failed = sum(o.reason is not None for o in written) - too_short
    lost = len(outcomes) - len(written)
    return {"done": len(written) - failed - too_short, "failed": failed,
            "too_short": too_short, "skipped": skipped, "handed_on": len(handed_on),
            "lease_lost": lost}


@app.task(name=CLASSIFY_TASK, **TASK_OPTIONS)
def classify_track(track_id: int) -> str:
    """Classify one track. Returns what happened: done, failed, too_short (state
    skipped), skipped (nothing to do) or lease_lost (see _record)."""
    claim = leases.new_claim()
    with leases.holding(claim):
        with transaction() as db:
            path = work.claim(db, track_id, MAX_ATTEMPTS, claim)
        if path is None:
            # done, failed, unknown, or another worker's: a repeated task is a no-op
            return "skipped"
        with _released_on_error(claim, [track_id]):
            outcome = _classify_following_moves(track_id, path)
            if not _record([outcome], claim):
                return "lease_lost"
    if outcome.skipped:
        return "too_short"
    return "done" if outcome.result else "failed"
