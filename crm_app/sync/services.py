"""Trading-server sync: deals, order history, closed positions, open positions, pending
orders and account figures, pulled through the gateway into our tables.

One run of `sync_server`:

1. takes the server's lease (a committed `UPDATE ... WHERE the lease is free or expired`),
   so one run per server works at a time; a second one answers "already running";
2. reads the server's clock: the run syncs up to `server_time()` (the simulator's clock,
   like a real server's, need not agree with ours);
3. accounts the sync has never met are first pulled from a day before their creation;
4. pulls history from `watermark - overlap` to that time, window by window, logins in
   batches; each window's end is included (a deal done in the very second the server's
   clock was read is in this run, not the next; a deal on a boundary read twice is one row):
   history orders and deals are upserted by (server, ticket), the closed positions
   of every position touched are derived again from its deals (upserted by closing deal),
   and the watermark moves to the window's end in the window's last transaction;
5. replaces the snapshot of open positions and pending orders of those logins (what the
   server no longer lists is deleted);
6. refreshes the cached figures of the accounts that can have changed.

Every write is an upsert keyed by the server's tickets, so a window read twice (the
overlap, a retried run, a run that died half way) changes nothing; the watermark only moves
after a window is stored, so a run that fails or dies resumes where the last one stopped.
Reads that fail transiently are retried a few times (reads are safe to repeat); a
`TradingError` that persists ends the run as `failed` with the reason, watermark kept.
"""

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from flask import current_app
from sqlalchemy import JSON, String, cast, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from crm_app.common.errors import NotFound, ValidationFailed
from crm_app.common.timeutil import utcnow
from crm_app.config import env_int
from crm_app.extensions import db
from crm_app.integrations.trading import gateway as gw
from crm_app.sync.models import (
    CLOSING_ENTRIES,
    ClosedPosition,
    OpenPosition,
    PendingOrder,
    SyncedAccount,
    SyncedDeal,
    SyncedHistoryOrder,
    SyncState,
)
from crm_app.trading.models import TradingAccount, TradingServer

log = logging.getLogger(__name__)

DEFAULTS = {
    # Size of the time slices history is pulled and committed in.
    "SYNC_WINDOW_SECONDS": 6 * 3600,
    # How far before the watermark each run starts again: deals stamped just before a
    # run's end but stored on the server a moment later are not missed.
    "SYNC_OVERLAP_SECONDS": 600,
    # Logins per request (the MT5 adapter sends 100 per call; one batch is one call).
    "SYNC_LOGIN_BATCH": 100,
    # A run renews its lease at every batch; one that died frees the server after this.
    "SYNC_LEASE_SECONDS": 300,
    "SYNC_RETRY_ATTEMPTS": 4,
    "SYNC_RETRY_DELAY_MS": 200,
    # A new account's history is pulled from this long before the account was created.
    "SYNC_BACKFILL_MARGIN_SECONDS": 86400,
    # Figures of quiet accounts (no deal, no position) are still re-read this often.
    "SYNC_FIGURES_MAX_AGE_SECONDS": 3600,
}
TRADE_ACTIONS = ("buy", "sell")
CENT = Decimal("0.01")
PRICE_STEP = Decimal("0.00000001")
ZERO = Decimal("0")
FIGURES_BATCH = 50


def setting(name):
    """A sync setting: the app config (tests), else the environment, else the default."""
    value = current_app.config.get(name)
    return int(value) if value is not None else env_int(name, DEFAULTS[name])


class LeaseLost(Exception):
    """Another run took the server over (our lease had expired): stop without writing."""


@dataclass
class SyncResult:
    server_id: int
    status: str  # succeeded, failed, already_running
    counts: dict = field(default_factory=dict)
    error: str | None = None
    watermark: datetime | None = None

    def as_dict(self):
        return {
            "server_id": self.server_id,
            "status": self.status,
            "counts": self.counts,
            "error": self.error,
            "watermark": self.watermark.isoformat() if self.watermark else None,
        }


# Entry points ---------------------------------------------------------------------------------


def sync_server(server_id, owner=None):
    """One sync run of a trading server (see the module docstring). Safe to call at any time."""
    if db.session.get(TradingServer, server_id) is None:
        raise NotFound()
    owner = owner or new_lease_owner()
    if not acquire_lease(server_id, owner):
        log.info("sync of server %s: already running", server_id)
        return SyncResult(server_id, "already_running")
    run = SyncRun(server_id, owner)
    try:
        run.execute()
    except LeaseLost:
        db.session.rollback()
        log.warning("sync of server %s: lease lost to another run; stopped", server_id)
        return SyncResult(server_id, "failed", run.counts, "lease lost to another run")
    except gw.TradingError as exc:
        db.session.rollback()
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning("sync of server %s failed: %s", server_id, reason)
        state = finish_run(server_id, owner, "failed", run.counts, reason)
        return SyncResult(server_id, "failed", run.counts, reason, state.watermark if state else None)
    except BaseException as exc:
        db.session.rollback()
        finish_run(server_id, owner, "failed", run.counts, f"internal error: {exc!r}"[:2000])
        raise
    state = finish_run(server_id, owner, "succeeded", run.counts, run.warning)
    log.info("sync of server %s done: %s", server_id, run.counts)
    return SyncResult(server_id, "succeeded", run.counts, run.warning, state.watermark if state else None)


def sync_all():
    """Sync every enabled server, one after the other (the worker runs one job per server instead)."""
    results = []
    for server_id in enabled_server_ids():
        try:
            results.append(sync_server(server_id))
        except Exception as exc:
            log.exception("sync of server %s crashed", server_id)
            results.append(SyncResult(server_id, "failed", error=repr(exc)))
    return results


def enabled_server_ids():
    ids = db.session.scalars(
        select(TradingServer.id).where(TradingServer.enabled.is_(True)).order_by(TradingServer.id)
    ).all()
    db.session.commit()
    return ids


def request_sync(server_id=None):
    """`POST /admin/sync`: queue a sync of one server (or of every enabled one); answers the jobs."""
    from workers.sync import enqueue_server_sync

    if server_id is not None:
        server = db.session.get(TradingServer, server_id)
        if server is None:
            raise NotFound()
        if not server.enabled:
            raise ValidationFailed(code="trading_server_disabled", errors={"server_id": ["This server is disabled."]})
        server_ids = [server_id]
    else:
        server_ids = enabled_server_ids()
    db.session.commit()
    jobs = [enqueue_server_sync(sid) for sid in server_ids]
    return {"jobs": jobs, "servers": sync_states(server_ids)}


def sync_states(server_ids=None):
    """Each server's sync state (servers never synced included), for the back office."""
    query = (
        select(TradingServer, SyncState)
        .outerjoin(SyncState, SyncState.server_id == TradingServer.id)
        .order_by(TradingServer.id)
    )
    if server_ids is not None:
        query = query.where(TradingServer.id.in_(server_ids))
    now = utcnow()
    answer = []
    for server, state in db.session.execute(query).all():
        running = bool(state and state.running and state.lease_expires_at and state.lease_expires_at > now)
        answer.append(
            {
                "server_id": server.id,
                "server_name": server.name,
                "enabled": server.enabled,
                "watermark": state.watermark if state else None,
                "running": running,
                "lease_owner": state.lease_owner if running else None,
                "lease_expires_at": state.lease_expires_at if running else None,
                "last_status": state.last_status if state else None,
                "last_error": state.last_error if state else None,
                "last_started_at": state.last_started_at if state else None,
                "last_finished_at": state.last_finished_at if state else None,
                "last_succeeded_at": state.last_succeeded_at if state else None,
                "last_counts": (state.last_counts or {}) if state else {},
                "runs": state.runs if state else 0,
            }
        )
    return answer


# The lease -------------------------------------------------------------------------------------


def new_lease_owner():
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _insert(model):
    """INSERT for the bound dialect, with its ON CONFLICT clause (PostgreSQL, or SQLite in a pinch)."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model.__table__)


def acquire_lease(server_id, owner):
    """Take the server for this run if no live run holds it; committed at once."""
    now = utcnow()
    db.session.execute(
        _insert(SyncState)
        .values(server_id=server_id, running=False, last_counts={}, runs=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["server_id"])
    )
    taken = db.session.execute(
        update(SyncState)
        .where(
            SyncState.server_id == server_id,
            or_(
                SyncState.running.is_(False),
                SyncState.lease_expires_at.is_(None),
                SyncState.lease_expires_at < now,
            ),
        )
        .values(
            running=True,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=setting("SYNC_LEASE_SECONDS")),
            last_started_at=now,
            last_status="running",
            runs=SyncState.runs + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return taken == 1


def hold_lease(server_id, owner, **values):
    """Renew the lease (and write `values`) in the current transaction; LeaseLost if it is not ours."""
    now = utcnow()
    held = db.session.execute(
        update(SyncState)
        .where(SyncState.server_id == server_id, SyncState.lease_owner == owner)
        .values(lease_expires_at=now + timedelta(seconds=setting("SYNC_LEASE_SECONDS")), updated_at=now, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if held != 1:
        raise LeaseLost(server_id)


def finish_run(server_id, owner, status, counts, error):
    """Record how the run ended and free the server (only if the lease is still ours)."""
    now = utcnow()
    values = {
        "running": False,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_status": status,
        "last_error": error,
        "last_finished_at": now,
        "last_counts": dict(counts),
        "updated_at": now,
    }
    if status == "succeeded":
        values["last_succeeded_at"] = now
    db.session.execute(
        update(SyncState)
        .where(SyncState.server_id == server_id, SyncState.lease_owner == owner)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    state = db.session.get(SyncState, server_id, populate_existing=True)
    db.session.commit()
    return state


# Upserts -------------------------------------------------------------------------------------------


def upsert(model, rows, keys):
    """INSERT ... ON CONFLICT (keys) DO UPDATE, rewriting a row only when a value changed."""
    if not rows:
        return
    by_key = {tuple(row[k] for k in keys): row for row in rows}  # one statement may not touch a row twice
    table = model.__table__
    statement = _insert(model)
    columns = [c for c in rows[0] if c not in keys and c not in ("id", "synced_at")]

    def differs(name):
        column, proposed = table.c[name], statement.excluded[name]
        if isinstance(column.type, JSON):  # PostgreSQL's json has no equality operator
            return cast(column, String).is_distinct_from(cast(proposed, String))
        return column.is_distinct_from(proposed)

    statement = statement.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={name: statement.excluded[name] for name in [*columns, "synced_at"] if name in rows[0]},
        where=or_(*[differs(name) for name in columns]),
    )
    db.session.execute(statement, list(by_key.values()))


# Closed positions from deals ---------------------------------------------------------------------------


def _money(value):
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def closed_positions_of(deals):
    """The closes of one position, from all its deals: one dict per closing deal.

    Walks the deals in (time, ticket) order keeping what is open: its volume, its
    volume-weighted price, its first opening time and the opening commission not yet
    charged to a close. A close of part of the volume takes that part's share of the opening
    commission (rounded to the cent; the close that empties the position takes what is
    left, so the shares add up to the opening commission exactly). An `inout` deal
    (netting reversal) closes what was open and opens the rest the other way.
    """
    rows = []
    opened = _OpenLegs()
    for deal in sorted(deals, key=lambda d: (d.time, d.ticket)):
        if deal.action not in TRADE_ACTIONS or not deal.volume or deal.volume <= 0:
            continue
        if deal.entry == "in":
            opened.add(deal, deal.volume, deal.commission)
            continue
        if deal.entry not in CLOSING_ENTRIES:
            continue
        if deal.entry == "inout" and ZERO < opened.volume < deal.volume:
            closing = opened.volume
        else:
            closing = deal.volume
        close_commission = deal.commission
        if closing < deal.volume:  # the inout deal's commission is shared with the reopening part
            close_commission = _money(deal.commission * closing / deal.volume)
        (side, open_price, open_time, open_order, open_tickets), share = opened.take(closing)
        rows.append(
            {
                "close_deal_ticket": deal.ticket,
                "close_order": deal.order_ticket,
                "position_id": deal.position_id,
                "login": deal.login,
                "symbol": deal.symbol,
                # A close sells what a buy position holds: without its opening deal, the close tells.
                "side": side or ("sell" if deal.action == "buy" else "buy"),
                "volume": closing,
                "open_price": open_price,
                "open_time": open_time,
                "open_order": open_order,
                "close_price": deal.price,
                "close_time": deal.time,
                "profit": _money(deal.profit),
                "commission": _money(close_commission + share),
                "swap": _money(deal.swap),
                "open_deal_tickets": open_tickets,
            }
        )
        if closing < deal.volume:
            opened.add(deal, deal.volume - closing, deal.commission - close_commission)
    return rows


class _OpenLegs:
    """What is open of a position while its deals are replayed."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.volume = ZERO
        self.price = None
        self.time = None
        self.side = None
        self.order = None
        self.commission = ZERO
        self.tickets = []

    def add(self, deal, volume, commission):
        if self.volume <= 0:
            self.reset()
            self.side, self.time, self.order = deal.action, deal.time, deal.order_ticket
        total = self.volume + volume
        previous = self.price if self.price is not None else ZERO
        self.price = ((previous * self.volume + deal.price * volume) / total).quantize(PRICE_STEP, ROUND_HALF_UP)
        self.volume = total
        self.commission += commission
        self.tickets.append(deal.ticket)

    def take(self, volume):
        """Close `volume`: answers what was open (side, price, time, order, deal tickets) and
        this close's share of the opening commission."""
        held = (self.side, self.price, self.time, self.order, list(self.tickets))
        if self.volume <= 0:
            return held, ZERO
        if volume >= self.volume:
            share = _money(self.commission)
            self.reset()
            return held, share
        share = _money(self.commission * volume / self.volume)
        self.commission -= share
        self.volume -= volume
        return held, share


# One run --------------------------------------------------------------------------------------------


def as_naive_utc(moment):
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def chunks(items, size):
    items = list(items)
    for index in range(0, len(items), size):
        yield items[index : index + size]


class SyncRun:
    def __init__(self, server_id, owner):
        self.server_id = server_id
        self.owner = owner
        self.counts = dict.fromkeys(
            (
                "windows",
                "deals",
                "history_orders",
                "closed_positions",
                "positions",
                "pending_orders",
                "backfilled_accounts",
                "figures_refreshed",
                "figures_failed",
            ),
            0,
        )
        self.warning = None
        self.active_logins = set()  # logins whose figures may have moved during this run
        self.renewed_at = time.monotonic()

    # The lease, renewed with every commit --------------------------------------------------------

    def renew(self, **values):
        hold_lease(self.server_id, self.owner, **values)
        self.renewed_at = time.monotonic()

    def keep_lease(self):
        """Between commits (long series of calls), renew the lease before it can run out."""
        if time.monotonic() - self.renewed_at > setting("SYNC_LEASE_SECONDS") / 3:
            self.renew()
            db.session.commit()

    # Reading the server, with retries on transient failures ------------------------------------

    def read(self, call):
        attempts = max(1, setting("SYNC_RETRY_ATTEMPTS"))
        delay = setting("SYNC_RETRY_DELAY_MS") / 1000
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except gw.TransientError as exc:
                if attempt == attempts:
                    raise
                log.info("sync of server %s: transient failure (%s), attempt %s", self.server_id, exc, attempt)
                time.sleep(delay * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    # The run ---------------------------------------------------------------------------------

    def execute(self):
        from crm_app.trading.services import gateway_for

        server = db.session.get(TradingServer, self.server_id)
        self.gateway = gateway_for(server)
        accounts = db.session.execute(
            select(TradingAccount.id, TradingAccount.login, TradingAccount.created_at).where(
                TradingAccount.server_id == self.server_id
            )
        ).all()
        self.account_ids = {row.login: row.id for row in accounts}
        marked = set(
            db.session.scalars(
                select(SyncedAccount.trading_account_id).where(SyncedAccount.server_id == self.server_id)
            )
        )
        watermark = db.session.scalar(select(SyncState.watermark).where(SyncState.server_id == self.server_id))
        db.session.commit()  # no transaction stays open while the server is called

        end = as_naive_utc(self.read(self.gateway.server_time))
        margin = timedelta(seconds=setting("SYNC_BACKFILL_MARGIN_SECONDS"))
        new = [row for row in accounts if row.id not in marked]
        if watermark is None:
            start = min((row.created_at for row in accounts), default=end) - margin
            self.mark_synced(new, start)  # the first pass below covers their whole history
        else:
            start = watermark - timedelta(seconds=setting("SYNC_OVERLAP_SECONDS"))
            if new:
                backfill_from = min(row.created_at for row in new) - margin
                self.pull_history([row.login for row in new], backfill_from, start, advance=False)
                self.mark_synced(new, backfill_from)
                self.counts["backfilled_accounts"] = len(new)
        self.pull_history(sorted(self.account_ids), start, end, advance=True, watermark=watermark)
        self.refresh_snapshots(sorted(self.account_ids))
        self.refresh_figures(accounts)

    def mark_synced(self, accounts, history_from):
        for batch in chunks(accounts, 1000):
            db.session.execute(
                _insert(SyncedAccount)
                .values(
                    [
                        {
                            "trading_account_id": row.id,
                            "server_id": self.server_id,
                            "login": row.login,
                            "history_from": history_from,
                            "created_at": utcnow(),
                        }
                        for row in batch
                    ]
                )
                .on_conflict_do_nothing(index_elements=["trading_account_id"])
            )
        self.renew()
        db.session.commit()

    # History ----------------------------------------------------------------------------------

    def pull_history(self, logins, start, end, advance, watermark=None):
        window = timedelta(seconds=max(1, setting("SYNC_WINDOW_SECONDS")))
        batch_size = max(1, setting("SYNC_LOGIN_BATCH"))
        if not logins:
            if advance and end > (watermark or start):
                self.renew(watermark=end)  # nothing to pull up to now
                db.session.commit()
            return
        window_start = start
        while window_start < end:
            window_end = min(window_start + window, end)
            for batch in chunks(logins, batch_size):
                self.pull_batch(batch, window_start, window_end)
            if advance:
                # Never backwards: a window shorter than the overlap ends before the old watermark.
                watermark = max(watermark, window_end) if watermark else window_end
                self.renew(watermark=watermark)
                db.session.commit()
            self.counts["windows"] += 1
            window_start = window_end

    def pull_batch(self, logins, start, end):
        orders = self.read(lambda: list(self.gateway.iter_closed_orders(logins, start, end)))
        deals = self.read(lambda: list(self.gateway.iter_deals(logins, start, end)))
        now = utcnow()
        upsert(SyncedHistoryOrder, [self.history_order_row(order, now) for order in orders], ("server_id", "ticket"))
        upsert(SyncedDeal, [self.deal_row(deal, now) for deal in deals], ("server_id", "ticket"))
        positions = {d.position_id for d in deals if d.action in TRADE_ACTIONS and d.position_id}
        self.derive_closed_positions(positions, now)
        self.active_logins.update(d.login for d in deals)
        self.counts["deals"] += len(deals)
        self.counts["history_orders"] += len(orders)
        self.renew()
        db.session.commit()

    def deal_row(self, deal, now):
        return {
            "server_id": self.server_id,
            "ticket": deal.ticket,
            "login": deal.login,
            "trading_account_id": self.account_ids.get(deal.login),
            "time": as_naive_utc(deal.time),
            "action": deal.action[:32],
            "entry": deal.entry[:8],
            "symbol": (deal.symbol or "")[:32],
            "volume": deal.volume,
            "price": deal.price,
            "profit": deal.profit,
            "commission": deal.commission,
            "swap": deal.swap,
            "position_id": deal.position_id,
            "order_ticket": deal.order,
            "comment": (deal.comment or "")[:64],
            "synced_at": now,
        }

    def history_order_row(self, order, now):
        extra = order.extra or {}
        return {
            "server_id": self.server_id,
            "ticket": order.ticket,
            "login": order.login,
            "trading_account_id": self.account_ids.get(order.login),
            "symbol": (order.symbol or "")[:32],
            "type": order.type[:24],
            "state": order.state[:24],
            "volume": order.volume,
            "price": order.price,
            "sl": extra.get("sl") or ZERO,
            "tp": extra.get("tp") or ZERO,
            "setup_time": as_naive_utc(order.setup_time),
            "done_time": as_naive_utc(order.done_time),
            "position_id": order.position_id,
            "comment": (extra.get("comment") or "")[:64],
            "synced_at": now,
        }

    def derive_closed_positions(self, position_ids, now):
        """Closed-position rows of these positions, rebuilt from every deal we hold of them."""
        for ids in chunks(sorted(position_ids), 1000):
            deals = db.session.scalars(
                select(SyncedDeal).where(SyncedDeal.server_id == self.server_id, SyncedDeal.position_id.in_(ids))
            ).all()
            by_position = {}
            for deal in deals:
                by_position.setdefault(deal.position_id, []).append(deal)
            rows = [row for position_deals in by_position.values() for row in closed_positions_of(position_deals)]
            if not rows:
                continue
            opening_orders = {row["open_order"] or row["position_id"] for row in rows}
            stops = {
                order.ticket: (order.sl, order.tp)
                for order in db.session.execute(
                    select(SyncedHistoryOrder.ticket, SyncedHistoryOrder.sl, SyncedHistoryOrder.tp).where(
                        SyncedHistoryOrder.server_id == self.server_id,
                        SyncedHistoryOrder.ticket.in_(opening_orders),
                    )
                )
            }
            for row in rows:
                sl, tp = stops.get(row.pop("open_order") or row["position_id"], (ZERO, ZERO))
                row.update(
                    server_id=self.server_id,
                    trading_account_id=self.account_ids.get(row["login"]),
                    sl=sl,
                    tp=tp,
                    synced_at=now,
                )
            upsert(ClosedPosition, rows, ("server_id", "close_deal_ticket"))
            self.counts["closed_positions"] += len(rows)

    # Snapshots --------------------------------------------------------------------------------

    def refresh_snapshots(self, logins):
        for batch in chunks(logins, max(1, setting("SYNC_LOGIN_BATCH"))):
            positions = self.read(lambda batch=batch: self.gateway.list_positions(batch))
            orders = self.read(lambda batch=batch: self.gateway.list_pending_orders(batch))
            now = utcnow()
            # Accounts that held positions before or hold them now: their equity moves with prices.
            self.active_logins.update(
                db.session.scalars(
                    select(OpenPosition.login)
                    .distinct()
                    .where(OpenPosition.server_id == self.server_id, OpenPosition.login.in_(batch))
                )
            )
            self.active_logins.update(position.login for position in positions)
            self.replace_snapshot(OpenPosition, batch, [self.position_row(p, now) for p in positions])
            self.replace_snapshot(PendingOrder, batch, [self.pending_order_row(o, now) for o in orders])
            self.counts["positions"] += len(positions)
            self.counts["pending_orders"] += len(orders)
            self.renew()
            db.session.commit()
        # Logins that are no longer CRM accounts of this server keep nothing here.
        crm_logins = select(TradingAccount.login).where(TradingAccount.server_id == self.server_id)
        for model in (OpenPosition, PendingOrder):
            db.session.execute(
                delete(model)
                .where(model.server_id == self.server_id, model.login.not_in(crm_logins))
                .execution_options(synchronize_session=False)
            )
        self.renew()
        db.session.commit()

    def replace_snapshot(self, model, logins, rows):
        upsert(model, rows, ("server_id", "ticket"))
        db.session.execute(
            delete(model)
            .where(
                model.server_id == self.server_id,
                model.login.in_(logins),
                model.ticket.not_in([row["ticket"] for row in rows]),
            )
            .execution_options(synchronize_session=False)
        )

    def position_row(self, position, now):
        return {
            "server_id": self.server_id,
            "ticket": position.ticket,
            "login": position.login,
            "trading_account_id": self.account_ids.get(position.login),
            "symbol": position.symbol[:32],
            "side": position.side,
            "volume": position.volume,
            "open_price": position.open_price,
            "open_time": as_naive_utc(position.open_time),
            "current_price": position.current_price,
            "sl": position.sl,
            "tp": position.tp,
            "profit": position.profit,
            "swap": position.swap,
            "commission": position.commission,
            "synced_at": now,
        }

    def pending_order_row(self, order, now):
        return {
            "server_id": self.server_id,
            "ticket": order.ticket,
            "login": order.login,
            "trading_account_id": self.account_ids.get(order.login),
            "symbol": order.symbol[:32],
            "type": order.type[:24],
            "volume": order.volume,
            "price": order.price,
            "stop_limit_price": order.stop_limit_price,
            "sl": order.sl,
            "tp": order.tp,
            "setup_time": as_naive_utc(order.setup_time),
            "synced_at": now,
        }

    # Figures --------------------------------------------------------------------------------

    def refresh_figures(self, accounts):
        """Re-read the figures of accounts with deals or positions in this run, and of any not read lately.

        An account that failed to answer keeps its last figures; the run still succeeds and
        says how many could not be read. A newer reading (a client's request) is never
        overwritten by an older one.
        """
        stale_before = utcnow() - timedelta(seconds=setting("SYNC_FIGURES_MAX_AGE_SECONDS"))
        read_at = dict(
            db.session.execute(
                select(TradingAccount.id, TradingAccount.figures_read_at).where(
                    TradingAccount.server_id == self.server_id
                )
            ).all()
        )
        db.session.commit()
        due = [
            row
            for row in accounts
            if row.login in self.active_logins or read_at.get(row.id) is None or read_at[row.id] < stale_before
        ]
        last_failure = None
        for batch in chunks(due, FIGURES_BATCH):
            readings = []
            for row in batch:
                try:
                    state = self.read(lambda row=row: self.gateway.trade_state(row.login))
                except (gw.TransientError, gw.AccountNotFound) as exc:
                    self.counts["figures_failed"] += 1
                    last_failure = f"{type(exc).__name__}: {exc}"
                    continue
                readings.append((row.id, state, utcnow()))
                self.keep_lease()
            for account_id, state, when in readings:
                db.session.execute(
                    update(TradingAccount)
                    .where(
                        TradingAccount.id == account_id,
                        or_(TradingAccount.figures_read_at.is_(None), TradingAccount.figures_read_at <= when),
                    )
                    .values(
                        balance=state.balance,
                        credit=state.credit,
                        equity=state.equity,
                        margin=state.margin,
                        margin_free=state.margin_free,
                        margin_level=state.margin_level,
                        figures_read_at=when,
                    )
                    .execution_options(synchronize_session=False)
                )
            self.counts["figures_refreshed"] += len(readings)
            self.renew()
            db.session.commit()
        if last_failure:
            self.warning = f"figures of {self.counts['figures_failed']} account(s) not refreshed: {last_failure}"[:2000]


# For the reports ------------------------------------------------------------------------------------


def trading_account_ids_below(ib_user_id):
    """A SELECT of the ids of every trading account of the users below an IB (itself included).

    `ib_tree_paths` is a closure table (a depth-0 row per user), so this is one indexed join:

        closed = select(ClosedPosition).where(ClosedPosition.trading_account_id.in_(trading_account_ids_below(x)))
    """
    from crm_app.auth.models import IbTreePath

    return (
        select(TradingAccount.id)
        .join(IbTreePath, IbTreePath.descendant_id == TradingAccount.user_id)
        .where(IbTreePath.ancestor_id == ib_user_id)
    )
