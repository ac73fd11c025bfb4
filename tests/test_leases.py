"""The worker's side of leases, in-process: settings, the heartbeat's renewal of what a
process holds, and the expiry scan that queues and sends again what ran out. The real
processes (kill -9, SIGSTOP) are in test_recovery.py."""
from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from helpers import add_track

from genreq import config
from genreq.db import work
from genreq.db.models import State, Track, as_utc, utcnow
from genreq.db.session import session_scope, transaction
from genreq.errors import GenreqError
from genreq.worker import leases


def test_lease_settings(monkeypatch):
    assert (config.lease_s(), config.heartbeat_s()) == (30.0, 10.0)
    monkeypatch.setenv("GENREQ_LEASE_S", "6")
    assert (config.lease_s(), config.heartbeat_s()) == (6.0, 2.0)  # a third by default
    monkeypatch.setenv("GENREQ_HEARTBEAT_S", "1.5")
    assert config.heartbeat_s() == 1.5
    monkeypatch.setenv("GENREQ_HEARTBEAT_S", "6")
    with pytest.raises(GenreqError, match=r"GENREQ_HEARTBEAT_S \(6\) must be less than "
                                          r"GENREQ_LEASE_S \(6\)"):
        config.heartbeat_s()


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_lease_setting_is_checked(monkeypatch, value):
    monkeypatch.setenv("GENREQ_LEASE_S", value)
    with pytest.raises(GenreqError, match="GENREQ_LEASE_S must be a number of seconds above 0"):
        config.lease_s()


def test_claims_name_the_main_process(monkeypatch):
    monkeypatch.setattr(leases, "_worker_id", None)
    leases.set_worker_id(4242)
    claim = leases.new_claim()
    assert claim.worker_id.endswith(":4242") and claim.lease_s == config.lease_s()
    assert leases.new_claim().token != claim.token


def test_heartbeat_renews_what_this_process_holds(sqlite_url):
    with session_scope() as s:
        ids = [add_track(s, f"/{i}.mp3").id for i in range(2)]
    held, let_go = work.new_claim("host:1", 1.0), work.new_claim("host:1", 1.0)
    with transaction() as db:
        work.claim(db, ids[0], 5, held)
        work.claim(db, ids[1], 5, let_go)
    with leases.holding(held):
        assert leases.renew_held() == 1
    assert leases.renew_held() == 0  # nothing held once the block ends
    with session_scope() as s:
        renewed, lapsing = (as_utc(s.get(Track, i).lease_expires_at) for i in ids)
    assert renewed > utcnow() + timedelta(seconds=config.lease_s() - 5) > lapsing


class Sent:
    """Stands in for the broker: what resend_expired publishes."""

    def __init__(self):
        self.messages: list[tuple[str, list]] = []

    def send_task(self, name, args, producer=None, **_options):
        self.messages.append((name, args))

    @contextlib.contextmanager
    def producer_or_acquire(self, producer=None):
        yield producer


def test_expiry_scan_queues_and_sends_each_track_alone(sqlite_url, monkeypatch):
    from genreq.worker import app as worker_app

    sent = Sent()
    monkeypatch.setattr(worker_app, "app", sent)
    monkeypatch.setattr(leases, "EXPIRY_SCAN_LIMIT", 2)  # several statements
    past = utcnow() - timedelta(seconds=1)
    with session_scope() as s:
        expired = [add_track(s, f"/gone{i}.mp3", state="running", attempts=1,
                             claim_token=f"t{i}", lease_expires_at=past).id for i in range(3)]
        live = add_track(s, "/live.mp3", state="running", attempts=1, claim_token="t",
                         lease_expires_at=utcnow() + timedelta(seconds=60)).id
    assert leases.resend_expired() == expired
    assert sent.messages == [(worker_app.CLASSIFY_TASK, [i]) for i in expired]
    assert leases.resend_expired() == []  # nothing left to send
    with session_scope() as s:
        assert [s.get(Track, i).state for i in expired] == [State.queued] * 3
        assert s.get(Track, live).state == State.running


def test_the_heartbeat_thread_starts_once_per_process(monkeypatch):
    monkeypatch.setattr(leases, "_heartbeat_pid", None)
    stop = leases.start_heartbeat()
    try:
        assert stop is not None
        assert leases.start_heartbeat() is None
    finally:
        stop.set()
