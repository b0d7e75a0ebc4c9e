"""Report queries. Each `*_query(user, filters)` is a Select in the caller's scope, shared
by the list routes and the exports, so a file always carries what the list shows."""

from sqlalchemy import String, and_, case, cast, false, func, literal_column, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from crm_app.auth.models import User
from crm_app.deposits.models import Deposit
from crm_app.extensions import db
from crm_app.funding.models import DepositChannel
from crm_app.reports.scope import visible_to
from crm_app.review.models import ReviewItem
from crm_app.sync.models import ClosedPosition, OpenPosition, PendingOrder
from crm_app.trading.models import TradingAccount, TradingServer
from crm_app.transfers.models import Transfer
from crm_app.withdrawals.models import Withdrawal

# A report row shows the object's own status, the word its owner's list shows (#16, #23,
# #24) and its export writes: processing (money on its way), auditing (waiting for the
# back office), approved, disapproved, failed. The seed's filters say `auditing` where
# its rows say `pending` for the same state, so both words select it.
STATUS_ALIASES = {"pending": "auditing"}


def object_status_filter(column, status):
    if not status or status == "all":
        return None
    return column == STATUS_ALIASES.get(status, status)


Auditor = aliased(User, name="auditor")


def _time_range(column, filters):
    conditions = []
    if filters.get("start_time"):
        conditions.append(column >= filters["start_time"])
    if filters.get("end_time"):
        conditions.append(column <= filters["end_time"])
    return conditions


def _reviewed_query(model, user, conditions, status, *columns):
    """Rows of `model` with their status and owner, in the caller's scope."""
    query = (
        select(model, model.status.label("row_status"), User, *columns)
        .join(ReviewItem, ReviewItem.id == model.review_item_id)
        .join(User, User.id == model.user_id)
        .where(visible_to(user, model.user_id), *conditions)
    )
    return query if status is None else query.where(status)


def _reviewed_count(model, user, conditions, status):
    """The list's total without the joins that only add columns: the owner always exists
    (a foreign key), and every row with a review item has one."""
    query = select(func.count()).select_from(model).where(visible_to(user, model.user_id), *conditions)
    query = query.where(model.review_item_id.is_not(None))
    return query if status is None else query.where(status)


def _deposit_filters(filters):
    status = object_status_filter(Deposit.status, filters.get("status"))
    return _time_range(Deposit.submitted_at, filters), status


def deposits_query(user, filters):
    """#36: submitted deposits with their status, newest first."""
    conditions, status = _deposit_filters(filters)
    query = _reviewed_query(Deposit, user, conditions, status, Auditor)
    query = query.outerjoin(Auditor, Auditor.id == ReviewItem.auditor_id)
    return query.order_by(Deposit.submitted_at.desc(), Deposit.id.desc())


def deposits_count(user, filters):
    return _reviewed_count(Deposit, user, *_deposit_filters(filters))


def _withdrawal_filters(filters):
    conditions = _time_range(Withdrawal.created_at, filters)
    if filters.get("method") and filters["method"] != "all":
        conditions.append(Withdrawal.method == filters["method"])
    return conditions, object_status_filter(Withdrawal.status, filters.get("status"))


def withdrawals_query(user, filters):
    """#11: withdrawals with their status, newest first."""
    conditions, status = _withdrawal_filters(filters)
    query = _reviewed_query(Withdrawal, user, conditions, status, Auditor)
    query = query.outerjoin(Auditor, Auditor.id == ReviewItem.auditor_id)
    return query.order_by(Withdrawal.created_at.desc(), Withdrawal.id.desc())


def withdrawals_count(user, filters):
    return _reviewed_count(Withdrawal, user, *_withdrawal_filters(filters))


def _transfer_filters(filters):
    conditions = _time_range(Transfer.created_at, filters)
    if filters.get("order_number"):
        conditions.append(Transfer.order_number == filters["order_number"].strip())
    status = object_status_filter(Transfer.status, filters.get("status"))
    return conditions, status


def transfers_query(user, filters):
    """#44: transfers with their status, newest first."""
    conditions, status = _transfer_filters(filters)
    query = _reviewed_query(Transfer, user, conditions, status)
    return query.order_by(Transfer.created_at.desc(), Transfer.id.desc())


def transfers_count(user, filters):
    return _reviewed_count(Transfer, user, *_transfer_filters(filters))


def run_report(query, page, size, count=None):
    """One page of a report query and its exact total.

    `count`: a Select of the same number, cheaper than counting the list's query (which
    joins tables for their columns only); the exact total is most of a page's cost.
    """
    if count is None:
        count = select(func.count()).select_from(query.order_by(None).subquery())
    total = db.session.scalar(count)
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
    deposit, status, owner, auditor = row
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
        "status": status,
        "submit_time": deposit.submitted_at,
        "user_name": user_name(owner),
        "auditor_name": user_name(auditor) if auditor else "",
    }


def withdrawal_row(row):
    withdrawal, status, owner, auditor = row
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
        "status": status,
        "submit_time": withdrawal.created_at,
        "user_name": user_name(owner),
        "auditor_name": user_name(auditor) if auditor else "",
    }


def transfer_row(row):
    transfer, status, owner = row
    return {
        "id": transfer.id,
        "order_number": transfer.order_number,
        "amount": transfer.amount,
        "currency": transfer.currency,
        "source_trading_account": account_view(transfer.source_account),
        "target_trading_account": account_view(transfer.target_account),
        "status": status,
        "submit_time": transfer.created_at,
        "user_name": user_name(owner),
    }


# Trading reports (synced from the trading servers) ------------------------------------


def _trading_filters(model, filters, time_column, type_column, ticket_columns):
    """The report's filters on the synced rows' own columns."""
    conditions = _time_range(time_column, filters)
    if filters.get("trading_account_id"):
        conditions.append(model.trading_account_id == filters["trading_account_id"])
    if filters.get("server_id"):
        conditions.append(model.server_id == filters["server_id"])
    if filters.get("account"):
        account = filters["account"].strip()
        conditions.append(model.login == int(account) if account.isascii() and account.isdigit() else false())
    if filters.get("symbol"):
        conditions.append(model.symbol == filters["symbol"].strip().upper())
    if filters.get("trading_type") and filters["trading_type"] != "all":
        conditions.append(type_column == filters["trading_type"].lower())
    if filters.get("order_number"):
        text = filters["order_number"].strip()
        if text.isascii() and text.isdigit():
            conditions.append(or_(*(column == int(text) for column in ticket_columns)))
        else:
            conditions.append(false())
    return conditions


def _trading_query(model, user, conditions, time_column):
    """Rows of `model` joined to their CRM account and its owner, in the caller's scope."""
    query = (
        select(model, TradingAccount, User)
        .join(TradingAccount, TradingAccount.id == model.trading_account_id)
        .join(User, User.id == TradingAccount.user_id)
        .where(visible_to(user, TradingAccount.user_id), *conditions)
    )
    return query.order_by(time_column.desc(), model.id.desc())


def _trading_count(model, user, conditions):
    """The list's total from the synced table alone (an index-only scan where one fits): a
    row's account always exists when it is set (a foreign key), and so does its owner."""
    if user.user_type == "admin":
        scope = model.trading_account_id.is_not(None)
    else:
        accounts = select(TradingAccount.id).where(visible_to(user, TradingAccount.user_id))
        scope = model.trading_account_id.in_(accounts.scalar_subquery())
    return select(func.count()).select_from(model).where(scope, *conditions)


def _history_orders(filters):
    position = ClosedPosition
    time_column = position.open_time if filters.get("time_type") == "open" else position.close_time
    tickets = (position.position_id, position.close_deal_ticket)
    return time_column, _trading_filters(position, filters, time_column, position.side, tickets)


def history_orders_query(user, filters):
    """#38: one row per closed position (a partial close is a row of its own)."""
    time_column, conditions = _history_orders(filters)
    return _trading_query(ClosedPosition, user, conditions, time_column)


def history_orders_count(user, filters):
    return _trading_count(ClosedPosition, user, _history_orders(filters)[1])


def _positions(filters):
    position = OpenPosition
    return _trading_filters(position, filters, position.open_time, position.side, (position.ticket,))


def positions_query(user, filters):
    """#40: open positions as last synced."""
    return _trading_query(OpenPosition, user, _positions(filters), OpenPosition.open_time)


def positions_count(user, filters):
    return _trading_count(OpenPosition, user, _positions(filters))


def _pending_orders(filters):
    order = PendingOrder
    return _trading_filters(order, filters, order.setup_time, order.type, (order.ticket,))


def pending_orders_query(user, filters):
    """#42: working pending orders as last synced."""
    return _trading_query(PendingOrder, user, _pending_orders(filters), PendingOrder.setup_time)


def pending_orders_count(user, filters):
    return _trading_count(PendingOrder, user, _pending_orders(filters))


def _trading_common(account, owner):
    return {"trading_account": account_view(account), "user_name": user_name(owner), "currency": account.currency}


def history_order_row(row):
    position, account, owner = row
    return {
        **_trading_common(account, owner),
        "order_number": str(position.position_id),
        "deal_number": str(position.close_deal_ticket),
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


# Export rows ---------------------------------------------------------------------------
# Each report's file is its list's rows as plain SQL columns, formatted in SQL the way the
# list formats them (amounts and prices to their places, names, logins, upper-case types,
# statuses as the list names them), so PostgreSQL's COPY can write the CSV itself.
# Times stay timestamps: the export writes them in the broker's timezone, in SQL for COPY.
# Same FROM, WHERE and ORDER BY as the list (the list's query with other columns).

MONEY_PLACES = 2
PRICE_PLACES = 5
VOLUME_PLACES = 2


class fixed_places(FunctionElement):  # noqa: N801 - named like the SQL functions it stands for
    """`round(column, places)` on PostgreSQL, which rounds half away from zero as the list's
    fields do (schemas.Fixed), so COPY writes the list's text. Elsewhere the column as it is:
    SQLite's round() answers a float ("250.0000000000", or 1.12344 for 1.123445), so the
    writers round the exact value in Python, the list's way."""

    name = "round"
    inherit_cache = True

    def __init__(self, column, places):
        super().__init__(column, literal_column(str(int(places))))
        self.type = column.type


@compiles(fixed_places)
def _column_as_it_is(element, compiler, **kw):
    column, _places = element.clauses
    return compiler.process(column, **kw)


@compiles(fixed_places, "postgresql")
def _rounded(element, compiler, **kw):
    return f"round({compiler.process(element.clauses, **kw)})"


def _fixed(column, places):
    return fixed_places(column, places)


def _text(column):
    return cast(column, String)


def user_name_sql(person):
    """`user_name()` in SQL: first and last name, or the e-mail when both are empty."""
    # Spelled with CASE, not concat_ws: SQLite (the demo's database) has no concat_ws.
    first = func.nullif(person.first_name, "", type_=String)
    last = func.nullif(person.last_name, "", type_=String)
    both = and_(first.is_not(None), last.is_not(None))
    full_name = case((both, first + " " + last), else_=func.coalesce(first, last))
    return func.coalesce(full_name, person.email, type_=String)


def _export_columns(query, *columns):
    # Labelled by position: two logins cast to text would otherwise share one name.
    labelled = (column.label(f"c{index}") for index, column in enumerate(columns))
    return query.with_only_columns(*labelled, maintain_column_froms=True)


def deposits_export_query(user, filters):
    query = _export_columns(
        deposits_query(user, filters),
        Deposit.order_number,
        Deposit.submitted_at,
        user_name_sql(User),
        _text(TradingAccount.login),
        TradingServer.name,
        DepositChannel.method,
        _fixed(Deposit.amount, MONEY_PLACES),
        _fixed(Deposit.fee, MONEY_PLACES),
        Deposit.currency,
        Deposit.status,
        user_name_sql(Auditor),  # NULL (an empty cell) when nobody audited it
    )
    return (
        query.join(TradingAccount, TradingAccount.id == Deposit.trading_account_id)
        .join(TradingServer, TradingServer.id == TradingAccount.server_id)
        .join(DepositChannel, DepositChannel.id == Deposit.channel_id)
    )


def withdrawals_export_query(user, filters):
    query = _export_columns(
        withdrawals_query(user, filters),
        Withdrawal.order_number,
        Withdrawal.created_at,
        user_name_sql(User),
        _text(TradingAccount.login),
        TradingServer.name,
        Withdrawal.method,
        _fixed(Withdrawal.amount, MONEY_PLACES),
        _fixed(Withdrawal.fee, MONEY_PLACES),
        Withdrawal.account_currency,
        Withdrawal.status,
        user_name_sql(Auditor),
    )
    return query.join(TradingAccount, TradingAccount.id == Withdrawal.trading_account_id).join(
        TradingServer, TradingServer.id == TradingAccount.server_id
    )


SourceAccount = aliased(TradingAccount, name="source_account")
TargetAccount = aliased(TradingAccount, name="target_account")


def transfers_export_query(user, filters):
    query = _export_columns(
        transfers_query(user, filters),
        Transfer.order_number,
        Transfer.created_at,
        user_name_sql(User),
        _text(SourceAccount.login),
        _text(TargetAccount.login),
        _fixed(Transfer.amount, MONEY_PLACES),
        Transfer.currency,
        Transfer.status,
    )
    return query.join(SourceAccount, SourceAccount.id == Transfer.source_account_id).join(
        TargetAccount, TargetAccount.id == Transfer.target_account_id
    )


def _trading_export_columns(model, ticket, trading_type):
    return (
        _text(ticket),
        user_name_sql(User),
        _text(TradingAccount.login),
        model.symbol,
        func.upper(trading_type, type_=String),
        _fixed(model.volume, VOLUME_PLACES),
    )


def history_orders_export_query(user, filters):
    position = ClosedPosition
    return _export_columns(
        history_orders_query(user, filters),
        *_trading_export_columns(position, position.position_id, position.side),
        _fixed(position.open_price, PRICE_PLACES),
        position.open_time,
        _fixed(position.close_price, PRICE_PLACES),
        position.close_time,
        _fixed(position.sl, PRICE_PLACES),
        _fixed(position.tp, PRICE_PLACES),
        _fixed(position.commission, MONEY_PLACES),
        _fixed(position.swap, MONEY_PLACES),
        _fixed(position.profit, MONEY_PLACES),
    )


def positions_export_query(user, filters):
    position = OpenPosition
    return _export_columns(
        positions_query(user, filters),
        *_trading_export_columns(position, position.ticket, position.side),
        TradingAccount.leverage,
        _fixed(position.open_price, PRICE_PLACES),
        position.open_time,
        _fixed(position.current_price, PRICE_PLACES),
        _fixed(position.sl, PRICE_PLACES),
        _fixed(position.tp, PRICE_PLACES),
        _fixed(position.commission, MONEY_PLACES),
        _fixed(position.swap, MONEY_PLACES),
        _fixed(position.profit, MONEY_PLACES),
    )


def pending_orders_export_query(user, filters):
    order = PendingOrder
    return _export_columns(
        pending_orders_query(user, filters),
        *_trading_export_columns(order, order.ticket, order.type),
        _fixed(order.price, PRICE_PLACES),
        order.setup_time,
        _fixed(order.sl, PRICE_PLACES),
        _fixed(order.tp, PRICE_PLACES),
    )
