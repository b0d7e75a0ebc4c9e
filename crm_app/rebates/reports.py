"""The IB's rebate reports (#52, #57, #59): each `*_query(user, filters)` is a Select in
the caller's scope (an IB: only the rebates it receives), shared by the list routes and
the exports, so a file carries exactly what the list shows."""

from sqlalchemy import false, func, or_, select, true
from sqlalchemy.orm import aliased

from crm_app.auth.models import User
from crm_app.exports.services import Column, register_report
from crm_app.extensions import db
from crm_app.rebates.models import Rebate, RebateSettlement

Client = aliased(User, name="rebate_client")
Ib = aliased(User, name="rebate_ib")
SubIb = aliased(User, name="rebate_sub_ib")

TRIGGER_EVENT = "position_close"


def _scope(user, ib_column):
    return true() if user.user_type == "admin" else ib_column == user.id


def name_of(user):
    if user is None:
        return ""
    return user.full_name or user.email


def _name_like(model, text):
    pattern = f"%{text.strip().replace('%', '').replace('_', '')}%"
    full = func.concat(model.first_name, " ", model.last_name)
    return or_(full.ilike(pattern), model.email.ilike(pattern), model.first_name.ilike(pattern))


def _time_filter(query, column, filters):
    if filters.get("start_time"):
        query = query.where(column >= filters["start_time"])
    if filters.get("end_time"):
        query = query.where(column <= filters["end_time"])
    return query


def rebates_query(user, filters):
    """#52: every rebate record of the IB (zero amounts too, with their reason), newest first."""
    query = (
        select(Rebate, Client, Ib, RebateSettlement)
        .join(Client, Client.id == Rebate.client_id)
        .join(Ib, Ib.id == Rebate.ib_id)
        .outerjoin(RebateSettlement, RebateSettlement.id == Rebate.settlement_id)
        .where(_scope(user, Rebate.ib_id))
    )
    query = _time_filter(query, Rebate.calculated_at, filters)
    return query.order_by(Rebate.calculated_at.desc(), Rebate.id.desc())


def rebate_row(row):
    rebate, client, ib, settlement = row
    return {
        "rebate_id": rebate.id,
        "client_user_id": client.id,
        "client_user_name": name_of(client),
        "ib_user_id": ib.id,
        "ib_user_name": name_of(ib),
        "open_time": rebate.open_time,
        "close_time": rebate.close_time,
        "payment_time": settlement.grant_at if settlement else None,
        "settlement_time": settlement.created_at if settlement else None,
        "rebate_type": rebate.mode or "",
        "symbol": rebate.symbol,
        "trade_profit": rebate.profit,
        "volume": rebate.volume,
        "level": rebate.level,
        "amount": rebate.amount,
        "currency": rebate.currency,
        "reason": rebate.reason or "",
        "rule_id": rebate.rule_id,
        "mt_order_number": str(rebate.close_order or rebate.close_deal_ticket),
        "order_number": str(rebate.close_deal_ticket),
        "position_number": str(rebate.position_id),
    }


def _time_column(filters, calculate_column, grant_column):
    return grant_column if filters.get("time_search_type") == "grant_at" else calculate_column


def commission_details_query(user, filters):
    """#57: one row per rebated order (amount > 0) of the IB, newest first."""
    query = (
        select(Rebate, Client, Ib, SubIb, RebateSettlement)
        .join(Client, Client.id == Rebate.client_id)
        .join(Ib, Ib.id == Rebate.ib_id)
        .outerjoin(SubIb, SubIb.id == Rebate.sub_ib_id)
        .outerjoin(RebateSettlement, RebateSettlement.id == Rebate.settlement_id)
        .where(_scope(user, Rebate.ib_id), Rebate.amount > 0)
    )
    if filters.get("rebate_aggregation_id") not in (None, ""):
        text = str(filters["rebate_aggregation_id"]).strip()
        digits = text.isascii() and text.isdigit()
        query = query.where(Rebate.settlement_id == int(text)) if digits else query.where(false())
    if filters.get("client_user_name"):
        query = query.where(_name_like(Client, filters["client_user_name"]))
    column = _time_column(filters, Rebate.calculated_at, RebateSettlement.grant_at)
    query = _time_filter(query, column, filters)
    return query.order_by(column.desc().nulls_last(), Rebate.id.desc())


def commission_detail_row(row):
    rebate, client, ib, sub_ib, settlement = row
    return {
        "id": rebate.id,
        "amount": rebate.amount,
        "calculate_at": rebate.calculated_at,
        "grant_at": settlement.grant_at if settlement else None,
        "client_user_name": name_of(client),
        "ib_user_name": name_of(ib),
        "sub_ib_user_name": name_of(sub_ib),
        "open_price": rebate.open_price,
        "close_price": rebate.close_price,
        "currency": rebate.currency,
        "mt_order_number": str(rebate.close_order or rebate.close_deal_ticket),
        "order_number": str(rebate.close_deal_ticket),
        "position_number": str(rebate.position_id),
        "profit": rebate.profit,
        "symbol": rebate.symbol,
        "trigger_event": TRIGGER_EVENT,
        "volume": float(rebate.volume),
        "level": rebate.level,
        "rebate_aggregation_id": rebate.settlement_id,
    }


def commissions_query(user, filters):
    """#59: one row per settlement of the IB, newest first."""
    query = (
        select(RebateSettlement, Ib)
        .join(Ib, Ib.id == RebateSettlement.ib_id)
        .where(_scope(user, RebateSettlement.ib_id))
    )
    if filters.get("client_user_name"):
        # A settlement gathers many clients' rebates: those that paid on this client's trades.
        query = query.where(
            select(Rebate.id)
            .join(Client, Client.id == Rebate.client_id)
            .where(Rebate.settlement_id == RebateSettlement.id, _name_like(Client, filters["client_user_name"]))
            .exists()
        )
    column = _time_column(filters, RebateSettlement.calculate_at, RebateSettlement.grant_at)
    query = _time_filter(query, column, filters)
    return query.order_by(column.desc().nulls_last(), RebateSettlement.id.desc())


def commission_row(row):
    settlement, ib = row
    return {
        "id": settlement.id,
        "order_number": settlement.order_number,
        "calculate_at": settlement.calculate_at,
        "grant_at": settlement.grant_at,
        "currency": settlement.currency,
        "login_id": str(settlement.login),
        "total_amount": settlement.total_amount,
        "total_orders": settlement.total_orders,
        "user_email": ib.email,
        "user_name": name_of(ib),
        "status": settlement.status,
    }


def run_report(query, page, size):
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = db.session.execute(query.limit(size).offset((page - 1) * size)).all()
    return rows, total


# Exports (#56, #58) ----------------------------------------------------------------------


def _h(en, zh_cn, zh_tw):
    return {"en": en, "zh-CN": zh_cn, "zh-TW": zh_tw}


FILTER_LABELS = {
    "start_time": _h("From", "开始时间", "開始時間"),
    "end_time": _h("To", "结束时间", "結束時間"),
    "time_search_type": _h("Time of", "时间类型", "時間類型"),
    "client_user_name": _h("Client", "客户", "客戶"),
    "rebate_aggregation_id": _h("Settlement", "结算单", "結算單"),
}

# How the lists show them (schemas.CommissionDetailSchema, CommissionSchema): money to 2 places,
# prices to 5, volumes (lots) to 2 as every report does; times in the broker's zone.
MONEY_PLACES = 2
PRICE_PLACES = 5
VOLUME_PLACES = 2


def _money(key, header, **options):
    return Column(key, header, align="right", kind="number", places=MONEY_PLACES, **options)


def _time(key, header):
    return Column(key, header, width=1.3, kind="time")


DETAIL_COLUMNS = [
    Column("mt_order_number", _h("MT order", "MT订单号", "MT訂單號"), kind="id"),
    Column("order_number", _h("Deal", "成交单号", "成交單號"), kind="id"),
    # The ticket the closed-orders report shows as its order number: links a row to that report.
    Column("position_number", _h("Position", "持仓单号", "持倉單號"), kind="id"),
    Column("client_user_name", _h("Client", "客户", "客戶"), width=1.3),
    Column("sub_ib_user_name", _h("Sub-IB", "下级IB", "下級IB"), width=1.2),
    Column("symbol", _h("Symbol", "品种", "品種"), width=0.8),
    Column("volume", _h("Volume", "手数", "手數"), width=0.6, align="right", kind="number", places=VOLUME_PLACES),
    Column("open_price", _h("Open price", "开仓价", "開倉價"), align="right", kind="number", places=PRICE_PLACES),
    Column("close_price", _h("Close price", "平仓价", "平倉價"), align="right", kind="number", places=PRICE_PLACES),
    _money("profit", _h("Profit", "盈亏", "盈虧")),
    _money("amount", _h("Rebate", "返佣", "返佣")),
    Column("currency", _h("Currency", "币种", "幣種"), width=0.6),
    Column("trigger_event", _h("Trigger", "触发事件", "觸發事件")),
    _time("calculate_at", _h("Calculated", "计算时间", "計算時間")),
    _time("grant_at", _h("Paid", "发放时间", "發放時間")),
]

SUMMARY_COLUMNS = [
    Column("order_number", _h("Settlement", "结算单号", "結算單號"), width=1.4, kind="id"),
    Column("login_id", _h("Paid to account", "入账账户", "入帳帳戶"), kind="id"),
    Column("total_orders", _h("Orders", "订单数", "訂單數"), width=0.6, align="right", kind="number", places=0),
    _money("total_amount", _h("Amount", "金额", "金額")),
    Column("currency", _h("Currency", "币种", "幣種"), width=0.6),
    Column("status", _h("Status", "状态", "狀態"), width=0.7),
    _time("calculate_at", _h("Calculated", "计算时间", "計算時間")),
    _time("grant_at", _h("Paid", "发放时间", "發放時間")),
]


def detail_values(row):
    view = commission_detail_row(row)
    view["volume"] = row[0].volume
    return [view[column.key] for column in DETAIL_COLUMNS]


def summary_values(row):
    view = commission_row(row)
    return [view[column.key] for column in SUMMARY_COLUMNS]


register_report(
    "ib-commission-details",
    columns=DETAIL_COLUMNS,
    query_for=commission_details_query,
    row_to_values=detail_values,
    title_i18n=_h("Commission details", "佣金明细", "佣金明細"),
    filter_labels=FILTER_LABELS,
)
register_report(
    "ib-commissions",
    columns=SUMMARY_COLUMNS,
    query_for=commissions_query,
    row_to_values=summary_values,
    title_i18n=_h("Commissions", "佣金报表", "佣金報表"),
    filter_labels=FILTER_LABELS,
)
