"""Drop event_outbox_dispatch_ready: no query's plan uses it, and every outbox write maintains it.

EXPLAIN of the dispatcher's, the reaper's and the API's outbox statements on a filled table
(tests/integration/test_outbox_plans.py) never picks it for its key; where a plan took it, it was
only a list of undispatched rows, which event_outbox_undispatched_age (same predicate) gives too.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS event_outbox_dispatch_ready")


def downgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS event_outbox_dispatch_ready ON event_outbox (available_at)"
        " WHERE dispatched_at IS NULL"
    )
