"""rebates: on-demand runs; a lighter rebates table for the engine (four foreign keys dropped,
the settlement index partial); an index for the engine's rescan of recent closing deals

Revision ID: 0012_rebate_speed
Revises: 0011_closed_count_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_rebate_speed"
down_revision = "0011_closed_count_index"
branch_labels = None
depends_on = None


DROPPED_FOREIGN_KEYS = (
    ("fk_rebates_server_id_trading_servers", "server_id", "trading_servers", "CASCADE"),
    ("fk_rebates_closed_position_id_closed_positions", "closed_position_id", "closed_positions", "SET NULL"),
    ("fk_rebates_sub_ib_id_users", "sub_ib_id", "users", "SET NULL"),
    ("fk_rebates_trading_account_id_trading_accounts", "trading_account_id", "trading_accounts", "SET NULL"),
)
SETTLED_ONLY = sa.text("settlement_id IS NOT NULL")


def upgrade():
    with op.batch_alter_table("rebates") as batch_op:
        for name, _column, _table, _ondelete in DROPPED_FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")
        batch_op.drop_index("ix_rebates_settlement")
        batch_op.create_index(
            "ix_rebates_settlement",
            ["settlement_id"],
            unique=False,
            postgresql_where=SETTLED_ONLY,
            sqlite_where=SETTLED_ONLY,
        )
    op.create_table(
        "rebate_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("settle", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("deals", sa.Integer(), nullable=False),
        sa.Column("rebates", sa.Integer(), nullable=False),
        sa.Column("settlements", sa.Integer(), nullable=False),
        sa.Column("paid", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_rebate_runs_requested_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rebate_runs")),
    )
    op.create_index(op.f("ix_rebate_runs_job_id"), "rebate_runs", ["job_id"], unique=False)
    op.create_index("ix_closed_positions_synced_at", "closed_positions", ["synced_at"], unique=False)


def downgrade():
    op.drop_index("ix_closed_positions_synced_at", table_name="closed_positions")
    op.drop_index(op.f("ix_rebate_runs_job_id"), table_name="rebate_runs")
    op.drop_table("rebate_runs")
    with op.batch_alter_table("rebates") as batch_op:
        batch_op.drop_index("ix_rebates_settlement")
        batch_op.create_index("ix_rebates_settlement", ["settlement_id"], unique=False)
        for name, column, table, ondelete in DROPPED_FOREIGN_KEYS:
            batch_op.create_foreign_key(name, table, [column], ["id"], ondelete=ondelete)
