"""Balance operations (every money change on a trading server) and idempotency keys."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

OPERATION_KINDS = ("DEP", "WDR", "TRO", "TRI", "REF", "REB")
OPERATION_STATES = ("pending", "done", "failed", "unknown")


class BalanceOperation(db.Model):
    """The intent, committed before the trading server is called.

    Its `key` goes into the deal's comment (`<KIND>#<key>`), so after a lost answer the
    reconciler can ask the server whether the deal exists before anything is retried.
    """

    __tablename__ = "balance_operations"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(24), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    trading_account_id: Mapped[int] = mapped_column(ForeignKey("trading_accounts.id"))
    login: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    ticket: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    # What asked for it (a deposit, a withdrawal, a transfer, a settlement...).
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()

    trading_account = relationship("TradingAccount", lazy="joined")

    __table_args__ = (
        Index("ix_balance_operations_open", "state", "created_at"),
        Index("ix_balance_operations_source", "source_type", "source_id"),
        Index("ix_balance_operations_account", "trading_account_id", "created_at"),
    )

    @property
    def comment(self):
        return f"{self.kind}#{self.key}"


class IdempotencyRecord(db.Model):
    """The first answer to a request sent with an `Idempotency-Key`, per user and route."""

    __tablename__ = "idempotency_records"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    route: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    # in_progress until the first request finishes; then its answer is replayed.
    status: Mapped[str] = mapped_column(String(16), default="in_progress")
    response_status: Mapped[int | None] = mapped_column()
    response_body: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_idempotency_records_created", "created_at"),)
