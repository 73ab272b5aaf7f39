"""The request's W3C trace context on each outbox row (issue 11), so delivery joins the trace.

NULL when the writer was not traced (tracing off, or an untraced caller such as a reaper batch
outside a span): the dispatcher then writes entries exactly as before.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE event_outbox ADD COLUMN traceparent TEXT")


def downgrade() -> None:
    pass
