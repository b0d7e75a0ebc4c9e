"""Internal transfers between two trading accounts of one client."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

# auditing: money taken off the source, waiting for review; processing: a balance
# operation is in flight; approved: the target has it; disapproved: rejected and
# refunded; failed: the source could not pay, or the target failed and was refunded.
TRANSFER_STATUSES = ("processing", "auditing", "approved", "disapproved", "failed")


class Transfer(db.Model):
    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_number: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    source_account_id: Mapped[int] = mapped_column(ForeignKey("trading_accounts.id"))
    target_account_id: Mapped[int] = mapped_column(ForeignKey("trading_accounts.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    currency: Mapped[str] = mapped_column(String(8))
    remark: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="processing")
    needs_review: Mapped[bool] = mapped_column(default=False)
    review_item_id: Mapped[int | None] = mapped_column(ForeignKey("review_items.id"))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()

    source_account = relationship("TradingAccount", foreign_keys=[source_account_id], lazy="joined")
    target_account = relationship("TradingAccount", foreign_keys=[target_account_id], lazy="joined")

    __table_args__ = (
        Index("ix_transfers_user", "user_id", "created_at"),
        Index("ix_transfers_created", "created_at"),
    )
