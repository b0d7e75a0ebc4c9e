"""The book of a simulated trade server: accounts, money, positions, orders and deals.

Plain functions over a SQLAlchemy Core connection inside one transaction; they raise
`MTError` with the retcode a real server would answer. Times are kept as MT keeps them:
Unix seconds read on the server's wall clock ("server time").
"""

import calendar
import fnmatch
import secrets
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select

from crm_app.integrations.trading.simulator import db, rules
from crm_app.integrations.trading.simulator.market import Quotes, required_margin, symbol_spec, trade_profit
from crm_app.integrations.trading.simulator.wire import (
    DEAL_BALANCE,
    DEAL_BUY,
    DEAL_CREDIT,
    DEAL_SELL,
    ENTRY_IN,
    ENTRY_OUT,
    ERR_NOTFOUND,
    ERR_PARAMS,
    ERR_PERMISSIONS,
    MAX_BALANCE_OPERATION,
    OP_BUY,
    OP_SELL,
    PENDING_TYPES,
    REASON_DEALER,
    REQUEST_INVALID_PRICE,
    REQUEST_NO_MONEY,
    STATE_CANCELED,
    STATE_FILLED,
    STATE_PLACED,
    TRADE_MAX_MONEY,
    USR_DIFFERENT_CURRENCY,
    USR_INVALID_PASSWORD,
    USR_LOGIN_EXHAUSTED,
    USR_LOGIN_EXIST,
    MTError,
    lots_to_volume_ext,
    money,
    password_hash_hex,
    text_money,
    text_price,
    volume_ext_to_lots,
)

ZERO = Decimal("0")
CLOCK_OFFSET_KEY = "clock_offset_seconds"


# State and the simulator's clock ---------------------------------------------------------


def get_state(conn, key, default=None):
    value = conn.execute(select(db.state.c.value).where(db.state.c.key == key)).scalar()
    return default if value is None else value


def set_state(conn, key, value):
    if conn.execute(db.state.update().where(db.state.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(db.state.insert().values(key=key, value=value))


def sim_now(conn):
    """The simulator's clock: real UTC time plus however far activity runs have moved it on."""
    return datetime.now(UTC) + timedelta(seconds=get_state(conn, CLOCK_OFFSET_KEY, 0))


def advance_clock(conn, seconds):
    set_state(conn, CLOCK_OFFSET_KEY, get_state(conn, CLOCK_OFFSET_KEY, 0) + int(seconds))


def server_zone(server):
    if server.timezone_name:
        return ZoneInfo(server.timezone_name)
    return timezone(timedelta(minutes=server.timezone_minutes))


def server_seconds(server, moment):
    """MT "server time": the Unix seconds of the server's wall clock at `moment`."""
    return calendar.timegm(moment.astimezone(server_zone(server)).replace(tzinfo=None).timetuple())


def utc_offset_minutes(server, moment):
    return int(moment.astimezone(server_zone(server)).utcoffset().total_seconds() // 60)


def utc_of(server, seconds):
    wall = datetime(1970, 1, 1) + timedelta(seconds=int(seconds))
    return wall.replace(tzinfo=server_zone(server)).astimezone(UTC)


# Servers and groups ---------------------------------------------------------------------------


def load_server(conn, key):
    return conn.execute(select(db.servers).where(db.servers.c.key == key)).first()


def load_group(conn, server_key, name):
    query = select(db.groups).where(db.groups.c.server_key == server_key, db.groups.c.name == name)
    return conn.execute(query).first()


def upsert_server(conn, definition):
    """Create or replace a server and its groups from the JSON config format (see config.py)."""
    key = definition["key"]
    values = {
        "name": definition.get("name") or key,
        "platform": definition.get("platform", "MT5").upper(),
        "kind": definition.get("kind", "demo").lower(),
        "manager_login": int(definition["manager_login"]),
        "manager_password_hash": password_hash_hex(definition["manager_password"]),
        "login_start": int(definition["login_start"]),
        "login_end": int(definition["login_end"]),
        "timezone_minutes": int(definition.get("timezone_minutes", 0)),
        "timezone_name": definition.get("timezone") or None,
    }
    if values["timezone_name"]:
        ZoneInfo(values["timezone_name"])  # an unknown zone fails here, not on the first request
    if values["platform"] not in ("MT4", "MT5") or values["kind"] not in ("live", "demo"):
        raise ValueError(f"server {key}: platform must be MT4|MT5 and kind live|demo")
    if values["login_start"] > values["login_end"]:
        raise ValueError(f"server {key}: login_start is after login_end")
    if conn.execute(db.servers.update().where(db.servers.c.key == key).values(**values)).rowcount == 0:
        conn.execute(db.servers.insert().values(key=key, **values))
    for group in definition.get("groups", []):
        group_values = {
            "currency": group.get("currency", "USD").upper(),
            "leverage_max": int(group.get("leverage_max", 500)),
            "password_min_length": int(group.get("password_min_length", 8 if values["platform"] == "MT5" else 5)),
            "password_policy": group.get("password_policy", "classic"),
            "commission_per_lot": Decimal(str(group.get("commission_per_lot", "0"))),
            "stop_out_level": Decimal(str(group.get("stop_out_level", "50"))),
        }
        where = and_(db.groups.c.server_key == key, db.groups.c.name == group["name"])
        if conn.execute(db.groups.update().where(where).values(**group_values)).rowcount == 0:
            conn.execute(db.groups.insert().values(server_key=key, name=group["name"], **group_values))


def describe_server(conn, server):
    group_rows = conn.execute(
        select(db.groups).where(db.groups.c.server_key == server.key).order_by(db.groups.c.name)
    ).all()
    return {
        "key": server.key,
        "name": server.name,
        "platform": server.platform,
        "kind": server.kind,
        "manager_login": server.manager_login,
        "login_start": server.login_start,
        "login_end": server.login_end,
        "timezone_minutes": server.timezone_minutes,
        "timezone": server.timezone_name,
        "groups": [
            {
                "name": g.name,
                "currency": g.currency,
                "leverage_max": g.leverage_max,
                "password_min_length": g.password_min_length,
                "password_policy": g.password_policy,
                "commission_per_lot": format(g.commission_per_lot, "f"),
                "stop_out_level": format(g.stop_out_level, "f"),
            }
            for g in group_rows
        ],
    }


def group_matches(name, masks):
    """MT group masks: "*" any text, a leading "!" excludes ("demo*,!demo\\vip")."""
    included = any(fnmatch.fnmatchcase(name, m) for m in masks if not m.startswith("!"))
    excluded = any(fnmatch.fnmatchcase(name, m[1:]) for m in masks if m.startswith("!"))
    return included and not excluded


# Accounts ---------------------------------------------------------------------------------------


def load_account(conn, server_key, login, for_update=False):
    query = select(db.accounts).where(db.accounts.c.server_key == server_key, db.accounts.c.login == int(login))
    if for_update:
        query = query.with_for_update()
    return conn.execute(query).first()


def require_account(conn, server_key, login, for_update=False):
    account = load_account(conn, server_key, login, for_update=for_update)
    if account is None:
        raise MTError(ERR_NOTFOUND, f"account {login} not found")
    return account


def next_free_login(conn, server):
    """The next login of the server's range (MT hands them out in order)."""
    in_range = and_(
        db.accounts.c.server_key == server.key,
        db.accounts.c.login >= server.login_start,
        db.accounts.c.login <= server.login_end,
    )
    highest = conn.execute(select(func.max(db.accounts.c.login)).where(in_range)).scalar()
    candidate = server.login_start if highest is None else highest + 1
    if candidate > server.login_end:
        raise MTError(USR_LOGIN_EXHAUSTED)
    return candidate


def check_password_rules(server, group, password):
    problem = rules.password_problem(password, server.platform, group.password_min_length, group.password_policy)
    if problem:
        raise MTError(USR_INVALID_PASSWORD, problem)


def check_leverage(group, leverage):
    if not 1 <= leverage <= group.leverage_max:
        raise MTError(ERR_PARAMS, f"leverage must be 1 to {group.leverage_max}")


def as_int(value, field):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise MTError(ERR_PARAMS, f"{field} must be a whole number") from None


def add_account(conn, server, fields, now):
    """user/add: validate like MT (3 bad record, 8 unknown group, 3006 weak password, 3004 taken)."""
    group_name = fields.get("group") or ""
    name = (fields.get("name") or "").strip()
    if not group_name or not name:
        raise MTError(ERR_PARAMS, "group and name are required")
    group = load_group(conn, server.key, group_name)
    if group is None:
        raise MTError(ERR_PERMISSIONS, f"group {group_name!r} does not exist")
    leverage = as_int(fields.get("leverage") or 0, "leverage")
    check_leverage(group, leverage)
    main_password, investor_password = fields.get("pass_main"), fields.get("pass_investor")
    check_password_rules(server, group, main_password)
    check_password_rules(server, group, investor_password)
    login = as_int(fields.get("login") or 0, "login")
    if login < 0:
        raise MTError(ERR_PARAMS, "login must be positive")
    if login and load_account(conn, server.key, login) is not None:
        raise MTError(USR_LOGIN_EXIST)
    login = login or next_free_login(conn, server)
    stamp = server_seconds(server, now)
    conn.execute(
        db.accounts.insert().values(
            server_key=server.key,
            login=login,
            group_name=group.name,
            name=name[: rules.NAME_LENGTH],
            email=(fields.get("email") or "")[:128],
            country=(fields.get("country") or "")[:64],
            comment=(fields.get("comment") or "")[: rules.USER_COMMENT_LENGTH],
            leverage=leverage,
            registration=stamp,
            last_pass_change=stamp,
            main_password_hash=password_hash_hex(main_password),
            investor_password_hash=password_hash_hex(investor_password),
            balance=ZERO,
            credit=ZERO,
        )
    )
    return load_account(conn, server.key, login)


def update_account(conn, server, login, fields):
    """user/update: the fields sent replace the stored ones; moving to a group of another currency is refused."""
    account = require_account(conn, server.key, login, for_update=True)
    group = load_group(conn, server.key, account.group_name)
    changes = {}
    if fields.get("group") and fields["group"] != account.group_name:
        new_group = load_group(conn, server.key, fields["group"])
        if new_group is None:
            raise MTError(ERR_PERMISSIONS, f"group {fields['group']!r} does not exist")
        if new_group.currency != group.currency:
            raise MTError(USR_DIFFERENT_CURRENCY)
        group = new_group
        changes["group_name"] = new_group.name
    if fields.get("leverage") not in (None, ""):
        leverage = as_int(fields["leverage"], "leverage")
        check_leverage(group, leverage)
        changes["leverage"] = leverage
    for field, column, limit in (
        ("name", "name", rules.NAME_LENGTH),
        ("email", "email", 128),
        ("country", "country", 64),
        ("comment", "comment", rules.USER_COMMENT_LENGTH),
    ):
        if fields.get(field) is not None:
            changes[column] = str(fields[field])[:limit]
    if changes:
        conn.execute(db.accounts.update().where(db.accounts.c.id == account.id).values(**changes))
    return load_account(conn, server.key, login)


def password_column(kind):
    if kind == "main":
        return "main_password_hash"
    if kind == "investor":
        return "investor_password_hash"
    raise MTError(ERR_PARAMS, "type must be main or investor")


def verify_password(conn, server, login, kind, password):
    column = password_column(kind)
    account = require_account(conn, server.key, login)
    if not password or getattr(account, column) != password_hash_hex(password):
        raise MTError(USR_INVALID_PASSWORD)


def change_password(conn, server, login, kind, password, now):
    column = password_column(kind)
    account = require_account(conn, server.key, login, for_update=True)
    check_password_rules(server, load_group(conn, server.key, account.group_name), password)
    values = {column: password_hash_hex(password), "last_pass_change": server_seconds(server, now)}
    conn.execute(db.accounts.update().where(db.accounts.c.id == account.id).values(**values))


# Figures ---------------------------------------------------------------------------------------------


def open_positions_of(conn, server_key, login):
    query = select(db.positions).where(db.positions.c.server_key == server_key, db.positions.c.login == login)
    return conn.execute(query.order_by(db.positions.c.position)).all()


def position_side(position):
    return "buy" if position.action == OP_BUY else "sell"


def closing_price(quotes, spec, side):
    """A buy closes at the bid, a sell at the ask."""
    return quotes.bid(spec.name) if side == "buy" else quotes.ask(spec.name)


def position_profit(position, quotes, currency):
    spec = symbol_spec(position.symbol)
    if not quotes.has(spec.name):
        return ZERO, position.price_open
    price = closing_price(quotes, spec, position_side(position))
    lots = volume_ext_to_lots(position.volume_ext)
    return trade_profit(spec, position_side(position), lots, position.price_open, price, quotes, currency), price


def account_figures(conn, server, account, quotes=None):
    """Balance, credit, floating profit, margin, equity, free margin and margin level, as MT computes them."""
    quotes = quotes or Quotes.load(conn)
    group = load_group(conn, server.key, account.group_name)
    return figures_of(account, group, open_positions_of(conn, server.key, account.login), quotes)


def figures_of(account, group, open_positions, quotes):
    profit = storage = margin = ZERO
    for position in open_positions:
        spec = symbol_spec(position.symbol)
        position_pnl, _ = position_profit(position, quotes, group.currency)
        profit += position_pnl
        storage += position.storage
        lots = volume_ext_to_lots(position.volume_ext)
        margin += required_margin(spec, lots, position.price_open, account.leverage, quotes, group.currency)
    floating = profit + storage
    equity = account.balance + account.credit + floating
    return {
        "currency": group.currency,
        "balance": account.balance,
        "credit": account.credit,
        "profit": money(profit),
        "storage": money(storage),
        "floating": money(floating),
        "equity": money(equity),
        "margin": money(margin),
        "margin_free": money(equity - margin),
        "margin_level": (equity / margin * 100).quantize(Decimal("0.01")) if margin else ZERO,
        "stop_out_level": group.stop_out_level,
    }


# Money ----------------------------------------------------------------------------------------------------


def insert_deal(conn, server, login, when, **values):
    stamp_msc = server_seconds(server, when) * 1000 + when.microsecond // 1000
    row = {
        "server_key": server.key,
        "login": login,
        "time": stamp_msc // 1000,
        "time_msc": stamp_msc,
        "reason": 0,
        "symbol": "",
        "volume_ext": 0,
        "price": ZERO,
        "price_position": ZERO,
        "price_sl": ZERO,
        "price_tp": ZERO,
        "profit": ZERO,
        "commission": ZERO,
        "storage": ZERO,
        "position_id": 0,
        "order_ticket": 0,
        "comment": "",
        **values,
    }
    row["comment"] = row["comment"][: rules.DEAL_COMMENT_LENGTH]
    return conn.execute(db.deals.insert().values(**row)).inserted_primary_key[0]


def change_balance(conn, account, delta, credit_delta=ZERO):
    """Add to the stored balance (re-read here: earlier steps of the same transaction may have moved it)."""
    current = conn.execute(
        select(db.accounts.c.balance, db.accounts.c.credit).where(db.accounts.c.id == account.id)
    ).one()
    values = {"balance": money(current.balance + delta), "credit": money(current.credit + credit_delta)}
    conn.execute(db.accounts.update().where(db.accounts.c.id == account.id).values(**values))


def balance_operation(conn, server, login, deal_type, amount, comment, check_margin, now):
    """trade/balance: a balance (2) or credit (3) deal; withdrawals are limited as MT limits them."""
    if deal_type not in (DEAL_BALANCE, DEAL_CREDIT):
        raise MTError(ERR_PARAMS, "type must be 2 (balance) or 3 (credit) on this server")
    try:
        amount = money(Decimal(str(amount)))
    except ArithmeticError:
        raise MTError(ERR_PARAMS, "balance must be a number") from None
    if not amount:
        raise MTError(ERR_PARAMS, "balance must not be zero")
    if abs(amount) > MAX_BALANCE_OPERATION:
        raise MTError(TRADE_MAX_MONEY)
    account = require_account(conn, server.key, login, for_update=True)
    if amount < 0:
        withdrawal = -amount
        limit = account.credit if deal_type == DEAL_CREDIT else account.balance
        if withdrawal > limit:
            raise MTError(REQUEST_NO_MONEY, "more than the account holds")
        if check_margin and withdrawal > account_figures(conn, server, account)["margin_free"]:
            raise MTError(REQUEST_NO_MONEY, "more than the free margin")
    ticket = insert_deal(
        conn, server, account.login, now, action=deal_type, entry=ENTRY_IN, profit=amount, comment=comment or ""
    )
    if deal_type == DEAL_CREDIT:
        change_balance(conn, account, ZERO, amount)
    else:
        change_balance(conn, account, amount)
    return ticket


# Trading --------------------------------------------------------------------------------------------------


def commission_for(group, lots):
    return -money(group.commission_per_lot * lots)


def record_order(conn, server, login, spec, order_type, volume_ext, price, when, **values):
    stamp = server_seconds(server, when)
    row = {
        "server_key": server.key,
        "login": login,
        "symbol": spec.name,
        "type": order_type,
        "state": STATE_FILLED,
        "reason": 0,
        "time_setup": stamp,
        "time_done": stamp,
        "volume_initial_ext": volume_ext,
        "volume_current_ext": 0,
        "price_order": price,
        "price_trigger": ZERO,
        "price_current": price,
        "price_sl": ZERO,
        "price_tp": ZERO,
        "position_id": 0,
        "comment": "",
        "is_open": False,
        **values,
    }
    return conn.execute(db.orders.insert().values(**row)).inserted_primary_key[0]


def open_position(
    conn,
    server,
    account,
    spec,
    side,
    lots,
    price,
    when,
    *,
    sl=ZERO,
    tp=ZERO,
    commission=None,
    reason=REASON_DEALER,
    comment="",
    order_ticket=None,
):
    """A market entry: the order (filled), the entry deal and the position it opens.

    `order_ticket` is a pending order being filled; otherwise a market order is recorded.
    """
    group = load_group(conn, server.key, account.group_name)
    volume_ext = lots_to_volume_ext(lots)
    price = spec.round_price(price)
    commission = commission_for(group, Decimal(lots)) if commission is None else money(commission)
    order_type = OP_BUY if side == "buy" else OP_SELL
    if order_ticket is None:
        order_ticket = record_order(
            conn, server, account.login, spec, order_type, volume_ext, price, when,
            reason=reason, price_sl=sl, price_tp=tp, comment=comment,
        )  # fmt: skip
    conn.execute(db.orders.update().where(db.orders.c.ticket == order_ticket).values(position_id=order_ticket))
    stamp = server_seconds(server, when)
    conn.execute(
        db.positions.insert().values(
            position=order_ticket,
            server_key=server.key,
            login=account.login,
            symbol=spec.name,
            action=order_type,
            volume_ext=volume_ext,
            price_open=price,
            price_sl=sl or ZERO,
            price_tp=tp or ZERO,
            time_create=stamp,
            time_update=stamp,
            storage=ZERO,
            commission=commission,
            comment=comment[: rules.DEAL_COMMENT_LENGTH],
            reason=reason,
        )
    )
    deal = insert_deal(
        conn, server, account.login, when,
        action=DEAL_BUY if side == "buy" else DEAL_SELL, entry=ENTRY_IN, reason=reason, symbol=spec.name,
        volume_ext=volume_ext, price=price, price_sl=sl or ZERO, price_tp=tp or ZERO, commission=commission,
        position_id=order_ticket, order_ticket=order_ticket, comment=comment,
    )  # fmt: skip
    change_balance(conn, account, commission)
    return {"order": order_ticket, "position": order_ticket, "deal": deal, "commission": commission}


def close_position(conn, server, account, position, price, when, *, reason=REASON_DEALER, commission=None):
    """A market exit of the whole position: closing order, exit deal with profit and swap, balance settled."""
    group = load_group(conn, server.key, account.group_name)
    spec = symbol_spec(position.symbol)
    side = position_side(position)
    lots = volume_ext_to_lots(position.volume_ext)
    price = spec.round_price(price)
    quotes = Quotes.load(conn)
    profit = trade_profit(spec, side, lots, position.price_open, price, quotes, group.currency)
    commission = commission_for(group, lots) if commission is None else money(commission)
    closing_type = OP_SELL if side == "buy" else OP_BUY
    order = record_order(
        conn, server, account.login, spec, closing_type, position.volume_ext, price, when,
        reason=reason, position_id=position.position,
    )  # fmt: skip
    deal = insert_deal(
        conn, server, account.login, when,
        action=DEAL_SELL if side == "buy" else DEAL_BUY, entry=ENTRY_OUT, reason=reason, symbol=spec.name,
        volume_ext=position.volume_ext, price=price, price_position=position.price_open,
        price_sl=position.price_sl, price_tp=position.price_tp, profit=profit, commission=commission,
        storage=position.storage, position_id=position.position, order_ticket=order,
    )  # fmt: skip
    conn.execute(db.positions.delete().where(db.positions.c.position == position.position))
    change_balance(conn, account, profit + commission + position.storage)
    return {"order": order, "deal": deal, "profit": profit, "commission": commission, "storage": position.storage}


def check_pending_price(order_type, price, trigger, spec, quotes):
    """MT's placement rules: limits on the far side of the market, stops beyond it."""
    bid, ask = quotes.bid(spec.name), quotes.ask(spec.name)
    valid = {
        2: price < ask,
        3: price > bid,
        4: price > ask,
        5: price < bid,
        6: price > ask and trigger < price,
        7: price < bid and trigger > price,
    }[order_type]
    if not valid:
        raise MTError(REQUEST_INVALID_PRICE, "price on the wrong side of the market for this order type")


def place_pending(conn, server, account, spec, type_name, lots, price, when, *, sl=ZERO, tp=ZERO, trigger=None):
    """A working pending order; for stop-limits `price` is the stop and `trigger` the limit placed on it."""
    order_type = PENDING_TYPES[type_name]
    quotes = Quotes.load(conn)
    price = spec.round_price(price)
    if order_type in (6, 7):
        if trigger is None:
            trigger = price - 10 * spec.point if order_type == 6 else price + 10 * spec.point
        trigger = spec.round_price(trigger)
    else:
        trigger = ZERO
    if quotes.has(spec.name):
        check_pending_price(order_type, price, trigger, spec, quotes)
    volume_ext = lots_to_volume_ext(lots)
    return record_order(
        conn, server, account.login, spec, order_type, volume_ext, price, when,
        state=STATE_PLACED, time_done=0, volume_current_ext=volume_ext, price_trigger=trigger,
        price_current=quotes.mid(spec.name) if quotes.has(spec.name) else price, price_sl=sl or ZERO,
        price_tp=tp or ZERO, is_open=True,
    )  # fmt: skip


def finish_pending(conn, server, order, state, when):
    conn.execute(
        db.orders.update()
        .where(db.orders.c.ticket == order.ticket)
        .values(state=state, time_done=server_seconds(server, when), volume_current_ext=0, is_open=False)
    )


def fill_pending(conn, server, account, order, when, reason=0):
    """A triggered pending order becomes a position at its price."""
    spec = symbol_spec(order.symbol)
    finish_pending(conn, server, order, STATE_FILLED, when)
    side = "buy" if order.type in (2, 4, 6) else "sell"
    return open_position(
        conn, server, account, spec, side, volume_ext_to_lots(order.volume_initial_ext), order.price_order, when,
        sl=order.price_sl, tp=order.price_tp, reason=reason, comment=order.comment, order_ticket=order.ticket,
    )  # fmt: skip


def cancel_pending(conn, server, order, when):
    finish_pending(conn, server, order, STATE_CANCELED, when)


# Queries for the batch endpoints ----------------------------------------------------------------------------


def logins_of_groups(conn, server, masks):
    rows = conn.execute(
        select(db.accounts.c.login, db.accounts.c.group_name).where(db.accounts.c.server_key == server.key)
    ).all()
    return [row.login for row in rows if group_matches(row.group_name, masks)]


def batch_filter(conn, server, table, ticket_column, logins, masks, tickets):
    """Rows of `table` selected by logins, group masks or tickets (one of them, as MT requires)."""
    if not (logins or masks or tickets):
        raise MTError(ERR_PARAMS, "login, group or ticket is required")
    conditions = []
    if logins:
        conditions.append(table.c.login.in_(logins))
    if masks:
        conditions.append(table.c.login.in_(logins_of_groups(conn, server, masks)))
    if tickets:
        conditions.append(ticket_column.in_(tickets))
    return and_(table.c.server_key == server.key, or_(*conditions))


def find_deals(conn, server, logins, masks, tickets, start, end):
    where = batch_filter(conn, server, db.deals, db.deals.c.ticket, logins, masks, tickets)
    if start is not None:
        where = and_(where, db.deals.c.time >= start)
    if end is not None:
        where = and_(where, db.deals.c.time <= end)
    return conn.execute(select(db.deals).where(where).order_by(db.deals.c.time, db.deals.c.ticket)).all()


def find_history_orders(conn, server, logins, masks, tickets, start, end):
    where = and_(
        batch_filter(conn, server, db.orders, db.orders.c.ticket, logins, masks, tickets),
        db.orders.c.is_open.is_(False),
    )
    if start is not None:
        where = and_(where, db.orders.c.time_done >= start)
    if end is not None:
        where = and_(where, db.orders.c.time_done <= end)
    return conn.execute(select(db.orders).where(where).order_by(db.orders.c.time_done, db.orders.c.ticket)).all()


def find_open_orders(conn, server, logins, masks, tickets):
    where = and_(
        batch_filter(conn, server, db.orders, db.orders.c.ticket, logins, masks, tickets),
        db.orders.c.is_open.is_(True),
    )
    return conn.execute(select(db.orders).where(where).order_by(db.orders.c.ticket)).all()


def find_positions(conn, server, logins, masks, tickets):
    where = batch_filter(conn, server, db.positions, db.positions.c.position, logins, masks, tickets)
    return conn.execute(select(db.positions).where(where).order_by(db.positions.c.position)).all()


# Wire records (every value a string, as the Web API sends them) ----------------------------------------------


def user_record(account):
    return {
        "Login": str(account.login),
        "Group": account.group_name,
        "CertSerialNumber": "0",
        "Rights": "2403",
        "Registration": str(account.registration),
        "LastAccess": str(account.registration),
        "LastPassChange": str(account.last_pass_change),
        "Name": account.name,
        "Company": "",
        "Country": account.country,
        "Email": account.email,
        "Comment": account.comment,
        "Leverage": str(account.leverage),
        "Agent": "0",
        "Balance": text_money(account.balance),
        "Credit": text_money(account.credit),
    }


def trade_account_record(account, figures):
    return {
        "Login": str(account.login),
        "CurrencyDigits": "2",
        "Balance": text_money(figures["balance"]),
        "Credit": text_money(figures["credit"]),
        "Margin": text_money(figures["margin"]),
        "MarginFree": text_money(figures["margin_free"]),
        "MarginLevel": format(figures["margin_level"], "f"),
        "MarginLeverage": str(account.leverage),
        "Profit": text_money(figures["profit"]),
        "Storage": text_money(figures["storage"]),
        "Floating": text_money(figures["floating"]),
        "Equity": text_money(figures["equity"]),
        "SOActivation": "0",
    }


def deal_record(row):
    spec = symbol_spec(row.symbol) if row.symbol else None
    digits = spec.digits if spec else 0
    return {
        "Deal": str(row.ticket),
        "ExternalID": "",
        "Login": str(row.login),
        "Dealer": "0",
        "Order": str(row.order_ticket),
        "Action": str(row.action),
        "Entry": str(row.entry),
        "Reason": str(row.reason),
        "Digits": str(digits),
        "DigitsCurrency": "2",
        "ContractSize": format(spec.contract_size, "f") if spec else "0",
        "Time": str(row.time),
        "TimeMsc": str(row.time_msc),
        "Symbol": row.symbol,
        "Price": text_price(row.price, digits),
        "PricePosition": text_price(row.price_position, digits),
        "PriceSL": text_price(row.price_sl, digits),
        "PriceTP": text_price(row.price_tp, digits),
        "Volume": str(row.volume_ext // 10_000),
        "VolumeExt": str(row.volume_ext),
        "VolumeClosed": str(row.volume_ext // 10_000 if row.entry == ENTRY_OUT else 0),
        "Profit": text_money(row.profit),
        "Storage": text_money(row.storage),
        "Commission": text_money(row.commission),
        "RateProfit": "1",
        "RateMargin": "1",
        "ExpertID": "0",
        "PositionID": str(row.position_id),
        "Comment": row.comment,
    }


def order_record(row):
    spec = symbol_spec(row.symbol)
    digits = spec.digits
    return {
        "Order": str(row.ticket),
        "ExternalID": "",
        "Login": str(row.login),
        "Dealer": "0",
        "Symbol": row.symbol,
        "Digits": str(digits),
        "DigitsCurrency": "2",
        "ContractSize": format(spec.contract_size, "f"),
        "State": str(row.state),
        "Reason": str(row.reason),
        "TimeSetup": str(row.time_setup),
        "TimeExpiration": "0",
        "TimeDone": str(row.time_done),
        "TimeSetupMsc": str(row.time_setup * 1000),
        "TimeDoneMsc": str(row.time_done * 1000),
        "Type": str(row.type),
        "TypeFill": "0",
        "TypeTime": "0",
        "PriceOrder": text_price(row.price_order, digits),
        "PriceTrigger": text_price(row.price_trigger, digits),
        "PriceCurrent": text_price(row.price_current, digits),
        "PriceSL": text_price(row.price_sl, digits),
        "PriceTP": text_price(row.price_tp, digits),
        "VolumeInitial": str(row.volume_initial_ext // 10_000),
        "VolumeInitialExt": str(row.volume_initial_ext),
        "VolumeCurrent": str(row.volume_current_ext // 10_000),
        "VolumeCurrentExt": str(row.volume_current_ext),
        "ExpertID": "0",
        "PositionID": str(row.position_id),
        "PositionByID": "0",
        "Comment": row.comment,
    }


def position_record(row, quotes, currency):
    spec = symbol_spec(row.symbol)
    profit, current = position_profit(row, quotes, currency)
    return {
        "Login": str(row.login),
        "Symbol": row.symbol,
        "Action": str(row.action),
        "Digits": str(spec.digits),
        "DigitsCurrency": "2",
        "ContractSize": format(spec.contract_size, "f"),
        "Position": str(row.position),
        "ExternalID": "",
        "TimeCreate": str(row.time_create),
        "TimeUpdate": str(row.time_update),
        "TimeCreateMsc": str(row.time_create * 1000),
        "TimeUpdateMsc": str(row.time_update * 1000),
        "PriceOpen": text_price(row.price_open, spec.digits),
        "PriceCurrent": text_price(current, spec.digits),
        "PriceSL": text_price(row.price_sl, spec.digits),
        "PriceTP": text_price(row.price_tp, spec.digits),
        "Volume": str(row.volume_ext // 10_000),
        "VolumeExt": str(row.volume_ext),
        "Profit": text_money(profit),
        "Storage": text_money(row.storage),
        "RateProfit": "1",
        "RateMargin": "1",
        "ExpertID": "0",
        "Comment": row.comment,
        "Reason": str(row.reason),
    }


def new_token():
    return secrets.token_hex(24)
