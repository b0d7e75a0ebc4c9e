"""Rebate rules (versioned), rebates (one per closing deal per receiving IB), settlements.

- `rebate_rules`: one row per *version* of a rule. A change made through the API closes
  the current version (`valid_to`) and starts a new one (`valid_from`), both in one
  transaction; `rule_key` ties the versions of one rule together. A rebate names the
  version it was calculated with, so a later change never alters it.
- `rebates`: UNIQUE (server_id, close_deal_ticket, ib_id): a closing deal pays an IB once,
  whatever the retries or concurrent runs (inserts are `ON CONFLICT DO NOTHING`). A zero
  amount always carries a `reason`.
  Its foreign keys are those that guard something: the receiving IB and the client, the
  rule version (RESTRICT: a version that rebates name cannot be deleted) and the
  settlement. The server, account, closed position and sub-IB are copied from rows the
  engine joins in the same statement and carry no foreign key: at millions of rows, each
  key check costs more than the insert itself.
- `rebate_settlements`: the "commission" of the reports: the unpaid rebates of one IB
  gathered (each rebate is marked with the settlement in the same transaction) and paid
  to one of the IB's trading accounts through a balance operation (kind REB).
- `rebate_engine_state`: the engine's watermark on closed_positions.id (one row).
- `rebate_payout_accounts`: an IB's chosen payout account (default: its first active
  live account).
- `rebate_runs`: one row per on-demand run (`POST /admin/rebates/run`), its id the
  admin's handle on the queued job: status, counts, error, times.
"""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.sync.models import ClosedPosition

MONEY = Numeric(20, 2)
LOTS = Numeric(20, 8)
RATE = Numeric(20, 8)
ROW_ID = BigInteger().with_variant(Integer, "sqlite")

RULE_MODES = ("per_lot", "commission_percent")
ZERO_REASONS = ("no_rule", "held_too_short", "own_trade", "level_not_covered", "no_difference", "zero_amount")
SETTLEMENT_STATUSES = ("paying", "paid", "failed")
RUN_STATUSES = ("queued", "running", "finished", "failed")


class RebateRule(db.Model):
    __tablename__ = "rebate_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_key: Mapped[int | None] = mapped_column(index=True)  # the first version's id
    name: Mapped[str] = mapped_column(String(100), default="")
    account_type_id: Mapped[int | None] = mapped_column(ForeignKey("trading_account_types.id", ondelete="SET NULL"))
    mt_group_pattern: Mapped[str | None] = mapped_column(String(64))
    symbol_pattern: Mapped[str] = mapped_column(String(32), default="*")
    mode: Mapped[str] = mapped_column(String(24), default="per_lot")
    level_amounts: Mapped[list] = mapped_column(JSON, default=list)  # decimal strings, level 1 first
    upline_difference_only: Mapped[bool] = mapped_column(default=False)
    min_holding_seconds: Mapped[int] = mapped_column(default=0)
    priority: Mapped[int] = mapped_column(default=0)
    enabled: Mapped[bool] = mapped_column(default=True)
    valid_from: Mapped[datetime] = mapped_column(default=utcnow)
    valid_to: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_rebate_rules_validity", "valid_from", "valid_to"),)


class RebateEngineState(db.Model):
    __tablename__ = "rebate_engine_state"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    last_closed_position_id: Mapped[int] = mapped_column(ROW_ID, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column()
    last_counts: Mapped[dict] = mapped_column(JSON, default=dict)


class RebatePayoutAccount(db.Model):
    __tablename__ = "rebate_payout_accounts"

    ib_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    trading_account_id: Mapped[int] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RebateSettlement(db.Model):
    __tablename__ = "rebate_settlements"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_number: Mapped[str] = mapped_column(String(32), unique=True)
    ib_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    trading_account_id: Mapped[int] = mapped_column(ForeignKey("trading_accounts.id"))
    login: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    total_orders: Mapped[int] = mapped_column(default=0)
    total_amount: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    period_end: Mapped[datetime] = mapped_column()
    calculate_from: Mapped[datetime | None] = mapped_column()  # earliest calculation time of its rebates
    calculate_at: Mapped[datetime | None] = mapped_column()  # latest calculation time of its rebates
    status: Mapped[str] = mapped_column(String(16), default="paying")
    grant_at: Mapped[datetime | None] = mapped_column()
    operation_id: Mapped[int | None] = mapped_column(ForeignKey("balance_operations.id"))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ib = relationship("User", foreign_keys=[ib_id])

    __table_args__ = (
        Index("ix_rebate_settlements_ib_calculate", "ib_id", "calculate_at", "id"),
        Index("ix_rebate_settlements_ib_grant", "ib_id", "grant_at", "id"),
    )


class Rebate(db.Model):
    __tablename__ = "rebates"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    server_id: Mapped[int] = mapped_column()
    close_deal_ticket: Mapped[int] = mapped_column(BigInteger)
    ib_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    closed_position_id: Mapped[int | None] = mapped_column(ROW_ID)
    client_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sub_ib_id: Mapped[int | None] = mapped_column()
    trading_account_id: Mapped[int | None] = mapped_column()
    login: Mapped[int] = mapped_column(BigInteger)
    close_order: Mapped[int] = mapped_column(BigInteger, default=0)
    position_id: Mapped[int] = mapped_column(BigInteger, default=0)
    symbol: Mapped[str] = mapped_column(String(32))
    volume: Mapped[Decimal] = mapped_column(LOTS)
    open_price: Mapped[Decimal | None] = mapped_column(Numeric(24, 8))
    close_price: Mapped[Decimal | None] = mapped_column(Numeric(24, 8))
    open_time: Mapped[datetime | None] = mapped_column()
    close_time: Mapped[datetime] = mapped_column()
    profit: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    commission: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    level: Mapped[int] = mapped_column()  # 1 = the client's own IB; 0 = the IB's own trade
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("rebate_rules.id", ondelete="RESTRICT"))
    mode: Mapped[str | None] = mapped_column(String(24))
    rate: Mapped[Decimal] = mapped_column(RATE, default=Decimal("0"))  # the level's configured amount
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    reason: Mapped[str | None] = mapped_column(String(24))  # why the amount is zero
    calculated_at: Mapped[datetime] = mapped_column(default=utcnow)
    settlement_id: Mapped[int | None] = mapped_column(ForeignKey("rebate_settlements.id", ondelete="SET NULL"))

    __table_args__ = (
        UniqueConstraint("server_id", "close_deal_ticket", "ib_id", name="uq_rebates_deal_ib"),
        Index("ix_rebates_ib_calculated", "ib_id", "calculated_at", "id"),
        # Rows are written unsettled: only settled ones need finding by settlement.
        Index(
            "ix_rebates_settlement",
            "settlement_id",
            postgresql_where=text("settlement_id IS NOT NULL"),
            sqlite_where=text("settlement_id IS NOT NULL"),
        ),
        Index(
            "ix_rebates_unsettled",
            "ib_id",
            "calculated_at",
            postgresql_where=text("settlement_id IS NULL AND amount > 0"),
        ),
    )


class RebateRun(db.Model):
    __tablename__ = "rebate_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)  # the RQ job (none when run in-process)
    settle: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    deals: Mapped[int] = mapped_column(default=0)
    rebates: Mapped[int] = mapped_column(default=0)
    settlements: Mapped[int] = mapped_column(default=0)
    paid: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


# The engine's rescan reads the closing deals synced in the last minutes at or below its
# watermark: an index on synced_at keeps that from scanning the whole table.
Index("ix_closed_positions_synced_at", ClosedPosition.__table__.c.synced_at)
