"""Trading servers, platforms, account types, trading accounts and live-account applications."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

PLATFORMS = ("MT4", "MT5")
FUND_DIRECTIONS = ("normal", "deposit_only", "withdrawal_only")
MONEY = Numeric(20, 2)


class TradingServer(db.Model):
    __tablename__ = "trading_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    platform: Mapped[str] = mapped_column(String(8))
    is_demo: Mapped[bool] = mapped_column(default=False)
    connector: Mapped[str] = mapped_column(String(32), default="mt5_webapi")
    base_url: Mapped[str] = mapped_column(String(255))
    manager_login: Mapped[int] = mapped_column()
    manager_password_encrypted: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Logins the CRM hands out on this server: the next one, and the last allowed.
    next_login: Mapped[int] = mapped_column()
    last_login: Mapped[int] = mapped_column()
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def server_type(self):
        """The seed's `server_type`, e.g. `MT5-Live`."""
        return f"{self.platform}-{'Demo' if self.is_demo else 'Live'}"


class Platform(db.Model):
    """A trading platform's download links, shown in the client and IB portals."""

    __tablename__ = "platforms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    icon_url: Mapped[str] = mapped_column(String(1024), default="")
    logo_url: Mapped[str] = mapped_column(String(1024), default="")
    windows_download_url: Mapped[str] = mapped_column(String(1024), default="")
    macos_download_url: Mapped[str] = mapped_column(String(1024), default="")
    ios_download_url: Mapped[str] = mapped_column(String(1024), default="")
    android_download_url: Mapped[str] = mapped_column(String(1024), default="")
    sort_order: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AccountType(db.Model):
    __tablename__ = "trading_account_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    server_id: Mapped[int] = mapped_column(ForeignKey("trading_servers.id"))
    mt_group: Mapped[str] = mapped_column(String(64))
    leverage_options: Mapped[list] = mapped_column(JSON, default=list)
    fund_direction: Mapped[str] = mapped_column(String(16), default="normal")
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    # Which user types may open it: ["client", "ib"].
    allowed_user_types: Mapped[list] = mapped_column(JSON, default=lambda: ["client", "ib"])
    enabled: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    server: Mapped[TradingServer] = relationship(lazy="joined")

    @property
    def platform(self):
        return self.server.platform

    @property
    def is_demo(self):
        return self.server.is_demo


class TradingAccount(db.Model):
    __tablename__ = "trading_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    server_id: Mapped[int] = mapped_column(ForeignKey("trading_servers.id"))
    account_type_id: Mapped[int] = mapped_column(ForeignKey("trading_account_types.id"))
    login: Mapped[int] = mapped_column()
    leverage: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    is_demo: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Last figures read from the trading server, with when they were read.
    balance: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    credit: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    equity: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    margin: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    margin_free: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    margin_level: Mapped[Decimal] = mapped_column(Numeric(20, 4), default=Decimal("0"))
    figures_read_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    server: Mapped[TradingServer] = relationship(lazy="joined")
    account_type: Mapped[AccountType] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("server_id", "login", name="uq_trading_accounts_server_login"),
        Index("ix_trading_accounts_user", "user_id", "is_demo", "id"),
    )


APPLICATION_STATUSES = ("pending", "creating", "approved", "rejected")


class AccountApplication(db.Model):
    """A request for an account. Live ones wait for review; demo ones are created at once.

    The chosen passwords are kept encrypted only until the account exists, then erased.
    `creation_login` is the login reserved for the account before the server is called,
    so a retry after a crash finds the account instead of opening a second one.
    """

    __tablename__ = "account_applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    account_type_id: Mapped[int] = mapped_column(ForeignKey("trading_account_types.id"))
    server_id: Mapped[int] = mapped_column(ForeignKey("trading_servers.id"))
    leverage: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    is_demo: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    main_password_encrypted: Mapped[str | None] = mapped_column(Text)
    investor_password_encrypted: Mapped[str | None] = mapped_column(Text)
    creation_login: Mapped[int | None] = mapped_column()
    trading_account_id: Mapped[int | None] = mapped_column(ForeignKey("trading_accounts.id"))
    remark: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account_type: Mapped[AccountType] = relationship(lazy="joined")

    __table_args__ = (Index("ix_account_applications_user", "user_id", "created_at"),)
