"""deposits and withdrawals: indexes on the reports' time columns (the admin's page and
exact total read one month's rows instead of scanning the table)

Revision ID: 0013_report_speed
Revises: 0012_rebate_speed
"""

from alembic import op

revision = "0013_report_speed"
down_revision = "0012_rebate_speed"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_deposits_submitted", "deposits", ["submitted_at", "id"], unique=False)
    op.create_index("ix_withdrawals_created", "withdrawals", ["created_at", "id"], unique=False)


def downgrade():
    op.drop_index("ix_withdrawals_created", table_name="withdrawals")
    op.drop_index("ix_deposits_submitted", table_name="deposits")
