"""closed positions: an index that answers the admin report's total by itself

Revision ID: 0011_closed_count_index
Revises: 0010_rebates
"""

from alembic import op

revision = "0011_closed_count_index"
down_revision = "0010_rebates"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_closed_positions_close_account", "closed_positions", ["close_time", "trading_account_id"], unique=False
    )


def downgrade():
    op.drop_index("ix_closed_positions_close_account", table_name="closed_positions")
