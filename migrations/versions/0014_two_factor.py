"""TOTP two-factor: a user's encrypted secret and their hashed recovery codes

Revision ID: 0014_two_factor
Revises: 0013_report_speed
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_two_factor"
down_revision = "0013_report_speed"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "user_otp",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("secret_encrypted", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("enabled_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_otp_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_otp")),
    )
    op.create_table(
        "otp_recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_otp_recovery_codes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_otp_recovery_codes")),
    )
    op.create_index(op.f("ix_otp_recovery_codes_user_id"), "otp_recovery_codes", ["user_id"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_otp_recovery_codes_user_id"), table_name="otp_recovery_codes")
    op.drop_table("otp_recovery_codes")
    op.drop_table("user_otp")
