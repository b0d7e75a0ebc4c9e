"""Withdrawals: money off a trading account at request time, paid out after review."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

# processing: a balance operation is in flight (the debit, or the refund after a
# rejection); auditing: the money is off the trading account, waiting for review;
# approved: paid out; disapproved: rejected and refunded; failed: the account could
# not pay, or the refund was refused (then `failure_reason` says it needs a person).
WITHDRAWAL_STATUSES = ("processing", "auditing", "approved", "disapproved", "failed")


class Withdrawal(db.Model):
    __tablename__ = "withdrawals"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_number: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    trading_account_id: Mapped[int] = mapped_column(ForeignKey("trading_accounts.id"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("withdrawal_channels.id"))
    # The payout account the details were copied from, when the client named one.
    payment_account_id: Mapped[int | None] = mapped_column(ForeignKey("payment_accounts.id", ondelete="SET NULL"))
    method: Mapped[str] = mapped_column(String(32))
    # In the trading account's currency: what leaves the account, and the channel's fee.
    amount: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    fee: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    account_currency: Mapped[str] = mapped_column(String(8))
    # What is paid out: (amount - fee) x exchange_rate, in `currency`.
    exchange_rate: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    remittance_amount: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    currency: Mapped[str] = mapped_column(String(16))
    # The method's `*_info` object as JSON, encrypted (bank numbers, wallet addresses, names).
    payout_details_encrypted: Mapped[str] = mapped_column(Text)
    client_remark: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="processing")
    review_item_id: Mapped[int | None] = mapped_column(ForeignKey("review_items.id"))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()

    trading_account = relationship("TradingAccount", lazy="joined")
    channel = relationship("WithdrawalChannel", lazy="joined")
    # The admin's remark lives on the review item (the seed's `remark`).
    review_item = relationship("ReviewItem", lazy="joined")

    __table_args__ = (
        Index("ix_withdrawals_user", "user_id", "created_at"),
        Index("ix_withdrawals_status", "status", "created_at"),
        # The reports' time range and order (admin scope has no other filter).
        Index("ix_withdrawals_created", "created_at", "id"),
    )
