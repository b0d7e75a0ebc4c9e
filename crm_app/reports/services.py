"""Report queries. Each `*_query(user, filters)` is a Select in the caller's scope, shared
by the list routes and the exports, so a file always carries what the list shows."""

from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import aliased

from crm_app.auth.models import User
from crm_app.deposits.models import Deposit
from crm_app.extensions import db
from crm_app.reports.scope import visible_to
from crm_app.review.models import ReviewItem
from crm_app.sync.models import ClosedPosition, OpenPosition, PendingOrder
from crm_app.trading.models import TradingAccount
from crm_app.transfers.models import Transfer
from crm_app.withdrawals.models import Withdrawal

# The reports' `status` filter speaks the review queue's words; `auditing` in the
# deposit and withdrawal reports means "not decided yet" (pending or being audited).
UNDECIDED = ("pending", "auditing")


def review_status_filter(column, status, undecided_as_auditing=True):
    if not status or status == "all":
        return None
    if status == "auditing" and undecided_as_auditing:
        return column.in_(UNDECIDED)
    return column == status


Auditor = aliased(User, name="auditor")


def deposits_query(user, filters):
    """#36: submitted deposits with their review status, newest first."""
    query = (
        select(Deposit, ReviewItem.status.label("review_status"), User, Auditor)
        .join(ReviewItem, ReviewItem.id == Deposit.review_item_id)
        .join(User, User.id == Deposit.user_id)
        .outerjoin(Auditor, Auditor.id == ReviewItem.auditor_id)
        .where(visible_to(user, Deposit.user_id))
    )
    condition = review_status_filter(ReviewItem.status, filters.get("status"))
    if condition is not None:
        query = query.where(condition)
    if filters.get("start_time"):
        query = query.where(Deposit.submitted_at >= filters["start_time"])
    if filters.get("end_time"):
        query = query.where(Deposit.submitted_at <= filters["end_time"])
    return query.order_by(Deposit.submitted_at.desc(), Deposit.id.desc())


def withdrawals_query(user, filters):
    """#11: withdrawals with their review status, newest first."""
    query = (
        select(Withdrawal, ReviewItem.status.label("review_status"), User, Auditor)
        .join(ReviewItem, ReviewItem.id == Withdrawal.review_item_id)
        .join(User, User.id == Withdrawal.user_id)
        .outerjoin(Auditor, Auditor.id == ReviewItem.auditor_id)
        .where(visible_to(user, Withdrawal.user_id))
    )
    condition = review_status_filter(ReviewItem.status, filters.get("status"))
    if condition is not None:
        query = query.where(condition)
    if filters.get("method") and filters["method"] != "all":
        query = query.where(Withdrawal.method == filters["method"])
    if filters.get("start_time"):
        query = query.where(Withdrawal.created_at >= filters["start_time"])
    if filters.get("end_time"):
        query = query.where(Withdrawal.created_at <= filters["end_time"])
    return query.order_by(Withdrawal.created_at.desc(), Withdrawal.id.desc())


def transfers_query(user, filters):
    """#44: transfers with their review status, newest first."""
    query = (
        select(Transfer, ReviewItem.status.label("review_status"), User)
        .join(ReviewItem, ReviewItem.id == Transfer.review_item_id)
        .join(User, User.id == Transfer.user_id)
        .where(visible_to(user, Transfer.user_id))
    )
    condition = review_status_filter(ReviewItem.status, filters.get("status"), undecided_as_auditing=False)
    if condition is not None:
        query = query.where(condition)
    if filters.get("order_number"):
        query = query.where(Transfer.order_number == filters["order_number"].strip())
    if filters.get("start_time"):
        query = query.where(Transfer.created_at >= filters["start_time"])
    if filters.get("end_time"):
        query = query.where(Transfer.created_at <= filters["end_time"])
    return query.order_by(Transfer.created_at.desc(), Transfer.id.desc())


def run_report(query, page, size):
    """One page of a report query and its exact total."""
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = db.session.execute(query.limit(size).offset((page - 1) * size)).all()
    return rows, total


def user_name(user):
    return user.full_name or user.email


def account_view(account):
    return {
        "account": str(account.login),
        "id": account.id,
        "server_name": account.server.name,
        "server_type": account.server.server_type,
    }


def deposit_row(row):
    deposit, review_status, owner, auditor = row
    return {
        "id": deposit.id,
        "order_number": deposit.order_number,
        "account": str(deposit.trading_account.login),
        "amount": deposit.amount,
        "fee": deposit.fee,
        "currency": deposit.currency,
        "method": deposit.channel.method,
        "server_name": deposit.trading_account.server.name,
        "server_type": deposit.trading_account.server.server_type,
        "status": review_status,
        "submit_time": deposit.submitted_at,
        "user_name": user_name(owner),
        "auditor_name": user_name(auditor) if auditor else "",
    }


def withdrawal_row(row):
    withdrawal, review_status, owner, auditor = row
    return {
        "id": withdrawal.id,
        "order_number": withdrawal.order_number,
        "account": str(withdrawal.trading_account.login),
        "amount": withdrawal.amount,
        "fee": withdrawal.fee,
        "currency": withdrawal.account_currency,
        "method": withdrawal.method,
        "server_name": withdrawal.trading_account.server.name,
        "server_type": withdrawal.trading_account.server.server_type,
        "status": review_status,
        "submit_time": withdrawal.created_at,
        "user_name": user_name(owner),
        "auditor_name": user_name(auditor) if auditor else "",
    }


def transfer_row(row):
    transfer, review_status, owner = row
    return {
        "id": transfer.id,
        "order_number": transfer.order_number,
        "amount": transfer.amount,
        "currency": transfer.currency,
        "source_trading_account": account_view(transfer.source_account),
        "target_trading_account": account_view(transfer.target_account),
        "status": review_status,
        "submit_time": transfer.created_at,
        "user_name": user_name(owner),
    }


# Trading reports (synced from the trading servers) ------------------------------------


def _trading_query(model, user, filters, time_column):
    """Rows of `model` joined to their CRM account and its owner, in the caller's scope."""
    query = (
        select(model, TradingAccount, User)
        .join(TradingAccount, TradingAccount.id == model.trading_account_id)
        .join(User, User.id == TradingAccount.user_id)
        .where(visible_to(user, TradingAccount.user_id))
    )
    if filters.get("trading_account_id"):
        query = query.where(model.trading_account_id == filters["trading_account_id"])
    if filters.get("server_id"):
        query = query.where(model.server_id == filters["server_id"])
    if filters.get("account"):
        account = filters["account"].strip()
        query = query.where(model.login == int(account)) if account.isdigit() else query.where(false())
    if filters.get("symbol"):
        query = query.where(model.symbol == filters["symbol"].strip().upper())
    if filters.get("start_time"):
        query = query.where(time_column >= filters["start_time"])
    if filters.get("end_time"):
        query = query.where(time_column <= filters["end_time"])
    return query.order_by(time_column.desc(), model.id.desc())


def _ticket_filter(query, columns, order_number):
    if not order_number:
        return query
    text = order_number.strip()
    if not text.isdigit() or len(text) > 18:
        return query.where(false())
    return query.where(or_(*(column == int(text) for column in columns)))


def history_orders_query(user, filters):
    """#38: one row per closed position (a partial close is a row of its own)."""
    time_column = ClosedPosition.open_time if filters.get("time_type") == "open" else ClosedPosition.close_time
    query = _trading_query(ClosedPosition, user, filters, time_column)
    if filters.get("trading_type") and filters["trading_type"] != "all":
        query = query.where(ClosedPosition.side == filters["trading_type"].lower())
    return _ticket_filter(
        query, (ClosedPosition.position_id, ClosedPosition.close_deal_ticket), filters.get("order_number")
    )


def positions_query(user, filters):
    """#40: open positions as last synced."""
    query = _trading_query(OpenPosition, user, filters, OpenPosition.open_time)
    if filters.get("trading_type") and filters["trading_type"] != "all":
        query = query.where(OpenPosition.side == filters["trading_type"].lower())
    return _ticket_filter(query, (OpenPosition.ticket,), filters.get("order_number"))


def pending_orders_query(user, filters):
    """#42: working pending orders as last synced."""
    query = _trading_query(PendingOrder, user, filters, PendingOrder.setup_time)
    if filters.get("trading_type") and filters["trading_type"] != "all":
        query = query.where(PendingOrder.type == filters["trading_type"].lower())
    return _ticket_filter(query, (PendingOrder.ticket,), filters.get("order_number"))


def _trading_common(account, owner):
    return {"trading_account": account_view(account), "user_name": user_name(owner), "currency": account.currency}


def history_order_row(row):
    position, account, owner = row
    return {
        **_trading_common(account, owner),
        "order_number": str(position.position_id),
        "symbol": position.symbol,
        "trading_type": position.side.upper(),
        "volume": position.volume,
        "open_price": position.open_price,
        "open_time": position.open_time,
        "close_price": position.close_price,
        "close_time": position.close_time,
        "sl": position.sl,
        "tp": position.tp,
        "commission": position.commission,
        "swap": position.swap,
        "profit": position.profit,
    }


def position_row(row):
    position, account, owner = row
    return {
        **_trading_common(account, owner),
        "order_number": str(position.ticket),
        "symbol": position.symbol,
        "trading_type": position.side.upper(),
        "volume": position.volume,
        "leverage": account.leverage,
        "open_price": position.open_price,
        "open_time": position.open_time,
        "close_price": position.current_price,
        "sl": position.sl,
        "tp": position.tp,
        "commission": position.commission,
        "swap": position.swap,
        "profit": position.profit,
    }


def pending_order_row(row):
    order, account, owner = row
    return {
        **_trading_common(account, owner),
        "order_number": str(order.ticket),
        "symbol": order.symbol,
        "trading_type": order.type.upper(),
        "volume": order.volume,
        "pending_price": order.price,
        "pending_time": order.setup_time,
        "sl": order.sl,
        "tp": order.tp,
    }
