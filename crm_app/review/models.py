"""The review queue: one table for every kind of item a person must approve."""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

REVIEW_TYPES = ("kyc", "account_application", "deposit", "withdrawal", "transfer")
REVIEW_STATUSES = ("pending", "auditing", "approved", "disapproved")


class ReviewItem(db.Model):
    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The object under review: its table-level kind, id and human reference.
    object_id: Mapped[int] = mapped_column()
    object_ref: Mapped[str] = mapped_column(String(64), default="")
    auditor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    remark: Mapped[str] = mapped_column(Text, default="")
    # Why the effect of an approval failed (the item stays `auditing` and may be retried).
    last_error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()

    user = relationship("User", foreign_keys=[user_id], lazy="joined")
    auditor = relationship("User", foreign_keys=[auditor_id], lazy="joined")

    __table_args__ = (
        Index("ix_review_items_queue", "type", "status", "created_at"),
        Index("ix_review_items_status", "status", "created_at"),
        Index("ix_review_items_object", "type", "object_id"),
        Index("ix_review_items_user", "user_id", "created_at"),
    )
