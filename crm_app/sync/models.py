"""Trading data synced from the trading servers, and each server's sync state.

Every synced row is keyed by (server_id, ticket) as the server numbers it, so a row read
twice is upserted, never doubled. `trading_account_id` is the CRM account of the row's
login on that server (set when the row is written; NULL only if that account is deleted).
Times are naive UTC, like everywhere in this project.

What the reports read, and the indexes that serve them (time indexes end in `id`, so a
keyset page `ORDER BY <time> DESC, id DESC` reads the index in order):

- `closed_positions` (#37/#38): one row per closing deal, i.e. per closed position or per
  partial close; filters by account (`trading_account_id` + open or close time), by login
  (`server_id, login, close_time`), by symbol + time, by time alone (admin), by position.
- `open_positions` (#39/#40) and `pending_orders` (#41/#42): the current snapshot; rows
  the server no longer has are deleted by the next sync.
- `synced_deals`: every deal (trades, balance, credit...), the source of closed positions
  and of rebates (one per closing deal).
- `synced_history_orders`: the server's order history (MT5 keeps opening and closing
  orders apart); closed positions take their SL/TP from the opening order.
"""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

MONEY = Numeric(20, 2)
PRICE = Numeric(24, 8)
LOTS = Numeric(20, 8)
# Millions of rows: 64-bit ids (SQLite numbers rows only through INTEGER PRIMARY KEY).
ROW_ID = BigInteger().with_variant(Integer, "sqlite")
CLOSING_ENTRIES = ("out", "inout", "out_by")


def _server_fk():
    return ForeignKey("trading_servers.id", ondelete="CASCADE")


def _account_fk():
    return ForeignKey("trading_accounts.id", ondelete="SET NULL")


class SyncedDeal(db.Model):
    __tablename__ = "synced_deals"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    server_id: Mapped[int] = mapped_column(_server_fk())
    ticket: Mapped[int] = mapped_column(BigInteger)
    login: Mapped[int] = mapped_column(BigInteger)
    trading_account_id: Mapped[int | None] = mapped_column(_account_fk())
    time: Mapped[datetime] = mapped_column()
    action: Mapped[str] = mapped_column(String(32))  # buy, sell, balance, credit, commission...
    entry: Mapped[str] = mapped_column(String(8))  # in, out, inout, out_by, none
    symbol: Mapped[str] = mapped_column(String(32), default="")
    volume: Mapped[Decimal] = mapped_column(LOTS, default=Decimal("0"))
    price: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    profit: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    commission: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    swap: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    position_id: Mapped[int] = mapped_column(BigInteger, default=0)
    order_ticket: Mapped[int] = mapped_column(BigInteger, default=0)
    comment: Mapped[str] = mapped_column(String(64), default="")
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("server_id", "ticket", name="uq_synced_deals_server_ticket"),
        Index("ix_synced_deals_account_time", "trading_account_id", "time", "id"),
        Index("ix_synced_deals_login_time", "server_id", "login", "time"),
        Index("ix_synced_deals_server_time", "server_id", "time"),
        Index("ix_synced_deals_position", "server_id", "position_id"),
    )


class SyncedHistoryOrder(db.Model):
    """A finished order (filled, canceled, expired...) from the server's order history."""

    __tablename__ = "synced_history_orders"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    server_id: Mapped[int] = mapped_column(_server_fk())
    ticket: Mapped[int] = mapped_column(BigInteger)
    login: Mapped[int] = mapped_column(BigInteger)
    trading_account_id: Mapped[int | None] = mapped_column(_account_fk())
    symbol: Mapped[str] = mapped_column(String(32), default="")
    type: Mapped[str] = mapped_column(String(24))  # buy, sell, buy_limit, ..., close_by
    state: Mapped[str] = mapped_column(String(24))  # filled, canceled, expired, ...
    volume: Mapped[Decimal] = mapped_column(LOTS, default=Decimal("0"))
    price: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    sl: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    tp: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    setup_time: Mapped[datetime] = mapped_column()
    done_time: Mapped[datetime] = mapped_column()
    position_id: Mapped[int] = mapped_column(BigInteger, default=0)
    comment: Mapped[str] = mapped_column(String(64), default="")
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("server_id", "ticket", name="uq_synced_history_orders_server_ticket"),
        Index("ix_synced_history_orders_account_done", "trading_account_id", "done_time", "id"),
        Index("ix_synced_history_orders_login_done", "server_id", "login", "done_time"),
        Index("ix_synced_history_orders_position", "server_id", "position_id"),
    )


class ClosedPosition(db.Model):
    """One closing deal of a position, with what it closed: a partial close is a row of its own.

    Built from the position's deals: open price is the volume-weighted price of the opening
    deals still open when this deal closed, open time the first opening deal's; commission is
    the closing deal's plus this close's share of the opening commission (shares of a fully
    closed position add up to the opening commission exactly); profit and swap are the
    closing deal's. `open_price`/`open_time` are NULL when the opening deal is not on record.
    """

    __tablename__ = "closed_positions"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    server_id: Mapped[int] = mapped_column(_server_fk())
    close_deal_ticket: Mapped[int] = mapped_column(BigInteger)
    close_order: Mapped[int] = mapped_column(BigInteger, default=0)
    position_id: Mapped[int] = mapped_column(BigInteger)
    login: Mapped[int] = mapped_column(BigInteger)
    trading_account_id: Mapped[int | None] = mapped_column(_account_fk())
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))  # buy, sell: the position's direction
    volume: Mapped[Decimal] = mapped_column(LOTS)  # lots closed by this deal
    open_price: Mapped[Decimal | None] = mapped_column(PRICE)
    open_time: Mapped[datetime | None] = mapped_column()
    close_price: Mapped[Decimal] = mapped_column(PRICE)
    close_time: Mapped[datetime] = mapped_column()
    profit: Mapped[Decimal] = mapped_column(MONEY)
    commission: Mapped[Decimal] = mapped_column(MONEY)
    swap: Mapped[Decimal] = mapped_column(MONEY)
    sl: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    tp: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    open_deal_tickets: Mapped[list] = mapped_column(JSON, default=list)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("server_id", "close_deal_ticket", name="uq_closed_positions_server_close_deal"),
        Index("ix_closed_positions_account_close", "trading_account_id", "close_time", "id"),
        Index("ix_closed_positions_account_open", "trading_account_id", "open_time", "id"),
        Index("ix_closed_positions_close", "close_time", "id"),
        # The exact total of an admin's closed-orders report over a time range, read
        # from the index alone (no heap pages).
        Index("ix_closed_positions_close_account", "close_time", "trading_account_id"),
        Index("ix_closed_positions_open", "open_time", "id"),
        Index("ix_closed_positions_login_close", "server_id", "login", "close_time"),
        Index("ix_closed_positions_symbol_close", "symbol", "close_time"),
        Index("ix_closed_positions_symbol_open", "symbol", "open_time"),
        Index("ix_closed_positions_position", "server_id", "position_id"),
    )


class OpenPosition(db.Model):
    """An open position as the server last showed it (deleted once it is closed there)."""

    __tablename__ = "open_positions"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    server_id: Mapped[int] = mapped_column(_server_fk())
    ticket: Mapped[int] = mapped_column(BigInteger)  # the position id
    login: Mapped[int] = mapped_column(BigInteger)
    trading_account_id: Mapped[int | None] = mapped_column(_account_fk())
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    volume: Mapped[Decimal] = mapped_column(LOTS)
    open_price: Mapped[Decimal] = mapped_column(PRICE)
    open_time: Mapped[datetime] = mapped_column()
    current_price: Mapped[Decimal] = mapped_column(PRICE)
    sl: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    tp: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    profit: Mapped[Decimal] = mapped_column(MONEY)
    swap: Mapped[Decimal] = mapped_column(MONEY)
    commission: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("server_id", "ticket", name="uq_open_positions_server_ticket"),
        Index("ix_open_positions_login", "server_id", "login"),
        Index("ix_open_positions_account_open", "trading_account_id", "open_time", "id"),
        Index("ix_open_positions_open", "open_time", "id"),
        Index("ix_open_positions_symbol_open", "symbol", "open_time"),
    )


class PendingOrder(db.Model):
    """A working pending order as the server last showed it (deleted once filled or canceled there)."""

    __tablename__ = "pending_orders"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    server_id: Mapped[int] = mapped_column(_server_fk())
    ticket: Mapped[int] = mapped_column(BigInteger)
    login: Mapped[int] = mapped_column(BigInteger)
    trading_account_id: Mapped[int | None] = mapped_column(_account_fk())
    symbol: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(24))  # buy_limit, sell_limit, buy_stop, ..., sell_stop_limit
    volume: Mapped[Decimal] = mapped_column(LOTS)
    price: Mapped[Decimal] = mapped_column(PRICE)
    stop_limit_price: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    sl: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    tp: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0"))
    setup_time: Mapped[datetime] = mapped_column()
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("server_id", "ticket", name="uq_pending_orders_server_ticket"),
        Index("ix_pending_orders_login", "server_id", "login"),
        Index("ix_pending_orders_account_setup", "trading_account_id", "setup_time", "id"),
        Index("ix_pending_orders_setup", "setup_time", "id"),
        Index("ix_pending_orders_symbol_setup", "symbol", "setup_time"),
    )


SYNC_STATUSES = ("running", "succeeded", "failed")


class SyncState(db.Model):
    """One row per trading server: how far its history is synced, and who is syncing it now.

    `watermark` is the server time (UTC) up to which every deal and history order of the
    server's CRM accounts is stored; it moves in the same transaction as each window's rows.
    The lease (`lease_owner`, `lease_expires_at`) lets one run at a time work on a server;
    a run that died leaves a lease that simply expires.
    """

    __tablename__ = "sync_states"

    server_id: Mapped[int] = mapped_column(_server_fk(), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column()
    running: Mapped[bool] = mapped_column(default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_started_at: Mapped[datetime | None] = mapped_column()
    last_finished_at: Mapped[datetime | None] = mapped_column()
    last_succeeded_at: Mapped[datetime | None] = mapped_column()
    last_counts: Mapped[dict] = mapped_column(JSON, default=dict)
    runs: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncedAccount(db.Model):
    """A trading account whose history has been pulled from the start.

    An account the sync has not met yet (new since the last run, or adopted long after the
    server opened it) is first synced from before its creation, not just from the watermark.
    """

    __tablename__ = "synced_accounts"

    trading_account_id: Mapped[int] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    server_id: Mapped[int] = mapped_column(_server_fk())
    login: Mapped[int] = mapped_column(BigInteger)
    history_from: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
