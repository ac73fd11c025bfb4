"""The schema: one row per audio file. Alembic creates it (migrations/), never create_all."""
from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Enum,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from genreq.config import TOP_K

# Deterministic constraint names, so migrations can name what they alter or drop.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime. Naive values are taken as UTC, as genreq stores
    them: SQLite hands datetimes back without their offset, so an aware value is
    converted before it is compared with or subtracted from one read back."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class State(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    skipped = "skipped"  # not classified on purpose (e.g. shorter than --min-duration)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Track(Base):
    """An audio file and, once classified, its prediction.

    (path, size_bytes, mtime_ns) is the idempotency key: a file seen again with the same
    size and mtime is not queued again; a changed one is reset and re-queued.
    """

    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[State] = mapped_column(
        Enum(State, name="track_state", native_enum=False, length=16, create_constraint=True),
        default=State.queued,
    )
    # The enqueue call that last queued the track: `genreq run` waits for its own batch.
    batch_id: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Why the track ended failed or skipped, without its path (`error` has both), so
    # that status can count the tracks per reason.
    reason: Mapped[str | None] = mapped_column(Text)

    genre: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    probs: Mapped[dict[str, float] | None] = mapped_column(JSON)  # every genre of the model
    duration_s: Mapped[float | None] = mapped_column(Float)
    model_name: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    elapsed_s: Mapped[float | None] = mapped_column(Float)  # wall time of the classification
    # Readable tag name -> probability, for a model with tag outputs (genreq.predict).
    tags: Mapped[dict[str, float] | None] = mapped_column(JSON)
    # The model's track embedding as float16 bytes (genreq.db.work.embedding_bytes), and
    # "name@version" of the model that made it: only vectors of one model compare.
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    embedding_model: Mapped[str | None] = mapped_column(String(128))

    # What the file's own tags say (genreq.filetags), read by the worker.
    artist: Mapped[str | None] = mapped_column(Text)
    album: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    file_genres: Mapped[list[str] | None] = mapped_column(JSON)  # as the file lists them

    # A done track's `export --format ndjson` line at the default top K, written by
    # export (genreq.app.library.json_lines) and set back to NULL by a trigger when a
    # column it is made of changes (migration 195753152286): NULL, export makes it.
    export_line: Mapped[str | None] = mapped_column(Text)

    # The lease of a running track (genreq.db.work.claim): the worker that claimed it
    # (host:pid of its main process; kept once the track is finished, as who did it),
    # a token new with every claim, which a result must carry to be written, and when
    # the claim runs out unless the worker renews it.
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_tracks_state", "state"),
        Index("ix_tracks_genre_confidence", "genre", "confidence"),
        Index("ix_tracks_batch_id_state", "batch_id", "state"),
        Index("ix_tracks_finished_at", "finished_at"),
        # status's counts by state and genre, read from the index alone.
        Index("ix_tracks_state_genre", "state", "genre"),
        # similar's check whether one model's embeddings changed, from the index alone.
        Index("ix_tracks_embedding_model_state_finished_at", "embedding_model", "state",
              "finished_at"),
        # The expiry scan: running tracks whose lease ran out.
        Index("ix_tracks_state_lease_expires_at", "state", "lease_expires_at"),
        # status's failed and skipped tracks counted by reason, from the index alone.
        Index("ix_tracks_state_reason", "state", "reason"),
        # enqueue's search for a new file's size and mtime: a known file moved.
        Index("ix_tracks_size_bytes_mtime_ns", "size_bytes", "mtime_ns"),
    )

    def top(self, k: int = TOP_K) -> list[tuple[str, float]]:
        """The k most probable genres, most probable first."""
        return sorted((self.probs or {}).items(), key=lambda kv: kv[1], reverse=True)[:k]


class TrackCount(Base):
    """How many tracks are in each (state, genre), kept by triggers on `tracks`, so that
    status reads a few rows instead of counting an index of every track. On SQLite the
    triggers update these rows; on PostgreSQL they append to `track_count_deltas`, which
    genreq.db.counts.compact folds into these rows (migration 3f8a2c61d9e4). Rows that
    fall to 0 stay."""

    __tablename__ = "track_counts"

    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    genre: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" for no genre
    tracks: Mapped[int] = mapped_column(BigInteger)


class ChangeStamp(Base):
    """A counter that triggers on `tracks` raise whenever what it names changes (on
    PostgreSQL by appending to `change_stamp_deltas`, folded in as the counts are):
    EMBEDDINGS_STAMP, any done track's embedding, model, album or artist, or a track
    becoming done or no longer done. A cache of the embeddings holds while it is equal."""

    __tablename__ = "change_stamps"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)


EMBEDDINGS_STAMP = "embeddings"

# PostgreSQL's changes to the counts and stamps, appended by triggers on `tracks` and
# never updated, so parallel writers never wait on each other for a counter row: what a
# count is, is its base row plus the sum of its deltas (genreq.db.counts). No primary
# key: an append touches the heap alone, and the deltas are only ever read whole and
# deleted whole. Empty on SQLite, whose triggers update the base rows (one writer).
track_count_deltas = Table(
    "track_count_deltas", Base.metadata,
    Column("state", String(16), nullable=False),
    Column("genre", String(64), nullable=False),  # "" for no genre, as in track_counts
    Column("tracks", Integer, nullable=False),  # +1 or -1
)
change_stamp_deltas = Table(
    "change_stamp_deltas", Base.metadata,
    Column("name", String(32), nullable=False),
    Column("generation", Integer, nullable=False),  # +1
)


metadata = Base.metadata
