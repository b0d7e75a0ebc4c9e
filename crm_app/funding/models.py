"""Funding configuration: deposit and withdrawal channels, and clients' payout accounts.

Deposit and withdrawal channels are two tables with the same core columns (a mixin)
rather than one table with a `direction`: a deposit or withdrawal row's foreign key then
points at the right kind of channel by construction, each admin resource lists exactly
its own rows, and the deposit-only columns (`pay_type`, `pay_data`, `pay_url`) do not
sit empty on every withdrawal channel.
"""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

MONEY = Numeric(20, 2)
# Up to 100.0000 (percent of the amount).
PERCENT = Numeric(7, 4)
EXCHANGE_RATE_SOURCES = ("none", "fixed")
PAY_TYPES = ("bank_account", "wallet_address", "redirect", "qr_code")
CRYPTO_NETWORKS = ("TRC20", "ERC20", "BEP20", "BTC")


class ChannelColumns:
    """What deposit and withdrawal channels share.

    Amount limits and `fee_fixed` are in the trading account's currency (the amount the
    client deposits or withdraws). `exchange_rates` (with source `fixed`) maps a payment
    currency to how many of its units one unit of the account currency is worth, kept as
    decimal strings so no float ever touches a rate.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    method: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    icon_url: Mapped[str] = mapped_column(String(1024), default="")
    # Shown to payers: bank details, a wallet address, instructions.
    account_info: Mapped[str] = mapped_column(Text, default="")
    # ISO 3166-1 alpha-2 codes; empty: open to every country.
    allowed_countries: Mapped[list] = mapped_column(JSON, default=list)
    allowed_currencies: Mapped[list] = mapped_column(JSON, default=list)
    min_amount: Mapped[Decimal] = mapped_column(MONEY)
    max_amount: Mapped[Decimal] = mapped_column(MONEY)
    fee_fixed: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    fee_percent: Mapped[Decimal] = mapped_column(PERCENT, default=Decimal("0"))
    exchange_rate_source: Mapped[str] = mapped_column(String(16), default="none")
    exchange_rates: Mapped[dict] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DepositChannel(ChannelColumns, db.Model):
    __tablename__ = "deposit_channels"

    # What a deposit draft answers the payer (#21): how to pay, and where.
    pay_type: Mapped[str] = mapped_column(String(32), default="bank_account")
    pay_data: Mapped[dict] = mapped_column(JSON, default=dict)
    pay_url: Mapped[str] = mapped_column(String(1024), default="")

    __table_args__ = (Index("ix_deposit_channels_enabled", "enabled", "sort_order"),)


class WithdrawalChannel(ChannelColumns, db.Model):
    __tablename__ = "withdrawal_channels"

    __table_args__ = (Index("ix_withdrawal_channels_enabled", "enabled", "sort_order"),)


class PaymentAccount(db.Model):
    """A client's payout account (#31-#34): a bank account, a wire beneficiary or a wallet.

    The account number and the wallet address are encrypted at rest (see
    `crm_app.funding.services.SECRET_PURPOSE`); the other details are plain. At most one
    default per user and method, enforced by a partial unique index.
    """

    __tablename__ = "payment_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    payment_method: Mapped[str] = mapped_column(String(32))
    is_default: Mapped[bool] = mapped_column(default=False)
    account_holder_name: Mapped[str] = mapped_column(String(200), default="")
    bank_country: Mapped[str] = mapped_column(String(2), default="")
    bank_name: Mapped[str] = mapped_column(String(128), default="")
    branch_name: Mapped[str] = mapped_column(String(128), default="")
    bsc_code: Mapped[str] = mapped_column(String(32), default="")
    swift_code: Mapped[str] = mapped_column(String(11), default="")
    beneficiary_address: Mapped[str] = mapped_column(String(255), default="")
    bank_no_encrypted: Mapped[str | None] = mapped_column(Text)
    network: Mapped[str] = mapped_column(String(16), default="")
    wallet_address_encrypted: Mapped[str | None] = mapped_column(Text)
    remark: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_payment_accounts_user", "user_id", "payment_method", "created_at"),
        Index(
            "uq_payment_accounts_one_default",
            "user_id",
            "payment_method",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
    )
