"""Per track: tags, an embedding and the model that made it, what the file's own tags
say (artist, album, title, genres), a reason for failed and skipped tracks, and the
`skipped` state.

Revision ID: ca7c6c02de8c
Revises: 9c292d62deb1
Create Date: 2026-12-01 21:54:53.443576
"""
import sqlalchemy as sa
from alembic import op

revision = 'ca7c6c02de8c'
down_revision = '9c292d62deb1'
branch_labels = None
depends_on = None

OLD_STATES = ('queued', 'running', 'done', 'failed')
NEW_STATES = (*OLD_STATES, 'skipped')
STATE_CHECK = 'ck_tracks_track_state'  # the name the naming convention gave the enum's CHECK


def _state_check(states: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{s}'" for s in states) + ")"


def upgrade() -> None:
    with op.batch_alter_table('tracks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('embedding', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('embedding_model', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('artist', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('album', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('title', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('file_genres', sa.JSON(), nullable=True))
        # The state enum is a VARCHAR with a CHECK (native_enum=False): a new state is a
        # new CHECK. Autogenerate does not compare enum values, so this is by hand.
        batch_op.drop_constraint(op.f(STATE_CHECK), type_='check')
        batch_op.create_check_constraint(op.f(STATE_CHECK), _state_check(NEW_STATES))


def downgrade() -> None:
    # The old schema has no skipped state: those tracks go back to the queue.
    op.execute("UPDATE tracks SET state = 'queued' WHERE state = 'skipped'")
    with op.batch_alter_table('tracks', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(STATE_CHECK), type_='check')
        batch_op.create_check_constraint(op.f(STATE_CHECK), _state_check(OLD_STATES))
        batch_op.drop_column('file_genres')
        batch_op.drop_column('title')
        batch_op.drop_column('album')
        batch_op.drop_column('artist')
        batch_op.drop_column('embedding_model')
        batch_op.drop_column('embedding')
        batch_op.drop_column('tags')
        batch_op.drop_column('reason')
