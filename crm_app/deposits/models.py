"""Deposits: a draft the client pays, a receipt, a review, a credit on the trading account."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

# draft: waiting for the client's payment and receipt; expired: never submitted;
# auditing: receipt in, waiting for review; processing: approved, credit in flight;
# approved: credited; disapproved: rejected; failed: the credit was refused.
DEPOSIT_STATUSES = ("draft", "expired", "auditing", "processing", "approved", "disapproved", "failed")


class Deposit(db.Model):
    __tablename__ = "deposits"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_number: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    trading_account_id: Mapped[int] = mapped_column(ForeignKey("trading_accounts.id"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("deposit_channels.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    fee: Mapped[Decimal] = mapped_column(Numeric(20, 2), default=Decimal("0"))
    currency: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    client_remark: Mapped[str] = mapped_column(Text, default="")
    remark: Mapped[str] = mapped_column(Text, default="")
    receipt_upload_id: Mapped[str | None] = mapped_column(ForeignKey("uploads.id"))
    review_item_id: Mapped[int | None] = mapped_column(ForeignKey("review_items.id"))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    submitted_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()

    trading_account = relationship("TradingAccount", lazy="joined")
    channel = relationship("DepositChannel", lazy="joined")

    __table_args__ = (
        Index("ix_deposits_user", "user_id", "created_at"),
        Index("ix_deposits_status", "status", "created_at"),
        # The reports' time range and order (admin scope has no other filter).
        Index("ix_deposits_submitted", "submitted_at", "id"),
    )

    @property
    def credited_amount(self):
        return self.amount - self.fee
